"""The single-flight refresh loop on its own: one replica refreshes, the others wait for its
result and never hand out the token their caller was refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from connector_auth.refresh import RefreshBusy, SingleFlight


class Leases:
    """One holder per (key, version), as the store's unique lease documents give."""

    def __init__(self) -> None:
        self.held: set[tuple[str, int]] = set()

    async def acquire(self, key: str, version: int, owner: str, now: Any, until: Any) -> bool:
        if (key, version) in self.held:
            return False
        self.held.add((key, version))
        return True

    async def release(self, key: str, version: int, owner: str) -> None:
        self.held.discard((key, version))


def replica(leases: Leases, name: str, wait: float = 5.0) -> SingleFlight:
    return SingleFlight(leases, name, lambda: datetime.now(UTC), 30.0, wait)  # type: ignore[arg-type]


async def test_a_waiter_gets_the_refreshed_token_not_the_one_its_caller_was_refused() -> None:
    leases, doc = Leases(), {"token_version": 1, "token": "refused"}
    started, finish = asyncio.Event(), asyncio.Event()

    async def read() -> dict[str, Any]:
        return dict(doc)

    def usable(found: dict[str, Any]) -> str | None:
        return None if found["token"] == "refused" else str(found["token"])

    async def refresh(found: dict[str, Any]) -> str:
        started.set()
        await finish.wait()
        doc.update(token_version=2, token="fresh")
        return "fresh"

    async def must_not_refresh(found: dict[str, Any]) -> str:
        raise AssertionError("a second refresh of the same version")

    first = asyncio.create_task(replica(leases, "a").token("k", read, usable, refresh))
    await started.wait()
    second = asyncio.create_task(replica(leases, "b").token("k", read, usable, must_not_refresh))
    await asyncio.sleep(0.2)
    assert not second.done()  # it waits while the refresh is under way

    finish.set()
    assert await first == "fresh"
    assert await second == "fresh"


async def test_a_waiter_gives_up_with_refresh_busy_when_the_refresh_never_ends() -> None:
    leases = Leases()
    await leases.acquire("k", 1, "stuck", None, None)

    async def read() -> dict[str, Any]:
        return {"token_version": 1}

    with pytest.raises(RefreshBusy):
        await replica(leases, "b", wait=0.2).token("k", read, lambda d: None, read)
