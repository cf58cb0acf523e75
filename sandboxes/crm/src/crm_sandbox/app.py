"""Wiring: state, store, webhook sender and every route into one Starlette app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from crm_sandbox.api_app import AppApi
from crm_sandbox.api_app_events import AppEventsApi, load_event_types, register_event_type
from crm_sandbox.api_associations import AssociationsApi
from crm_sandbox.api_oauth import OAuthApi
from crm_sandbox.api_objects import ObjectsApi
from crm_sandbox.api_owners import OwnersApi
from crm_sandbox.api_properties import PropertiesApi
from crm_sandbox.api_timeline import TimelineApi
from crm_sandbox.control import ControlApi
from crm_sandbox.errors import ApiError
from crm_sandbox.guard import Guard
from crm_sandbox.installs import Installs
from crm_sandbox.state import SandboxConfig, SandboxState
from crm_sandbox.store import Store
from crm_sandbox.webhooks import WebhookSender


def build_app(config: SandboxConfig | None = None, seed: dict[str, Any] | None = None) -> Starlette:
    """Build the emulator; `seed` is the same JSON the `--seed` flag reads."""
    state = SandboxState(config or SandboxConfig())
    sender = WebhookSender(state)
    store = Store(state, sender.on_change)
    guard = Guard(state, store, sender)
    app_api = AppApi(guard)
    timeline_api = TimelineApi(guard)
    app_events_api = AppEventsApi(guard)
    installs = Installs(state)
    control = ControlApi(state, store, sender, app_api, timeline_api, installs)
    if state.config.app_events_dir:
        load_event_types(state, Path(state.config.app_events_dir))
    if seed:
        apply_seed(control, seed)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await sender.start()
        try:
            yield
        finally:
            await sender.stop()

    routes = [
        *control.routes(),
        *AssociationsApi(guard).routes(),
        *PropertiesApi(guard).routes(),
        *ObjectsApi(guard).routes(),
        *OwnersApi(guard).routes(),
        *timeline_api.routes(),
        *app_events_api.routes(),
        *app_api.routes(),
        *OAuthApi(guard, installs).routes(),
    ]

    async def unknown(request: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 404)
        return ApiError(
            status,
            "OBJECT_NOT_FOUND" if status == 404 else "VALIDATION_ERROR",
            f"No route for {request.method} {request.url.path}",
        ).response()

    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        return ApiError(500, "INTERNAL_ERROR", f"Sandbox error: {type(exc).__name__}").response()

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: unknown, 405: unknown, Exception: crashed},
    )
    app.state.sandbox = state
    return app


def apply_seed(control: ControlApi, seed: dict[str, Any]) -> None:
    app = seed.get("app") or {}
    state = control.state
    if app.get("clientSecret"):
        state.app.client_secret = str(app["clientSecret"])
    if app.get("name"):
        state.app.name = str(app["name"])
    if app.get("redirectUrls"):
        state.app.redirect_urls = [str(u) for u in app["redirectUrls"]]
    if app.get("targetUrl"):
        control.app_api.apply_settings({"targetUrl": app["targetUrl"]})
    for sub in app.get("subscriptions") or []:
        control.app_api.add_subscription({"active": True, **sub})
    for template in app.get("eventTemplates") or []:
        control.timeline_api.add_template(template)
    for event_type in app.get("appEvents") or []:
        register_event_type(state, event_type)
    for portal in seed.get("portals") or []:
        control.create_portal_from(portal)
