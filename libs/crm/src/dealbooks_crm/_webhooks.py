from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

from pydantic import TypeAdapter, ValidationError

from dealbooks_crm._models import WebhookEvent

__all__ = [
    "InvalidWebhookPayload",
    "InvalidWebhookSignature",
    "StaleWebhookTimestamp",
    "canonical_uri",
    "parse_webhook_events",
    "signature_v3",
    "verify_signature_v1",
    "verify_signature_v3",
]

MAX_TIMESTAMP_AGE_MS = 300_000
MAX_EVENTS_PER_REQUEST = 100

# HubSpot decodes exactly these escapes in the URI before signing (v3).
_URI_ESCAPES = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_ESCAPE = re.compile("|".join(_URI_ESCAPES), re.IGNORECASE)
_EVENTS = TypeAdapter(list[WebhookEvent])


class InvalidWebhookSignature(Exception):
    """The request was not signed by the CRM with this client secret (or was altered)."""


class StaleWebhookTimestamp(InvalidWebhookSignature):
    """`X-HubSpot-Request-Timestamp` is outside the 5-minute window (a possible replay)."""


class InvalidWebhookPayload(Exception):
    """The body is not a JSON array of webhook events."""


def canonical_uri(uri: str) -> str:
    """The URI as HubSpot signs it: full URL, listed percent-escapes decoded."""
    return _ESCAPE.sub(lambda m: _URI_ESCAPES[m.group(0).upper()], uri)


def signature_v3(client_secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    """base64(HMAC-SHA256(client secret, method + URI + raw body + timestamp))."""
    message = method.upper().encode() + canonical_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_signature_v3(
    *,
    client_secret: str,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    now_ms: int | None = None,
    max_age_ms: int = MAX_TIMESTAMP_AGE_MS,
) -> None:
    """Verify `X-HubSpot-Signature-v3`; raise `InvalidWebhookSignature` or `StaleWebhookTimestamp`.

    `uri` is the full URL the request was sent to (scheme, host, path, query), `body` the raw
    bytes as received. The comparison is constant time.
    """
    if not signature or not timestamp:
        raise InvalidWebhookSignature("missing signature or timestamp header")
    if not timestamp.strip().isdigit():
        raise InvalidWebhookSignature("timestamp is not epoch milliseconds")
    current = int(time.time() * 1000) if now_ms is None else now_ms
    if abs(current - int(timestamp)) > max_age_ms:
        raise StaleWebhookTimestamp(f"timestamp {timestamp} is outside the {max_age_ms} ms window")
    expected = signature_v3(client_secret, method, uri, body, timestamp.strip())
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise InvalidWebhookSignature("signature mismatch")


def verify_signature_v1(*, client_secret: str, body: bytes, signature: str | None) -> None:
    """Verify the legacy `X-HubSpot-Signature` (v1): hex SHA-256 of secret + raw body."""
    expected = hashlib.sha256(client_secret.encode() + body).hexdigest()
    if not signature or not hmac.compare_digest(expected, signature.strip().lower()):
        raise InvalidWebhookSignature("v1 signature mismatch")


def parse_webhook_events(body: bytes) -> list[WebhookEvent]:
    """Parse a delivery: a JSON array of at most 100 events; unknown fields are kept."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise InvalidWebhookPayload("body is not JSON") from exc
    if not isinstance(data, list):
        raise InvalidWebhookPayload("webhook body must be a JSON array")
    if len(data) > MAX_EVENTS_PER_REQUEST:
        raise InvalidWebhookPayload(f"more than {MAX_EVENTS_PER_REQUEST} events in one request")
    try:
        return _EVENTS.validate_python(data)
    except ValidationError as exc:
        raise InvalidWebhookPayload(str(exc)) from exc
