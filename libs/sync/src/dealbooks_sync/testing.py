"""Test helpers for the sync services: run the registry and a sync service on real Kafka and
MongoDB, talk to the registry's API in-process, and watch the outcome events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    Envelope,
    QboEntityChanged,
    QboEnvironment,
    QboOperation,
    SyncObjectType,
    Tenant,
    decode,
)
from dealbooks_kit import ServiceRuntime
from starlette.applications import Starlette

from dealbooks_sync.engine import MappingSets


async def eventually(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll until `predicate()` returns something truthy; fail the test after `timeout`."""
    async with asyncio.timeout(timeout):
        while not (value := await predicate()):
            await asyncio.sleep(interval)
        return value


class SyncStack:
    """The mapping registry and one sync service, connected to one QBO realm and CRM portal."""

    def __init__(
        self,
        *,
        registry: ServiceRuntime,
        registry_api: Starlette,
        sync: ServiceRuntime,
        object_type: SyncObjectType,
        realm_id: str,
        portal_id: str,
        kafka_bootstrap: str,
    ) -> None:
        self.registry = registry
        self.sync = sync
        self.object_type = object_type
        self.tenant = Tenant(portal_id=portal_id, account_id=realm_id)
        self.realm_id = realm_id
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=registry_api), base_url="http://registry"
        )
        self.base = f"/accounts/{realm_id}/{object_type.value}"
        self.events: list[Envelope[Any]] = []
        self._bootstrap = kafka_bootstrap
        self._sets = MappingSets(sync.db)

    @contextlib.asynccontextmanager
    async def running(self, topics: list[str]) -> AsyncIterator[SyncStack]:
        consumer = AIOKafkaConsumer(
            *[self.sync.settings.topic(t) for t in topics],
            bootstrap_servers=self._bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        watcher = asyncio.create_task(self._watch(consumer))
        try:
            async with self.registry.running(), self.sync.running():
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
                for record in records:
                    self.events.append(decode(record.value))

    async def connect(self) -> None:
        """Announce the account as connector-auth would; wait for the default mappings."""
        connected = AccountConnected(
            company_name="Sandbox Company",
            country="US",
            home_currency="USD",
            multicurrency_enabled=False,
            custom_transaction_numbers=False,
            environment=QboEnvironment.SANDBOX,
            reason=AccountConnectedReason.CONNECTED,
            connected_at=datetime.now(UTC),
        )
        await self.registry.publisher.publish(
            Envelope.build(connected, source="connector-auth", tenant=self.tenant)
        )
        await self.applied_version(1)

    async def applied_version(self, version: int) -> None:
        """Wait until the sync service has applied mapping version `version`."""

        async def applied() -> bool:
            current = await self._sets.get(self.realm_id, self.object_type)
            return current is not None and current.version >= version

        await eventually(applied)

    async def settings(self, **changes: Any) -> dict[str, Any]:
        """Change sync settings through the API and wait until the sync service applied them."""
        response = await self.api.patch(f"{self.base}/settings", json=changes)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        await self.applied_version(body["version"])
        return body

    async def changed(
        self, entity: str, entity_id: str, operation: QboOperation = QboOperation.UPDATE
    ) -> Envelope[QboEntityChanged]:
        """Announce a QBO change as webhook-gateway would."""
        event = Envelope.build(
            QboEntityChanged(
                realm_id=self.realm_id,
                entity=entity,
                entity_id=entity_id,
                operation=operation,
                last_updated=datetime.now(UTC),
            ),
            source="webhook-gateway",
            tenant=self.tenant,
        )
        await self.sync.publisher.publish(event)
        return event

    async def outcomes(self, cause: Envelope[Any], count: int = 1) -> list[Envelope[Any]]:
        """The outcome events caused by `cause` (waits for `count` of them)."""

        async def found() -> list[Envelope[Any]] | None:
            matches = [e for e in self.events if e.causation_id == cause.id]
            return matches if len(matches) >= count else None

        result: list[Envelope[Any]] = await eventually(found)
        return result
