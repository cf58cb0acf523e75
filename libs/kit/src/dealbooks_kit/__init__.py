"""dealbooks service kit: the one way each service does settings, logging, Kafka, MongoDB,
idempotent consumption, dead letters, the outbox, health, readiness, metrics and AsyncAPI docs."""

from dealbooks_kit.access import (
    ApiAccessSettings,
    ApiClients,
    ApiSettings,
    ApiTokens,
    CrmAppSettings,
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    InstalledPortalTokens,
    StaticCrmTokens,
    api_clients,
    api_tokens,
)
from dealbooks_kit.audit import Audit, audit_routes, external_call, invoice_subject
from dealbooks_kit.auth import PUBLIC_BY_DESIGN, Access, AuthSettings, Caller, Guard
from dealbooks_kit.consumer import (
    DeadLetterHook,
    EventConsumer,
    GaveUp,
    ProcessedEvents,
    RejectHook,
)
from dealbooks_kit.failures import (
    Action,
    ConflictError,
    Decision,
    Failed,
    Failure,
    NotConnected,
    Origin,
    PermanentError,
    TargetGone,
    TransientError,
    classify,
    decide,
    retried,
)
from dealbooks_kit.kafka import EventPublisher, make_broker
from dealbooks_kit.logging import configure_logging, get_logger, redact
from dealbooks_kit.memory import Remembered
from dealbooks_kit.mongo import IndexSpec, ensure_indexes, make_mongo_client
from dealbooks_kit.outbox import Outbox, outbox_entry, push, push_entries
from dealbooks_kit.periodic import TenantPass, each_tenant
from dealbooks_kit.runtime import ServiceApp, ServiceRuntime, serve
from dealbooks_kit.settings import KitSettings

__all__ = [
    "PUBLIC_BY_DESIGN",
    "Access",
    "Action",
    "ApiAccessSettings",
    "ApiClients",
    "ApiSettings",
    "ApiTokens",
    "Audit",
    "AuthSettings",
    "Caller",
    "ConflictError",
    "CrmAppSettings",
    "CrmPortalNotConfigured",
    "CrmPortalNotInstalled",
    "DeadLetterHook",
    "Decision",
    "EventConsumer",
    "EventPublisher",
    "Failed",
    "Failure",
    "GaveUp",
    "Guard",
    "IndexSpec",
    "InstalledPortalTokens",
    "KitSettings",
    "NotConnected",
    "Origin",
    "Outbox",
    "PermanentError",
    "ProcessedEvents",
    "RejectHook",
    "Remembered",
    "ServiceApp",
    "ServiceRuntime",
    "StaticCrmTokens",
    "TargetGone",
    "TenantPass",
    "TransientError",
    "api_clients",
    "api_tokens",
    "audit_routes",
    "classify",
    "configure_logging",
    "decide",
    "each_tenant",
    "ensure_indexes",
    "external_call",
    "get_logger",
    "invoice_subject",
    "make_broker",
    "make_mongo_client",
    "outbox_entry",
    "push",
    "push_entries",
    "redact",
    "retried",
    "serve",
]
