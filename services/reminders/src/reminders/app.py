"""Wiring only: settings -> runtime, clients, store, handlers, the pass, the API."""

from __future__ import annotations

from dataclasses import dataclass

from dealbooks_contracts import (
    AccountConnected,
    AccountDisconnected,
    InvoiceDrafted,
    InvoiceLinked,
    PortalInstalled,
    ReminderTaskClosed,
    ReminderTaskOpened,
)
from dealbooks_http import TokenProvider
from dealbooks_kit import Access, ApiClients, Guard, ServiceApp, ServiceRuntime

from reminders.api import build_api
from reminders.handlers import PASS_JOB, Reminders
from reminders.settings import RemindersSettings
from reminders.store import INDEXES, REMINDERS, Store
from reminders.tasks import ReminderTasks


@dataclass
class Service:
    """One reminders process: its runtime, handlers, store and API clients."""

    settings: RemindersSettings
    runtime: ServiceRuntime
    handlers: Reminders
    store: Store
    clients: ApiClients

    async def aclose(self) -> None:
        await self.clients.aclose()


def build_service(
    settings: RemindersSettings,
    *,
    qbo_tokens: TokenProvider | None = None,
    crm_tokens: TokenProvider | None = None,
) -> Service:
    """Everything the process needs. Tokens come from the settings (connector-auth); tests
    may inject providers instead."""
    runtime = ServiceRuntime(settings, indexes=INDEXES)
    store = Store(runtime.db, runtime.use_outbox(REMINDERS, reread=True))
    clients = runtime.api_clients(
        store.portal_of_realm, qbo_tokens=qbo_tokens, crm_tokens=crm_tokens
    )
    handlers = Reminders(
        store=store,
        qbo=clients.qbo,
        crm=clients.crm,
        tasks=ReminderTasks(store, clients.crm),
        catch_up_days=settings.catch_up_days,
        audit=runtime.use_audit(),
        installed=clients.tokens.portal_installed,
    )
    runtime.publishes(ReminderTaskOpened, ReminderTaskClosed)
    runtime.consume("accounts", AccountConnected, handlers.on_account_connected)
    runtime.consume("disconnects", AccountDisconnected, handlers.on_account_disconnected)
    runtime.consume("drafted", InvoiceDrafted, handlers.on_drafted)
    runtime.consume("linked", InvoiceLinked, handlers.on_linked)
    runtime.consume("portal-installs", PortalInstalled, handlers.on_portal_installed)
    # No webhook fires when a day passes: a timer, in one replica at a time, company by company.
    runtime.every(PASS_JOB, settings.pass_interval_seconds, handlers.pass_all)
    return Service(settings, runtime, handlers, store, clients)


def build_app(settings: RemindersSettings | None = None) -> ServiceApp:
    """The ASGI app `python -m reminders` serves; in production it refuses to start without
    the grant keys and operator credentials its routes check."""
    settings = settings or RemindersSettings()
    guard = Guard(settings, settings.service_name)
    guard.require(Access.PORTAL, Access.OPERATOR)
    service = build_service(settings)
    app = service.runtime.asgi(api=build_api(service, guard), title="reminders")
    app.on_shutdown(service.aclose)
    return app
