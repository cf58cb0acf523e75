"""Attach an existing QuickBooks invoice to a CRM record: published as
`crm.invoice-link-requested` and answered 202 with the request id (polled like a draft's);
`invoice_builder.links` handles it."""

from __future__ import annotations

import uuid

from dealbooks_contracts import CrmRecordRef, Envelope, InvoiceLinkRequested, Tenant
from pydantic import ValidationError as PydanticValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from invoice_builder.api.common import (
    ACCOUNT,
    Router,
    connected,
    error,
    json_object,
    requester,
    service,
)
from invoice_builder.deps import SOURCE

router = Router()


@router.route("POST", ACCOUNT + "/invoice-links")
async def link(request: Request) -> Response:
    company = await connected(request)
    body = await json_object(request)
    try:
        data = InvoiceLinkRequested(
            request_id=uuid.uuid4(),
            qbo_invoice_id=str(body["qbo_invoice_id"]),
            target=CrmRecordRef.model_validate(body["target"]),
            requested_by=requester(request, body.get("requested_by")),
        )
    except (KeyError, PydanticValidationError) as exc:
        return error(400, f"invalid request: {exc}")
    svc = service(request)
    await svc.store.mark_pending(str(data.request_id), company.portal_id, company.realm_id, None)
    tenant = Tenant(portal_id=company.portal_id, account_id=company.realm_id)
    await svc.runtime.publisher.publish(Envelope.build(data, source=SOURCE, tenant=tenant))
    return JSONResponse({"request_id": str(data.request_id), "status": "pending"}, 202)
