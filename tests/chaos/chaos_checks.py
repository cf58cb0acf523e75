"""Settling after a chaos run, and the invariants, read from the sandboxes' own records.

Settle: faults cleared, every webhook delivered, every accepted request decided, the
reconciliation sweep (status-tracker's operator route) and the overdue clock run, contact-sync's
and product-sync's reconciliation passes and a backfill of contacts and products (the remedies
for a QuickBooks change whose webhook was lost), and every consumer group caught up on Kafka.
Each wait is bounded.

The invariants compare what the driver did (the ledger) with what QuickBooks and the CRM hold,
read through their control APIs (QuickBooks' records through its query API, with a token the
control API mints), never with what a service says it did. The wizard's outcome of a request
is the one thing only invoice-builder can say; it is checked against QuickBooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from chaos_load import Load, backfill
from chaos_world import Client, DriverError, Figures, Ledger, say
from dealbooks_contracts import FieldMapping, SyncObjectType
from dealbooks_contracts.crm_app import AMOUNT_BILLED, DUE_DATE, INVOICE_NUMBER, STATUS
from dealbooks_sync.domain import CONTACT_ID_PROPERTY, PRODUCT_ID_PROPERTY, apply_mappings

NOTE = re.compile(r"dealbooks: deal (\S+), request ([0-9a-f-]{36})")
SHOWN = 8  # failures listed per invariant


class Asked(NamedTuple):
    """An accepted request or an auto-draft, and its outcome as the wizard tells it."""

    what: str
    request_id: str
    realm: str
    deal: str
    outcome: dict[str, Any] | None


@dataclass
class Invariant:
    name: str
    checked: int = 0
    failures: list[str] = field(default_factory=list)
    broken_ids: list[str] = field(default_factory=list)  # the QuickBooks records, where known

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, text: str, qbo_id: str | None = None) -> None:
        self.failures.append(text)
        if qbo_id is not None:
            self.broken_ids.append(qbo_id)


# --- settling -------------------------------------------------------------------------------


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, patience: float, figures: Figures
) -> bool:
    """Poll `check` until it holds; note it in the figures if it never did."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        # A call failing now (a server still starting) is one more reason to wait.
        with contextlib.suppress(DriverError, OSError, KafkaError):
            if await check():
                return True
        await asyncio.sleep(1)
    note = f"settle: {what} did not happen within {patience:.0f} s"
    figures.notes.append(note)
    say(f"[chaos] {note}")  # at once: a run stopped by its deadline still says what it waited for
    return False


async def webhooks_delivered(c: Client) -> bool:
    qbo = await c.json("GET", f"{c.qbo_ctl}/webhooks")
    crm = await c.json("GET", f"{c.t.crm}/_sandbox/webhooks/deliveries")
    return all(e["pending"] == 0 for e in qbo) and crm["pending"] == 0


