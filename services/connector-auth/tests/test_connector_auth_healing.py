"""A Preferences change whose webhook QuickBooks never delivered reaches the stored company
facts and `account.connected` (facts_changed) at the next facts pass (real HTTP, Kafka,
MongoDB-wire server and the QBO sandbox)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from connector_auth.app import build_service
from connector_auth.store import account_key
from dealbooks_infra.testing import with_webhook_dropped

pytestmark = pytest.mark.integration


async def preferences_changed_with_webhook_dropped(
    qbo_sandbox: Any, realm: str, **prefs: Any
) -> None:
    """A person changes the company's preferences while the sandbox drops the webhook."""
    await with_webhook_dropped(
        qbo_sandbox, realm, lambda: qbo_sandbox.set_preferences(realm, **prefs)
    )


async def test_preferences_change_with_its_webhook_dropped_reaches_the_facts_at_the_next_pass(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal = connector.new_portal()
    info = qbo_sandbox.control(
        "POST",
        "companies",
        {"country": "US", "name": f"Healing {uuid.uuid4().hex[:6]}", "custom_txn_numbers": True},
    )
    realm = str(info["realm_id"])
    await connector.connect(portal, realm)
    stored = await db.accounts.find_one({"_id": account_key(portal, realm)})
    assert stored["company"]["custom_transaction_numbers"] is True

    await preferences_changed_with_webhook_dropped(qbo_sandbox, realm, custom_txn_numbers=False)
    # A second replica's pass (the served one runs its own every facts_interval_seconds).
    _, service, _ = build_service(connector.settings)
    first = await service.refresh_all_facts()

    assert first.failed == {}
    assert first.done >= 1
    stored = await db.accounts.find_one({"_id": account_key(portal, realm)})
    assert stored["company"]["custom_transaction_numbers"] is False
    events = await connector.events("connector.account-connected.v1", 2, portal)
    assert events[-1]["data"]["reason"] == "facts_changed"
    assert events[-1]["data"]["custom_transaction_numbers"] is False

    # Nothing moved since: the next pass publishes nothing for this account.
    second = await service.refresh_all_facts()
    assert (second.done, second.failed) == (0, {})
    again = await connector.events("connector.account-connected.v1", 2, portal)
    assert len(again) == 2
    await service.http.aclose()
