"""Webhook sender: batches of at most 100 events per portal, v1 + v3 signatures,
up to 10 retries with randomised back-off on a scalable clock, no ordering guarantee.
Also the signing functions every request from HubSpot to the app uses (v1, v2, v3)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from crm_sandbox.schema import SINGULAR
from crm_sandbox.state import SandboxState, now_ms
from crm_sandbox.store import Change

log = logging.getLogger("crm_sandbox.webhooks")

# Spread over roughly 24 hours, like HubSpot's "10 retries over the next 24 hours".
RETRY_DELAYS_SECONDS = [60, 120, 300, 600, 1800, 3600, 7200, 14400, 21600, 36000]


# v3 signs the URI with exactly these escapes decoded (reference §9.3).
_URI_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile("|".join(_URI_ESCAPES), re.IGNORECASE)


def canonical_uri(uri: str) -> str:
    return _ESCAPE.sub(lambda m: _URI_ESCAPES[m.group(0).upper()], uri)


def sign_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, method + URI (escapes decoded) + raw body + timestamp))."""
    message = method.encode() + canonical_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def sign_v2(secret: str, method: str, uri: str, body: bytes) -> str:
    """hex SHA-256(secret + method + URI exactly as sent + raw body): workflow actions, cards."""
    return hashlib.sha256(secret.encode() + method.encode() + uri.encode() + body).hexdigest()


def sign_v1(secret: str, body: bytes) -> str:
    return hashlib.sha256(secret.encode() + body).hexdigest()


@dataclass
class Pending:
    event: dict[str, Any]
    due: float
    attempt: int = 0


@dataclass
class Delivery:
    portal_id: int
    attempt_numbers: list[int]
    event_ids: list[int]
    status: int | None
    error: str | None
    at: int
    dropped: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "portalId": self.portal_id,
            "attemptNumbers": self.attempt_numbers,
            "eventIds": self.event_ids,
            "count": len(self.event_ids),
            "status": self.status,
            "error": self.error,
            "at": self.at,
            "dropped": self.dropped,
        }


@dataclass
class WebhookSender:
    state: SandboxState
    pending: list[Pending] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    _event_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(3816279340))
    _wake: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _client: aiohttp.ClientSession | None = None

    def on_change(self, change: Change) -> None:
        """Turn a record change into one event per matching active subscription."""
        app = self.state.app
        if not app.target_url:
            return
        singular = SINGULAR.get(change.object_type)
        if singular is None:
            return
        portal = self.state.portals.get(change.portal_id)
        if portal is None or portal.install is None:
            return  # HubSpot sends an app's webhooks only for accounts that have it installed
        event_type = f"{singular}.{change.kind}"
        for sub in app.subscriptions.values():
            if not sub.active or sub.event_type != event_type:
                continue
            if change.kind == "propertyChange" and sub.property_name != change.property_name:
                continue
            event: dict[str, Any] = {
                "eventId": next(self._event_ids),
                "subscriptionId": sub.id,
                "portalId": change.portal_id,
                "appId": app.id,
                "occurredAt": change.occurred_at,
                "subscriptionType": event_type,
                "attemptNumber": 0,
                "objectId": int(change.object_id),
                "changeSource": change.source.change_source,
                "sourceId": change.source.source_id,
            }
            if change.kind == "propertyChange":
                event["propertyName"] = change.property_name
                event["propertyValue"] = change.property_value
            elif change.kind == "creation":
                event["changeFlag"] = "CREATED"
            elif change.kind == "deletion":
                event["changeFlag"] = "DELETED"
            if change.extra:
                event.update(change.extra)
            self._enqueue(event)
            if random.random() < self.state.config.webhook_duplicate_rate:
                self._enqueue(dict(event))

    def _enqueue(
        self, event: dict[str, Any], *, due: float | None = None, attempt: int = 0
    ) -> None:
        self.pending.append(Pending(event, time.monotonic() if due is None else due, attempt))
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        self._wake = asyncio.Event()
        # aiohttp: a third of httpx's CPU per delivery, which counts under a benchmark's load.
        self._client = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.state.config.webhook_timeout_seconds)
        )
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.close()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            now = time.monotonic()
            due = [p for p in self.pending if p.due <= now]
            if due:
                self.pending = [p for p in self.pending if p.due > now]
                random.shuffle(due)  # order is not guaranteed
                await self._send_all(due)
                continue
            timeout = min((p.due for p in self.pending), default=now + 1.0) - now
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.005, min(timeout, 1.0)))

    async def _send_all(self, due: list[Pending]) -> None:
        by_portal: dict[int, list[Pending]] = {}
        for p in due:
            by_portal.setdefault(p.event["portalId"], []).append(p)
        size = max(1, min(100, self.state.config.webhook_batch_size))
        batches = [
            items[i : i + size] for items in by_portal.values() for i in range(0, len(items), size)
        ]
        gate = asyncio.Semaphore(max(1, self.state.app.max_concurrent))

        async def one(batch: list[Pending]) -> None:
            async with gate:
                await self._deliver(batch)

        await asyncio.gather(*(one(b) for b in batches))

    def _take_fault(self, kind: str, portal_id: int) -> bool:
        for fault in self.state.faults:
            if fault.kind == kind and fault.remaining > 0 and fault.portal_id in (None, portal_id):
                fault.remaining -= 1
                return True
        return False

    async def _deliver(self, batch: list[Pending]) -> None:
        app = self.state.app
        portal_id = batch[0].event["portalId"]
        events = []
        for p in batch:
            p.event["attemptNumber"] = p.attempt
            events.append(dict(p.event))
        record = Delivery(
            portal_id,
            [p.attempt for p in batch],
            [e["eventId"] for e in events],
            None,
            None,
            now_ms(),
        )
        self.deliveries.append(record)
        if self._take_fault("drop_webhooks", portal_id):
            record.dropped = True
            return
        target = app.target_url
        if not target or self._client is None:
            return
        body = json.dumps(events, separators=(",", ":")).encode()
        timestamp = str(now_ms())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon",
            "X-HubSpot-Signature": sign_v1(app.client_secret, body),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Signature-v3": sign_v3(app.client_secret, "POST", target, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp,
            "X-HubSpot-Timeout-Millis": str(int(self.state.config.webhook_timeout_seconds * 1000)),
        }
        retry_after: float | None = None
        if self._take_fault("fail_webhooks", portal_id):
            record.error = "injected failure"
        else:
            try:
                async with self._client.post(target, data=body, headers=headers) as response:
                    await response.read()
                    record.status = response.status
                    if response.status < 300:
                        return
                    raw = response.headers.get("Retry-After", "")
                    retry_after = float(raw) if raw.replace(".", "", 1).isdigit() else None
            except (aiohttp.ClientError, TimeoutError) as exc:
                record.error = type(exc).__name__
        self._schedule_retry(batch, retry_after)

    def _schedule_retry(self, batch: list[Pending], retry_after: float | None) -> None:
        config = self.state.config
        for p in batch:
            if p.attempt >= config.webhook_max_retries:
                log.warning(
                    "webhook event %s given up after %s retries", p.event["eventId"], p.attempt
                )
                continue
            base = RETRY_DELAYS_SECONDS[min(p.attempt, len(RETRY_DELAYS_SECONDS) - 1)]
            delay = retry_after if retry_after is not None else base * random.uniform(0.5, 1.5)
            self._enqueue(
                p.event, due=time.monotonic() + config.webhook_scaled(delay), attempt=p.attempt + 1
            )
