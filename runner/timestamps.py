"""Timestamps as Forgeyard stores and prints them: naive UTC with microseconds, shown as ISO-8601 with a Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now as naive UTC with microseconds: the one form every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def format_timestamp(moment: datetime) -> str:
    """ISO-8601 UTC with a Z, as in log lines and API responses."""
    return moment.isoformat(timespec="milliseconds") + "Z"
