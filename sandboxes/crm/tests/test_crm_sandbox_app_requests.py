"""Signed requests from HubSpot to the app: a CRM card's data fetch, `hubspot.fetch` and a
custom workflow action, checked with dealbooks' own v3 verifier."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl, urlsplit

import pytest
from crm_sandbox.testing import CrmSandbox, ReceivedRequest, SandboxPortal, WebhookReceiver
from crm_sandbox.webhooks import sign_v2, sign_v3
from dealbooks_crm import InvalidWebhookSignature, StaleWebhookTimestamp, verify_signature_v3

SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"


def test_signatures_match_hubspots_vectors() -> None:
    body = b"{'example_field':'example_value'}"
    uri = "https://www.example.com/webhook_uri"
    assert sign_v2(SECRET, "GET", uri, b"") == (
        "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
    )
    assert sign_v2(SECRET, "POST", uri, body) == (
        "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
    )
    assert sign_v3(SECRET, "POST", uri, body, "15000000") == (
        "HPW73RUtKmcYoEDADG0s6MmGFWUzWJKAW07r8RDgcQw="
    )


def verify(endpoint: WebhookReceiver, request: ReceivedRequest, secret: str) -> None:
    """What the app does: v3 over the full URL it was called on, and the v2 header."""
    url = endpoint.base_url + request.path
    verify_signature_v3(
        client_secret=secret,
        method=request.method,
        uri=url,
        body=request.body,
        signature=request.headers.get("X-HubSpot-Signature-v3"),
        timestamp=request.headers.get("X-HubSpot-Request-Timestamp"),
    )
    v2 = hashlib.sha256(secret.encode() + request.method.encode() + url.encode() + request.body)
    assert request.headers["X-HubSpot-Signature-Version"] == "v2"
    if request.headers["X-HubSpot-Signature"] != v2.hexdigest():
        raise InvalidWebhookSignature("v2 signature mismatch")


@pytest.fixture
def app_endpoint(crm_sandbox: CrmSandbox, crm_app_endpoint: WebhookReceiver) -> WebhookReceiver:
    """The app: 200 with a card body when the signature checks out, else 401 naming why."""
    secret = crm_sandbox.app()["clientSecret"]

    def answer(request: ReceivedRequest) -> tuple[int, bytes]:
        try:
            verify(crm_app_endpoint, request, secret)
        except InvalidWebhookSignature as exc:
            return 401, json.dumps({"error": type(exc).__name__}).encode()
        return 200, b'{"results": []}'

    crm_app_endpoint.answer = answer
    return crm_app_endpoint


def test_card_fetch_sends_hubspots_parameters_signed(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, app_endpoint: WebhookReceiver
) -> None:
    pid = crm_portal.portal_id
    deal = crm_sandbox.create_as_user(pid, "deals", {"dealname": "Card deal", "amount": "12.50"})
    answer = crm_sandbox.send_app_request(
        "card-fetch",
        app_endpoint.base_url + "/crm/card?source=hubspot",
        pid,
        object_type="deals",
        object_id=deal["id"],
        properties=["dealname", "amount"],
    )
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"results": []}
    [request] = app_endpoint.requests
    assert request.method == "GET"
    assert urlsplit(request.path).path == "/crm/card"
    assert parse_qsl(urlsplit(request.path).query) == [
        ("source", "hubspot"),
        ("userId", str(pid * 1000 + 1)),
        ("userEmail", f"admin@{pid}.example.com"),
        ("associatedObjectId", deal["id"]),
        ("associatedObjectType", "DEAL"),
        ("portalId", str(pid)),
        ("dealname", "Card deal"),
        ("amount", "12.50"),
    ]
    assert "X-HubSpot-Signature-v3" in request.headers


def test_ui_fetch_adds_the_user_portal_and_app(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, app_endpoint: WebhookReceiver
) -> None:
    pid = crm_portal.portal_id
    user = crm_sandbox.add_user(pid, "rep+cards@example.com")
    answer = crm_sandbox.send_app_request(
        "ui-fetch",
        app_endpoint.base_url + "/api/invoice-preview",
        pid,
        user_id=user["userId"],
        method="POST",
        body={"dealId": "123", "amount": 10.5},
    )
    assert answer["status"] == 200
    [request] = app_endpoint.requests
    assert request.method == "POST"
    assert json.loads(request.body) == {"dealId": "123", "amount": 10.5}
    assert request.headers["Content-Type"] == "application/json"
    assert dict(parse_qsl(urlsplit(request.path).query)) == {
        "userId": str(user["userId"]),
        "portalId": str(pid),
        "userEmail": "rep+cards@example.com",
        "appId": str(crm_sandbox.app()["appId"]),
    }


def test_workflow_action_posts_hubspots_payload(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, app_endpoint: WebhookReceiver
) -> None:
    pid = crm_portal.portal_id
    answer = crm_sandbox.send_app_request(
        "workflow-action",
        app_endpoint.base_url + "/crm/actions/create-invoice",
        pid,
        object_type="deals",
        object_id=4242,
        properties={"dealname": "From a workflow"},
        input_fields={"sendInvoice": "true"},
        workflowId=77,
    )
    assert answer["status"] == 200
    [request] = app_endpoint.requests
    assert request.method == "POST"
    payload = json.loads(request.body)
    assert payload["callbackId"].startswith(f"ap-{pid}-")
    assert payload["origin"]["portalId"] == pid
    assert {"actionDefinitionId", "actionDefinitionVersion"} <= set(payload["origin"])
    assert payload["context"] == {"source": "WORKFLOWS", "workflowId": 77}
    assert payload["object"] == {
        "objectId": 4242,
        "objectType": "DEAL",
        "properties": {"dealname": "From a workflow"},
    }
    assert payload["inputFields"] == {"sendInvoice": "true"}


@pytest.mark.parametrize(
    ("tamper", "refusal"),
    [("signature", "InvalidWebhookSignature"), ("timestamp", "StaleWebhookTimestamp")],
)
def test_tampered_requests_are_refused_by_the_app(
    crm_sandbox: CrmSandbox,
    crm_portal: SandboxPortal,
    app_endpoint: WebhookReceiver,
    tamper: str,
    refusal: str,
) -> None:
    answer = crm_sandbox.send_app_request(
        "workflow-action",
        app_endpoint.base_url + "/crm/actions/create-invoice",
        crm_portal.portal_id,
        object_type="deals",
        object_id=1,
        tamper=tamper,
    )
    assert answer["status"] == 401
    assert json.loads(answer["body"]) == {"error": refusal}
    assert issubclass(StaleWebhookTimestamp, InvalidWebhookSignature)


def test_unreachable_app_is_reported_not_raised(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    answer = crm_sandbox.send_app_request(
        "ui-fetch", "http://127.0.0.1:9/unreachable", crm_portal.portal_id
    )
    assert answer["status"] is None and answer["error"]
