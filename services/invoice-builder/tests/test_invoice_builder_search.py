"""The wizard's searches against a large company: answers as if every record had been read,
from a few bounded queries. QuickBooks is the sandbox's own query engine, in process, so each
statement is checked as QuickBooks checks it (filterable properties, MAXRESULTS)."""

from __future__ import annotations

from datetime import date
from typing import Any, cast

import pytest
from dealbooks_qbo import Invoice, QboCompany, QueryPage, Select
from invoice_builder import domain
from invoice_builder.domain import CrmParty
from invoice_builder.search import (
    MAX_PAGE,
    NAME_MATCHES,
    PAGE_SIZE,
    QboSearch,
    candidate,
    newest_first,
)
from qbo_sandbox import jsonio, query
from qbo_sandbox.clock import Clock
from qbo_sandbox.company import Company


class Books:
    """A QboCompany stand-in answering from an in-process sandbox company; keeps what it
    was sent."""

    def __init__(self, company: Company) -> None:
        self.company = company
        self.sent: list[str] = []

    async def query_page(self, statement: str | Select) -> QueryPage:
        text = str(statement)
        self.sent.append(text)
        answer = query.run(self.company, text, 1000)
        return QueryPage.from_response(jsonio.loads(jsonio.dumps(answer)))

    def all(self, entity: str, where: str = "") -> list[Any]:
        """Every row, page by page, as reading a whole list would."""
        every: list[Any] = []
        while True:
            page_at = f"STARTPOSITION {len(every) + 1} MAXRESULTS 1000"
            statement = f"SELECT * FROM {entity} {where} {page_at}"  # noqa: S608
            rows = query.run(self.company, statement, 1000).get(entity, [])
            every += rows
            if len(rows) < 1000:
                break
        return QueryPage.from_response(jsonio.loads(jsonio.dumps({entity: every}))).rows


@pytest.fixture(scope="module")
def books() -> Books:
    company = Company(realm_id="1", name="Large Co", country="US", clock=Clock())
    company.seed_demo_data()
    company.bulk_seed(3000, 6000, company_name="Firm {n:04d}")
    for body in (
        {"DisplayName": "Jane Doe", "GivenName": "Jane", "FamilyName": "Doe"},
        {
            "DisplayName": "Doe Consulting",
            "CompanyName": "Acme Corp",
            "PrimaryEmailAddr": {"Address": "ap@acme.example"},
        },
        {"DisplayName": "Old Acme", "PrimaryEmailAddr": {"Address": "old@acme.example"}},
    ):
        made = company.create("Customer", body, {})
    # The one with the address is inactive; an active one has it too, under another name.
    company.update(
        "Customer", {"Id": made["Id"], "SyncToken": "0", "sparse": True, "Active": False}, {}
    )
    company.create(
        "Customer",
        {"DisplayName": "Acme Corp", "PrimaryEmailAddr": {"Address": "old@acme.example"}},
        {},
    )
    return Books(company)


def search(books: Books) -> QboSearch:
    books.sent.clear()
    return QboSearch(cast(QboCompany, books))


PARTIES = [
    CrmParty(email="CUSTOMER01234@example.com", company_name="Firm 0007"),
    CrmParty(email="nobody@else.example", company_name="firm 0007"),
    CrmParty(email="old@acme.example"),
    CrmParty(email="new@acme.example", company_name="ACME corp"),
    CrmParty(first_name="Jane", last_name="Doe"),
    CrmParty(first_name="jane", last_name="doe", company_name="Doe Consulting"),
    CrmParty(last_name="Doe"),
    CrmParty(email="x@y.example", company_name="Zed", first_name="No", last_name="One"),
    CrmParty(),
]


@pytest.mark.parametrize("party", PARTIES, ids=lambda p: repr(p)[9:60])
async def test_the_proposal_is_the_one_reading_every_customer_would_make(
    books: Books, party: CrmParty
) -> None:
    every = [candidate(c) for c in books.all("Customer", "WHERE Active IN (true, false)")]
    expected = domain.match_customer(party, every)
    found = await search(books).match_candidates(party)
    assert domain.match_customer(party, found) == expected
    assert len(books.sent) <= 4
    assert all("WHERE" in statement for statement in books.sent)


async def test_a_customer_with_the_same_email_takes_one_query(books: Books) -> None:
    party = CrmParty(email="customer01234@example.com", company_name="Firm 0007")
    match = domain.match_customer(party, await search(books).match_candidates(party))
    assert match is not None and match.customer.display_name == "Customer 01234"
    assert books.sent == [
        "SELECT * FROM Customer WHERE PrimaryEmailAddr = 'customer01234@example.com'"
    ]


