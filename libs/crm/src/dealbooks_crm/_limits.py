from __future__ import annotations

import math
from dataclasses import dataclass

from dealbooks_http import Limits, RateBudget, RetryPolicy, windows_of

__all__ = ["CrmLimits", "rolling_window_budget"]


@dataclass(frozen=True)
class CrmLimits:
    """The portal's published budgets. Scale the windows down only against a sped-up sandbox."""

    requests_per_window: int = 110
    window_seconds: float = 10.0
    search_per_second: int = 5
    search_window_seconds: float = 1.0
    headroom: float = 0.9
    concurrency: int = 6
    search_concurrency: int = 3

    def standard(self) -> Limits:
        """The ten-second limit, for a budget shared across processes."""
        return Limits(
            windows=windows_of((self.requests_per_window, self.window_seconds)),
            concurrency=self.concurrency,
            headroom=self.headroom,
        )

    def searches(self) -> Limits:
        """The search limit, for a budget shared across processes."""
        return Limits(
            windows=windows_of((self.search_per_second, self.search_window_seconds)),
            concurrency=self.search_concurrency,
            headroom=self.headroom,
        )


def rolling_window_budget(
    limit: int, window_seconds: float, *, headroom: float, concurrency: int
) -> RateBudget:
    """A `RateBudget` that never exceeds `limit * headroom` in any rolling window.

    A token bucket lets through its burst plus its refill within one window, so the burst is
    kept to a tenth of the allowance and the refill supplies the rest: burst + refill <= allowed.
    """
    allowed = max(1, math.floor(limit * headroom))
    if allowed == 1:
        return RateBudget(rate=1, period=window_seconds, concurrency=concurrency)
    burst = max(1, allowed // 10)
    refill = allowed - burst
    return RateBudget(rate=burst, period=window_seconds * burst / refill, concurrency=concurrency)


DEFAULT_RETRY = RetryPolicy(attempts=8, timeout=120.0, wait_initial=0.5, wait_max=12.0)
