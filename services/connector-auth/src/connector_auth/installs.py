"""The app in CRM portals and the people who use it: install, sign-in, sessions and portal
grants, CRM access tokens for every service, uninstall. Each use case reads: decide (domain),
persist (one document), publish (outbox relay)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from dealbooks_contracts import (
    Envelope,
    PortalInstalled,
    PortalUninstalled,
    Tenant,
    UninstallReason,
)
from dealbooks_kit import Outbox, TransientError, get_logger
from dealbooks_kit.auth import GRANT_PREFIX, SESSION_PREFIX, Signer, grant_claims

from connector_auth import domain
from connector_auth.crm_oauth import CrmOAuth, CrmOAuthRefused, CrmTokens, TokenInfo
from connector_auth.crypto import TokenCipher
from connector_auth.domain import PortalStatus
from connector_auth.refresh import RefreshBusy, SingleFlight, StoredAccess
from connector_auth.settings import ConnectorAuthSettings
from connector_auth.store import PORTALS, Doc, OAuthStates, Portals, RefreshLeases, Sessions

log = get_logger(__name__)
SOURCE = "connector-auth"
NO_PORTAL = "-"  # the portal of a CRM OAuth state: the CRM says which one at the callback


class PortalSetUp(Protocol):
    async def ensure_portal_ready(self, portal_id: str) -> None: ...

    async def aclose(self) -> None: ...


class PortalNotInstalled(Exception):
    """The portal has not installed the app (or uninstalled it)."""


class UnknownPerson(Exception):
    """The CRM did not say who the person is, so nobody can be signed in."""


class MissingScopes(Exception):
    """The install did not grant every scope dealbooks needs."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


@dataclass(frozen=True)
class CrmAccess:
    """A portal's CRM access token and when it expires (never logged, never on Kafka)."""

    access_token: str
    expires_at: datetime


@dataclass(frozen=True)
class Session:
    """A signed-in person and the portals they signed in for."""

    sid: str
    user_id: str
    email: str | None
    portals: tuple[str, ...]
    csrf: str
    expires_at: datetime


@dataclass(frozen=True)
class SignedIn:
    """The outcome of the CRM's OAuth callback: the portal, the person, their new session."""

    portal_id: str
    session: Session
    cookie: str


