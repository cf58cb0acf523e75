"""Answers remembered for a few seconds: for reads every event makes of facts that rarely change."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """Per key, the answer of the last read, for `seconds`.

    The process forgets a key at once when it changes that key itself (`forget`, before and
    after its write); a change another replica made is seen when the answer expires. A read
    that overlapped a `forget` is not remembered (it may predate the change), nor is an
    answer `keep` turns down (say, "not connected", which another replica may change and a
    caller would act on for good)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._answers: dict[K, tuple[float, V]] = {}
        self._forgotten = 0

    async def get(self, key: K, read: Callable[[], Awaitable[V]], keep: Callable[[V], bool]) -> V:
        known = self._answers.get(key)
        if known is not None and time.monotonic() - known[0] < self._seconds:
            return known[1]
        forgotten = self._forgotten
        answer = await read()
        if keep(answer) and forgotten == self._forgotten:
            self._answers[key] = (time.monotonic(), answer)
        else:
            self._answers.pop(key, None)
        return answer

    def forget(self, key: K) -> None:
        self._answers.pop(key, None)
        self._forgotten += 1
