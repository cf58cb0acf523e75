"""Who may read what a deal shows and trigger the sweeps: a person signed in for the deal's
portal reads it, operators sweep; everyone else is refused and nothing moves."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py


async def test_a_tracked_invoice_and_its_deal_are_shown_only_to_their_portal(
    tracker: Harness,
) -> None:
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("20.00")
    portal, other = world.portal.key, f"{world.portal.key}-other"
    invoice = f"/portals/{portal}/accounts/{world.realm}/invoices/{invoice_id}"
    deal = f"/portals/{portal}/deals/{world.deal_id}"

    shown, shown_deal = await tracker.read(tracker.grant(portal), invoice, deal)
    unsigned = await tracker.read(None, invoice, deal)
    foreign = await tracker.read(tracker.grant(other), invoice, deal)
    # The outsider's own portal path does not reach another portal's invoice or deal.
    own_path, own_deal = await tracker.read(
        tracker.grant(other),
        f"/portals/{other}/accounts/{world.realm}/invoices/{invoice_id}",
        f"/portals/{other}/deals/{world.deal_id}",
    )

    assert shown.status_code == 200 and shown.json()["stage"] == "awaiting_send"
    assert [i["qbo_invoice_id"] for i in shown_deal.json()["invoices"]] == [invoice_id]
    assert [r.status_code for r in unsigned] == [401, 401]
    assert [r.status_code for r in foreign] == [403, 403]
    assert own_path.status_code == 404
    assert own_deal.json() == {"projection": None, "invoices": []}


async def test_sweeps_need_an_operator_and_a_refused_sweep_moves_nothing(
    tracker: Harness,
) -> None:
    world = tracker.world()
    due = date.today() + timedelta(days=3)
    _, invoice_id = await world.tracked_invoice("75.00", due)
    before = await world.stage(invoice_id, "awaiting_send")
    with tracker.on_day(due + timedelta(days=1)):  # the invoice is overdue now
        refused = []
        for bearer in (None, "not-an-operator", tracker.grant(world.portal.key)):
            async with tracker.api(bearer) as caller:
                refused.append((await caller.post("/sweeps/overdue")).status_code)
                refused.append((await caller.post("/sweeps/reconcile")).status_code)
        untouched = await tracker.service.store.tracked(world.realm, invoice_id)
        async with tracker.api(tracker.operator) as operator:
            swept = await operator.post("/sweeps/overdue")
            reconciled = await operator.post(f"/sweeps/reconcile?realm_id={world.realm}")

    assert refused == [401] * 6
    assert untouched is not None
    assert (untouched["stage"], untouched["version"]) == (before["stage"], before["version"])
    assert swept.status_code == 200 and swept.json()["moved"] >= 1
    assert reconciled.status_code == 200
    await world.stage(invoice_id, "overdue")
