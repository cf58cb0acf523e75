"""An API's published limits as windows, and the pace that keeps a share of them.

A limit is "at most `limit` requests in any `seconds`-long window". A token bucket with burst
`b` and rate `r` admits at most `b + r * W` requests in any window of `W` seconds, so holders
that split one limit `n` ways, each with burst `b_i` and rate `r / n`, admit at most
`n * b_i + r * W`: the rate is chosen so that stays under `limit * headroom` in every window.
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
    """One API's limits per tenant: its windows, how many calls at once, the share of each
    window a caller keeps itself to, and the burst the holders may take together."""

    windows: tuple[Window, ...]
    concurrency: int
    headroom: float = 0.95
    burst: float = 2.0


@dataclass(frozen=True)
class Pace:
    """What one holder of a share may do: `rate` requests a second, `burst` at once, and
    `concurrency` in flight."""

    rate: float
    burst: float
    concurrency: int


def pace(limits: Limits, holders: int) -> Pace:
    """One holder's pace when `holders` share `limits` equally."""
    n = max(1, holders)
    burst = max(1.0, limits.burst / n)
    rate = min((w.limit * limits.headroom - n * burst) / w.seconds for w in limits.windows)
    # Never stop a holder entirely: the windows' floor is one request each per longest window.
    floor = 1.0 / max(w.seconds for w in limits.windows) / n
    return Pace(
        rate=max(rate / n, floor),
        burst=burst,
        concurrency=max(1, limits.concurrency // n),
    )


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
