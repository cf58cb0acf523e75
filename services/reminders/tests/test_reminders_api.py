"""Who may read and change a company's workflows and list its reminders: a person signed in
for the company's portal, and operators; everyone else is refused and nothing changes. Bad
settings are refused with their reasons."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `reminders` fixture of conftest.py


async def test_only_the_companys_portal_and_operators_reach_its_workflows(
    reminders: Harness,
) -> None:
    world = await reminders.world()
    other = f"{world.portal.key}9"
    change = {"enabled": True, "days_after": [5]}
    path = world.workflows
    tasks = path.replace("/workflows", "/tasks")

    async with reminders.api() as anonymous:
        unsigned = [await anonymous.get(path), await anonymous.put(f"{path}/unsent", json=change)]
    async with reminders.api(reminders.grant(other)) as outsider:
        foreign = [
            await outsider.get(path),
            await outsider.put(f"{path}/unsent", json=change),
            await outsider.get(tasks),
        ]
        # The outsider's own portal in the path does not reach another portal's company.
        own_path = await outsider.get(path.replace(world.portal.key, other, 1))
    async with reminders.api("not-an-operator") as stranger:
        guessed = await stranger.post("/sweeps/reminders")
    untouched = await reminders.service.store.workflows(world.realm)
    async with reminders.api(reminders.operator_credential) as operator:
        by_operator = await operator.put(f"{path}/unsent", json=change)
        listed = await operator.get(tasks)
    async with reminders.api(reminders.grant(world.portal.key)) as admin:
        shown = (await admin.get(path)).json()

    assert [r.status_code for r in unsigned] == [401, 401]
    assert [r.status_code for r in foreign] == [403, 403, 403]
    assert own_path.status_code == 404
    assert guessed.status_code == 401
    assert all(not s.enabled for s in untouched.values())
    assert by_operator.status_code == 200 and by_operator.json()["days_after"] == [5]
    assert listed.status_code == 200 and listed.json()["reminders"] == []
    unsent = next(w for w in shown["workflows"] if w["workflow"] == "unsent")
    assert shown["available"] is True and (unsent["enabled"], unsent["days_after"]) == (True, [5])


async def test_invalid_settings_are_refused_with_reasons_and_not_saved(
    reminders: Harness,
) -> None:
    world = await reminders.world()

    async with reminders.api(reminders.grant(world.portal.key)) as admin:
        bad = await admin.put(
            f"{world.workflows}/payment",
            json={"enabled": True, "subject": "Pay {total}", "days_after": [400]},
        )
        unknown_field = await admin.put(f"{world.workflows}/payment", json={"colour": "red"})
        unknown_workflow = await admin.put(f"{world.workflows}/payroll", json={"enabled": True})
        wording = await admin.put(
            f"{world.workflows}/payment",
            json={"subject": "Chase {customer} for {doc_number}", "send_invoice_email": True},
        )
        shown = (await admin.get(world.workflows)).json()

    assert bad.status_code == 400 and bad.json()["error"] == "invalid_settings"
    problems = " ".join(bad.json()["problems"])
    assert "{total}" in problems and "between 0 and 365" in problems
    assert unknown_field.status_code == 400
    assert unknown_workflow.status_code == 404
    assert wording.status_code == 200
    payment = next(w for w in shown["workflows"] if w["workflow"] == "payment")
    # Wording and schedule can be edited before the workflow is switched on.
    assert payment["enabled"] is False and payment["send_invoice_email"] is True
    assert payment["subject"] == "Chase {customer} for {doc_number}"


async def test_open_reminders_are_listed_for_the_portal(reminders: Harness) -> None:
    world = await reminders.world()
    invoice = await world.drafted_invoice("64.00", made=-3, due=27)
    assert (await world.switch_on("unsent", days_after=[3])).status_code == 200
    assert await world.run_pass() == 1

    async with reminders.api(reminders.grant(world.portal.key)) as admin:
        listed = (await admin.get(world.workflows.replace("/workflows", "/tasks"))).json()
        closed = (
            await admin.get(world.workflows.replace("/workflows", "/tasks") + "?state=closed")
        ).json()

    [reminder] = listed["reminders"]
    assert (reminder["workflow"], reminder["subject_id"], reminder["state"]) == (
        "unsent",
        str(invoice.Id),
        "open",
    )
    assert reminder["object_type"] == "deals" and reminder["object_id"] == world.deal_id
    assert reminder["crm_task_id"] and reminder["owner_id"] == world.owner_id
    assert closed["reminders"] == []