class Installs:
    """The service layer of the CRM side; adapters are injected."""

    def __init__(
        self,
        settings: ConnectorAuthSettings,
        portals: Portals,
        sessions: Sessions,
        states: OAuthStates,
        leases: RefreshLeases,
        cipher: TokenCipher,
        oauth: CrmOAuth,
        outbox: Outbox,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.portals = portals
        self.sessions = sessions
        self.states = states
        self.leases = leases
        self.cipher = cipher
        self.oauth = oauth
        # What makes a portal ready (the invoice deal properties); wired after construction,
        # since its CRM client takes its tokens from here.
        self.installer: PortalSetUp | None = None
        self.outbox = outbox
        self.clock = clock
        self.single_flight = SingleFlight.of_this_process(leases, clock, settings)
        self.stored_access = StoredAccess(cipher, clock, settings.refresh_margin_seconds)
        self._state_secret = settings.state_secret.get_secret_value().encode()
        self._cookies = Signer(settings.session_keys.get_secret_value(), SESSION_PREFIX)
        self._grants = Signer(settings.grant_keys.get_secret_value(), GRANT_PREFIX)

    # ------------------------------------------------------------ install and sign-in

    async def start(self, purpose: str) -> tuple[str, str]:
        """The CRM's authorize URL with a fresh single-use state (`install` or `signin`), and
        the value the starting browser keeps in a cookie: the state carries its digest, so
        only that browser can finish the flow (no one can sign a victim in as themselves)."""
        browser = secrets.token_urlsafe(24)
        state = domain.OAuthState(
            NO_PORTAL,
            secrets.token_urlsafe(16),
            self.clock(),
            purpose=purpose,
            browser=domain.browser_digest(browser),
        )
        return self.oauth.authorization_url(domain.sign_state(state, self._state_secret)), browser

    async def complete(
        self, state: str, code: str, cookie: str | None, browser: str | None
    ) -> SignedIn:
        """Check the state (and that this browser started the flow), exchange the code, read
        whose token it is, check the scopes; install or update the portal (set it up and
        publish it), unless a person only signs in to a portal that has it; sign them in."""
        now = self.clock()
        parsed = domain.read_state(
            state, self._state_secret, now, self.settings.state_max_age_seconds
        )
        if (
            parsed.purpose not in {"install", "signin"}
            or not domain.same_browser(parsed.browser, browser)
            or not await self.states.spend(parsed.nonce, now)
        ):
            raise domain.InvalidState("state already used, unknown, or from another browser")
        tokens = await self.oauth.exchange(code)
        info = await self.oauth.token_info(tokens.access_token)
        if not info.user_id:
            raise UnknownPerson(info.hub_id)
        missing = domain.missing_scopes(self.settings.required_crm_scopes(), info.scopes)
        if missing:
            raise MissingScopes(missing)
        portal_id = info.hub_id
        previous = await self.portals.by_id(portal_id)
        status = PortalStatus(previous["status"]) if previous else None
        if parsed.purpose == "install" or status is not PortalStatus.INSTALLED:
            await self._install(portal_id, tokens, info, status, now)
        session = await self._sign_in(info.user_id, info.user, portal_id, cookie, now)
        return SignedIn(portal_id, session, self._cookie_of(session))

    async def _install(
        self,
        portal_id: str,
        tokens: CrmTokens,
        info: TokenInfo,
        previous: PortalStatus | None,
        now: datetime,
    ) -> None:
        reinstall = previous is PortalStatus.UNINSTALLED
        event = Envelope.build(
            PortalInstalled(
                installed_at=now,
                reinstall=reinstall,
                scopes=sorted(info.scopes),
                installed_by_user_id=info.user_id,
            ),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id),
        )
        await self.portals.save_installed(
            portal_id,
            tokens=self._seal(portal_id, tokens, now),
            scopes=sorted(info.scopes),
            user={"user_id": info.user_id, "email": info.user},
            now=now,
            event=event,
        )
        log.info("portal installed", portal_id=portal_id, reinstall=reinstall)
        await self._set_up(portal_id)
        await self.relay(portal_id)

    async def _set_up(self, portal_id: str) -> None:
        if self.installer is None:
            return
        try:
            await self.installer.ensure_portal_ready(portal_id)
        except Exception as exc:
            # The install is stored; the set-up is idempotent and runs again at the next one.
            log.warning("crm setup failed", portal_id=portal_id, error=type(exc).__name__)

    # ------------------------------------------------------------ sessions and grants

    async def _sign_in(
        self, user_id: str, email: str | None, portal_id: str, cookie: str | None, now: datetime
    ) -> Session:
        # The same person signing in for another portal keeps one session with both.
        current = await self.session(cookie)
        portals = {portal_id}
        if current is not None and current.user_id == user_id:
            portals |= set(current.portals)
            await self.sessions.close(current.sid)
        session = Session(
            sid=secrets.token_urlsafe(24),
            user_id=user_id,
            email=email,
            portals=tuple(sorted(portals)),
            csrf=secrets.token_urlsafe(24),
            expires_at=now + timedelta(seconds=self.settings.session_max_age_seconds),
        )
        await self.sessions.open(
            {
                "_id": session.sid,
                "user_id": user_id,
                "email": email,
                "portals": list(session.portals),
                "csrf": session.csrf,
                "created_at": now,
                "expires_at": session.expires_at,
            }
        )
        log.info("signed in", portal_id=portal_id, user_id=user_id)
        return session

    def _cookie_of(self, session: Session) -> str:
        return self._cookies.sign({"sid": session.sid}, self.settings.session_max_age_seconds)

    async def session(self, cookie: str | None) -> Session | None:
        """The live session a cookie names; None for a missing, forged, expired or closed one."""
        claims = self._cookies.verify(cookie) if cookie and self._cookies else None
        if claims is None:
            return None
        doc = await self.sessions.get(str(claims.get("sid")), self.clock())
        if doc is None:
            return None
        return Session(
            sid=doc["_id"],
            user_id=doc["user_id"],
            email=doc.get("email"),
            portals=tuple(doc["portals"]),
            csrf=doc["csrf"],
            expires_at=doc["expires_at"],
        )

    async def sign_out(self, session: Session) -> None:
        await self.sessions.close(session.sid)
        log.info("signed out", user_id=session.user_id)

    def grant(self, session: Session) -> str:
        """A short-lived bearer token for the other services' portal routes."""
        ttl = min(
            self.settings.grant_ttl_seconds,
            (session.expires_at - self.clock()).total_seconds(),
        )
        claims = grant_claims(session.user_id, session.email, session.portals, session.sid)
        return self._grants.sign(claims, ttl)

    # ------------------------------------------------------------ CRM tokens

    async def access_token(self, portal_id: str, rejected_digest: str | None = None) -> CrmAccess:
        """A valid CRM access token of an installed portal; refreshed once across replicas."""

        async def read() -> Doc:
            doc = await self.portals.by_id(portal_id)
            if doc is None or doc["status"] != PortalStatus.INSTALLED.value:
                raise PortalNotInstalled(portal_id)
            return doc

        def usable(doc: Doc) -> CrmAccess | None:
            tokens = doc["tokens"]
            access = self.stored_access.usable(
                tokens, f"portal:{portal_id}:access", rejected_digest
            )
            return None if access is None else CrmAccess(access, tokens["access_expires_at"])

        return await self.single_flight.token(
            f"crm:{portal_id}", read, usable, lambda d: self._refresh(portal_id, d)
        )

    async def _refresh(self, portal_id: str, doc: Doc) -> CrmAccess:
        refresh = self.cipher.decrypt(doc["tokens"]["refresh"], f"portal:{portal_id}:refresh")
        try:
            fresh = await self.oauth.refresh(refresh)
        except CrmOAuthRefused as exc:
            if exc.status == "BAD_REFRESH_TOKEN":
                version = doc["token_version"]
                if await self.uninstalled(portal_id, UninstallReason.REFRESH_REFUSED, version):
                    raise PortalNotInstalled(portal_id) from exc
                raise RefreshBusy(portal_id) from exc  # installed again meanwhile: read it
            raise TransientError(f"CRM token refresh failed: {exc.status}") from exc
        now = self.clock()
        sealed = self._seal(portal_id, fresh, now)
        if not await self.portals.store_refreshed(portal_id, doc["token_version"], sealed, now):
            raise RefreshBusy(portal_id)
        log.info("crm access token refreshed", portal_id=portal_id)
        return CrmAccess(fresh.access_token, sealed["access_expires_at"])

    # ------------------------------------------------------------ uninstall

    async def uninstall(self, portal_id: str) -> None:
        """A person removes the app from the portal through dealbooks."""
        try:
            token = await self.access_token(portal_id)
            await self.oauth.uninstall(token.access_token)
        except (PortalNotInstalled, RefreshBusy, TransientError, CrmOAuthRefused) as exc:
            # Our side stops either way (its tokens are deleted); if the CRM still lists the
            # app, a super admin removes it there.
            log.warning("crm uninstall call failed", portal_id=portal_id, error=type(exc).__name__)
        await self.uninstalled(portal_id, UninstallReason.UNINSTALLED)

    async def uninstalled(
        self, portal_id: str, reason: UninstallReason, version: int | None = None
    ) -> bool:
        """Mark the portal uninstalled (tokens deleted) and publish it, once; `version`: only
        if its tokens are still that version (a refresh refused for old tokens must not undo
        an install that came meanwhile). False when it was not marked."""
        now = self.clock()
        event = Envelope.build(
            PortalUninstalled(reason=reason, detected_at=now),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id),
        )
        marked = await self.portals.mark_uninstalled(portal_id, now, event, version)
        if marked:
            log.warning("portal uninstalled", portal_id=portal_id, reason=reason.value)
        await self.relay(portal_id)
        return marked

    # ------------------------------------------------------------ helpers

    def _seal(self, portal_id: str, tokens: CrmTokens, now: datetime) -> Doc:
        return {
            "access": self.cipher.encrypt(tokens.access_token, f"portal:{portal_id}:access"),
            "refresh": self.cipher.encrypt(tokens.refresh_token, f"portal:{portal_id}:refresh"),
            "access_expires_at": now + timedelta(seconds=tokens.expires_in),
        }

    async def relay(self, portal_id: str) -> None:
        try:
            await self.outbox.relay(PORTALS, portal_id)
        except Exception as exc:
            # Stored with the state change; the periodic pass publishes it.
            log.warning("outbox publish failed", portal_id=portal_id, error=type(exc).__name__)
