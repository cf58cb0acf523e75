"""Ordered lanes over polled Kafka records, committing offsets only below the lowest unsettled one.

`Lanes.dispatch` takes each polled batch: every record joins the queue of its lane (the
consumer's `sort` names the lane, tenant or finer, and what to hand the handler, so a record
is decoded once) and the call returns at once, so the poll loop keeps fetching while handlers
run. When `max_in_flight` records are unsettled, the consumer's partitions are paused until
there is room again: the poll loop goes on polling (and fetches nothing), so a consumer whose
handlers are slow (an API's budget, a service down) stays in its group instead of being taken
for dead after Kafka's poll interval and set off a rebalance that delivers everything
in flight again. One task
per non-empty lane works through its queue in order; a semaphore caps how many handlers run at
once across lanes. A record the handler could not settle is tried again in place after a
pause, so nothing behind it in its lane overtakes it.

Offsets: per partition, the offset to commit is the lowest one still unsettled (or one past the
highest fetched when all settled). Settled records therefore stay uncommitted while an older
record of their partition is in flight elsewhere; a crash replays them and the consumer's
dedupe check (or, with `dedupe=False`, the handler's own natural key) skips each with one
look-up. Commits are coalesced: one runs at a time, at most
every `commit_interval` seconds, and takes whatever settled meanwhile (each commit is a write to
Kafka's offsets log; one per record cost the broker more than the records did).

What an operator watches (`in_flight`, `oldest_unsettled_seconds`, `lag`) is computed when
asked (at a metrics scrape), from what the lanes keep anyway, so records pay nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from dealbooks_kit.logging import get_logger

log = get_logger(__name__)

_COMMIT_RETRY_PAUSE = 0.5


class _PartitionOffsets:
    """Which fetched offsets of one partition are unsettled, and what may be committed."""

    def __init__(self) -> None:
        self.unsettled: Counter[int] = Counter()  # a rebalance can fetch a record twice
        self.fetched_to = -1
        self.committed = -1

    def fetched(self, offset: int) -> None:
        self.unsettled[offset] += 1
        self.fetched_to = max(self.fetched_to, offset + 1)

    def settled(self, offset: int) -> None:
        self.unsettled[offset] -= 1
        if self.unsettled[offset] <= 0:
            del self.unsettled[offset]

    def committable(self) -> int:
        return min(self.unsettled) if self.unsettled else self.fetched_to


class _Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the lanes when the group takes partitions away and hands them out again, and
    passes both on to `then` (a listener the subscriber was given)."""

    def __init__(self, lanes: Lanes, then: Any = None) -> None:
        self._lanes = lanes
        self._then = then

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._lanes._rebalancing = True
        if self._then is not None:
            await self._then.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._lanes._rebalancing = False
        if self._then is not None:
            await self._then.on_partitions_assigned(assigned)


