"""mapping-registry on real Kafka, FerretDB and both sandboxes, with its API in-process and
the `mapping.changed` events it publishes watched on the broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    Envelope,
    MappingChanged,
    QboEnvironment,
    SyncObjectType,
    Tenant,
    decode,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_sync.testing import eventually
from mapping_registry.app import MappingRegistry, Settings, build


class Registry:
    """The running registry, its API, and every `mapping.changed` it published."""

    def __init__(self, service: MappingRegistry, tenant: Tenant, kafka_bootstrap: str) -> None:
        self.service = service
        self.runtime = service.runtime
        self.tenant = tenant
        self.realm_id = tenant.require_account_id()
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=service.api), base_url="http://registry"
        )
        self.announced: list[Envelope[MappingChanged]] = []
        self._bootstrap = kafka_bootstrap

    def base(self, object_type: SyncObjectType = SyncObjectType.CONTACTS) -> str:
        return f"/accounts/{self.realm_id}/{object_type.value}"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Registry]:
        consumer = AIOKafkaConsumer(
            self.runtime.settings.topic("mapping.changed.v1"),
            bootstrap_servers=self._bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        watcher = asyncio.create_task(self._watch(consumer))
        try:
            async with self.runtime.running():
                yield self
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await consumer.stop()
            await self.api.aclose()

    async def _watch(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.announced += [decode(r.value) for r in records]

    async def connected(
        self, reason: AccountConnectedReason = AccountConnectedReason.CONNECTED
    ) -> Envelope[AccountConnected]:
        """Announce the account as connector-auth would."""
        event = Envelope.build(
            AccountConnected(
                company_name=f"Sandbox Company ({reason.value})",
                country="US",
                home_currency="USD",
                multicurrency_enabled=False,
                custom_transaction_numbers=False,
                environment=QboEnvironment.SANDBOX,
                reason=reason,
                connected_at=datetime.now(UTC),
            ),
            source="connector-auth",
            tenant=self.tenant,
        )
        await self.runtime.publisher.publish(event)
        return event

    async def handled(self, consumer: str, event: Envelope[Any]) -> None:
        """Wait until the registry's `consumer` has settled `event`."""

        async def settled() -> bool:
            key = {"_id": f"{consumer}:{event.id}"}
            return await self.runtime.db["processed_events"].find_one(key) is not None

        await eventually(settled)

    def versions(self, object_type: SyncObjectType) -> list[int]:
        """The versions announced for `object_type`, in publication order; an event the
        outbox published twice (a relay racing the periodic pass) counts once."""
        unique = {e.id: e for e in self.announced if e.data.object_type is object_type}
        return [e.data.version for e in unique.values()]

    def latest(self, object_type: SyncObjectType) -> Envelope[MappingChanged]:
        return max(
            (e for e in self.announced if e.data.object_type is object_type),
            key=lambda e: e.data.version,
        )

    async def announced_version(self, object_type: SyncObjectType, version: int) -> None:
        async def seen() -> bool:
            return version in self.versions(object_type)

        await eventually(seen)


@pytest.fixture
async def registry(
    namespace,
    kafka_bootstrap,
    mongo_uri,
    kafka_supports_idempotence,
    qbo_sandbox,
    qbo_company,
    crm_sandbox,
    crm_portal,
) -> AsyncIterator[Registry]:
    settings = Settings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongo_uri,
        mongodb_database=f"{namespace}_registry",
        topic_prefix=f"{namespace}.",
        kafka_idempotence=kafka_supports_idempotence,
        handler_attempts=3,
        handler_wait_initial=0.05,
        handler_wait_max=0.2,
        outbox_relay_seconds=0.2,
        qbo_base_url=qbo_sandbox.base_url,
        crm_base_url=crm_sandbox.base_url,
        crm_window_seconds=0.2,  # the CRM sandbox fixture runs its window 50x faster
    )
    service = build(
        settings,
        qbo_tokens=StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token}),
        crm_tokens=StaticTokenProvider({crm_portal.key: crm_portal.access_token}),
    )
    tenant = Tenant(portal_id=crm_portal.key, account_id=qbo_company.realm_id)
    async with Registry(service, tenant, kafka_bootstrap).running() as running:
        yield running
