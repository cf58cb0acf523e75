"""What invoice-builder reads from the CRM: a quote's facts, the line items and the party
(contact and company) of a deal or quote, a deal's name and quotes, and its owner."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from dealbooks_contracts import RejectionCode
from dealbooks_crm import CrmAuthError, CrmClient, CrmNotFound, CrmObject
from dealbooks_kit import Failure

from invoice_builder.approval import Approver
from invoice_builder.deps import refused
from invoice_builder.domain import (
    CrmLineItem,
    CrmOwner,
    CrmParty,
    QuoteFacts,
    Rejection,
    sorted_owners,
)

_QUOTE_FACTS = ["hs_status", "hs_expiration_date", "hs_title", "hs_currency"]
# How many of a deal's quotes the wizard offers.
QUOTES_SHOWN = 20


class OwnersUnreadable(Exception):
    """The CRM refuses to say who an owner is (a missing scope); the message says what to do."""


def _unreadable(otherwise: str) -> OwnersUnreadable:
    """A missing scope, as what to do about it."""
    return OwnersUnreadable(
        "dealbooks cannot read the CRM's owners: the app's install lacks "
        f"crm.objects.owners.read. Install the app again to grant it, {otherwise}."
    )


@dataclass(frozen=True)
class DealQuotes:
    """A deal's name in the CRM (None when it has none) and its quotes' facts."""

    name: str | None
    quotes: list[QuoteFacts]


@dataclass
class CrmReads:
    crm: CrmClient

    async def quote_facts(self, portal_id: str, quote_id: str) -> QuoteFacts | None:
        """A quote's status and expiry, or None when it does not exist."""
        try:
            quote = await self.crm.portal(portal_id).get(
                "quotes", quote_id, properties=_QUOTE_FACTS
            )
        except CrmNotFound:
            return None
        return QuoteFacts(
            quote_id=quote_id,
            status=quote.get("hs_status"),
            expires_at=_crm_datetime(quote.get("hs_expiration_date")),
            title=quote.get("hs_title"),
            currency=quote.get("hs_currency"),
        )  # fmt: skip

    async def deal_quotes(self, portal_id: str, deal_id: str) -> DealQuotes:
        """The deal's name and the facts of its quotes (the first `QUOTES_SHOWN`), in one read
        of the deal; no name and no quotes when it is gone."""
        try:
            deal = await self.crm.portal(portal_id).get(
                "deals", deal_id, properties=["dealname"], associations=["quotes"]
            )
        except CrmNotFound:
            return DealQuotes(name=None, quotes=[])
        ids = deal.associated_ids("quotes")[:QUOTES_SHOWN]
        found = await asyncio.gather(*(self.quote_facts(portal_id, q) for q in ids))
        name = (deal.get("dealname") or "").strip() or None
        return DealQuotes(name=name, quotes=[q for q in found if q is not None])

    async def _parts(
        self, portal_id: str, parent_type: str, parent_id: str
    ) -> tuple[list[CrmObject], list[CrmObject], list[CrmObject]]:
        """Line items, contacts and companies of a deal or quote (empty when it is gone)."""
        crm = self.crm.portal(portal_id)
        try:
            if parent_type == "quotes":
                quote = await crm.read_quote(parent_id)
                return quote.line_items, quote.contacts, quote.companies
            deal = await crm.read_deal(parent_id)
        except CrmNotFound:
            return [], [], []
        return deal.line_items, deal.contacts, deal.companies

    async def lines(
        self, portal_id: str, parent_type: str, parent_id: str, currency: str
    ) -> list[CrmLineItem]:
        """The line items of a deal or a quote, in id order."""
        items, _, _ = await self._parts(portal_id, parent_type, parent_id)
        ordered = sorted(items, key=lambda li: li.id.rjust(20, "0"))
        return [_line_item(li, currency) for li in ordered]

    async def party(self, portal_id: str, parent_type: str, parent_id: str) -> CrmParty:
        """The contact and company of a deal or quote (the first associated of each)."""
        _, contacts, companies = await self._parts(portal_id, parent_type, parent_id)
        contact = contacts[0] if contacts else None
        company = companies[0] if companies else None
        return CrmParty(
            email=contact.get("email") if contact else None,
            first_name=contact.get("firstname") if contact else None,
            last_name=contact.get("lastname") if contact else None,
            company_name=company.get("name") if company else None,
            crm_contact_id=contact.id if contact else None,
            crm_company_id=company.id if company else None,
        )

    async def approver(self, portal_id: str, owner_id: str) -> Approver | None:
        """The CRM user behind an owner (None: the portal has no such owner). Reading owners
        needs `crm.objects.owners.read`; without it this refuses with what to do."""
        try:
            owner = await self.crm.portal(portal_id).owner(owner_id)
        except CrmAuthError as exc:
            if exc.expired:
                raise
            raise _unreadable("or let anyone approve in the approval settings") from exc
        if owner is None:
            return None
        user = owner.get("userId")
        return Approver(owner_id, str(user) if user is not None else None, owner.get("email"))

    async def owners(self, portal_id: str) -> list[CrmOwner]:
        """The portal's owners, by name, to choose an approver or a task owner from; without
        `crm.objects.owners.read` this refuses with what to do."""
        try:
            found = await self.crm.portal(portal_id).owners()
        except CrmAuthError as exc:
            if exc.expired:
                raise
            raise _unreadable("or type the owner's id") from exc
        return sorted_owners(found)

    async def deal_owner(self, portal_id: str, deal_id: str) -> str | None:
        """The deal's owner (its `hubspot_owner_id`), who approves when no approver is set."""
        try:
            deal = await self.crm.portal(portal_id).get(
                "deals", deal_id, properties=["hubspot_owner_id"]
            )
        except CrmNotFound:
            raise refused(
                Rejection(
                    RejectionCode.DEAL_NOT_FOUND,
                    f"Deal {deal_id} does not exist in the CRM.",
                    field="deal_id",
                ),
                Failure.TARGET_GONE,
            ) from None
        return deal.get("hubspot_owner_id") or None


def _crm_datetime(raw: str | None) -> datetime | None:
    """CRM datetimes come as ISO-8601 or epoch milliseconds."""
    if not raw:
        return None
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _line_item(item: CrmObject, currency: str) -> CrmLineItem:
    quantity, price = item.decimal("quantity"), item.decimal("price")
    return CrmLineItem(
        line_item_id=item.id,
        name=item.get("name"),
        quantity=Decimal("1") if quantity is None else quantity,
        price=Decimal("0") if price is None else price,
        currency=item.get("hs_line_item_currency_code") or currency,
        crm_product_id=item.get("hs_product_id"),
        description=item.get("description"),
    )
