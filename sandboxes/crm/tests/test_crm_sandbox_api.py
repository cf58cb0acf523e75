"""The sandbox speaks HubSpot's shapes: status codes, error bodies, limits and headers."""

from __future__ import annotations

import base64
import hashlib
import hmac

import httpx
import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal, WebhookReceiver, wait_until


def api(sb: CrmSandbox, portal: SandboxPortal, *, private: bool = False) -> httpx.Client:
    token = portal.private_app_token if private else portal.access_token
    return httpx.Client(
        base_url=sb.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


@pytest.fixture
def http(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> httpx.Client:
    return api(crm_sandbox, crm_portal)


def test_health_answers_when_ready(crm_sandbox: CrmSandbox) -> None:
    assert httpx.get(crm_sandbox.base_url + "/_sandbox/health").status_code == 200


def test_create_returns_201_with_string_properties(http: httpx.Client) -> None:
    response = http.post(
        "/crm/v3/objects/deals",
        content=b'{"properties": {"dealname": "Big", "amount": 1500.10, "dealstage": "closedwon"}}',
    )
    assert response.status_code == 201
    body = response.json()
    assert body["properties"]["amount"] == "1500.10"
    assert body["properties"]["hs_object_id"] == body["id"]
    assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == 24


def test_dated_paths_serve_the_same_bodies(http: httpx.Client) -> None:
    created = http.post("/crm/objects/2026-03/0-3", json={"properties": {"dealname": "D"}})
    assert created.status_code == 201
    read = http.get(f"/crm/v3/objects/deals/{created.json()['id']}")
    assert read.json()["properties"]["dealname"] == "D"


def test_empty_string_clears_a_property(http: httpx.Client) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    http.patch(f"/crm/v3/objects/deals/{deal['id']}", json={"properties": {"dealname": ""}})
    read = http.get(f"/crm/v3/objects/deals/{deal['id']}?properties=dealname,nonexistent")
    props = read.json()["properties"]
    assert props["dealname"] is None
    assert "nonexistent" not in props


def test_duplicate_contact_email_is_409_with_existing_id(http: httpx.Client) -> None:
    first = http.post("/crm/v3/objects/contacts", json={"properties": {"email": "A@x.io"}})
    again = http.post("/crm/v3/objects/contacts", json={"properties": {"email": "a@x.io"}})
    assert again.status_code == 409
    body = again.json()
    assert body["category"] == "CONFLICT"
    assert f"Existing ID: {first.json()['id']}" in body["message"]
    assert {"status", "message", "correlationId", "category"} <= set(body)


def test_unknown_property_is_a_validation_error_naming_it(http: httpx.Client) -> None:
    response = http.post("/crm/v3/objects/deals", json={"properties": {"nope": "1"}})
    assert response.status_code == 400
    assert "PROPERTY_DOESNT_EXIST" in response.json()["message"]


def test_batch_over_100_inputs_is_rejected(http: httpx.Client) -> None:
    inputs = [{"properties": {"name": f"p{i}"}} for i in range(101)]
    response = http.post("/crm/v3/objects/products/batch/create", json={"inputs": inputs})
    assert response.status_code == 400


def test_batch_read_of_missing_id_is_207(http: httpx.Client) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    response = http.post(
        "/crm/v3/objects/deals/batch/read", json={"inputs": [{"id": deal["id"]}, {"id": "999"}]}
    )
    assert response.status_code == 207
    assert response.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"


def test_traced_batch_create_keeps_valid_inputs(http: httpx.Client) -> None:
    inputs = [
        {"properties": {"name": "ok"}, "objectWriteTraceId": "a"},
        {"properties": {"missing": "x"}, "objectWriteTraceId": "b"},
    ]
    response = http.post("/crm/v3/objects/products/batch/create", json={"inputs": inputs})
    assert response.status_code == 207
    assert response.json()["errors"][0]["context"] == {"objectWriteTraceId": ["b"]}


def test_rate_limit_headers_on_objects_but_not_on_search(http: httpx.Client) -> None:
    listed = http.get("/crm/v3/objects/deals")
    assert listed.headers["X-HubSpot-RateLimit-Max"] == "110"
    searched = http.post("/crm/v3/objects/deals/search", json={})
    assert searched.status_code == 200
    assert "X-HubSpot-RateLimit-Max" not in searched.headers


def test_ten_second_limit_answers_429_with_policy(crm_sandbox: CrmSandbox) -> None:
    portal = crm_sandbox.create_portal(limitPer10s=3)
    with api(crm_sandbox, portal) as http:
        statuses = [http.get("/crm/v3/objects/deals").status_code for _ in range(6)]
        assert 429 in statuses
        limited = next(
            r for r in (http.get("/crm/v3/objects/deals") for _ in range(4)) if r.status_code == 429
        )
    body = limited.json()
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["errorType"] == "RATE_LIMIT"
    assert crm_sandbox.counters(portal.portal_id)["rateLimited"] >= 1


def test_search_caps_filter_groups(http: httpx.Client) -> None:
    group = {"filters": [{"propertyName": "dealname", "operator": "EQ", "value": "x"}]}
    response = http.post("/crm/v3/objects/deals/search", json={"filterGroups": [group] * 6})
    assert response.status_code == 400


def test_search_refuses_paging_beyond_ten_thousand(http: httpx.Client) -> None:
    response = http.post("/crm/v3/objects/deals/search", json={"after": "9950", "limit": 100})
    assert response.status_code == 400
    assert http.post("/crm/v3/objects/deals/search", json={"limit": 201}).status_code == 400


def test_search_filters_sorts_and_pages(http: httpx.Client) -> None:
    for amount in ("5", "50", "500", "5000"):
        http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "s", "amount": amount}})
    body = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "amount",
                        "operator": "BETWEEN",
                        "value": "10",
                        "highValue": "1000",
                    }
                ]
            },
            {"filters": [{"propertyName": "amount", "operator": "EQ", "value": "5000"}]},
        ],
        "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}],
        "limit": 2,
    }
    first = http.post("/crm/v3/objects/deals/search", json=body).json()
    assert first["total"] == 3
    assert [r["properties"]["amount"] for r in first["results"]] == ["5000", "500"]
    assert first["paging"]["next"]["after"] == "2"


