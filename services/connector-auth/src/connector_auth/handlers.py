"""connector-auth's use cases: connect, disconnect, hand out access tokens, follow preference
changes. Each reads: decide (domain), persist (one document), publish (outbox relay)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    AccountDisconnected,
    AccountReauthRequired,
    DisconnectReason,
    Envelope,
    QboEntity,
    QboEntityChanged,
    QboEnvironment,
    ReauthReason,
    Tenant,
)
from dealbooks_kit import Outbox, TenantPass, TransientError, each_tenant, get_logger
from dealbooks_qbo import OAuthError, QboError, TokenSet

from connector_auth import domain
from connector_auth.crypto import TokenCipher
from connector_auth.domain import AccountStatus, CompanyFacts, ConnectRefused
from connector_auth.gateways import QboGateway
from connector_auth.refresh import RefreshBusy, SingleFlight, StoredAccess
from connector_auth.settings import ConnectorAuthSettings
from connector_auth.store import (
    ACCOUNTS,
    Accounts,
    Doc,
    OAuthStates,
    RefreshLeases,
    account_key,
)

log = get_logger(__name__)
SOURCE = "connector-auth"
FACTS_JOB = "facts-refresh"


class AccountNotFound(Exception):
    """No account of this portal with this id."""


class ReauthRequired(Exception):
    """The account's authorization is gone; a person must reconnect it."""


@dataclass(frozen=True)
class AccessToken:
    """What the internal endpoint returns to a service (never logged, never on Kafka)."""

    access_token: str
    expires_at: datetime
    realm_id: str


@dataclass(frozen=True)
class Connected:
    portal_id: str
    realm_id: str
    facts: CompanyFacts
    reason: AccountConnectedReason


def utc_now() -> datetime:
    return datetime.now(UTC)


