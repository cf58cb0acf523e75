"""Events of connector-auth: a QuickBooks company joined, left, or needs the user again.

None of them carries a token: only connector-auth ever holds OAuth credentials.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from .._types import CountryCode, CurrencyCode, EventPayload, NonEmptyStr

__all__ = [
    "AccountConnected",
    "AccountConnectedReason",
    "AccountDisconnected",
    "AccountReauthRequired",
    "DisconnectReason",
    "QboEnvironment",
    "ReauthReason",
]


class QboEnvironment(StrEnum):
    """Which QuickBooks Online environment the company lives in (known from the app keys)."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class AccountConnectedReason(StrEnum):
    """Why connector-auth (re)published the facts of a connected account."""

    CONNECTED = "connected"
    RECONNECTED = "reconnected"
    FACTS_CHANGED = "facts_changed"


class AccountConnected(EventPayload):
    """A QuickBooks company is connected to a CRM portal, with the facts other services rely on.

    Published on first connection, on reconnection and whenever the company facts drift (e.g.
    custom transaction numbers switched on), so consumers treat it as "latest facts" and upsert.
    The realm id and portal id are in the envelope's tenant.
    """

    company_name: NonEmptyStr
    legal_name: str | None = None
    country: CountryCode
    home_currency: CurrencyCode
    multicurrency_enabled: bool
    custom_transaction_numbers: bool = Field(
        description="QBO custom transaction numbers preference; no drafts while it is on."
    )
    environment: QboEnvironment
    reason: AccountConnectedReason
    connected_at: AwareDatetime


class DisconnectReason(StrEnum):
    """Why an account stopped being connected."""

    USER_REQUESTED = "user_requested"
    REVOKED_AT_QBO = "revoked_at_qbo"
    PORTAL_UNINSTALLED = "portal_uninstalled"


class AccountDisconnected(EventPayload):
    """A QuickBooks company was disconnected from a portal; its tokens are revoked and deleted."""

    reason: DisconnectReason
    disconnected_at: AwareDatetime
    company_name: str | None = None


class ReauthReason(StrEnum):
    """Why the stored authorization no longer works."""

    INVALID_GRANT = "invalid_grant"
    REFRESH_TOKEN_EXPIRED = "refresh_token_expired"  # noqa: S105 - a reason code, not a secret
    SCOPE_MISSING = "scope_missing"


class AccountReauthRequired(EventPayload):
    """The account's authorization is no longer usable; a person must reconnect it."""

    reason: ReauthReason
    detected_at: AwareDatetime
    message: NonEmptyStr = Field(description="A sentence for the person who must reconnect.")
    company_name: str | None = None
