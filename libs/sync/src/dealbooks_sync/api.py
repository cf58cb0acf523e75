"""The backfill routes of a sync service: an account's backfill, planned, started, watched,
resumed and cancelled (one run per account at a time, see `dealbooks_sync.runs`).

An operator, or an admin of the portal (a portal grant naming it), may call them; the account
must be connected to the route's portal, else the answer is 404 and nothing is started.
Caps (`max_qbo_calls`, `max_crm_calls`) come from the query string or a JSON body; those not
given are the service's defaults (start) or the run's own (resume)."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from dealbooks_kit import Access, Guard
from dealbooks_kit.openapi import describe
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute

from dealbooks_sync.backfill import Backfill, BackfillRefused
from dealbooks_sync.healing import Reconciliation
from dealbooks_sync.runs import BackfillBusy, Caps, public

BASE = "/portals/{portal_id}/accounts/{realm}/backfill"
CAPS = ("max_qbo_calls", "max_crm_calls")


class ErrorAnswer(BaseModel):
    """A refusal, in a sentence (with the active run, when one is in the way)."""

    error: str
    run: dict[str, Any] | None = None


class CapsBody(BaseModel):
    """Caps on the calls a run may make (also accepted in the query string); those not given
    are the service's defaults (start) or the run's own (resume)."""

    max_qbo_calls: int | None = Field(default=None, ge=0)
    max_crm_calls: int | None = Field(default=None, ge=0)


class Calls(BaseModel):
    qbo: int
    crm: int


class BackfillRun(BaseModel):
    """A backfill run: its state, where it is, what it did and the calls it made."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    realm_id: str
    portal_id: str | None = None
    object_type: str | None = None
    state: str = Field(description="planned, running, paused, done, cancelled or failed")
    reason: str | None = None
    error: str | None = None
    read: int | None = None
    created: int | None = None
    updated: int | None = None
    unchanged: int | None = None
    failed: int | None = None
    calls: Calls | None = None
    caps: Calls | None = None
    started_at: str | None = None
    updated_at: str | None = None
    finished_at: str | None = None


class BackfillPlan(BaseModel):
    """What a run would read and the calls it would make (`?dry_run=true`), writing nothing."""

    state: str = Field(description="planned")
    realm_id: str
    object_type: str
    records: int
    already_linked: int
    qbo_calls: int
    crm_calls: int
    caps: Calls
    within_caps: bool
    mapping_version: int


class _BadCaps(Exception):
    pass


def _backfill(request: Request) -> Backfill:
    backfill: Backfill = request.app.state.backfill
    return backfill


async def _connected(request: Request) -> bool:
    """Whether the route's account is connected to the route's portal (as far as the mapping
    sets this service received say)."""
    backfill = _backfill(request)
    mset = await backfill.deps.sets.get(request.path_params["realm"], backfill.kind.object_type)
    return mset is not None and mset.portal_id == request.path_params["portal_id"]


_Route = Callable[[Request], Awaitable[JSONResponse]]


def _of_connected_account(route: _Route) -> _Route:
    """`route`, answering 404 and doing nothing when the route's account is not connected to
    the route's portal."""

    @functools.wraps(route)
    async def checked(request: Request) -> JSONResponse:
        if not await _connected(request):
            return JSONResponse({"error": "account not connected to this portal"}, status_code=404)
        return await route(request)

    return checked


async def _asked_caps(request: Request) -> dict[str, int]:
    """The caps the request names (query string, then JSON body), as non-negative ints."""
    given: dict[str, Any] = {k: request.query_params[k] for k in CAPS if k in request.query_params}
    body = await request.body()
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            raise _BadCaps("the body is not JSON") from None
        if isinstance(parsed, dict):
            given.update({k: parsed[k] for k in CAPS if parsed.get(k) is not None})
    caps = {}
    for name, value in given.items():
        try:
            caps[name] = int(value)
        except (TypeError, ValueError):
            raise _BadCaps(f"{name} must be a whole number") from None
        if caps[name] < 0:
            raise _BadCaps(f"{name} must not be negative")
    return caps


def _refused(exc: Exception) -> JSONResponse:
    body: dict[str, Any] = {"error": str(exc)}
    if isinstance(exc, BackfillBusy) and exc.run is not None:
        body["run"] = public(exc.run)
    return JSONResponse(body, status_code=409)


