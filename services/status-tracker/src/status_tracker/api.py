"""status-tracker's HTTP surface: what a deal shows and why, and manual sweep triggers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from status_tracker.app import Service


def _plain(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in doc.items()
            if k not in {"_id", "outbox"}}  # fmt: skip


def build_api(service: Service) -> Starlette:
    """Read endpoints and sweep triggers (the demo and operators use them)."""
    store = service.store
    tracker = service.handlers

    async def deal(request: Request) -> JSONResponse:
        portal_id, deal_id = request.path_params["portal_id"], request.path_params["deal_id"]
        projection, invoices = await store.deal(portal_id, deal_id)
        return JSONResponse(
            {
                "projection": _plain(projection),
                "invoices": [_plain(d) for d in invoices],
            }
        )

    async def invoice(request: Request) -> JSONResponse:
        doc = await store.tracked(
            request.path_params["realm_id"], request.path_params["invoice_id"]
        )
        if doc is None:
            return JSONResponse({"error": "not tracked"}, status_code=404)
        return JSONResponse(_plain(doc))

    async def overdue(request: Request) -> JSONResponse:
        return JSONResponse({"moved": await tracker.overdue_sweep()})

    async def reconcile(request: Request) -> JSONResponse:
        realm = request.query_params.get("realm_id")
        seen = await tracker.reconcile(realm) if realm else await tracker.reconcile_all()
        return JSONResponse({"changes": seen})

    return Starlette(
        routes=[
            Route("/portals/{portal_id}/deals/{deal_id}", deal, methods=["GET"]),
            Route("/accounts/{realm_id}/invoices/{invoice_id}", invoice, methods=["GET"]),
            Route("/sweeps/overdue", overdue, methods=["POST"]),
            Route("/sweeps/reconcile", reconcile, methods=["POST"]),
        ]
    )
