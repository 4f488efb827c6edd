"""Whether a 5-field cron expression can ever fire (croniter, UTC); read by the linter and the scheduler."""

from __future__ import annotations

from datetime import UTC, datetime


def cron_problem(cron: str) -> str | None:
    """Why `cron` cannot schedule anything, or None when it can."""
    from croniter import CroniterError, croniter  # lazy: only pipelines with schedules pay for it

    if not croniter.is_valid(cron):
        return f"invalid cron {cron!r}"
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError:  # valid fields that no date has, e.g. 30 February
        return f"cron {cron!r} never matches"
    return None
