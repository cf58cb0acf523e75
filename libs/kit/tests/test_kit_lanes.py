"""Lanes' offset bookkeeping, on plain records: what may be committed while handlers run.

Unit tests of the bookkeeping alone; the lanes on a real broker are in
test_kit_consumer_lanes_integration.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from dealbooks_kit.lanes import Lanes


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes


@dataclass
class Consumer:
    """Records each commit; owns partitions 0 and 1 of topic t."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    owned: set[TopicPartition] = field(
        default_factory=lambda: {TopicPartition("t", 0), TopicPartition("t", 1)}
    )

    held: set[TopicPartition] = field(default_factory=set)

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    def pause(self, *partitions: TopicPartition) -> None:
        self.held |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.held -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return set(self.held)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def committed(self, partition: int) -> int | None:
        tp = TopicPartition("t", partition)
        last = [c[tp] for c in self.commits if tp in c]
        return last[-1] if last else None


@dataclass
class Batch:
    raw_message: tuple[Record, ...]
    consumer: Consumer


class Gates:
    """A handler whose records finish only when their gate opens; failures are scripted."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.failures: dict[int, int] = {}
        self.handled: list[int] = []

    def gate(self, offset: int) -> asyncio.Event:
        return self.gates.setdefault(offset, asyncio.Event())

    async def handle(self, record: Record) -> bool:
        await self.gate(record.offset).wait()
        if self.failures.get(record.offset, 0) > 0:
            self.failures[record.offset] -= 1
            return False
        self.handled.append(record.offset)
        return True


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def lanes_for(gates: Gates, **options: Any) -> Lanes:
    return Lanes(
        handle=gates.handle,
        sort=lambda record: (record.key, record),
        concurrency=options.get("concurrency", 8),
        max_in_flight=options.get("max_in_flight", 100),
        name="test",
        retry_pause=0.0,
        commit_interval=options.get("commit_interval", 0.0),
        before_commit=options.get("before_commit"),
    )


async def test_commit_stops_below_the_oldest_record_still_being_handled() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates)
    # Partition 0: offsets 10 (tenant a, slow) and 11 (tenant b); partition 1: offset 5.
    batch = (Record("t", 0, 10, b"a"), Record("t", 0, 11, b"b"), Record("t", 1, 5, b"c"))
    await lanes.dispatch(Batch(batch, consumer))
    gates.gate(11).set()
    gates.gate(5).set()
    await settle()
    # 11 and 5 are done; partition 0 may not pass 10, which is still running.
    assert consumer.committed(0) == 10
    assert consumer.committed(1) == 6
    gates.gate(10).set()
    await settle()
    assert consumer.committed(0) == 12
    assert lanes.in_flight == 0


async def test_records_settled_within_the_commit_interval_share_one_commit() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates, commit_interval=0.05)
    batch = tuple(Record("t", 0, offset, key) for offset, key in ((30, b"a"), (31, b"b")))
    await lanes.dispatch(Batch(batch, consumer))
    gates.gate(30).set()
    await settle()
    gates.gate(31).set()
    await settle()
    assert consumer.commits == []  # nothing before the interval is up
    await asyncio.sleep(0.1)
    assert consumer.commits == [{TopicPartition("t", 0): 32}]
    await lanes.drain(timeout=1.0)
    assert consumer.commits == [{TopicPartition("t", 0): 32}]  # nothing new to commit


async def test_offsets_are_committed_only_after_what_must_be_durable_first() -> None:
    gates, consumer = Gates(), Consumer()
    written: list[int] = []
    failing = True

    async def before_commit() -> None:
        if failing:
            raise ConnectionError("database unreachable")
        written.append(len(consumer.commits))

    lanes = lanes_for(gates, before_commit=before_commit)
    gates.gate(40).set()
    await lanes.dispatch(Batch((Record("t", 0, 40, b"a"),), consumer))
    await settle()
    assert consumer.commits == []  # what had to be written first was not: no commit
    failing = False
    # Tried again after a pause, though nothing else settled.
    async with asyncio.timeout(5):
        while not consumer.commits:
            await asyncio.sleep(0.05)
    assert written == [0]  # written before the first commit
    assert consumer.committed(0) == 41


async def test_a_lane_keeps_its_order_and_a_failed_record_is_tried_again_in_place() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates)
    gates.failures[20] = 2
    for offset in (20, 21, 22):
        gates.gate(offset).set()
    batch = tuple(Record("t", 0, offset, b"a") for offset in (20, 21, 22))
    await lanes.dispatch(Batch(batch, consumer))
    await settle()
    assert gates.handled == [20, 21, 22]
    assert consumer.committed(0) == 23


async def test_records_of_a_revoked_partition_are_not_committed() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates)
    await lanes.dispatch(Batch((Record("t", 1, 7, b"a"), Record("t", 0, 3, b"b")), consumer))
    consumer.owned = {TopicPartition("t", 0)}
    gates.gate(7).set()
    gates.gate(3).set()
    await settle()
    assert consumer.committed(1) is None
    assert consumer.committed(0) == 4


async def test_drain_waits_for_running_lanes_and_takes_nothing_new() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates)
    await lanes.dispatch(Batch((Record("t", 0, 1, b"a"),), consumer))
    drained = asyncio.create_task(lanes.drain(timeout=5))
    await settle()
    await lanes.dispatch(Batch((Record("t", 0, 2, b"b"),), consumer))  # ignored: closing
    gates.gate(1).set()
    gates.gate(2).set()
    await drained
    assert gates.handled == [1]
    assert consumer.committed(0) == 2


async def test_fetching_pauses_while_too_many_records_are_unsettled_and_polling_goes_on() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates, max_in_flight=2)
    # The poll loop gets control back at once: a poll is what keeps the consumer in its group.
    await asyncio.wait_for(
        lanes.dispatch(Batch((Record("t", 0, 1, b"a"), Record("t", 0, 2, b"b")), consumer)),
        timeout=1,
    )
    assert consumer.paused() == consumer.owned  # two unsettled: nothing more is fetched
    gates.gate(1).set()
    await settle()
    assert consumer.paused() == set()  # room again
    gates.gate(2).set()
    await settle()
    assert gates.handled == [1, 2]
    assert consumer.committed(0) == 3


async def test_a_partition_taken_away_while_paused_is_not_resumed() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates, max_in_flight=1)
    await lanes.dispatch(Batch((Record("t", 0, 1, b"a"),), consumer))
    assert consumer.paused() == consumer.owned
    consumer.owned = {TopicPartition("t", 0)}  # a rebalance took partition 1
    gates.gate(1).set()
    await settle()
    assert consumer.paused() == {TopicPartition("t", 1)}  # left alone: no longer ours


async def test_offsets_wait_while_the_group_reassigns_partitions() -> None:
    gates, consumer = Gates(), Consumer()
    lanes = lanes_for(gates)
    told: list[str] = []

    class Theirs:
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            told.append("revoked")

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            told.append("assigned")

    listener = lanes.rebalances(Theirs())
    await lanes.dispatch(Batch((Record("t", 0, 1, b"a"),), consumer))
    await listener.on_partitions_revoked(consumer.owned)
    gates.gate(1).set()
    await settle()
    # Settled, but a commit now would carry the old generation: none is sent.
    assert consumer.commits == []
    assert await lanes.commit() is False
    await listener.on_partitions_assigned(consumer.owned)
    assert await lanes.commit() is True
    assert consumer.committed(0) == 2
    assert told == ["revoked", "assigned"]
