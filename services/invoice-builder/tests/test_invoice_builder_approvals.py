"""Invoice approval (QuickBooks Online Advanced), end to end on real Kafka and MongoDB-wire with
both sandboxes over HTTP: requests wait for approval, a CRM task asks the approver, approve
drafts once however often it is sent, reject sends the reason to the deal, a late approval
reminds once, and a company on another edition gets none of it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from crm_sandbox.state import OWNER_ID_OFFSET
from dealbooks_contracts import QBO_ADVANCED, Tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py


def _assoc(object_id: str, type_id: int) -> dict[str, Any]:
    return {
        "to": {"id": object_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


async def advanced_company(
    builder: Harness, qbo_sandbox: Any, crm_portal: Any, *, edition: str | None = QBO_ADVANCED
) -> Any:
    company = qbo_sandbox.create_company("US")
    builder.qbo_tokens.set(company.realm_id, company.access_token)
    builder.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    tenant = Tenant(portal_id=crm_portal.key, account_id=company.realm_id)
    await builder.connect_account(tenant, name="Summit Ridge", edition=edition)
    return company


def owned_deal(crm: Any, portal: Any) -> tuple[str, str]:
    """A deal owned by the portal's first user: (deal id, its owner id)."""
    user = crm.users(portal.portal_id)[0]
    owner_id = str(int(user["userId"]) + OWNER_ID_OFFSET)
    deal = crm.create_as_user(
        portal.portal_id,
        "deals",
        {"dealname": "Tents", "dealstage": "contractsent", "hubspot_owner_id": owner_id},
    )
    return str(deal["id"]), owner_id


@dataclass(frozen=True)
class Deal:
    """A deal owned by the first user of a portal connected to a new company (`realm`)."""

    portal: str
    realm: str
    deal_id: str
    owner_id: str


async def owned_deal_of_company(
    builder: Harness,
    qbo_sandbox: Any,
    crm_sandbox: Any,
    crm_portal: Any,
    *,
    edition: str | None = QBO_ADVANCED,
) -> Deal:
    company = await advanced_company(builder, qbo_sandbox, crm_portal, edition=edition)
    deal_id, owner_id = owned_deal(crm_sandbox, crm_portal)
    return Deal(crm_portal.key, company.realm_id, deal_id, owner_id)


@pytest_asyncio.fixture(loop_scope="module")
async def deal(builder: Harness, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any) -> Deal:
    """A deal of a company on QuickBooks Online Advanced."""
    return await owned_deal_of_company(builder, qbo_sandbox, crm_sandbox, crm_portal)


def request_body(deal_id: str, *, quantity: str = "2", price: str = "50") -> dict[str, Any]:
    return {
        "deal_id": deal_id,
        "customer": {"kind": "existing", "qbo_customer_id": "1"},
        "lines": [
            {
                "qbo_item_id": "1",
                "quantity": quantity,
                "unit_price": {"amount": price, "currency": "USD"},
                "description": "Alpine tent",
            }
        ],
    }


