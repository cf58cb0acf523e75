"""The app's installs: who is signed in to HubSpot in the browser and what they answer on the
consent screen, authorization codes, install, reinstall and uninstall. No HTTP here."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from crm_sandbox.errors import OAuthError, conflict, not_found, validation
from crm_sandbox.state import AuthCode, Install, Portal, SandboxState, User, now_ms

DECISIONS = {"approve", "deny"}
MODES = {"auto", "page"}


@dataclass
class Consent:
    """The browser session the authorize endpoint sees. `portal_id` None: the first portal."""

    portal_id: int | None = None
    user_id: int | None = None
    decision: str = "approve"
    scopes: list[str] | None = None  # granted instead of the requested scopes
    mode: str = "auto"
    remaining: int | None = None  # authorize requests left; None: until changed

    def to_api(self) -> dict[str, Any]:
        return {
            "portalId": self.portal_id,
            "userId": self.user_id,
            "decision": self.decision,
            "scopes": self.scopes,
            "mode": self.mode,
            "count": self.remaining,
        }


@dataclass
class Pending:
    """An authorize request shown on the consent page, waiting for Connect or Cancel."""

    id: str
    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None
    portal_id: int
    user_id: int


@dataclass
class Installs:
    state: SandboxState
    consent: Consent | None = None
    pending: dict[str, Pending] = field(default_factory=dict)

    # ---- users -----------------------------------------------------------------------------

    def add_user(
        self, portal: Portal, email: str, first_name: str = "", last_name: str = ""
    ) -> User:
        email = email.strip()
        if "@" not in email:
            raise validation("email must be an email address")
        if any(u.email.lower() == email.lower() for u in portal.users.values()):
            raise conflict(f"User {email} already exists in portal {portal.id}")
        if len(portal.users) >= 999:
            raise validation("A sandbox portal has at most 999 users")
        return portal.add_user(email, first_name.strip(), last_name.strip())

    # ---- consent ---------------------------------------------------------------------------

    def set_consent(self, body: dict[str, Any]) -> Consent:
        decision = str(body.get("decision") or "approve")
        mode = str(body.get("mode") or "auto")
        if decision not in DECISIONS:
            raise validation(f"decision must be one of {sorted(DECISIONS)}")
        if mode not in MODES:
            raise validation(f"mode must be one of {sorted(MODES)}")
        count = body.get("count")
        if count is not None and int(count) < 1:
            raise validation("count must be at least 1 (omit it for until changed)")
        scopes = body.get("scopes")
        if scopes is not None and not isinstance(scopes, list):
            raise validation("scopes must be a list")
        portal_id = int(body["portalId"]) if body.get("portalId") is not None else None
        user_id = int(body["userId"]) if body.get("userId") is not None else None
        if portal_id is None and user_id is not None:
            portal_id = self._portal_of_user(user_id).id
        if portal_id is not None:
            portal = self._portal(portal_id)
            if user_id is not None and user_id not in portal.users:
                raise validation(f"User {user_id} is not a user of portal {portal_id}")
        self.consent = Consent(
            portal_id,
            user_id,
            decision,
            [str(s) for s in scopes] if scopes is not None else None,
            mode,
            int(count) if count is not None else None,
        )
        return self.consent

    def current_consent(self) -> Consent:
        return self.consent or Consent()

    def reset_consent(self) -> None:
        self.consent = None

    def sign_in(self, portal_id: int | None) -> tuple[Portal, User, Consent]:
        """The account and user of the browser session for one authorize request; a consent
        set with a count is used up here."""
        consent = self.current_consent()
        if consent.remaining is not None:
            consent.remaining -= 1
            if consent.remaining <= 0:
                self.consent = None
        chosen = portal_id if portal_id is not None else consent.portal_id
        if chosen is None:
            if not self.state.portals:
                raise LookupError("There is no HubSpot account to install the app in.")
            portal = next(iter(self.state.portals.values()))
        else:
            found = self.state.portals.get(chosen)
            if found is None:
                raise LookupError(f"HubSpot account {chosen} does not exist.")
            portal = found
        user = portal.users.get(consent.user_id) if consent.user_id is not None else None
        return portal, user or portal.admin, consent

    def hold(
        self,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
        state: str | None,
        portal: Portal,
        user: User,
    ) -> Pending:
        pending = Pending(
            secrets.token_urlsafe(16), client_id, redirect_uri, scopes, state, portal.id, user.id
        )
        self.pending[pending.id] = pending
        return pending

    # ---- codes -----------------------------------------------------------------------------

    def issue_code(
        self,
        client_id: str,
        redirect_uri: str | None,
        portal: Portal,
        user_id: int,
        scopes: list[str],
        *,
        code: str | None = None,
    ) -> AuthCode:
        config = self.state.config
        issued = AuthCode(
            code or str(uuid.uuid4()),
            client_id,
            redirect_uri,
            portal.id,
            user_id,
            list(scopes),
            time.time() + config.scaled(config.auth_code_ttl_seconds),
        )
        self.state.auth_codes[issued.code] = issued
        return issued

    def redeem_code(self, code: str, client_id: str, redirect_uri: str | None) -> AuthCode:
        """Check and use up a code: unknown, used or another client's -> BAD_AUTH_CODE,
        expired -> EXPIRED_AUTH_CODE, another redirect_uri -> BAD_REDIRECT_URI (the code
        stays usable, as nothing was exchanged)."""
        found = self.state.auth_codes.get(code)
        if found is None or found.client_id != client_id:
            raise OAuthError("BAD_AUTH_CODE", "missing or unknown auth code")
        if found.expires_at <= time.time():
            del self.state.auth_codes[code]
            raise OAuthError("EXPIRED_AUTH_CODE", "auth code is expired")
        if found.redirect_uri is not None and redirect_uri != found.redirect_uri:
            raise OAuthError(
                "BAD_REDIRECT_URI",
                "redirect_uri does not match the redirect_uri used to get the auth code",
            )
        if found.portal_id not in self.state.portals:
            del self.state.auth_codes[code]
            raise OAuthError("BAD_AUTH_CODE", "missing or unknown auth code")
        del self.state.auth_codes[code]
        return found

    # ---- install and uninstall -------------------------------------------------------------

    def install(self, portal: Portal, user_id: int, scopes: list[str]) -> Install:
        """Install, or reinstall with the newly granted scopes; existing tokens stay valid."""
        portal.install = Install(user_id, list(scopes), now_ms())
        return portal.install

    def uninstall(self, portal: Portal) -> None:
        """As an admin removing the app: every OAuth token, refresh token and outstanding code
        of the portal stops working. Private-app tokens belong to another app and stay."""
        portal.install = None
        state = self.state
        for value in [v for v, t in state.tokens.items() if t.portal_id == portal.id]:
            if state.tokens[value].kind == "oauth":
                del state.tokens[value]
        for value in [v for v, t in state.refresh_tokens.items() if t.portal_id == portal.id]:
            del state.refresh_tokens[value]
        for code in [c for c, a in state.auth_codes.items() if a.portal_id == portal.id]:
            del state.auth_codes[code]

    # ---- lookups ---------------------------------------------------------------------------

    def _portal(self, portal_id: int) -> Portal:
        portal = self.state.portals.get(portal_id)
        if portal is None:
            raise not_found(f"Portal {portal_id} not found")
        return portal

    def _portal_of_user(self, user_id: int) -> Portal:
        for portal in self.state.portals.values():
            if user_id in portal.users:
                return portal
        raise not_found(f"User {user_id} not found")
