"""QBO query statements built so QuickBooks accepts them.

QuickBooks' query language (`SELECT * FROM X [WHERE p op v AND ...] [ORDERBY p [DESC]]
[STARTPOSITION n] [MAXRESULTS n]`) filters only on the properties Intuit's API reference marks
*filterable*; any other property is refused with 4001 `QueryValidationError: property 'X' is not
queryable` (a real answer: ruckus/quickbooks-ruby #403; Intuit staff on
QuickBooks-V3-DotNET-SDK #163: "The property which are mentioned as filterable are only
queryable"). `Select` refuses, before anything is sent, a filter or an ORDERBY on a property
that `FILTERABLE` / `SORTABLE` does not list for Customer, Item and Invoice (other entities are
not checked), an operator QuickBooks does not have, and a page above MAXRESULTS 1000.

Sources of the tables: Intuit's Customer reference (each attribute's "filterable" and
"sortable" marks); Intuit's Invoice reference as client libraries transcribe it (Id,
CustomerRef, DocNumber, TxnDate, DueDate, SalesTermRef, Balance, ProjectRef); the data-queries
page for `MetaData.CreateTime` / `MetaData.LastUpdatedTime`; Item `Name`, `Type`, `Active` from
Intuit's examples (`Name LIKE 'Widget%'`, `Type IN (...)`, `Active = true`). `Invoice.TotalAmt`
and `Item.Sku` / `Item.FullyQualifiedName` are filtered on by many clients but are not confirmed
by a captured answer.

Values are always quoted string literals (QBO's own examples quote numbers and ids too), with
`'` and `\\` escaped by a backslash; booleans are bare `true` / `false`. LIKE takes only `%`
as wildcard (there is no `_` and no escape for a literal `%`), so `contains` and
`starts_with` drop any `%` from the text they are given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from decimal import Decimal

_META = frozenset({"MetaData.CreateTime", "MetaData.LastUpdatedTime"})
# Customer properties QuickBooks both filters and sorts on.
_CUSTOMER = _META | {
    "Id",
    "DisplayName",
    "GivenName",
    "MiddleName",
    "FamilyName",
    "CompanyName",
    "PrintOnCheckName",
    "FullyQualifiedName",
    "Active",
    "Balance",
}

FILTERABLE: dict[str, frozenset[str]] = {
    "Customer": _CUSTOMER | {"PrimaryEmailAddr"},
    "Invoice": _META
    | {
        "Id",
        "DocNumber",
        "TxnDate",
        "DueDate",
        "CustomerRef",
        "SalesTermRef",
        "ProjectRef",
        "Balance",
        "TotalAmt",
    },
    "Item": _META | {"Id", "Name", "Type", "Active", "FullyQualifiedName", "Sku"},
}

SORTABLE: dict[str, frozenset[str]] = {
    "Customer": _CUSTOMER | {"BalanceWithJobs"},
    "Invoice": _META | {"Id", "DocNumber", "TxnDate", "DueDate", "TotalAmt", "Balance"},
    "Item": _META | {"Id", "Name", "FullyQualifiedName"},
}

OPERATORS = frozenset({"=", "<", ">", "<=", ">=", "IN", "LIKE"})
MAX_RESULTS = 1000

Value = str | int | Decimal | bool


def quote(value: Value) -> str:
    """A QBO literal: booleans bare, everything else a quoted, backslash-escaped string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def contains(text: str) -> str:
    """A LIKE pattern matching values that contain `text` (its own `%` dropped)."""
    return f"%{text.replace('%', '')}%"


def starts_with(text: str) -> str:
    """A LIKE pattern matching values that begin with `text` (its own `%` dropped)."""
    return f"{text.replace('%', '')}%"


@dataclass(frozen=True)
class Select:
    """One `SELECT * FROM entity` statement; `str()` gives the text to send."""

    entity: str
    conditions: tuple[str, ...] = ()
    order: str | None = None
    start: int | None = None
    size: int | None = None

    def where(self, prop: str, op: str, value: Value | Iterable[Value]) -> Select:
        """AND one condition (QBO has no OR). `IN` takes an iterable of values."""
        op = op.upper()
        if op not in OPERATORS:
            raise ValueError(f"QuickBooks has no operator {op!r}")
        self._check(FILTERABLE, prop, "filterable")
        if op == "IN":
            if isinstance(value, str | bytes | bool | int | Decimal):
                raise ValueError("IN takes a list of values")
            values = [quote(v) for v in value]
            if not values:
                raise ValueError("IN needs at least one value")
            rhs = "(" + ", ".join(values) + ")"
        else:
            if not isinstance(value, str | bool | int | Decimal):
                raise ValueError(f"{op} takes a single value")
            rhs = quote(value)
        return replace(self, conditions=(*self.conditions, f"{prop} {op} {rhs}"))

    def order_by(self, prop: str, *, desc: bool = False) -> Select:
        self._check(SORTABLE, prop, "sortable")
        return replace(self, order=f"{prop} DESC" if desc else prop)

    def page(self, start: int, size: int) -> Select:
        """STARTPOSITION (1-based) and MAXRESULTS (at most 1000)."""
        if start < 1 or not 1 <= size <= MAX_RESULTS:
            raise ValueError(f"STARTPOSITION starts at 1 and MAXRESULTS is 1..{MAX_RESULTS}")
        return replace(self, start=start, size=size)

    def _check(self, table: dict[str, frozenset[str]], prop: str, what: str) -> None:
        known = table.get(self.entity)
        if known is not None and prop not in known:
            raise ValueError(f"{self.entity}.{prop} is not {what} in QuickBooks queries")

    def __str__(self) -> str:
        parts = [f"SELECT * FROM {self.entity}"]  # noqa: S608 (QBO query language, read-only)
        if self.conditions:
            parts.append("WHERE " + " AND ".join(self.conditions))
        if self.order:
            parts.append(f"ORDERBY {self.order}")
        if self.start is not None:
            parts.append(f"STARTPOSITION {self.start}")
        if self.size is not None:
            parts.append(f"MAXRESULTS {self.size}")
        return " ".join(parts)


def select(entity: str) -> Select:
    """`SELECT * FROM entity`, to be narrowed with `where`, `order_by` and `page`."""
    return Select(entity)
