"""Wiring only: settings -> runtime, store, adapters, service, routes, consumer, relay."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    AccountReauthRequired,
    Envelope,
    PortalInstalled,
    PortalUninstalled,
    QboEntity,
    QboEntityChanged,
)
from dealbooks_http import async_client
from dealbooks_kit import ServiceApp, ServiceRuntime, get_logger
from dealbooks_kit.auth import MissingCredential

from connector_auth.api import build_api
from connector_auth.crm_oauth import CrmOAuth
from connector_auth.crypto import TokenCipher
from connector_auth.gateways import CrmInstaller, QboGateway
from connector_auth.handlers import FACTS_JOB, AccountNotFound, ConnectorAuth, ReauthRequired
from connector_auth.installs import Installs
from connector_auth.reseal import reseal
from connector_auth.settings import ConnectorAuthSettings
from connector_auth.store import (
    ACCOUNTS,
    INDEXES,
    PORTALS,
    Accounts,
    OAuthStates,
    Portals,
    RefreshLeases,
    Sessions,
)

log = get_logger(__name__)


class InstalledPortals:
    """The `TokenProvider` connector-auth's own CRM calls use: the portals' installs."""

    def __init__(self, installs: Installs) -> None:
        self._installs = installs

    async def token(self, key: str) -> str:
        return (await self._installs.access_token(key)).access_token

    async def invalidate(self, key: str, token: str) -> None:
        return None


def build_service(
    settings: ConnectorAuthSettings,
) -> tuple[ServiceRuntime, ConnectorAuth, Installs]:
    """The runtime and the service layers, without HTTP (tests and workers use this)."""
    for name, value in [
        ("CONNECTOR_AUTH_STATE_SECRET", settings.state_secret),
        ("CONNECTOR_AUTH_SESSION_KEYS", settings.session_keys),
        ("DEALBOOKS_GRANT_KEYS", settings.grant_keys),
    ]:
        if not value.get_secret_value():
            raise MissingCredential(f"connector-auth: {name} must be set")
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    http = async_client(timeout=30.0)
    cipher = TokenCipher.from_spec(settings.token_keys.get_secret_value())
    states, leases = OAuthStates(runtime.db), RefreshLeases(runtime.db)
    outbox = runtime.use_outbox(ACCOUNTS, PORTALS)
    runtime.publishes(
        AccountConnected,
        AccountDisconnected,
        AccountReauthRequired,
        PortalInstalled,
        PortalUninstalled,
    )
    service = ConnectorAuth(
        settings,
        Accounts(runtime.db),
        states,
        leases,
        cipher,
        QboGateway(settings, http),
        outbox,
        http,
    )
    installs = Installs(
        settings,
        Portals(runtime.db),
        Sessions(runtime.db),
        states,
        leases,
        cipher,
        CrmOAuth(settings, http),
        outbox,
        service.clock,
    )
    installs.installer = CrmInstaller(settings, InstalledPortals(installs))

    async def on_qbo_change(event: Envelope[QboEntityChanged]) -> None:
        # An account that needs a person, or is gone, has no facts to refresh.
        with contextlib.suppress(AccountNotFound, ReauthRequired):
            await service.on_qbo_change(event)

    runtime.consume(
        "preferences-drift",
        QboEntityChanged,
        on_qbo_change,
        accepts=lambda event: event.data.entity in {QboEntity.PREFERENCES, QboEntity.COMPANY_INFO},
        selective=True,  # two entities of all QuickBooks changes
    )
    return runtime, service, installs


def build_app(settings: ConnectorAuthSettings) -> ServiceApp:
    """The connector-auth process: API, preference-drift consumer, outbox relay (the kit's)
    and the clean-up of spent OAuth states, refresh leases and sessions."""
    runtime, service, installs = build_service(settings)
    api = build_api(service, installs)

    async def clean_up() -> None:
        # No TTL indexes on the MongoDB-wire subset: spent states, leases and sessions go by a
        # timer.
        now = service.clock()
        cutoff = now - timedelta(seconds=2 * settings.state_max_age_seconds)
        await service.states.forget_before(cutoff)
        await service.leases.forget_before(cutoff)
        await installs.sessions.forget_before(now)

    async def close_clients() -> None:
        if installs.installer is not None:
            await installs.installer.aclose()
        await service.http.aclose()

    async def reseal_tokens() -> int:
        """Tokens sealed with a key that is no longer first get the first one (rotation)."""
        accounts = await reseal(runtime.db[ACCOUNTS], service.cipher, lambda d: str(d["_id"]))
        portals = await reseal(runtime.db[PORTALS], service.cipher, lambda d: f"portal:{d['_id']}")
        return accounts + portals

    runtime.every("state-clean-up", settings.state_max_age_seconds, clean_up)
    runtime.every("token-reseal", settings.token_reseal_seconds, reseal_tokens)
    runtime.every(FACTS_JOB, settings.facts_interval_seconds, service.refresh_all_facts)
    app = runtime.asgi(api=api, title="connector-auth")
    app.on_shutdown(close_clients)
    return app
