"""App event occurrences (timeline v4) and notes, over real HTTP against the CRM sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest
from crm_sandbox.pytest_plugin import TIME_SCALE
from crm_sandbox.testing import CrmSandbox, SandboxPortal
from dealbooks_crm import (
    AppEventOccurrence,
    CrmAuthError,
    CrmClient,
    CrmLimits,
    CrmNotFound,
    CrmUnavailable,
    PortalCrm,
)
from dealbooks_http import RetryPolicy, StaticTokenProvider

SCALE = float(TIME_SCALE)
FAST_RETRY = RetryPolicy(attempts=8, timeout=20.0, wait_initial=0.01, wait_max=0.25)
EVENT_TYPE = {
    "uid": "client_test_payment",
    "type": "app-event",
    "config": {
        "name": "Client test payment",
        "objectType": "DEAL",
        "properties": [
            {"name": "amount", "label": "Amount", "type": "number"},
            {"name": "invoiceNumber", "label": "Invoice number", "type": "string"},
        ],
    },
}
V4 = "POST /integrators/timeline/v4/events"
NOTES = "POST /crm/v3/objects/{objectType}"


def client(sandbox: CrmSandbox, portal: SandboxPortal, path_style: str = "v3") -> CrmClient:
    limits = CrmLimits(window_seconds=10.0 / SCALE, search_window_seconds=1.0 / SCALE)
    return CrmClient(
        StaticTokenProvider({portal.key: portal.access_token}),
        base_url=sandbox.base_url,
        limits=limits,
        retry=FAST_RETRY,
        path_style=path_style,  # type: ignore[arg-type]
    )


@pytest.fixture
async def crm(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> AsyncIterator[PortalCrm]:
    crm_sandbox.add_app_event_type(EVENT_TYPE)
    async with client(crm_sandbox, crm_portal) as c:
        yield c.portal(crm_portal.portal_id)


def payment(deal_id: str, occurrence_id: str = "pay-1") -> AppEventOccurrence:
    return AppEventOccurrence(
        eventTypeName="client_test_payment",
        id=occurrence_id,
        objectId=deal_id,
        properties={"amount": "220.00", "invoiceNumber": "1037"},
        timestamp=datetime(2026, 9, 30, 12, tzinfo=UTC),
    )


def calls(sandbox: CrmSandbox, portal: SandboxPortal, route: str) -> int:
    return int(sandbox.counters(portal.portal_id)["byRoute"].get(route, 0))


async def test_an_occurrence_sent_twice_is_taken_once(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "Paid"})

    assert await crm.send_app_event(payment(deal.id)) is True
    assert await crm.send_app_event(payment(deal.id)) is False

    [stored] = crm_sandbox.app_events(crm_portal.portal_id, object_id=deal.id)
    assert stored["properties"] == {"amount": "220.00", "invoiceNumber": "1037"}
    assert stored["timestamp"] == "2026-09-30T12:00:00.000Z"


async def test_unapproved_app_events_and_unknown_types_are_typed_refusals(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    unknown = payment(deal.id).model_copy(update={"event_type_name": "never_deployed"})
    with pytest.raises(CrmNotFound):
        await crm.send_app_event(unknown)

    crm_sandbox.set_app_events_approved(crm_portal.portal_id, False)
    with pytest.raises(CrmAuthError) as refused:
        await crm.send_app_event(payment(deal.id))
    assert refused.value.status == 403


async def test_a_rate_limited_occurrence_is_sent_again_and_taken_once(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    crm_sandbox.inject_fault(
        "rate_limit", count=2, portal_id=crm_portal.portal_id, path_prefix="/integrators"
    )

    assert await crm.send_app_event(payment(deal.id)) is True

    assert calls(crm_sandbox, crm_portal, V4) == 3
    assert len(crm_sandbox.app_events(crm_portal.portal_id, object_id=deal.id)) == 1


async def test_the_dated_path_style_sends_to_the_dated_app_events_path(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_sandbox.add_app_event_type(EVENT_TYPE)
    async with client(crm_sandbox, crm_portal, "2026-03") as c:
        crm = c.portal(crm_portal.portal_id)
        deal = await crm.create("deals", {"dealname": "Dated"})
        assert await crm.send_app_event(payment(deal.id)) is True
    assert len(crm_sandbox.app_events(crm_portal.portal_id, object_id=deal.id)) == 1


async def test_a_batch_reports_the_occurrences_it_did_not_take(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    await crm.send_app_event(payment(deal.id, "pay-1"))

    errors = await crm.send_app_events([payment(deal.id, "pay-1"), payment(deal.id, "pay-2")])

    assert [e.category for e in errors] == ["CONFLICT"]
    assert len(crm_sandbox.app_events(crm_portal.portal_id, object_id=deal.id)) == 2


async def test_a_note_goes_on_the_records_it_names(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    contact = await crm.create("contacts", {"email": "note@x.example"})

    note = await crm.create_note(
        "<p>Invoice 1037: 459.00 USD</p>", on=[("deals", deal.id), ("contacts", contact.id)]
    )

    [on_deal] = await crm.notes_on("deals", deal.id)
    assert on_deal.id == note.id
    assert on_deal.get("hs_note_body") == "<p>Invoice 1037: 459.00 USD</p>"
    assert [n.id for n in await crm.notes_on("contacts", contact.id)] == [note.id]
    assert await crm.notes_on("companies", (await crm.create("companies", {"name": "A"})).id) == []


async def test_a_note_is_not_sent_again_after_an_answer_that_leaves_it_unknown(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    before = calls(crm_sandbox, crm_portal, NOTES)
    crm_sandbox.inject_fault(
        "status", status=503, portal_id=crm_portal.portal_id, path_prefix="/crm/v3/objects/notes"
    )

    with pytest.raises(CrmUnavailable):
        await crm.create_note("<p>once</p>", on=[("deals", deal.id)])

    assert calls(crm_sandbox, crm_portal, NOTES) - before == 1


async def test_a_rate_limited_note_is_sent_again_once(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    crm_sandbox.inject_fault(
        "rate_limit", portal_id=crm_portal.portal_id, path_prefix="/crm/v3/objects/notes"
    )

    await crm.create_note("<p>once</p>", on=[("deals", deal.id)])

    assert len(await crm.notes_on("deals", deal.id)) == 1


async def test_a_task_goes_on_the_records_it_names_and_is_completed(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm: PortalCrm
) -> None:
    deal = await crm.create("deals", {"dealname": "D"})
    company = await crm.create("companies", {"name": "Acme"})
    due = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)

    task = await crm.create_task(
        "Approve invoice for D",
        body="<p>459.00 USD, 2 lines</p>",
        due=due,
        on=[("deals", deal.id), ("companies", company.id)],
        priority="HIGH",
    )
    [on_deal] = await crm.tasks_on("deals", deal.id)
    completed = await crm.complete_task(task.id)

    assert on_deal.id == task.id
    assert on_deal.get("hs_task_subject") == "Approve invoice for D"
    assert (on_deal.get("hs_task_status"), on_deal.get("hs_task_priority")) == (
        "NOT_STARTED",
        "HIGH",
    )
    assert [t.id for t in await crm.tasks_on("companies", company.id)] == [task.id]
    assert completed.get("hs_task_status") == "COMPLETED"
    assert (
        await crm.tasks_on("contacts", (await crm.create("contacts", {"email": "t@x.example"})).id)
        == []
    )


@asynccontextmanager
async def portal_with(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, *scopes: str
) -> AsyncIterator[PortalCrm]:
    """The portal's CRM client with a token granted `scopes` (besides oauth)."""
    token = crm_sandbox.issue_token(crm_portal.portal_id, scopes=["oauth", *scopes])
    limits = CrmLimits(window_seconds=10.0 / SCALE, search_window_seconds=1.0 / SCALE)
    async with CrmClient(
        StaticTokenProvider({crm_portal.key: token}),
        base_url=crm_sandbox.base_url,
        limits=limits,
        retry=FAST_RETRY,
    ) as client:
        yield client.portal(crm_portal.portal_id)


