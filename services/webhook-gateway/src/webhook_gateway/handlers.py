"""Intake of one webhook delivery: verify, split, dedupe, publish, and only then say 200.

Also keeps the realm -> portal directory from connector-auth's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    Envelope,
    QboEntityChanged,
    Tenant,
    dlq_topic,
    topic_for,
)
from dealbooks_crm import (
    InvalidWebhookPayload,
    InvalidWebhookSignature,
    StaleWebhookTimestamp,
    parse_webhook_events,
    verify_signature_v3,
)
from dealbooks_kit import EventPublisher, get_logger
from dealbooks_qbo import parse_webhook, verify_signature
from prometheus_client import Counter, Histogram

from webhook_gateway import domain
from webhook_gateway.domain import CrmNotification, QboNotification, Rejected
from webhook_gateway.settings import WebhookGatewaySettings
from webhook_gateway.store import Claim, DedupeWindow, RealmDirectory

log = get_logger(__name__)
SOURCE = "webhook-gateway"
Ready = tuple[str, list[Envelope[Any]]]  # a notification's dedupe key and its events

RECEIVED = Counter("dealbooks_webhooks_received_total", "Webhook deliveries received", ["sender"])
REJECTED = Counter(
    "dealbooks_webhooks_rejected_total",
    "Webhook deliveries refused (signature, stale, malformed, too_large)",
    ["sender", "reason"],
)
PUBLISHED = Counter(
    "dealbooks_webhook_events_published_total", "Notifications published to Kafka", ["sender"]
)
DROPPED = Counter(
    "dealbooks_webhook_events_dropped_total",
    "Notifications accepted but not published (duplicate, own_write, unsupported)",
    ["sender", "reason"],
)
DEAD_LETTERED = Counter(
    "dealbooks_webhook_events_dead_lettered_total",
    "Notifications accepted and dead-lettered (unknown_realm, invalid)",
    ["sender", "reason"],
)
PUBLISH_SECONDS = Histogram(
    "dealbooks_webhook_publish_seconds",
    "From a verified delivery to Kafka's acknowledgement of all its events",
    ["sender"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5),
)


@dataclass(frozen=True)
class Outcome:
    """The HTTP answer to a delivery."""

    status: int
    body: dict[str, Any]


def _unavailable() -> Outcome:
    # Not bad input: Kafka or MongoDB did not answer. A 5xx makes the sender retry, so the
    # notification is not lost.
    return Outcome(503, {"error": "unavailable", "message": "Try again shortly."})


def _reject(sender: str, status: int, reason: str, message: str) -> Outcome:
    REJECTED.labels(sender, reason).inc()
    return Outcome(status, {"error": reason, "message": message})


class Intake:
    """Turns verified deliveries into events; shared by both senders."""

    def __init__(
        self,
        settings: WebhookGatewaySettings,
        publisher: EventPublisher,
        dedupe: DedupeWindow,
        realms: RealmDirectory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.publisher = publisher
        self.dedupe = dedupe
        self.realms = realms
        self.clock = clock
        self._own_ids = settings.own_source_ids()

    # ---------------------------------------------------------------- QuickBooks

    async def quickbooks(self, body: bytes, signature: str | None) -> Outcome:
        """One QBO delivery (legacy or CloudEvents)."""
        RECEIVED.labels("quickbooks").inc()
        token = self.settings.qbo_verifier_token.get_secret_value()
        if not token or not verify_signature(body, signature, token):
            return _reject("quickbooks", 401, "signature", "intuit-signature does not match.")
        try:
            changes = parse_webhook(body)
        except (ValueError, TypeError, AttributeError):
            return _reject("quickbooks", 400, "malformed", "The body is not a QBO notification.")
        started = time.perf_counter()
        now = self.clock()
        notifications = [
            QboNotification(
                c.realm_id,
                c.entity,
                c.entity_id,
                c.operation,
                c.occurred_at,
                c.deleted_id,
                c.event_id,
            )
            for c in changes
        ]
        if not await self._deliver(
            "quickbooks", [self._one_qbo(n, now) for n in notifications], now
        ):
            return _unavailable()
        PUBLISH_SECONDS.labels("quickbooks").observe(time.perf_counter() - started)
        return Outcome(200, {"accepted": len(notifications)})

    async def _one_qbo(self, n: QboNotification, now: datetime) -> Ready | None:
        """A notification's dedupe key and events; None once it was dead-lettered."""
        payload = domain.qbo_event(n, now)
        raw = json.dumps(n.__dict__, default=str).encode()
        if isinstance(payload, Rejected):
            await self._dead_letter("quickbooks", "invalid", payload.reason, raw, n.realm_id)
            return None
        portals = await self.realms.portals(n.realm_id)
        if not portals:
            await self._dead_letter(
                "quickbooks",
                "unknown_realm",
                f"realm {n.realm_id} is not connected to any portal",
                raw,
                n.realm_id,
            )
            return None
        key = domain.qbo_dedupe_key(n)
        events = [
            Envelope.build(
                payload,
                source=SOURCE,
                tenant=Tenant(portal_id=portal, account_id=n.realm_id),
                correlation_id=key,
            )
            for portal in portals
        ]
        return key, events

    # ---------------------------------------------------------------- CRM

    async def crm(
        self, body: bytes, uri: str, signature: str | None, timestamp: str | None
    ) -> Outcome:
        """One CRM delivery (a JSON array of events, v3-signed)."""
        RECEIVED.labels("crm").inc()
        try:
            verify_signature_v3(
                client_secret=self.settings.crm_client_secret.get_secret_value(),
                method="POST",
                uri=uri,
                body=body,
                signature=signature,
                timestamp=timestamp,
                max_age_ms=self.settings.crm_max_timestamp_age_seconds * 1000,
            )
        except StaleWebhookTimestamp:
            return _reject("crm", 401, "stale", "X-HubSpot-Request-Timestamp is too old.")
        except InvalidWebhookSignature:
            return _reject("crm", 401, "signature", "X-HubSpot-Signature-v3 does not match.")
        try:
            events = parse_webhook_events(body)
        except InvalidWebhookPayload:
            return _reject("crm", 400, "malformed", "The body is not a CRM webhook array.")
        started = time.perf_counter()
        now = self.clock()
        notifications = [
            CrmNotification(
                portal_id=str(e.portal_id),
                event_id=str(e.event_id),
                subscription_id=str(e.subscription_id),
                subscription_type=e.subscription_type,
                object_id=str(e.object_id or ""),
                occurred_at_ms=e.occurred_at,
                property_name=e.property_name,
                property_value=None if e.property_value is None else str(e.property_value),
                change_source=e.change_source,
                source_id=e.source_id,
                merged_object_ids=_merged_ids(e),
            )
            for e in events
        ]
        if not await self._deliver("crm", [self._one_crm(n, now) for n in notifications], now):
            return _unavailable()
        PUBLISH_SECONDS.labels("crm").observe(time.perf_counter() - started)
        return Outcome(200, {"accepted": len(notifications)})

    async def _one_crm(self, n: CrmNotification, now: datetime) -> Ready | None:
        """A notification's dedupe key and event; None when it is not ours to publish."""
        if domain.is_own_write(n, self._own_ids):
            DROPPED.labels("crm", "own_write").inc()
            return None
        payload = domain.crm_event(n)
        if isinstance(payload, Rejected):
            DROPPED.labels("crm", "unsupported").inc()
            return None
        key = domain.crm_dedupe_key(n)
        event = Envelope.build(
            payload, source=SOURCE, tenant=Tenant(portal_id=n.portal_id), correlation_id=key
        )
        return key, [event]

    # ---------------------------------------------------------------- shared

    async def _deliver(
        self, sender: str, preparing: list[Awaitable[Ready | None]], now: datetime
    ) -> bool:
        """Prepare every notification of a delivery, claim them together, publish the new
        ones; False if any could not be made durable in Kafka (the sender retries)."""
        results = await asyncio.gather(*preparing, return_exceptions=True)
        if not _all_settled(results):
            return False
        ready = [r for r in results if r is not None and not isinstance(r, BaseException)]
        if not ready:
            return True
        owner = secrets.token_hex(6)
        keys = [key for key, _ in ready]
        try:
            claims = await self.dedupe.claim_all(keys, owner, now)
        except Exception as exc:
            with contextlib.suppress(Exception):  # the store may be what failed
                await self.dedupe.release_all(keys, owner)
            return _all_settled([exc])
        publishing = []
        for key, events in ready:
            # Popped: a key repeated within one delivery is published once.
            if claims.pop(key, Claim.DUPLICATE) is Claim.DUPLICATE:
                DROPPED.labels(sender, "duplicate").inc()
                continue
            publishing.append(self._publish(sender, key, owner, events))
        return _all_settled(await asyncio.gather(*publishing, return_exceptions=True))

    async def _publish(
        self, sender: str, key: str, owner: str, events: list[Envelope[Any]]
    ) -> None:
        try:
            for event in events:
                await self.publisher.publish(event)
        except BaseException:
            # Not acknowledged: forget the claim so the sender's retry is published.
            await self.dedupe.release(key, owner)
            raise
        self.dedupe.published(key)
        PUBLISHED.labels(sender).inc(len(events))

    async def _dead_letter(
        self, sender: str, reason_code: str, reason: str, raw: bytes, realm_id: str
    ) -> None:
        topic = topic_for(QboEntityChanged)
        await self.publisher.publish_raw(
            self.settings.topic(dlq_topic(topic)),
            raw,
            key=realm_id.encode() or None,
            headers={
                "dlq-reason": reason,
                "dlq-error-type": reason_code,
                "dlq-consumer": SOURCE,
                "dlq-original-topic": self.settings.topic(topic),
            },
        )
        DEAD_LETTERED.labels(sender, reason_code).inc()
        log.warning("notification dead-lettered", reason=reason, realm_id=realm_id)

    # ---------------------------------------------------------------- directory

    async def on_account_connected(self, event: Envelope[AccountConnected]) -> None:
        await self.realms.connect(event.tenant.require_account_id(), event.tenant.portal_id)

    async def on_account_disconnected(self, event: Envelope[AccountDisconnected]) -> None:
        await self.realms.disconnect(event.tenant.require_account_id(), event.tenant.portal_id)


def _all_settled(results: list[Any]) -> bool:
    """False (each logged) if any result is a failure to make an event durable in Kafka."""
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures:
        log.error("publish failed; the sender will retry", error=type(failure).__name__)
    return not failures


def _merged_ids(event: Any) -> list[str] | None:
    merged = getattr(event, "mergedObjectIds", None) or (event.model_extra or {}).get(
        "mergedObjectIds"
    )
    return [str(m) for m in merged] if merged else None
