"""status-tracker's HTTP surface: what a deal shows and why, and the invoices of a deal,
contact or company (for a person signed in for the record's portal; the console asks for
people and for the CRM app card), and the sweep triggers (for operators)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dealbooks_contracts import InvoiceStage
from dealbooks_kit import Access, Guard, audit_routes
from dealbooks_kit.openapi import ErrorAnswer, describe
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from status_tracker.views import OBJECT_TYPES

if TYPE_CHECKING:
    from status_tracker.app import Service


class ShownInvoice(BaseModel):
    """The invoice a deal's properties show."""

    realm_id: str
    invoice_id: str


class LastPayment(BaseModel):
    amount: str
    date: str


class RecordInvoice(BaseModel):
    """One invoice of a record, as the console and the app card list it."""

    realm_id: str
    invoice_id: str
    doc_number: str | None = None
    customer_name: str | None = None
    total: str
    balance: str
    currency: str | None = None
    stage: InvoiceStage
    due_date: str | None = None
    txn_date: str | None = None
    updated_at: str | None = None
    last_payment: LastPayment | None = None
    qbo_url: str


class RecordAnswer(BaseModel):
    """A deal, contact or company as a page names it."""

    object_type: str
    object_id: str
    name: str | None = Field(
        None,
        description="The record's name in the CRM (a deal's name, a contact's full name or "
        "e-mail, a company's name or domain); null when the CRM does not say. With its "
        "invoices, only when asked (`include=name`).",
    )


class RecordNamesAnswer(BaseModel):
    """Records of one type as a list names them."""

    object_type: str
    names: dict[str, str | None] = Field(
        description="Each asked id's name in the CRM; null where the CRM does not say."
    )


class RecordInvoicesAnswer(RecordAnswer):
    """The invoices of a deal, contact or company, newest first."""

    shown: ShownInvoice | None = None
    invoices: list[RecordInvoice]


def _plain(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in doc.items()
            if k not in {"_id", "outbox"}}  # fmt: skip


def _no_such_type() -> JSONResponse:
    return JSONResponse(
        {"error": f"object_type is one of {', '.join(OBJECT_TYPES)}"}, status_code=404
    )


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def deal(request: Request) -> JSONResponse:
    portal_id, deal_id = request.path_params["portal_id"], request.path_params["deal_id"]
    projection, invoices = await _service(request).store.deal(portal_id, deal_id)
    return JSONResponse(
        {
            "projection": _plain(projection),
            "invoices": [_plain(d) for d in invoices],
        }
    )


@describe(answers={200: RecordInvoicesAnswer, 404: ErrorAnswer})
async def record_invoices(request: Request) -> JSONResponse:
    """Every invoice tracked for a deal, contact or company of the portal, newest first; for
    a deal also the one its properties show. A record with none lists none. `include=name`
    adds the record's name, read from the CRM (the app card, shown on the record, does not
    ask for it)."""
    params = request.path_params
    object_type = params["object_type"]
    if object_type not in OBJECT_TYPES:
        return _no_such_type()
    records = _service(request).records
    answer = await records.of(params["portal_id"], object_type, params["object_id"])
    if "name" in request.query_params.getlist("include"):
        answer["name"] = await records.name_of(
            params["portal_id"], object_type, params["object_id"]
        )
    return JSONResponse(answer)


@describe(answers={200: RecordAnswer, 404: ErrorAnswer})
async def record(request: Request) -> JSONResponse:
    """A deal, contact or company of the portal, named as the CRM shows it (one CRM read, no
    invoices): for a page about the record that lists something else."""
    params = request.path_params
    object_type, object_id = params["object_type"], params["object_id"]
    if object_type not in OBJECT_TYPES:
        return _no_such_type()
    name = await _service(request).records.name_of(params["portal_id"], object_type, object_id)
    return JSONResponse({"object_type": object_type, "object_id": object_id, "name": name})


MAX_NAMED = 100


@describe(answers={200: RecordNamesAnswer, 400: ErrorAnswer, 404: ErrorAnswer})
async def record_names(request: Request) -> JSONResponse:
    """Deals, contacts or companies of the portal named as the CRM shows them, `ids` a comma-
    separated list of at most 100: one CRM read, for a list of records (approvals, tasks)."""
    params = request.path_params
    object_type = params["object_type"]
    if object_type not in OBJECT_TYPES:
        return _no_such_type()
    ids = [i.strip() for i in request.query_params.get("ids", "").split(",") if i.strip()]
    if len(ids) > MAX_NAMED:
        return JSONResponse({"error": f"at most {MAX_NAMED} ids at once"}, status_code=400)
    names = await _service(request).records.names_of(params["portal_id"], object_type, ids)
    return JSONResponse({"object_type": object_type, "names": names})


async def invoice(request: Request) -> JSONResponse:
    params = request.path_params
    doc = await _service(request).store.tracked(params["realm_id"], params["invoice_id"])
    # An invoice is tracked for the portal whose deal it belongs to; to any other portal it
    # does not exist.
    if doc is None or doc.get("portal_id") != params["portal_id"]:
        return JSONResponse({"error": "not tracked"}, status_code=404)
    return JSONResponse(_plain(doc))


async def overdue(request: Request) -> JSONResponse:
    swept = await _service(request).passes.overdue_sweep()
    return JSONResponse({"moved": swept.done, "failed_portals": swept.failed})


async def reconcile(request: Request) -> JSONResponse:
    passes = _service(request).passes
    realm = request.query_params.get("realm_id")
    if realm:
        return JSONResponse({"changes": await passes.reconcile(realm)})
    passed = await passes.reconcile_all()
    return JSONResponse({"changes": passed.done, "failed_realms": passed.failed})


def build_api(service: Service, guard: Guard) -> Starlette:
    """Read routes (a grant for the route's portal, or the CRM's signature for the app card)
    and sweep triggers (an operator)."""
    portal = "/portals/{portal_id}"
    api = guard.api(
        [
            guard.route(portal + "/deals/{deal_id}", deal, ["GET"], Access.PORTAL),
            guard.route(portal + "/records/{object_type}", record_names, ["GET"], Access.PORTAL),
            guard.route(
                portal + "/records/{object_type}/{object_id}", record, ["GET"], Access.PORTAL
            ),
            guard.route(
                portal + "/records/{object_type}/{object_id}/invoices",
                record_invoices,
                ["GET"],
                Access.PORTAL,
            ),
            guard.route(
                portal + "/accounts/{realm_id}/invoices/{invoice_id}",
                invoice,
                ["GET"],
                Access.PORTAL,
            ),
            guard.route("/sweeps/overdue", overdue, ["POST"], Access.OPERATOR),
            guard.route("/sweeps/reconcile", reconcile, ["POST"], Access.OPERATOR),
            *audit_routes(guard, service.runtime.use_audit()),
        ]
    )
    api.state.service = service
    return api
