"""A job's lease heartbeat, in a child process: ``python -m workers.heartbeat JOB_ID TOKEN LEASE_S``.

A thread cannot keep a lease fresh: simulators hold the GIL through long C++ calls (an aer chunk of 32
samples at T = 80 held it for over a second at a time), so a heartbeat thread stalls exactly while a chunk
runs. This process renews the lease at once, then every ``LEASE_S / 3`` seconds, with one compare-and-set
UPDATE (only while ``TOKEN`` holds it) until its stdin closes, which happens when the worker ends the block
or dies (SIGKILL closes the pipe too, so a dead worker's lease runs out as it should). Exit status: 0 stopped,
3 the lease was taken over. The database URL comes from ``SQSNN_HEARTBEAT_DATABASE_URL``.
"""

from __future__ import annotations

import os
import select
import sys
from datetime import timedelta

LOST = 3


def renew_lease(engine: object, job_id: str, token: str, lease_s: float) -> bool:
    """Extend ``job_id``'s lease by ``lease_s`` seconds if ``token`` holds it; False when it does not."""
    from sqlalchemy import update
    from sqlalchemy.engine import Engine

    from workers.models import Job, utcnow

    assert isinstance(engine, Engine)
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.lease_owner == token)
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .returning(Job.id)
    )
    with engine.begin() as conn:
        return conn.execute(stmt).first() is not None


def main(argv: list[str]) -> int:
    """Renew until stdin closes (0) or the lease is lost (``LOST``)."""
    from sqlalchemy.exc import OperationalError

    from workers.db import make_engine

    job_id, token, lease_s = argv[0], argv[1], float(argv[2])
    engine = make_engine(os.environ["SQSNN_HEARTBEAT_DATABASE_URL"])
    try:
        wait = 0.0  # renew at once, then every lease_s / 3
        while True:
            readable, _, _ = select.select([sys.stdin], [], [], wait)
            if readable:  # EOF (or anything): the worker is done with the block, or died
                return 0
            wait = lease_s / 3
            try:
                if not renew_lease(engine, job_id, token, lease_s):
                    return LOST
            except OperationalError as exc:  # a database hiccup: try again at the next beat
                print(f"heartbeat of job {job_id}: {exc}", file=sys.stderr)
    finally:
        engine.dispose()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
