"""Invoice approval (QuickBooks Online Advanced), as it happens: a valid request of a company
with approval on is held instead of drafted (the approval keeps the invoice as it would be
made, a CRM task on the deal asks the approver, once), a person approves or rejects it (one
conditional write publishes the decision), the decision drafts or rejects the request, and an
approval that waits too long reminds its approver once. The rules are `approval.py`'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from dealbooks_contracts import (
    ApprovalDecision,
    Envelope,
    InvoiceApprovalDecided,
    InvoiceLineRequest,
    InvoiceRequested,
    Tenant,
)
from dealbooks_kit import (
    PermanentError,
    TenantPass,
    each_tenant,
    external_call,
    get_logger,
)

from invoice_builder import approval
from invoice_builder.crm_reads import CrmReads, OwnersUnreadable
from invoice_builder.crm_tasks import CrmTasks
from invoice_builder.customers import Customers
from invoice_builder.deps import SOURCE, Deps, refused
from invoice_builder.domain import AccountFacts, Rejection
from invoice_builder.drafting import Drafting
from invoice_builder.store import FINAL, REQUESTS

log = get_logger(__name__)


class DecidedState(StrEnum):
    DECIDED = "decided"  # this call decided it
    ALREADY = "already"  # decided the same way before (a second click, a retry)
    CONFLICT = "conflict"  # decided the other way before
    INVALID = "invalid"  # what was sent cannot be approved or rejected as it is
    FORBIDDEN = "forbidden"  # only the approver may decide, and this is someone else
    UNKNOWN = "unknown"  # no such approval in the portal


@dataclass
class Decided:
    """What a decision came to, with the approval as it now stands."""

    state: DecidedState
    approval: dict[str, Any] | None = None
    problem: Rejection | None = None
    refusal: str | None = None  # why this person may not decide (FORBIDDEN)


def _settled(doc: dict[str, Any], decision: ApprovalDecision) -> Decided:
    """An approval decided before: the same way (a second click) or the other."""
    same = doc.get("status") == decision.value
    return Decided(DecidedState.ALREADY if same else DecidedState.CONFLICT, doc)


@dataclass
class Approvals:
    deps: Deps
    crm_reads: CrmReads
    customers: Customers
    drafting: Drafting
    tasks: CrmTasks
    # The console's address, for the link an approval's CRM task carries ("": no link).
    console_url: str = ""

    def approval_url(self, portal_id: str, request_id: str) -> str | None:
        """The console's page of an approval (None when the console's address is not set)."""
        if not self.console_url:
            return None
        return f"{self.console_url.rstrip('/')}/portals/{portal_id}/approvals/{request_id}"

    async def hold(
        self,
        event: Envelope[InvoiceRequested],
        account: AccountFacts,
        settings: approval.ApprovalSettings,
    ) -> None:
        """Hold a valid request for a person's decision instead of drafting it, and say so
        (`invoice.approval-requested`). A rerun after a crash finds the approval and only
        finishes what is left."""
        request = event.data
        request_id = str(request.request_id)
        portal_id = event.tenant.portal_id
        known = await self.deps.store.approval(request_id)
        if known is None:
            known = await self._open(portal_id, request, account, settings)
        requested = approval.approval_requested(request, known)
        # In the trail when the approval opened: an approver may decide before the request
        # below is marked as held, and the trail must not show the decision first.
        await self.deps.record(
            f"request:{request_id}",
            event,
            "approval.requested",
            {
                "approver_id": known.get("approver_id"),
                "crm_task_id": known.get("task_id"),
                "subtotal": known["subtotal"],
                "currency": known["currency"],
                "call": external_call("crm", "POST", "/crm/v3/objects/tasks"),
            },
            at=requested.requested_at,
        )
        await self.deps.store.await_approval(
            request_id,
            {
                "portal_id": portal_id,
                "realm_id": account.realm_id,
                "deal_id": request.deal_id,
                "total": known["subtotal"],
                "currency": known["currency"],
            },
            [Envelope.build(requested, source=SOURCE, caused_by=event)],
        )

    async def _open(
        self,
        portal_id: str,
        request: InvoiceRequested,
        account: AccountFacts,
        settings: approval.ApprovalSettings,
    ) -> dict[str, Any]:
        """The approval of a request, with the task (made once) that asks its approver."""
        request_id = str(request.request_id)
        customer_name = await self.customers.name_of(request, account.realm_id)
        approver = settings.approver_owner_id or await self.crm_reads.deal_owner(
            portal_id, request.deal_id
        )
        currency = request.lines[0].unit_price.currency
        url = self.approval_url(portal_id, request_id)
        task_id = await self.tasks.ensure(
            portal_id,
            approval.task_key(request_id),
            approval.approval_task(request, customer_name, currency, url),
            deal_id=request.deal_id,
            owner_id=approver,
            due=self.deps.now() + timedelta(hours=settings.remind_after_hours or 24),
        )
        return await self.deps.store.open_approval(
            request_id,
            approval.approval_doc(portal_id, request, account, customer_name, approver, task_id),
        )

    async def _not_the_approver(self, doc: dict[str, Any], by: str | None) -> str | None:
        """Why `by` may not decide this approval (its company lets only the approver)."""
        settings = await self.deps.store.approval_settings(str(doc["realm_id"]))
        approver_id = doc.get("approver_id")
        if settings is None or not settings.approver_only or not approver_id:
            return None
        try:
            found = await self.crm_reads.approver(str(doc["portal_id"]), str(approver_id))
        except OwnersUnreadable as exc:
            return str(exc)
        return approval.not_the_approver(True, str(approver_id), found, by)

    async def decide(
        self,
        portal_id: str,
        request_id: str,
        decision: ApprovalDecision,
        *,
        by: str | None,
        by_name: str | None = None,
        lines: list[InvoiceLineRequest] | None = None,
        reason: str | None = None,
    ) -> Decided:
        """A person approves (optionally with edited lines, checked as a request's are) or
        rejects (with a reason) a pending approval of their portal. The decision and
        `invoice.approval-decided` are one conditional write of the approval (pending ->
        decided): of any number of clicks at once, one decides; the others hear it is
        decided already. The draft or the rejection follows from the event."""
        store = self.deps.store
        doc = await store.approval(request_id)
        if doc is None or doc.get("portal_id") != portal_id:
            return Decided(DecidedState.UNKNOWN)
        if doc["status"] != approval.PENDING:
            return _settled(doc, decision)
        refusal = await self._not_the_approver(doc, by)
        if refusal is not None:
            return Decided(DecidedState.FORBIDDEN, doc, refusal=refusal)
        request = InvoiceRequested.model_validate(doc["request"])
        approved = decision is ApprovalDecision.APPROVED
        account = await store.account(str(doc["realm_id"])) if approved else None
        fields = approval.decision_fields(
            decision, request, account, lines=lines, reason=reason, today=self.deps.today()
        )
        if isinstance(fields, Rejection):
            return Decided(DecidedState.INVALID, doc, fields)
        fields |= {"decided_by": by, "decided_by_name": by_name or by}
        decided = InvoiceApprovalDecided(
            request_id=request.request_id,
            deal_id=request.deal_id,
            decision=decision,
            decided_by=by,
            reason=fields.get("reason"),
            edited=bool(fields.get("edited")),
            decided_at=self.deps.now(),
        )
        tenant = Tenant(portal_id=portal_id, account_id=str(doc["realm_id"]))
        event = Envelope.build(decided, source=SOURCE, tenant=tenant, correlation_id=request_id)
        if not await store.decide_approval(request_id, decision.value, fields, [event]):
            return _settled(await store.approval(request_id) or doc, decision)
        await self.deps.record(
            f"request:{request_id}",
            event,
            f"approval.{decision.value}",
            {
                "decided_by": by,
                "decided_by_name": by_name or by,
                "reason": fields.get("reason"),
                "edited": bool(fields.get("edited")),
                "subtotal": fields.get("approved_subtotal", doc["subtotal"]),
            },
            result="ok" if approved else "rejected",
        )
        return Decided(DecidedState.DECIDED, await store.approval(request_id) or doc)

    async def on_approval_decided(self, event: Envelope[InvoiceApprovalDecided]) -> None:
        """An approver decided. The approval's tasks are completed; an approved request is
        drafted through the same path as any other, keyed by its request id, so it is made
        once however often this runs; a rejected one goes back to the deal with the reason.
        What cannot succeed is rejected through the failure policy (`on_request_refused`)."""
        decided = event.data
        request_id = str(decided.request_id)
        store = self.deps.store
        doc = await store.approval(request_id)
        if doc is None:
            raise PermanentError(f"approval {request_id} is not known")
        existing = await store.request(request_id)
        if existing and existing.get("status") in FINAL:
            await store.relay_left(REQUESTS, existing)
            if existing.get("qbo_invoice_id") and not doc.get("qbo_invoice_id"):
                await self._note_draft(request_id, existing)
        elif decided.decision is ApprovalDecision.REJECTED:
            reason = decided.reason or "no reason given"
            await self.drafting.reject(event, approval.rejected(reason, doc.get("decided_by_name")))
        else:
            await self._draft_approved(event, doc)
        # After the outcome: a CRM that fails here is retried with the outcome already kept,
        # so it can never turn an approved request into a rejected one.
        await self.tasks.complete(event.tenant.portal_id, approval.task_ids(doc))

    async def _draft_approved(
        self, event: Envelope[InvoiceApprovalDecided], doc: dict[str, Any]
    ) -> None:
        request = InvoiceRequested.model_validate(doc["approved_request"])
        account = await self.deps.store.account(event.tenant.require_account_id())
        problem = approval.validate_approval(request, account, today=self.deps.today())
        if problem:
            raise refused(problem)
        assert account is not None
        drafted = await self.drafting.draft(event, account, request)
        await self.drafting.finish(event, drafted)
        await self._note_draft(str(event.data.request_id), drafted.model_dump())

    async def _note_draft(self, request_id: str, drafted: dict[str, Any]) -> None:
        """The approval shows the draft it became."""
        await self.deps.store.note_approval(
            request_id,
            {
                "qbo_invoice_id": drafted.get("qbo_invoice_id"),
                "doc_number": drafted.get("doc_number"),
            },
        )

    async def close_tasks_quietly(self, portal_id: str, request_id: str) -> None:
        """An approved request whose draft was refused: its tasks are done with too. The
        refusal is what matters; a CRM that fails here only leaves the tasks open."""
        doc = await self.deps.store.approval(request_id)
        try:
            await self.tasks.complete(portal_id, approval.task_ids(doc or {}))
        except Exception as exc:
            log.warning("approval tasks left open", request_id=request_id, error=repr(exc))

    async def remind_waiting_approvals(self) -> TenantPass:
        """Remind the approver of each approval pending past its company's time, once: a
        second task on the deal. Portal by portal (a failing one is reported, the others go
        on)."""
        portals = await self.deps.store.portals_with_unreminded_approvals()
        return await each_tenant("approval-reminders", portals, self._remind_portal, kind="portal")

    async def _remind_portal(self, portal_id: str) -> int:
        reminded = 0
        store = self.deps.store
        settings_of: dict[str, approval.ApprovalSettings | None] = {}
        for doc in await store.unreminded_approvals(portal_id):
            realm_id = str(doc["realm_id"])
            if realm_id not in settings_of:
                settings_of[realm_id] = await store.approval_settings(realm_id)
            settings = settings_of[realm_id]
            hours = settings.remind_after_hours if settings else None
            if approval.reminder_due(approval.aware(doc["requested_at"]), hours, self.deps.now()):
                await self._remind(portal_id, doc)
                reminded += 1
        return reminded

    async def _remind(self, portal_id: str, doc: dict[str, Any]) -> None:
        request_id = str(doc["_id"])
        request = InvoiceRequested.model_validate(doc["request"])
        text = approval.reminder_task(
            request,
            doc["customer_name"],
            doc["currency"],
            approval.aware(doc["requested_at"]),
            self.approval_url(portal_id, request_id),
        )
        task_id = await self.tasks.ensure(
            portal_id,
            approval.task_key(request_id, "reminder"),
            text,
            deal_id=doc["deal_id"],
            owner_id=doc.get("approver_id"),
            due=self.deps.now(),
        )
        noted = {"reminded_at": self.deps.now(), "reminder_task_id": task_id}
        if not await self.deps.store.note_approval(request_id, noted, pending=True):
            # Decided meanwhile: its decision completed the tasks it knew of, not this one.
            await self.tasks.complete(portal_id, [task_id])
        if self.deps.audit is not None:
            await self.deps.audit.record(
                "request",
                request_id,
                Tenant(portal_id=portal_id, account_id=doc["realm_id"]),
                None,
                "approval.reminded",
                {"crm_task_id": task_id, "approver_id": doc.get("approver_id")},
                related=[f"deal:{portal_id}:{doc['deal_id']}"],
            )
