"""Who may call the wizard API: only a person signed in for the route's portal, and only for
that portal's companies and requests. A refusal changes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `builder` fixture of conftest.py


def explicit_request(request_id: str) -> dict[str, Any]:
    """A wizard body that needs nothing from the CRM: customer and lines are given."""
    return {
        "request_id": request_id,
        "deal_id": "deal-access",
        "customer": {"kind": "existing", "qbo_customer_id": "1"},
        "lines": [
            {"qbo_item_id": "1", "quantity": "1",
             "unit_price": {"amount": "10.00", "currency": "USD"}},
        ],
    }  # fmt: skip


async def test_no_grant_or_another_portals_grant_is_refused_and_nothing_is_recorded(
    builder: Harness, qbo_sandbox: Any
) -> None:
    portal, other = f"p-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    realm = await builder.us_company(qbo_sandbox, portal)
    request_id = str(uuid.uuid4())
    submit = f"/portals/{portal}/accounts/{realm}/invoice-requests"
    rule = {"realm_id": realm, "deal_stage": "closedwon"}

    async with builder.wizard() as anonymous:
        assert (await anonymous.get(f"/portals/{portal}/accounts")).status_code == 401
        unsigned = await anonymous.post(submit, json=explicit_request(request_id))
    async with builder.wizard(other) as outsider:
        foreign = await outsider.post(submit, json=explicit_request(request_id))
        listed = await outsider.get(f"/portals/{portal}/accounts")
        # Through its own portal's routes, the outsider cannot reach this portal's company.
        own_path = await outsider.post(
            f"/portals/{other}/accounts/{realm}/invoice-requests",
            json=explicit_request(request_id),
        )
        own_list = await outsider.get(f"/portals/{other}/accounts/{realm}/items")
        rule_saved = await outsider.put(f"/portals/{other}/auto-draft-rules/r1", json=rule)

    assert unsigned.status_code == 401
    assert unsigned.headers["www-authenticate"] == "Bearer"
    assert (foreign.status_code, listed.status_code) == (403, 403)
    assert (own_path.status_code, own_list.status_code, rule_saved.status_code) == (404, 404, 404)
    assert await builder.service.store.request(request_id) is None
    assert await builder.service.store.rules_of(other) == []


async def test_a_request_id_of_another_portal_cannot_be_taken_over(
    builder: Harness, qbo_sandbox: Any
) -> None:
    portal, other = f"p-{uuid.uuid4().hex[:8]}", f"q-{uuid.uuid4().hex[:8]}"
    realm = await builder.us_company(qbo_sandbox, portal)
    other_realm = await builder.us_company(qbo_sandbox, other)
    request_id = str(uuid.uuid4())

    async with builder.wizard(portal) as owner:
        mine = await owner.post(
            f"/portals/{portal}/accounts/{realm}/invoice-requests",
            json=explicit_request(request_id),
        )
    before = await builder.service.store.request(request_id)
    async with builder.wizard(other) as outsider:
        taken = await outsider.post(
            f"/portals/{other}/accounts/{other_realm}/invoice-requests",
            json=explicit_request(request_id),
        )
        polled = await outsider.get(f"/portals/{other}/invoice-requests/{request_id}")

    assert mine.status_code == 202
    assert taken.status_code == 409
    assert polled.status_code == 404
    assert before is not None and before["portal_id"] == portal
    outcome = await builder.outcome(request_id)
    assert (outcome["portal_id"], outcome["realm_id"]) == (portal, realm)
