"""Making a portal ready for invoicing, over HTTP against the CRM sandbox."""

from __future__ import annotations

import uuid

import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal
from dealbooks_contracts import InvoiceStage
from dealbooks_crm import CrmAuthError, CrmClient
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


async def test_event_template_is_found_by_name_instead_of_created_twice(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    app = crm_sandbox.app()
    template = {
        "name": f"Template {uuid.uuid4().hex[:8]}",
        "objectType": "deals",
        "headerTemplate": "Paid {{amount}}",
        "tokens": [{"name": "amount", "label": "Amount", "type": "number"}],
    }
    async with client_for(crm_sandbox, crm_portal) as client:
        first = await client.ensure_event_template(str(app["appId"]), app["developerKey"], template)
        second = await client.ensure_event_template(
            str(app["appId"]), app["developerKey"], template
        )
        with pytest.raises(CrmAuthError):
            await client.ensure_event_template(str(app["appId"]), "wrong-key", template)
    names = [t["name"] for t in crm_sandbox.app()["eventTemplates"]]
    assert first == second
    assert names.count(template["name"]) == 1
