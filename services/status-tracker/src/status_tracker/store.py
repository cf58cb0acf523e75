"""status-tracker's MongoDB collections and their indexes.

Each state of a tracked invoice is a transition document (`invoice_transitions`, `_id`
"<realm>:<invoice>:<version>") inserted once with the events the change causes in its outbox,
relayed by the kit's outbox (`dealbooks_kit.outbox`). A unique-`_id` insert is atomic on every
MongoDB-wire server, so of two handlers moving the same invoice from one version, exactly one
wins and its `invoice.status-changed` exists once; a conditional update is not isolated across
connections on FerretDB and would let both win. The tracked invoice document is the
projection of its newest transition, for queries; reads merge in any newer transition, so a
crash or a lost write between the two heals on the next read or save.

Each payment application is one document holding its state and its events, written in one
update; a crash before the relay leaves them for the next run or the periodic pass, with the
same envelope ids.

Every question a handler asks on the hot path is answered by `_id` look-ups: the local
MongoDB-wire server (FerretDB on SQLite) serves those from its primary key but scans the whole
collection for any other filter. So a deal's projection document lists the deal's tracked
invoices, and a payment's document (`payments`) lists the invoices it was recorded against.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from dealbooks_contracts import Envelope, InvoiceStage
from dealbooks_kit import IndexSpec, Outbox, outbox_entry, push
from dealbooks_kit.outbox import OUTBOX_FIELD
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from status_tracker.domain import InvoiceSnapshot

TRACKED = "tracked_invoices"
TRANSITIONS = "invoice_transitions"
PAYMENTS = "payment_applications"
PAYMENT_INVOICES = "payments"
DEALS = "deal_projections"
WATERMARKS = "cdc_watermarks"

INDEXES = [
    IndexSpec(TRACKED, [("portal_id", 1), ("deal_id", 1)]),
    IndexSpec(TRACKED, [("realm_id", 1), ("stage", 1)]),
]

Doc = dict[str, Any]
_PROJECTION_ROUNDS = 10


class ConcurrentUpdate(Exception):
    """Someone else changed the invoice since it was read; read again and retry."""


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
    }


def snapshot_of(doc: Doc) -> InvoiceSnapshot:
    """The stored snapshot of a tracked invoice."""
    due = doc.get("due_date")
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
    )


def _state(transition: Doc) -> Doc:
    """The fields a transition gives its tracked invoice."""
    return {k: v for k, v in transition.items() if k not in {"_id", "invoice", OUTBOX_FIELD}}


def _projection(deal: Doc | None) -> Doc | None:
    """A deal document as what the deal was last given (without its list of invoices); None
    before its first projection."""
    if deal is None or "qbo_invoice_id" not in deal:
        return None
    return {k: v for k, v in deal.items() if k != "invoices"}


def stage_in(doc: Doc) -> InvoiceStage | None:
    return InvoiceStage(doc["stage"]) if doc.get("stage") else None


class Store:
    """Everything status-tracker keeps, one method per question a handler asks."""

    def __init__(self, db: AsyncDatabase[Doc], outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox
        self._watermarked: set[str] = set()  # realms whose CDC watermark exists

    # ------------------------------------------------------------------ tracked invoices

    async def track(self, realm_id: str, qbo_invoice_id: str, fields: Doc) -> None:
        """Start following an invoice (drafted or linked); repeat calls change nothing more."""
        await self.db[TRACKED].update_one(
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
        if realm_id not in self._watermarked:
            await self.db[WATERMARKS].update_one(
                {"_id": realm_id}, {"$setOnInsert": {"since": _now()}}, upsert=True
            )
            self._watermarked.add(realm_id)

    async def tracked(self, realm_id: str, qbo_invoice_id: str) -> Doc | None:
        """A tracked invoice as of its newest transition; None if it is not tracked."""
        doc = await self.db[TRACKED].find_one({"_id": f"{realm_id}:{qbo_invoice_id}"})
        return await self._merged(doc) if doc else None

    async def save_state(
        self, doc: Doc, snap: InvoiceSnapshot, stage: InvoiceStage, events: Sequence[Envelope[Any]]
    ) -> Doc:
        """Record the invoice's next version with the events it causes, unless another writer
        recorded that version first (`ConcurrentUpdate`: read again and decide again).
        Returns the tracked document as of that version."""
        version = int(doc.get("version", 0)) + 1
        transition_id = f"{doc['_id']}:{version}"
        marker = await self.outbox.expect(TRANSITIONS, transition_id) if events else None
        transition = {
            "_id": transition_id,
            "invoice": doc["_id"],
            "version": version,
            **snapshot_fields(snap),
            "stage": stage.value,
            "checked_at": _now(),
            OUTBOX_FIELD: [outbox_entry(e) for e in events],
        }
        try:
            await self.db[TRANSITIONS].insert_one(transition)
        except DuplicateKeyError:
            if marker is not None:
                await self.outbox.discard(marker)
            raise ConcurrentUpdate(doc["_id"]) from None
        newest = await self._project(doc["_id"], transition)
        if marker is not None:
            written = transition[OUTBOX_FIELD]
            await self.outbox.relay(TRANSITIONS, transition_id, marker, written=written)
        return {**doc, **newest}

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
                    mine.append(await self._merged(found))
        else:  # tracked before deals listed their invoices
            cursor = self.db[TRACKED].find({"portal_id": portal_id, "deal_id": deal_id})
            mine = [await self._merged(doc) async for doc in cursor]
        return _projection(deal), [doc for doc in mine if doc.get("stage")]

    async def open_invoices(self) -> list[Doc]:
        """Tracked invoices that can still become overdue."""
        stages = [InvoiceStage.AWAITING_SEND, InvoiceStage.SENT, InvoiceStage.PARTIALLY_PAID]
        cursor = self.db[TRACKED].find({"stage": {"$in": [s.value for s in stages]}})
        return [await self._merged(doc) async for doc in cursor]

    async def _newest(self, invoice: str, after: int) -> Doc | None:
        """The newest transition past version `after`, found by `_id` (invoice:version).

        Versions are consecutive, so probing after+1, after+2, ... finds it, usually in one
        look-up. By `_id` on purpose: the local MongoDB-wire server (FerretDB on SQLite)
        answers `_id` look-ups from its primary key but scans the whole collection for any
        other filter, which made this read the slowest step of every payment.
        """
        newest = None
        version = after + 1
        while found := await self.db[TRANSITIONS].find_one({"_id": f"{invoice}:{version}"}):
            newest, version = found, version + 1
        return newest

    async def _merged(self, doc: Doc) -> Doc:
        """`doc` with the state of a newer transition its projection has not caught up with."""
        newer = await self._newest(doc["_id"], int(doc.get("version", 0)))
        return {**doc, **_state(newer)} if newer else doc

    async def _project(self, invoice: str, transition: Doc) -> Doc:
        """Bring the tracked document up to `transition` (just inserted) or a newer one;
        returns the state it wrote last (the newest it found).

        Concurrent projections may overwrite each other on FerretDB, so each writer looks for
        a newer transition after its own write and, if there is one, writes that instead: the
        last writer leaves the newest state. Two calls when nobody raced (the usual case).
        Bounded: reads merge in whatever is left (`_merged`)."""
        state, version = _state(transition), int(transition["version"])
        for _ in range(_PROJECTION_ROUNDS):
            await self.db[TRACKED].update_one({"_id": invoice}, {"$set": state})
            newer = await self._newest(invoice, version)
            if newer is None:
                break
            state, version = _state(newer), int(newer["version"])
        return state

    async def portal_of_realm(self, realm_id: str) -> str | None:
        """The portal whose invoices of this QuickBooks company are tracked (for its tokens)."""
        doc = await self.db[TRACKED].find_one({"realm_id": realm_id}, {"portal_id": 1})
        return str(doc["portal_id"]) if doc and doc.get("portal_id") else None

    async def invoices_of_realm(self, realm_id: str) -> list[Doc]:
        """Every tracked invoice of a QuickBooks company (a rare full pass: a filtered read)."""
        cursor = self.db[TRACKED].find(
            {"realm_id": realm_id}, {"portal_id": 1, "qbo_invoice_id": 1}
        )
        return [doc async for doc in cursor]

    async def payments_of_invoice(self, realm_id: str, invoice_id: str) -> list[str]:
        """Payments recorded as applying to an invoice now (a rare full pass: a filtered read)."""
        cursor = self.db[PAYMENTS].find(
            {"realm_id": realm_id, "qbo_invoice_id": invoice_id, "removed": {"$ne": True}},
            {"qbo_payment_id": 1},
        )
        return [str(doc["qbo_payment_id"]) async for doc in cursor]

    async def realms(self) -> list[str]:
        return [doc["_id"] async for doc in self.db[WATERMARKS].find({})]

    # ------------------------------------------------------------------ payments

    async def applications(self, realm_id: str, payment_id: str) -> dict[str, Decimal]:
        """What a payment was last recorded as applying, per tracked invoice."""
        payment = await self.db[PAYMENT_INVOICES].find_one({"_id": f"{realm_id}:{payment_id}"})
        applied: dict[str, Decimal] = {}
        for invoice_id in (payment or {}).get("invoices", []):
            doc = await self.db[PAYMENTS].find_one({"_id": f"{realm_id}:{payment_id}:{invoice_id}"})
            if doc is not None and not doc.get("removed"):
                applied[invoice_id] = Decimal(doc["amount"])
        return applied

    async def record_application(
        self,
        realm_id: str,
        payment_id: str,
        invoice_id: str,
        fields: Doc,
        events: Sequence[Envelope[Any]],
    ) -> None:
        doc_id = f"{realm_id}:{payment_id}:{invoice_id}"
        marker = await self.outbox.expect(PAYMENTS, doc_id)
        # Listed first: a crash in between leaves a listed invoice with nothing recorded, which
        # `applications` reads as "not applied", never an application nobody can find.
        await self.db[PAYMENT_INVOICES].update_one(
            {"_id": f"{realm_id}:{payment_id}"},
            {"$addToSet": {"invoices": invoice_id}},
            upsert=True,
        )
        await self.db[PAYMENTS].update_one(
            {"_id": doc_id},
            {
                "$set": {
                    "realm_id": realm_id,
                    "qbo_payment_id": payment_id,
                    "qbo_invoice_id": invoice_id,
                    "recorded_at": _now(),
                    **fields,
                },
                **push(events),
            },
            upsert=True,
        )
        await self.outbox.relay(PAYMENTS, doc_id, marker)

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
