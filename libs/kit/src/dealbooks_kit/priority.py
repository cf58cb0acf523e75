"""Calls a person waits on go first.

A company's QuickBooks budget and a portal's CRM budget (`dealbooks_kit.budgets`) are shared by
everything a process does for that tenant: a backfill's pages, a reconciliation pass, a
consumer's lanes, and the wizard's customer search that a sales rep is looking at. Without a
lane of its own, that search waits behind every background call queued before it.

So work is marked by who waits on it. A route a person calls marks it (the guard, for a
person's grant or session and for the app card's signed requests: `dealbooks_kit.auth.PEOPLE`;
not for services' calls or operators' sweeps), and so does handling an event of a consumer
whose `origin` is a person (an invoice request, whose outcome page the rep is watching). Work
that outlives its request, such as a backfill an operator started, says it is `background()`
at its start.

Where a tenant's calls queue in a process, a person's call takes the next free place ahead of
every background call (`PriorityGate`); between persons, and between background calls, the
first to come is the first served.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar

_PERSON_WAITS: ContextVar[bool] = ContextVar("dealbooks_person_waits", default=False)


def a_person_waits() -> bool:
    """Whether the work running now has a person waiting on it."""
    return _PERSON_WAITS.get()


@contextlib.contextmanager
def person_waiting(waits: bool = True) -> Iterator[None]:
    """Mark the work inside (and the tasks it starts) as one a person waits on, or not."""
    token = _PERSON_WAITS.set(waits)
    try:
        yield
    finally:
        _PERSON_WAITS.reset(token)


def background() -> None:
    """From here on in this task, nobody waits: for work started by a request that goes on
    after its answer (a task copies its starter's marks)."""
    _PERSON_WAITS.set(False)


class PriorityGate:
    """At most `capacity` holders at once. A place that comes free goes to the person who has
    waited longest, else to the background caller who has waited longest; a waiter cancelled
    before it got in leaves the queue, and one cancelled just after passes its place on."""

    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._persons: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        """Callers waiting for a place. A cancelled caller's turn stays in its queue, done,
        until the caller has run again to remove it: not counted, and skipped by `_leave`."""
        return sum(not f.done() for f in (*self._persons, *self._others))

    @contextlib.asynccontextmanager
    async def held(self, person: bool) -> AsyncIterator[None]:
        await self._enter(person)
        try:
            yield
        finally:
            self._leave()

    async def _enter(self, person: bool) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._persons if person else self._others
        queue.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._leave()  # given the place as it was cancelled: the next one has it
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(turn)
            raise

    def _leave(self) -> None:
        for queue in (self._persons, self._others):
            while queue:
                turn = queue.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._free += 1


__all__ = [
    "PriorityGate",
    "a_person_waits",
    "background",
    "person_waiting",
]
