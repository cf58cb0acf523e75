"""A customer whose webhook QuickBooks never delivered is healed by the next reconciliation
pass (CDC since the account's watermark), exactly once (real Kafka, FerretDB and both
sandboxes over HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dealbooks_contracts import QboOperation, SyncAction, SyncTrigger
from dealbooks_infra.sync_world import created_and_announced, created_with_webhook_dropped
from dealbooks_infra.testing import eventually

pytestmark = pytest.mark.integration


def _customer() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "DisplayName": f"Lost Webhook {tag}",
        "GivenName": "Lia",
        "FamilyName": f"Lost{tag}",
        "PrimaryEmailAddr": {"Address": f"lia.{tag}@example.com"},
    }


async def test_customer_whose_webhook_was_dropped_becomes_one_contact_at_the_next_pass(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    customer = (await created_with_webhook_dropped(qbo_sandbox, realm, "customers", _customer()))[
        "Customer"
    ]
    email = customer["PrimaryEmailAddr"]["Address"]

    def contacts_of_customer() -> list[dict[str, Any]]:
        return [
            c
            for c in crm_sandbox.objects(crm_portal.portal_id, "contacts")
            if c["properties"].get("email") == email
        ]

    assert contacts_of_customer() == []

    first = await service.reconciliation.reconcile_all()
    assert first.failed == {}
    [contact] = contacts_of_customer()
    assert contact["properties"]["dealbooks_qbo_customer_id"] == customer["Id"]
    assert contact["properties"]["firstname"] == "Lia"

    async def outcome() -> Any:
        return next(
            (e for e in stack.events if getattr(e.data, "qbo_customer_id", None) == customer["Id"]),
            None,
        )

    synced = await eventually(outcome)
    assert synced.data.action is SyncAction.CREATED
    assert synced.data.trigger is SyncTrigger.RECONCILIATION

    # The next pass finds nothing new, and the webhook arriving late changes nothing.
    second = await service.reconciliation.reconcile_all()
    assert (second.done, second.failed) == (0, {})
    [late] = await stack.outcomes(
        await stack.changed("Customer", customer["Id"], QboOperation.CREATE)
    )
    assert late.data.action is SyncAction.UNCHANGED
    [same] = contacts_of_customer()
    assert same["id"] == contact["id"]
    assert same["properties"] == contact["properties"]


async def test_pass_after_a_webhook_already_synced_the_customer_changes_nothing(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)
    customer, webhook = await created_and_announced(stack, qbo_sandbox, "customers", _customer())
    assert webhook.data.action is SyncAction.CREATED

    await service.reconciliation.reconcile_all()

    async def healed() -> list[Any] | None:
        found = [
            e
            for e in stack.events
            if getattr(e.data, "qbo_customer_id", None) == customer["Id"]
            and e.data.trigger is SyncTrigger.RECONCILIATION
        ]
        return found or None

    [reconciled] = await eventually(healed)
    assert reconciled.data.action is SyncAction.UNCHANGED
    email = customer["PrimaryEmailAddr"]["Address"]
    contacts_now = crm_sandbox.objects(crm_portal.portal_id, "contacts")
    assert [c["id"] for c in contacts_now if c["properties"].get("email") == email] == [
        webhook.data.crm_contact_id
    ]


async def test_switched_off_account_is_not_reconciled(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)
    await stack.settings(enabled=False)
    customer = await created_with_webhook_dropped(
        qbo_sandbox, qbo_company.realm_id, "customers", _customer()
    )

    report = await service.reconciliation.reconcile_all()

    assert (report.done, report.failed) == (0, {})
    email = customer["Customer"]["PrimaryEmailAddr"]["Address"]
    assert all(
        c["properties"].get("email") != email
        for c in crm_sandbox.objects(crm_portal.portal_id, "contacts")
    )
    assert await stack.sync.db["cdc_watermarks"].find_one({"_id": qbo_company.realm_id}) is None
