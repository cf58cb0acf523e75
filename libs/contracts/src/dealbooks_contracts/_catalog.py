"""The default registry: every event dealbooks publishes, its topic and its payload model.

This is the one place to look up which topic an event travels on. A breaking change to a payload
is a new model registered under the next major version, side by side with the old one.
"""

from __future__ import annotations

from ._registry import EventScope, EventSpec, TopicRegistry
from ._types import EventPayload
from .events import (
    AccountConnected,
    AccountDisconnected,
    AccountReauthRequired,
    ContactSynced,
    ContactSyncFailed,
    CrmObjectChanged,
    InvoiceApprovalDecided,
    InvoiceApprovalRequested,
    InvoiceDrafted,
    InvoiceLinked,
    InvoiceLinkRequested,
    InvoicePaymentRecorded,
    InvoiceRequested,
    InvoiceRequestRejected,
    InvoiceStatusChanged,
    MappingChanged,
    PortalInstalled,
    PortalUninstalled,
    ProductSynced,
    ProductSyncFailed,
    QboEntityChanged,
    ReminderTaskClosed,
    ReminderTaskOpened,
)

__all__ = [
    "REGISTRY",
    "all_specs",
    "all_topics",
    "spec_for_model",
    "spec_for_topic",
    "spec_for_type",
    "topic_for",
]

REGISTRY = TopicRegistry()
"""The registry of every event on dealbooks' Kafka."""

REGISTRY.register("connector.account-connected", 1, AccountConnected)
REGISTRY.register("connector.account-disconnected", 1, AccountDisconnected)
REGISTRY.register("connector.account-reauth-required", 1, AccountReauthRequired)
REGISTRY.register("connector.portal-installed", 1, PortalInstalled, scope=EventScope.PORTAL)
REGISTRY.register("connector.portal-uninstalled", 1, PortalUninstalled, scope=EventScope.PORTAL)
REGISTRY.register("qbo.entity-changed", 1, QboEntityChanged)
REGISTRY.register("crm.object-changed", 1, CrmObjectChanged, scope=EventScope.PORTAL)
REGISTRY.register("crm.invoice-requested", 1, InvoiceRequested)
REGISTRY.register("crm.invoice-link-requested", 1, InvoiceLinkRequested)
REGISTRY.register("invoice.drafted", 1, InvoiceDrafted)
REGISTRY.register("invoice.request-rejected", 1, InvoiceRequestRejected)
REGISTRY.register("invoice.linked", 1, InvoiceLinked)
REGISTRY.register("invoice.status-changed", 1, InvoiceStatusChanged)
REGISTRY.register("invoice.payment-recorded", 1, InvoicePaymentRecorded)
REGISTRY.register("contact.synced", 1, ContactSynced)
REGISTRY.register("contact.sync-failed", 1, ContactSyncFailed)
REGISTRY.register("product.synced", 1, ProductSynced)
REGISTRY.register("product.sync-failed", 1, ProductSyncFailed)
REGISTRY.register("mapping.changed", 1, MappingChanged)
REGISTRY.register("invoice.approval-requested", 1, InvoiceApprovalRequested)
REGISTRY.register("invoice.approval-decided", 1, InvoiceApprovalDecided)
REGISTRY.register("reminder.task-opened", 1, ReminderTaskOpened)
REGISTRY.register("reminder.task-closed", 1, ReminderTaskClosed)


def spec_for_type(event_type: str, version: int | None = None) -> EventSpec:
    """The registered event of a type (at ``version``, or the highest major if None)."""
    return REGISTRY.by_type(event_type, version)


def spec_for_topic(topic: str) -> EventSpec:
    """The registered event published on ``topic``."""
    return REGISTRY.by_topic(topic)


def spec_for_model(model: type[EventPayload]) -> EventSpec:
    """The registered event whose payload model is ``model``."""
    return REGISTRY.by_model(model)


def topic_for(model: type[EventPayload]) -> str:
    """The topic a payload model is published on, e.g. ``topic_for(InvoiceDrafted)``."""
    return REGISTRY.by_model(model).topic


def all_specs() -> tuple[EventSpec, ...]:
    """Every registered event, ordered by topic."""
    return REGISTRY.specs()


def all_topics() -> tuple[str, ...]:
    """Every registered topic, sorted."""
    return REGISTRY.topics()
