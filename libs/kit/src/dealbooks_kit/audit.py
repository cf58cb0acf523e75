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
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import Envelope, Tenant
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_kit.logging import redact
from dealbooks_kit.mongo import IndexSpec

AUDIT_COLLECTION = "audit"
AUDIT_INDEXES = [
    IndexSpec(AUDIT_COLLECTION, [("subject_kind", 1), ("subject_id", 1), ("at", 1)]),
    IndexSpec(AUDIT_COLLECTION, [("expires_at", 1)]),
]


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
    ) -> None:
        """Write one entry, once per (causing event, action, subject); without a causing
        event (a sweep) every call writes its own entry."""
        at = datetime.now(UTC)
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
        }
        await self._collection.update_one(
            {"_id": entry["_id"]}, {"$setOnInsert": entry}, upsert=True
        )

    async def entries(self, subject_kind: str, subject_id: str) -> list[dict[str, Any]]:
        """A subject's entries, oldest first."""
        cursor = self._collection.find(
            {"subject_kind": subject_kind, "subject_id": subject_id}
        ).sort("at", 1)
        return [doc async for doc in cursor]

    async def forget_expired(self) -> int:
        """Delete entries past their retention; returns how many."""
        result = await self._collection.delete_many({"expires_at": {"$lt": datetime.now(UTC)}})
        return int(result.deleted_count)


def _event(event: Envelope[Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "id": str(event.id),
        "type": event.type,
        "correlation_id": event.correlation_id,
    }
