"""Running one QuickBooks record through its consumers again (`dealbooks replay record`).

A `qbo.entity-changed` event is published for the record, as webhook-gateway would for a
QuickBooks notification: operation Update, stamped now (so no consumer takes it for an older
change it has seen), under the tenant connector-auth has for the company (its portal). The
consumer of the record's kind reads the record from QuickBooks again and applies it; each
does so idempotently, so a record that is already right is left as it is:

- invoices: status-tracker (`qbo-changes`) re-reads a tracked invoice, moves its stage and
  writes the deal when something changed;
- customers: contact-sync (`customers`), items: product-sync (`items`): the record is synced
  to its CRM contact or product, and a `contact.synced` / `product.synced` (or
  `*.sync-failed`) event caused by this one says what came of it.

The outcome is the consumer's processed record of the new event (its dedupe memory: `ok`,
`settled` or `dead_lettered`), with what the consumer left: the tracked invoice, or the sync
event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio
from aiokafka import TopicPartition
from dealbooks_contracts import (
    Envelope,
    QboEntity,
    QboEntityChanged,
    QboOperation,
    Tenant,
    decode,
    spec_for_type,
)
from dealbooks_kit import EventPublisher, make_broker
from dealbooks_kit.consumer import PROCESSED_COLLECTION
from pymongo import AsyncMongoClient

from dealbooks_cli.deadletters import DeadLetterTopics
from dealbooks_cli.replay import OPERATOR_SERVICE
from dealbooks_cli.stack import CliError, Stack, unanswered

Doc = dict[str, Any]
Starts = dict[str, dict[TopicPartition, int]]


@dataclass(frozen=True)
class Route:
    """Where a kind of record goes: its QuickBooks entity, the consumer that applies it and
    the events (without version) that consumer publishes about it, if any."""

    entity: QboEntity
    service: str
    consumer: str
    outcome_types: tuple[str, ...] = ()


ROUTES = {
    "invoice": Route(QboEntity.INVOICE, "status-tracker", "qbo-changes"),
    "customer": Route(
        QboEntity.CUSTOMER, "contact-sync", "customers", ("contact.synced", "contact.sync-failed")
    ),
    "item": Route(
        QboEntity.ITEM, "product-sync", "items", ("product.synced", "product.sync-failed")
    ),
}
SETTLED = {"ok", "settled"}


async def tenant_of(
    stack: Stack, client: AsyncMongoClient[Doc], realm: str, portal: str | None
) -> Tenant:
    """The company's tenant as connector-auth has it: its one connected portal (or `portal`);
    CliError when there is none, or several and no `portal`."""
    query: Doc = {"realm_id": realm, "status": "connected"}
    if portal:
        query["portal_id"] = portal
    accounts = client[stack.database("connector-auth")]["accounts"]
    portals = sorted({str(d["portal_id"]) async for d in accounts.find(query, {"portal_id": 1})})
    if not portals:
        raise CliError(
            f"company {realm} is not connected"
            + (f" to portal {portal}" if portal else "")
            + " (dealbooks accounts list shows every one)"
        )
    if len(portals) > 1:
        raise CliError(f"company {realm} is connected to portals {', '.join(portals)}: --portal")
    return Tenant(portal_id=portals[0], account_id=realm)


def change_event(route: Route, tenant: Tenant, record_id: str) -> Envelope[QboEntityChanged]:
    """The record's change, as webhook-gateway would publish it, stamped now."""
    realm = tenant.require_account_id()
    return Envelope.build(
        QboEntityChanged(
            realm_id=realm,
            entity=route.entity.value,
            entity_id=record_id,
            operation=QboOperation.UPDATE,
            last_updated=datetime.now(UTC),
        ),
        source=OPERATOR_SERVICE,
        tenant=tenant,
        correlation_id=f"replay:{realm}:{route.entity.value}:{record_id}",
    )


