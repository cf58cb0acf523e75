"""The invoices of a deal, contact or company, as the console and the app card read them:
`GET /portals/{portal}/records/{type}/{id}/invoices`, newest first, stages kept current (and
the record's name alone, `GET /portals/{portal}/records/{type}/{id}`), on
real Kafka, a real MongoDB-wire server and both sandboxes."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from dealbooks_infra.testing import eventually
from dealbooks_kit import CrmPortalNotInstalled
from dealbooks_qbo import Invoice
from status_tracker.store import RECORDS
from status_tracker.views import RecordInvoices

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py
QBO_APP = "https://app.qbo.intuit.com"


async def listed(
    tracker: Harness, world: Any, object_type: str, object_id: str, until: Any = None
) -> dict[str, Any]:
    """The route's answer for a record of the world's portal, once `until(answer)` holds."""
    path = f"/portals/{world.portal.key}/records/{object_type}/{object_id}/invoices"
    found: dict[str, Any] = {}

    async def ready() -> bool:
        [response] = await tracker.read(tracker.grant(world.portal.key), path)
        assert response.status_code == 200, response.text
        found.clear()
        found.update(response.json())
        return until is None or bool(until(found))

    await eventually(ready)
    return found


def stages(answer: dict[str, Any]) -> list[str]:
    return [i["stage"] for i in answer["invoices"]]


async def test_a_deals_invoices_are_listed_newest_first_with_the_one_its_properties_show(
    tracker: Harness,
) -> None:
    world = tracker.world()
    today = date.today()
    older = await world.invoice("300.00", TxnDate=(today - timedelta(days=5)).isoformat())
    await world.drafted(older)
    await world.stage(str(older.Id), "awaiting_send")
    newer, newer_id = await world.tracked_invoice("459.00")
    payment = await world.paid(newer_id, "220.00")
    await world.stage(newer_id, "partially_paid")

    # The invoice's stage is saved before the payment that moved it is recorded.
    answer = await listed(
        tracker, world, "deals", world.deal_id, lambda a: a["invoices"][0]["last_payment"]
    )

    assert (answer["object_type"], answer["object_id"]) == ("deals", world.deal_id)
    assert answer["shown"] == {"realm_id": world.realm, "invoice_id": newer_id}
    first, second = answer["invoices"]
    assert (first["invoice_id"], second["invoice_id"]) == (newer_id, str(older.Id))
    assert first == {
        "realm_id": world.realm,
        "invoice_id": newer_id,
        "doc_number": newer.DocNumber,
        "customer_name": newer.CustomerRef.name,
        "total": "459.00",
        "balance": "239.00",
        "currency": "USD",
        "stage": "partially_paid",
        "due_date": newer.DueDate.isoformat() if newer.DueDate else None,
        "txn_date": newer.TxnDate.isoformat() if newer.TxnDate else None,
        "updated_at": first["updated_at"],
        "last_payment": {"amount": "220.00", "date": payment["TxnDate"]},
        "qbo_url": f"{QBO_APP}/app/invoice?txnId={newer_id}",
    }
    assert first["updated_at"].endswith("+00:00")
    assert second["last_payment"] is None and second["txn_date"] < first["txn_date"]


async def test_a_deleted_invoice_is_no_longer_listed(tracker: Harness) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("50.00")
    current = await tracker.qbo.company(world.realm).read(Invoice, invoice_id)
    await tracker.qbo.company(world.realm).delete(Invoice, invoice_id, str(current.SyncToken))
    await world.webhook("Invoice", invoice_id, "Delete")
    await world.stage(invoice_id, "deleted")

    answer = await listed(tracker, world, "deals", world.deal_id)

    assert answer["invoices"] == []


@pytest.mark.parametrize(
    ("object_type", "record_type", "props"),
    [
        ("contact", "contacts", {"email": "linked@x.example"}),
        ("company", "companies", {"name": "Acme"}),
    ],
)
async def test_an_invoice_linked_to_a_contact_or_company_is_listed_and_kept_current(
    tracker: Harness, object_type: str, record_type: str, props: dict[str, str]
) -> None:
    world = tracker.world()
    record = tracker.crm_sandbox.create_as_user(world.portal.portal_id, record_type, props)
    invoice = await world.invoice("120.00")
    invoice_id = str(invoice.Id)

    await world.linked(invoice, object_type, record["id"])
    first = await listed(tracker, world, record_type, record["id"], stages)
    assert stages(first) == ["awaiting_send"] and first["shown"] is None
    payment = await world.paid(invoice_id, "20.00")
    paid = await listed(
        tracker,
        world,
        record_type,
        record["id"],
        lambda a: stages(a) == ["partially_paid"] and a["invoices"][0]["last_payment"],
    )

    [shown] = paid["invoices"]
    assert (shown["invoice_id"], shown["balance"]) == (invoice_id, "100.00")
    assert shown["last_payment"] == {"amount": "20.00", "date": payment["TxnDate"]}
    # The deal of the same portal lists nothing of it.
    assert (await listed(tracker, world, "deals", world.deal_id))["invoices"] == []


async def test_invoices_linked_before_records_listed_them_are_found_all_the_same(
    tracker: Harness,
) -> None:
    world = tracker.world()
    contact = tracker.crm_sandbox.create_as_user(
        world.portal.portal_id, "contacts", {"email": "early@x.example"}
    )
    invoice = await world.invoice("75.00")
    await world.linked(invoice, "contact", contact["id"])
    await listed(tracker, world, "contacts", contact["id"], stages)

    db = tracker.service.store.db
    await db[RECORDS].delete_one({"_id": f"{world.portal.key}:contact:{contact['id']}"})

    answer = await listed(tracker, world, "contacts", contact["id"])
    assert [i["invoice_id"] for i in answer["invoices"]] == [str(invoice.Id)]


async def test_an_unknown_record_lists_nothing_and_other_portals_see_nothing(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("20.00")
    portal, other = world.portal.key, f"{world.portal.key}-other"
    path = f"/records/deals/{world.deal_id}/invoices"

    unknown, wrong_type, mine = await tracker.read(
        tracker.grant(portal),
        f"/portals/{portal}/records/companies/424242/invoices",
        f"/portals/{portal}/records/quotes/1/invoices",
        f"/portals/{portal}{path}",
    )
    foreign, own_path = await tracker.read(
        tracker.grant(other), f"/portals/{portal}{path}", f"/portals/{other}{path}"
    )
    [unsigned] = await tracker.read(None, f"/portals/{portal}{path}")

    assert unknown.status_code == 200
    assert unknown.json() == {
        "object_type": "companies",
        "object_id": "424242",
        "shown": None,
        "invoices": [],
    }
    assert wrong_type.status_code == 404
    assert [i["invoice_id"] for i in mine.json()["invoices"]] == [invoice_id]
    assert (foreign.status_code, unsigned.status_code) == (403, 401)
    assert own_path.status_code == 200 and own_path.json()["invoices"] == []


async def test_asked_for_it_the_answer_names_the_record_as_the_crm_shows_it(
    tracker: Harness,
) -> None:
    world = tracker.world()
    contact = tracker.crm_sandbox.create_as_user(
        world.portal.portal_id,
        "contacts",
        {"firstname": "Ada", "lastname": "Lovelace", "email": "ada@x.example"},
    )
    portal = world.portal.key
    records = f"/portals/{portal}/records"

    deal, person, unknown, unasked = await tracker.read(
        tracker.grant(portal),
        f"{records}/deals/{world.deal_id}/invoices?include=name",
        f"{records}/contacts/{contact['id']}/invoices?include=name",
        f"{records}/companies/424242/invoices?include=name",
        f"{records}/deals/{world.deal_id}/invoices",
    )

    assert deal.json()["name"] == "Bakery order"
    assert person.json()["name"] == "Ada Lovelace"
    # A record the CRM does not know still lists (nothing); its name is not said.
    assert unknown.status_code == 200 and unknown.json()["name"] is None
    # Unasked (the app card, shown on the record itself), the CRM is not read.
    assert "name" not in unasked.json()


async def test_a_record_alone_is_named_for_its_portal_only(tracker: Harness) -> None:
    world = tracker.world()
    portal, other = world.portal.key, f"{world.portal.key}-other"
    deal = f"/portals/{portal}/records/deals/{world.deal_id}"

    named, unknown, wrong_type = await tracker.read(
        tracker.grant(portal),
        deal,
        f"/portals/{portal}/records/companies/424242",
        f"/portals/{portal}/records/quotes/1",
    )
    [foreign] = await tracker.read(tracker.grant(other), deal)
    [unsigned] = await tracker.read(None, deal)

    assert named.status_code == 200, named.text
    assert named.json() == {
        "object_type": "deals",
        "object_id": world.deal_id,
        "name": "Bakery order",
    }
    assert unknown.status_code == 200 and unknown.json()["name"] is None
    assert wrong_type.status_code == 404
    assert (foreign.status_code, unsigned.status_code) == (403, 401)


async def test_records_of_a_list_are_named_in_one_answer(tracker: Harness) -> None:
    world = tracker.world()
    portal = world.portal.key
    other = tracker.crm_sandbox.create_as_user(
        world.portal.portal_id, "deals", {"dealname": "Second <order>"}
    )
    deals = f"/portals/{portal}/records/deals"
    many = ",".join(str(n) for n in range(1, 102))

    named, none_asked, too_many, wrong_type = await tracker.read(
        tracker.grant(portal),
        f"{deals}?ids={world.deal_id},{other['id']},424242,1%3Fx,{world.deal_id}",
        deals,
        f"{deals}?ids={many}",
        f"/portals/{portal}/records/quotes?ids=1",
    )
    [foreign] = await tracker.read(tracker.grant(f"{portal}-other"), f"{deals}?ids=1")

    assert named.status_code == 200, named.text
    assert named.json() == {
        "object_type": "deals",
        "names": {
            world.deal_id: "Bakery order",
            other["id"]: "Second <order>",
            "424242": None,  # the CRM does not know it
            "1?x": None,  # not an id the CRM gives: not sent to it
        },
    }
    assert none_asked.json() == {"object_type": "deals", "names": {}}
    assert too_many.status_code == 400 and "at most 100" in too_many.json()["error"]
    assert wrong_type.status_code == 404
    assert foreign.status_code == 403


async def test_a_record_whose_name_the_crm_cannot_give_is_listed_all_the_same(
    tracker: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("30.00")
    portal = world.portal.key
    path = f"/portals/{portal}/records/deals/{world.deal_id}/invoices?include=name"

    async def uninstalled(key: str) -> str:
        raise CrmPortalNotInstalled(key)

    # The portal uninstalled the app: connector-auth holds no CRM token for it.
    monkeypatch.setattr(tracker.crm_tokens, "token", uninstalled)
    [gone] = await tracker.read(tracker.grant(portal), path)

    assert gone.status_code == 200, gone.text
    assert gone.json()["name"] is None
    assert [i["invoice_id"] for i in gone.json()["invoices"]] == [invoice_id]


async def test_an_id_the_crm_never_gives_is_not_sent_to_it() -> None:
    class Unreachable:
        def portal(self, portal_id: str) -> Any:
            raise AssertionError("the CRM was asked")

    records = RecordInvoices(store=None, qbo_app_url="", crm=Unreachable())  # type: ignore[arg-type]
    # Decoded from `1%3FidProperty=x`, it would add a query to the CRM's URL.
    assert await records.name_of("62515", "deals", "1?idProperty=x") is None
    assert await records.name_of("62515", "contacts", "../deals/1") is None
    assert await records.names_of("62515", "deals", ["\u00b2", "1\u0663"]) == {
        "\u00b2": None,  # digits to Python, not to the CRM
        "1\u0663": None,
    }


async def test_a_payment_recorded_before_dates_were_kept_shows_the_day_it_was_recorded(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("90.00")
    payment = await world.paid(invoice_id, "30.00")
    await world.payment_recorded(payment["Id"])
    db = tracker.service.store.db
    key = f"{world.realm}:{payment['Id']}"
    await db["payment_records"].update_one(
        {"_id": key}, {"$unset": {f"applications.{invoice_id}.date": ""}}
    )
    recorded = await db["payment_records"].find_one({"_id": key})
    assert recorded is not None

    answer = await listed(tracker, world, "deals", world.deal_id)

    [shown] = answer["invoices"]
    assert shown["last_payment"] == {
        "amount": "30.00",
        "date": recorded["recorded_at"].date().isoformat(),
    }
