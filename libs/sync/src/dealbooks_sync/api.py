"""HTTP routes of a sync service: the operator-started backfill and its dry-run count."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dealbooks_sync.engine import Backfill, BackfillRefused


def backfill_api(backfill: Backfill) -> Starlette:
    """`POST /accounts/{realm}/backfill?dry_run=true` counts; without it, starts a run (202);
    `GET /accounts/{realm}/backfill/{run_id}` reports progress."""

    async def start(request: Request) -> JSONResponse:
        realm = request.path_params["realm"]
        dry_run = request.query_params.get("dry_run", "false").lower() in {"1", "true", "yes"}
        try:
            if dry_run:
                return JSONResponse(await backfill.dry_run(realm))
            report = await backfill.start(realm)
        except BackfillRefused as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"run_id": report.run_id, "state": report.state}, status_code=202)

    async def status(request: Request) -> JSONResponse:
        report = await backfill.report(request.path_params["run_id"])
        if report is None:
            return JSONResponse({"error": "no such backfill run"}, status_code=404)
        return JSONResponse(report)

    return Starlette(
        routes=[
            Route("/accounts/{realm}/backfill", start, methods=["POST"]),
            Route("/accounts/{realm}/backfill/{run_id}", status, methods=["GET"]),
        ]
    )
