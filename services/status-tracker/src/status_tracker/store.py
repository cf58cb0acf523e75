"""status-tracker's MongoDB collections and their indexes.

A tracked invoice is one document (`tracked_invoices`, `_id` "<realm>:<invoice>") holding its
newest state and a version. A change is one conditional update from the version it was
decided on, carrying the events it causes in the document's outbox (`dealbooks_kit.outbox`):
MongoDB applies one document's update atomically, so of two handlers moving the same invoice
from one version exactly one wins and its `invoice.status-changed` exists once; the other
reads again and decides again. A payment is one document too (`payment_records`, per QuickBooks
payment): what it was last recorded as applying to each tracked invoice, changed the same way.

Events are relayed right after the write. A relay that does not finish leaves the handler's
Kafka offset uncommitted, so the event is handled again, and every read here relays what the
document still holds (`Outbox.relay_left`); a restarted process's first outbox pass scans
both collections. Published entries are removed a moment later, together (`settle_later`).

Every question a handler asks on the hot path is answered by `_id` look-ups: the local
MongoDB-wire server (FerretDB on SQLite) serves those from its primary key but scans the whole
collection for any other filter. So a deal's projection document lists the deal's tracked
invoices, and a contact's or company's document (`record_invoices`) the invoices linked to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

from dealbooks_contracts import Envelope, InvoiceStage
from dealbooks_kit import ConflictError, IndexSpec, Outbox, outbox_entry, push_entries
from dealbooks_kit.outbox import OUTBOX_FIELD
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from status_tracker.domain import InvoiceSnapshot

if TYPE_CHECKING:
    from status_tracker.domain import TimelineEntry

TRACKED = "tracked_invoices"
PAYMENTS = "payment_records"
DEALS = "deal_projections"
WATERMARKS = "cdc_watermarks"
# Contacts' and companies' tracked invoices (a deal's are listed in its projection document).
RECORDS = "record_invoices"
# What was put on CRM timelines, by entry key: app events and notes (see crm_entries).
ENTRIES = "crm_entries"
APP_EVENT = "app_event"
NOTE = "note"
# Where earlier releases kept transitions and payment applications: their outboxes are still
# relayed once, at the first pass after an upgrade.
LEGACY_OUTBOXES = ("invoice_transitions", "payment_applications")

INDEXES = [
    IndexSpec(TRACKED, [("portal_id", 1), ("deal_id", 1)]),
    IndexSpec(TRACKED, [("realm_id", 1), ("stage", 1)]),
    IndexSpec(TRACKED, [("portal_id", 1), ("target.object_id", 1)]),
]

Doc = dict[str, Any]


class Claim(Enum):
    """What claiming a note's entry found: claimed for the first time, taken over from a run
    whose lease passed (it may have made the note), held by a live run, or done."""

    NEW = "new"
    TAKEN_OVER = "taken_over"
    HELD = "held"
    DONE = "done"


class ConcurrentUpdate(Exception):
    """Someone else changed the invoice or payment since it was read; read again and retry."""


T = TypeVar("T")
ATTEMPTS = 5


async def deciding_anew(attempt: Callable[[int], Awaitable[T]], what: str) -> T:
    """`attempt(n)` again while another writer saves first (ConcurrentUpdate): each attempt
    reads and decides anew; ConflictError after ATTEMPTS, naming `what` kept changing."""
    for n in range(ATTEMPTS):
        try:
            return await attempt(n)
        except ConcurrentUpdate:
            continue
    raise ConflictError(f"{what} kept changing under us")


def _now() -> datetime:
    return datetime.now(UTC)


def snapshot_fields(snap: InvoiceSnapshot) -> Doc:
    """A snapshot as stored (decimals and dates as strings: exact and portable)."""
    return {
        "total": format(snap.total, "f"),
        "balance": format(snap.balance, "f"),
        "currency": snap.currency,
        "due_date": snap.due_date.isoformat() if snap.due_date else None,
        "doc_number": snap.doc_number,
        "email_status": snap.email_status,
        "delivery_type": snap.delivery_type,
        "private_note": snap.private_note,
        "recipient_email": snap.recipient_email,
        "customer_name": snap.customer_name,
        "sync_token": snap.sync_token,
        "last_updated": snap.last_updated,
        "deleted": snap.deleted,
        "void_seen": snap.void_seen,
        "payments": list(snap.payments),
        "txn_date": snap.txn_date.isoformat() if snap.txn_date else None,
    }


def snapshot_of(doc: Doc) -> InvoiceSnapshot:
    """The stored snapshot of a tracked invoice."""
    due, txn = doc.get("due_date"), doc.get("txn_date")
    return InvoiceSnapshot(
        qbo_invoice_id=doc["qbo_invoice_id"],
        total=Decimal(doc.get("total") or "0"),
        balance=Decimal(doc.get("balance") or "0"),
        currency=doc.get("currency") or "",
        due_date=date.fromisoformat(due) if due else None,
        doc_number=doc.get("doc_number"),
        email_status=doc.get("email_status"),
        delivery_type=doc.get("delivery_type"),
        private_note=doc.get("private_note"),
        recipient_email=doc.get("recipient_email"),
        customer_name=doc.get("customer_name"),
        sync_token=int(doc.get("sync_token") or 0),
        last_updated=doc.get("last_updated"),
        deleted=bool(doc.get("deleted")),
        void_seen=bool(doc.get("void_seen")),
        payments=tuple(doc.get("payments") or ()),
        txn_date=date.fromisoformat(txn) if txn else None,
    )


def _projection(deal: Doc | None) -> Doc | None:
    """A deal document as what the deal was last given (without its list of invoices); None
    before its first projection."""
    if deal is None or "qbo_invoice_id" not in deal:
        return None
    return {k: v for k, v in deal.items() if k != "invoices"}


def applied_in(payment: Doc) -> dict[str, Decimal]:
    """What a payment document records as applied, per invoice (removed ones left out)."""
    return {
        invoice: Decimal(application["amount"])
        for invoice, application in payment["applications"].items()
        if not application.get("removed")
    }


def stage_in(doc: Doc) -> InvoiceStage | None:
    return InvoiceStage(doc["stage"]) if doc.get("stage") else None


class Store:
    """Everything status-tracker keeps, one method per question a handler asks."""

    def __init__(self, db: AsyncDatabase[Doc], outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self._watermarked: set[str] = set()  # realms whose CDC watermark exists

    # ------------------------------------------------------------------ tracked invoices

    async def track(self, realm_id: str, qbo_invoice_id: str, fields: Doc) -> Doc:
        """Start following an invoice (drafted or linked); repeat calls change nothing more.
        Returns the tracked document."""
        doc: Doc | None = await self.db[TRACKED].find_one_and_update(
            {"_id": f"{realm_id}:{qbo_invoice_id}"},
            {
                "$set": fields,
                "$setOnInsert": {
                    "realm_id": realm_id,
                    "qbo_invoice_id": qbo_invoice_id,
                    "version": 0,
                    "tracked_at": _now(),
                },
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        if fields.get("deal_id"):
            portal_id, deal_id = fields["portal_id"], fields["deal_id"]
            await self.db[DEALS].update_one(
                {"_id": f"{portal_id}:{deal_id}"},
                {
                    "$addToSet": {"invoices": f"{realm_id}:{qbo_invoice_id}"},
                    "$setOnInsert": {"portal_id": portal_id, "deal_id": deal_id},
                },
                upsert=True,
            )
        elif fields.get("target"):
            target = fields["target"]
            await self.db[RECORDS].update_one(
                {"_id": _record_id(fields["portal_id"], target)},
                {
                    "$addToSet": {"invoices": f"{realm_id}:{qbo_invoice_id}"},
                    "$setOnInsert": {"portal_id": fields["portal_id"], **target},
                },
                upsert=True,
            )
        if realm_id not in self._watermarked:
            await self.db[WATERMARKS].update_one(
                {"_id": realm_id}, {"$setOnInsert": {"since": _now()}}, upsert=True
            )
            self._watermarked.add(realm_id)
        assert doc is not None  # upserted
        return await self._relayed(TRACKED, doc)

    async def tracked(self, realm_id: str, qbo_invoice_id: str) -> Doc | None:
        """A tracked invoice; None if it is not tracked."""
        doc = await self.db[TRACKED].find_one({"_id": f"{realm_id}:{qbo_invoice_id}"})
        return await self._relayed(TRACKED, doc) if doc else None

    async def alone_at(self, portal_id: str, deal_id: str, key: str, version: Any) -> bool:
        """Whether the deal's tracked invoices (with a stage) are still at most the one
        invoice `key` (`realm:id`), at `version`: none saved a newer version of it, and no
        other invoice of the deal was saved meanwhile."""
        cursor = self.db[TRACKED].find(
            {"portal_id": portal_id, "deal_id": deal_id, "stage": {"$exists": True}},
            {"version": 1},
        )
        found = await cursor.to_list(2)
        return all(doc["_id"] == key and doc.get("version") == version for doc in found)

    async def save_state(
        self, doc: Doc, snap: InvoiceSnapshot, stage: InvoiceStage, events: Sequence[Envelope[Any]]
    ) -> Doc:
        """Record the invoice's next version with the events it causes, unless another writer
        moved it on since `doc` was read (`ConcurrentUpdate`: read again and decide again).
        Returns the tracked document as of that version."""
        version = int(doc.get("version", 0))
        state = {
            **snapshot_fields(snap),
            "stage": stage.value,
            "checked_at": _now(),
            "version": version + 1,
        }
        await self._change(TRACKED, doc["_id"], version, state, events)
        saved = {**doc, **state}
        saved.pop(OUTBOX_FIELD, None)
        return saved

    async def deal(
        self, portal_id: str, deal_id: str, known: Doc | None = None
    ) -> tuple[Doc | None, list[Doc]]:
        """What the deal was last given (None before its first projection) and its tracked
        invoices that have a stage, from one read of the deal's document. `known`: one of
        them as the caller just saved it (`save_state`'s answer), so not read again."""
        deal = await self.db[DEALS].find_one({"_id": f"{portal_id}:{deal_id}"})
        if deal is not None and "invoices" in deal:
            mine = []
            for invoice in deal["invoices"]:
                if known is not None and known["_id"] == invoice:
                    mine.append(known)
                    continue
                found = await self.db[TRACKED].find_one({"_id": invoice})
                if found and (found["portal_id"], found.get("deal_id")) == (portal_id, deal_id):
                    mine.append(found)
        else:  # tracked before deals listed their invoices
            cursor = self.db[TRACKED].find({"portal_id": portal_id, "deal_id": deal_id})
            mine = [doc async for doc in cursor]
        return _projection(deal), [doc for doc in mine if doc.get("stage")]

    async def record_invoices(self, portal_id: str, target: Doc) -> list[Doc]:
        """The tracked invoices (with a stage) linked to a contact or company (`target`:
        `{object_type, object_id}`), from one read of the record's document."""
        record = await self.db[RECORDS].find_one({"_id": _record_id(portal_id, target)})
        if record is not None:
            found = [await self.db[TRACKED].find_one({"_id": i}) for i in record["invoices"]]
        else:  # linked before records listed their invoices (a rare filtered read)
            cursor = self.db[TRACKED].find(
                {"portal_id": portal_id, "target.object_id": target["object_id"]}
            )
            found = [doc async for doc in cursor]
        return [
            doc
            for doc in found
            if doc is not None
            and doc.get("portal_id") == portal_id
            and doc.get("target") == target
            and doc.get("stage")
        ]

    async def payments_seen(
        self, realm_id: str, invoice_id: str, payment_ids: Sequence[str]
    ) -> list[Doc]:
        """What each of these payments is recorded as applying to one invoice (`amount`,
        `date`, `recorded_at`); payments not recorded, or removed from it, left out."""
        out = []
        for payment_id in payment_ids:
            doc = await self.db[PAYMENTS].find_one({"_id": f"{realm_id}:{payment_id}"})
            application = ((doc or {}).get("applications") or {}).get(invoice_id)
            if doc is None or application is None or application.get("removed"):
                continue
            out.append({**application, "recorded_at": doc.get("recorded_at")})
        return out

    async def open_invoices(self) -> list[Doc]:
        """Tracked invoices that can still become overdue."""
        stages = [InvoiceStage.AWAITING_SEND, InvoiceStage.SENT, InvoiceStage.PARTIALLY_PAID]
        cursor = self.db[TRACKED].find({"stage": {"$in": [s.value for s in stages]}})
        return [doc async for doc in cursor]

    async def _relayed(self, collection: str, doc: Doc) -> Doc:
        """`doc` as read, after relaying the events a crashed or failed run left in it."""
        if doc.get(OUTBOX_FIELD):
            await self.outbox.relay_left(collection, doc)
        return doc

    async def portal_of_realm(self, realm_id: str) -> str | None:
        """The portal whose invoices of this QuickBooks company are tracked (for its tokens)."""
        doc = await self.db[TRACKED].find_one({"realm_id": realm_id}, {"portal_id": 1})
        return str(doc["portal_id"]) if doc and doc.get("portal_id") else None

    async def realms_of_portal(self, portal_id: str) -> list[str]:
        """The QuickBooks companies with invoices tracked for a portal (a rare filtered read)."""
        cursor = self.db[TRACKED].find({"portal_id": portal_id}, {"realm_id": 1})
        return sorted({doc["realm_id"] async for doc in cursor})

    async def invoices_of_realm(self, realm_id: str) -> list[Doc]:
        """Every tracked invoice of a QuickBooks company (a rare full pass: a filtered read)."""
        cursor = self.db[TRACKED].find(
            {"realm_id": realm_id}, {"portal_id": 1, "qbo_invoice_id": 1}
        )
        return [doc async for doc in cursor]

    async def payments_of_invoice(self, realm_id: str, invoice_id: str) -> list[str]:
        """Payments recorded as applying to an invoice now (a rare full pass: a filtered read)."""
        cursor = self.db[PAYMENTS].find({"realm_id": realm_id, "invoices": invoice_id})
        return [
            str(doc["qbo_payment_id"])
            async for doc in cursor
            if not doc["applications"].get(invoice_id, {}).get("removed", True)
        ]

    async def realms(self) -> list[str]:
        return [doc["_id"] async for doc in self.db[WATERMARKS].find({})]

    # ------------------------------------------------------------------ payments

    async def payment(self, realm_id: str, payment_id: str) -> Doc:
        """A payment as last recorded (version 0 and no applications before its first)."""
        doc = await self.db[PAYMENTS].find_one({"_id": f"{realm_id}:{payment_id}"})
        if doc is None:
            return {
                "_id": f"{realm_id}:{payment_id}",
                "realm_id": realm_id,
                "qbo_payment_id": payment_id,
                "version": 0,
                "applications": {},
            }
        return await self._relayed(PAYMENTS, doc)

    async def applications(self, realm_id: str, payment_id: str) -> dict[str, Decimal]:
        """What a payment was last recorded as applying, per tracked invoice."""
        return applied_in(await self.payment(realm_id, payment_id))

    async def record_payment(
        self, payment: Doc, applications: dict[str, Doc], events: Sequence[Envelope[Any]]
    ) -> None:
        """Record what the payment (as `payment` read it) now applies (`applications`: the
        changed ones, per invoice) with the events that says, unless another writer recorded it
        since it was read (`ConcurrentUpdate`)."""
        version = int(payment["version"])
        merged = {**payment["applications"], **applications}
        fields = {
            "realm_id": payment["realm_id"],
            "qbo_payment_id": payment["qbo_payment_id"],
            "applications": merged,
            "invoices": sorted(merged),
            "recorded_at": _now(),
            "version": version + 1,
        }
        await self._change(PAYMENTS, payment["_id"], version, fields, events, insert=version == 0)

    async def _change(
        self,
        collection: str,
        doc_id: str,
        version: int,
        fields: Doc,
        events: Sequence[Envelope[Any]],
        *,
        insert: bool = False,
    ) -> None:
        """Write `fields` (with the next version) and `events` into a document, unless it
        moved on from `version` (`insert`: unless it exists), then relay the events."""
        entries = [outbox_entry(e) for e in events]
        try:
            if insert:
                await self.db[collection].insert_one(
                    {"_id": doc_id, **fields, OUTBOX_FIELD: entries}
                )
            else:
                result = await self.db[collection].update_one(
                    {"_id": doc_id, "version": version},
                    {"$set": fields, **(push_entries(entries) if entries else {})},
                )
        except DuplicateKeyError:
            raise ConcurrentUpdate(doc_id) from None
        except Exception:
            # Perhaps applied all the same: a timer's write (the overdue clock) is read again
            # by no rerun, so the next outbox pass looks at what the document holds.
            if entries:
                self.outbox.check_later(collection, doc_id)
            raise
        if not insert and result.matched_count == 0:
            raise ConcurrentUpdate(doc_id)
        if entries:
            await self.outbox.relay(collection, doc_id, written=entries, settle_later=True)

    # ------------------------------------------------------------------ CRM timeline entries

    async def entry(self, portal_id: str, key: str) -> Doc | None:
        """What was put on a CRM timeline under `key` (claimed or done), if anything."""
        doc: Doc | None = await self.db[ENTRIES].find_one({"_id": f"{portal_id}:{key}"})
        return doc

    async def claim_entry(
        self, portal_id: str, entry: TimelineEntry, lease_seconds: float
    ) -> Claim:
        """Claim the writing of a note: first come, or taking over a claim older than the
        lease (its run stopped); a younger claim is another run's, at work right now."""
        now = _now()
        try:
            await self.db[ENTRIES].insert_one(
                {
                    "_id": f"{portal_id}:{entry.key}",
                    "portal_id": portal_id,
                    "key": entry.key,
                    "kind": NOTE,
                    "object_type": entry.object_type,
                    "object_id": entry.object_id,
                    "done": False,
                    "claimed_at": now,
                }
            )
            return Claim.NEW
        except DuplicateKeyError:
            pass
        taken = await self.db[ENTRIES].update_one(
            {
                "_id": f"{portal_id}:{entry.key}",
                "done": False,
                "claimed_at": {"$lt": now - timedelta(seconds=lease_seconds)},
            },
            {"$set": {"claimed_at": now}},
        )
        if taken.modified_count:
            return Claim.TAKEN_OVER
        known = await self.entry(portal_id, entry.key)
        return Claim.DONE if known is not None and known.get("done") else Claim.HELD

    async def finish_entry(
        self, portal_id: str, entry: TimelineEntry, kind: str, note_id: str | None = None
    ) -> None:
        """Record that `entry` is on its record, as an app event or as the note `note_id`."""
        await self.db[ENTRIES].update_one(
            {"_id": f"{portal_id}:{entry.key}"},
            {
                "$set": {
                    "portal_id": portal_id,
                    "key": entry.key,
                    "kind": kind,
                    "object_type": entry.object_type,
                    "object_id": entry.object_id,
                    "note_id": note_id,
                    "done": True,
                    "done_at": _now(),
                }
            },
            upsert=True,
        )

    # ------------------------------------------------------------------ deals and CDC
    async def save_projection(self, portal_id: str, deal_id: str, fields: Doc) -> None:
        """What the deal was last given (or why not); its list of invoices stays."""
        await self.db[DEALS].update_one(
            {"_id": f"{portal_id}:{deal_id}"},
            {"$set": {"portal_id": portal_id, "deal_id": deal_id, "updated_at": _now(), **fields}},
            upsert=True,
        )

    async def projection(self, portal_id: str, deal_id: str) -> Doc | None:
        """What the deal was last given; None before its first projection."""
        return _projection(await self.db[DEALS].find_one({"_id": f"{portal_id}:{deal_id}"}))

    async def watermark(self, realm_id: str) -> datetime | None:
        doc = await self.db[WATERMARKS].find_one({"_id": realm_id})
        return doc["since"] if doc else None

    async def move_watermark(self, realm_id: str, since: datetime) -> None:
        await self.db[WATERMARKS].update_one({"_id": realm_id}, {"$set": {"since": since}})


def _record_id(portal_id: str, target: Doc) -> str:
    return f"{portal_id}:{target['object_type']}:{target['object_id']}"
