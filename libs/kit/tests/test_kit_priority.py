"""Calls a person waits on go first: the gate's order, its cancellations, and work that says
nobody waits for it (what routes mark is in test_kit_auth.py)."""

from __future__ import annotations

import asyncio

from dealbooks_kit.priority import (
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


async def test_work_a_request_leaves_behind_can_say_nobody_waits_for_it() -> None:
    seen: dict[str, bool] = {}

    async def later() -> None:
        seen["task, as started"] = a_person_waits()
        background()
        seen["task, after background()"] = a_person_waits()

    with person_waiting():
        left_behind = asyncio.create_task(later())
        await left_behind
        seen["the request, after"] = a_person_waits()
    assert seen == {
        "task, as started": True,
        "task, after background()": False,
        "the request, after": True,
    }
    assert a_person_waits() is False
