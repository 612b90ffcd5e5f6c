"""Per-owner daily spend limits on circuit backends: shots and US dollars over a rolling 24 hours.

An owner's limits are their ``SpendLimit`` row, else the settings' defaults (``SQSNN_OWNER_MAX_SHOTS_PER_DAY``,
``SQSNN_OWNER_MAX_USD_PER_DAY``; unset = unlimited). Spend counts every job of the owner created in the
last 24 hours: finished jobs with what they used, active ones with the larger of what they used and what
was reserved for them (``Job.estimated_shots`` / ``estimated_cost_usd``), so concurrent jobs cannot
overshoot together. :func:`check_spend` is called where a job's estimate is known (the API at submission,
the worker before the first provider submission); :func:`reserve_spend` checks and records the reservation
in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from workers.models import ACTIVE_STATES, Job, SpendLimit, utcnow
from workers.settings import Settings

WINDOW = timedelta(hours=24)


class SpendLimitExceeded(ValueError):
    """A job would take its owner past a daily spend limit; the message names the limit and the amounts."""


@dataclass(frozen=True)
class Spend:
    """Shots and US dollars used or reserved in the window."""

    shots: int
    usd: float


def limits_of(session: Session, settings: Settings, owner: str) -> tuple[int | None, float | None]:
    """(max shots per day, max USD per day) of ``owner``; None = unlimited."""
    row = session.get(SpendLimit, owner)
    shots = row.max_shots_per_day if row is not None and row.max_shots_per_day is not None else None
    usd = row.max_usd_per_day if row is not None and row.max_usd_per_day is not None else None
    return (
        shots if shots is not None else settings.owner_max_shots_per_day,
        usd if usd is not None else settings.owner_max_usd_per_day,
    )


def daily_spend(session: Session, owner: str, *, exclude_job: str | None = None) -> Spend:
    """What ``owner``'s jobs created in the last 24 hours used or reserved (``exclude_job`` left out)."""
    active = Job.state.in_(ACTIVE_STATES)
    est_shots, est_usd = func.coalesce(Job.estimated_shots, 0), func.coalesce(Job.estimated_cost_usd, 0.0)
    shots = case((active & (est_shots > Job.shots), est_shots), else_=Job.shots)
    usd = case((active & (est_usd > Job.cost_usd), est_usd), else_=Job.cost_usd)
    window = (Job.owner == owner) & (Job.created_at >= utcnow() - WINDOW)
    if exclude_job is not None:
        window = window & (Job.id != exclude_job)
    total_shots, total_usd = session.execute(
        select(func.coalesce(func.sum(shots), 0), func.coalesce(func.sum(usd), 0.0)).where(window)
    ).one()
    return Spend(int(total_shots), float(total_usd))


def check_spend(
    session: Session, settings: Settings, owner: str, shots: int, cost_usd: float | None, *, job_id: str | None = None
) -> None:
    """Raise :class:`SpendLimitExceeded` when ``shots`` / ``cost_usd`` more (of job ``job_id``, whose own
    reservation is not counted twice) would take ``owner`` past a daily limit. ``cost_usd`` None (no public
    price) cannot be checked against a dollar limit and is refused when one applies."""
    max_shots, max_usd = limits_of(session, settings, owner)
    if max_shots is None and max_usd is None:
        return
    spent = daily_spend(session, owner, exclude_job=job_id)
    if max_shots is not None and spent.shots + shots > max_shots:
        raise SpendLimitExceeded(
            f"owner {owner!r} has used or reserved {spent.shots} shots in the last 24 hours; {shots} more would "
            f"exceed the daily limit max_shots_per_day={max_shots}"
        )
    if max_usd is not None:
        if cost_usd is None:
            raise SpendLimitExceeded(
                f"the backend has no public price, so owner {owner!r}'s daily limit max_usd_per_day={max_usd} "
                "cannot be checked; run on a priced backend or ask for the dollar limit to be lifted"
            )
        if spent.usd + cost_usd > max_usd:
            raise SpendLimitExceeded(
                f"owner {owner!r} has used or reserved ${spent.usd:.2f} in the last 24 hours; ${cost_usd:.2f} "
                f"more would exceed the daily limit max_usd_per_day={max_usd}"
            )


def reserve_spend(session: Session, settings: Settings, job: Job, shots: int, cost_usd: float | None) -> None:
    """Check the owner's limits for ``job``'s estimate and record it as the job's reservation (the caller
    commits). On PostgreSQL the owner's reservations are serialised by an advisory transaction lock."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:o))"), {"o": f"spend:{job.owner}"})
    check_spend(session, settings, job.owner, shots, cost_usd, job_id=job.id)
    job.estimated_shots = shots
    job.estimated_cost_usd = cost_usd
