"""Each of the four workflows on real Kafka, the MongoDB-wire server and both sandboxes: it
opens its task once (a second pass and a restarted service make nothing new), and completes
it when the condition clears; a company on another edition gets none of it."""

from __future__ import annotations

from typing import Any

import pytest
from reminders.app import build_service
from reminders.store import CLAIMED, REMINDERS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `reminders` fixture of conftest.py


async def opened(h: Harness, realm: str, subject_id: str, count: int = 1) -> list[Any]:
    return await h.events(
        "reminder.task-opened",
        lambda e: e.tenant.account_id == realm and e.data.subject_id == subject_id,
        count=count,
    )


async def closed(h: Harness, realm: str, subject_id: str) -> Any:
    [event] = await h.events(
        "reminder.task-closed",
        lambda e: e.tenant.account_id == realm and e.data.subject_id == subject_id,
    )
    return event


async def opens_once(h: Harness, world: Any, subject_id: str) -> Any:
    """Two passes: the first opens one reminder of `subject_id`, the second nothing; its
    opening event."""
    assert [await world.run_pass(), await world.run_pass()] == [1, 0]
    [event] = await opened(h, world.realm, subject_id)
    return event


async def closes_on_deal(h: Harness, world: Any, subject_id: str) -> str:
    """A pass completes the reminder's task on the deal; why the reminder was closed."""
    assert await world.run_pass() == 1
    assert (await world.tasks_on_deal())[0].get("hs_task_status") == "COMPLETED"
    return str((await closed(h, world.realm, subject_id)).data.reason)


