"""An API's published limits as windows, and the rate one sequence of calls may keep.

A limit is "at most `limit` requests in any `seconds`-long window". Calls sent at times spaced
`1 / rate` apart put at most `rate * W + 1` of them in any window of `W` seconds, so
`sequence_rate` keeps that under `limit * headroom` for every window of the limits.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Window:
    """At most `limit` requests in any `seconds`-long window (one published limit)."""

    limit: int
    seconds: float


@dataclass(frozen=True)
class Limits:
    """One API's limits per tenant: its windows, how many calls at once, and the share of
    each window a caller keeps itself to."""

    windows: tuple[Window, ...]
    concurrency: int
    headroom: float = 0.95


def sequence_rate(limits: Limits) -> float:
    """Calls a second one evenly spaced sequence may carry without any window of `limits`
    holding more than its share (`limit * headroom`), the one extra call a window can catch
    included."""
    return min((w.limit * limits.headroom - 1) / w.seconds for w in limits.windows)


class Budget(Protocol):
    """What a client needs of a rate budget: a slot per request, under a tenant's key."""

    def slot(
        self, key: str, weight: int = 1, *, host: str = ""
    ) -> AbstractAsyncContextManager[None]: ...


class BudgetSource(Protocol):
    """Makes the budget of one API's limits (`scope` names the API: "qbo", "crm-search")."""

    def budget(self, scope: str, limits: Limits) -> Budget: ...


def windows_of(*pairs: tuple[int, float]) -> tuple[Window, ...]:
    """`windows_of((10, 1), (500, 60))`: windows from (limit, seconds) pairs."""
    return tuple(Window(limit, seconds) for limit, seconds in pairs)
