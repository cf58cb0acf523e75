"""The wizard API a CRM card and the console call, per portal: one module of small route
functions a resource, over the service object (`invoice_builder.service`).

    accounts.py          the portal's companies; customers, items, tax codes, terms, invoices
    draft.py             what the wizard starts from for a deal (its quotes and lines)
    invoice_requests.py  preview, submit (crm.invoice-requested), the outcome
    links.py             attach an existing invoice to a CRM record
    rules.py             auto-draft rules
    approvals.py         invoice approval (QuickBooks Online Advanced)
    owners.py            the portal's CRM owners, by name

Every route needs a portal grant naming the route's portal (`Access.PORTAL`); a company
connected to another portal, or another portal's rule or request, is a 404.
"""

from __future__ import annotations

from dealbooks_contracts import RejectionCode
from dealbooks_kit import (
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Guard,
    audit_routes,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from invoice_builder.api import (
    accounts,
    approvals,
    draft,
    invoice_requests,
    links,
    owners,
    rules,
)
from invoice_builder.api.common import NOT_CONNECTED, BadBody, NotConnected, error
from invoice_builder.service import Service
from invoice_builder.short_lists import ShortLists


async def bad_body(request: Request, exc: Exception) -> Response:
    return error(400, str(exc))


async def not_connected(request: Request, exc: Exception) -> Response:
    return error(404, NOT_CONNECTED)


async def crm_not_connected(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CrmPortalNotConfigured | CrmPortalNotInstalled)
    return error(409, exc.reason, code=RejectionCode.CRM_NOT_CONNECTED.value)


def build_api(service: Service, guard: Guard) -> Starlette:
    """The wizard routes over one service, each open to a grant for the route's portal."""
    base = "/portals/{portal_id}"
    api = guard.api(
        [
            *accounts.router.mount(guard, base),
            *draft.router.mount(guard, base),
            *invoice_requests.router.mount(guard, base),
            *links.router.mount(guard, base),
            *rules.router.mount(guard, base),
            *approvals.router.mount(guard, base),
            *owners.router.mount(guard, base),
            *audit_routes(guard, service.runtime.use_audit()),
        ],
        exception_handlers={
            BadBody: bad_body,
            NotConnected: not_connected,
            CrmPortalNotConfigured: crm_not_connected,
            CrmPortalNotInstalled: crm_not_connected,
        },
    )
    api.state.service = service
    api.state.lists = ShortLists()
    return api