async def test_payment_reminder_opens_one_task_on_the_deal_and_closes_it_when_paid(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    invoice = await world.drafted_invoice("300.00", made=-20, due=-2)
    invoice_id = str(invoice.Id)
    switched = await world.switch_on("payment", days_before=[3], days_after=[1, 7])
    assert switched.status_code == 200, switched.text

    first = await world.run_pass()
    again = await world.run_pass()
    # A second process (a restart, or another replica after a crash) over the same database.
    restarted = build_service(
        reminders.settings, qbo_tokens=reminders.qbo_tokens, crm_tokens=reminders.crm_tokens
    )
    async with restarted.runtime.running():
        after_restart = await world.run_pass(restarted)
    await restarted.aclose()
    [task] = await world.tasks_on_deal()
    [event] = await opened(reminders, world.realm, invoice_id)

    assert (first, again, after_restart) == (1, 0, 0)
    assert "overdue" in task.get("hs_task_subject") and invoice.DocNumber in task.get(
        "hs_task_subject"
    )
    assert task.get("hubspot_owner_id") == world.owner_id
    assert (task.get("hs_task_status"), task.get("hs_task_priority")) == ("NOT_STARTED", "HIGH")
    assert (event.data.workflow.value, event.data.period, event.data.crm_task_id) == (
        "payment",
        "due+1",
        task.id,
    )
    assert event.data.deal_id == world.deal_id

    reminders.qbo_sandbox.record_payment(world.realm, invoice_id, "300.00")
    assert await world.run_pass() == 1
    [done] = await world.tasks_on_deal()
    event = await closed(reminders, world.realm, invoice_id)

    assert done.get("hs_task_status") == "COMPLETED"
    assert (event.data.reason, event.data.crm_task_id) == ("paid", task.id)
    assert await world.run_pass() == 0


async def test_unsent_invoice_reminder_closes_when_quickbooks_sends_it(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    invoice = await world.drafted_invoice("120.00", made=-2, due=28)
    invoice_id = str(invoice.Id)
    assert (await world.switch_on("unsent", days_after=[2])).status_code == 200

    event = await opens_once(reminders, world, invoice_id)
    [task] = await world.tasks_on_deal()
    assert event.data.period == "created+2" and "Send invoice" in task.get("hs_task_subject")

    reminders.qbo_sandbox.mark_emailed(world.realm, invoice_id)
    assert await closes_on_deal(reminders, world, invoice_id) == "sent"


async def test_vendor_reminder_opens_one_task_for_a_bill_coming_due_and_closes_it_when_paid(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    bill = world.control(
        "POST",
        "bills",
        {
            "VendorRef": {"value": "1"},
            "DueDate": world.days(3),
            "TxnDate": world.days(-10),
            "DocNumber": "B-77",
            "Line": [
                {
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "Amount": "180.00",
                    "AccountBasedExpenseLineDetail": {"AccountRef": {"value": "7"}},
                }
            ],
        },
    )["Bill"]
    bill_id = str(bill["Id"])
    owner = world.owner_id  # bills have no CRM record: a fixed owner gets them
    assert (await world.switch_on("vendor", days_before=[3], owner_id=owner)).status_code == 200

    event = await opens_once(reminders, world, bill_id)
    [task] = world.tasks()
    assert event.data.period == "due-3" and event.data.subject_type == "bill"
    assert "B-77" in task["properties"]["hs_task_subject"]
    assert task["properties"]["hubspot_owner_id"] == owner

    # A claim a stopped run left after making the task: the run that takes it over finds the
    # task by its reference instead of making another.
    reminder_id = f"{world.realm}:vendor:{bill_id}:due-3"
    store = reminders.service.store
    await store.db[REMINDERS].update_one(
        {"_id": reminder_id}, {"$set": {"state": CLAIMED, "claimed_at": _long_ago()}}
    )
    assert await world.run_pass() == 1  # recorded open again, not created
    assert len(world.tasks()) == 1
    assert (await store.reminder(reminder_id) or {}).get("crm_task_id") == task["id"]

    world.control(
        "POST",
        "billpayments",
        {
            "VendorRef": {"value": "1"},
            "TotalAmt": "180.00",
            "PayType": "Check",
            "CheckPayment": {"BankAccountRef": {"value": "35"}},
            "Line": [{"Amount": "180.00", "LinkedTxn": [{"TxnId": bill_id, "TxnType": "Bill"}]}],
        },
    )
    assert await world.run_pass() == 1

    [done] = world.tasks()
    assert done["properties"]["hs_task_status"] == "COMPLETED"
    assert (await closed(reminders, world.realm, bill_id)).data.reason == "paid"


async def test_deposit_reminder_closes_when_a_bank_deposit_takes_the_payment(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    invoice = await world.drafted_invoice("250.00", made=-10, due=20)
    payment = reminders.qbo_sandbox.control(
        "POST",
        f"companies/{world.realm}/invoices/{invoice.Id}/payments",
        {"amount": "250.00", "txn_date": world.days(-3)},
    )["Payment"]
    payment_id = str(payment["Id"])
    assert (await world.switch_on("deposit", days_after=[3])).status_code == 200

    event = await opens_once(reminders, world, payment_id)
    [task] = await world.tasks_on_deal()  # on the deal of the invoice it paid
    assert (event.data.subject_type, event.data.period) == ("payment", "held+3")
    assert "Deposit" in task.get("hs_task_subject")

    world.control(
        "POST",
        "deposits",
        {
            "DepositToAccountRef": {"value": "35"},
            "Line": [
                {"Amount": "250.00", "LinkedTxn": [{"TxnId": payment_id, "TxnType": "Payment"}]}
            ],
        },
    )
    assert await closes_on_deal(reminders, world, payment_id) == "deposited"


async def test_a_later_reminder_of_an_invoice_completes_the_earlier_one(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    invoice = await world.drafted_invoice("80.00", made=-20, due=3)
    assert (await world.switch_on("payment", days_before=[3], days_after=[1])).status_code == 200
    assert await world.run_pass() == 1

    # Four days later the invoice is a day overdue: the new reminder replaces the first.
    handlers = reminders.service.handlers
    later = reminders.today()
    handlers.today = lambda: later.fromordinal(later.toordinal() + 4)
    try:
        moved = await handlers.pass_company(world.realm)
    finally:
        handlers.today = reminders.today

    tasks = sorted(await world.tasks_on_deal(), key=lambda t: int(t.id))
    assert moved == 2  # one opened, one completed
    assert [t.get("hs_task_status") for t in tasks] == ["COMPLETED", "NOT_STARTED"]
    assert (await closed(reminders, world.realm, str(invoice.Id))).data.reason == "superseded"


async def test_a_company_on_another_edition_gets_no_reminders_and_cannot_switch_them_on(
    reminders: Harness,
) -> None:
    world = await reminders.world(edition="plus")
    await world.drafted_invoice("90.00", made=-20, due=-1)

    refused = await world.switch_on("payment")
    async with reminders.api(reminders.grant(world.portal.key)) as admin:
        shown = (await admin.get(world.workflows)).json()
    passed = await reminders.service.handlers.pass_all()

    assert refused.status_code == 409
    assert refused.json()["error"] == "not_available"
    assert "QuickBooks Online Advanced" in refused.json()["message"]
    assert shown["available"] is False and "QuickBooks Online Plus" in shown["reason"]
    assert world.realm not in passed.failed
    assert world.realm not in await reminders.service.store.realms_to_pass()
    assert await world.run_pass() == 0
    assert world.tasks() == []
    assert all(not w["enabled"] for w in shown["workflows"])


def _long_ago() -> Any:
    from datetime import UTC, datetime, timedelta

    return datetime.now(UTC) - timedelta(hours=1)
