"""Remembered answers: kept for a while, forgotten on this process's own change."""

from __future__ import annotations

import asyncio

from dealbooks_kit import Remembered


class Source:
    """A value behind a read that counts how often it was asked."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    async def read(self) -> str:
        self.reads += 1
        return self.value


async def test_an_answer_is_remembered_until_it_expires() -> None:
    memory: Remembered[str, str] = Remembered(0.2)
    source = Source("a")
    assert await memory.get("k", source.read, keep=bool) == "a"
    source.value = "b"  # changed elsewhere: not seen while remembered
    assert await memory.get("k", source.read, keep=bool) == "a"
    assert source.reads == 1
    await asyncio.sleep(0.25)
    assert await memory.get("k", source.read, keep=bool) == "b"


async def test_forget_makes_the_next_get_read_again() -> None:
    memory: Remembered[str, str] = Remembered(60)
    source = Source("a")
    await memory.get("k", source.read, keep=bool)
    source.value = "b"
    memory.forget("k")
    assert await memory.get("k", source.read, keep=bool) == "b"


async def test_answers_keep_turns_down_are_read_every_time() -> None:
    memory: Remembered[str, str] = Remembered(60)
    source = Source("")
    await memory.get("k", source.read, keep=bool)
    await memory.get("k", source.read, keep=bool)
    assert source.reads == 2


async def test_a_read_that_overlapped_a_forget_is_not_remembered() -> None:
    memory: Remembered[str, str] = Remembered(60)
    source = Source("old")

    async def slow_read() -> str:
        answer = await source.read()
        memory.forget("k")  # this process changed the value while the read was under way
        source.value = "new"
        return answer

    assert await memory.get("k", slow_read, keep=bool) == "old"
    assert await memory.get("k", source.read, keep=bool) == "new"
