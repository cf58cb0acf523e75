"""`dealbooks approvals list`: invoice approvals (QuickBooks Online Advanced) as invoice-builder
keeps them, read from its database like the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack


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
