"""Refreshing a token once across replicas: the one loop both token keepers (QuickBooks
accounts, CRM installs) run around their own refresh call."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from connector_auth import domain
from connector_auth.crypto import TokenCipher
from connector_auth.settings import ConnectorAuthSettings
from connector_auth.store import RefreshLeases

T = TypeVar("T")
Doc = dict[str, Any]


def token_digest(token: str) -> str:
    """How a caller names a token it was refused without sending it back."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class StoredAccess:
    """How a token keeper judges the access token it stored: usable, or due for a refresh."""

    cipher: TokenCipher
    clock: Callable[[], datetime]
    margin_seconds: float

    def usable(self, tokens: Doc, context: str, rejected_digest: str | None) -> str | None:
        """The access token of `tokens` (sealed under `context`), unless the caller was
        refused it or it expires within the margin."""
        access = self.cipher.decrypt(tokens["access"], context)
        stale = rejected_digest == token_digest(access)
        if stale or domain.needs_refresh(
            tokens["access_expires_at"], self.clock(), self.margin_seconds
        ):
            return None
        return access


class RefreshBusy(Exception):
    """Another replica is refreshing and did not finish in time; try again shortly."""


class SingleFlight:
    """Per token document and version, one lease: the replica that wins it refreshes, the
    others wait for the document to carry the new version and use what it holds.

    After a successful refresh the lease stays until its time is up: a replica that read the
    old version just before could otherwise take the lease for it and spend the refresh token
    that was just rotated. It reads the new version instead."""

    def __init__(
        self,
        leases: RefreshLeases,
        replica: str,
        clock: Callable[[], datetime],
        lease_seconds: float,
        wait_seconds: float,
    ) -> None:
        self._leases = leases
        self._replica = replica
        self._clock = clock
        self._lease_seconds = lease_seconds
        self._wait_seconds = wait_seconds
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def of_this_process(
        cls, leases: RefreshLeases, clock: Callable[[], datetime], settings: ConnectorAuthSettings
    ) -> SingleFlight:
        """The single flight of this process (a replica name of its own), its lease and wait
        times from `settings`."""
        return cls(
            leases,
            secrets.token_hex(8),
            clock,
            settings.refresh_lease_seconds,
            settings.refresh_wait_seconds,
        )

    async def token(
        self,
        key: str,
        read: Callable[[], Awaitable[Doc]],
        usable: Callable[[Doc], T | None],
        refresh: Callable[[Doc], Awaitable[T]],
    ) -> T:
        """What `usable(doc)` finds in the document `read` gives, or else what `refresh(doc)`
        makes of it, once across replicas. `read` raises when the document is gone or unusable.
        A waiter reads again until the document holds something usable: a token the caller
        was refused stays unusable until another replica's refresh replaced it (or failed)."""
        # The local lock spares MongoDB the polling of same-process waiters.
        async with self._locks.setdefault(key, asyncio.Lock()):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._wait_seconds
            while True:
                doc = await read()
                found = usable(doc)
                if found is not None:
                    return found
                now = self._clock()
                version = doc["token_version"]
                until = now + timedelta(seconds=self._lease_seconds)
                if await self._leases.acquire(key, version, self._replica, now, until):
                    try:
                        return await refresh(doc)
                    except BaseException:
                        await self._leases.release(key, version, self._replica)
                        raise
                # Someone else holds the lease (or just refreshed): wait for their result.
                if loop.time() > deadline:
                    raise RefreshBusy(key)
                await asyncio.sleep(0.05)
