"""Test support for the sync services (kept out of their runtime package): run the registry
and a sync service on real Kafka and MongoDB against both sandboxes, talk to the registry's API
in-process, and watch the outcome events."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from dealbooks_contracts import (
    Envelope,
    QboEntityChanged,
    QboOperation,
    SyncObjectType,
    Tenant,
)
from dealbooks_http import StaticTokenProvider
from dealbooks_kit import Guard, ServiceRuntime
from dealbooks_kit.auth import mint_grant
from dealbooks_sync.mapping_sets import MappingSets
from dealbooks_sync.parts import SyncParts
from starlette.applications import Starlette

from dealbooks_infra.testing import (
    account_connected,
    envelope_of,
    eventually,
    watching,
    with_webhook_dropped,
)

# The CRM sandbox fixture runs its ten-second window 50x faster.
CRM_WINDOW = 0.2
# What callers of the services' routes present in tests: grants signed with GRANT_KEYS, and the
# operator credential.
GRANT_KEYS = "test:sync-grant-key-0123456789abcdef"
OPERATOR = "test-sync-operator-credential"


def grant(*portals: str) -> str:
    """A portal grant for a person signed in for `portals`."""
    return mint_grant(GRANT_KEYS, portals, user_id="u-test")


def bearer(token: str | None) -> dict[str, str]:
    """The header that presents `token` (None: no credential)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def backfill_client(service: SyncParts, token: str | None) -> httpx.AsyncClient:
    """The routes of `service` (its backfill and audit trail) in-process, called with `token`."""
    settings = service.runtime.settings
    api = service.api(Guard(settings, settings.service_name))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://sync", headers=bearer(token)
    )


# Who may not start an account's backfill, and what each is answered.
BACKFILL_REFUSALS = {
    "no credential": 401,
    "wrong operator credential": 401,
    "another portal's grant": 403,
    "another portal's grant, its own path": 404,
    "operator, a portal the account is not connected to": 404,
}


async def refused_backfills(service: SyncParts, portal_id: str, realm_id: str) -> dict[str, int]:
    """Each caller of BACKFILL_REFUSALS asks to start the backfill of `realm_id` (connected
    to `portal_id`); the status each is answered."""
    other = f"{portal_id}-other"
    mine = f"/portals/{portal_id}/accounts/{realm_id}/backfill"
    elsewhere = f"/portals/{other}/accounts/{realm_id}/backfill"
    callers = {
        "no credential": (None, mine),
        "wrong operator credential": ("not-the-operator", mine),
        "another portal's grant": (grant(other), mine),
        "another portal's grant, its own path": (grant(other), elsewhere),
        "operator, a portal the account is not connected to": (OPERATOR, elsewhere),
    }
    statuses = {}
    for name, (token, path) in callers.items():
        async with backfill_client(service, token) as caller:
            statuses[name] = (await caller.post(path)).status_code
    return statuses


async def created_with_webhook_dropped(
    qbo_sandbox: Any, realm: str, kind: str, body: dict[str, Any]
) -> dict[str, Any]:
    """A record a person creates in QuickBooks while the sandbox drops its webhook (what the
    sync services' reconciliation pass heals)."""
    created: dict[str, Any] = await with_webhook_dropped(
        qbo_sandbox, realm, lambda: qbo_sandbox.user_creates(realm, kind, body)
    )
    return created


# The QuickBooks entity of each kind of record the sandbox creates.
_QBO_ENTITIES = {"customers": "Customer", "items": "Item"}


async def created_and_announced(
    stack: SyncStack, qbo_sandbox: Any, kind: str, body: dict[str, Any]
) -> tuple[dict[str, Any], Envelope[Any]]:
    """A record a person creates in QuickBooks, its creation announced as webhook-gateway
    would: the record, and the one outcome event of its sync."""
    entity = _QBO_ENTITIES[kind]
    record: dict[str, Any] = qbo_sandbox.user_creates(stack.realm_id, kind, body)[entity]
    cause = await stack.changed(entity, record["Id"], QboOperation.CREATE)
    [outcome] = await stack.outcomes(cause)
    return record, outcome


_OUTCOME_TOPICS = {
    SyncObjectType.CONTACTS: ["contact.synced.v1", "contact.sync-failed.v1"],
    SyncObjectType.PRODUCTS: ["product.synced.v1", "product.sync-failed.v1"],
}


