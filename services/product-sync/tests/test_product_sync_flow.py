"""QBO items become CRM products keyed by the dealbooks item-id property (real Kafka,
FerretDB and both sandboxes over HTTP)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import stamina
from dealbooks_contracts import SyncAction
from dealbooks_infra.sync_world import created_and_announced
from dealbooks_infra.testing import crm_fault

pytestmark = pytest.mark.integration


def _item(**extra: Any) -> dict[str, Any]:
    body = {
        "Name": f"Onboarding {uuid.uuid4().hex[:8]}",
        "Type": "Service",
        "Sku": "ONB-1",
        "Description": "Onboarding package",
        "UnitPrice": "1234.50",
    }
    body.update(extra)
    return body


def _products(crm_sandbox, portal, archived: str = "false") -> list[dict[str, Any]]:
    return crm_sandbox.objects(portal.portal_id, "products", archived=archived)


async def test_item_created_renamed_and_inactivated_in_qbo_is_one_product(
    products, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = products
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    item, created = await created_and_announced(stack, qbo_sandbox, "items", _item())

    assert created.data.action is SyncAction.CREATED
    [product] = _products(crm_sandbox, crm_portal)
    props = product["properties"]
    assert Decimal(props["price"]) == Decimal("1234.50")
    assert (props["name"], props["hs_sku"]) == (item["Name"], "ONB-1")
    assert props["dealbooks_qbo_item_id"] == item["Id"]
    assert props["dealbooks_qbo_active"] == "true"

    # A rename keeps the product: it is keyed by the QBO item id, not the name.
    qbo_sandbox.control(
        "POST", f"companies/{realm}/items/{item['Id']}", {"Name": "Renamed", "UnitPrice": "99.99"}
    )
    update = await stack.changed("Item", item["Id"])
    [renamed] = await stack.outcomes(update)
    await stack.sync.publisher.publish(update)  # redelivered: no second product
    [product] = _products(crm_sandbox, crm_portal)
    assert renamed.data.action is SyncAction.UPDATED
    assert (product["properties"]["name"], product["properties"]["price"]) == ("Renamed", "99.99")

    qbo_sandbox.control("POST", f"companies/{realm}/items/{item['Id']}", {"Active": False})
    [archived] = await stack.outcomes(await stack.changed("Item", item["Id"]))
    assert archived.data.action is SyncAction.ARCHIVED
    assert _products(crm_sandbox, crm_portal) == []
    assert len(_products(crm_sandbox, crm_portal, archived="true")) == 1


async def test_text_into_a_number_property_is_refused_and_the_name_mapping_is_required(
    products,
) -> None:
    stack, _ = products
    number_into_text = await stack.api.post(
        f"{stack.base}/mappings", json={"crm_property": "hs_product_type", "qbo_field": "UnitPrice"}
    )
    assert number_into_text.status_code == 201
    into_number = await stack.api.post(
        f"{stack.base}/mappings",
        json={"crm_property": "hs_cost_of_goods_sold", "qbo_field": "Description"},
    )
    assert into_number.status_code == 422
    assert into_number.json()["problems"][0]["code"] == "INCOMPATIBLE_TYPES"
    deleted = await stack.api.delete(f"{stack.base}/mappings/m-name")
    assert deleted.status_code == 422
    assert deleted.json()["problems"][0]["code"] == "REQUIRED_MAPPING"


async def test_crm_outage_longer_than_the_retries_publishes_product_sync_failed(
    products, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = products
    await stack.settings(enabled=True)
    item = qbo_sandbox.user_creates(qbo_company.realm_id, "items", _item())["Item"]
    # One HTTP attempt per call, so the burst outlasts the consumer's 3 handler attempts.
    with (
        stamina.set_testing(True, attempts=1),
        crm_fault(crm_sandbox, "status", status=503, count=5, portal_id=crm_portal.portal_id),
    ):
        [failed] = await stack.outcomes(await stack.changed("Item", item["Id"]))

    assert failed.type == "product.sync-failed"
    assert (failed.data.code, failed.data.permanent) == ("RETRIES_EXHAUSTED", True)
    assert failed.data.message.startswith(f"Item {item['Id']} was not synced:")
    assert _products(crm_sandbox, crm_portal) == []
