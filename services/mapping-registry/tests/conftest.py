"""mapping-registry on real Kafka, FerretDB and both sandboxes, with its API in-process and
the `mapping.changed` events it publishes watched on the broker."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    Envelope,
    MappingChanged,
    SyncObjectType,
    Tenant,
)
from dealbooks_infra.sync_world import SyncWorld, bearer, grant
from dealbooks_infra.testing import account_connected, envelope_of, eventually, watching
from mapping_registry.app import MappingRegistry, Settings, build


class Registry:
    """The running registry, its API, and every `mapping.changed` it published."""

    def __init__(self, service: MappingRegistry, tenant: Tenant, kafka_bootstrap: str) -> None:
        self.service = service
        self.runtime = service.runtime
        self.tenant = tenant
        self.realm_id = tenant.require_account_id()
        self.portal_id = tenant.portal_id
        # As an admin signed in for the account's portal calls it.
        self.api = self.client(grant(self.portal_id))
        self.announced: list[Envelope[MappingChanged]] = []
        self._bootstrap = kafka_bootstrap

    def client(self, token: str | None) -> httpx.AsyncClient:
        """The registry's API in-process, called with `token` (None: no credential)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.service.api),
            base_url="http://registry",
            headers=bearer(token),
        )

    def base(
        self, object_type: SyncObjectType = SyncObjectType.CONTACTS, portal_id: str | None = None
    ) -> str:
        return (
            f"/portals/{portal_id or self.portal_id}/accounts/{self.realm_id}/{object_type.value}"
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Registry]:
        topic = self.runtime.settings.topic("mapping.changed.v1")
        try:
            async with (
                watching(self._bootstrap, [topic], lambda r: self.announced.append(envelope_of(r))),
                self.runtime.running(),
            ):
                yield self
        finally:
            await self.api.aclose()
            await self.service.aclose()  # its QBO and CRM clients' connections

    async def connected(
        self, reason: AccountConnectedReason = AccountConnectedReason.CONNECTED
    ) -> Envelope[AccountConnected]:
        """Announce the account as connector-auth would."""
        event = Envelope.build(
            account_connected(company_name=f"Sandbox Company ({reason.value})", reason=reason),
            source="connector-auth",
            tenant=self.tenant,
        )
        await self.runtime.publisher.publish(event)
        return event

    async def seeded(self) -> None:
        """Announce the account and wait until its contact and product mappings are seeded
        (version 1 of each announced)."""
        await self.connected()
        await self.announced_version(SyncObjectType.CONTACTS, 1)
        await self.announced_version(SyncObjectType.PRODUCTS, 1)

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
async def registry(request: pytest.FixtureRequest) -> AsyncIterator[Registry]:
    world = SyncWorld.of(request)
    service = build(
        Settings(**world.settings("registry", outbox_relay_seconds=0.2)), **world.tokens
    )
    tenant = Tenant(portal_id=world.crm_portal.key, account_id=world.qbo_company.realm_id)
    async with Registry(service, tenant, world.kafka_bootstrap).running() as running:
        yield running
