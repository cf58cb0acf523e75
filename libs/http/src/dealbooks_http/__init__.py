"""Outbound HTTP building blocks shared by the QuickBooks and CRM clients.

One way to do each thing: `RetryPolicy` decides whether and when to retry,
`RateBudget` keeps a caller inside an external API's published limits, and
`TokenProvider` is the seam through which clients get bearer tokens;
`ConnectorTokenProvider` is the one services use, backed by connector-auth;
`async_client` makes the httpx client they send with (on `AiohttpTransport`).
"""

from dealbooks_http._bodies import json_object
from dealbooks_http._budget import RateBudget
from dealbooks_http._connector import (
    AccountUnavailable,
    ConnectorTokenProvider,
    CrmPortalTokens,
    PortalNotInstalled,
    PortalTokens,
    RealmTokens,
)
from dealbooks_http._retry import (
    RETRYABLE_STATUS,
    RetryableHTTPError,
    RetryPolicy,
    retry_after_seconds,
)
from dealbooks_http._tokens import StaticTokenProvider, TokenProvider
from dealbooks_http._transport import AiohttpTransport, async_client
from dealbooks_http._windows import (
    Budget,
    BudgetSource,
    Limits,
    Window,
    sequence_rate,
    windows_of,
)

__all__ = [
    "RETRYABLE_STATUS",
    "AccountUnavailable",
    "AiohttpTransport",
    "Budget",
    "BudgetSource",
    "ConnectorTokenProvider",
    "CrmPortalTokens",
    "Limits",
    "PortalNotInstalled",
    "PortalTokens",
    "RateBudget",
    "RealmTokens",
    "RetryPolicy",
    "RetryableHTTPError",
    "StaticTokenProvider",
    "TokenProvider",
    "Window",
    "async_client",
    "json_object",
    "retry_after_seconds",
    "sequence_rate",
    "windows_of",
]
