"""The audit trail: what happened to a subject (an invoice, a request), which event caused
it, which external call it made and with what result. One upsert per entry, never a token.

An entry's id derives from (causing event id, action, subject), so a handler that runs twice
for one event writes one entry (`$setOnInsert`). The MongoDB-wire servers dealbooks runs on
have no TTL index, so entries carry `expires_at` and a periodic pass deletes the expired
(`Audit.forget_expired`, registered by `ServiceRuntime`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import Envelope, Tenant
from pymongo.asynchronous.database import AsyncDatabase
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dealbooks_kit.auth import Access, Guard
from dealbooks_kit.logging import redact
from dealbooks_kit.mongo import IndexSpec

AUDIT_COLLECTION = "audit"
AUDIT_INDEXES = [
    IndexSpec(AUDIT_COLLECTION, [("subject_kind", 1), ("subject_id", 1), ("at", 1)]),
    IndexSpec(AUDIT_COLLECTION, [("related", 1)]),
    IndexSpec(AUDIT_COLLECTION, [("expires_at", 1)]),
]
# The subjects an operator asks after (`GET /operator/audit/{kind}/{id}`, `dealbooks audit`).
SUBJECT_KINDS = (
    "invoice",
    "request",
    "customer",
    "item",
    "bill",
    "payment",
    "deal",
    "contact",
    "company",
    "product",
)


def invoice_subject(realm_id: str, qbo_invoice_id: str) -> str:
    """The subject id of a QuickBooks invoice: `<realm>:<invoice id>`."""
    return f"{realm_id}:{qbo_invoice_id}"


def external_call(
    system: str,
    method: str,
    path: str,
    *,
    status: int | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """An external call as an entry shows it: its path without any query string (where
    secrets ride), QuickBooks' `requestid` where one was sent, and its status."""
    call: dict[str, Any] = {"system": system, "method": method.upper(), "path": path.split("?")[0]}
    if request_id is not None:
        call["requestid"] = request_id
    if status is not None:
        call["status"] = status
    return call


class Audit:
    """Records audit entries in the service's own `audit` collection."""

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], service: str, retention_days: float = 90.0
    ) -> None:
        self._collection = db[AUDIT_COLLECTION]
        self.service = service
        self.retention = timedelta(days=retention_days)

    async def record(
        self,
        subject_kind: str,
        subject_id: str,
        tenant: Tenant | None,
        event: Envelope[Any] | None,
        action: str,
        detail: Mapping[str, Any] | None = None,
        result: str = "ok",
        related: Sequence[str] = (),
        at: datetime | None = None,
    ) -> None:
        """Write one entry, once per (causing event, action, subject); without a causing
        event (a sweep) every call writes its own entry. `related` names other subjects the
        entry belongs to as `<kind>:<id>` (the deal an invoice shows on, the contact a
        customer became), so each one's trail finds it too. `at` is when the step happened,
        where that was before this write (now by default)."""
        at = at or datetime.now(UTC)
        cause = str(event.id) if event is not None else uuid.uuid4().hex
        key = hashlib.sha256(f"{cause}|{action}|{subject_kind}:{subject_id}".encode()).hexdigest()
        entry: dict[str, Any] = {
            "_id": key[:32],
            "subject_kind": subject_kind,
            "subject_id": subject_id,
            "at": at,
            "expires_at": at + self.retention,
            "service": self.service,
            "portal_id": tenant.portal_id if tenant else None,
            "realm_id": tenant.account_id if tenant else None,
            "action": action,
            "detail": redact(dict(detail or {})),
            "result": result,
            "event": _event(event),
            "related": sorted(set(related)),
        }
        await self._collection.update_one(
            {"_id": entry["_id"]}, {"$setOnInsert": entry}, upsert=True
        )

    async def entries(self, subject_kind: str, subject_id: str) -> list[dict[str, Any]]:
        """A subject's entries, and those that name it as related, oldest first."""
        cursor = self._collection.find(trail_query(subject_kind, subject_id)).sort("at", 1)
        return [doc async for doc in cursor]

    async def forget_expired(self) -> int:
        """Delete entries past their retention; returns how many."""
        result = await self._collection.delete_many({"expires_at": {"$lt": datetime.now(UTC)}})
        return int(result.deleted_count)


def trail_query(subject_kind: str, subject_id: str) -> dict[str, Any]:
    """The entries of a subject's trail: its own, and those naming it as related."""
    return {
        "$or": [
            {"subject_kind": subject_kind, "subject_id": subject_id},
            {"related": f"{subject_kind}:{subject_id}"},
        ]
    }


def trail_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as the operator API and the CLI show it."""
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
        "related": list(doc.get("related") or []),
    }


def _event(event: Envelope[Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "id": str(event.id),
        "type": event.type,
        "correlation_id": event.correlation_id,
    }


def audit_routes(guard: Guard, audit: Audit) -> list[Route]:
    """The operator API over a service's audit trail:
    `GET /operator/audit/{kind}/{subject_id}` answers the subject's entries, oldest first
    (`?limit=`, newest kept, default 500). An invoice's id is `<realm>:<invoice id>`, a
    customer's or item's `<realm>:<id>`, a deal's, contact's or product's `<portal>:<id>`."""

    async def trail(request: Request) -> Response:
        kind = request.path_params["kind"]
        subject_id = request.path_params["subject_id"]
        if kind not in SUBJECT_KINDS:
            known = ", ".join(SUBJECT_KINDS)
            return JSONResponse(
                {"error": "unknown_subject", "message": f"{kind!r} is not one of {known}"},
                status_code=404,
            )
        try:
            limit = max(1, min(5000, int(request.query_params.get("limit", "500"))))
        except ValueError:
            return JSONResponse(
                {"error": "bad_request", "message": "limit must be a number"}, status_code=400
            )
        entries = await audit.entries(kind, subject_id)
        return JSONResponse(
            {
                "service": audit.service,
                "subject": f"{kind}:{subject_id}",
                "entries": [trail_row(doc) for doc in entries[-limit:]],
            }
        )

    return [guard.route("/operator/audit/{kind}/{subject_id}", trail, ["GET"], Access.OPERATOR)]
