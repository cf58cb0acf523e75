"""The registry on real Kafka, FerretDB and both sandboxes: seeding on connection, edits and
their announcements, refusals, the dry run and the property-sync status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dealbooks_contracts import (
    AccountConnectedReason,
    ContactSynced,
    ContactSyncFailed,
    Envelope,
    SyncAction,
    SyncFailureCode,
    SyncObjectType,
    SyncTrigger,
)

pytestmark = pytest.mark.integration

CONTACTS, PRODUCTS = SyncObjectType.CONTACTS, SyncObjectType.PRODUCTS


async def _mappings(registry, object_type: SyncObjectType = CONTACTS) -> dict[str, Any]:
    response = await registry.api.get(f"{registry.base(object_type)}/mappings")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_redelivered_outcomes_count_once_in_the_mapping_status(registry) -> None:
    await registry.seeded()
    synced = Envelope.build(
        ContactSynced(
            action=SyncAction.CREATED,
            trigger=SyncTrigger.WEBHOOK,
            mapping_version=1,
            mapping_ids=["m-email", "m-firstname"],
            qbo_customer_id="58",
            crm_contact_id="501",
        ),
        source="contact-sync",
        tenant=registry.tenant,
    )

    failed = Envelope.build(
        ContactSyncFailed(
            code=SyncFailureCode.MISSING_KEY,
            message="Customer 59 was not synced: it has no email.",
            trigger=SyncTrigger.WEBHOOK,
            permanent=True,
            attempts=1,
            mapping_id="m-email",
            qbo_customer_id="59",
        ),
        source="contact-sync",
        tenant=registry.tenant,
    )

    # Each handled once before a crash that lost the dedupe record, then delivered again.
    for event, consumer in ((synced, "contact-outcomes"), (failed, "contact-failures")):
        await registry.service.registry.on_outcome(event)
        await registry.runtime.publisher.publish(event)
        await registry.handled(consumer, event)

    status = (await registry.api.get(f"{registry.base()}/status")).json()
    by_id = {m["mapping_id"]: m for m in status["mappings"]}
    assert (by_id["m-email"]["ok"], by_id["m-email"]["failed"]) == (1, 1)
    assert (by_id["m-firstname"]["ok"], by_id["m-firstname"]["failed"]) == (1, 0)
    assert by_id["m-email"]["last_synced_at"] and "no email" in by_id["m-email"]["last_error"]
    assert by_id["m-phone"]["ok"] == 0


async def test_the_status_counts_the_last_window_of_outcomes_and_older_ones_are_dropped(
    registry,
) -> None:
    await registry.seeded()
    status = registry.service.registry.status
    now = datetime.now(UTC)

    def synced(customer_id: str, days_ago: int) -> Envelope[ContactSynced]:
        return Envelope.build(
            ContactSynced(
                action=SyncAction.UPDATED,
                trigger=SyncTrigger.WEBHOOK,
                mapping_version=1,
                mapping_ids=["m-lastname"],
                qbo_customer_id=customer_id,
                crm_contact_id=f"c-{customer_id}",
            ),
            source="contact-sync",
            tenant=registry.tenant,
            occurred_at=now - timedelta(days=days_ago),
        )

    for event in (synced("70", days_ago=status.window.days + 10), synced("71", days_ago=1)):
        await registry.service.registry.on_outcome(event)

    body = (await registry.api.get(f"{registry.base()}/status")).json()
    lastname = next(m for m in body["mappings"] if m["mapping_id"] == "m-lastname")
    assert lastname["ok"] == 1  # the outcome of a day ago, not the one before the window
    since = datetime.fromisoformat(body["counted_since"])
    assert abs(since - (now - status.window)) < timedelta(minutes=1)

    assert await status.forget_before(now - status.window, now) >= 1
    assert await status.forget_before(now - status.window, now) == 0
    body = (await registry.api.get(f"{registry.base()}/status")).json()
    lastname = next(m for m in body["mappings"] if m["mapping_id"] == "m-lastname")
    assert lastname["ok"] == 1


async def test_connected_account_is_seeded_with_default_mappings_and_sync_off(registry) -> None:
    await registry.seeded()

    contacts = await _mappings(registry, CONTACTS)
    assert contacts["version"] == 1 and contacts["settings"]["enabled"] is False
    assert {m["crm_property"] for m in contacts["mappings"]} >= {"email", "firstname", "lastname"}
    email = next(m for m in contacts["mappings"] if m["crm_property"] == "email")
    assert "delete" not in email["actions"]  # required: it can be edited, not deleted
    products = await _mappings(registry, PRODUCTS)
    assert {m["crm_property"] for m in products["mappings"]} >= {"name", "price"}
    announced = [m.model_dump(mode="json") for m in registry.latest(CONTACTS).data.mappings]
    assert announced == [
        {k: v for k, v in m.items() if k != "actions"} for m in contacts["mappings"]
    ]


async def test_reconnection_keeps_the_portals_own_mappings_and_settings(registry) -> None:
    await registry.seeded()
    added = await registry.api.post(
        f"{registry.base()}/mappings", json={"crm_property": "jobtitle", "qbo_field": "DisplayName"}
    )
    assert added.status_code == 201
    enabled = await registry.api.patch(f"{registry.base()}/settings", json={"enabled": True})
    assert enabled.json()["version"] == 3
    await registry.announced_version(CONTACTS, 3)

    reconnected = await registry.connected(AccountConnectedReason.RECONNECTED)
    await registry.handled("accounts", reconnected)

    after = await _mappings(registry)
    assert after["version"] == 3 and after["settings"]["enabled"] is True
    assert "jobtitle" in [m["crm_property"] for m in after["mappings"]]
    assert registry.versions(CONTACTS) == [1, 2, 3]  # nothing re-seeded, nothing announced


async def test_unknown_account_or_mapping_is_404(registry) -> None:
    await registry.seeded()
    api, base = registry.api, registry.base()

    elsewhere = f"/portals/{registry.portal_id}/accounts/no-such-realm"
    assert (await api.get(f"{elsewhere}/contacts/mappings")).status_code == 404
    assert (await api.get(f"{elsewhere}/products/status")).status_code == 404
    assert (
        await api.patch(f"{base}/mappings/m-nope", json={"qbo_field": "GivenName"})
    ).status_code == 404
    assert (await api.delete(f"{base}/mappings/m-nope")).status_code == 404
    dry = {"change": {"op": "delete", "mapping_id": "m-nope"}}
    assert (await api.post(f"{base}/dry-run", json=dry)).status_code == 404
    assert (await _mappings(registry))["version"] == 1


async def test_conflicting_edits_are_refused_and_exactly_one_concurrent_edit_wins(
    registry,
) -> None:
    await registry.seeded()
    api, base = registry.api, registry.base()

    duplicate = await api.post(
        f"{base}/mappings", json={"crm_property": "firstname", "qbo_field": "DisplayName"}
    )
    assert duplicate.status_code == 422
    assert duplicate.json()["problems"][0]["code"] == "DUPLICATE_CRM_PROPERTY"

    read = await api.get(f"{base}/mappings")
    assert read.headers["etag"] == '"1"'
    assert (await api.patch(f"{base}/settings", json={"enabled": True})).status_code == 200
    stale = await api.delete(f"{base}/mappings/m-phone", headers={"If-Match": read.headers["etag"]})
    assert stale.status_code == 409
    assert "reload" in stale.json()["error"]

    # Two admins edit version 2 at once: one is saved as version 3, the other is told.
    racing = await asyncio.gather(
        api.patch(
            f"{base}/settings", json={"delete_policy": "do_nothing"}, headers={"If-Match": '"2"'}
        ),
        api.delete(f"{base}/mappings/m-phone", headers={"If-Match": '"2"'}),
    )
    assert sorted(r.status_code for r in racing) == [200, 409]
    await registry.announced_version(CONTACTS, 3)
    assert registry.versions(CONTACTS) == [1, 2, 3]


async def test_every_change_announces_the_next_version(registry) -> None:
    await registry.seeded()
    api, base = registry.api, registry.base()

    added = await api.post(
        f"{base}/mappings", json={"crm_property": "jobtitle", "qbo_field": "DisplayName"}
    )
    jobtitle = added.json()["mapping"]["mapping_id"]
    edited = await api.patch(f"{base}/mappings/{jobtitle}", json={"qbo_field": "CompanyName"})
    deleted = await api.delete(f"{base}/mappings/m-phone")
    settings = await api.patch(f"{base}/settings", json={"delete_policy": "do_nothing"})
    versions = [r.json()["version"] for r in (added, edited, deleted, settings)]
    assert versions == [2, 3, 4, 5]

    await registry.announced_version(CONTACTS, 5)
    assert registry.versions(CONTACTS) == [1, 2, 3, 4, 5]
    last = registry.latest(CONTACTS)
    assert last.data.settings.delete_policy == "do_nothing"
    by_property = {m.crm_property: m for m in last.data.mappings}
    assert by_property["jobtitle"].qbo_field == "CompanyName" and "phone" not in by_property
    assert last.tenant == registry.tenant


async def test_dry_run_shows_the_change_and_saves_nothing(registry) -> None:
    await registry.seeded()
    before = await _mappings(registry)

    preview = await registry.api.post(
        f"{registry.base()}/dry-run",
        json={
            "change": {"op": "add", "crm_property": "jobtitle", "qbo_field": "DisplayName"},
            "sample_size": 3,
        },
    )

    assert preview.status_code == 200
    body = preview.json()
    assert body["saved"] is False and len(body["records"]) == 3
    assert all(r["changes"]["jobtitle"]["from"] is None for r in body["records"])
    assert await _mappings(registry) == before
    assert await registry.runtime.db["mapping_versions"].count_documents({}) == 2
    assert registry.versions(CONTACTS) == [1]
