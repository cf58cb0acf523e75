"""Query statements built by `select`: the text QuickBooks is sent, what is refused before
sending, and the same statements answered by the sandbox."""

from __future__ import annotations

from decimal import Decimal

import pytest
from dealbooks_qbo import (
    BatchOperation,
    Customer,
    InvalidQuery,
    Invoice,
    QboCompany,
    contains,
    quote,
    select,
    starts_with,
)


def test_statement_reads_as_qbo_writes_it() -> None:
    statement = (
        select("Invoice")
        .where("CustomerRef", "=", "58")
        .where("DocNumber", "LIKE", contains("10"))
        .order_by("TxnDate", desc=True)
        .page(51, 50)
    )
    assert str(statement) == (
        "SELECT * FROM Invoice WHERE CustomerRef = '58' AND DocNumber LIKE '%10%' "
        "ORDERBY TxnDate DESC STARTPOSITION 51 MAXRESULTS 50"
    )


def test_literals_are_quoted_and_escaped_with_a_backslash() -> None:
    assert quote("Amy's Bird Sanctuary") == "'Amy\\'s Bird Sanctuary'"
    assert quote("back\\slash") == "'back\\\\slash'"
    assert quote(True) == "true" and quote(Decimal("10.50")) == "'10.50'"
    statement = select("Customer").where("DisplayName", "IN", ["Acme", "O'Brien"])
    assert str(statement) == "SELECT * FROM Customer WHERE DisplayName IN ('Acme', 'O\\'Brien')"


def test_like_patterns_drop_the_callers_own_wildcards() -> None:
    assert contains("100%") == "%100%"
    assert starts_with("%Acme") == "Acme%"


@pytest.mark.parametrize(
    ("entity", "prop"),
    [("Customer", "Notes"), ("Invoice", "EmailStatus"), ("Invoice", "Line"), ("Item", "UnitPrice")],
)
def test_a_property_quickbooks_cannot_filter_on_is_refused_before_sending(
    entity: str, prop: str
) -> None:
    with pytest.raises(ValueError, match="not filterable"):
        select(entity).where(prop, "=", "x")


def test_unknown_operators_sorting_and_pages_are_refused() -> None:
    with pytest.raises(ValueError, match="no operator"):
        select("Customer").where("DisplayName", "!=", "x")
    with pytest.raises(ValueError, match="not sortable"):
        select("Customer").order_by("PrimaryEmailAddr")
    with pytest.raises(ValueError, match="MAXRESULTS"):
        select("Customer").page(1, 1001)
    with pytest.raises(ValueError, match="list of values"):
        select("Customer").where("Id", "IN", "1")
    with pytest.raises(ValueError, match="at least one"):
        select("Customer").where("Id", "IN", [])


async def test_built_statements_are_answered_by_the_sandbox(company: QboCompany) -> None:
    made = await company.batch(
        [
            BatchOperation(
                "create",
                "Customer",
                {"DisplayName": f"Query {n} O'Hara", "PrimaryEmailAddr": {"Address": f"q{n}@x.io"}},
            )
            for n in range(3)
        ]
    )
    ids = [r.entity.Id for r in made if isinstance(r.entity, Customer)]
    named = await company.query_all(
        select("Customer").where("DisplayName", "LIKE", contains("o'hara")).order_by("DisplayName")
    )
    assert [c.Id for c in named] == ids
    by_email = await company.query_page(
        select("Customer").where("PrimaryEmailAddr", "=", "q1@x.io")
    )
    assert [c.Id for c in by_email.rows] == [ids[1]]
    await company.create(
        Invoice,
        {
            "CustomerRef": {"value": ids[2]},
            "Line": [{"DetailType": "SalesItemLineDetail", "Amount": Decimal("5"),
                      "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}],
        },
    )  # fmt: skip
    theirs = await company.query_page(
        select("Invoice").where("CustomerRef", "IN", ids).order_by("TxnDate", desc=True)
    )
    assert [i.CustomerRef.value for i in theirs.rows] == [ids[2]]


async def test_the_sandbox_refuses_a_filter_quickbooks_refuses(company: QboCompany) -> None:
    with pytest.raises(InvalidQuery) as err:
        await company.query_page("SELECT * FROM Invoice WHERE EmailStatus = 'NotSet'")
    assert (err.value.code, err.value.detail) == (
        "4001",
        "QueryValidationError: property 'EmailStatus' is not queryable",
    )
