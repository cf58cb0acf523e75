"""`dealbooks approvals list|show`: invoice approvals (QuickBooks Online Advanced) as
invoice-builder keeps them, read from its database like the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack

CENT = Decimal("0.01")


class Status(StrEnum):
    """Which approvals `approvals list --status` shows: those in one state, or all."""

    pending = "pending"
    approved = "approved"
    rejected = "rejected"
    all = "all"


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def waited(since: datetime | None, now: datetime) -> str:
    """How long an approval has waited, as a person reads it: 3d 4h, 5h 12m, 7m."""
    if since is None:
        return ""
    minutes = max(0, int((now - since).total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {mins}m" if hours else f"{mins}m"


def row(doc: dict[str, Any], now: datetime) -> dict[str, Any]:
    """One approval as the command shows it."""
    requested = _aware(doc.get("requested_at"))
    decided = _aware(doc.get("decided_at"))
    return {
        "request_id": str(doc["_id"]),
        "status": doc.get("status"),
        "portal_id": doc.get("portal_id"),
        "realm_id": doc.get("realm_id"),
        "company": doc.get("company_name"),
        "deal_id": doc.get("deal_id"),
        "customer": doc.get("customer_name"),
        "subtotal": doc.get("approved_subtotal") or doc.get("subtotal"),
        "currency": doc.get("currency"),
        "requested_by": doc.get("requested_by"),
        "requested_at": requested.isoformat() if requested else None,
        "waiting": waited(requested, now) if doc.get("status") == "pending" else "",
        "approver_id": doc.get("approver_id"),
        "crm_task_id": doc.get("task_id"),
        "reminded": doc.get("reminded_at") is not None,
        "decided_by": doc.get("decided_by_name") or doc.get("decided_by"),
        "decided_at": decided.isoformat() if decided else None,
        "reason": doc.get("reason"),
        "qbo_invoice_id": doc.get("qbo_invoice_id"),
    }


async def approvals(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    portal: str | None,
    status: str,
    now: datetime | None = None,
    *,
    realm: str | None = None,
) -> list[dict[str, Any]]:
    """The approvals of one portal (or all) and company (or all), oldest request first;
    `status` all: any."""
    query: dict[str, Any] = {}
    if portal:
        query["portal_id"] = portal
    if realm:
        query["realm_id"] = realm
    if status != "all":
        query["status"] = status
    collection = client[stack.database("invoice-builder")]["approvals"]
    try:
        docs = [doc async for doc in collection.find(query).sort("requested_at", 1)]
    except PyMongoError as exc:
        raise CliError(f"cannot read invoice-builder's approvals: {exc}") from exc
    moment = now or datetime.now(UTC)
    return [row(doc, moment) for doc in docs]


def _line(line: dict[str, Any]) -> dict[str, Any]:
    """One line of the invoice an approval would create, with its amount (quantity x unit
    price, to the cent, as invoice-builder writes it)."""
    price = line.get("unit_price") or {}
    try:
        product = Decimal(str(line["quantity"])) * Decimal(str(price["amount"]))
        amount: str | None = str(product.quantize(CENT, ROUND_HALF_UP))
    except (KeyError, ArithmeticError, ValueError):
        amount = None
    return {
        "qbo_item_id": line.get("qbo_item_id"),
        "description": line.get("description"),
        "quantity": line.get("quantity"),
        "unit_price": price.get("amount"),
        "currency": price.get("currency"),
        "amount": amount,
        "tax_code_id": line.get("tax_code_id"),
    }


async def approval(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], request_id: str
) -> dict[str, Any]:
    """One approval as `approvals list` shows it, with the invoice's lines (as approved, when
    an approver edited them; else as requested), its dates, and whether it was edited or
    reminded; CliError when invoice-builder has no approval of that request."""
    collection = client[stack.database("invoice-builder")]["approvals"]
    try:
        doc = await collection.find_one({"_id": request_id})
    except PyMongoError as exc:
        raise CliError(f"cannot read invoice-builder's approvals: {exc}") from exc
    if doc is None:
        raise CliError(
            f"no approval of request {request_id} (`dealbooks approvals list --status all` "
            "lists them; `dealbooks audit request` follows a request without one)"
        )
    request = doc.get("approved_request") or doc.get("request") or {}
    reminded = _aware(doc.get("reminded_at"))
    return {
        **row(doc, datetime.now(UTC)),
        "reminded_at": reminded.isoformat() if reminded else None,
        "edited": bool(doc.get("edited")),
        "origin": doc.get("origin"),
        "doc_number": doc.get("doc_number"),
        "invoice_date": request.get("invoice_date"),
        "due_date": request.get("due_date"),
        "terms_id": request.get("terms_id"),
        "customer_message": request.get("customer_message"),
        "lines": [_line(line) for line in request.get("lines") or []],
    }
