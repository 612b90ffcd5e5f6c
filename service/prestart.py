"""Deployment prestart: wait for the database to accept connections, then ``alembic upgrade head``.

Run once per deployment (docker compose's ``migrate`` service): ``python -m service.prestart``.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.embedded import migrate
from workers.db import make_engine
from workers.settings import Settings

log = logging.getLogger("sqsnn.prestart")


def wait_for_database(settings: Settings, timeout_s: float = 120.0, interval_s: float = 1.0) -> None:
    """Retry ``SELECT 1`` until it succeeds; raises the last error after ``timeout_s``."""
    engine = make_engine(settings.sqlalchemy_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
                return
            except OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("database not ready (%s); retrying", type(exc).__name__)
                time.sleep(interval_s)
    finally:
        engine.dispose()


def main() -> None:
    """Wait for the database, then migrate it to the newest revision."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings()
    wait_for_database(settings)
    migrate(settings)
    log.info("database migrated to head")


if __name__ == "__main__":
    main()
