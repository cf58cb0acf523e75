"""The rules of connecting a QuickBooks company to a CRM portal. Pure: no I/O, no frameworks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from dealbooks_contracts import AccountConnectedReason, QboEnvironment, is_advanced

# QBO started sending ISO 3-letter country codes in late 2025; events carry 2 letters.
_ALPHA3_TO_ALPHA2 = {"USA": "US", "GBR": "GB", "CAN": "CA", "AUS": "AU", "FRA": "FR", "IND": "IN"}
# Only used when Preferences lack HomeCurrency, which QBO sets on every company.
_COUNTRY_CURRENCY = {"US": "USD", "GB": "GBP", "CA": "CAD", "AU": "AUD", "FR": "EUR", "IN": "INR"}


class PortalStatus(StrEnum):
    """Whether a CRM portal has the app installed."""

    INSTALLED = "installed"
    UNINSTALLED = "uninstalled"


def missing_scopes(required: list[str], granted: frozenset[str]) -> list[str]:
    """The required scopes an install did not grant, in the order they are asked for."""
    return [scope for scope in required if scope not in granted]


def advanced_portals(editions: Iterable[tuple[str, str | None]]) -> list[str]:
    """The portals with a company on QuickBooks Online Advanced, where approvals and reminders
    apply, from (portal, edition) of their companies."""
    return sorted({portal for portal, edition in editions if is_advanced(edition)})


class AccountStatus(StrEnum):
    """Where a portal's link to one QuickBooks company stands."""

    CONNECTED = "connected"
    REAUTH_REQUIRED = "reauth_required"
    DISCONNECTED = "disconnected"


class ConnectRefused(Exception):
    """The company cannot be connected; `message` is written for the person connecting it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InvalidState(Exception):
    """The OAuth `state` is forged, expired or malformed (a possible CSRF attempt)."""


@dataclass(frozen=True)
class CompanyFacts:
    """What other services need to know about a company, from CompanyInfo and Preferences."""

    company_name: str
    legal_name: str | None
    country: str
    home_currency: str
    multicurrency_enabled: bool
    custom_transaction_numbers: bool
    # QuickBooks' edition (CompanyInfo's OfferingSku): Advanced gets approvals and reminders.
    edition: str | None = None


def company_facts(
    *,
    company_name: str,
    legal_name: str | None,
    country: str | None,
    home_currency: str | None,
    multicurrency_enabled: bool | None,
    custom_transaction_numbers: bool | None,
    edition: str | None = None,
) -> CompanyFacts:
    """Normalise what QBO reports into the facts we publish."""
    code = (country or "US").strip().upper()
    code = _ALPHA3_TO_ALPHA2.get(code, code)
    currency = (home_currency or _COUNTRY_CURRENCY.get(code, "")).strip().upper()
    if len(code) != 2 or len(currency) != 3:
        raise ConnectRefused(
            "unsupported_company",
            f"QuickBooks reported country {country!r} and currency {home_currency!r}, "
            "which dealbooks cannot work with.",
        )
    return CompanyFacts(
        company_name=company_name.strip() or "QuickBooks company",
        legal_name=legal_name or None,
        country=code,
        home_currency=currency,
        multicurrency_enabled=bool(multicurrency_enabled),
        custom_transaction_numbers=bool(custom_transaction_numbers),
        edition=(edition or "").strip() or None,
    )


def wrong_environment(configured: QboEnvironment) -> ConnectRefused:
    """The refusal for a company that does not belong to the environment of our keys.

    QBO answers 403 (ApplicationAuthorizationFailed) when a realm is called with keys of the
    other environment; that is the only signal there is.
    """
    if configured is QboEnvironment.PRODUCTION:
        return ConnectRefused(
            "sandbox_company",
            "This is a QuickBooks sandbox (developer) company. dealbooks is connected to "
            "QuickBooks production and can only connect real companies; choose a production "
            "company, or use a dealbooks installation configured for the sandbox.",
        )
    return ConnectRefused(
        "production_company",
        "This company is not a QuickBooks sandbox company, and this dealbooks installation "
        "uses sandbox keys. Connect it from a production installation.",
    )


def connected_reason(previous: AccountStatus | None) -> AccountConnectedReason:
    """First connection, or the same company connected again (after reauth or disconnect)."""
    return (
        AccountConnectedReason.CONNECTED if previous is None else AccountConnectedReason.RECONNECTED
    )


def needs_refresh(access_expires_at: datetime, now: datetime, margin_seconds: float) -> bool:
    """Refresh before expiry, so a token handed out stays valid for at least the margin."""
    return now >= access_expires_at - timedelta(seconds=margin_seconds)


def reauth_message(company_name: str | None) -> str:
    """The sentence the person who must reconnect reads."""
    name = company_name or "the QuickBooks company"
    return (
        f"QuickBooks no longer accepts dealbooks' authorization for {name}. "
        "Reconnect it from the dealbooks settings to resume invoicing and syncing."
    )


# ----------------------------------------------------------------------------- OAuth state


@dataclass(frozen=True)
class OAuthState:
    """What the signed `state` carries through the user's browser."""

    portal_id: str
    nonce: str
    issued_at: datetime
    # The signed-in person the flow belongs to ("" for a CRM install, which identifies them).
    user_id: str = ""
    # What the flow is for: "qbo" (connect a company), "install" or "signin" (the CRM's OAuth).
    purpose: str = "qbo"
    # The digest of the value the starting browser keeps in a cookie ("" for none).
    browser: str = ""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_state(state: OAuthState, secret: bytes) -> str:
    """`payload.mac`: an HMAC-SHA256 over the portal, the nonce and the issue time."""
    payload = json.dumps(
        {
            "p": state.portal_id,
            "n": state.nonce,
            "t": int(state.issued_at.timestamp()),
            "u": state.user_id,
            "f": state.purpose,
            "b": state.browser,
        },
        separators=(",", ":"),
    ).encode()
    mac = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def read_state(raw: str, secret: bytes, now: datetime, max_age_seconds: int) -> OAuthState:
    """Verify and decode a `state`; single use is the store's job (the nonce is consumed)."""
    try:
        payload_b64, mac_b64 = raw.split(".", 1)
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except ValueError as exc:
        raise InvalidState("malformed state") from exc
    if not hmac.compare_digest(hmac.new(secret, payload, hashlib.sha256).digest(), mac):
        raise InvalidState("state signature mismatch")
    try:
        fields = json.loads(payload)
        issued_at = datetime.fromtimestamp(int(fields["t"]), tz=now.tzinfo)
        state = OAuthState(
            str(fields["p"]),
            str(fields["n"]),
            issued_at,
            str(fields.get("u", "")),
            str(fields.get("f", "qbo")),
            str(fields.get("b", "")),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidState("malformed state payload") from exc
    if now - issued_at > timedelta(seconds=max_age_seconds) or issued_at > now + timedelta(
        seconds=60
    ):
        raise InvalidState("state expired")
    return state


def browser_digest(value: str) -> str:
    """What a state carries of the browser's cookie value (never the value itself)."""
    return hashlib.sha256(value.encode()).hexdigest()


def same_browser(expected_digest: str, presented: str | None) -> bool:
    """Whether the browser finishing a flow holds the cookie of the one that started it."""
    if not expected_digest or not presented:
        return False
    return hmac.compare_digest(expected_digest, browser_digest(presented))


def environment_label(environment: QboEnvironment) -> str:
    """For messages and the account list."""
    return "sandbox" if environment is QboEnvironment.SANDBOX else "production"