async def test_the_portals_owners_are_listed_page_by_page_and_need_the_owners_scope(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    users = [
        crm_sandbox.add_user(crm_portal.portal_id, f"owner{n}@summit.example", f"Ada{n}", "Lee")
        for n in range(3)
    ]
    async with portal_with(crm_sandbox, crm_portal, "crm.objects.owners.read") as crm:
        owners = await crm.owners(page_size=2)
    by_email = {o["email"]: o for o in owners}
    for n, user in enumerate(users):
        # The owner's id is not its user's id; both come with the name.
        found = by_email[user["email"]]
        assert (found["userId"], found["firstName"], found["lastName"]) == (
            user["userId"],
            f"Ada{n}",
            "Lee",
        )
        assert found["id"] != str(user["userId"])
    assert len({o["id"] for o in owners}) == len(owners)  # no page read twice
    async with portal_with(crm_sandbox, crm_portal) as unscoped:
        with pytest.raises(CrmAuthError):
            await unscoped.owners()


async def test_an_owner_is_read_with_its_user_and_needs_the_owners_scope(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    user = crm_sandbox.add_user(crm_portal.portal_id, "ann@summit.example")
    scoped = crm_sandbox.issue_token(
        crm_portal.portal_id, scopes=["oauth", "crm.objects.owners.read"]
    )
    async with httpx.AsyncClient(base_url=crm_sandbox.base_url) as http:
        answer = await http.get(
            "/crm/v3/owners",
            params={"email": "ann@summit.example"},
            headers={"Authorization": f"Bearer {scoped}"},
        )
    listed = answer.json()["results"]
    async with portal_with(crm_sandbox, crm_portal, "crm.objects.owners.read") as crm:
        owner = await crm.owner(listed[0]["id"])
        nobody = await crm.owner("1")
    assert owner is not None and nobody is None
    assert (owner["userId"], owner["email"]) == (user["userId"], "ann@summit.example")
    async with portal_with(crm_sandbox, crm_portal) as unscoped:
        with pytest.raises(CrmAuthError):
            await unscoped.owner(owner["id"])
