"""Webhook delivery: every entity change, batched, signed, in order, retried on schedule."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from qbo_sandbox.clock import Clock
from qbo_sandbox.config import WEBHOOK_RETRY_SCHEDULE, SandboxConfig

# CloudEvents verbs; the Void and Emailed spellings are not confirmed by Intuit (UNVERIFIED).
PAST_TENSE = {
    "Create": "created",
    "Update": "updated",
    "Delete": "deleted",
    "Merge": "merged",
    "Void": "voided",
    "Emailed": "emailed",
}


def sign(body: bytes, verifier_token: str) -> str:
    """The `intuit-signature` value: base64(HMAC-SHA256(verifier token, raw body))."""
    return base64.b64encode(
        hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    ).decode()


@dataclass
class Event:
    realm_id: str
    entity: str
    entity_id: str
    operation: str
    at: datetime
    deleted_id: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Endpoint:
    endpoint_id: str
    url: str
    verifier_token: str
    format: str = "legacy"  # "legacy" | "cloudevents"
    entities: frozenset[str] | None = None
    realms: frozenset[str] | None = None
    queue: list[Event] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failures: int = 0

    def wants(self, event: Event) -> bool:
        return (self.entities is None or event.entity in self.entities) and (
            self.realms is None or event.realm_id in self.realms
        )


def legacy_body(events: list[Event]) -> dict[str, Any]:
    by_realm: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        entity: dict[str, Any] = {
            "name": ev.entity,
            "id": ev.entity_id,
            "operation": ev.operation,
            "lastUpdated": ev.at.astimezone(UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
        }
        if ev.deleted_id:
            entity["deletedId"] = ev.deleted_id
        by_realm.setdefault(ev.realm_id, []).append(entity)
    return {
        "eventNotifications": [
            {"realmId": realm, "dataChangeEvent": {"entities": entities}}
            for realm, entities in by_realm.items()
        ]
    }


def cloudevents_body(events: list[Event]) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        verb = PAST_TENSE.get(ev.operation, ev.operation.lower())
        item: dict[str, Any] = {
            "specversion": "1.0",
            "id": ev.event_id,
            "source": "intuit.dealbooks-sandbox",
            "type": f"qbo.{ev.entity.lower()}.{verb}.v1",
            "datacontenttype": "application/json",
            "time": ev.at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "intuitentityid": ev.entity_id,
            "intuitaccountid": ev.realm_id,
            "data": {"deletedid": ev.deleted_id} if ev.deleted_id else {},
        }
        out.append(item)
    return out


class WebhookHub:
    def __init__(self, config: SandboxConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.endpoints: dict[str, Endpoint] = {}
        self.deliveries: list[dict[str, Any]] = []
        self.drop_next = 0
        self.duplicate = False
        self._client: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        # aiohttp: a third of httpx's CPU per delivery, which counts when the sandbox stands
        # in for QuickBooks under a benchmark's load.
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.config.webhook_timeout_seconds)
        )

    async def stop(self) -> None:
        for ep in self.endpoints.values():
            if ep.task:
                ep.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ep.task
        if self._client:
            await self._client.close()

    def add(
        self,
        url: str,
        verifier_token: str,
        fmt: str,
        entities: list[str] | None,
        realms: list[str] | None,
    ) -> Endpoint:
        if fmt not in {"legacy", "cloudevents"}:
            raise ValueError("format must be legacy or cloudevents")
        ep = Endpoint(
            endpoint_id=uuid.uuid4().hex[:12],
            url=url,
            verifier_token=verifier_token,
            format=fmt,
            entities=frozenset(entities) if entities else None,
            realms=frozenset(realms) if realms else None,
        )
        self.endpoints[ep.endpoint_id] = ep
        ep.task = asyncio.get_running_loop().create_task(self._run(ep))
        return ep

    async def remove(self, endpoint_id: str) -> None:
        ep = self.endpoints.pop(endpoint_id, None)
        if ep and ep.task:
            ep.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ep.task

    def publish(
        self,
        realm_id: str,
        entity: str,
        entity_id: str,
        operation: str,
        deleted_id: str | None = None,
    ) -> None:
        event = Event(realm_id, entity, entity_id, operation, self.clock.now(), deleted_id)
        for ep in self.endpoints.values():
            if ep.wants(event):
                ep.queue.append(event)
                ep.wake.set()

    def _delay(self, attempt: int) -> float:
        base = WEBHOOK_RETRY_SCHEDULE[min(attempt, len(WEBHOOK_RETRY_SCHEDULE) - 1)]
        return base / self.config.time_scale

    async def _run(self, ep: Endpoint) -> None:
        while True:
            await ep.wake.wait()
            ep.wake.clear()
            await asyncio.sleep(self.config.webhook_aggregation_seconds / self.config.time_scale)
            while ep.queue:
                batch = ep.queue[: self.config.webhook_max_events]
                if self.drop_next > 0:
                    self.drop_next -= 1
                    del ep.queue[: len(batch)]
                    self.deliveries.append(
                        {"endpoint_id": ep.endpoint_id, "dropped": True, "events": len(batch)}
                    )
                    continue
                await self._deliver_until_acknowledged(ep, batch)
                # Head-of-line blocking: later events wait until this batch was acknowledged.
                del ep.queue[: len(batch)]

    async def _deliver_until_acknowledged(self, ep: Endpoint, batch: list[Event]) -> None:
        payload: Any = legacy_body(batch) if ep.format == "legacy" else cloudevents_body(batch)
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json"
            if ep.format == "legacy"
            else "application/cloudevents+json",
            "intuit-signature": sign(body, ep.verifier_token),
            "intuit-t-id": uuid.uuid4().hex,
        }
        attempt = 0
        while True:
            if attempt:
                await asyncio.sleep(self._delay(attempt))
            status = await self._post(ep, body, headers, attempt)
            if status == 200:
                if self.duplicate:
                    await self._post(ep, body, headers, attempt)
                ep.failures = 0
                return
            ep.failures += 1
            attempt += 1

    async def _post(
        self, ep: Endpoint, body: bytes, headers: dict[str, str], attempt: int
    ) -> int | None:
        assert self._client is not None
        record: dict[str, Any] = {
            "endpoint_id": ep.endpoint_id,
            "attempt": attempt,
            "at": self.clock.now().isoformat(),
            "format": ep.format,
            "signature": headers["intuit-signature"],
            "body": body.decode(),
        }
        try:
            async with self._client.post(ep.url, data=body, headers=headers) as response:
                await response.read()
                record["status"] = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            record["status"] = None
            record["error"] = type(exc).__name__
        self.deliveries.append(record)
        status: int | None = record["status"]
        return status
