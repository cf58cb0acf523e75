"""Intuit's OAuth 2.0 server as QBO clients see it: codes, rotating refresh tokens, revoke."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from qbo_sandbox.clock import Clock
from qbo_sandbox.config import AppConfig, SandboxConfig


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


@dataclass
class Grant:
    """One app's connection to one realm; revoking it kills every token it issued."""

    grant_id: str
    client_id: str
    realm_id: str
    environment: str
    revoked: bool = False


@dataclass
class AccessToken:
    grant: Grant
    expires_at: datetime


@dataclass
class RefreshToken:
    grant: Grant
    expires_at: datetime
    superseded_at: datetime | None = None


@dataclass
class OAuthServer:
    config: SandboxConfig
    clock: Clock
    codes: dict[str, tuple[Grant, str, datetime]] = field(default_factory=dict)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)

    def app(self, client_id: str | None, client_secret: str | None = None) -> AppConfig:
        for app in self.config.apps:
            if app.client_id == client_id and (
                client_secret is None or app.client_secret == client_secret
            ):
                return app
        raise OAuthError("invalid_client", "Client authentication failed", status=401)

    def authorize(self, client_id: str, realm_id: str, environment: str, redirect_uri: str) -> str:
        app = self.app(client_id)
        grant = Grant(secrets.token_hex(8), app.client_id, realm_id, environment)
        code = "AB" + secrets.token_urlsafe(30)
        self.codes[code] = (grant, redirect_uri, self.clock.now() + timedelta(minutes=10))
        return code

    def _issue(self, grant: Grant) -> dict[str, Any]:
        now = self.clock.now()
        access = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0.." + secrets.token_urlsafe(96)
        refresh = "RT1-" + secrets.token_urlsafe(30)
        self.access[access] = AccessToken(
            grant, now + timedelta(seconds=self.config.access_token_seconds)
        )
        self.refresh[refresh] = RefreshToken(
            grant, now + timedelta(seconds=self.config.refresh_token_seconds)
        )
        return {
            "token_type": "bearer",
            "expires_in": self.config.access_token_seconds,
            "refresh_token": refresh,
            "x_refresh_token_expires_in": self.config.refresh_token_seconds,
            "access_token": access,
        }

    def connect(self, client_id: str, realm_id: str, environment: str) -> dict[str, Any]:
        """A grant without the browser round trip (control API shortcut)."""
        app = self.app(client_id)
        body = self._issue(Grant(secrets.token_hex(8), app.client_id, realm_id, environment))
        body["realmId"] = realm_id
        return body

    def exchange_code(self, app: AppConfig, code: str, redirect_uri: str | None) -> dict[str, Any]:
        entry = self.codes.pop(code, None)
        if entry is None:
            raise OAuthError("invalid_grant", "Token invalid")
        grant, expected_uri, expires = entry
        if grant.client_id != app.client_id or self.clock.now() > expires:
            raise OAuthError("invalid_grant", "Token invalid")
        if redirect_uri != expected_uri:
            raise OAuthError("invalid_grant", "Redirect URI mismatch")
        return self._issue(grant)

    def refresh_grant(self, app: AppConfig, token: str) -> dict[str, Any]:
        now = self.clock.now()
        entry = self.refresh.get(token)
        if (
            entry is None
            or entry.grant.revoked
            or entry.grant.client_id != app.client_id
            or now > entry.expires_at
            or (
                entry.superseded_at is not None
                and now > entry.superseded_at + timedelta(seconds=self.config.refresh_grace_seconds)
            )
        ):
            raise OAuthError("invalid_grant", "Token invalid")
        if entry.superseded_at is None:
            entry.superseded_at = now
        return self._issue(entry.grant)

    def revoke(self, app: AppConfig, token: str) -> None:
        entry: AccessToken | RefreshToken | None = self.refresh.get(token) or self.access.get(token)
        if entry is not None and entry.grant.client_id == app.client_id:
            entry.grant.revoked = True

    def check(self, token: str | None) -> tuple[str | None, Grant | None]:
        """(problem, grant): problem is None for a valid token, else 'expired' or 'invalid'."""
        entry = self.access.get(token or "")
        if entry is None or entry.grant.revoked:
            return "invalid", None
        if self.clock.now() >= entry.expires_at:
            return "expired", entry.grant
        return None, entry.grant

    def expire_all(self) -> int:
        now = self.clock.now()
        for entry in self.access.values():
            entry.expires_at = min(entry.expires_at, now)
        return len(self.access)
