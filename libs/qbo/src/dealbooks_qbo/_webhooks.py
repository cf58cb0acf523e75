from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from dealbooks_qbo import _json

SIGNATURE_HEADER = "intuit-signature"
_CE_OPERATIONS = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}


class EntityChange(BaseModel):
    """One change notification, the same for the legacy and the CloudEvents format.
    Webhooks carry ids only: read the entity (or run CDC) for its data."""

    realm_id: str
    entity: str
    entity_id: str
    operation: str
    occurred_at: datetime | None = None
    event_id: str | None = None
    deleted_id: str | None = None

    @property
    def dedupe_key(self) -> str:
        """Stable across redeliveries of the same change."""
        return (
            self.event_id
            or f"{self.realm_id}:{self.entity}:{self.entity_id}:{self.operation}:"
            + (self.occurred_at.isoformat() if self.occurred_at else "")
        )


def sign(body: bytes, verifier_token: str) -> str:
    """base64(HMAC-SHA256(verifier token, raw body)): the `intuit-signature` value."""
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_signature(body: bytes, signature: str | None, verifier_token: str) -> bool:
    """Constant-time check of `intuit-signature` against the raw body as received."""
    if not signature:
        return False
    return hmac.compare_digest(sign(body, verifier_token).encode(), signature.strip().encode())


def _when(raw: Any) -> datetime | None:
    if not raw:
        return None
    text = str(raw).strip().replace("Z", "+00:00")
    # Python keeps 6 fractional digits; Intuit sends up to 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_webhook(body: bytes) -> list[EntityChange]:
    """Parse a webhook POST in either format: legacy `eventNotifications` or CloudEvents."""
    payload = _json.loads(body)
    changes: list[EntityChange] = []
    if isinstance(payload, dict) and "specversion" in payload:
        payload = [payload]
    if isinstance(payload, list):
        for event in payload:
            parts = str(event.get("type", "")).split(".")
            entity = parts[1] if len(parts) > 2 else ""
            verb = parts[2] if len(parts) > 2 else ""
            data = event.get("data") or {}
            changes.append(
                EntityChange(
                    realm_id=str(event.get("intuitaccountid", "")),
                    entity=_ENTITY_CASE.get(entity, entity.capitalize()),
                    entity_id=str(event.get("intuitentityid", "")),
                    operation=_CE_OPERATIONS.get(verb, verb.capitalize()),
                    occurred_at=_when(event.get("time")),
                    event_id=event.get("id"),
                    deleted_id=data.get("deletedid") if isinstance(data, dict) else None,
                )
            )
        return changes
    for notification in payload.get("eventNotifications", []):
        realm = str(notification.get("realmId", ""))
        for entity in (notification.get("dataChangeEvent") or {}).get("entities", []):
            changes.append(
                EntityChange(
                    realm_id=realm,
                    entity=str(entity.get("name", "")),
                    entity_id=str(entity.get("id", "")),
                    operation=str(entity.get("operation", "")),
                    occurred_at=_when(entity.get("lastUpdated")),
                    deleted_id=entity.get("deletedId"),
                )
            )
    return changes


_ENTITY_CASE = {
    "invoice": "Invoice",
    "payment": "Payment",
    "customer": "Customer",
    "item": "Item",
    "estimate": "Estimate",
    "creditmemo": "CreditMemo",
    "salesreceipt": "SalesReceipt",
    "refundreceipt": "RefundReceipt",
    "term": "Term",
    "preferences": "Preferences",
    "vendor": "Vendor",
    "account": "Account",
}
