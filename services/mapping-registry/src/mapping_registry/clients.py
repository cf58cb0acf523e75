"""The two questions the registry asks outside: which properties a portal has, and what a
few QBO records look like (for the dry run)."""

from __future__ import annotations

from typing import Any

from dealbooks_contracts import SyncObjectType
from dealbooks_crm import CrmClient
from dealbooks_qbo import QboClient

from mapping_registry.domain import CrmProperty

_CRM_OBJECT = {SyncObjectType.CONTACTS: "contacts", SyncObjectType.PRODUCTS: "products"}
_QBO_ENTITY = {SyncObjectType.CONTACTS: "Customer", SyncObjectType.PRODUCTS: "Item"}


class PortalProperties:
    """The CRM properties of a portal, from the properties API."""

    def __init__(self, crm: CrmClient) -> None:
        self._crm = crm

    async def get(self, portal_id: str, object_type: SyncObjectType) -> dict[str, CrmProperty]:
        path = self._crm.paths.properties(_CRM_OBJECT[object_type])
        response = await self._crm.request(portal_id, "GET", path)
        out: dict[str, CrmProperty] = {}
        for raw in response.json().get("results", []):
            if raw.get("archived"):
                continue
            meta = raw.get("modificationMetadata") or {}
            out[raw["name"]] = CrmProperty(
                name=raw["name"],
                type=raw.get("type", "string"),
                read_only=bool(meta.get("readOnlyValue")) or bool(raw.get("calculated")),
                label=raw.get("label") or raw["name"],
            )
        return out


class QboSamples:
    """A few QBO records of a kind, as QBO returns them."""

    def __init__(self, qbo: QboClient) -> None:
        self._qbo = qbo

    async def get(self, realm_id: str, object_type: SyncObjectType, n: int) -> list[dict[str, Any]]:
        statement = f"SELECT * FROM {_QBO_ENTITY[object_type]} MAXRESULTS {n}"  # noqa: S608
        page = await self._qbo.company(realm_id).query_page(statement)
        return [row.to_qbo() if hasattr(row, "to_qbo") else dict(row) for row in page.rows]
