"""product-sync and the mapping registry on real Kafka, FerretDB and both sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dealbooks_contracts import SyncObjectType
from dealbooks_sync.service import SyncService
from dealbooks_sync.testing import SyncStack, SyncWorld
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry
from product_sync.app import Settings, build


@pytest.fixture
async def products(
    namespace,
    kafka_bootstrap,
    mongo_uri,
    kafka_supports_idempotence,
    qbo_sandbox,
    qbo_company,
    crm_sandbox,
    crm_portal,
) -> AsyncIterator[tuple[SyncStack, SyncService]]:
    world = SyncWorld(
        namespace,
        kafka_bootstrap,
        mongo_uri,
        kafka_supports_idempotence,
        qbo_sandbox,
        qbo_company,
        crm_sandbox,
        crm_portal,
    )
    registry = build_registry(RegistrySettings(**world.settings("registry")), **world.tokens)
    service = build(Settings(**world.settings("products")), **world.tokens)
    async with world.running(registry, service, SyncObjectType.PRODUCTS) as stack:
        yield stack, service