async def test_customer_search_finds_names_company_names_and_a_whole_address(
    books: Books,
) -> None:
    by_name = await search(books).customers("customer 0012")
    assert [c.display_name for c in by_name] == [f"Customer 0012{n}" for n in range(10)]
    assert len(books.sent) == 2
    by_company = await search(books).customers("Firm 2999")
    assert [c.display_name for c in by_company] == ["Customer 02999"]
    by_address = await search(books).customers(" ap@acme.example ")
    assert [c.display_name for c in by_address] == ["Doe Consulting"]
    assert len(books.sent) == 3
    broad = await search(books).customers("o")
    assert len(broad) == PAGE_SIZE
    assert [c.display_name for c in broad] == sorted(c.display_name for c in broad)
    assert all("MAXRESULTS 50" in s for s in books.sent)


async def test_item_search_pages_by_name(books: Books) -> None:
    found, more = await search(books).items("o")
    assert [i.Name for i in found] == ["Onboarding package"] and more is False
    listed, _ = await search(books).items("")
    assert [i.Name for i in listed] == ["Hardware kit", "Onboarding package", "Services"]


def _by_date(invoices: list[Invoice]) -> bool:
    dates = [i.TxnDate or date.min for i in invoices]
    return dates == sorted(dates, reverse=True)


async def _every_page(books: Books, text: str, customer_id: str | None) -> list[Invoice]:
    found: list[Invoice] = []
    for page in range(1, MAX_PAGE + 1):
        rows, more = await search(books).invoices(text, customer_id, page)
        assert len(rows) <= PAGE_SIZE and len(books.sent) <= 3
        found += rows
        if not more:
            break
    return found


@pytest.mark.parametrize(
    ("text", "customer_id"),
    [("1042", None), ("Customer 0012", None), ("01", None), ("", "4"), ("100", "4")],
)
async def test_invoice_search_pages_through_what_matches_newest_first(
    books: Books, text: str, customer_id: str | None
) -> None:
    every = [i for i in books.all("Invoice") if isinstance(i, Invoice)]
    # A search by name looks through the first NAME_MATCHES customers (by name) it matches.
    named = sorted(
        (c for c in books.all("Customer") if text.lower() in c.DisplayName.lower()),
        key=lambda c: c.DisplayName.lower(),
    )[:NAME_MATCHES]
    named_ids = {c.Id for c in named}

    def matches(invoice: Invoice) -> bool:
        number = text.lower() in (invoice.DocNumber or "").lower()
        if customer_id:
            return invoice.CustomerRef.value == customer_id and number
        by_number = number and any(ch.isdigit() for ch in text)
        return by_number or invoice.CustomerRef.value in named_ids

    expected = {i.Id for i in every if matches(i)}
    found = await _every_page(books, text, customer_id)
    assert len({i.Id for i in found}) == len(found)
    assert {i.Id for i in found} <= expected
    assert len(found) == min(len(expected), MAX_PAGE * PAGE_SIZE)
    assert _by_date(found)


async def test_every_invoice_pages_from_quickbooks_itself(books: Books) -> None:
    first, more = await search(books).invoices("", None, 1)
    second, _ = await search(books).invoices("", None, 2)
    assert more and len(first) == len(second) == PAGE_SIZE
    assert _by_date(first + second) and not {i.Id for i in first} & {i.Id for i in second}
    assert books.sent == [
        "SELECT * FROM Invoice ORDERBY TxnDate DESC STARTPOSITION 51 MAXRESULTS 51"
    ]
    with pytest.raises(ValueError, match="page"):
        await search(books).invoices("", None, MAX_PAGE + 1)


def _invoice(invoice_id: str, day: int) -> Invoice:
    return Invoice.model_validate(
        {
            "Id": invoice_id,
            "CustomerRef": {"value": "1"},
            "TxnDate": f"2026-03-{day:02d}",
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": "1"}],
        }
    )


def test_pages_merge_newest_first_without_repeats() -> None:
    numbers = [_invoice("9", 20), _invoice("5", 12), _invoice("4", 12)]
    named = [_invoice("8", 15), _invoice("5", 12), _invoice("3", 12), _invoice("1", 2)]
    assert [i.Id for i in newest_first(numbers, named)] == ["9", "8", "5", "4", "3", "1"]
    assert newest_first([], []) == []
