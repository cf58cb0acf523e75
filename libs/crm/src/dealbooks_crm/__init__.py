"""dealbooks CRM client: one async client for HubSpot's CRM APIs, used by every service.

`CrmClient(tokens, base_url=...)` talks to https://api.hubapi.com or the sandbox unchanged;
`client.portal(portal_id)` gives the operations for one portal. Errors are `CrmError`
subclasses; webhook signatures are checked with `verify_signature_v3`.
"""

from dealbooks_crm._client import CrmClient, PortalCrm, timeline_event_id
from dealbooks_crm._errors import (
    CrmAuthError,
    CrmConflict,
    CrmError,
    CrmNotFound,
    CrmRateLimited,
    CrmUnavailable,
    CrmValidation,
    SearchCapExceeded,
    error_from_response,
)
from dealbooks_crm._limits import CrmLimits, rolling_window_budget
from dealbooks_crm._models import (
    AccountDetails,
    AssociatedObject,
    AssociationType,
    BatchError,
    BatchResult,
    CrmObject,
    DealDetails,
    Filter,
    FilterGroup,
    Property,
    PropertyDefinition,
    PropertyGroup,
    PropertyOption,
    QuoteDetails,
    SearchPage,
    SearchRequest,
    Sort,
    TimelineEvent,
    TimelineEventResult,
    WebhookEvent,
)
from dealbooks_crm._paths import ApiPaths, PathStyle
from dealbooks_crm._types import AssociationTypes, ObjectTypes
from dealbooks_crm._values import PropertyValue, to_decimal, to_properties, to_property_value
from dealbooks_crm._webhooks import (
    InvalidWebhookPayload,
    InvalidWebhookSignature,
    StaleWebhookTimestamp,
    canonical_uri,
    parse_webhook_events,
    signature_v3,
    verify_signature_v1,
    verify_signature_v3,
)

__all__ = [
    "AccountDetails",
    "ApiPaths",
    "AssociatedObject",
    "AssociationType",
    "AssociationTypes",
    "BatchError",
    "BatchResult",
    "CrmAuthError",
    "CrmClient",
    "CrmConflict",
    "CrmError",
    "CrmLimits",
    "CrmNotFound",
    "CrmObject",
    "CrmRateLimited",
    "CrmUnavailable",
    "CrmValidation",
    "DealDetails",
    "Filter",
    "FilterGroup",
    "InvalidWebhookPayload",
    "InvalidWebhookSignature",
    "ObjectTypes",
    "PathStyle",
    "PortalCrm",
    "Property",
    "PropertyDefinition",
    "PropertyGroup",
    "PropertyOption",
    "PropertyValue",
    "QuoteDetails",
    "SearchCapExceeded",
    "SearchPage",
    "SearchRequest",
    "Sort",
    "StaleWebhookTimestamp",
    "TimelineEvent",
    "TimelineEventResult",
    "WebhookEvent",
    "canonical_uri",
    "error_from_response",
    "parse_webhook_events",
    "rolling_window_budget",
    "signature_v3",
    "timeline_event_id",
    "to_decimal",
    "to_properties",
    "to_property_value",
    "verify_signature_v1",
    "verify_signature_v3",
]
