"""reminders' MongoDB collections and their indexes.

- `accounts` (`_id` realm): the connected companies, their portal and edition, as
  connector-auth announces them (`connector.account-connected`, re-published when CompanyInfo
  changes).
- `workflows` (`_id` "<realm>:<workflow>"): a company's settings of one workflow.
- `invoice_records` (`_id` "<realm>:<invoice>"): the CRM record an invoice belongs to, from
  invoice-builder's `invoice.drafted` (a deal) and `invoice.linked` (a deal, contact or company).
- `reminder_tasks` (`_id` "<realm>:<workflow>:<item>:<period>"): one reminder of one item. It is
  claimed before its CRM task is created (`claimed`), then `open` with the task's id, then
  `closed` with the reason; `dropped` when a stale claim turned out to have made no task and the
  item no longer needs one. Opening and closing carry their event in the document's outbox.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from dealbooks_contracts import AccountConnected, Envelope, ReminderWorkflow, is_advanced
from dealbooks_kit import IndexSpec, Outbox, outbox_entry, push_entries
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from reminders.domain import WorkflowSettings, settings_from, settings_values

ACCOUNTS = "accounts"
WORKFLOWS = "workflows"
RECORDS = "invoice_records"
REMINDERS = "reminder_tasks"

CLAIMED, OPEN, CLOSED, DROPPED = "claimed", "open", "closed", "dropped"

INDEXES = [
    IndexSpec(REMINDERS, [("realm_id", 1), ("state", 1)]),
    IndexSpec(REMINDERS, [("portal_id", 1), ("state", 1)]),
]

Doc = dict[str, Any]


class Claim(Enum):
    """What claiming a reminder found: claimed for the first time, taken over from a run whose
    lease passed (it may have made the task), held by a live run, or done already."""

    NEW = "new"
    TAKEN_OVER = "taken_over"
    HELD = "held"
    DONE = "done"


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # stored as UTC


class Store:
    """Everything reminders keeps, one method per question its handlers and routes ask."""

    def __init__(self, db: AsyncDatabase[Doc], outbox: Outbox) -> None:
        self.db = db
        self.outbox = outbox

    # ------------------------------------------------------------------ companies

    async def save_account(self, event: Envelope[AccountConnected]) -> None:
        """The latest facts of a connected company (each re-publication replaces them)."""
        facts = event.data
        await self.db[ACCOUNTS].update_one(
            {"_id": event.tenant.require_account_id()},
            {
                "$set": {
                    "portal_id": event.tenant.portal_id,
                    "company_name": facts.company_name,
                    "home_currency": facts.home_currency,
                    "edition": facts.edition,
                    "advanced": is_advanced(facts.edition),
                    "connected": True,
                    "facts_at": event.occurred_at,
                }
            },
            upsert=True,
        )

    async def disconnect_account(self, realm_id: str) -> None:
        await self.db[ACCOUNTS].update_one({"_id": realm_id}, {"$set": {"connected": False}})

    async def account(self, realm_id: str) -> Doc | None:
        doc: Doc | None = await self.db[ACCOUNTS].find_one({"_id": realm_id})
        return doc

    async def portal_of_realm(self, realm_id: str) -> str | None:
        """The portal a company is connected to (its tokens are asked for by both)."""
        doc = await self.account(realm_id)
        return str(doc["portal_id"]) if doc else None

    async def realms_to_pass(self) -> list[str]:
        """Companies the pass looks at: connected QuickBooks Online Advanced ones, and any
        with reminders still open (their tasks close when the condition clears, whatever
        happened to the company's edition or settings since)."""
        realms = {
            str(doc["_id"])
            async for doc in self.db[ACCOUNTS].find({"connected": True, "advanced": True})
        }
        realms |= set(await self.db[REMINDERS].distinct("realm_id", {"state": OPEN}))
        return sorted(realms)

    # ------------------------------------------------------------------ workflow settings

    async def workflows(self, realm_id: str) -> dict[ReminderWorkflow, WorkflowSettings]:
        """A company's settings of every workflow (the defaults where none were saved)."""
        ids = [f"{realm_id}:{w.value}" for w in ReminderWorkflow]
        stored = {doc["_id"]: doc async for doc in self.db[WORKFLOWS].find({"_id": {"$in": ids}})}
        return {w: settings_from(w, stored.get(f"{realm_id}:{w.value}")) for w in ReminderWorkflow}

    async def save_workflow(
        self, realm_id: str, portal_id: str, settings: WorkflowSettings, by: str | None
    ) -> None:
        await self.db[WORKFLOWS].update_one(
            {"_id": f"{realm_id}:{settings.workflow.value}"},
            {
                "$set": {
                    "realm_id": realm_id,
                    "portal_id": portal_id,
                    **settings_values(settings),
                    "updated_at": _now(),
                    "updated_by": by,
                }
            },
            upsert=True,
        )

    # ------------------------------------------------------------------ invoice -> record

    async def save_record(
        self, realm_id: str, invoice_id: str, portal_id: str, object_type: str, object_id: str
    ) -> None:
        """The CRM record an invoice belongs to (a later link replaces an earlier one)."""
        await self.db[RECORDS].update_one(
            {"_id": f"{realm_id}:{invoice_id}"},
            {
                "$set": {
                    "realm_id": realm_id,
                    "invoice_id": invoice_id,
                    "portal_id": portal_id,
                    "object_type": object_type,
                    "object_id": object_id,
                    "updated_at": _now(),
                }
            },
            upsert=True,
        )

    async def records(self, realm_id: str, invoice_ids: Iterable[str]) -> dict[str, Doc]:
        """The CRM records of invoices, by invoice id (those without one left out)."""
        ids = sorted({f"{realm_id}:{i}" for i in invoice_ids})
        if not ids:
            return {}
        found: dict[str, Doc] = {}
        async for doc in self.db[RECORDS].find({"_id": {"$in": ids}}):
            found[str(doc["invoice_id"])] = doc
        return found

    # ------------------------------------------------------------------ reminders

    async def reminder(self, reminder_id: str) -> Doc | None:
        doc: Doc | None = await self.db[REMINDERS].find_one({"_id": reminder_id})
        return doc

    async def claim(self, fields: Doc, lease_seconds: float) -> Claim:
        """Claim the making of a reminder's task: first come, or taking over a claim older
        than the lease (its run stopped, perhaps after making the task); a younger claim is a
        run at work right now."""
        now = _now()
        try:
            await self.db[REMINDERS].insert_one({**fields, "state": CLAIMED, "claimed_at": now})
            return Claim.NEW
        except DuplicateKeyError:
            pass
        taken = await self.db[REMINDERS].update_one(
            {
                "_id": fields["_id"],
                "state": CLAIMED,
                "claimed_at": {"$lt": now - timedelta(seconds=lease_seconds)},
            },
            {"$set": {"claimed_at": now}},
        )
        if taken.modified_count:
            return Claim.TAKEN_OVER
        known = await self.reminder(fields["_id"])
        return Claim.HELD if known is not None and known["state"] == CLAIMED else Claim.DONE

    async def opened(
        self, reminder_id: str, task_id: str, fields: Doc, event: Envelope[Any]
    ) -> bool:
        """Record a claimed reminder's task as open, with its `reminder.task-opened`."""
        entry = outbox_entry(event)
        done = await self.db[REMINDERS].update_one(
            {"_id": reminder_id, "state": CLAIMED},
            {
                "$set": {**fields, "state": OPEN, "crm_task_id": task_id, "opened_at": _now()},
                **push_entries([entry]),
            },
        )
        await self._relay(reminder_id, [entry] if done.modified_count else None)
        return bool(done.modified_count)

    async def closed(self, reminder_id: str, reason: str, event: Envelope[Any]) -> bool:
        """Record an open reminder as closed, with its `reminder.task-closed`; False when it
        was not open (closed by another run meanwhile)."""
        entry = outbox_entry(event)
        done = await self.db[REMINDERS].update_one(
            {"_id": reminder_id, "state": OPEN},
            {"$set": {"state": CLOSED, "reason": reason, "closed_at": _now()},
             **push_entries([entry])},
        )  # fmt: skip
        await self._relay(reminder_id, [entry] if done.modified_count else None)
        return bool(done.modified_count)

    async def drop(self, reminder_id: str) -> None:
        """A stale claim that made no task, for an item that needs none any more."""
        await self.db[REMINDERS].update_one(
            {"_id": reminder_id, "state": CLAIMED}, {"$set": {"state": DROPPED}}
        )

    async def note(self, reminder_id: str, fields: Doc) -> None:
        """Facts about a reminder beside its state (the invoice e-mail sent with it)."""
        await self.db[REMINDERS].update_one({"_id": reminder_id}, {"$set": fields})

    async def _relay(self, reminder_id: str, written: Sequence[Doc] | None) -> None:
        """Publish what the document's outbox holds; a relay that fails is retried by the
        outbox's pass (a timer's write is read again by no rerun)."""
        try:
            await self.outbox.relay(REMINDERS, reminder_id, written)
        except Exception:
            self.outbox.check_later(REMINDERS, reminder_id)
            raise

    async def unsettled(self, realm_id: str) -> list[Doc]:
        """A company's open reminders and claims (relaying what their outboxes still hold)."""
        cursor = self.db[REMINDERS].find({"realm_id": realm_id, "state": {"$in": [OPEN, CLAIMED]}})
        docs = [doc async for doc in cursor]
        for doc in docs:
            await self.outbox.relay_left(REMINDERS, doc)
        return docs

    async def listing(
        self,
        portal_id: str,
        realm_id: str,
        *,
        states: Sequence[str],
        workflow: ReminderWorkflow | None = None,
        limit: int = 500,
    ) -> list[Doc]:
        """A company's reminders in `states`, newest first."""
        query: Doc = {"realm_id": realm_id, "portal_id": portal_id, "state": {"$in": list(states)}}
        if workflow is not None:
            query["workflow"] = workflow.value
        docs = [doc async for doc in self.db[REMINDERS].find(query)]
        docs.sort(key=lambda d: _utc(d.get("opened_at") or d["claimed_at"]), reverse=True)
        return docs[:limit]
