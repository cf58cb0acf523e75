"""How a service's broker starts its subscribers: their group joins run together, and one
that fails stops the others before the start fails (no join is left running)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from dealbooks_kit import KitSettings
from dealbooks_kit.kafka import make_broker


class Member:
    """A subscriber whose start is a group join: it waits until every member is joining (or
    is cancelled), or fails once it has begun."""

    joining = 0
    most = 0

    def __init__(self, everyone: asyncio.Event, fails: bool = False) -> None:
        self.everyone, self.fails = everyone, fails
        self.joined = self.cancelled = False

    async def start(self) -> None:
        Member.joining += 1
        Member.most = max(Member.most, Member.joining)
        try:
            await asyncio.sleep(0)
            if self.fails:
                raise ConnectionError("the coordinator refused the join")
            await self.everyone.wait()
            self.joined = True
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            Member.joining -= 1


async def started(monkeypatch: pytest.MonkeyPatch, members: list[Member]) -> Any:
    broker = make_broker(KitSettings(service_name="kit-test"))
    published: list[str] = []

    async def connect() -> None:
        return None

    class Publisher:
        async def start(self) -> None:
            published.append("started")

    monkeypatch.setattr(broker, "connect", connect)
    monkeypatch.setattr(type(broker), "subscribers", property(lambda _: members))
    monkeypatch.setattr(type(broker), "publishers", property(lambda _: [Publisher()]))
    Member.joining = Member.most = 0
    return broker, published


async def test_the_subscribers_join_their_groups_together(monkeypatch: pytest.MonkeyPatch) -> None:
    everyone = asyncio.Event()
    members = [Member(everyone) for _ in range(5)]
    broker, published = await started(monkeypatch, members)

    async def all_joining() -> None:
        # Lets the joins end once all are under way, or (one after another) after a while.
        for _ in range(1000):
            if Member.joining == len(members):
                break
            await asyncio.sleep(0)
        everyone.set()

    await asyncio.gather(broker.start(), all_joining())

    # One after another, the second join could not begin before the first ended.
    assert Member.most == 5
    assert all(m.joined for m in members)
    assert published == ["started"] and broker.running


async def test_a_failed_join_stops_the_others_and_fails_the_start_as_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    never = asyncio.Event()
    waiting, failing = Member(never), Member(never, fails=True)
    broker, published = await started(monkeypatch, [failing, waiting])

    with pytest.raises(ConnectionError, match="refused the join"):
        await broker.start()

    assert waiting.cancelled and not waiting.joined
    assert Member.joining == 0  # nothing is left joining after the start failed
    assert published == [] and not broker.running
