"""The QBO query language: SELECT * | COUNT(*) FROM X [WHERE .. AND ..] [ORDERBY] [paging]."""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from qbo_sandbox import faults, schema
from qbo_sandbox.company import NAME_LISTS, Company

QUERYABLE = {
    name.lower(): name
    for name in (
        "Customer",
        "Item",
        "Invoice",
        "Payment",
        "Vendor",
        "Bill",
        "BillPayment",
        "Deposit",
        "TaxCode",
        "Term",
        "Account",
        "CompanyInfo",
        "Preferences",
    )
}
# Entities QBO knows that this sandbox does not model: a query answers empty, not 4001.
KNOWN_EMPTY = {
    n.lower(): n
    for n in (
        "Employee",
        "Estimate",
        "SalesReceipt",
        "CreditMemo",
        "Class",
        "Department",
        "PaymentMethod",
    )
}

TOKEN_RE = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),*])|"
    r"(?P<word>[A-Za-z_][\w.]*)|(?P<num>-?\d+(?:\.\d+)?))"
)


@dataclass
class Condition:
    prop: str
    op: str
    values: list[Any]


@dataclass
class Query:
    entity: str
    count: bool = False
    where: list[Condition] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)
    start: int = 1
    max_results: int = 100


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip().rstrip(";")
    while pos < len(text):
        m = TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise faults.invalid_query(f"Encountered unexpected input at position {pos}", "4000")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(kind: str, raw: str) -> Any:
    if kind == "str":
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    if kind == "num":
        return Decimal(raw)
    if kind == "word" and raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    raise faults.invalid_query(f"unexpected value {raw}", "4000")


def parse(text: str, max_allowed: int) -> Query:
    toks = _tokens(text)
    i = 0

    def peek(offset: int = 0) -> tuple[str, str]:
        return toks[i + offset] if i + offset < len(toks) else ("", "")

    def word(value: str) -> bool:
        kind, raw = peek()
        return kind == "word" and raw.upper() == value

    def expect_word(value: str) -> None:
        nonlocal i
        if not word(value):
            raise faults.invalid_query(f"Expected {value} near '{peek()[1]}'", "4000")
        i += 1

    expect_word("SELECT")
    count = False
    if word("COUNT"):
        count = True
        i += 1
        for expected in ("(", "*", ")"):
            if peek()[1] != expected:
                raise faults.invalid_query("Malformed COUNT(*)", "4000")
            i += 1
    else:
        if peek()[1] != "*":
            raise faults.invalid_query("Only SELECT * and SELECT COUNT(*) are supported", "4000")
        i += 1
        while peek()[1] == ",":  # the `SELECT *, Sku` quirk: full objects come back anyway
            i += 2
    expect_word("FROM")
    kind, raw_entity = peek()
    i += 1
    entity = QUERYABLE.get(raw_entity.lower()) or KNOWN_EMPTY.get(raw_entity.lower())
    if kind != "word" or entity is None:
        raise faults.invalid_query(f"invalid context declaration: {raw_entity}")
    query = Query(entity=entity, count=count)
    if word("WHERE"):
        i += 1
        while True:
            kind, prop = peek()
            if kind != "word":
                raise faults.invalid_query(f"Expected a property near '{prop}'", "4000")
            i += 1
            op_kind, op = peek()
            if op_kind == "word" and op.upper() in {"IN", "LIKE"}:
                op = op.upper()
            elif op_kind != "op":
                raise faults.invalid_query(f"Expected an operator after {prop}", "4000")
            i += 1
            values: list[Any] = []
            if op == "IN":
                if peek()[1] != "(":
                    raise faults.invalid_query("IN needs a parenthesised list", "4000")
                i += 1
                while peek()[1] != ")":
                    if peek()[1] == ",":
                        i += 1
                        continue
                    values.append(_literal(*peek()))
                    i += 1
                    if i >= len(toks):
                        raise faults.invalid_query("Unterminated IN list", "4000")
                i += 1
            else:
                values.append(_literal(*peek()))
                i += 1
            query.where.append(Condition(prop, op, values))
            if word("AND"):
                i += 1
                continue
            if word("OR"):
                raise faults.invalid_query("OR is not supported", "4000")
            break
    while i < len(toks):
        if word("ORDERBY") or (word("ORDER") and peek(1)[1].upper() == "BY"):
            i += 1 if word("ORDERBY") else 2
            while True:
                prop = peek()[1]
                i += 1
                desc = False
                if word("DESC") or word("ASC"):
                    desc = peek()[1].upper() == "DESC"
                    i += 1
                query.order.append((prop, desc))
                if peek()[1] == ",":
                    i += 1
                    continue
                break
        elif word("STARTPOSITION") or word("MAXRESULTS"):
            which = peek()[1].upper()
            i += 1
            kind, raw = peek()
            i += 1
            if kind != "num":
                raise faults.invalid_query(f"{which} needs a number", "4000")
            value = int(raw)
            if which == "STARTPOSITION":
                query.start = max(1, value)
            else:
                if value > max_allowed:
                    raise faults.invalid_query(
                        f"value {value} is too large. Max allowed value is {max_allowed}"
                    )
                query.max_results = value
        else:
            raise faults.invalid_query(f"Encountered unexpected input '{peek()[1]}'", "4000")
    return query


