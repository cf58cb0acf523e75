"""Wiring only: settings -> runtime, store, intake, routes, directory consumers, housekeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    CrmObjectChanged,
    QboEntityChanged,
)
from dealbooks_kit import Guard, ServiceApp, ServiceRuntime, get_logger

from webhook_gateway.api import build_api
from webhook_gateway.handlers import Intake
from webhook_gateway.settings import WebhookGatewaySettings
from webhook_gateway.store import INDEXES, DedupeWindow, RealmDirectory

log = get_logger(__name__)


def build_service(settings: WebhookGatewaySettings) -> tuple[ServiceRuntime, Intake]:
    """The runtime and the intake, without HTTP."""
    if not settings.qbo_verifier_token.get_secret_value():
        raise ValueError("WEBHOOK_GATEWAY_QBO_VERIFIER_TOKEN must be set")
    if not settings.crm_client_secret.get_secret_value():
        raise ValueError("CRM_CLIENT_SECRET must be set")
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    intake = Intake(
        settings,
        runtime.publisher,
        DedupeWindow(
            runtime.db,
            timedelta(seconds=settings.dedupe_window_seconds),
            settings.dedupe_pending_wait_seconds,
        ),
        RealmDirectory(runtime.db),
    )
    runtime.publishes(QboEntityChanged, CrmObjectChanged)
    runtime.consume("realm-directory-connected", AccountConnected, intake.on_account_connected)
    runtime.consume(
        "realm-directory-disconnected", AccountDisconnected, intake.on_account_disconnected
    )
    return runtime, intake


def build_app(settings: WebhookGatewaySettings) -> ServiceApp:
    """The webhook-gateway process."""
    runtime, intake = build_service(settings)

    async def forget_expired() -> None:
        await intake.dedupe.forget_expired(datetime.now(UTC))

    # The marks a failed bulk write left are this process's own: every replica writes its own.
    runtime.every("dedupe-marks", settings.housekeeping_seconds, intake.dedupe.mark, leased=False)
    # Expired entries are shared: one replica removes them.
    runtime.every("dedupe-housekeeping", settings.housekeeping_seconds, forget_expired)
    # Both routes are public by design; the intake checks every delivery's signature.
    guard = Guard(settings, settings.service_name, public_base_url=settings.public_base_url)
    app = runtime.asgi(api=build_api(intake, guard), title="webhook-gateway")
    app.on_shutdown(intake.dedupe.mark)
    return app
