"""Worker entry point: ``celery -A workers.worker worker -Q sqsnn.sim,sqsnn.hw`` (settings from SQSNN_*)."""

from __future__ import annotations

import sys
from typing import Any

from celery.signals import celeryd_after_setup

from workers.celery_app import make_celery
from workers.settings import Settings

app = make_celery(Settings())
app.set_current()
app.set_default()


@celeryd_after_setup.connect
def _say_where_the_log_goes(sender: str, instance: Any, **_: Any) -> None:
    """Print, beside Celery's start banner, where this worker logs: ``--logfile PATH`` or standard error."""
    where = instance.logfile or "standard error (--logfile PATH writes a file)"
    print(f"worker {sender} logs to {where}", file=sys.__stdout__, flush=True)