# What QBO lets a WHERE clause name, per entity (Intuit's API reference marks these
# "filterable"); any other property is 4001 "property 'X' is not queryable" [REAL:
# ruckus/quickbooks-ruby #403]. Entities not listed here are not checked. Compared without case.
_META = ("MetaData.CreateTime", "MetaData.LastUpdatedTime")
FILTERABLE: dict[str, frozenset[str]] = {
    entity: frozenset(p.lower() for p in (*props, *_META))
    for entity, props in {
        "Customer": (
            "Id",
            "DisplayName",
            "GivenName",
            "MiddleName",
            "FamilyName",
            "CompanyName",
            "PrimaryEmailAddr",
            "PrintOnCheckName",
            "FullyQualifiedName",
            "Active",
            "Balance",
        ),
        "Invoice": (
            "Id",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "CustomerRef",
            "SalesTermRef",
            "ProjectRef",
            "Balance",
            # UNVERIFIED: filtered on by many clients, not confirmed by a captured answer.
            "TotalAmt",
        ),
        # Sku and FullyQualifiedName UNVERIFIED, as TotalAmt above.
        "Item": ("Id", "Name", "Type", "Active", "FullyQualifiedName", "Sku"),
    }.items()
}
# Single-valued types QBO compares by their one field: `PrimaryEmailAddr = 'a@b.c'`.
_SCALAR_OF = ("value", "Address", "FreeFormNumber", "URI")

Row = dict[str, Any]


def _canonical(entity: str, prop: str) -> list[str] | None:
    """The property path as records spell it, from Intuit's schema (QBO accepts any case):
    `metadata.lastupdatedtime` on Customer is `["MetaData", "LastUpdatedTime"]`. None when
    the schema does not know a part; records are then searched without case, part by part."""
    described = schema.load()
    type_name = entity
    path: list[str] = []
    for part in prop.split("."):
        if not described.is_complex(type_name):
            return None
        props = described.properties(type_name)
        found = props.get(part) or next(
            (p for name, p in props.items() if name.lower() == part.lower()), None
        )
        if found is None:
            return None
        path.append(found.name)
        type_name = found.type
    return path


def _getter(entity: str, prop: str) -> Callable[[Row], Any]:
    """Reads a (dotted) property of a record; `...Ref` and e-mail/phone types give their value."""
    canonical = _canonical(entity, prop)

    def scalar(value: Any) -> Any:
        if isinstance(value, dict):
            for key in _SCALAR_OF:
                if key in value:
                    return value[key]
        return value

    if canonical is not None and len(canonical) == 1:
        name = canonical[0]
        return lambda record: scalar(record.get(name))
    parts = canonical or prop.split(".")

    def get(record: Row) -> Any:
        value: Any = record
        for part in parts:
            if not isinstance(value, dict):
                return None
            if part in value:
                value = value[part]
                continue
            match = next((k for k in value if k.lower() == part.lower()), None)
            if match is None:
                return None
            value = value[match]
        return scalar(value)

    return get


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal | int):
        return Decimal(value)
    text = str(value)
    if len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-":
        try:
            parsed = datetime.fromisoformat(text)
            # A date (or a time without offset) is read as UTC, so it compares with times too.
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
        except ValueError:
            pass
    if text[:1].isdigit() or text[:1] in "+-.":
        try:
            return Decimal(text)
        except InvalidOperation:
            pass
    return text.casefold()