class Lanes:
    """Runs `handle(item) -> settled?` over polled records, in order within each lane;
    `sort(record)` gives each record's lane and the item its handler gets."""

    def __init__(
        self,
        *,
        handle: Callable[[Any], Awaitable[bool]],
        sort: Callable[[Any], tuple[Any, Any]],
        concurrency: int,
        max_in_flight: int,
        name: str,
        retry_pause: float = 1.0,
        commit_interval: float = 0.0,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._handle = handle
        self._sort = sort
        self._slots = asyncio.Semaphore(max(1, concurrency))
        self._max_in_flight = max(1, max_in_flight)
        self._name = name
        self._retry_pause = retry_pause
        self._commit_interval = commit_interval
        self._before_commit = before_commit
        # lane -> (record, item, when fetched)
        self._queues: dict[Any, deque[tuple[Any, Any, float]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._offsets: dict[TopicPartition, _PartitionOffsets] = {}
        self._in_flight = 0
        self._paused = False
        self._rebalancing = False
        self._consumer: Any = None
        self._dirty = False
        self._committer: asyncio.Task[None] | None = None
        self._closing = False

    def rebalances(self, then: Any = None) -> ConsumerRebalanceListener:
        """The listener to subscribe with: while the group reassigns partitions, offsets wait.
        A commit sent then fails on the old generation and makes the member rejoin once more;
        retried every half second through every rebalance, such failures kept two replicas
        rebalancing each other for minutes. `then`: a listener of the caller's, told too."""
        return _Rebalances(self, then)

    @property
    def in_flight(self) -> int:
        """Records fetched and not yet settled."""
        return self._in_flight

    def oldest_unsettled_seconds(self) -> float:
        """Seconds since the oldest unsettled record was fetched; 0 when none is."""
        # Each lane is in fetch order, so its head is its oldest record.
        heads = [queue[0][2] for queue in list(self._queues.values()) if queue]
        return time.monotonic() - min(heads) if heads else 0.0

    def lag(self) -> int:
        """Per partition held, the last known end offset (from fetch responses, no request)
        minus the offset to commit next, summed; partitions nothing was fetched from yet since
        they were taken are left out (their position is not known here)."""
        consumer = self._consumer
        if consumer is None:
            return 0
        total = 0
        for partition in consumer.assignment():
            offsets = self._offsets.get(partition)
            highwater = consumer.highwater(partition)
            if offsets is not None and highwater is not None:
                total += max(0, highwater - offsets.committable())
        return total

    async def dispatch(self, message: Any) -> None:
        """Queue a polled batch (a faststream message) on its lanes; waits only for room."""
        if self._closing:
            return  # not committed: the group's next owner (or next start) fetches them again
        records = message.raw_message
        if not isinstance(records, tuple):
            records = (records,)
        self._consumer = message.consumer
        fetched_at = time.monotonic()
        for record in records:
            partition = TopicPartition(record.topic, record.partition)
            self._offsets.setdefault(partition, _PartitionOffsets()).fetched(record.offset)
            self._in_flight += 1
            lane, item = self._sort(record)
            queue = self._queues.get(lane)
            if queue is None:
                queue = self._queues[lane] = deque()
                worker = asyncio.create_task(self._work(lane, queue), name=f"lane {self._name}")
                self._workers.add(worker)
                worker.add_done_callback(self._workers.discard)
            queue.append((record, item, fetched_at))
        if self._in_flight >= self._max_in_flight:
            self._pause()

    def _pause(self) -> None:
        consumer = self._consumer
        if consumer is not None and not self._closing:
            consumer.pause(*consumer.assignment())
            self._paused = True

    def _resume(self) -> None:
        consumer = self._consumer
        self._paused = False
        if consumer is not None:
            # Only what is still assigned: a rebalance meanwhile brought fresh, unpaused state.
            consumer.resume(*(consumer.paused() & consumer.assignment()))

    async def _work(self, lane: Any, queue: deque[tuple[Any, Any, float]]) -> None:
        try:
            while queue:
                record, item, _ = queue[0]
                while True:
                    async with self._slots:
                        settled = await self._handle(item)
                    if settled:
                        break
                    if self._closing:
                        return  # left unsettled, so uncommitted: redelivered after restart
                    await asyncio.sleep(self._retry_pause)
                queue.popleft()
                self._settled(record)
        finally:
            # No await between the emptiness check and this: dispatch sees a live queue or none.
            if self._queues.get(lane) is queue:
                del self._queues[lane]

    def _settled(self, record: Any) -> None:
        offsets = self._offsets.get(TopicPartition(record.topic, record.partition))
        if offsets is not None:
            offsets.settled(record.offset)
        self._in_flight -= 1
        if self._paused and self._in_flight < self._max_in_flight:
            self._resume()
        self._dirty = True
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name=f"commit {self._name}")

    async def _commit_loop(self) -> None:
        while self._dirty:
            if self._commit_interval > 0 and not self._closing:
                await asyncio.sleep(self._commit_interval)
            self._dirty = False
            if not await self.commit() and not self._closing:
                # Tried again after a pause, even if nothing else settles meanwhile.
                self._dirty = True
                await asyncio.sleep(max(self._commit_interval, _COMMIT_RETRY_PAUSE))

    async def commit(self) -> bool:
        """Commit, per assigned partition, everything below its lowest unsettled offset, after
        `before_commit` (what must be durable before the offsets are). False if that failed."""
        consumer = self._consumer
        if consumer is None:
            return True
        if self._rebalancing:
            return False  # kept for when the group has handed the partitions out again
        assigned = consumer.assignment()
        for partition in [p for p in self._offsets if p not in assigned]:
            # Revoked: its next owner starts from the last commit; forget what we tracked.
            if not self._offsets[partition].unsettled:
                del self._offsets[partition]
        due = {
            partition: offsets.committable()
            for partition, offsets in self._offsets.items()
            if partition in assigned and offsets.committable() > offsets.committed
        }
        if not due:
            return True
        try:
            if self._before_commit is not None:
                await self._before_commit()
            await consumer.commit(due)
        except Exception as exc:
            # A rebalance, a broker or database hiccup: tried again shortly.
            log.warning("offsets not committed yet", consumer=self._name, error=repr(exc))
            return False
        for partition, offset in due.items():
            if partition in self._offsets:
                self._offsets[partition].committed = offset
        return True

    def reopen(self) -> None:
        """Take records again after a drain; what was tracked then is forgotten."""
        self._closing = False
        self._offsets.clear()
        self._in_flight = 0
        self._consumer = None
        self._paused = False

    async def drain(self, timeout: float) -> None:
        """Take no more records, give lanes `timeout` seconds to finish, commit what settled.

        Lanes still running after that are cancelled; their records stay uncommitted."""
        self._closing = True
        if self._paused:
            self._resume()  # what a restart or the group's next owner polls is not held back
        workers = set(self._workers)
        if workers:
            _, pending = await asyncio.wait(workers, timeout=timeout)
            for worker in pending:
                worker.cancel()
            for worker in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        with contextlib.suppress(Exception):
            await self.commit()
