"""Making a portal ready for dealbooks' invoicing: the deal properties defined in
`dealbooks_contracts.crm_app`, created where missing."""

from __future__ import annotations

from dealbooks_contracts import crm_app

from dealbooks_crm._client import PortalCrm
from dealbooks_crm._models import Property, PropertyDefinition

INVOICE_DEAL_PROPERTIES: list[PropertyDefinition] = [
    PropertyDefinition.model_validate(p) for p in crm_app.INVOICE_DEAL_PROPERTIES
]


async def ensure_invoice_properties(portal: PortalCrm) -> list[Property]:
    """The invoicing property group and deal properties exist in the portal (idempotent)."""
    await portal.ensure_property_group("deals", crm_app.INVOICE_GROUP, crm_app.INVOICE_GROUP_LABEL)
    return await portal.ensure_properties("deals", INVOICE_DEAL_PROPERTIES)
