"""Events of connector-auth: a CRM portal installed or uninstalled the app; a QuickBooks company
joined, left, or needs the user again.

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
    "PortalInstalled",
    "PortalUninstalled",
    "QboEnvironment",
    "ReauthReason",
    "UninstallReason",
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
    edition: str | None = Field(
        default=None,
        description="QuickBooks' edition of the company (CompanyInfo's OfferingSku), e.g. "
        "'QuickBooks Online Advanced'; None when QuickBooks did not say.",
    )


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


class PortalInstalled(EventPayload):
    """A CRM portal installed the app (or updated its install): dealbooks may work for it.

    Published on every install, so consumers treat it as "installed now" and resume; a person
    who only signs in to a portal that has the app publishes nothing. The portal id is the
    envelope's tenant; there is no QuickBooks account in it."""

    installed_at: AwareDatetime
    reinstall: bool = Field(
        description="The app had been uninstalled from the portal: nothing was done for it "
        "meanwhile, and services catch up what they must."
    )
    scopes: list[str] = Field(description="The CRM scopes the install granted.")
    installed_by_user_id: str | None = None


class UninstallReason(StrEnum):
    """How connector-auth learned that the app is gone from a portal."""

    REFRESH_REFUSED = "refresh_refused"  # the CRM answered BAD_REFRESH_TOKEN
    UNINSTALLED = "uninstalled"  # a person uninstalled it through dealbooks


class PortalUninstalled(EventPayload):
    """The app is no longer installed in a CRM portal: nothing is done for it until a person
    installs it again. Its stored data is kept (see connector-auth's README)."""

    reason: UninstallReason
    detected_at: AwareDatetime
