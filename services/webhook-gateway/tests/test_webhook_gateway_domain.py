"""Pure rules of webhook-gateway: turning notifications into events, dedupe keys, echoes."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from dealbooks_contracts import CrmChange, CrmObjectType, QboEntity, QboEntityChanged
from dealbooks_qbo import parse_webhook
from qbo_sandbox import schema
from webhook_gateway import domain
from webhook_gateway.domain import CrmNotification, QboNotification, Rejected

NOW = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


QBO = QboNotification(
    realm_id="123",
    entity="Payment",
    entity_id="7",
    operation="Create",
    occurred_at=NOW,
    deleted_id=None,
    event_id=None,
)
CRM = CrmNotification(
    portal_id="62515",
    event_id="1",
    subscription_id="25",
    subscription_type="deal.propertyChange",
    object_id="99",
    occurred_at_ms=1_790_000_000_000,
    property_name="dealstage",
    property_value="closedwon",
    change_source="CRM_UI",
    source_id="userId:1",
)


def qbo(**changes: Any) -> QboNotification:
    """A QuickBooks payment's notification, but for `changes`."""
    return replace(QBO, **changes)


def crm(**changes: Any) -> CrmNotification:
    """A CRM deal's stage change notification, but for `changes`."""
    return replace(CRM, **changes)


def test_qbo_notification_becomes_entity_changed() -> None:
    event = domain.qbo_event(qbo(), NOW)
    assert isinstance(event, QboEntityChanged)
    assert (event.realm_id, event.entity, event.entity_id) == ("123", "Payment", "7")


def test_every_quickbooks_entity_keeps_its_own_name_from_a_cloudevents_type() -> None:
    # parse_webhook capitalises the lower-case name of a CloudEvents type ("Companyinfo").
    for name in schema.load().all_entities:
        for received in (name.lower(), name.lower().capitalize(), name):
            event = domain.qbo_event(qbo(entity=received), NOW)
            assert isinstance(event, QboEntityChanged)
            assert event.entity == name


def test_a_companyinfo_cloudevent_reaches_the_bus_as_companyinfo() -> None:
    body = json.dumps(
        [
            {
                "specversion": "1.0",
                "id": "e-1",
                "type": "qbo.companyinfo.updated.v1",
                "time": "2026-10-01T12:00:00Z",
                "intuitentityid": "1",
                "intuitaccountid": "123",
                "data": {},
            }
        ]
    ).encode()
    (change,) = parse_webhook(body)
    notification = qbo(entity=change.entity, entity_id=change.entity_id, operation="Update")
    event = domain.qbo_event(notification, NOW)
    assert isinstance(event, QboEntityChanged)
    assert event.entity == QboEntity.COMPANY_INFO


def test_an_entity_quickbooks_does_not_have_keeps_the_name_it_came_with() -> None:
    assert domain.qbo_entity_name("Gizmo") == "Gizmo"


def test_qbo_notification_without_time_uses_the_time_received() -> None:
    event = domain.qbo_event(qbo(occurred_at=None), NOW)
    assert isinstance(event, QboEntityChanged)
    assert event.last_updated == NOW


def test_unknown_operation_is_rejected_with_a_reason() -> None:
    assert domain.qbo_event(qbo(operation="Exploded"), NOW) == Rejected(
        "unknown operation 'Exploded'"
    )


def test_empty_entity_id_is_rejected() -> None:
    assert isinstance(domain.qbo_event(qbo(entity_id=""), NOW), Rejected)


def test_cloudevents_id_is_the_dedupe_key_else_the_change_coordinates() -> None:
    assert domain.qbo_dedupe_key(qbo(event_id="e-1")) == "qbo:e-1"
    assert domain.qbo_dedupe_key(qbo()) != domain.qbo_dedupe_key(qbo(operation="Update"))


def test_crm_property_change_becomes_object_changed() -> None:
    event = domain.crm_event(crm())
    assert not isinstance(event, Rejected)
    assert event.object_type is CrmObjectType.DEAL
    assert event.change is CrmChange.PROPERTY_CHANGED
    assert event.changed_at.year == 2026


def test_crm_event_of_an_object_we_do_not_carry_is_rejected() -> None:
    assert isinstance(domain.crm_event(crm(subscription_type="ticket.creation")), Rejected)


def test_own_write_is_recognised_by_source_id() -> None:
    own = frozenset({"1160452"})
    assert domain.is_own_write(crm(change_source="INTEGRATION", source_id="1160452"), own)
    assert not domain.is_own_write(crm(), own)


def test_crm_dedupe_key_tells_equal_event_ids_of_different_objects_apart() -> None:
    assert domain.crm_dedupe_key(crm()) != domain.crm_dedupe_key(crm(object_id="100"))
