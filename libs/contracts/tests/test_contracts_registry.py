"""The topic registry: every event has a model, a topic and a snapshot; names follow the rules."""

from __future__ import annotations

import pytest
from dealbooks_contracts import (
    REGISTRY,
    DuplicateRegistrationError,
    EventPayload,
    EventScope,
    InvoiceDrafted,
    TopicRegistry,
    UnknownEventError,
    all_specs,
    dlq_topic,
    spec_for_model,
    spec_for_topic,
    spec_for_type,
    topic_for,
)
from dealbooks_contracts.schemas import snapshot_path

ARCHITECTURE_EVENTS = {
    "connector.account-connected",
    "connector.account-disconnected",
    "connector.account-reauth-required",
    "connector.portal-installed",
    "connector.portal-uninstalled",
    "qbo.entity-changed",
    "crm.object-changed",
    "crm.invoice-requested",
    "crm.invoice-link-requested",
    "invoice.drafted",
    "invoice.request-rejected",
    "invoice.linked",
    "invoice.status-changed",
    "invoice.payment-recorded",
    "contact.synced",
    "contact.sync-failed",
    "product.synced",
    "product.sync-failed",
    "mapping.changed",
    # QuickBooks Online Advanced: invoice approval (invoice-builder), reminders (reminders).
    "invoice.approval-requested",
    "invoice.approval-decided",
    "reminder.task-opened",
    "reminder.task-closed",
}


class _Sample(EventPayload):
    """A payload used only by these tests."""

    value: int


class _Other(EventPayload):
    """Another test-only payload."""


def test_every_architecture_event_is_registered_with_a_model_topic_and_snapshot() -> None:
    assert {spec.type for spec in all_specs()} == ARCHITECTURE_EVENTS
    for spec in all_specs():
        assert issubclass(spec.model, EventPayload)
        assert spec.model.__doc__, f"{spec.model.__name__} needs a docstring"
        assert spec.topic == f"{spec.type}.v{spec.version}"
        assert snapshot_path(spec.topic).is_file(), f"no snapshot for {spec.topic}"


def test_each_model_maps_to_exactly_one_topic() -> None:
    models = [spec.model for spec in all_specs()]
    assert len(models) == len(set(models))
    topics = [spec.topic for spec in all_specs()]
    assert len(topics) == len(set(topics))


def test_lookup_by_type_topic_and_model_agree() -> None:
    spec = spec_for_type("invoice.drafted")
    assert spec is spec_for_topic("invoice.drafted.v1")
    assert spec is spec_for_model(InvoiceDrafted)
    assert topic_for(InvoiceDrafted) == "invoice.drafted.v1"
    assert spec.model is InvoiceDrafted


def test_topic_naming_and_dead_letter_topic() -> None:
    assert topic_for(InvoiceDrafted) == "invoice.drafted.v1"
    assert dlq_topic("invoice.drafted.v1") == "invoice.drafted.v1.dlq"
    assert spec_for_model(InvoiceDrafted).dlq_topic == "invoice.drafted.v1.dlq"
    with pytest.raises(ValueError, match="already a dead-letter"):
        dlq_topic("invoice.drafted.v1.dlq")


def test_only_crm_changes_and_app_installs_are_keyed_by_portal() -> None:
    portal_scoped = {spec.type for spec in all_specs() if spec.scope is EventScope.PORTAL}
    assert portal_scoped == {
        "crm.object-changed",
        "connector.portal-installed",
        "connector.portal-uninstalled",
    }


def test_registry_refuses_a_duplicate_type_and_version() -> None:
    registry = TopicRegistry()
    registry.register("test.sampled", 1, _Sample)
    with pytest.raises(DuplicateRegistrationError, match=r"test\.sampled v1"):
        registry.register("test.sampled", 1, _Other)


def test_registry_refuses_the_same_model_twice() -> None:
    registry = TopicRegistry()
    registry.register("test.sampled", 1, _Sample)
    with pytest.raises(DuplicateRegistrationError, match="_Sample"):
        registry.register("test.resampled", 1, _Sample)


def test_default_registry_refuses_re_registering_a_known_event() -> None:
    with pytest.raises(DuplicateRegistrationError):
        REGISTRY.register("invoice.drafted", 1, _Other)
    assert spec_for_type("invoice.drafted").model is InvoiceDrafted


def test_a_new_major_version_lives_side_by_side() -> None:
    registry = TopicRegistry()
    registry.register("test.sampled", 1, _Sample)
    registry.register("test.sampled", 2, _Other)
    assert registry.by_type("test.sampled").version == 2
    assert registry.by_type("test.sampled", 1).model is _Sample
    assert registry.topics() == ("test.sampled.v1", "test.sampled.v2")


@pytest.mark.parametrize(
    "bad_type", ["invoice", "Invoice.Drafted", "invoice..drafted", "invoice.v1", "invoice.dlq"]
)
def test_registry_refuses_malformed_event_types(bad_type: str) -> None:
    with pytest.raises(ValueError, match="event type"):
        TopicRegistry().register(bad_type, 1, _Sample)


@pytest.mark.parametrize("bad_version", [0, -1, True])
def test_registry_refuses_non_positive_versions(bad_version: int) -> None:
    with pytest.raises(ValueError, match="version"):
        TopicRegistry().register("test.sampled", bad_version, _Sample)


def test_unknown_lookups_raise() -> None:
    with pytest.raises(UnknownEventError):
        spec_for_type("invoice.teleported")
    with pytest.raises(UnknownEventError):
        spec_for_topic("invoice.drafted.v9")
    with pytest.raises(UnknownEventError):
        spec_for_model(_Sample)