async def consumer_lag(bootstrap: str) -> tuple[int, int]:
    """(records not yet committed by some consumer group, records in dead-letter topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await reader.start()
    try:
        lag = 0
        for group, _ in await admin.list_consumer_groups():
            offsets = await admin.list_consumer_group_offsets(group)
            topics = sorted({tp.topic for tp in offsets})
            for tp, end in (await _ends(admin, reader, topics)).items():
                meta = offsets.get(tp)
                lag += max(0, end - (meta.offset if meta else 0))
        dlq = [name for name in await admin.list_topics() if name.endswith(".dlq")]
        dead = sum((await _ends(admin, reader, sorted(dlq))).values())
        return lag, dead
    finally:
        await reader.stop()
        await admin.close()


async def _ends(
    admin: AIOKafkaAdminClient, reader: AIOKafkaConsumer, topics: list[str]
) -> dict[TopicPartition, int]:
    if not topics:
        return {}
    described = await admin.describe_topics(topics)
    partitions = [
        TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]
    ]
    ends: dict[TopicPartition, int] = await reader.end_offsets(partitions)
    return ends


@dataclass
class Settler:
    c: Client
    load: Load
    ledger: Ledger
    figures: Figures
    patience: float

    async def quiet(self) -> None:
        """Webhooks delivered and every consumer group caught up."""
        bootstrap = self.c.t.infra["KAFKA_BOOTSTRAP"]

        async def delivered() -> bool:
            return await webhooks_delivered(self.c)

        async def caught_up() -> bool:
            lag, _ = await consumer_lag(bootstrap)
            return lag == 0

        await wait_for(delivered, "webhook delivery", self.patience, self.figures)
        await wait_for(caught_up, "consumers catching up", self.patience, self.figures)

    async def settle(self) -> None:
        c = self.c
        await c.call("DELETE", f"{c.qbo_ctl}/faults")
        await c.call("DELETE", f"{c.t.crm}/_sandbox/faults")
        await self.quiet()

        async def decided() -> bool:
            return await self.load.poll_once() == 0

        await wait_for(decided, "an outcome for every request", self.patience, self.figures)
        # How much the webhooks alone carried: what the deals show before the sweep heals.
        checks = Checks(self.ledger, self.load, await Records.read(c, self.ledger))
        for inv in (checks.deals_show_true_stage(), checks.payments_on_timeline_once()):
            self.figures.settle[f"before the reconciliation pass, broken: {inv.name}"] += len(
                inv.failures
            )
        await self.sweeps()
        await self.quiet()

    async def sweeps(self) -> None:
        """The operator's reconciliation pass and overdue clock."""
        tracker = self.c.t.url("status-tracker")
        found = await self.c.json("POST", f"{tracker}/sweeps/reconcile", operator=True)
        self.figures.settle["changes the reconciliation pass found"] += found["changes"]
        await self.c.call("POST", f"{tracker}/sweeps/overdue", operator=True)

    async def sync_passes(self) -> None:
        """contact-sync's and product-sync's reconciliation passes (their operator route):
        what a dropped webhook left behind, an inactivation included, which a backfill cannot
        see (a query answers active records only)."""
        for service in ("contact-sync", "product-sync"):
            url = f"{self.c.t.url(service)}/sweeps/reconcile"
            found = await self.c.json("POST", url, operator=True)
            self.figures.settle[f"changes the {service} reconciliation pass found"] += found[
                "changes"
            ]

    async def backfills(self) -> None:
        for service in ("contact-sync", "product-sync"):
            report = await backfill(self.c, service, self.ledger.sync_realm)
            wrote = int(report["created"]) + int(report["updated"])
            self.figures.settle[f"records the {service} backfill wrote"] += wrote


# --- the records ------------------------------------------------------------------------------


@dataclass
class Records:
    """What QuickBooks and the CRM hold at the end."""

    invoices: dict[str, list[dict[str, Any]]]  # realm -> invoices
    customers: dict[str, list[dict[str, Any]]]
    items: dict[str, list[dict[str, Any]]]
    payments: dict[str, list[dict[str, Any]]]
    deals: dict[str, dict[str, Any]]
    contacts: list[dict[str, Any]]
    products: list[dict[str, Any]]
    timeline: dict[str, list[dict[str, Any]]]  # deal -> events
    mappings: dict[str, list[FieldMapping]]  # object type -> the sync realm's mappings

    @classmethod
    async def read(cls, c: Client, ledger: Ledger) -> Records:
        qbo = {realm: await qbo_records(c, realm) for realm in ledger.realms}
        timeline: dict[str, list[dict[str, Any]]] = defaultdict(list)
        events = await c.json("GET", f"{c.crm_ctl}/timeline-events")
        for event in events["results"]:
            timeline[str(event["objectId"])].append(event)
        mappings = {}
        for object_type in ("contacts", "products"):
            found = await c.json(
                "GET", c.mappings(ledger.sync_realm, object_type, "/mappings"), as_person=True
            )
            mappings[object_type] = [
                FieldMapping.model_validate({k: v for k, v in m.items() if k != "actions"})
                for m in found["mappings"]
            ]
        return cls(
            invoices={r: q["Invoice"] for r, q in qbo.items()},
            customers={r: q["Customer"] for r, q in qbo.items()},
            items={r: q["Item"] for r, q in qbo.items()},
            payments={r: q["Payment"] for r, q in qbo.items()},
            deals={str(d["id"]): d for d in await c.crm_objects("deals")},
            contacts=await c.crm_objects("contacts"),
            products=await c.crm_objects("products"),
            timeline=dict(timeline),
            mappings=mappings,
        )


