"""product-sync and the mapping registry on real Kafka, FerretDB and both sandboxes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dealbooks_contracts import SyncObjectType
from dealbooks_http import StaticTokenProvider
from dealbooks_sync.service import SyncService
from dealbooks_sync.testing import SyncStack
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry
from product_sync.app import Settings, build

# The CRM sandbox fixture runs its ten-second window 50x faster.
CRM_WINDOW = 0.2


def _infra(namespace: str, suffix: str, kafka: str, mongo: str, idempotence: bool) -> dict:
    return {
        "kafka_bootstrap": kafka,
        "mongodb_uri": mongo,
        "mongodb_database": f"{namespace}_{suffix}",
        "topic_prefix": f"{namespace}.",
        "kafka_idempotence": idempotence,
        "handler_attempts": 3,
        "handler_wait_initial": 0.05,
        "handler_wait_max": 0.2,
        "crm_window_seconds": CRM_WINDOW,
    }


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
    infra = (namespace, kafka_bootstrap, mongo_uri, kafka_supports_idempotence)
    qbo_tokens = StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token})
    crm_tokens = StaticTokenProvider({crm_portal.key: crm_portal.access_token})
    urls = {"qbo_base_url": qbo_sandbox.base_url, "crm_base_url": crm_sandbox.base_url}
    registry = build_registry(
        RegistrySettings(**_infra(infra[0], "registry", *infra[1:]), **urls),
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
    )
    service = build(
        Settings(**_infra(infra[0], "contacts", *infra[1:]), **urls),
        qbo_tokens=qbo_tokens,
        crm_tokens=crm_tokens,
    )
    stack = SyncStack(
        registry=registry.runtime,
        registry_api=registry.api,
        sync=service.runtime,
        object_type=SyncObjectType.PRODUCTS,
        realm_id=qbo_company.realm_id,
        portal_id=crm_portal.key,
        kafka_bootstrap=kafka_bootstrap,
    )
    topics = ["product.synced.v1", "product.sync-failed.v1"]
    async with stack.running(topics):
        await stack.connect()
        yield stack, service
