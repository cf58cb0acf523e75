"""contact-sync and the mapping registry on real Kafka, FerretDB and both sandboxes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from contact_sync.app import Settings, build
from dealbooks_contracts import SyncObjectType
from dealbooks_infra.sync_world import SyncStack, SyncWorld
from dealbooks_sync.parts import SyncParts
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry


@pytest.fixture
def contacts_settings() -> dict[str, Any]:
    """What a test module changes in contact-sync's settings: nothing, unless it says."""
    return {}


@pytest.fixture
def tune_contacts() -> Callable[[SyncParts], None]:
    """What a test module changes in contact-sync once it is built: nothing, unless it says."""
    return lambda service: None


@pytest.fixture
def seed_customers(qbo_sandbox: Any) -> Callable[[str, int, str], Awaitable[None]]:
    """`seed(realm, n, name)` creates `n` customers in `realm` as people do (their webhooks
    fire), four at a time: `{name} {i}`, e-mail `{name}{i}@example.com` in lower case."""

    def one(realm: str, name: str, i: int) -> None:
        email = f"{name.lower()}{i}@example.com"
        qbo_sandbox.user_creates(
            realm,
            "customers",
            {"DisplayName": f"{name} {i}", "PrimaryEmailAddr": {"Address": email}},
        )

    def seed(realm: str, n: int, name: str) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda i: one(realm, name, i), range(n)))

    async def seeded(realm: str, n: int, name: str) -> None:
        await asyncio.to_thread(seed, realm, n, name)

    return seeded


@pytest.fixture
async def contacts(
    request: pytest.FixtureRequest,
    contacts_settings: dict[str, Any],
    tune_contacts: Callable[[SyncParts], None],
) -> AsyncIterator[tuple[SyncStack, SyncParts]]:
    world = SyncWorld.of(request)
    registry = build_registry(RegistrySettings(**world.settings("registry")), **world.tokens)
    service = build(Settings(**world.settings("contacts", **contacts_settings)), **world.tokens)
    tune_contacts(service)
    async with world.running(registry, service, SyncObjectType.CONTACTS) as stack:
        yield stack, service
