"""Calls a person waits on go first: the gate's order, its cancellations, and what marks work
as a person's."""

from __future__ import annotations

import asyncio
from typing import Any

from dealbooks_kit.priority import (
    PersonWaits,
    PriorityGate,
    a_person_waits,
    background,
    person_waiting,
)


async def _queue(gate: PriorityGate, order: list[str], who: str, person: bool) -> None:
    async with gate.held(person):
        order.append(who)
        await asyncio.sleep(0)


async def test_a_freed_place_goes_to_the_person_first_then_in_arrival_order() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    async with gate.held(False):
        waiting = [
            asyncio.create_task(_queue(gate, order, "job-1", person=False)),
            asyncio.create_task(_queue(gate, order, "job-2", person=False)),
            asyncio.create_task(_queue(gate, order, "rep-1", person=True)),
            asyncio.create_task(_queue(gate, order, "job-3", person=False)),
            asyncio.create_task(_queue(gate, order, "rep-2", person=True)),
        ]
        await asyncio.sleep(0.01)
        assert order == [] and gate.waiting == 5
    await asyncio.gather(*waiting)
    assert order == ["rep-1", "rep-2", "job-1", "job-2", "job-3"]


async def test_no_more_than_its_capacity_hold_it_at_once() -> None:
    gate = PriorityGate(3)
    inside = 0
    most = 0

    async def hold(person: bool) -> None:
        nonlocal inside, most
        async with gate.held(person):
            inside += 1
            most = max(most, inside)
            await asyncio.sleep(0.005)
            inside -= 1

    await asyncio.gather(*(hold(n % 2 == 0) for n in range(12)))
    assert most == 3
    assert gate.waiting == 0
    # All places are free again: three enter at once without waiting.
    async with gate.held(False), gate.held(False), gate.held(True):
        assert gate.waiting == 0


async def test_a_waiter_cancelled_in_the_queue_or_just_let_in_loses_no_place() -> None:
    gate = PriorityGate(1)
    order: list[str] = []
    async with gate.held(False):
        gone = asyncio.create_task(_queue(gate, order, "gone", person=True))
        after = asyncio.create_task(_queue(gate, order, "after", person=False))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        assert gate.waiting == 1
    await after
    assert order == ["after"]

    # Let in and cancelled before it ran: its place goes on to the next in the queue.
    async with gate.held(False):
        late = asyncio.create_task(_queue(gate, order, "late", person=True))
        next_one = asyncio.create_task(_queue(gate, order, "next", person=False))
        await asyncio.sleep(0.01)
    late.cancel()  # the place was handed to it as the holder left; it has not run yet
    await asyncio.wait_for(next_one, 1.0)
    assert order == ["after", "next"]
    async with gate.held(False):  # and the gate is whole
        assert gate.waiting == 0


async def test_an_http_request_is_a_persons_wait_and_work_it_leaves_behind_can_say_it_is_not() -> (
    None
):
    seen: dict[str, bool] = {}
    left_behind: list[asyncio.Task[None]] = []

    async def later() -> None:
        seen["task, as started"] = a_person_waits()
        background()
        seen["task, after background()"] = a_person_waits()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen[scope["type"]] = a_person_waits()
        if scope["type"] == "http":
            left_behind.append(asyncio.create_task(later()))

    for kind in ("http", "lifespan"):
        await PersonWaits(app)({"type": kind}, None, None)
    await asyncio.gather(*left_behind)
    assert seen == {
        "http": True,
        "lifespan": False,
        "task, as started": True,
        "task, after background()": False,
    }
    assert a_person_waits() is False
    with person_waiting():
        assert a_person_waits() is True
    assert a_person_waits() is False
