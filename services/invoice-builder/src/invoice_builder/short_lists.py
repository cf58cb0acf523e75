"""A company's short lists (terms, tax codes, the first page of items and customers) kept
for a minute per process: the wizard asks for them on every step, and each ask would
otherwise spend the company's QuickBooks budget. A change in QuickBooks shows within
`seconds`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any


class ShortLists:
    def __init__(
        self,
        seconds: float = 60.0,
        limit: int = 5000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds, self.limit = seconds, limit
        self._clock = clock
        self._kept: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    async def get(
        self, realm_id: str, kind: str, read: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """The company's list of `kind`, as kept, or as `read` answers it once it is not."""
        now = self._clock()
        kept = self._kept.get((realm_id, kind))
        if kept is not None and kept[0] > now:
            return kept[1]
        answer = await read()
        if len(self._kept) >= self.limit:
            self._kept.clear()
        self._kept[(realm_id, kind)] = (now + self.seconds, answer)
        return answer