@dataclass
class SyncWorld:
    """The fixtures a sync test runs on: Kafka, MongoDB, one QBO company and one CRM portal."""

    namespace: str
    kafka_bootstrap: str
    mongo_uri: str
    kafka_idempotence: bool
    qbo_sandbox: Any
    qbo_company: Any
    crm_sandbox: Any
    crm_portal: Any

    @classmethod
    def of(cls, request: pytest.FixtureRequest) -> SyncWorld:
        """The world of the requesting test, from the dealbooks_infra and sandbox fixtures."""
        fixture = request.getfixturevalue
        return cls(
            namespace=fixture("namespace"),
            kafka_bootstrap=fixture("kafka_bootstrap"),
            mongo_uri=fixture("mongo_uri"),
            kafka_idempotence=fixture("kafka_supports_idempotence"),
            qbo_sandbox=fixture("qbo_sandbox"),
            qbo_company=fixture("qbo_company"),
            crm_sandbox=fixture("crm_sandbox"),
            crm_portal=fixture("crm_portal"),
        )

    def __post_init__(self) -> None:
        # One provider each, shared by the registry and the sync service.
        self.tokens = {
            "qbo_tokens": StaticTokenProvider(
                {self.qbo_company.realm_id: self.qbo_company.access_token}
            ),
            "crm_tokens": StaticTokenProvider({self.crm_portal.key: self.crm_portal.access_token}),
        }

    def settings(self, database: str, **changes: Any) -> dict[str, Any]:
        """Settings of a service under test with its own database `database`, fast retries."""
        return {
            "kafka_bootstrap": self.kafka_bootstrap,
            "mongodb_uri": self.mongo_uri,
            "mongodb_database": f"{self.namespace}_{database}",
            "topic_prefix": f"{self.namespace}.",
            "kafka_idempotence": self.kafka_idempotence,
            "handler_attempts": 3,
            "handler_wait_initial": 0.05,
            "handler_wait_max": 0.2,
            "qbo_base_url": self.qbo_sandbox.base_url,
            "crm_base_url": self.crm_sandbox.base_url,
            "crm_window_seconds": CRM_WINDOW,
            "grant_keys": GRANT_KEYS,
            "operator_credentials": OPERATOR,
            **changes,
        }

    @contextlib.asynccontextmanager
    async def running(
        self, registry: Any, service: SyncParts, object_type: SyncObjectType
    ) -> AsyncIterator[SyncStack]:
        """`registry` (a mapping-registry service) and `service` running, the account connected
        and its default mappings applied."""
        stack = SyncStack(
            registry=registry.runtime,
            registry_api=registry.api,
            sync=service.runtime,
            object_type=object_type,
            realm_id=self.qbo_company.realm_id,
            portal_id=self.crm_portal.key,
            kafka_bootstrap=self.kafka_bootstrap,
        )
        try:
            async with stack.running(_OUTCOME_TOPICS[object_type]):
                await stack.connect()
                yield stack
        finally:  # their QBO and CRM clients' connections
            await registry.aclose()
            await service.aclose()


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
        self.portal_id = portal_id
        # The registry's API as an admin of the portal calls it.
        self.api = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=registry_api),
            base_url="http://registry",
            headers=bearer(grant(portal_id)),
        )
        self.base = f"/portals/{portal_id}/accounts/{realm_id}/{object_type.value}"
        self.events: list[Envelope[Any]] = []
        self._bootstrap = kafka_bootstrap
        self._sets = MappingSets(sync.db)

    @contextlib.asynccontextmanager
    async def running(self, topics: list[str]) -> AsyncIterator[SyncStack]:
        topics = [self.sync.settings.topic(t) for t in topics]
        try:
            async with (
                watching(self._bootstrap, topics, lambda r: self.events.append(envelope_of(r))),
                self.registry.running(),
                self.sync.running(),
            ):
                yield self
        finally:
            await self.api.aclose()

    async def connect(self) -> None:
        """Announce the account as connector-auth would; wait for the default mappings."""
        await self.registry.publisher.publish(
            Envelope.build(account_connected(), source="connector-auth", tenant=self.tenant)
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
