"""Wiring only: settings -> backend client, people, pages, the card's backend, routes, health.

The console keeps no state of its own (the session is connector-auth's, business state the
services'), so it needs neither Kafka nor MongoDB: readiness asks connector-auth."""

from __future__ import annotations

import mimetypes
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from dealbooks_kit import Access, Guard, metrics
from dealbooks_kit.openapi import openapi_document
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from console.approvals import ApprovalPages
from console.backend import Backend, BackendError
from console.card import Card
from console.pages import Pages, Refused
from console.people import People
from console.reminders import ReminderPages
from console.settings import ConsoleSettings
from console.wizard import WizardPages

STATIC = Path(__file__).with_name("static")
CONSOLE_DESCRIPTION = (
    "The console's pages (HTML) for people signed in with the CRM, and the CRM app card's "
    "fetch. Its pages answer HTML; a refused page is a sign-in redirect or a page."
)


def build_app(settings: ConsoleSettings, http: httpx.AsyncClient | None = None) -> Starlette:
    backend = Backend(settings, http)
    people = People(settings, backend)
    pages = Pages(settings, backend, people)
    guard = Guard(
        settings, settings.service_name, session=people.caller, refused=pages.unauthenticated
    )
    guard.require(Access.PORTAL, Access.CRM_SIGNED)
    reminders = ReminderPages(pages)
    routes = [
        *_plumbing(guard, Plumbing(backend)),
        *_pages(guard, pages, Card(settings, backend, people, pages)),
        *_wizard(guard, WizardPages(pages)),
        *_approvals(guard, ApprovalPages(pages)),
        guard.route(P + "/reminders", reminders.reminders, ["GET"], SESSION),
        guard.route(P + "/reminders/{realm}/{workflow}", reminders.save, ["POST"], SESSION),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await backend.close()

    app = guard.api(
        routes,
        exception_handlers={
            BackendError: pages.refused,
            Refused: pages.refused,
            Exception: pages.crashed,
        },
        lifespan=lifespan,
    )
    app.state.pages = pages
    app.add_middleware(
        SecurityHeaders, frame_ancestors=settings.frame_ancestors, forms_to=settings.signin_base
    )
    app.add_middleware(ServerTiming)
    return app


P = "/portals/{portal_id}"
SESSION = Access.SESSION


class Plumbing:
    """What every process answers besides its pages: health, metrics, static files, OpenAPI."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            answer = await self.backend.http.get(f"{self.backend.urls['connector-auth']}/healthz")
            ready = answer.status_code == 200
        except httpx.HTTPError:
            ready = False
        return JSONResponse(
            {"ready": ready, "checks": {"connector-auth": ready}}, status_code=200 if ready else 503
        )

    async def metrics(self, request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    async def static(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            return Response(status_code=404)
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return Response(
            path.read_bytes(), media_type=kind, headers={"Cache-Control": "public, max-age=300"}
        )

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(
            openapi_document(request.app.routes, title="console", description=CONSOLE_DESCRIPTION)
        )


def _plumbing(guard: Guard, plumbing: Plumbing) -> list[BaseRoute]:
    public = Access.PUBLIC
    return [
        guard.route("/healthz", plumbing.healthz, ["GET"], public),
        guard.route("/readyz", plumbing.readyz, ["GET"], public),
        guard.route("/metrics", plumbing.metrics, ["GET"], public),
        guard.route("/docs/openapi.json", plumbing.openapi, ["GET"], public),
        guard.route("/static/{name}", plumbing.static, ["GET"], public),
    ]


def _pages(guard: Guard, pages: Pages, card: Card) -> list[BaseRoute]:
    sync = P + "/sync/{realm}/{object_type}"
    record = P + "/records/{object_type}/{object_id}"
    return [
        guard.route("/", pages.landing, ["GET"], Access.PUBLIC),
        guard.route("/launch", card.launch, ["GET"], Access.PUBLIC),
        guard.route("/connected", pages.connected, ["GET"], SESSION),
        guard.route("/crm/cards/{object_type}", card.card, ["GET"], Access.CRM_SIGNED),
        guard.route(P, pages.home, ["GET"], SESSION),
        guard.route(P + "/open", pages.open_record, ["GET"], SESSION),
        guard.route(P + "/accounts", pages.accounts, ["GET"], SESSION),
        guard.route(P + "/accounts/{account_id}/disconnect", pages.disconnect, ["GET", "POST"],
                    SESSION),
        guard.route(record, pages.record, ["GET"], SESSION),
        guard.route(record + "/add", pages.add_existing, ["GET", "POST"], SESSION),
        guard.route(P + "/sync", pages.sync, ["GET"], SESSION),
        guard.route(sync, pages.save_sync, ["POST"], SESSION),
        guard.route(sync + "/mappings", pages.mappings, ["GET"], SESSION),
        guard.route(sync + "/backfill", pages.backfill, ["POST"], SESSION),
        guard.route(sync + "/mappings/check", pages.mapping_check, ["POST"], SESSION),
        guard.route(sync + "/mappings/save", pages.mapping_save, ["POST"], SESSION),
        guard.route(P + "/rules", pages.rules, ["GET"], SESSION),
        guard.route(P + "/rules/{rule_id}", pages.rule, ["GET", "POST"], SESSION),
        guard.route(P + "/rules/{rule_id}/delete", pages.delete_rule, ["POST"], SESSION),
    ]  # fmt: skip


def _wizard(guard: Guard, wizard: WizardPages) -> list[BaseRoute]:
    new = P + "/deals/{deal_id}/invoices/new"
    return [
        guard.route(new, wizard.start, ["GET"], SESSION),
        guard.route(new + "/details", wizard.details, ["GET"], SESSION),
        guard.route(new + "/review", wizard.review, ["POST"], SESSION),
        guard.route(P + "/requests/{request_id}", wizard.outcome, ["GET"], SESSION),
    ]


def _approvals(guard: Guard, approvals: ApprovalPages) -> list[BaseRoute]:
    return [
        guard.route(P + "/approvals", approvals.approvals, ["GET"], SESSION),
        guard.route(P + "/approvals/settings/{realm}", approvals.save_settings, ["POST"], SESSION),
        guard.route(P + "/approvals/{request_id}", approvals.approval, ["GET"], SESSION),
        guard.route(P + "/approvals/{request_id}", approvals.decide, ["POST"], SESSION),
    ]


class SecurityHeaders:
    """What every page says about itself to the browser: only its own scripts, styles and
    forms; framed only by HubSpot (the card's iframe); no referrer beyond the console (a
    launch ticket is in the first URL); no guessing of content types."""

    def __init__(self, app: ASGIApp, frame_ancestors: str, forms_to: str) -> None:
        self.app = app
        self.headers = {
            "Content-Security-Policy": (
                "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
                f"form-action 'self' {forms_to}; frame-ancestors {frame_ancestors}"
            ),
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, headed)


class ServerTiming:
    """Adds `Server-Timing: app;dur=<ms>` to every answer: the console's own time, including
    the services it asked (what `make bench` reports per page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                elapsed = (time.perf_counter() - started) * 1000
                headers = MutableHeaders(scope=message)
                headers.append("Server-Timing", f"app;dur={elapsed:.1f}")
            await send(message)

        await self.app(scope, receive, timed)