def test_property_type_and_field_type_must_match(http: httpx.Client) -> None:
    bad = {
        "name": "acct_x",
        "label": "X",
        "type": "number",
        "fieldType": "select",
        "groupName": "dealinformation",
    }
    assert http.post("/crm/v3/properties/deals", json=bad).status_code == 400
    good = {**bad, "fieldType": "number"}
    assert http.post("/crm/v3/properties/deals", json=good).status_code == 201
    assert http.post("/crm/v3/properties/deals", json=good).status_code == 409


def _scoped(sb: CrmSandbox, portal: SandboxPortal, scopes: list[str]) -> httpx.Client:
    token = sb.issue_token(portal.portal_id, scopes=scopes)
    return httpx.Client(
        base_url=sb.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_contact_properties_need_the_contact_schema_write_scope(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    objects_only = ["oauth", "crm.objects.contacts.read", "crm.objects.contacts.write"]
    group = {"name": "dealbooks", "label": "dealbooks"}
    prop = {
        "name": "dealbooks_qbo_customer_id",
        "label": "QuickBooks customer id",
        "type": "string",
        "fieldType": "text",
        "groupName": "dealbooks",
    }
    with _scoped(crm_sandbox, crm_portal, objects_only) as http:
        refused = [
            http.post("/crm/v3/properties/contacts/groups", json=group),
            http.post("/crm/v3/properties/contacts/batch/create", json={"inputs": [prop]}),
            http.post("/crm/properties/2026-03/0-1", json=prop),
        ]
        # Reading property definitions also takes the object's own scopes.
        assert http.get("/crm/v3/properties/contacts").status_code == 200

    for response in refused:
        assert response.status_code == 403
        body = response.json()
        assert body["category"] == "MISSING_SCOPES"
        assert body["message"] == (
            "This app hasn't been granted all required scopes to make this call."
        )
        assert body["errors"][0]["context"]["requiredGranularScopes"] == [
            "crm.schemas.contacts.write"
        ]
    with _scoped(crm_sandbox, crm_portal, [*objects_only, "crm.schemas.contacts.write"]) as http:
        assert http.post("/crm/v3/properties/contacts/groups", json=group).status_code == 201
        created = http.post("/crm/v3/properties/contacts/batch/create", json={"inputs": [prop]})
        assert created.status_code == 201


def test_property_reads_need_a_scope_of_the_object_type(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    with _scoped(crm_sandbox, crm_portal, ["oauth", "crm.objects.deals.read"]) as http:
        refused = http.get("/crm/v3/properties/contacts/groups/contactinformation")
        assert http.get("/crm/v3/properties/deals").status_code == 200

    assert refused.status_code == 403
    assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == [
        "crm.schemas.contacts.read",
        "crm.objects.contacts.read",
        "crm.objects.contacts.write",
    ]


def test_product_properties_need_e_commerce(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    group = {"name": "dealbooks", "label": "dealbooks"}
    with _scoped(crm_sandbox, crm_portal, ["oauth", "crm.schemas.contacts.write"]) as http:
        refused = http.post("/crm/v3/properties/products/groups", json=group)
    with _scoped(crm_sandbox, crm_portal, ["oauth", "e-commerce"]) as http:
        taken = http.post("/crm/v3/properties/0-7/groups", json=group)

    assert refused.status_code == 403
    assert refused.json()["errors"][0]["context"]["requiredGranularScopes"] == ["e-commerce"]
    assert taken.status_code == 201


def test_private_app_tokens_may_carry_every_scope(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    with api(crm_sandbox, crm_portal, private=True) as http:
        response = http.get("/crm/v3/properties/contacts/groups/contactinformation")
    assert response.status_code == 200


def test_date_property_requires_midnight_utc(http: httpx.Client) -> None:
    prop = {
        "name": "acct_due",
        "label": "Due",
        "type": "date",
        "fieldType": "date",
        "groupName": "dealinformation",
    }
    http.post("/crm/v3/properties/deals", json=prop)
    ok = http.post("/crm/v3/objects/deals", json={"properties": {"acct_due": "1430438400000"}})
    assert ok.json()["properties"]["acct_due"] == "2015-05-01"
    bad = http.post("/crm/v3/objects/deals", json={"properties": {"acct_due": "1430438400001"}})
    assert bad.status_code == 400


def test_associations_are_bidirectional(http: httpx.Client) -> None:
    deal = http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
    contact = http.post("/crm/v3/objects/contacts", json={"properties": {"email": "b@x.io"}}).json()
    put = http.put(
        f"/crm/v4/objects/deals/{deal['id']}/associations/default/contacts/{contact['id']}"
    )
    assert put.status_code == 200
    back = http.get(f"/crm/v4/objects/contacts/{contact['id']}/associations/deals").json()
    assert back["results"][0]["toObjectId"] == int(deal["id"])
    assert back["results"][0]["associationTypes"][0]["typeId"] == 4


def test_other_portals_objects_are_invisible(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_other_portal: SandboxPortal
) -> None:
    with api(crm_sandbox, crm_portal) as mine, api(crm_sandbox, crm_other_portal) as theirs:
        deal = mine.post("/crm/v3/objects/deals", json={"properties": {"dealname": "D"}}).json()
        assert theirs.get(f"/crm/v3/objects/deals/{deal['id']}").status_code == 404


def test_expired_and_unknown_tokens_are_401(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    token = crm_sandbox.issue_token(crm_portal.portal_id)
    crm_sandbox.expire_token(token)
    expired = httpx.get(
        crm_sandbox.base_url + "/crm/v3/objects/deals", headers={"Authorization": f"Bearer {token}"}
    )
    assert expired.status_code == 401
    assert expired.json()["category"] == "EXPIRED_AUTHENTICATION"
    unknown = httpx.get(crm_sandbox.base_url + "/crm/v3/objects/deals")
    assert unknown.json()["category"] == "INVALID_AUTHENTICATION"


def test_oauth_refresh_issues_a_token_bound_to_the_portal(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    app = crm_sandbox.app()
    response = httpx.post(
        crm_sandbox.base_url + "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["clientId"],
            "client_secret": app["clientSecret"],
            "refresh_token": crm_portal.refresh_token,
        },
    )
    body = response.json()
    assert body["expires_in"] == 1800 and body["hub_id"] == crm_portal.portal_id
    details = httpx.get(
        crm_sandbox.base_url + "/account-info/v3/details",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert details.json()["portalId"] == crm_portal.portal_id


def test_private_app_tokens_cannot_create_timeline_events(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    with api(crm_sandbox, crm_portal, private=True) as http:
        response = http.post(
            "/integrators/timeline/v3/events", json={"eventTemplateId": "1", "tokens": {}}
        )
    assert response.status_code == 403


def test_injected_faults_fire_once_per_count(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    crm_sandbox.inject_fault("status", status=503, count=1, portal_id=crm_portal.portal_id)
    with api(crm_sandbox, crm_portal) as http:
        assert http.get("/crm/v3/objects/deals").status_code == 503
        assert http.get("/crm/v3/objects/deals").status_code == 200


def _v3(secret: str, url: str, body: bytes, timestamp: str) -> str:
    digest = hmac.new(
        secret.encode(), b"POST" + url.encode() + body + timestamp.encode(), hashlib.sha256
    )
    return base64.b64encode(digest.digest()).decode()


def test_user_changes_are_delivered_signed_with_real_fields(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_webhook_receiver: WebhookReceiver
) -> None:
    crm_sandbox.subscribe("deal.propertyChange", "dealstage")
    crm_sandbox.subscribe("deal.creation")
    deal = crm_sandbox.create_as_user(crm_portal.portal_id, "deals", {"dealname": "W"})
    crm_sandbox.update_as_user(
        crm_portal.portal_id, "deals", deal["id"], {"dealstage": "closedwon"}
    )
    events = crm_webhook_receiver.wait_for_events(lambda e: e["objectId"] == int(deal["id"]), 2)
    change = next(e for e in events if e["subscriptionType"] == "deal.propertyChange")
    assert change["propertyValue"] == "closedwon" and change["changeSource"] == "CRM_UI"
    expected = {
        "eventId",
        "subscriptionId",
        "portalId",
        "appId",
        "occurredAt",
        "subscriptionType",
        "attemptNumber",
        "objectId",
        "propertyName",
        "propertyValue",
        "changeSource",
        "sourceId",
    }
    assert expected <= set(change)
    request = crm_webhook_receiver.requests[0]
    secret = crm_sandbox.app()["clientSecret"]
    timestamp = request.headers["X-HubSpot-Request-Timestamp"]
    assert request.headers["X-HubSpot-Signature-v3"] == _v3(
        secret, crm_webhook_receiver.url, request.body, timestamp
    )


def test_failed_deliveries_are_retried_with_rising_attempt_number(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_webhook_receiver: WebhookReceiver
) -> None:
    crm_sandbox.subscribe("contact.creation")
    crm_webhook_receiver.statuses.extend([500, 503])
    contact = crm_sandbox.create_as_user(crm_portal.portal_id, "contacts", {"email": "r@x.io"})
    events = crm_webhook_receiver.wait_for_events(
        lambda e: e["objectId"] == int(contact["id"]), count=3
    )
    assert sorted(e["attemptNumber"] for e in events) == [0, 1, 2]


def test_deliveries_hold_at_most_100_events(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_webhook_receiver: WebhookReceiver
) -> None:
    crm_sandbox.subscribe("product.creation")
    with api(crm_sandbox, crm_portal) as http:
        for start in range(0, 250, 100):
            inputs = [
                {"properties": {"name": f"p{i}"}} for i in range(start, min(start + 100, 250))
            ]
            http.post("/crm/v3/objects/products/batch/create", json={"inputs": inputs})
    crm_webhook_receiver.wait_for_events(lambda e: e["subscriptionType"] == "product.creation", 250)
    assert all(len(r.events()) <= 100 for r in crm_webhook_receiver.requests)


def test_dropped_webhooks_are_not_delivered(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal, crm_webhook_receiver: WebhookReceiver
) -> None:
    crm_sandbox.subscribe("company.creation")
    crm_sandbox.inject_fault("drop_webhooks", count=1, portal_id=crm_portal.portal_id)
    crm_sandbox.create_as_user(crm_portal.portal_id, "companies", {"name": "Lost"})
    wait_until(lambda: any(d["dropped"] for d in crm_sandbox.deliveries()["results"]))
    kept = crm_sandbox.create_as_user(crm_portal.portal_id, "companies", {"name": "Kept"})
    events = crm_webhook_receiver.wait_for_events(
        lambda e: e["subscriptionType"] == "company.creation"
    )
    assert [e["objectId"] for e in events] == [int(kept["id"])]
