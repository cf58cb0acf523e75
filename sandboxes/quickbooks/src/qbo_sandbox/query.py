"""The QBO query language: SELECT * | COUNT(*) FROM X [WHERE .. AND ..] [ORDERBY] [paging]."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from qbo_sandbox import faults
from qbo_sandbox.company import NAME_LISTS, Company

QUERYABLE = {
    name.lower(): name
    for name in (
        "Customer",
        "Item",
        "Invoice",
        "Payment",
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
        "Vendor",
        "Employee",
        "Estimate",
        "SalesReceipt",
        "CreditMemo",
        "Bill",
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


def _lookup(record: dict[str, Any], prop: str) -> Any:
    value: Any = record
    for part in prop.split("."):
        if not isinstance(value, dict):
            return None
        # Exact spelling first; property names are matched case-insensitively only as a fallback.
        match = (
            part if part in value else next((k for k in value if k.lower() == part.lower()), None)
        )
        if match is None:
            return None
        value = value[match]
    if isinstance(value, dict) and "value" in value:
        return value["value"]  # `CustomerRef = '58'` compares the reference id
    return value


def _comparable(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, Decimal | int):
        return Decimal(value)
    text = str(value)
    if len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-":
        try:
            parsed = datetime.fromisoformat(text)
            return parsed.timestamp() if parsed.tzinfo else parsed.date().toordinal() * 86400.0
        except ValueError:
            pass
    try:
        return Decimal(text)
    except InvalidOperation:
        return text.casefold()


def _like(value: Any, pattern: str) -> bool:
    regex = "^" + ".*".join(re.escape(p) for p in pattern.split("%")) + "$"
    return re.match(regex, str(value), re.IGNORECASE | re.DOTALL) is not None


def _matches(record: dict[str, Any], cond: Condition) -> bool:
    actual = _lookup(record, cond.prop)
    if cond.op == "LIKE":
        return actual is not None and _like(actual, str(cond.values[0]))
    if actual is None:
        return False
    left = _comparable(actual)
    rights = [_comparable(v) for v in cond.values]
    try:
        if cond.op in {"=", "IN"}:
            return any(left == r for r in rights)
        if cond.op in {"!=", "<>"}:
            return bool(left != rights[0])
        right = rights[0]
        return bool(
            {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[
                cond.op
            ]
        )
    except TypeError:
        return False


def run(company: Company, text: str, max_allowed: int) -> dict[str, Any]:
    """Evaluate a statement against one company; returns the QueryResponse body."""
    query = parse(text, max_allowed)
    rows = company.rows(query.entity)
    filters_active = any(c.prop.lower() == "active" for c in query.where)
    if query.entity in NAME_LISTS and not filters_active:
        rows = [r for r in rows if r.get("Active", True) is not False]
    rows = [r for r in rows if all(_matches(r, c) for c in query.where)]
    if query.count:
        return {"totalCount": len(rows)}
    for prop, desc in reversed(query.order):

        def by_prop(row: dict[str, Any], prop: str = prop) -> tuple[bool, tuple[int, Any]]:
            value = _lookup(row, prop)
            return (value is None, _sort_key(value))

        rows.sort(key=by_prop, reverse=desc)
    if not query.order:
        rows.sort(key=lambda r: _sort_key(r.get("Id")))
    page = rows[query.start - 1 : query.start - 1 + query.max_results]
    if not page:
        return {}
    return {query.entity: page, "startPosition": query.start, "maxResults": len(page)}


def _sort_key(value: Any) -> tuple[int, Any]:
    comparable = _comparable(value)
    if isinstance(comparable, Decimal | float | int):
        return (0, comparable)
    return (1, str(comparable))
