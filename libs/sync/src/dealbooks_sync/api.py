"""HTTP routes of a sync service: the backfill and its dry-run count, per portal and account.

An operator, or an admin of the portal (a portal grant naming it), may start one; the account
must be connected to the route's portal, else the answer is 404 and nothing is started."""

from __future__ import annotations

from dealbooks_kit import Access, Guard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from dealbooks_sync.engine import Backfill, BackfillRefused

BASE = "/portals/{portal_id}/accounts/{realm}/backfill"


def _backfill(request: Request) -> Backfill:
    backfill: Backfill = request.app.state.backfill
    return backfill


async def _connected(request: Request) -> bool:
    """Whether the route's account is connected to the route's portal (as far as the mapping
    sets this service received say)."""
    backfill = _backfill(request)
    mset = await backfill.deps.sets.get(request.path_params["realm"], backfill.kind.object_type)
    return mset is not None and mset.portal_id == request.path_params["portal_id"]


def _not_connected() -> JSONResponse:
    return JSONResponse({"error": "account not connected to this portal"}, status_code=404)


async def start(request: Request) -> JSONResponse:
    """`?dry_run=true` counts what a run would read; without it, starts a run (202)."""
    if not await _connected(request):
        return _not_connected()
    backfill, realm = _backfill(request), request.path_params["realm"]
    dry_run = request.query_params.get("dry_run", "false").lower() in {"1", "true", "yes"}
    try:
        if dry_run:
            return JSONResponse(await backfill.dry_run(realm))
        report = await backfill.start(realm)
    except BackfillRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"run_id": report.run_id, "state": report.state}, status_code=202)


async def status(request: Request) -> JSONResponse:
    """A run's progress, if it is a run of the route's account."""
    if not await _connected(request):
        return _not_connected()
    report = await _backfill(request).report(request.path_params["run_id"])
    if report is None or report.get("realm_id") != request.path_params["realm"]:
        return JSONResponse({"error": "no such backfill run"}, status_code=404)
    return JSONResponse(report)


def backfill_api(backfill: Backfill, guard: Guard) -> Starlette:
    """`POST {BASE}` and `GET {BASE}/{run_id}`, for an operator or a grant for the portal."""
    who = (Access.OPERATOR, Access.PORTAL)
    api = guard.api(
        [
            guard.route(BASE, start, ["POST"], *who),
            guard.route(BASE + "/{run_id}", status, ["GET"], *who),
        ]
    )
    api.state.backfill = backfill
    return api
