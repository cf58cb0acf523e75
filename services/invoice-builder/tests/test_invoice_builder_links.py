"""invoice-builder link requests: crm.invoice-link-requested for an existing QuickBooks invoice
-> invoice.request-rejected naming the CRM record the link was asked from, on real Kafka and a
real MongoDB-wire server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from dealbooks_contracts import (
    CrmObjectType,
    CrmRecordRef,
    InvoiceLinkRequested,
    InvoiceRequestKind,
    RejectionCode,
)

Harness = Any  # the harness fixture of conftest.py

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

MISSING_INVOICE = "987654"  # an id no sandbox company has


def link_request(object_type: CrmObjectType, object_id: str) -> InvoiceLinkRequested:
    return InvoiceLinkRequested(
        request_id=uuid.uuid4(),
        qbo_invoice_id=MISSING_INVOICE,
        target=CrmRecordRef(object_type=object_type, object_id=object_id),
    )


async def test_refused_link_to_a_contact_names_the_contact_as_the_rejections_target(
    builder: Harness, qbo_sandbox: Any
) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = link_request(CrmObjectType.CONTACT, "contact-51")
    await builder.publish(request, tenant)

    outcome = await builder.outcome(request.request_id)
    assert outcome["status"] == "rejected"
    [rejected] = await builder.events(
        "invoice.request-rejected", lambda e: e.data.request_id == request.request_id
    )
    assert rejected.data.request_kind is InvoiceRequestKind.LINK
    assert rejected.data.code is RejectionCode.INVOICE_NOT_FOUND
    assert rejected.data.field == "qbo_invoice_id"
    assert rejected.data.target == CrmRecordRef(
        object_type=CrmObjectType.CONTACT, object_id="contact-51"
    )
    assert rejected.data.deal_id is None


async def test_refused_link_to_a_deal_names_the_deal(builder: Harness, qbo_sandbox: Any) -> None:
    tenant = await builder.us_tenant(qbo_sandbox)
    request = link_request(CrmObjectType.DEAL, "deal-77")
    await builder.publish(request, tenant)

    [rejected] = await builder.events(
        "invoice.request-rejected", lambda e: e.data.request_id == request.request_id
    )
    assert rejected.data.code is RejectionCode.INVOICE_NOT_FOUND
    assert rejected.data.deal_id == "deal-77"
    assert rejected.data.target == request.target
