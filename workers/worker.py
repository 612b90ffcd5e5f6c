"""Worker entry point: ``celery -A workers.worker worker -Q sqsnn.sim,sqsnn.hw`` (settings from SQSNN_*)."""

from __future__ import annotations

from workers.celery_app import make_celery
from workers.settings import Settings

app = make_celery(Settings())
app.set_current()
app.set_default()