async def publish(stack: Stack, event: Envelope[QboEntityChanged]) -> None:
    settings = stack.settings()
    broker = make_broker(settings)
    try:
        await broker.connect()
        await EventPublisher(broker, settings).publish(event)
    finally:
        await broker.stop()


def outcome_topics(stack: Stack, route: Route) -> list[str]:
    return [stack.settings().topic(spec_for_type(t).topic) for t in route.outcome_types]


async def outcome_ends(stack: Stack, topics: DeadLetterTopics, route: Route) -> Starts:
    """Where the topics of the route's outcome events end now (only later records are read);
    a topic not there yet is read from its start once it is."""
    return {t: await topics.end_offsets(t) for t in outcome_topics(stack, route)}


async def await_outcome(
    stack: Stack,
    client: AsyncMongoClient[Doc],
    topics: DeadLetterTopics,
    route: Route,
    event: Envelope[QboEntityChanged],
    starts: Starts,
    wait: float,
) -> Doc:
    """Wait up to `wait` seconds for the consumer's processed record of `event` and, for a
    customer or an item, the sync event it caused; say what they show."""
    name = f"{route.service}.{route.consumer}"
    db = client[stack.database(route.service)]
    key = f"{route.consumer}:{event.id}"
    found: Doc = {"outcome": "pending", "detail": f"no outcome within {wait:g} s"}
    with anyio.move_on_after(wait):
        record = None
        while record is None:
            record = await db[PROCESSED_COLLECTION].find_one({"_id": key})
            if record is None:
                await anyio.sleep(0.3)
        outcome = str(record.get("outcome", "ok"))
        found = {"outcome": outcome, "detail": f"handled by {name} ({outcome})"}
        if route.entity is QboEntity.INVOICE:
            realm, record_id = event.data.realm_id, event.data.entity_id
            tracked = await db["tracked_invoices"].find_one({"_id": f"{realm}:{record_id}"})
            found["tracked_invoice"] = _tracked(tracked)
        elif outcome in SETTLED:
            found["synced"] = await _caused(topics, starts, str(event.id))
    if found["outcome"] == "pending":
        found["detail"] += f" ({unanswered(name)})"
    return found


def _tracked(doc: Doc | None) -> Doc | None:
    if doc is None:
        return None  # status-tracker does not follow this invoice: nothing to apply
    fields = ("stage", "version", "deal_id", "portal_id", "balance", "last_updated")
    return {k: _plain(doc.get(k)) for k in fields if k in doc}


async def _caused(topics: DeadLetterTopics, starts: Starts, event_id: str) -> Doc:
    """The first outcome event caused by `event_id` (published before the consumer recorded
    the event, so already there; waits for it otherwise)."""
    while True:
        offsets: dict[TopicPartition, int] = {}
        for topic, ends in starts.items():
            offsets.update(ends or await topics.from_start(topic))
        for record in await topics.after(offsets):
            caused = decode(record.value)
            if str(caused.causation_id) == event_id:
                return {
                    "type": caused.type,
                    "id": str(caused.id),
                    **caused.data.model_dump(mode="json"),
                }
        await anyio.sleep(0.3)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


async def rerun(
    stack: Stack,
    client: AsyncMongoClient[Doc],
    topics: DeadLetterTopics,
    kind: str,
    realm: str,
    record_id: str,
    *,
    portal: str | None,
    wait: float,
) -> Doc:
    """Publish the record's change (see the module docstring) and wait for its outcome."""
    route = ROUTES[kind]
    tenant = await tenant_of(stack, client, realm, portal)
    event = change_event(route, tenant, record_id)
    starts = await outcome_ends(stack, topics, route)
    try:
        await publish(stack, event)
    except Exception as exc:
        raise CliError(f"could not publish the change of {kind} {record_id}: {exc}") from exc
    found = await await_outcome(stack, client, topics, route, event, starts, wait)
    return {
        "kind": kind,
        "realm_id": realm,
        "portal_id": tenant.portal_id,
        "record_id": record_id,
        "event_id": str(event.id),
        "consumer": f"{route.service}.{route.consumer}",
        **found,
    }
