"""CRM search: filterGroups (OR of ANDs), sorts, paging, caps, eventual consistency."""

from __future__ import annotations

import fnmatch
import time
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from crm_sandbox.errors import ApiError, validation
from crm_sandbox.schema import SEARCHABLE, PropertyDef
from crm_sandbox.state import Portal, Record, SandboxConfig
from crm_sandbox.store import Store

MAX_PAGE = 200
MAX_RESULTS = 10_000
OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}


def _visible(record: Record, now: float) -> dict[str, str] | None:
    """The record as the (lagging) search index sees it; None if not indexed or archived."""
    seen: dict[str, str] | None = None
    indexed = False
    for visible_from, props in record.search_versions:
        if visible_from <= now:
            seen, indexed = props, True
    return seen if indexed else None


def _comparable(definition: PropertyDef | None, value: str) -> Any:
    kind = definition.type if definition else "string"
    if kind == "number":
        try:
            return Decimal(value)
        except InvalidOperation:
            return value
    if kind in {"date", "datetime"}:
        if value.lstrip("-").isdigit():
            return int(value)
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return value
    if kind == "enumeration":
        return value
    return value.lower()


def _check_request(
    body: dict[str, Any], config: SandboxConfig, portal: Portal, type_name: str
) -> None:
    groups = body.get("filterGroups") or []
    if len(groups) > config.max_filter_groups:
        raise validation(
            f"Too many filter groups: {len(groups)}, the maximum is {config.max_filter_groups}.",
            sub_category="TOO_MANY_FILTER_GROUPS",
        )
    total = 0
    for group in groups:
        filters = group.get("filters") or []
        total += len(filters)
        if len(filters) > config.max_filters_per_group:
            raise validation(
                f"Too many filters in a group: {len(filters)}, the maximum is "
                f"{config.max_filters_per_group}.",
                sub_category="TOO_MANY_FILTERS",
            )
        for f in filters:
            if f.get("operator") not in OPERATORS:
                raise validation(f"Unknown operator: {f.get('operator')}")
            name = str(f.get("propertyName", ""))
            if not name.startswith("associations.") and name not in portal.properties[type_name]:
                raise validation(f"There was a problem with the request. Unknown property {name}.")
    if total > config.max_filters_total:
        raise validation(
            f"Too many filters: {total}, the maximum is {config.max_filters_total}.",
            sub_category="TOO_MANY_FILTERS",
        )
    if len(str(body.get("query") or "")) > config.max_query_chars:
        raise validation("The query is too long.")


def _matches(
    store: Store, portal: Portal, record: Record, props: dict[str, str], f: dict[str, Any]
) -> bool:
    name = str(f.get("propertyName"))
    op = f.get("operator")
    if name.startswith("associations."):
        target = name.split(".", 1)[1]
        target_type = {"contact": "contacts", "company": "companies", "deal": "deals"}.get(
            target, target
        )
        ids = store.associated_ids(portal, record.type, record.id, target_type)
        return (str(f.get("value")) in ids) == (op == "EQ")
    definition = portal.properties[record.type].get(name)
    raw = props.get(name)
    if op == "HAS_PROPERTY":
        return raw is not None
    if op == "NOT_HAS_PROPERTY":
        return raw is None
    if op in {"IN", "NOT_IN"}:
        values = [str(v) for v in f.get("values") or []]
        hit = raw is not None and (
            raw in values
            if definition and definition.type == "enumeration"
            else raw.lower() in values or raw in values
        )
        return hit if op == "IN" else not hit
    if op in {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}:
        pattern = str(f.get("value", "")).lower()
        text = (raw or "").lower()
        tokens = [text, *text.replace("@", " ").replace(".", " ").split()]
        hit = any(fnmatch.fnmatchcase(t, pattern) for t in tokens)
        return hit if op == "CONTAINS_TOKEN" else not hit
    if raw is None:
        return op == "NEQ"
    left = _comparable(definition, raw)
    right = _comparable(definition, str(f.get("value", "")))
    try:
        if op == "EQ":
            return bool(left == right)
        if op == "NEQ":
            return bool(left != right)
        if op == "LT":
            return bool(left < right)
        if op == "LTE":
            return bool(left <= right)
        if op == "GT":
            return bool(left > right)
        if op == "GTE":
            return bool(left >= right)
        if op == "BETWEEN":
            high = _comparable(definition, str(f.get("highValue", "")))
            return bool(right <= left <= high)
    except TypeError:
        return False
    return False


def _sort_spec(sorts: list[Any]) -> tuple[str, bool] | None:
    if not sorts:
        return None
    first = sorts[0]  # HubSpot applies one sort rule.
    if isinstance(first, str):
        return (first[1:], True) if first.startswith("-") else (first, False)
    return str(first.get("propertyName")), first.get("direction") == "DESCENDING"


def search(
    store: Store, portal: Portal, type_name: str, body: dict[str, Any], config: SandboxConfig
) -> dict[str, Any]:
    _check_request(body, config, portal, type_name)
    try:
        limit = int(body.get("limit") or 10)
        after = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise validation("limit and after must be numbers") from None
    if limit > MAX_PAGE:
        raise validation(f"limit must be at most {MAX_PAGE}, was {limit}")
    if after + limit > MAX_RESULTS:
        raise ApiError(
            400,
            "VALIDATION_ERROR",
            f"The maximum number of results that can be paged through is {MAX_RESULTS}.",
        )
    now = time.monotonic()
    query = str(body.get("query") or "").lower()
    hits: list[tuple[Record, dict[str, str]]] = []
    for record in portal.records[type_name].values():
        props = _visible(record, now)
        if props is None:
            continue
        groups = body.get("filterGroups") or []
        if groups and not any(
            all(_matches(store, portal, record, props, f) for f in g.get("filters") or [])
            for g in groups
        ):
            continue
        if query and not any(
            query in props.get(p, "").lower() for p in SEARCHABLE.get(type_name, [])
        ):
            continue
        hits.append((record, props))
    spec = _sort_spec(body.get("sorts") or [])
    hits.sort(key=lambda h: (h[0].created_at, int(h[0].id)))
    if spec:
        name, descending = spec
        definition = portal.properties[type_name].get(name)
        present = [h for h in hits if name in h[1]]
        missing = [h for h in hits if name not in h[1]]
        present.sort(key=lambda h: _comparable(definition, h[1][name]), reverse=descending)
        hits = present + missing
    page = hits[after : after + limit]
    wanted = body.get("properties") or None
    results = []
    for record, props in page:
        snapshot = _snapshot(record, props)
        results.append(store.render(portal, snapshot, wanted))
    out: dict[str, Any] = {"total": len(hits), "results": results}
    if after + limit < len(hits):
        out["paging"] = {"next": {"after": str(after + limit)}}
    return out


def _snapshot(record: Record, props: dict[str, str]) -> Record:
    return Record(
        id=record.id,
        type=record.type,
        properties=props,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )
