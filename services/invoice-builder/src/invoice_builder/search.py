"""The wizard's searches, answered by a few bounded QuickBooks queries each.

No search reads a company's whole customer, item or invoice list: a company with 50,000
customers and 100,000 invoices is asked for at most one page (50 rows, plus one to know whether
there are more) per query, and each search sends one to four queries.

Why QuickBooks queries and not a local copy of the lists. A copy would need, per company, a
backfill of every customer and item (50 calls at 50,000 customers), a read of each changed
record on every `qbo.entity-changed` event (contact-sync and product-sync already pay for that
once each), a CDC sweep for missed events, and it would still lag behind QuickBooks. What it
would buy is small: QuickBooks filters every field a search needs (Intuit's reference marks
`DisplayName`, `CompanyName`, `GivenName`, `FamilyName`, `PrimaryEmailAddr`, `Item.Name`,
`DocNumber`, `CustomerRef`, `TxnDate` filterable), and a substring search over a copy would be
a scan of the collection on the local MongoDB-wire server anyway. So the answers are
QuickBooks' own, current to the second, at the cost of a few calls of the company's budget
(about 6.7 calls/s per company in `dealbooks_qbo.default_budget`).

The query forms used, all documented (data-queries page; `dealbooks_qbo.select` refuses the
rest before sending): `=`, `IN (...)`, `LIKE '%text%'` (only `%` is a wildcard, so the user's
own `%` is dropped), `AND`, `ORDERBY DisplayName | Name | TxnDate DESC`, `STARTPOSITION`,
`MAXRESULTS` up to 1000. QuickBooks has no OR, so where a search means "this field or that"
it sends one query per field, side by side, and merges the answers here.

What QuickBooks cannot do, and what is done instead:
- OR across fields: parallel queries, merged (customer search: display name, company name,
  and the e-mail address when the text is one; invoice search: number, customer name).
- A customer by part of an e-mail address (a domain): not offered; a whole address is looked
  up by equality. `PrimaryEmailAddr` is filterable, but LIKE on it is not documented.
- Invoices by customer name: the customers whose display name contains the text (the first
  `NAME_MATCHES` of them by name), then `CustomerRef IN (...)` those customers.
- Deep pages of a merged search: a page is cut from the first `page * 50 + 1` rows of each
  query, so a search answers at most its first 1,000 invoices (`MAX_PAGE` pages of 50).

Assumed, as the QBO sandbox does: `=` and `LIKE` compare strings without case (the match rules
compare lower-cased, whitespace-collapsed text; a name stored with doubled spaces in QuickBooks
is found by its display name only).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from dealbooks_qbo import Customer, Invoice, Item, QboCompany, Select, contains, select

from invoice_builder import domain
from invoice_builder.domain import CrmParty, CustomerCandidate

PAGE_SIZE = 50
MAX_PAGE = 20
# Customers whose invoices a search by customer name looks through (one `IN` list).
NAME_MATCHES = 100
QBO_MAX_RESULTS = 1000


class QboSearch:
    """The wizard's searches over one QuickBooks company."""

    def __init__(self, company: QboCompany) -> None:
        self.company = company

    async def customers(self, text: str, limit: int = PAGE_SIZE) -> list[CustomerCandidate]:
        """Active customers whose display name or company name contains `text`, or whose
        e-mail address is `text`, by display name (at most `limit`); without text, the first
        `limit` by display name. One query, two with text, three with an e-mail address."""
        needle = clean(text)
        by_name = select("Customer").order_by("DisplayName").page(1, limit)
        statements = [by_name]
        if needle:
            statements = [
                by_name.where("DisplayName", "LIKE", contains(needle)),
                by_name.where("CompanyName", "LIKE", contains(needle)),
            ]
            if is_email(needle):
                statements.append(select("Customer").where("PrimaryEmailAddr", "=", needle))
        found = [c for rows in await self._pages(statements) for c in _candidates(rows)]
        return domain.search_customers(needle, _unique(found), limit)

    async def match_candidates(self, party: CrmParty) -> list[CustomerCandidate]:
        """Every customer `domain.match_customer` could propose for `party`, in QuickBooks'
        own order (by Id), so it answers as if it had read them all.

        First the customers with the party's e-mail address: an active one is the best match
        there can be (one query). Otherwise those whose display name is the company's or the
        person's name, whose company name is the company's, and whose given and family names
        are the person's (up to three more queries, side by side)."""
        found: list[CustomerCandidate] = []
        email = clean(party.email or "")
        if email:
            found = _candidates(
                await self._rows(select("Customer").where("PrimaryEmailAddr", "=", email))
            )
            best = domain.match_customer(party, found)
            if best is not None and best.score == domain.SAME_EMAIL:
                return found
        company = clean(party.company_name or "")
        first, last = clean(party.first_name or ""), clean(party.last_name or "")
        statements: list[Select] = []
        names = list(dict.fromkeys(n for n in (company, clean(f"{first} {last}")) if n))
        if names:
            statements.append(select("Customer").where("DisplayName", "IN", names))
        if company:
            statements.append(select("Customer").where("CompanyName", "=", company))
        if first or last:
            person = select("Customer")
            if first:
                person = person.where("GivenName", "=", first)
            if last:
                person = person.where("FamilyName", "=", last)
            statements.append(person)
        for rows in await self._pages(statements):
            found += _candidates(rows)
        return sorted(_unique(found), key=lambda c: _id_order(c.qbo_customer_id))

    async def items(self, text: str, limit: int = PAGE_SIZE) -> tuple[list[Item], bool]:
        """Active items whose name contains `text`, by name (at most `limit`), and whether
        there are more. One query."""
        statement = select("Item").order_by("Name").page(1, limit + 1)
        needle = clean(text)
        if needle:
            statement = statement.where("Name", "LIKE", contains(needle))
        rows = [r for r in await self._rows(statement) if isinstance(r, Item)]
        return rows[:limit], len(rows) > limit

    async def invoices(
        self, text: str, customer_id: str | None, page: int
    ) -> tuple[list[Invoice], bool]:
        """One page of invoices, newest first, and whether there are more.

        With `customer_id`, that customer's invoices (whose number contains `text`, if
        given); without text, every invoice: one query each, paged by QuickBooks. With text
        alone: invoices whose number contains it (when it has a digit) and invoices of the
        customers whose display name contains it, merged: two or three queries."""
        if not 1 <= page <= MAX_PAGE:
            raise ValueError(f"page must be within 1..{MAX_PAGE}")
        needle = clean(text)
        skip = (page - 1) * PAGE_SIZE
        newest = select("Invoice").order_by("TxnDate", desc=True)
        if customer_id or not needle:
            statement = newest
            if customer_id:
                statement = statement.where("CustomerRef", "=", customer_id)
            if needle:
                statement = statement.where("DocNumber", "LIKE", contains(needle))
            rows = _invoices(await self._rows(statement.page(skip + 1, PAGE_SIZE + 1)))
            return rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
        # The first `depth` rows of each query hold the merged list's first `depth - 1`.
        depth = min(skip + PAGE_SIZE + 1, QBO_MAX_RESULTS)
        named_customers = (
            select("Customer")
            .where("DisplayName", "LIKE", contains(needle))
            .order_by("DisplayName")
            .page(1, NAME_MATCHES)
        )
        by_number: list[Invoice] = []
        if any(ch.isdigit() for ch in needle):
            numbered, named = await self._pages(
                [newest.where("DocNumber", "LIKE", contains(needle)).page(1, depth),
                 named_customers]
            )  # fmt: skip
            by_number = _invoices(numbered)
        else:
            named = await self._rows(named_customers)
        ids = [c.Id for c in named if isinstance(c, Customer) and c.Id]
        by_customer: list[Invoice] = []
        if ids:
            statement = newest.where("CustomerRef", "IN", ids).page(1, depth)
            by_customer = _invoices(await self._rows(statement))
        merged = newest_first(by_number, by_customer)
        more = len(merged) > skip + PAGE_SIZE and page < MAX_PAGE
        return merged[skip : skip + PAGE_SIZE], more

    async def _rows(self, statement: Select) -> list[Any]:
        page = await self.company.query_page(statement)
        return page.rows

    async def _pages(self, statements: Sequence[Select]) -> list[list[Any]]:
        """Several queries side by side (QuickBooks allows 10 at once per company)."""
        return list(await asyncio.gather(*(self._rows(s) for s in statements)))


