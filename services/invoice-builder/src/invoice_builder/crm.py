"""The CRM reads invoice-builder needs: quotes, deals, their parties and line items.

A thin adapter over the HubSpot-style REST API; it raises the kit's error types so the
consumer retries what can pass and dead-letters what cannot.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
from dealbooks_http import TokenProvider
from dealbooks_kit import PermanentError, TransientError

from invoice_builder.domain import CrmLineItem, CrmParty, QuoteFacts

_RETRYABLE = {408, 423, 425, 429, 477, 500, 502, 503, 504}


def parse_crm_datetime(raw: str | None) -> datetime | None:
    """CRM datetimes come as ISO-8601 or epoch milliseconds."""
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _decimal(raw: str | None, default: str = "0") -> Decimal:
    try:
        return Decimal(raw) if raw not in (None, "") else Decimal(default)
    except InvalidOperation:
        return Decimal(default)


class CrmReader:
    """Reads CRM records of one portal with that portal's token."""

    def __init__(self, base_url: str, tokens: TokenProvider, http: httpx.AsyncClient) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = tokens
        self._http = http

    async def _get(
        self, portal_id: str, path: str, params: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        token = await self._tokens.token(portal_id)
        try:
            response = await self._http.get(
                f"{self._base}{path}",
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.TransportError as exc:
            raise TransientError(f"CRM unreachable: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code == 401:
            await self._tokens.invalidate(portal_id, token)
            raise TransientError("CRM token rejected; a fresh one is fetched on retry")
        if response.status_code in _RETRYABLE:
            raise TransientError(f"CRM answered {response.status_code} on {path}")
        if response.status_code >= 400:
            raise PermanentError(f"CRM refused GET {path}: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body

    async def record(
        self, portal_id: str, object_type: str, object_id: str, properties: list[str]
    ) -> dict[str, str | None] | None:
        """The properties of one record, or None when it does not exist."""
        body = await self._get(
            portal_id,
            f"/crm/v3/objects/{object_type}/{object_id}",
            {"properties": ",".join(properties)},
        )
        return None if body is None else dict(body.get("properties") or {})

    async def associated_ids(
        self, portal_id: str, from_type: str, from_id: str, to_type: str
    ) -> list[str]:
        """Ids of the records of `to_type` associated with one record."""
        body = await self._get(
            portal_id, f"/crm/v4/objects/{from_type}/{from_id}/associations/{to_type}"
        )
        return [str(r["toObjectId"]) for r in (body or {}).get("results", [])]

    async def quote(self, portal_id: str, quote_id: str) -> QuoteFacts | None:
        """A quote's status and expiry, or None when it does not exist."""
        props = await self.record(
            portal_id,
            "quotes",
            quote_id,
            ["hs_status", "hs_expiration_date", "hs_title", "hs_currency"],
        )
        if props is None:
            return None
        return QuoteFacts(
            quote_id=quote_id,
            status=props.get("hs_status") or None,
            expires_at=parse_crm_datetime(props.get("hs_expiration_date")),
            title=props.get("hs_title"),
            currency=props.get("hs_currency"),
        )

    async def line_items(
        self, portal_id: str, parent_type: str, parent_id: str, currency: str
    ) -> list[CrmLineItem]:
        """The line items of a deal or a quote, in id order."""
        items: list[CrmLineItem] = []
        ids = await self.associated_ids(portal_id, parent_type, parent_id, "line_items")
        for line_item_id in sorted(ids, key=lambda x: x.rjust(20, "0")):
            props = await self.record(
                portal_id,
                "line_items",
                line_item_id,
                ["name", "description", "quantity", "price", "hs_product_id",
                 "hs_line_item_currency_code"],
            )  # fmt: skip
            if props is None:
                continue
            items.append(
                CrmLineItem(
                    line_item_id=line_item_id,
                    name=props.get("name"),
                    quantity=_decimal(props.get("quantity"), "1"),
                    price=_decimal(props.get("price")),
                    currency=props.get("hs_line_item_currency_code") or currency,
                    crm_product_id=props.get("hs_product_id") or None,
                    description=props.get("description"),
                )
            )
        return items

    async def party(self, portal_id: str, object_type: str, object_id: str) -> CrmParty:
        """The contact and company of a deal or quote (the first associated of each)."""
        contacts = await self.associated_ids(portal_id, object_type, object_id, "contacts")
        companies = await self.associated_ids(portal_id, object_type, object_id, "companies")
        contact = (
            await self.record(
                portal_id, "contacts", contacts[0], ["email", "firstname", "lastname"]
            )
            if contacts
            else None
        ) or {}
        company = (
            await self.record(portal_id, "companies", companies[0], ["name"]) if companies else None
        ) or {}
        return CrmParty(
            email=contact.get("email"),
            first_name=contact.get("firstname"),
            last_name=contact.get("lastname"),
            company_name=company.get("name"),
            crm_contact_id=contacts[0] if contacts else None,
            crm_company_id=companies[0] if companies else None,
        )

    async def company_currency(self, portal_id: str) -> str | None:
        """The portal's company currency."""
        body = await self._get(portal_id, "/settings/v3/currencies/company-currency")
        return None if body is None else str(body.get("id") or "") or None
