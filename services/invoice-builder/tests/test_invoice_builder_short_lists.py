"""The short lists a company's wizard steps share: asked once a minute, not once a step."""

from __future__ import annotations

from typing import Any

from invoice_builder.short_lists import ShortLists


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Reader:
    def __init__(self) -> None:
        self.asked = 0

    async def __call__(self) -> dict[str, Any]:
        self.asked += 1
        return {"terms": [{"id": str(self.asked)}]}


async def test_a_list_is_read_once_while_it_is_kept_and_again_after() -> None:
    clock, read = Clock(), Reader()
    lists = ShortLists(seconds=60, clock=clock)
    first = await lists.get("r1", "terms", read)
    clock.now += 59
    assert await lists.get("r1", "terms", read) == first
    assert read.asked == 1
    clock.now += 2
    assert await lists.get("r1", "terms", read) == {"terms": [{"id": "2"}]}
    assert read.asked == 2


async def test_each_company_and_kind_is_kept_apart() -> None:
    read = Reader()
    lists = ShortLists(clock=Clock())
    await lists.get("r1", "terms", read)
    await lists.get("r2", "terms", read)
    await lists.get("r1", "tax-codes", read)
    assert read.asked == 3


async def test_a_full_cache_starts_over_instead_of_growing() -> None:
    read = Reader()
    lists = ShortLists(limit=2, clock=Clock())
    for realm in ("r1", "r2", "r3"):
        await lists.get(realm, "terms", read)
    assert len(lists._kept) == 1  # cleared at the limit, then the third kept
    await lists.get("r3", "terms", read)
    assert read.asked == 3