def newest_first(*pages: Sequence[Invoice]) -> list[Invoice]:
    """Pages of invoices, each newest first as QuickBooks ordered it, merged newest first;
    an invoice in several pages is kept where it first comes, and on the same date the
    earlier page's invoices come first."""
    merged = heapq.merge(*pages, key=_txn_date, reverse=True)
    seen: set[str | None] = set()
    out: list[Invoice] = []
    for invoice in merged:
        if invoice.Id not in seen:
            seen.add(invoice.Id)
            out.append(invoice)
    return out


def clean(text: str) -> str:
    """Text as a query compares it: trimmed, inner whitespace collapsed."""
    return " ".join(text.split())


def is_email(text: str) -> bool:
    local, at, domain_part = text.partition("@")
    return bool(local and at and "." in domain_part and " " not in text)


def _txn_date(invoice: Invoice) -> date:
    return invoice.TxnDate or date.min


def _id_order(qbo_id: str) -> tuple[int, str]:
    return (int(qbo_id), "") if qbo_id.isdigit() else (1 << 62, qbo_id)


def _candidates(rows: Iterable[Any]) -> list[CustomerCandidate]:
    return [candidate(r) for r in rows if isinstance(r, Customer)]


def _invoices(rows: Iterable[Any]) -> list[Invoice]:
    return [r for r in rows if isinstance(r, Invoice)]


def _unique(found: Iterable[CustomerCandidate]) -> list[CustomerCandidate]:
    first: dict[str, CustomerCandidate] = {}
    for c in found:
        first.setdefault(c.qbo_customer_id, c)
    return list(first.values())


def candidate(c: Customer) -> CustomerCandidate:
    """A QuickBooks customer as the match rules see it."""
    return CustomerCandidate(
        qbo_customer_id=str(c.Id),
        display_name=c.DisplayName,
        company_name=c.CompanyName,
        given_name=c.GivenName,
        family_name=c.FamilyName,
        email=c.PrimaryEmailAddr.Address if c.PrimaryEmailAddr else None,
        active=c.Active is not False,
        currency=c.CurrencyRef.value if c.CurrencyRef else None,
    )
