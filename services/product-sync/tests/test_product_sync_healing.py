"""An item whose webhook QuickBooks never delivered is healed by the next reconciliation pass
(CDC since the account's watermark), exactly once (real Kafka, FerretDB and both sandboxes
over HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dealbooks_contracts import QboOperation, SyncAction, SyncTrigger
from dealbooks_infra.sync_world import (
    OPERATOR,
    backfill_client,
    created_and_announced,
    created_with_webhook_dropped,
    grant,
)
from dealbooks_infra.testing import eventually, with_webhook_dropped

pytestmark = pytest.mark.integration


async def test_item_whose_webhook_was_dropped_becomes_one_product_at_the_next_pass(
    products, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = products
    await stack.settings(enabled=True)
    body = {"Name": f"Lost Kit {uuid.uuid4().hex[:8]}", "Type": "Service", "UnitPrice": "42.00"}
    item = (await created_with_webhook_dropped(qbo_sandbox, qbo_company.realm_id, "items", body))[
        "Item"
    ]

    def products_of_item() -> list[dict[str, Any]]:
        return [
            p
            for p in crm_sandbox.objects(crm_portal.portal_id, "products")
            if p["properties"].get("dealbooks_qbo_item_id") == item["Id"]
        ]

    assert products_of_item() == []

    first = await service.reconciliation.reconcile_all()
    assert first.failed == {}
    [product] = products_of_item()
    assert product["properties"]["name"] == item["Name"]

    async def outcome() -> Any:
        return next(
            (e for e in stack.events if getattr(e.data, "qbo_item_id", None) == item["Id"]), None
        )

    synced = await eventually(outcome)
    assert (synced.data.action, synced.data.trigger) == (
        SyncAction.CREATED,
        SyncTrigger.RECONCILIATION,
    )

    # The next pass finds nothing new, and the webhook arriving late changes nothing.
    second = await service.reconciliation.reconcile_all()
    assert (second.done, second.failed) == (0, {})
    [late] = await stack.outcomes(await stack.changed("Item", item["Id"], QboOperation.CREATE))
    assert late.data.action is SyncAction.UNCHANGED
    [same] = products_of_item()
    assert (same["id"], same["properties"]) == (product["id"], product["properties"])


async def test_an_inactivation_whose_webhook_was_dropped_is_archived_by_the_operators_pass(
    products, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    """A backfill cannot see it (a query answers active items only): the reconciliation pass,
    run now through the operator's route, archives the product."""
    stack, service = products
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    body = {"Name": f"Retired Kit {uuid.uuid4().hex[:8]}", "Type": "Service", "UnitPrice": "9"}
    item, created = await created_and_announced(stack, qbo_sandbox, "items", body)
    assert created.data.action is SyncAction.CREATED
    await service.reconciliation.reconcile_all()  # the watermark now stands after the create

    def retire() -> Any:
        return qbo_sandbox.control(
            "POST", f"companies/{realm}/items/{item['Id']}", {"Active": False}
        )

    await with_webhook_dropped(qbo_sandbox, realm, retire)

    def live_products() -> list[str]:
        return [
            p["id"]
            for p in crm_sandbox.objects(crm_portal.portal_id, "products", archived="false")
            if p["properties"].get("dealbooks_qbo_item_id") == item["Id"]
        ]

    assert live_products() == [created.data.crm_product_id]
    async with backfill_client(service, grant(crm_portal.key)) as admin:
        refused = await admin.post("/sweeps/reconcile", params={"realm_id": realm})
    async with backfill_client(service, OPERATOR) as operator:
        one = await operator.post("/sweeps/reconcile", params={"realm_id": realm})
        every = await operator.post("/sweeps/reconcile")

    assert refused.status_code == 401  # a portal grant is no credential for the operator's pass
    assert one.status_code == 200 and one.json()["changes"] >= 1
    assert every.status_code == 200 and every.json()["failed_realms"] == {}

    async def archived() -> Any:
        return next(
            (
                e
                for e in stack.events
                if getattr(e.data, "qbo_item_id", None) == item["Id"]
                and e.data.action is SyncAction.ARCHIVED
            ),
            None,
        )

    assert (await eventually(archived)).data.trigger is SyncTrigger.RECONCILIATION
    assert live_products() == []
