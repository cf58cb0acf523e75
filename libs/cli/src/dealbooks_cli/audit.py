"""`dealbooks audit invoice`: one invoice's life, merged from the services' audit trails."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack

# The services that keep an audit trail of invoices and their requests.
AUDITED = ("invoice-builder", "status-tracker")


async def invoice_trail(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], realm: str, invoice_id: str
) -> list[dict[str, Any]]:
    """Every entry of the invoice and of the request that drafted it, oldest first."""
    subject = {"subject_kind": "invoice", "subject_id": f"{realm}:{invoice_id}"}
    docs = [doc for service in AUDITED for doc in await _find(stack, client, service, subject)]
    requests = {
        str(doc["detail"]["request_id"])
        for doc in docs
        if isinstance(doc.get("detail"), dict) and doc["detail"].get("request_id")
    }
    if requests:
        asked = {"subject_kind": "request", "subject_id": {"$in": sorted(requests)}}
        docs += [doc for service in AUDITED for doc in await _find(stack, client, service, asked)]
    docs.sort(key=lambda doc: doc["at"])
    return [_row(doc) for doc in docs]


async def _find(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], service: str, query: dict[str, Any]
) -> list[dict[str, Any]]:
    collection = client[stack.database(service)]["audit"]
    try:
        return [doc async for doc in collection.find(query)]
    except PyMongoError as exc:
        raise CliError(f"cannot read {service}'s audit trail: {exc}") from exc


def _row(doc: dict[str, Any]) -> dict[str, Any]:
    event = doc.get("event") or {}
    at = doc.get("at")
    return {
        "at": at.isoformat() if isinstance(at, datetime) else at,
        "service": doc.get("service"),
        "subject": f"{doc.get('subject_kind')}:{doc.get('subject_id')}",
        "action": doc.get("action"),
        "result": doc.get("result"),
        "event_id": event.get("id"),
        "event_type": event.get("type"),
        "correlation_id": event.get("correlation_id"),
        "detail": doc.get("detail") or {},
    }
