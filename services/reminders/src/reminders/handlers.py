"""reminders' handlers and its pass.

The handlers keep reminders' own read models: each company's portal and edition
(`connector.account-connected`, which connector-auth re-publishes when CompanyInfo changes),
and the CRM record of each invoice (`invoice.drafted`, `invoice.linked`).

The pass runs per company (`each_tenant`, once per cluster): for each workflow the company
has on (QuickBooks Online Advanced only) it asks QuickBooks for the items whose anchor date
may put them in a period today, decides (domain) which need a reminder, and opens one CRM
task per item and period, at most once (`tasks.ReminderTasks`). Then it reads the items of
the company's open reminders again, by Id, and completes the tasks whose condition cleared
(paid, sent, deposited, gone) or that a later reminder of the same item replaced. Each
opening and closing is recorded with its event in the reminder's document (the outbox).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    Envelope,
    InvoiceDrafted,
    InvoiceLinked,
    Money,
    PortalInstalled,
    ReminderTaskClosed,
    ReminderTaskOpened,
    ReminderWorkflow,
    Tenant,
)
from dealbooks_crm import CrmClient, CrmNotFound
from dealbooks_kit import (
    Audit,
    Failure,
    TenantPass,
    classify,
    each_tenant,
    external_call,
    get_logger,
)
from dealbooks_kit.periodic import utc_today
from dealbooks_qbo import QboClient

from reminders import domain
from reminders.domain import CloseReason, Item, ItemKind, Period, WorkflowSettings
from reminders.quickbooks import CompanyItems
from reminders.store import CLAIMED, OPEN, Doc, Store
from reminders.tasks import ReminderTasks, TaskRequest

SOURCE = "reminders"
PASS_JOB = "reminder-pass"  # noqa: S105 (a job name)
# CRM object types as invoice-builder names a linked record, and as the CRM's API does.
RECORD_TYPES = {"deal": "deals", "contact": "contacts", "company": "companies"}
log = get_logger(__name__)


@dataclass
class Owners:
    """The owner of each CRM record a pass puts tasks on, read once per pass."""

    crm: CrmClient
    portal_id: str
    _known: dict[tuple[str, str], str | None] = field(default_factory=dict)

    async def of(self, object_type: str, object_id: str) -> str | None:
        key = (object_type, object_id)
        if key not in self._known:
            try:
                record = await self.crm.portal(self.portal_id).get(
                    object_type, object_id, properties=["hubspot_owner_id"]
                )
                self._known[key] = record.get("hubspot_owner_id") or None
            except CrmNotFound:  # the record is gone: the task goes on it unassigned
                self._known[key] = None
        return self._known[key]


@dataclass
class Reminders:
    """The handlers and the pass, with everything they use given to them (see app.py)."""

    store: Store
    qbo: QboClient
    crm: CrmClient
    tasks: ReminderTasks
    catch_up_days: int = 14
    today: Callable[[], date] = utc_today
    audit: Audit | None = None
    # Tells the CRM token provider that a portal installed the app (again).
    installed: Callable[[str], None] = lambda portal_id: None

    # ------------------------------------------------------------------ read models

    async def on_account_connected(self, event: Envelope[AccountConnected]) -> None:
        """A company's portal and edition, as connector-auth last announced them."""
        await self.store.save_account(event)

    async def on_account_disconnected(self, event: Envelope[AccountDisconnected]) -> None:
        await self.store.disconnect_account(event.tenant.require_account_id())

    async def on_drafted(self, event: Envelope[InvoiceDrafted]) -> None:
        """An invoice drafted from a deal belongs to that deal."""
        data = event.data
        await self.store.save_record(
            event.tenant.require_account_id(),
            data.qbo_invoice_id,
            event.tenant.portal_id,
            "deals",
            data.deal_id,
        )

    async def on_linked(self, event: Envelope[InvoiceLinked]) -> None:
        """An existing invoice a person linked belongs to that deal, contact or company."""
        data = event.data
        object_type = RECORD_TYPES.get(data.target.object_type.value)
        if object_type is None:
            return
        await self.store.save_record(
            event.tenant.require_account_id(),
            data.qbo_invoice_id,
            event.tenant.portal_id,
            object_type,
            data.target.object_id,
        )

    async def on_portal_installed(self, event: Envelope[PortalInstalled]) -> None:
        self.installed(event.tenant.portal_id)

    # ------------------------------------------------------------------ the pass

    async def pass_all(self) -> TenantPass:
        """One pass over every company with workflows to run or reminders open; a company
        that fails is reported and the others go on. Reports tasks opened and closed."""
        realms = await self.store.realms_to_pass()
        return await each_tenant(PASS_JOB, realms, self.pass_company, kind="realm_id")

    async def pass_company(self, realm_id: str) -> int:
        """Open the reminders due today and close those whose condition cleared."""
        account = await self.store.account(realm_id)
        if account is None:
            return 0
        today = self.today()
        items = CompanyItems(self.qbo, realm_id)
        changed = 0
        if account.get("connected") and account.get("advanced"):
            owners = Owners(self.crm, account["portal_id"])
            for settings in (await self.store.workflows(realm_id)).values():
                if settings.enabled:
                    changed += await self._open_due(account, settings, items, owners, today)
        changed += await self._close_cleared(account, items)
        return changed

    async def _open_due(
        self,
        account: Doc,
        settings: WorkflowSettings,
        items: CompanyItems,
        owners: Owners,
        today: date,
    ) -> int:
        first, last = domain.anchor_window(settings, today, self.catch_up_days)
        read = {
            ReminderWorkflow.PAYMENT: items.open_invoices_due,
            ReminderWorkflow.VENDOR: items.open_bills_due,
            ReminderWorkflow.UNSENT: items.open_invoices_made,
            ReminderWorkflow.DEPOSIT: items.payments_made,
        }[settings.workflow]
        found = await read(first, last)
        records = await self.store.records(
            account["_id"], [i for item in found for i in _invoices_of(item)]
        )
        opened = 0
        for item in found:
            period = domain.due_period(settings, item, today, self.catch_up_days)
            if period is None:
                continue
            record = next((records[i] for i in _invoices_of(item) if i in records), None)
            if settings.records_only and record is None:
                continue
            if await self._open(account, settings, item, period, record, owners, today):
                opened += 1
        return opened

    async def _open(
        self,
        account: Doc,
        settings: WorkflowSettings,
        item: Item,
        period: Period,
        record: Doc | None,
        owners: Owners,
        today: date,
    ) -> bool:
        """Open one reminder's task, unless it exists; True if this run opened it."""
        realm, portal = str(account["_id"]), str(account["portal_id"])
        workflow = settings.workflow
        reminder_id = f"{realm}:{workflow.value}:{item.id}:{period.label}"
        known = await self.store.reminder(reminder_id)
        if known is not None and known["state"] != CLAIMED:
            await self._send_invoice_if_asked(account, settings, known, item)
            return False
        key = domain.task_key(realm, workflow, item.id, period.label)
        text = domain.task_text(settings, item, period, key, today)
        on = [(record["object_type"], record["object_id"])] if record else []
        owner = settings.owner_id or (await owners.of(*on[0]) if on else None)
        claim = {
            "_id": reminder_id,
            "realm_id": realm,
            "portal_id": portal,
            "workflow": workflow.value,
            "subject_type": item.kind.value,
            "subject_id": item.id,
            "period": period.label,
            "offset": period.offset,
            "key": key,
            "subject": text.subject,
            "object_type": on[0][0] if on else None,
            "object_id": on[0][1] if on else None,
            "owner_id": owner,
            "doc_number": item.doc_number,
            "party": item.party,
            "amount": format(item.amount, "f"),
            "currency": item.currency or account.get("home_currency"),
            "due_date": domain.task_due(period, today).isoformat(),
            "item_due_date": item.due_date.isoformat() if item.due_date else None,
        }
        request = TaskRequest(
            subject=text.subject,
            body=text.body,
            due=domain.task_due(period, today),
            priority=domain.priority(workflow, period),
            owner_id=owner,
            on=on,
            key=key,
        )
        task_id = await self.tasks.create_once(portal, claim, request)
        if task_id is None:
            return False
        event = self._envelope(_task_opened(claim, task_id, item.due_date), claim)
        if not await self.store.opened(reminder_id, task_id, {}, event):
            return False
        await self._audit_opened(claim, task_id)
        await self._send_invoice_if_asked(account, settings, claim, item)
        return True

    async def _audit_opened(self, reminder: Doc, task_id: str) -> None:
        await self._audit(
            reminder,
            "reminder.task-opened",
            {
                "workflow": reminder["workflow"],
                "period": reminder["period"],
                "crm_task_id": task_id,
                "owner_id": reminder["owner_id"],
                "call": external_call("crm", "POST", "/crm/v3/objects/tasks"),
            },
        )

    async def _send_invoice_if_asked(
        self, account: Doc, settings: WorkflowSettings, reminder: Doc, item: Item
    ) -> None:
        """With a payment reminder, QuickBooks' own invoice e-mail, when the company asks
        for it: once per reminder (its `requestid` is the reminder's reference). An invoice
        QuickBooks refuses to send (no address) is noted and not asked again."""
        if not (settings.workflow is ReminderWorkflow.PAYMENT and settings.send_invoice_email):
            return
        if reminder.get("invoice_emailed") or reminder.get("invoice_email_refused"):
            return
        company = self.qbo.company(str(account["_id"]))
        try:
            await company.send_invoice(item.id, idempotency_key=reminder["key"])
        except Exception as exc:
            if classify(exc) is not Failure.INVALID_INPUT:
                raise
            await self.store.note(reminder["_id"], {"invoice_email_refused": str(exc)[:500]})
            await self._audit(
                reminder, "invoice.email-refused", {"reason": str(exc)[:500]}, result="refused"
            )
            return
        await self.store.note(reminder["_id"], {"invoice_emailed": True})
        await self._audit(
            reminder,
            "invoice.emailed",
            {"call": external_call("qbo", "POST", f"/invoice/{item.id}/send")},
        )

    async def _close_cleared(self, account: Doc, items: CompanyItems) -> int:
        """Complete the tasks of reminders whose condition cleared or that a later reminder
        of the same item replaced; settle claims a stopped run left for items that need no
        reminder any more."""
        unsettled = await self.store.unsettled(str(account["_id"]))
        if not unsettled:
            return 0
        ids: dict[ItemKind, list[str]] = defaultdict(list)
        for doc in unsettled:
            ids[ItemKind(doc["subject_type"])].append(doc["subject_id"])
        current = {kind: await items.current(kind, found) for kind, found in ids.items()}
        open_docs = [d for d in unsettled if d["state"] == OPEN]
        latest: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        for doc in open_docs:
            latest[(doc["workflow"], doc["subject_id"])][doc["_id"]] = int(doc.get("offset", 0))
        replaced = {i for offsets in latest.values() for i in domain.superseded(offsets)}
        closed = 0
        for doc in unsettled:
            workflow = ReminderWorkflow(doc["workflow"])
            item = current[ItemKind(doc["subject_type"])].get(doc["subject_id"])
            reason = domain.close_reason(workflow, item)
            if doc["state"] == CLAIMED:
                closed += await self._settle_claim(account, doc, reason)
                continue
            if reason is None and doc["_id"] in replaced:
                reason = CloseReason.SUPERSEDED
            if reason is not None and await self._close(doc, reason):
                closed += 1
        return closed

    async def _settle_claim(self, account: Doc, doc: Doc, reason: CloseReason | None) -> int:
        """A claim whose run stopped, for an item that needs no reminder any more: if that
        run made the task, it is recorded and completed; else the claim is dropped. (While
        the item still needs one, the opening step takes the claim over.)"""
        lease = timedelta(seconds=self.tasks.lease_seconds)
        claimed_at = doc["claimed_at"]
        claimed_at = claimed_at if claimed_at.tzinfo else claimed_at.replace(tzinfo=UTC)
        if reason is None or claimed_at > datetime.now(UTC) - lease:
            return 0
        on = [(doc["object_type"], doc["object_id"])] if doc.get("object_type") else []
        found = await self.tasks.find(str(doc["portal_id"]), doc["key"], on)
        if found is None:
            await self.store.drop(doc["_id"])
            return 0
        event = self._envelope(_task_opened(doc, found.id), doc)
        if not await self.store.opened(doc["_id"], found.id, {}, event):
            return 0
        return int(await self._close({**doc, "crm_task_id": found.id}, reason))

    async def _close(self, doc: Doc, reason: CloseReason) -> bool:
        """Complete an open reminder's task and record it closed, with its event."""
        try:
            await self.tasks.complete(str(doc["portal_id"]), doc["crm_task_id"])
        except CrmNotFound:
            log.info("reminder task deleted in the CRM; recorded closed", reminder=doc["_id"])
        event = self._envelope(
            ReminderTaskClosed(
                workflow=ReminderWorkflow(doc["workflow"]),
                subject_type=doc["subject_type"],
                subject_id=doc["subject_id"],
                crm_task_id=doc["crm_task_id"],
                reason=reason.value,
            ),
            doc,
        )
        if not await self.store.closed(doc["_id"], reason.value, event):
            return False
        await self._audit(
            doc,
            "reminder.task-closed",
            {
                "workflow": doc["workflow"],
                "period": doc["period"],
                "crm_task_id": doc["crm_task_id"],
                "reason": reason.value,
                "call": external_call(
                    "crm", "PATCH", f"/crm/v3/objects/tasks/{doc['crm_task_id']}"
                ),
            },
        )
        return True

    # ------------------------------------------------------------------ helpers

    def _envelope(self, payload: Any, doc: Mapping[str, Any]) -> Envelope[Any]:
        tenant = Tenant(portal_id=str(doc["portal_id"]), account_id=str(doc["realm_id"]))
        return Envelope.build(payload, source=SOURCE, tenant=tenant)

    async def _audit(
        self, doc: Mapping[str, Any], action: str, detail: dict[str, Any], result: str = "ok"
    ) -> None:
        """An entry on the item's trail (an invoice's; a bill's or payment's under its own
        kind, a payment's also on the invoices it paid) and on its CRM record's."""
        if self.audit is None:
            return
        realm, portal = str(doc["realm_id"]), str(doc["portal_id"])
        kind, subject_id = str(doc["subject_type"]), str(doc["subject_id"])
        related = []
        if doc.get("object_type") in {"deals", "companies", "contacts"}:
            singular = {"deals": "deal", "companies": "company", "contacts": "contact"}
            related.append(f"{singular[doc['object_type']]}:{portal}:{doc['object_id']}")
        tenant = Tenant(portal_id=portal, account_id=realm)
        await self.audit.record(
            kind, f"{realm}:{subject_id}", tenant, None, action, detail, result, related=related
        )


def _invoices_of(item: Item) -> tuple[str, ...]:
    """The invoices whose CRM record a reminder of `item` goes on."""
    return (item.id,) if item.kind is ItemKind.INVOICE else item.invoices


def _task_opened(
    reminder: Mapping[str, Any], task_id: str, due_date: date | None = None
) -> ReminderTaskOpened:
    """The event of a reminder whose task `task_id` is open (`due_date`: its item's, where
    the item was read)."""
    return ReminderTaskOpened(
        workflow=ReminderWorkflow(reminder["workflow"]),
        subject_type=reminder["subject_type"],
        subject_id=reminder["subject_id"],
        period=reminder["period"],
        crm_task_id=task_id,
        deal_id=_record_id(reminder, "deals"),
        company_id=_record_id(reminder, "companies"),
        due_date=due_date,
        amount=_money(reminder),
    )


def _record_id(doc: Mapping[str, Any], object_type: str) -> str | None:
    return str(doc["object_id"]) if doc.get("object_type") == object_type else None


def _money(doc: Mapping[str, Any]) -> Money | None:
    currency = doc.get("currency")
    if not currency or doc.get("amount") is None:
        return None
    return Money(amount=doc["amount"], currency=currency)
