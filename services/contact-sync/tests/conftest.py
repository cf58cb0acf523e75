"""contact-sync and the mapping registry on real Kafka, FerretDB and both sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from contact_sync.app import Settings, build
from dealbooks_contracts import SyncObjectType
from dealbooks_infra.sync_world import SyncStack, SyncWorld
from dealbooks_sync.parts import SyncParts
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry


@pytest.fixture
def tune_contacts() -> Callable[[SyncParts], None]:
    """What a test module changes in contact-sync once it is built: nothing, unless it says."""
    return lambda service: None


@pytest.fixture
async def contacts(
    request: pytest.FixtureRequest, tune_contacts: Callable[[SyncParts], None]
) -> AsyncIterator[tuple[SyncStack, SyncParts]]:
    world = SyncWorld.of(request)
    registry = build_registry(RegistrySettings(**world.settings("registry")), **world.tokens)
    service = build(Settings(**world.settings("contacts")), **world.tokens)
    tune_contacts(service)
    async with world.running(registry, service, SyncObjectType.CONTACTS) as stack:
        yield stack, service
