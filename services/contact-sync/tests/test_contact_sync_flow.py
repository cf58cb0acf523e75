"""QBO customers become CRM contacts under the portal's settings and mappings (real Kafka,
FerretDB and both sandboxes over HTTP)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import stamina
from dealbooks_contracts import QboOperation, SyncAction
from dealbooks_infra.sync_world import OPERATOR, backfill_client, created_and_announced, grant
from dealbooks_infra.testing import crm_fault, eventually

pytestmark = pytest.mark.integration


def _customer(**extra: Any) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    body = {
        "DisplayName": f"Ana Lima {tag}",
        "GivenName": "Ana",
        "FamilyName": f"Lima{tag}",
        "PrimaryEmailAddr": {"Address": f"ana.{tag}@example.com"},
        "PrimaryPhone": {"FreeFormNumber": "(650) 555-0101"},
        "BillAddr": {"Line1": "1 Main St", "City": "Austin", "CountrySubDivisionCode": "TX"},
    }
    body.update(extra)
    return body


def _contacts(crm_sandbox, portal, archived: str = "false") -> list[dict[str, Any]]:
    return crm_sandbox.objects(portal.portal_id, "contacts", archived=archived)


async def test_customer_created_then_updated_in_qbo_becomes_one_updated_contact(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    created, outcome = await created_and_announced(stack, qbo_sandbox, "customers", _customer())

    assert outcome.data.action is SyncAction.CREATED
    [contact] = [c for c in _contacts(crm_sandbox, crm_portal)]
    props = contact["properties"]
    assert props["email"] == created["PrimaryEmailAddr"]["Address"]
    assert (props["firstname"], props["city"], props["state"]) == ("Ana", "Austin", "TX")
    assert props["dealbooks_qbo_customer_id"] == created["Id"]
    assert outcome.data.crm_contact_id == contact["id"]
    assert "m-email" in outcome.data.mapping_ids

    qbo_sandbox.control(
        "POST", f"companies/{realm}/customers/{created['Id']}", {"GivenName": "Anabel"}
    )
    update = await stack.changed("Customer", created["Id"])
    [updated] = await stack.outcomes(update)
    assert updated.data.action is SyncAction.UPDATED
    # A duplicated webhook (new event id) and a redelivered event (same id) change nothing.
    [duplicate] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    await stack.sync.publisher.publish(update)
    assert duplicate.data.action is SyncAction.UNCHANGED
    [contact] = _contacts(crm_sandbox, crm_portal)
    assert contact["properties"]["firstname"] == "Anabel"

    # The link is stored both ways: QBO id on the contact, contact id in contact-sync.
    link = await stack.sync.db["links"].find_one({"_id": f"{realm}:{created['Id']}"})
    assert link["crm_id"] == contact["id"]


async def test_update_existing_only_does_not_create_contacts(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True, create_update_policy="update_existing_only")
    created = qbo_sandbox.user_creates(qbo_company.realm_id, "customers", _customer())["Customer"]

    [outcome] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert outcome.data.action is SyncAction.SKIPPED
    assert "update existing only" in outcome.data.skipped_reason
    assert _contacts(crm_sandbox, crm_portal) == []

    # A contact someone already has in the CRM is updated.
    email = created["PrimaryEmailAddr"]["Address"]
    crm_sandbox.create_as_user(crm_portal.portal_id, "contacts", {"email": email})
    [outcome] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert outcome.data.action is SyncAction.UPDATED
    [contact] = _contacts(crm_sandbox, crm_portal)
    assert contact["properties"]["firstname"] == "Ana"


async def test_inactive_customer_is_archived_or_kept_per_delete_policy(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True, delete_policy="do_nothing")
    realm = qbo_company.realm_id
    kept, _ = await created_and_announced(stack, qbo_sandbox, "customers", _customer())
    gone, _ = await created_and_announced(stack, qbo_sandbox, "customers", _customer())
    for customer in (kept, gone):
        qbo_sandbox.control(
            "POST", f"companies/{realm}/customers/{customer['Id']}", {"Active": False}
        )

    [outcome] = await stack.outcomes(await stack.changed("Customer", kept["Id"]))
    assert outcome.data.action is SyncAction.SKIPPED
    assert len(_contacts(crm_sandbox, crm_portal)) == 2

    await stack.settings(delete_policy="archive")
    [outcome] = await stack.outcomes(await stack.changed("Customer", gone["Id"]))
    assert outcome.data.action is SyncAction.ARCHIVED
    [archived] = _contacts(crm_sandbox, crm_portal, archived="true")
    assert archived["id"] == outcome.data.crm_contact_id


async def test_switch_off_leaves_the_crm_untouched(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    created = qbo_sandbox.user_creates(qbo_company.realm_id, "customers", _customer())["Customer"]
    before = crm_sandbox.counters(crm_portal.portal_id)["total"]

    [outcome] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert outcome.data.action is SyncAction.SKIPPED
    assert outcome.data.skipped_reason == "sync is switched off"
    assert crm_sandbox.counters(crm_portal.portal_id)["total"] == before


async def test_customer_without_email_fails_permanently_and_shows_in_mapping_status(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    body = _customer()
    del body["PrimaryEmailAddr"]
    created = qbo_sandbox.user_creates(qbo_company.realm_id, "customers", body)["Customer"]

    [failed] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert failed.type == "contact.sync-failed"
    assert failed.data.code == "MISSING_KEY" and failed.data.permanent
    assert "has no email" in failed.data.message
    assert _contacts(crm_sandbox, crm_portal) == []

    async def email_status() -> dict[str, Any] | None:
        body = (await stack.api.get(f"{stack.base}/status")).json()
        entry = next(m for m in body["mappings"] if m["crm_property"] == "email")
        return entry if entry["failed"] else None

    entry = await eventually(email_status)
    assert "has no email" in entry["last_error"]


async def test_custom_mapping_added_via_api_changes_the_next_sync_and_reports_status(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    options = (await stack.api.get(f"{stack.base}/options")).json()
    assert "jobtitle" in [p["name"] for p in options["crm_properties"]]
    assert "DisplayName" in [f["name"] for f in options["qbo_fields"]]

    preview = await stack.api.post(
        f"{stack.base}/dry-run",
        json={"change": {"op": "add", "crm_property": "jobtitle", "qbo_field": "DisplayName"}},
    )
    assert preview.status_code == 200
    assert all("jobtitle" in r["changes"] for r in preview.json()["records"])
    added = await stack.api.post(
        f"{stack.base}/mappings", json={"crm_property": "jobtitle", "qbo_field": "DisplayName"}
    )
    assert added.status_code == 201
    await stack.applied_version(added.json()["version"])

    created = qbo_sandbox.user_creates(qbo_company.realm_id, "customers", _customer())["Customer"]
    [outcome] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    [contact] = _contacts(crm_sandbox, crm_portal)
    assert contact["properties"]["jobtitle"] == created["DisplayName"]
    mapping_id = added.json()["mapping"]["mapping_id"]
    assert mapping_id in outcome.data.mapping_ids

    async def synced() -> dict[str, Any] | None:
        body = (await stack.api.get(f"{stack.base}/status")).json()
        entry = next(m for m in body["mappings"] if m["mapping_id"] == mapping_id)
        return entry if entry["ok"] else None

    entry = await eventually(synced)
    assert entry["last_synced_at"] is not None and entry["failed"] == 0


async def test_crm_outage_longer_than_the_retries_is_reported_as_a_failure_in_the_status(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    created = qbo_sandbox.user_creates(qbo_company.realm_id, "customers", _customer())["Customer"]
    # One HTTP attempt per call, so the burst outlasts the consumer's 3 handler attempts.
    with (
        stamina.set_testing(True, attempts=1),
        crm_fault(crm_sandbox, "status", status=503, count=5, portal_id=crm_portal.portal_id),
    ):
        [failed] = await stack.outcomes(await stack.changed("Customer", created["Id"]))

    assert failed.type == "contact.sync-failed"
    assert (failed.data.code, failed.data.permanent, failed.data.attempts) == (
        "RETRIES_EXHAUSTED", True, 3
    )  # fmt: skip
    assert failed.data.message.startswith(f"Customer {created['Id']} was not synced:")
    assert "backfill" in failed.data.message

    async def record_failures() -> dict[str, Any] | None:
        body = (await stack.api.get(f"{stack.base}/status")).json()
        return body["records"] if body["records"]["failed"] else None

    records = await eventually(record_failures)
    assert "kept failing" in records["last_error"]
    # Nothing is lost: the next change of the customer syncs it.
    [outcome] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert outcome.data.action is SyncAction.CREATED


async def test_a_field_emptied_in_qbo_clears_the_contact_property(
    contacts, qbo_sandbox, qbo_company, crm_sandbox, crm_portal
) -> None:
    stack, _ = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    created, _ = await created_and_announced(stack, qbo_sandbox, "customers", _customer())
    [contact] = _contacts(crm_sandbox, crm_portal)
    assert contact["properties"]["phone"] == "(650) 555-0101"

    qbo_sandbox.control(
        "POST",
        f"companies/{realm}/customers/{created['Id']}",
        {"PrimaryPhone": {"FreeFormNumber": ""}},
    )
    [cleared] = await stack.outcomes(await stack.changed("Customer", created["Id"]))

    assert cleared.data.action is SyncAction.UPDATED and "m-phone" in cleared.data.mapping_ids
    [contact] = _contacts(crm_sandbox, crm_portal)
    assert not contact["properties"].get("phone")
    assert contact["properties"]["firstname"] == "Ana"
    [again] = await stack.outcomes(await stack.changed("Customer", created["Id"]))
    assert again.data.action is SyncAction.UNCHANGED


async def test_each_sync_of_a_customer_is_in_its_audit_trail_and_its_contacts(
    contacts, qbo_sandbox, qbo_company, crm_portal
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    created = qbo_sandbox.user_creates(realm, "customers", _customer())["Customer"]
    cause = await stack.changed("Customer", created["Id"], QboOperation.CREATE)
    [outcome] = await stack.outcomes(cause)
    qbo_sandbox.control(
        "POST", f"companies/{realm}/customers/{created['Id']}", {"GivenName": "Anabel"}
    )
    await stack.outcomes(await stack.changed("Customer", created["Id"]))
    await stack.sync.publisher.publish(cause)  # redelivered: handled once, recorded once
    contact_id = outcome.data.crm_contact_id

    async with backfill_client(service, OPERATOR) as operator:
        customer = (await operator.get(f"/operator/audit/customer/{realm}:{created['Id']}")).json()
        contact = await operator.get(f"/operator/audit/contact/{crm_portal.portal_id}:{contact_id}")
    async with backfill_client(service, grant(crm_portal.portal_id)) as admin:
        refused = await admin.get(f"/operator/audit/customer/{realm}:{created['Id']}")

    entries = customer["entries"]
    assert [e["action"] for e in entries] == ["contact.created", "contact.updated"]
    first = entries[0]
    assert (first["event_id"], first["event_type"]) == (str(cause.id), "qbo.entity-changed")
    assert first["detail"]["crm_id"] == contact_id
    assert first["detail"]["call"]["path"] == "/crm/v3/objects/contacts/batch/upsert"
    assert first["related"] == [f"contact:{crm_portal.portal_id}:{contact_id}"]
    assert contact.json()["entries"] == entries  # the contact's trail is the same story
    assert refused.status_code == 401  # a portal grant is no operator credential