async def qbo_records(c: Client, realm: str) -> dict[str, list[dict[str, Any]]]:
    """Every invoice, customer, item and payment of a company, through QuickBooks' own query
    API with a token the control API mints (inactive names included)."""
    token = (await c.json("POST", f"{c.qbo_ctl}/companies/{realm}/tokens"))["access_token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    out: dict[str, list[dict[str, Any]]] = {}
    for entity, where in (
        ("Invoice", ""),
        ("Payment", ""),
        ("Customer", " WHERE Active IN (true, false)"),
        ("Item", " WHERE Active IN (true, false)"),
    ):
        rows: list[dict[str, Any]] = []
        while True:
            page_at = f" STARTPOSITION {len(rows) + 1} MAXRESULTS 1000"
            query = f"SELECT * FROM {entity}{where}{page_at}"  # noqa: S608 - fixed names
            found = await c.json(
                "GET",
                f"{c.t.qbo}/v3/company/{realm}/query",
                params={"query": query},
                headers=headers,
            )
            page = found["QueryResponse"].get(entity, [])
            rows += page
            if len(page) < 1000:
                break
        out[entity] = rows
    return out


# --- the invariants ---------------------------------------------------------------------------


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _date(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC).date().isoformat()
    return text[:10]


def true_stage(invoice: dict[str, Any], today: date) -> str:
    """The stage a QuickBooks invoice is in, decided here from QuickBooks' record alone."""
    total = Decimal(str(invoice.get("TotalAmt", 0)))
    balance = Decimal(str(invoice.get("Balance", 0)))
    due = invoice.get("DueDate")
    if total > 0 and balance <= 0:
        return "paid"
    if balance > 0 and due and date.fromisoformat(due) < today:
        return "overdue"
    if 0 < balance < total:
        return "partially_paid"
    if invoice.get("EmailStatus") == "EmailSent":
        return "sent"
    return "awaiting_send"


class Checks:
    """Every invariant of the run, over the ledger and the records."""

    def __init__(self, ledger: Ledger, load: Load, records: Records) -> None:
        self.ledger = ledger
        self.load = load
        self.r = records
        self.by_request: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.by_deal: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for realm, invoices in records.invoices.items():
            for invoice in invoices:
                found = NOTE.search(invoice.get("PrivateNote") or "")
                if found:
                    self.by_deal[found.group(1)].append((realm, invoice))
                    self.by_request[found.group(2)].append((realm, invoice))

    def all(self) -> list[Invariant]:
        return [
            self.requests_decided(),
            self.outcomes_agree_with_quickbooks(),
            self.no_invoice_unasked(),
            self.no_duplicate_invoices(),
            self.no_duplicate_customers(),
            self.no_duplicate_crm_records(),
            self.payments_on_timeline_once(),
            self.deals_show_true_stage(),
            *self.synced_match(),
        ]

    def _outcomes(self) -> list[Asked]:
        """Every accepted request and auto-draft, with its outcome; and every request that
        got no answer yet was carried out (the wizard knows its outcome)."""
        found = [
            Asked(f"request {s.request_id} ({s.kind}, deal {s.deal})", s.request_id, s.realm,
                  s.deal, s.outcome)
            for s in self.ledger.submitted.values()
            if s.accepted or (s.in_doubt and s.outcome)
        ]  # fmt: skip
        found += [
            Asked(f"auto-draft of deal {deal}", request_id, self.ledger.sync_realm, deal,
                  self.load.auto_outcomes.get(deal))
            for deal, request_id in self.ledger.auto_deals.items()
        ]  # fmt: skip
        return found

    def requests_decided(self) -> Invariant:
        inv = Invariant("no accepted request lost (each has an outcome: drafted, or a reason)")
        for what, _, _, _, outcome in self._outcomes():
            inv.checked += 1
            if outcome is None:
                inv.fail(f"{what}: no outcome")
            elif outcome["status"] == "rejected" and not (
                outcome.get("code") and outcome.get("message")
            ):
                inv.fail(f"{what}: rejected without a reason: {outcome}")
        return inv

    def outcomes_agree_with_quickbooks(self) -> Invariant:
        inv = Invariant("each outcome agrees with QuickBooks (drafted: that invoice; else none)")
        for what, request_id, realm, _, outcome in self._outcomes():
            if outcome is None:
                continue
            inv.checked += 1
            held = self.by_request.get(request_id, [])
            if outcome["status"] == "drafted":
                ids = [(r, str(i["Id"])) for r, i in held]
                if (realm, str(outcome.get("qbo_invoice_id"))) not in ids:
                    inv.fail(f"{what}: drafted as {outcome.get('qbo_invoice_id')}, "
                             f"QuickBooks holds {ids}")  # fmt: skip
            elif held:
                inv.fail(f"{what}: rejected ({outcome.get('code')}) but QuickBooks holds "
                         f"{[str(i['Id']) for _, i in held]}")  # fmt: skip
        return inv

    def no_invoice_unasked(self) -> Invariant:
        inv = Invariant("every invoice dealbooks made answers a request sent or an auto-draft")
        asked = {*self.ledger.submitted, *self.ledger.auto_deals.values()}
        for request_id, held in self.by_request.items():
            inv.checked += 1
            if request_id not in asked:
                inv.fail(f"request {request_id}: invoices {[(r, i['Id']) for r, i in held]}")
        return inv

    def no_duplicate_invoices(self) -> Invariant:
        inv = Invariant("no duplicate QuickBooks invoice (per request, per deal)")
        for label, groups in (("request", self.by_request), ("deal", self.by_deal)):
            for key, held in groups.items():
                inv.checked += 1
                if len(held) > 1:
                    inv.fail(f"{label} {key}: invoices {[(r, i['Id']) for r, i in held]}")
        return inv

    def no_duplicate_customers(self) -> Invariant:
        inv = Invariant("no duplicate QuickBooks customer (per e-mail address, per company)")
        for realm, customers in self.r.customers.items():
            emails = Counter(
                (c.get("PrimaryEmailAddr") or {}).get("Address", "").strip().lower()
                for c in customers
            )
            emails.pop("", None)
            inv.checked += len(emails)
            for email, n in emails.items():
                if n > 1:
                    inv.fail(f"realm {realm}: {n} customers with {email}")
        return inv

    def no_duplicate_crm_records(self) -> Invariant:
        inv = Invariant("no duplicate CRM contact or product")
        for kind, records, keys in (
            ("contact", self.r.contacts, ("email", CONTACT_ID_PROPERTY)),
            ("product", self.r.products, (PRODUCT_ID_PROPERTY,)),
        ):
            live = [r for r in records if not r["archived"]]
            for key in keys:
                seen = Counter(str(r["properties"].get(key) or "").strip().lower() for r in live)
                seen.pop("", None)
                inv.checked += len(seen)
                for value, n in seen.items():
                    if n > 1:
                        inv.fail(f"{n} live {kind}s with {key} = {value}")
        return inv

    def _payments_of(self, realm: str, invoice_id: str) -> list[Decimal]:
        amounts = []
        for payment in self.r.payments[realm]:
            for line in payment.get("Line", []):
                if any(
                    str(t.get("TxnId")) == invoice_id and t.get("TxnType") == "Invoice"
                    for t in line.get("LinkedTxn", [])
                ):
                    amounts.append(Decimal(str(line["Amount"])))
        return sorted(amounts)

    def payments_on_timeline_once(self) -> Invariant:
        inv = Invariant("each payment on its deal's timeline exactly once (no duplicate entry)")
        for deal, held in self.by_deal.items():
            if len(held) != 1:
                continue
            inv.checked += 1
            realm, invoice = held[0]
            paid = Counter(self._payments_of(realm, str(invoice["Id"])))
            shown = Counter(
                Decimal(str(e["tokens"]["amount"])) for e in self.r.timeline.get(deal, [])
            )
            extra, missing = shown - paid, paid - shown
            if extra or missing:
                inv.fail(f"deal {deal} (invoice {invoice['Id']}): timeline shows "
                         f"{sorted(map(str, shown.elements()))}, QuickBooks has "
                         f"{sorted(map(str, paid.elements()))}")  # fmt: skip
        return inv

    def deals_show_true_stage(self) -> Invariant:
        inv = Invariant("every deal shows its invoice's true stage, amount, number, due date")
        today = date.today()
        for deal, held in self.by_deal.items():
            if len(held) != 1:
                continue
            inv.checked += 1
            _, invoice = held[0]
            props = (self.r.deals.get(deal) or {}).get("properties", {})
            want = {
                STATUS: true_stage(invoice, today),
                AMOUNT_BILLED: _dec(invoice.get("TotalAmt")),
                INVOICE_NUMBER: invoice.get("DocNumber") or None,
                DUE_DATE: _date(invoice.get("DueDate")),
            }
            have = {
                STATUS: props.get(STATUS),
                AMOUNT_BILLED: _dec(props.get(AMOUNT_BILLED)),
                INVOICE_NUMBER: props.get(INVOICE_NUMBER) or None,
                DUE_DATE: _date(props.get(DUE_DATE)),
            }
            if want != have:
                wrong = {
                    k: f"{have[k]} (QuickBooks: {want[k]})" for k in want if want[k] != have[k]
                }
                inv.fail(f"deal {deal} (invoice {invoice['Id']}): {wrong}")
        for _, _, _, deal, outcome in self._outcomes():
            if outcome and outcome["status"] == "rejected":
                inv.checked += 1
                shown = (self.r.deals.get(deal) or {}).get("properties", {}).get(STATUS)
                if deal not in self.by_deal and shown:
                    inv.fail(f"deal {deal}: no invoice, yet it shows {STATUS} = {shown}")
        return inv

    def synced_match(self) -> list[Invariant]:
        realm = self.ledger.sync_realm
        return [
            self._synced(
                "every synced contact matches its QuickBooks customer under the mappings",
                SyncObjectType.CONTACTS, self.r.customers[realm], self.r.contacts,
                CONTACT_ID_PROPERTY,
            ),
            self._synced(
                "every synced product matches its QuickBooks item under the mappings",
                SyncObjectType.PRODUCTS, self.r.items[realm], self.r.products,
                PRODUCT_ID_PROPERTY,
            ),
        ]  # fmt: skip

    def _synced(
        self,
        name: str,
        object_type: SyncObjectType,
        sources: list[dict[str, Any]],
        records: list[dict[str, Any]],
        id_property: str,
    ) -> Invariant:
        inv = Invariant(name)
        mappings = self.r.mappings[object_type.value]
        live: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            if not record["archived"] and record["properties"].get(id_property):
                live[str(record["properties"][id_property])].append(record)
        for source in sources:
            qbo_id = str(source["Id"])
            found = live.get(qbo_id, [])
            if object_type is SyncObjectType.CONTACTS and not (
                source.get("PrimaryEmailAddr") or {}
            ).get("Address"):
                continue  # no e-mail address, no contact: refused by design, and said so
            inv.checked += 1
            if source.get("Active") is False:
                if found:
                    inv.fail(f"{qbo_id} is inactive in QuickBooks; CRM record "
                             f"{found[0]['id']} is not archived", qbo_id)  # fmt: skip
                continue
            if len(found) != 1:
                inv.fail(f"{qbo_id} ({source.get('DisplayName') or source.get('Name')}): "
                         f"{len(found)} live CRM records", qbo_id)  # fmt: skip
                continue
            expected = apply_mappings(object_type, source, mappings).properties
            props = found[0]["properties"]
            wrong = {
                k: f"{props.get(k)!r} (QuickBooks: {v!r})"
                for k, v in expected.items()
                if not _same(props.get(k), v)
            }
            if wrong:
                inv.fail(f"{qbo_id} -> {found[0]['id']}: {wrong}", qbo_id)
        return inv


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def delivered_changes(deliveries: list[dict[str, Any]]) -> dict[tuple[str, str, str], datetime]:
    """(realm, entity, id) -> the latest change of it that QuickBooks delivered (a 200 from
    the gateway), from the QBO sandbox's log of webhook attempts (legacy bodies)."""
    latest: dict[tuple[str, str, str], datetime] = {}
    for attempt in deliveries:
        if attempt.get("status") != 200 or "body" not in attempt:
            continue
        for note in json.loads(attempt["body"]).get("eventNotifications", []):
            for entity in note["dataChangeEvent"]["entities"]:
                key = (str(note["realmId"]), entity["name"], str(entity["id"]))
                at = _instant(entity["lastUpdated"])
                latest[key] = max(at, latest.get(key, at))
    return latest


def sync_without_backfill(
    stale: list[Invariant], records: Records, realm: str, deliveries: list[dict[str, Any]]
) -> tuple[Invariant, int]:
    """Of the synced records stale before the settle backfill, those whose latest change
    QuickBooks did deliver to the gateway: the webhook path should have carried each (an
    invariant); the others' webhooks were dropped (counted, and healed by the backfill)."""
    inv = Invariant("a customer or item change whose webhook was delivered reaches the CRM")
    latest = delivered_changes(deliveries)
    dropped = 0
    for before, entity, sources in zip(
        stale, ("Customer", "Item"), (records.customers[realm], records.items[realm]), strict=True
    ):
        inv.checked += before.checked
        by_id = {str(s["Id"]): s for s in sources}
        for qbo_id in before.broken_ids:
            changed = _instant(by_id[qbo_id]["MetaData"]["LastUpdatedTime"]).replace(microsecond=0)
            sent = latest.get((realm, entity, qbo_id))
            if sent is not None and sent >= changed:
                when = f"changed at {changed.isoformat()}, delivered at {sent.isoformat()}"
                inv.fail(f"{entity} {qbo_id} {when}, and its CRM record was still behind", qbo_id)
            else:
                dropped += 1
    return inv, dropped


def _same(have: Any, want: str) -> bool:
    if have is None:
        return False
    if str(have).strip().lower() == want.strip().lower():
        return True
    a, b = _dec(have), _dec(want)
    return a is not None and a == b


def report(invariants: list[Invariant]) -> bool:
    ok = True
    for inv in invariants:
        verdict = "PASS" if inv.ok else "FAIL"
        say(f"   {verdict}  {inv.name}  ({inv.checked} checked"
            f"{'' if inv.ok else f', {len(inv.failures)} broken'})")  # fmt: skip
        for text in inv.failures[:SHOWN]:
            say(f"          - {text}")
        if len(inv.failures) > SHOWN:
            say(f"          ... and {len(inv.failures) - SHOWN} more")
        ok = ok and inv.ok
    return ok
