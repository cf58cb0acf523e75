"""Webhook v3 signature verification: HubSpot's published vector and the failure cases."""

from __future__ import annotations

import pytest
from dealbooks_crm import (
    InvalidWebhookPayload,
    InvalidWebhookSignature,
    StaleWebhookTimestamp,
    canonical_uri,
    parse_webhook_events,
    signature_v3,
    verify_signature_v1,
    verify_signature_v3,
)

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URL = "https://www.example.com/webhook_uri"
NOW_MS = 1_790_000_000_000
BODY = (
    b'[{"eventId":1,"subscriptionId":25,"portalId":62515,"occurredAt":1790000000000,'
    b'"subscriptionType":"deal.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM_UI"}]'
)


def test_hubspot_sdk_published_v3_vector_verifies() -> None:
    # Test vector from HubSpot's official Python SDK, HubSpot/hubspot-api-python,
    # tests/spec/utils/test_signature.py (test_get_signature__v3, commit 971f79cb):
    # secret, POST, URL, the literal body {'example_field':'example_value'} and timestamp
    # 15000000 sign to HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=.
    verify_signature_v3(
        client_secret=SECRET,
        method="POST",
        uri=URL,
        body=b"{'example_field':'example_value'}",
        signature="HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw=",
        timestamp="15000000",
        now_ms=15_000_000,
    )


def test_hubspot_docs_v1_vector_verifies() -> None:
    # Example from HubSpot's "Validating requests" docs (v1: hex SHA-256 of secret + body).
    body = (
        b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
        b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,'
        b'"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
    )
    verify_signature_v1(
        client_secret=SECRET,
        body=body,
        signature="232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de",
    )


def _signed(timestamp_ms: int, body: bytes = BODY, secret: str = SECRET) -> str:
    return signature_v3(secret, "POST", URL, body, str(timestamp_ms))


def _verify(
    signature: str | None,
    timestamp: int | None,
    body: bytes = BODY,
    secret: str = SECRET,
) -> None:
    """Verify a POST of `body` to URL, received at NOW_MS, as the gateway does."""
    verify_signature_v3(
        client_secret=secret,
        method="POST",
        uri=URL,
        body=body,
        signature=signature,
        timestamp=None if timestamp is None else str(timestamp),
        now_ms=NOW_MS,
    )


def test_valid_signature_inside_the_window_passes() -> None:
    ts = NOW_MS - 60_000
    _verify(_signed(ts), ts)


def test_stale_timestamp_is_rejected_even_with_a_valid_signature() -> None:
    ts = NOW_MS - 300_001
    with pytest.raises(StaleWebhookTimestamp):
        _verify(_signed(ts), ts)


def test_tampered_body_is_rejected() -> None:
    tampered = BODY.replace(b'"objectId":123', b'"objectId":124')
    with pytest.raises(InvalidWebhookSignature) as caught:
        _verify(_signed(NOW_MS), NOW_MS, body=tampered)
    assert not isinstance(caught.value, StaleWebhookTimestamp)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(InvalidWebhookSignature):
        _verify(_signed(NOW_MS), NOW_MS, secret="another-secret")


def test_missing_headers_are_rejected() -> None:
    with pytest.raises(InvalidWebhookSignature):
        _verify(None, None)


def test_uri_escapes_are_decoded_before_signing() -> None:
    assert canonical_uri("https://h.example/p%3Aa?x=%40b%2Cc") == "https://h.example/p:a?x=@b,c"
    assert canonical_uri("https://h.example/a%20b") == "https://h.example/a%20b"


def test_parsing_keeps_fields_and_tolerates_unknown_ones() -> None:
    body = BODY.replace(b'"changeSource"', b'"isSensitive":false,"changeSource"')
    [event] = parse_webhook_events(body)
    assert (event.portal_id, event.object_id, event.object_type) == (62515, 123, "deal")
    assert event.dedupe_key[2] == 1


def test_non_array_payload_is_rejected() -> None:
    with pytest.raises(InvalidWebhookPayload):
        parse_webhook_events(b'{"eventId": 1}')
