"""The sandbox clock: wall time plus an offset the control API can move (for overdue, expiry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> datetime:
        self.offset += timedelta(seconds=seconds)
        return self.now()

    def set(self, when: datetime) -> datetime:
        self.offset = when - datetime.now(UTC)
        return self.now()
