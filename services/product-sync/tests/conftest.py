"""product-sync and the mapping registry on real Kafka, FerretDB and both sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dealbooks_contracts import SyncObjectType
from dealbooks_infra.sync_world import SyncStack, SyncWorld
from dealbooks_sync.parts import SyncParts
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry
from product_sync.app import Settings, build


@pytest.fixture
async def products(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SyncStack, SyncParts]]:
    world = SyncWorld.of(request)
    registry = build_registry(RegistrySettings(**world.settings("registry")), **world.tokens)
    service = build(Settings(**world.settings("products")), **world.tokens)
    async with world.running(registry, service, SyncObjectType.PRODUCTS) as stack:
        yield stack, service