class ConnectorAuth:
    """The service layer; adapters are injected so tests and wiring choose them."""

    def __init__(
        self,
        settings: ConnectorAuthSettings,
        accounts: Accounts,
        states: OAuthStates,
        leases: RefreshLeases,
        cipher: TokenCipher,
        qbo: QboGateway,
        outbox: Outbox,
        http: httpx.AsyncClient,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.accounts = accounts
        self.states = states
        self.leases = leases
        self.cipher = cipher
        self.qbo = qbo
        self.outbox = outbox
        self.http = http
        self.clock = clock
        self.single_flight = SingleFlight.of_this_process(leases, clock, settings)
        self.stored_access = StoredAccess(cipher, clock, settings.refresh_margin_seconds)
        self._state_secret = settings.state_secret.get_secret_value().encode()

    # ---------------------------------------------------------------- connect

    async def start_connect(self, portal_id: str, user_id: str) -> str:
        """The QBO authorize URL for this portal and person, with a fresh single-use state."""
        nonce = secrets.token_urlsafe(16)
        now = self.clock()
        await self.states.issue(nonce, portal_id, now)
        state = domain.OAuthState(portal_id, nonce, now, user_id=user_id)
        return self.qbo.authorization_url(domain.sign_state(state, self._state_secret))

    async def complete_connect(
        self, state: str, code: str, realm_id: str, user_id: str | None
    ) -> Connected:
        """Check the state (and that the person who started the flow finishes it), exchange
        the code, read the company, store, publish."""
        now = self.clock()
        parsed = domain.read_state(
            state, self._state_secret, now, self.settings.state_max_age_seconds
        )
        if parsed.purpose != "qbo" or not parsed.user_id or parsed.user_id != user_id:
            raise domain.InvalidState("the flow was started by someone else, or elsewhere")
        if not await self.states.consume(parsed.nonce, parsed.portal_id, now):
            raise domain.InvalidState("state already used or unknown")
        tokens = await self.qbo.exchange(code)
        try:
            facts = await self.qbo.read_facts(realm_id, tokens.access_token)
        except ConnectRefused:
            # We hold a grant we will not use: give it back.
            await self._revoke_quietly(tokens.refresh_token)
            raise
        portal_id = parsed.portal_id
        previous = await self.accounts.get(portal_id, realm_id)
        previous_status = AccountStatus(previous["status"]) if previous else None
        reason = domain.connected_reason(previous_status)
        environment = self.settings.qbo_environment
        event = Envelope.build(
            _connected(facts, environment, reason, now),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id, account_id=realm_id),
        )
        key = account_key(portal_id, realm_id)
        await self.accounts.save_connected(
            portal_id=portal_id,
            realm_id=realm_id,
            environment=environment.value,
            facts=facts,
            tokens=self._seal(key, tokens, now),
            now=now,
            event=event,
        )
        log.info("account connected", portal_id=portal_id, realm_id=realm_id, reason=reason)
        await self.relay(key)
        return Connected(portal_id, realm_id, facts, reason)

    # ------------------------------------------------------------- list, disconnect

    async def list_accounts(self, portal_id: str) -> list[Doc]:
        return await self.accounts.list_for_portal(portal_id)

    async def advanced_portals(self, portal_ids: Sequence[str]) -> list[str]:
        """Those of the portals with a company on QuickBooks Online Advanced."""
        return domain.advanced_portals(await self.accounts.editions_of(portal_ids))

    async def disconnect(self, portal_id: str, realm_id: str) -> None:
        """Revoke at QBO, delete the tokens, publish account-disconnected."""
        key = account_key(portal_id, realm_id)
        doc = await self.accounts.by_id(key)
        if doc is None or doc["status"] == AccountStatus.DISCONNECTED.value:
            raise AccountNotFound(key)
        if doc.get("tokens"):
            refresh = self.cipher.decrypt(doc["tokens"]["refresh"], f"{key}:refresh")
            await self._revoke_quietly(refresh)
        now = self.clock()
        event = Envelope.build(
            AccountDisconnected(
                reason=DisconnectReason.USER_REQUESTED,
                disconnected_at=now,
                company_name=(doc.get("company") or {}).get("company_name"),
            ),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id, account_id=realm_id),
        )
        await self.accounts.mark_disconnected(key, now, event)
        log.info("account disconnected", portal_id=portal_id, realm_id=realm_id)
        await self.relay(key)

    async def _revoke_quietly(self, token: str) -> None:
        try:
            await self.qbo.revoke(token)
        except (QboError, OSError) as exc:
            # Revocation is best effort: the tokens are deleted here either way.
            log.warning("revoke failed", error=type(exc).__name__)

    # ---------------------------------------------------------------- tokens

    async def access_token(
        self, portal_id: str, realm_id: str, rejected_digest: str | None = None
    ) -> AccessToken:
        """A valid access token; refreshes once across replicas when it is near expiry."""
        key = account_key(portal_id, realm_id)

        async def read() -> Doc:
            doc = await self.accounts.by_id(key)
            if doc is None or doc["status"] == AccountStatus.DISCONNECTED.value:
                raise AccountNotFound(key)
            if doc["status"] == AccountStatus.REAUTH_REQUIRED.value:
                raise ReauthRequired(key)
            return doc

        def usable(doc: Doc) -> AccessToken | None:
            tokens = doc["tokens"]
            access = self.stored_access.usable(tokens, f"{key}:access", rejected_digest)
            if access is None:
                return None
            return AccessToken(access, tokens["access_expires_at"], doc["realm_id"])

        return await self.single_flight.token(key, read, usable, lambda d: self._refresh(key, d))

    async def _refresh(self, key: str, doc: Doc) -> AccessToken:
        refresh = self.cipher.decrypt(doc["tokens"]["refresh"], f"{key}:refresh")
        try:
            fresh = await self.qbo.refresh(refresh)
        except OAuthError as exc:
            if exc.error == "invalid_grant":
                await self._reauth_required(key, doc)
                raise ReauthRequired(key) from exc
            raise TransientError(f"token refresh failed: {exc.error}") from exc
        now = self.clock()
        sealed = self._seal(key, fresh, now)
        # The rotated refresh token is durable before the new access token leaves.
        if not await self.accounts.store_refreshed(key, doc["token_version"], sealed, now):
            raise RefreshBusy(key)
        log.info("access token refreshed", portal_id=doc["portal_id"], realm_id=doc["realm_id"])
        return AccessToken(fresh.access_token, sealed["access_expires_at"], doc["realm_id"])

    async def _reauth_required(self, key: str, doc: Doc) -> None:
        company = (doc.get("company") or {}).get("company_name")
        event = Envelope.build(
            AccountReauthRequired(
                reason=ReauthReason.INVALID_GRANT,
                detected_at=self.clock(),
                message=domain.reauth_message(company),
                company_name=company,
            ),
            source=SOURCE,
            tenant=Tenant(portal_id=doc["portal_id"], account_id=doc["realm_id"]),
        )
        if await self.accounts.mark_reauth_required(key, event):
            log.warning(
                "account needs reauthorization",
                portal_id=doc["portal_id"],
                realm_id=doc["realm_id"],
            )
        await self.relay(key)

    def _seal(self, key: str, tokens: TokenSet, now: datetime) -> Doc:
        refresh_life = tokens.x_refresh_token_expires_in
        return {
            "access": self.cipher.encrypt(tokens.access_token, f"{key}:access"),
            "refresh": self.cipher.encrypt(tokens.refresh_token, f"{key}:refresh"),
            "access_expires_at": now + timedelta(seconds=tokens.expires_in),
            "refresh_expires_at": now + timedelta(seconds=refresh_life) if refresh_life else None,
        }

    # ------------------------------------------------------------ preference drift

    async def on_qbo_change(self, event: Envelope[QboEntityChanged]) -> None:
        """Preferences (or CompanyInfo) changed in QBO: re-read the facts, publish if they moved."""
        if event.data.entity not in {QboEntity.PREFERENCES, QboEntity.COMPANY_INFO}:
            return
        for doc in await self.accounts.connected_for_realm(event.data.realm_id):
            await self.refresh_facts(doc["portal_id"], doc["realm_id"], caused_by=event)

    async def refresh_facts(
        self, portal_id: str, realm_id: str, caused_by: Envelope[Any] | None = None
    ) -> bool:
        """Re-read CompanyInfo and Preferences; True when the stored facts changed."""
        key = account_key(portal_id, realm_id)
        token = await self.access_token(portal_id, realm_id)
        facts = await self.qbo.read_facts(realm_id, token.access_token)
        doc = await self.accounts.by_id(key)
        if doc is None or CompanyFacts(**doc["company"]) == facts:
            return False
        event = Envelope.build(
            _connected(
                facts, doc["environment"], AccountConnectedReason.FACTS_CHANGED, doc["connected_at"]
            ),
            source=SOURCE,
            tenant=Tenant(portal_id=portal_id, account_id=realm_id),
            caused_by=caused_by,
        )
        await self.accounts.update_facts(key, facts, event)
        log.info("company facts changed", portal_id=portal_id, realm_id=realm_id)
        await self.relay(key)
        return True

    async def refresh_all_facts(self) -> TenantPass:
        """Re-read the facts of every connected account, so a lost Preferences or CompanyInfo
        webhook is healed by the next pass (QuickBooks' CDC does not report either). Account
        by account: one that fails (grant revoked, QuickBooks failing for it) is reported and
        the others go on. Reports how many accounts' facts changed."""

        async def refresh(key: str) -> int:
            doc = await self.accounts.by_id(key)
            if doc is None or doc["status"] != AccountStatus.CONNECTED.value:
                return 0  # disconnected or in need of a person since the pass began
            return int(await self.refresh_facts(doc["portal_id"], doc["realm_id"]))

        keys = await self.accounts.connected()
        return await each_tenant(FACTS_JOB, keys, refresh, kind="account")

    # ---------------------------------------------------------------- outbox relay

    async def relay(self, key: str) -> None:
        """Publish the account's pending events in order, removing each once Kafka acked it."""
        try:
            await self.outbox.relay(ACCOUNTS, key)
        except Exception as exc:
            # The state change is done and its events are stored; the periodic pass retries
            # them, so the person connecting does not see a failure for a broker hiccup.
            log.warning("outbox publish failed", account=key, error=type(exc).__name__)


def _connected(
    facts: CompanyFacts,
    environment: QboEnvironment | str,
    reason: AccountConnectedReason,
    connected_at: datetime,
) -> AccountConnected:
    """`account.connected` for a company's facts (a new connection or facts that changed)."""
    return AccountConnected(
        company_name=facts.company_name,
        legal_name=facts.legal_name,
        country=facts.country,
        home_currency=facts.home_currency,
        multicurrency_enabled=facts.multicurrency_enabled,
        custom_transaction_numbers=facts.custom_transaction_numbers,
        edition=facts.edition,
        environment=environment,
        reason=reason,
        connected_at=connected_at,
    )
