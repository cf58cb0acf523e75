from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiolimiter import AsyncLimiter


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
    async def slot(self, key: str, weight: int = 1) -> AsyncIterator[None]:
        """Wait for a request slot under `key`, hold it for the request's duration.

        `weight` is how many requests the server will count this one as (a QBO batch counts
        each item); units are taken one at a time, so a weight above the burst size still works.
        """
        limiter = self._limiters.setdefault(key, AsyncLimiter(self._rate, self._period))
        gate = self._gates.setdefault(key, asyncio.Semaphore(self._concurrency))
        async with gate:
            for _ in range(max(1, weight)):
                await limiter.acquire()
            yield
