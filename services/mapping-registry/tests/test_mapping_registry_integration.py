"""The registry on real Kafka, FerretDB and both sandboxes: seeding on connection, edits and
their announcements, refusals, the dry run and the property-sync status."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_contracts import (
    ContactSynced,
    Envelope,
    SyncAction,
    SyncObjectType,
    SyncTrigger,
)

pytestmark = pytest.mark.integration

CONTACTS, PRODUCTS = SyncObjectType.CONTACTS, SyncObjectType.PRODUCTS


async def _seeded(registry) -> None:
    await registry.connected()
    await registry.announced_version(CONTACTS, 1)
    await registry.announced_version(PRODUCTS, 1)


async def _mappings(registry, object_type: SyncObjectType = CONTACTS) -> dict[str, Any]:
    response = await registry.api.get(f"{registry.base(object_type)}/mappings")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_redelivered_synced_event_counts_once_in_the_mapping_status(registry) -> None:
    await _seeded(registry)
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

    # Handled once before a crash that lost the dedupe record, then delivered again by Kafka.
    await registry.service.registry.on_outcome(synced)
    await registry.runtime.publisher.publish(synced)
    await registry.handled("contact-outcomes", synced)

    status = (await registry.api.get(f"{registry.base()}/status")).json()
    by_id = {m["mapping_id"]: m for m in status["mappings"]}
    assert (by_id["m-email"]["ok"], by_id["m-firstname"]["ok"]) == (1, 1)
    assert by_id["m-email"]["failed"] == 0 and by_id["m-email"]["last_synced_at"]
    assert by_id["m-phone"]["ok"] == 0
