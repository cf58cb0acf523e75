"""`dealbooks audit <invoice|customer|item|deal>`: one subject's life, merged from the services'
audit trails (each service keeps its own; see `dealbooks_kit.audit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dealbooks_kit.audit import trail_query, trail_row
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack

# Which services keep the trail of each kind of subject.
AUDITED = {
    "invoice": ("invoice-builder", "status-tracker", "reminders"),
    "deal": ("invoice-builder", "status-tracker", "reminders"),
    "customer": ("contact-sync", "invoice-builder"),
    "item": ("product-sync",),
    "request": ("invoice-builder",),
}
REQUESTS = ("invoice-builder",)


async def trail(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    kind: str,
    subject_id: str,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Every entry of the subject (and of the requests that drafted it, or the invoice a
    request drafted), oldest first; with `since`, those written at or after it. An
    invoice's, customer's or item's id is `<realm>:<id>`; a deal's `<portal>:<id>`; a
    request's its id."""
    window: dict[str, Any] = {"at": {"$gte": since}} if since else {}
    docs = await _gather(stack, client, AUDITED[kind], {**trail_query(kind, subject_id), **window})
    if kind == "request":
        asked_for = {"detail.request_id": subject_id, **window}
        docs += await _gather(stack, client, REQUESTS, asked_for)
    requests = {
        str(doc["detail"]["request_id"])
        for doc in docs
        if kind == "invoice"
        and isinstance(doc.get("detail"), dict)
        and doc["detail"].get("request_id")
    }
    if requests:
        asked = {"subject_kind": "request", "subject_id": {"$in": sorted(requests)}, **window}
        docs += await _gather(stack, client, REQUESTS, asked)
    unique = {str(doc["_id"]) + str(doc.get("service")): doc for doc in docs}
    return [trail_row(doc) for doc in sorted(unique.values(), key=lambda doc: doc["at"])]


async def invoice_numbered(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], realm: str, number: str
) -> str | None:
    """The QuickBooks id of the invoice of `realm` that invoice-builder made with this number
    (what people read on the invoice and the deal), if it made one."""
    query = {"subject_kind": "invoice", "detail.doc_number": number}
    for doc in await _gather(stack, client, REQUESTS, query):
        made_in, _, invoice_id = str(doc.get("subject_id", "")).partition(":")
        if made_in == realm and invoice_id:
            return invoice_id
    return None


async def _gather(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    services: tuple[str, ...],
    query: dict[str, Any],
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for service in services:
        collection = client[stack.database(service)]["audit"]
        try:
            found += [doc async for doc in collection.find(query)]
        except PyMongoError as exc:
            raise CliError(f"cannot read {service}'s audit trail: {exc}") from exc
    return found