@describe(
    body=CapsBody,
    answers={
        200: BackfillPlan,
        202: BackfillRun,
        400: ErrorAnswer,
        404: ErrorAnswer,
        409: ErrorAnswer,
    },
    summary="Start the account's backfill (202), or plan it with ?dry_run=true (200).",
)
@_of_connected_account
async def start(request: Request) -> JSONResponse:
    """`?dry_run=true` plans (counts what a run would read and call); without it, starts a
    run (202), or 409 when the account's settings forbid it or a run is already active."""
    backfill, realm = _backfill(request), request.path_params["realm"]
    dry_run = request.query_params.get("dry_run", "false").lower() in {"1", "true", "yes"}
    try:
        caps = backfill.caps(**await _asked_caps(request))
        if dry_run:
            return JSONResponse(await backfill.dry_run(realm, caps))
        report = await backfill.start(realm, caps)
    except _BadCaps as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except (BackfillRefused, BackfillBusy) as exc:
        return _refused(exc)
    run = await backfill.report(report.run_id) or {"run_id": report.run_id}
    return JSONResponse({**run, "run_id": report.run_id, "state": report.state}, status_code=202)


@describe(answers={200: BackfillRun, 404: ErrorAnswer})
@_of_connected_account
async def current(request: Request) -> JSONResponse:
    """The account's latest run."""
    run = await _backfill(request).status(request.path_params["realm"])
    if run is None:
        return JSONResponse({"error": "no backfill run of this account"}, status_code=404)
    return JSONResponse(run)


@describe(answers={200: BackfillRun, 404: ErrorAnswer})
@_of_connected_account
async def status(request: Request) -> JSONResponse:
    """A run's progress, if it is a run of the route's account."""
    report = await _backfill(request).report(request.path_params["run_id"])
    if report is None or report.get("realm_id") != request.path_params["realm"]:
        return JSONResponse({"error": "no such backfill run"}, status_code=404)
    return JSONResponse(report)


@describe(
    body=CapsBody,
    answers={202: BackfillRun, 400: ErrorAnswer, 404: ErrorAnswer, 409: ErrorAnswer},
)
@_of_connected_account
async def resume(request: Request) -> JSONResponse:
    """Continue a paused run from its cursor (202), with the caps given; 409 if none."""
    backfill, realm = _backfill(request), request.path_params["realm"]
    try:
        asked = await _asked_caps(request)
        run = await backfill.status(realm)
        caps = None
        if asked and run is not None:
            old = run.get("caps") or {}
            caps = Caps(
                qbo=asked.get("max_qbo_calls", old.get("qbo", 0)),
                crm=asked.get("max_crm_calls", old.get("crm", 0)),
            )
        return JSONResponse(await backfill.resume(realm, caps), status_code=202)
    except _BadCaps as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except (BackfillRefused, BackfillBusy) as exc:
        return _refused(exc)


@describe(answers={200: BackfillRun, 404: ErrorAnswer, 409: ErrorAnswer})
@_of_connected_account
async def cancel(request: Request) -> JSONResponse:
    """Cancel the account's active run; 409 if there is none."""
    run = await _backfill(request).cancel(request.path_params["realm"])
    if run is None:
        return JSONResponse({"error": "no active backfill of this account"}, status_code=409)
    return JSONResponse(run)


class ReconcileAnswer(BaseModel):
    """What a reconciliation pass did: the changes it put through, and the accounts it could
    not reconcile (with why) when it ran for every account."""

    changes: int
    failed_realms: dict[str, str] = Field(default_factory=dict)


def backfill_api(
    backfill: Backfill,
    guard: Guard,
    *more: BaseRoute,
    reconciliation: Reconciliation | None = None,
) -> Starlette:
    """`POST {BASE}` (start or plan), `GET {BASE}` (latest run), `GET {BASE}/{run_id}`,
    `POST {BASE}/resume` and `POST {BASE}/cancel`, for an operator or a grant for the portal,
    over `backfill`; with `reconciliation`, `POST /sweeps/reconcile` for an operator; and the
    service's `more` routes after them (made by `guard`)."""
    who = (Access.OPERATOR, Access.PORTAL)
    sweeps = [guard.route("/sweeps/reconcile", reconcile, ["POST"], Access.OPERATOR)]
    api = guard.api(
        [
            guard.route(BASE, start, ["POST"], *who),
            guard.route(BASE, current, ["GET"], *who),
            guard.route(BASE + "/resume", resume, ["POST"], *who),
            guard.route(BASE + "/cancel", cancel, ["POST"], *who),
            guard.route(BASE + "/{run_id}", status, ["GET"], *who),
            *(sweeps if reconciliation is not None else []),
            *more,
        ]
    )
    api.state.backfill = backfill
    api.state.reconciliation = reconciliation
    return api


@describe(answers={200: ReconcileAnswer})
async def reconcile(request: Request) -> JSONResponse:
    """Run the reconciliation pass now (the CDC pass the service also runs on its own): one
    account (`?realm_id=`) or every account with sync on. A QuickBooks change whose webhook
    was lost, an inactivation included, reaches the CRM."""
    reconciliation: Reconciliation = request.app.state.reconciliation
    realm = request.query_params.get("realm_id")
    if realm:
        return JSONResponse({"changes": await reconciliation.reconcile(realm)})
    passed = await reconciliation.reconcile_all()
    return JSONResponse({"changes": passed.done, "failed_realms": passed.failed})
