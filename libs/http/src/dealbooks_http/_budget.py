from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter

from dealbooks_http._metrics import observe_budget_wait


class RateBudget:
    """Per-key request budget: at most `rate` requests per `period` seconds and
    at most `concurrency` in flight, for each key (a QBO realm, a CRM portal).

    Set it a little under the server's limit so a client never causes a 429 by itself.
    """

    def __init__(self, rate: float, period: float, concurrency: int) -> None:
        self._rate = rate
        self._period = period
        self._concurrency = concurrency
        self._limiters: dict[str, AsyncLimiter] = {}
        self._gates: dict[str, asyncio.Semaphore] = {}

    @asynccontextmanager
    async def slot(self, key: str, weight: int = 1, *, host: str = "") -> AsyncIterator[None]:
        """Wait for a request slot under `key`, hold it for the request's duration.

        `weight` is how many requests the server will count this one as (a QBO batch counts
        each item); units are taken one at a time, so a weight above the burst size still works.
        `host` (the API's, never the key: that is a tenant) labels the time spent waiting in
        `dealbooks_http_budget_wait_seconds`; without one the wait is not measured.
        """
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = AsyncLimiter(self._rate, self._period)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = asyncio.Semaphore(self._concurrency)
        started = time.perf_counter() if host else 0.0
        async with gate:
            for _ in range(max(1, weight)):
                await limiter.acquire()
            if host:
                observe_budget_wait(host, time.perf_counter() - started)
            yield
