"""The CRM writes status-tracker makes: deal properties and payment timeline events.

A thin adapter over the HubSpot-style REST API; it raises the kit's error types so the
consumer retries what can pass and dead-letters what cannot.
"""

from __future__ import annotations

from typing import Any

import httpx
from dealbooks_http import TokenProvider
from dealbooks_kit import PermanentError, TransientError

from status_tracker import domain

_RETRYABLE = {408, 423, 425, 429, 477, 500, 502, 503, 504}
GROUP = "acct_invoicing"

PROPERTY_DEFINITIONS: list[dict[str, Any]] = [
    {"name": domain.AMOUNT_BILLED, "label": "Amount billed", "type": "number",
     "fieldType": "number"},
    {"name": domain.INVOICE_NUMBER, "label": "Invoice number", "type": "string",
     "fieldType": "text"},
    {"name": domain.RECIPIENT, "label": "Invoice recipient", "type": "string",
     "fieldType": "text"},
    {"name": domain.STATUS, "label": "Invoice status", "type": "enumeration", "fieldType": "select",
     "options": [{"label": label, "value": stage.value, "displayOrder": i, "hidden": False}
                 for i, (stage, label) in enumerate(domain.STAGE_LABELS.items())]},
    {"name": domain.DUE_DATE, "label": "Invoice due date", "type": "date", "fieldType": "date"},
]  # fmt: skip


class CrmWriter:
    """Writes to the CRM of one portal with that portal's token."""

    def __init__(self, base_url: str, tokens: TokenProvider, http: httpx.AsyncClient) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http
        self._prepared: set[str] = set()
        self._currency: dict[str, str | None] = {}

    async def _call(
        self, portal_id: str, method: str, path: str, body: Any = None, ok_conflict: bool = False
    ) -> Any:
        token = await self._tokens.token(portal_id)
        try:
            response = await self._http.request(
                method,
                f"{self._base}{path}",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TransportError as exc:
            raise TransientError(f"CRM unreachable: {exc}") from exc
        if response.status_code == 401:
            await self._tokens.invalidate(portal_id, token)
            raise TransientError("CRM token rejected; a fresh one is fetched on retry")
        if response.status_code in _RETRYABLE:
            raise TransientError(f"CRM answered {response.status_code} on {method} {path}")
        if response.status_code == 409 and ok_conflict:
            return None
        if response.status_code >= 400:
            raise PermanentError(
                f"CRM refused {method} {path}: {response.status_code} {response.text[:500]}"
            )
        return response.json() if response.content else None

    async def company_currency(self, portal_id: str) -> str | None:
        """The portal's company currency (cached: it does not change)."""
        if portal_id not in self._currency:
            body = await self._call(portal_id, "GET", "/settings/v3/currencies/company-currency")
            self._currency[portal_id] = (body or {}).get("id") or None
        return self._currency[portal_id]

    async def prepare_deal_properties(self, portal_id: str) -> None:
        """Create the invoicing group and properties on deals once per portal (idempotent)."""
        if portal_id in self._prepared:
            return
        existing = await self._call(portal_id, "GET", "/crm/v3/properties/deals")
        names = {p.get("name") for p in (existing or {}).get("results", [])}
        missing = [p for p in PROPERTY_DEFINITIONS if p["name"] not in names]
        if missing:
            await self._call(
                portal_id,
                "POST",
                "/crm/v3/properties/deals/groups",
                {"name": GROUP, "label": "Invoicing (QuickBooks)", "displayOrder": -1},
                ok_conflict=True,
            )
            for definition in missing:
                await self._call(
                    portal_id,
                    "POST",
                    "/crm/v3/properties/deals",
                    {"groupName": GROUP, **definition},
                    ok_conflict=True,
                )
        self._prepared.add(portal_id)

    async def update_deal(self, portal_id: str, deal_id: str, properties: dict[str, str]) -> None:
        """Write properties on a deal (a PATCH: writing the same values twice is harmless)."""
        await self.prepare_deal_properties(portal_id)
        await self._call(
            portal_id, "PATCH", f"/crm/v3/objects/deals/{deal_id}", {"properties": properties}
        )

    async def timeline_event(self, portal_id: str, event: dict[str, Any]) -> None:
        """Put an event on a record's timeline; its id makes a repeat land on the same event."""
        await self._call(portal_id, "POST", "/integrators/timeline/v3/events", event)