async def status_of(builder: Harness, request_id: str, wanted: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        doc = await builder.service.store.request(request_id)
        if doc and doc.get("status") == wanted:
            found.update(doc)
            return True
        return False

    await builder.eventually(reached)
    return found


async def submitted_for_approval(builder: Harness, wizard: Any, deal: Deal) -> str:
    account = f"/portals/{deal.portal}/accounts/{deal.realm}"
    saved = await wizard.put(
        f"{account}/approval-settings", json={"enabled": True, "remind_after_hours": 4}
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["active"] is True
    # A person asks in their own name only: the body's requester is not theirs to say.
    body = {**request_body(deal.deal_id), "requested_by": "u-someone-else"}
    sent = await wizard.post(f"{account}/invoice-requests", json=body)
    assert sent.status_code == 202, sent.text
    request_id = str(sent.json()["request_id"])
    await status_of(builder, request_id, "awaiting_approval")
    return request_id


async def invoices_in(builder: Harness, qbo_sandbox: Any, realm: str) -> list[Any]:
    token = await builder.qbo_tokens.token(realm)
    return list(qbo_sandbox.all_of(realm, token, "Invoice"))


async def test_an_approval_approved_twice_at_once_creates_one_invoice(
    builder: Harness, deal: Deal, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    portal, deal_id, owner_id = deal.portal, deal.deal_id, deal.owner_id

    async with builder.wizard(portal, user_id="u-approver", email="ann@summit.example") as wizard:
        request_id = await submitted_for_approval(builder, wizard, deal)
        polled = (await wizard.get(f"/portals/{portal}/invoice-requests/{request_id}")).json()
        waiting = (await wizard.get(f"/portals/{portal}/approvals")).json()["approvals"]
        one = (await wizard.get(f"/portals/{portal}/approvals/{request_id}")).json()
        approvals = f"/portals/{portal}/approvals"
        of_deal = (await wizard.get(approvals, params={"deal_id": deal_id})).json()["approvals"]
        of_other = (await wizard.get(approvals, params={"deal_id": "1"})).json()["approvals"]
        assert [a["request_id"] for a in of_deal] == [request_id] and of_other == []
        # Nothing in QuickBooks yet.
        assert await invoices_in(builder, qbo_sandbox, deal.realm) == []

        first, second = await asyncio.gather(
            wizard.post(f"/portals/{portal}/approvals/{request_id}/approve"),
            wizard.post(f"/portals/{portal}/approvals/{request_id}/approve"),
        )
        drafted = await status_of(builder, request_id, "drafted")
        again = await wizard.post(f"/portals/{portal}/approvals/{request_id}/approve")
        refused = await wizard.post(
            f"/portals/{portal}/approvals/{request_id}/reject", json={"reason": "late"}
        )

    assert polled["status"] == "awaiting_approval"
    assert [a["request_id"] for a in waiting] == [request_id]
    assert (one["status"], one["subtotal"], one["customer_name"]) == (
        "pending",
        "100.00",
        "Amy's Bird Sanctuary",
    )
    assert one["invoice"]["lines"][0]["amount"] == "100.00"
    assert one["approver_id"] == owner_id  # no approver set: the deal's owner
    assert one["requested_by"] == "u-approver"  # the grant's user, not the body's
    [requested] = await builder.events(
        "invoice.approval-requested", lambda e: str(e.data.request_id) == request_id
    )
    assert requested.data.crm_task_id == one["crm_task_id"]
    assert str(requested.data.total.amount) == "100.00"

    assert (first.status_code, second.status_code) == (200, 200)
    assert sorted([first.json()["already_decided"], second.json()["already_decided"]]) == [
        False,
        True,
    ]
    assert again.json()["already_decided"] is True
    assert refused.status_code == 409
    assert len(await invoices_in(builder, qbo_sandbox, deal.realm)) == 1
    assert drafted["total"] == "100.00"
    [decided] = await builder.events(
        "invoice.approval-decided", lambda e: str(e.data.request_id) == request_id
    )
    assert (decided.data.decision.value, decided.data.decided_by) == ("approved", "u-approver")
    [invoice] = await builder.events(
        "invoice.drafted", lambda e: str(e.data.request_id) == request_id
    )
    assert invoice.data.deal_id == deal_id

    task = crm_sandbox.read(crm_portal.portal_id, "tasks", one["crm_task_id"])
    assert task["properties"]["hubspot_owner_id"] == owner_id

    async def completed() -> bool:
        found = crm_sandbox.read(crm_portal.portal_id, "tasks", one["crm_task_id"])
        return bool(found["properties"].get("hs_task_status") == "COMPLETED")

    await builder.eventually(completed)
    trail = await builder.service.runtime.use_audit().entries("request", request_id)
    actions = [e["action"] for e in trail]
    assert "approval.requested" in actions
    # Stamped when the approval opened, not when the entry was written: the trail reads in
    # the order things happened even when an approver decides before the entry is written.
    [opened] = [e for e in trail if e["action"] == "approval.requested"]
    stamped = datetime.fromisoformat(one["requested_at"])
    assert opened["at"].replace(tzinfo=UTC) == stamped.replace(tzinfo=stamped.tzinfo or UTC)
    assert actions.index("approval.requested") < actions.index("approval.approved")
    approved = [e for e in trail if e["action"] == "approval.approved"]
    assert len(approved) == 1
    assert approved[0]["detail"]["decided_by_name"] == "ann@summit.example"


async def test_a_rejected_approval_sends_its_reason_to_the_deal(
    builder: Harness, deal: Deal, qbo_sandbox: Any
) -> None:
    portal = deal.portal

    async with builder.wizard(portal, user_id="u-boss", email="boss@summit.example") as wizard:
        request_id = await submitted_for_approval(builder, wizard, deal)
        unreasoned = await wizard.post(
            f"/portals/{portal}/approvals/{request_id}/reject", json={"reason": "  "}
        )
        rejected = await wizard.post(
            f"/portals/{portal}/approvals/{request_id}/reject",
            json={"reason": "Price was agreed at 40 a tent"},
        )
        outcome = await status_of(builder, request_id, "rejected")
        late = await wizard.post(f"/portals/{portal}/approvals/{request_id}/approve")

    assert unreasoned.status_code == 422
    assert rejected.status_code == 200
    assert rejected.json()["status"] == "rejected"
    assert outcome["code"] == "APPROVAL_REJECTED"
    [told] = await builder.events(
        "invoice.request-rejected", lambda e: str(e.data.request_id) == request_id
    )
    assert told.data.deal_id == deal.deal_id
    assert told.data.code.value == "APPROVAL_REJECTED"
    assert "Price was agreed at 40 a tent" in told.data.message
    assert "boss@summit.example" in told.data.message
    assert late.status_code == 409
    assert await invoices_in(builder, qbo_sandbox, deal.realm) == []


async def test_the_approver_edits_lines_checked_as_a_request_before_approving(
    builder: Harness, deal: Deal
) -> None:
    portal = deal.portal
    edited = request_body(deal.deal_id, quantity="3", price="40")["lines"]
    taxed = [{**edited[0], "tax_code_id": "7"}]  # US companies send no tax codes

    async with builder.wizard(portal) as wizard:
        request_id = await submitted_for_approval(builder, wizard, deal)
        bad = await wizard.post(
            f"/portals/{portal}/approvals/{request_id}/approve", json={"lines": taxed}
        )
        still = (await wizard.get(f"/portals/{portal}/approvals/{request_id}")).json()
        good = await wizard.post(
            f"/portals/{portal}/approvals/{request_id}/approve", json={"lines": edited}
        )
        drafted = await status_of(builder, request_id, "drafted")

    assert bad.status_code == 422
    assert bad.json()["problem"]["code"] == "TAX_CODE_NOT_ALLOWED"
    assert still["status"] == "pending"
    assert good.json()["edited"] is True
    assert good.json()["invoice"]["subtotal"] == "120.00"
    assert drafted["total"] == "120.00"


async def test_a_waiting_approval_reminds_its_approver_once(
    builder: Harness, deal: Deal, crm_sandbox: Any, crm_portal: Any
) -> None:
    deps, approvals = builder.service.handlers.deps, builder.service.handlers.approvals
    async with builder.wizard(deal.portal) as wizard:
        request_id = await submitted_for_approval(builder, wizard, deal)

    early = await approvals.remind_waiting_approvals()
    real_now = deps.now
    deps.now = lambda: real_now() + timedelta(hours=5)  # past the 4 hours set
    try:
        first = await approvals.remind_waiting_approvals()
        second = await approvals.remind_waiting_approvals()
    finally:
        deps.now = real_now

    assert early.done == 0
    assert (first.done, second.done) == (1, 0)
    doc = await builder.service.store.approval(request_id)
    assert doc["reminder_task_id"] and doc["reminder_task_id"] != doc["task_id"]
    reminder = crm_sandbox.read(crm_portal.portal_id, "tasks", doc["reminder_task_id"])
    assert reminder["properties"]["hs_task_subject"].startswith("Reminder:")
    assert reminder["properties"]["hubspot_owner_id"] == deal.owner_id


async def test_a_company_not_on_advanced_gets_no_approval(
    builder: Harness, qbo_sandbox: Any, crm_sandbox: Any, crm_portal: Any
) -> None:
    deal = await owned_deal_of_company(
        builder, qbo_sandbox, crm_sandbox, crm_portal, edition="QuickBooks Online Plus"
    )
    portal, realm = deal.portal, deal.realm
    settings = f"/portals/{portal}/accounts/{realm}/approval-settings"

    async with builder.wizard(portal) as wizard:
        shown = (await wizard.get(settings)).json()
        refused = await wizard.put(settings, json={"enabled": True})
        off = await wizard.put(settings, json={"enabled": False})
        sent = await wizard.post(
            f"/portals/{portal}/accounts/{realm}/invoice-requests", json=request_body(deal.deal_id)
        )
        drafted = await status_of(builder, str(sent.json()["request_id"]), "drafted")
        waiting = (await wizard.get(f"/portals/{portal}/approvals?status=all")).json()

    assert (shown["advanced"], shown["enabled"], shown["active"]) == (False, False, False)
    assert refused.status_code == 422
    assert refused.json()["code"] == "NOT_ADVANCED"
    assert "QuickBooks Online Advanced" in refused.json()["error"]
    assert off.status_code == 200
    assert drafted["total"] == "100.00"
    assert waiting["approvals"] == []


async def test_approvals_are_the_portals_own(builder: Harness, deal: Deal) -> None:
    portal, realm = deal.portal, deal.realm
    async with builder.wizard(portal) as wizard:
        request_id = await submitted_for_approval(builder, wizard, deal)
    async with builder.wizard("other-portal") as other:
        read = await other.get(f"/portals/other-portal/approvals/{request_id}")
        approve = await other.post(f"/portals/other-portal/approvals/{request_id}/approve")
        listed = (await other.get("/portals/other-portal/approvals")).json()
        settings = await other.get(f"/portals/other-portal/accounts/{realm}/approval-settings")
        cross = await other.get(f"/portals/{portal}/approvals/{request_id}")
    async with builder.wizard() as nobody:
        anonymous = await nobody.get(f"/portals/{portal}/approvals")

    assert (read.status_code, approve.status_code, settings.status_code) == (404, 404, 404)
    assert listed["approvals"] == []
    assert cross.status_code == 403
    assert anonymous.status_code == 401
    doc = await builder.service.store.approval(request_id)
    assert doc["status"] == "pending"


async def test_a_task_whose_claim_was_left_is_found_on_the_deal_not_made_again(
    builder: Harness, crm_sandbox: Any, crm_portal: Any
) -> None:
    """A run that died after the CRM made the task (its claim never finished): the run that
    takes the claim over finds the task by its reference instead of making a second one."""
    from invoice_builder.approval import TaskText, task_reference

    builder.crm_tokens.set(crm_portal.key, crm_portal.access_token)
    deal_id, _ = owned_deal(crm_sandbox, crm_portal)
    tasks = builder.service.handlers.tasks
    key = f"approval-{uuid.uuid4()}"
    text = TaskText("Approve invoice", f"<p>{task_reference(key)}</p>")
    store = builder.service.store
    await store.claim_task(crm_portal.key, key, lease_seconds=90)
    made = await tasks.crm.portal(crm_portal.key).create_task(
        text.subject, body=text.body, due=datetime.now(UTC), on=[("deals", deal_id)]
    )
    # The claim is older than its lease: its run stopped.
    await store.db["crm_tasks"].update_one(
        {"_id": f"{crm_portal.key}:{key}"},
        {"$set": {"claimed_at": datetime.now(UTC) - timedelta(minutes=5)}},
    )

    found = await tasks.ensure(
        crm_portal.key, key, text, deal_id=deal_id, owner_id=None, due=datetime.now(UTC)
    )
    again = await tasks.ensure(
        crm_portal.key, key, text, deal_id=deal_id, owner_id=None, due=datetime.now(UTC)
    )

    assert found == again == made.id
    subjects = [t for t in crm_sandbox.objects(crm_portal.portal_id, "tasks") if t["id"] == made.id]
    assert len(subjects) == 1
    on_deal = await tasks.crm.portal(crm_portal.key).tasks_on("deals", deal_id)
    assert [t.id for t in on_deal] == [made.id]


async def test_with_approver_only_on_only_the_approvers_user_decides(
    builder: Harness, deal: Deal, crm_sandbox: Any, crm_portal: Any
) -> None:
    owner = crm_sandbox.users(crm_portal.portal_id)[0]
    portal = deal.portal
    settings = f"/portals/{portal}/accounts/{deal.realm}/approval-settings"
    async with builder.wizard(portal, user_id="u-rep") as rep:
        request_id = await submitted_for_approval(builder, rep, deal)
        saved = await rep.put(settings, json={"enabled": True, "approver_only": True})
        assert saved.status_code == 200 and saved.json()["approver_only"] is True
        one = f"/portals/{portal}/approvals/{request_id}"
        approve = await rep.post(f"{one}/approve")
        reject = await rep.post(f"{one}/reject", json={"reason": "mine"})

        # Without the owners scope, nobody can be told apart: refused with what to do.
        with builder.without_owners_scope(crm_sandbox, crm_portal):
            unscoped = await rep.post(f"{one}/approve")
    async with builder.wizard(portal, user_id=str(owner["userId"])) as approver:
        approved = await approver.post(f"{one}/approve")
    drafted = await status_of(builder, request_id, "drafted")

    for refused in (approve, reject):
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "error": f"Only the approver, {owner['email']}, may approve or reject this invoice.",
            "code": "not_the_approver",
        }
    assert unscoped.status_code == 403 and "crm.objects.owners.read" in unscoped.json()["error"]
    assert approved.status_code == 200, approved.text
    assert approved.json()["decided_by"] == str(owner["userId"])
    assert approved.json()["approver_id"] == deal.owner_id
    assert drafted["status"] == "drafted"