def _memoized(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`fn` remembered per hashable value for one query (dates and ids repeat across rows)."""
    seen: dict[tuple[type, Any], Any] = {}

    def call(value: Any) -> Any:
        key = (type(value), value)  # True and 1 are equal keys otherwise
        try:
            return seen[key]
        except KeyError:
            seen[key] = result = fn(value)
            return result
        except TypeError:  # unhashable
            return fn(value)

    return call


def _like_regex(pattern: str) -> re.Pattern[str]:
    regex = "^" + ".*".join(re.escape(p) for p in pattern.split("%")) + "$"
    return re.compile(regex, re.IGNORECASE | re.DOTALL)


def _matcher(entity: str, cond: Condition) -> Callable[[Row], bool]:
    """One WHERE condition as a test of a record, prepared once per query."""
    get = _getter(entity, cond.prop)
    if cond.op == "LIKE":
        regex = _like_regex(str(cond.values[0]))

        def like(record: Row) -> bool:
            actual = get(record)
            return actual is not None and regex.match(str(actual)) is not None

        return like
    comparable = _memoized(_comparable)
    rights = [_comparable(v) for v in cond.values]
    if cond.op in {"=", "IN"}:
        wanted = set(rights)

        def equal(record: Row) -> bool:
            actual = get(record)
            if actual is None:
                return False
            if type(actual) is str:
                # What _comparable makes of the two common kinds, without its parsing:
                # digits compare as numbers (a Decimal hashes as its int), text without case.
                if actual.isdigit():
                    return int(actual) in wanted
                if not actual[:1].isdigit() and actual[:1] not in "+-.":
                    return actual.casefold() in wanted
            try:
                return comparable(actual) in wanted
            except TypeError:
                return False

        return equal
    right = rights[0]
    compare: Callable[[Any, Any], bool] = {
        "!=": lambda a, b: a != b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }[cond.op]

    def ordered(record: Row) -> bool:
        actual = get(record)
        if actual is None:
            return False
        try:
            return bool(compare(comparable(actual), right))
        except TypeError:
            return False

    return ordered


def _check_filterable(entity: str, where: list[Condition]) -> None:
    allowed = FILTERABLE.get(entity)
    if allowed is None:
        return
    for cond in where:
        if cond.prop.lower() not in allowed:
            raise faults.invalid_query(f"property '{cond.prop}' is not queryable")


def run(company: Company, text: str, max_allowed: int) -> dict[str, Any]:
    """Evaluate a statement against one company; returns the QueryResponse body."""
    query = parse(text, max_allowed)
    _check_filterable(query.entity, query.where)
    rows = company.rows(query.entity)
    filters_active = any(c.prop.lower() == "active" for c in query.where)
    matchers = [_matcher(query.entity, c) for c in query.where]
    skip_inactive = query.entity in NAME_LISTS and not filters_active
    found: list[Row] = []
    for row in rows:
        if skip_inactive and row.get("Active", True) is False:
            continue
        for test in matchers:
            if not test(row):
                break
        else:
            found.append(row)
    if query.count:
        return {"totalCount": len(found)}
    wanted = query.start - 1 + query.max_results
    if query.order:
        found = _ordered(query.entity, found, query.order, wanted)
    else:
        found.sort(key=lambda r: _sort_key(r.get("Id")))
    page = found[query.start - 1 : wanted]
    if not page:
        return {}
    return {query.entity: page, "startPosition": query.start, "maxResults": len(page)}


def _ordered(entity: str, rows: list[Row], order: list[tuple[str, bool]], wanted: int) -> list[Row]:
    """The first `wanted` rows in ORDERBY order (stable: ties keep the rows' own order)."""
    keys = [(_getter(entity, prop), desc, _row_sort_key()) for prop, desc in order]
    if len(keys) == 1 and wanted * 8 < len(rows):
        get, desc, sort_key = keys[0]

        def single(row: Row) -> tuple[bool, tuple[int, Any]]:
            value = get(row)
            return (value is None, sort_key(value))

        # heapq's nsmallest/nlargest equal sorted(...)[:n], ties included, at a fraction of it.
        pick = heapq.nlargest if desc else heapq.nsmallest
        return pick(wanted, rows, key=single)
    for get, desc, sort_key in reversed(keys):

        def by_prop(
            row: Row, get: Callable[[Row], Any] = get, sort_key: Callable[[Any], Any] = sort_key
        ) -> tuple[bool, tuple[int, Any]]:
            value = get(row)
            return (value is None, sort_key(value))

        rows.sort(key=by_prop, reverse=desc)
    return rows


def _row_sort_key() -> Callable[[Any], tuple[int, Any]]:
    """`_sort_key` for one query: text straight away, dates and numbers parsed once each."""
    parsed = _memoized(_sort_key)

    def key(value: Any) -> tuple[int, Any]:
        if type(value) is str and not value[:1].isdigit() and value[:1] not in "+-.":
            return (1, value.casefold())
        result: tuple[int, Any] = parsed(value)
        return result

    return key


def _sort_key(value: Any) -> tuple[int, Any]:
    comparable = _comparable(value)
    if isinstance(comparable, Decimal | float | int):
        return (0, comparable)
    return (1, str(comparable))
