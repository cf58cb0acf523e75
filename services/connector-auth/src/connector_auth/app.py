"""Wiring only: settings -> runtime, store, adapters, service, routes, consumer, relay."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from dealbooks_contracts import Envelope, QboEntity, QboEntityChanged
from dealbooks_http import async_client
from dealbooks_kit import ServiceApp, ServiceRuntime, get_logger

from connector_auth.api import build_api
from connector_auth.crypto import TokenCipher
from connector_auth.gateways import CrmInstaller, QboGateway
from connector_auth.handlers import AccountNotFound, ConnectorAuth, ReauthRequired
from connector_auth.settings import ConnectorAuthSettings
from connector_auth.store import ACCOUNTS, INDEXES, Accounts, OAuthStates, RefreshLeases

log = get_logger(__name__)


def build_service(settings: ConnectorAuthSettings) -> tuple[ServiceRuntime, ConnectorAuth]:
    """The runtime and the service layer, without HTTP (tests and workers use this)."""
    if not settings.state_secret.get_secret_value():
        raise ValueError("CONNECTOR_AUTH_STATE_SECRET must be set")
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    http = async_client(timeout=30.0)
    service = ConnectorAuth(
        settings,
        Accounts(runtime.db),
        OAuthStates(runtime.db),
        RefreshLeases(runtime.db),
        TokenCipher.from_spec(settings.token_keys.get_secret_value()),
        QboGateway(settings, http),
        CrmInstaller(settings),
        runtime.use_outbox(ACCOUNTS),
        http,
    )

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
    return runtime, service


def build_app(settings: ConnectorAuthSettings) -> ServiceApp:
    """The connector-auth process: API, preference-drift consumer, outbox relay (the kit's)
    and the clean-up of spent OAuth states and refresh leases."""
    runtime, service = build_service(settings)

    async def clean_up() -> None:
        # No TTL indexes on the MongoDB-wire subset: spent states and leases go by a timer.
        cutoff = service.clock() - timedelta(seconds=2 * settings.state_max_age_seconds)
        await service.states.forget_before(cutoff)
        await service.leases.forget_before(cutoff)

    async def close_clients() -> None:
        await service.crm.aclose()
        await service.http.aclose()

    runtime.every("state-clean-up", settings.state_max_age_seconds, clean_up)
    app = runtime.asgi(api=build_api(service), title="connector-auth")
    app.on_shutdown(close_clients)
    return app
