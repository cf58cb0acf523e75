"""Making a portal ready for invoicing, over HTTP against the CRM sandbox."""

from __future__ import annotations

import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal
from dealbooks_contracts import InvoiceStage
from dealbooks_crm import CrmClient
from dealbooks_crm.invoicing import ensure_invoice_properties
from dealbooks_http import RetryPolicy, StaticTokenProvider

pytestmark = pytest.mark.integration


def client_for(sandbox: CrmSandbox, portal: SandboxPortal) -> CrmClient:
    return CrmClient(
        StaticTokenProvider({portal.key: portal.access_token}),
        base_url=sandbox.base_url,
        retry=RetryPolicy(attempts=3, wait_initial=0.01, wait_max=0.05),
    )


async def test_invoice_properties_offer_every_stage_and_ensuring_twice_changes_nothing(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    async with client_for(crm_sandbox, crm_portal) as client:
        portal = client.portal(crm_portal.portal_id)
        first = await ensure_invoice_properties(portal)
        second = await ensure_invoice_properties(portal)
    status = {p.name: p for p in second}["acct_invoice_status"]
    assert [p.name for p in first] == [p.name for p in second]
    assert [o.value for o in status.options] == [stage.value for stage in InvoiceStage]
