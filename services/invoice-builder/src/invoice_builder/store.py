"""invoice-builder's MongoDB collections and their indexes.

A request's outcome and the events it causes are written into one document in one update
and relayed by the kit's outbox (`dealbooks_kit.outbox`) right after. A relay that does not
finish leaves the handler's Kafka offset uncommitted, so the event is handled again, and the
rerun reads the document first and relays what it still holds (`Outbox.relay_left`), with the
very same envelope ids; a restarted process's first outbox pass scans both collections. So
no marker is written per request, and published entries are removed a moment later, together
(`settle_later`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import AccountConnected, Envelope
from dealbooks_kit import IndexSpec, Outbox, Remembered, outbox_entry, push_entries
from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from invoice_builder.approval import PENDING as APPROVAL_PENDING
from invoice_builder.approval import ApprovalSettings
from invoice_builder.domain import AccountFacts, AutoDraftRule

ACCOUNTS = "accounts"
REQUESTS = "invoice_requests"
INVOICES = "invoices"
CUSTOMER_LINKS = "customer_links"
PRODUCT_LINKS = "product_links"
RULES = "auto_draft_rules"
AUTO_DRAFTS = "auto_drafts"
APPROVALS = "approvals"
APPROVAL_SETTINGS = "approval_settings"
CRM_TASKS = "crm_tasks"

INDEXES = [
    IndexSpec(ACCOUNTS, [("portal_id", 1)]),
    IndexSpec(REQUESTS, [("portal_id", 1), ("status", 1)]),
    IndexSpec(INVOICES, [("portal_id", 1), ("deal_id", 1)]),
    IndexSpec(RULES, [("portal_id", 1)]),
    IndexSpec(APPROVALS, [("portal_id", 1), ("status", 1), ("requested_at", 1)]),
    IndexSpec(APPROVALS, [("status", 1), ("reminded_at", 1)]),
]

PENDING = "pending"
DRAFTED = "drafted"
REJECTED = "rejected"
LINKED = "linked"
FINAL = (DRAFTED, REJECTED, LINKED)
# A request held for approval (QuickBooks Online Advanced): not final, not to be handled again.
AWAITING_APPROVAL = "awaiting_approval"

Doc = dict[str, Any]


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """Everything invoice-builder keeps, one method per question a handler asks."""

    def __init__(
        self, db: AsyncDatabase[Doc], outbox: Outbox, remember_accounts_seconds: float = 5.0
    ) -> None:
        self.db = db
        self.outbox = outbox
        # Every wizard call and every request reads its company's facts, which change only
        # when connector-auth republishes them: each is remembered briefly, and forgotten at
        # once when this process records a change (another replica's is seen within that).
        self._accounts: Remembered[str, AccountFacts | None] = Remembered(remember_accounts_seconds)

    # ------------------------------------------------------------------ outbox

    async def finish(
        self, collection: str, doc_id: str, fields: Doc, events: Sequence[Envelope[Any]]
    ) -> None:
        """Record an outcome and the events it causes in one write, then publish them.

        Only the events written here are relayed (not read back): whatever an earlier run's
        relay left in the document was relayed by this run's first read (`relay_left`)."""
        written = [outbox_entry(e) for e in events]
        await self.db[collection].update_one(
            {"_id": doc_id},
            {"$set": {**fields, "updated_at": _now()}, **push_entries(written)},
            upsert=True,
        )
        await self.outbox.relay(collection, doc_id, written=written, settle_later=True)

    async def relay_left(self, collection: str, doc: Doc) -> None:
        """Publish what a document just read still holds in its outbox (an earlier run's)."""
        await self.outbox.relay_left(collection, doc)

    # ------------------------------------------------------------------ accounts

    async def save_account(self, event: Envelope[AccountConnected]) -> None:
        """Keep the latest facts of a connected company (every re-publication replaces them)."""
        facts = event.data
        self._accounts.forget(event.tenant.require_account_id())
        await self.db[ACCOUNTS].update_one(
            {"_id": event.tenant.require_account_id()},
            {
                "$set": {
                    "portal_id": event.tenant.portal_id,
                    "company_name": facts.company_name,
                    "country": facts.country,
                    "home_currency": facts.home_currency,
                    "multicurrency_enabled": facts.multicurrency_enabled,
                    "custom_transaction_numbers": facts.custom_transaction_numbers,
                    "edition": facts.edition,
                    "connected": True,
                    "facts_at": event.occurred_at,
                }
            },
            upsert=True,
        )
        self._accounts.forget(event.tenant.require_account_id())

    async def disconnect_account(self, realm_id: str) -> None:
        self._accounts.forget(realm_id)
        await self.db[ACCOUNTS].update_one({"_id": realm_id}, {"$set": {"connected": False}})
        self._accounts.forget(realm_id)

    async def account(self, realm_id: str) -> AccountFacts | None:
        """A company's facts. Only a connected company's are remembered: one that is not may
        be reconnected through another replica, and a request refused on remembered facts
        would stay refused."""

        async def read() -> AccountFacts | None:
            doc = await self.db[ACCOUNTS].find_one({"_id": realm_id})
            return _account(doc) if doc else None

        return await self._accounts.get(
            realm_id, read, keep=lambda facts: facts is not None and facts.connected
        )

    async def portal_of_realm(self, realm_id: str) -> str | None:
        """The portal a QuickBooks company is connected to (its tokens are asked for by both)."""
        doc = await self.db[ACCOUNTS].find_one({"_id": realm_id}, {"portal_id": 1})
        return str(doc["portal_id"]) if doc else None

    async def accounts_of(self, portal_id: str) -> list[AccountFacts]:
        cursor = self.db[ACCOUNTS].find({"portal_id": portal_id, "connected": True})
        return [_account(doc) async for doc in cursor]

    # ------------------------------------------------------------------ requests

    async def request(self, request_id: str) -> Doc | None:
        """A request's document, with the events its outbox still holds (`relay_left`)."""
        return await self.db[REQUESTS].find_one({"_id": request_id})

    async def mark_pending(
        self, request_id: str, portal_id: str, realm_id: str, deal_id: str | None
    ) -> None:
        """A submitted request whose outcome is not known yet (the wizard polls it)."""
        await self.db[REQUESTS].update_one(
            {"_id": request_id},
            {
                "$setOnInsert": {
                    "status": PENDING,
                    "portal_id": portal_id,
                    "realm_id": realm_id,
                    "deal_id": deal_id,
                    "created_at": _now(),
                }
            },
            upsert=True,
        )

    # ------------------------------------------------------------------ invoices

    async def save_invoice(self, realm_id: str, qbo_invoice_id: str, fields: Doc) -> None:
        """Upsert an invoice dealbooks created or linked (by QBO id: replays are harmless)."""
        await self.db[INVOICES].update_one(
            {"_id": f"{realm_id}:{qbo_invoice_id}"},
            {"$set": {"realm_id": realm_id, "qbo_invoice_id": qbo_invoice_id, **fields}},
            upsert=True,
        )

    async def invoice(self, realm_id: str, qbo_invoice_id: str) -> Doc | None:
        return await self.db[INVOICES].find_one({"_id": f"{realm_id}:{qbo_invoice_id}"})

    # ------------------------------------------------------------------ links

    async def customer_link(self, portal_id: str, realm_id: str, crm_key: str) -> str | None:
        doc = await self.db[CUSTOMER_LINKS].find_one({"_id": f"{portal_id}:{realm_id}:{crm_key}"})
        return str(doc["qbo_customer_id"]) if doc else None

    async def link_customer(
        self, portal_id: str, realm_id: str, crm_key: str, qbo_customer_id: str
    ) -> None:
        await self.db[CUSTOMER_LINKS].update_one(
            {"_id": f"{portal_id}:{realm_id}:{crm_key}"},
            {"$set": {"qbo_customer_id": qbo_customer_id, "linked_at": _now()}},
            upsert=True,
        )

    async def link_product(
        self, portal_id: str, realm_id: str, crm_product_id: str, qbo_item_id: str
    ) -> None:
        await self.db[PRODUCT_LINKS].update_one(
            {"_id": f"{portal_id}:{realm_id}:{crm_product_id}"},
            {
                "$set": {
                    "portal_id": portal_id,
                    "realm_id": realm_id,
                    "crm_product_id": crm_product_id,
                    "qbo_item_id": qbo_item_id,
                }
            },
            upsert=True,
        )

    async def product_links(self, portal_id: str, realm_id: str) -> dict[str, str]:
        cursor = self.db[PRODUCT_LINKS].find({"portal_id": portal_id, "realm_id": realm_id})
        return {doc["crm_product_id"]: doc["qbo_item_id"] async for doc in cursor}

    # ------------------------------------------------------------------ auto-draft rules

    async def save_rule(self, rule: AutoDraftRule) -> None:
        """Save a rule; it is on since its first save while on (an edit keeps that moment)."""
        key = f"{rule.portal_id}:{rule.rule_id}"
        known = await self.db[RULES].find_one({"_id": key})
        since = None
        if rule.enabled:
            was_on = known is not None and known.get("enabled", True)
            since = (known or {}).get("active_since") if was_on else None
            since = since or _now()
        await self.db[RULES].replace_one(
            {"_id": key},
            {
                "active_since": since,
                "swept_until": (known or {}).get("swept_until") if since else None,
                "portal_id": rule.portal_id,
                **rule.settings(),
            },
            upsert=True,
        )

    async def rules_of(self, portal_id: str) -> list[AutoDraftRule]:
        cursor = self.db[RULES].find({"portal_id": portal_id})
        return [_rule(d) async for d in cursor]

    async def portals_with_rules(self) -> list[str]:
        """The portals with at least one rule on (the stage sweep's tenants)."""
        return sorted(set(await self.db[RULES].distinct("portal_id", {"enabled": True})))

    async def swept_until(self, portal_id: str, rule_id: str) -> datetime | None:
        doc = await self.db[RULES].find_one({"_id": f"{portal_id}:{rule_id}"}, {"swept_until": 1})
        return _utc((doc or {}).get("swept_until"))

    async def mark_swept(self, portal_id: str, rule_id: str, until: datetime) -> None:
        await self.db[RULES].update_one(
            {"_id": f"{portal_id}:{rule_id}"}, {"$set": {"swept_until": until}}
        )

    async def auto_draft_of(self, portal_id: str, deal_id: str) -> Doc | None:
        """The deal's auto-draft record, if a rule fired for it already."""
        return await self.db[AUTO_DRAFTS].find_one({"_id": f"{portal_id}:{deal_id}"})

    async def rule(self, portal_id: str, rule_id: str) -> AutoDraftRule | None:
        """One rule of the portal (a rule is keyed by its portal: another's is never found)."""
        doc = await self.db[RULES].find_one({"_id": f"{portal_id}:{rule_id}"})
        return _rule(doc) if doc else None

    async def delete_rule(self, portal_id: str, rule_id: str) -> bool:
        """Remove one rule of the portal; False when it has none by that id. Deals it already
        drafted for keep their auto-draft record, so a rule saved again drafts no deal twice."""
        deleted = await self.db[RULES].delete_one({"_id": f"{portal_id}:{rule_id}"})
        return deleted.deleted_count > 0

    async def claim_auto_draft(self, portal_id: str, deal_id: str, rule_id: str) -> Doc:
        """The auto-draft record of a deal: created by the first rule that fires, then kept."""
        doc = await self.db[AUTO_DRAFTS].find_one_and_update(
            {"_id": f"{portal_id}:{deal_id}"},
            {"$setOnInsert": {"rule_id": rule_id, "claimed_at": _now(), "status": PENDING}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return dict(doc or {})

    # ------------------------------------------------------------------ approvals

    async def await_approval(
        self, request_id: str, fields: Doc, events: Sequence[Envelope[Any]]
    ) -> bool:
        """Mark a request as held for approval, with the events that say so, unless it has an
        outcome already (an approver may have been quicker than this write); then publish
        them. False when the request was final."""
        written = [outbox_entry(e) for e in events]
        updated = await self.db[REQUESTS].update_one(
            {"_id": request_id, "status": {"$nin": list(FINAL)}},
            {
                "$set": {**fields, "status": AWAITING_APPROVAL, "updated_at": _now()},
                **push_entries(written),
            },
        )
        if not updated.modified_count:
            return False
        await self.outbox.relay(REQUESTS, request_id, written=written, settle_later=True)
        return True

    async def open_approval(self, request_id: str, fields: Doc) -> Doc:
        """The approval of a request: written by its first opening, then kept as it is."""
        doc = await self.db[APPROVALS].find_one_and_update(
            {"_id": request_id},
            {
                "$setOnInsert": {
                    **fields,
                    "status": APPROVAL_PENDING,
                    "requested_at": _now(),
                    "reminded_at": None,
                }
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return dict(doc or {})

    async def approval(self, request_id: str) -> Doc | None:
        return await self.db[APPROVALS].find_one({"_id": request_id})

    async def decide_approval(
        self, request_id: str, decision: str, fields: Doc, events: Sequence[Envelope[Any]]
    ) -> bool:
        """Decide a pending approval, with the events the decision causes, in one conditional
        write: of any number of deciders at once, exactly one finds it pending and wins.
        False for the others (it was decided already)."""
        written = [outbox_entry(e) for e in events]
        updated = await self.db[APPROVALS].update_one(
            {"_id": request_id, "status": APPROVAL_PENDING},
            {"$set": {**fields, "status": decision, "decided_at": _now()}, **push_entries(written)},
        )
        if not updated.modified_count:
            return False
        await self.outbox.relay(APPROVALS, request_id, written=written, settle_later=True)
        return True

    async def note_approval(self, request_id: str, fields: Doc, *, pending: bool = False) -> bool:
        """Add facts to an approval (its draft, its reminder); `pending`: only while it waits.
        False when nothing matched."""
        query: Doc = {"_id": request_id}
        if pending:
            query["status"] = APPROVAL_PENDING
        updated = await self.db[APPROVALS].update_one(query, {"$set": fields})
        return bool(updated.matched_count)

    async def approvals_of(
        self,
        portal_id: str,
        status: str | None = APPROVAL_PENDING,
        limit: int = 200,
        deal_id: str | None = None,
    ) -> list[Doc]:
        """A portal's approvals (by default the pending ones; those of one deal with
        `deal_id`), oldest request first."""
        query: Doc = {"portal_id": portal_id}
        if status:
            query["status"] = status
        if deal_id:
            query["deal_id"] = deal_id
        cursor = self.db[APPROVALS].find(query).sort("requested_at", 1).limit(limit)
        return [doc async for doc in cursor]

    async def portals_with_unreminded_approvals(self) -> list[str]:
        """The portals with pending approvals that have not reminded their approver yet."""
        found = await self.db[APPROVALS].distinct(
            "portal_id", {"status": APPROVAL_PENDING, "reminded_at": None}
        )
        return sorted(str(p) for p in found)

    async def unreminded_approvals(self, portal_id: str) -> list[Doc]:
        cursor = self.db[APPROVALS].find(
            {"portal_id": portal_id, "status": APPROVAL_PENDING, "reminded_at": None}
        )
        return [doc async for doc in cursor]

    async def approval_settings(self, realm_id: str) -> ApprovalSettings | None:
        doc = await self.db[APPROVAL_SETTINGS].find_one({"_id": realm_id})
        if doc is None:
            return None
        return ApprovalSettings(
            realm_id=realm_id,
            portal_id=doc["portal_id"],
            enabled=bool(doc.get("enabled")),
            approver_owner_id=doc.get("approver_owner_id"),
            remind_after_hours=doc.get("remind_after_hours"),
            approver_only=bool(doc.get("approver_only")),
        )

    async def save_approval_settings(self, settings: ApprovalSettings, by: str | None) -> None:
        await self.db[APPROVAL_SETTINGS].update_one(
            {"_id": settings.realm_id},
            {
                "$set": {
                    "portal_id": settings.portal_id,
                    "enabled": settings.enabled,
                    "approver_owner_id": settings.approver_owner_id,
                    "remind_after_hours": settings.remind_after_hours,
                    "approver_only": settings.approver_only,
                    "updated_by": by,
                    "updated_at": _now(),
                }
            },
            upsert=True,
        )

    # ------------------------------------------------------------------ CRM task claims

    async def claim_task(self, portal_id: str, key: str, lease_seconds: float) -> TaskClaim:
        """Claim the making of a CRM task: first come, or taking over a claim older than the
        lease (its run stopped, perhaps after the CRM made the task); a younger claim is
        another run's, at work right now."""
        now = _now()
        doc_id = f"{portal_id}:{key}"
        try:
            await self.db[CRM_TASKS].insert_one(
                {
                    "_id": doc_id,
                    "portal_id": portal_id,
                    "key": key,
                    "claimed_at": now,
                    "task_id": None,
                }
            )
            return TaskClaim(TaskClaim.NEW)
        except DuplicateKeyError:
            pass
        taken = await self.db[CRM_TASKS].update_one(
            {
                "_id": doc_id,
                "task_id": None,
                "claimed_at": {"$lt": now - timedelta(seconds=lease_seconds)},
            },
            {"$set": {"claimed_at": now}},
        )
        if taken.modified_count:
            return TaskClaim(TaskClaim.TAKEN_OVER)
        doc = await self.db[CRM_TASKS].find_one({"_id": doc_id})
        if doc and doc.get("task_id"):
            return TaskClaim(TaskClaim.DONE, str(doc["task_id"]))
        return TaskClaim(TaskClaim.HELD)

    async def finish_task(self, portal_id: str, key: str, task_id: str) -> None:
        await self.db[CRM_TASKS].update_one(
            {"_id": f"{portal_id}:{key}"},
            {"$set": {"task_id": task_id, "done_at": _now()}},
        )


class TaskClaim:
    """What claiming a CRM task found: claimed first, taken over from a run that stopped (it
    may have made the task), held by a live run, or done (with the task's id)."""

    NEW, TAKEN_OVER, HELD, DONE = "new", "taken_over", "held", "done"

    def __init__(self, state: str, task_id: str | None = None) -> None:
        self.state, self.task_id = state, task_id


def _account(doc: Doc) -> AccountFacts:
    return AccountFacts(
        portal_id=doc["portal_id"],
        realm_id=doc["_id"],
        company_name=doc["company_name"],
        country=doc["country"],
        home_currency=doc["home_currency"],
        multicurrency_enabled=bool(doc.get("multicurrency_enabled")),
        custom_transaction_numbers=bool(doc.get("custom_transaction_numbers")),
        connected=bool(doc.get("connected", True)),
        edition=doc.get("edition"),
    )


def _rule(doc: Doc) -> AutoDraftRule:
    return AutoDraftRule(
        rule_id=doc["rule_id"],
        portal_id=doc["portal_id"],
        realm_id=doc["realm_id"],
        deal_stage=doc["deal_stage"],
        enabled=bool(doc.get("enabled", True)),
        terms_id=doc.get("terms_id"),
        default_tax_code=doc.get("default_tax_code"),
        chosen_items=doc.get("chosen_items") or {},
        active_since=_utc(doc.get("active_since")),
    )


def _utc(value: datetime | None) -> datetime | None:
    """A datetime read back from the MongoDB-wire server (naive UTC) made aware."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
