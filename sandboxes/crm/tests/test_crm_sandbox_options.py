"""Sandbox behaviours behind flags and the less common endpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from crm_sandbox.testing import CrmSandbox, SandboxPortal, running_sandbox, wait_until


@pytest.fixture(scope="module")
def strict_sandbox() -> Iterator[CrmSandbox]:
    """A second sandbox with search lag, 409 on repeated timeline ids, tighter caps and
    authorization codes that live half a second."""
    with running_sandbox(
        "--search-lag",
        "0.3",
        "--timeline-duplicate",
        "conflict",
        "--filter-caps",
        "2,2,3",
        "--auth-code-ttl",
        "0.5",
    ) as sandbox:
        yield sandbox


def client(sandbox: CrmSandbox, token: str) -> httpx.Client:
    return httpx.Client(
        base_url=sandbox.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_search_lags_behind_writes(strict_sandbox: CrmSandbox) -> None:
    portal = strict_sandbox.create_portal()
    with client(strict_sandbox, portal.access_token) as http:
        http.post("/crm/v3/objects/deals", json={"properties": {"dealname": "Lagging"}})
        body = {"query": "Lagging"}
        assert http.post("/crm/v3/objects/deals/search", json=body).json()["total"] == 0
        # Poll below the 5/s search limit (this sandbox runs on the real clock).
        wait_until(
            lambda: http.post("/crm/v3/objects/deals/search", json=body).json().get("total") == 1,
            interval=0.25,
        )


def test_filter_caps_are_configurable(strict_sandbox: CrmSandbox) -> None:
    portal = strict_sandbox.create_portal()
    group = {"filters": [{"propertyName": "dealname", "operator": "HAS_PROPERTY"}] * 2}
    with client(strict_sandbox, portal.access_token) as http:
        ok = http.post("/crm/v3/objects/deals/search", json={"filterGroups": [group]})
        too_many = http.post("/crm/v3/objects/deals/search", json={"filterGroups": [group] * 2})
    assert ok.status_code == 200
    assert too_many.status_code == 400


def test_repeated_timeline_id_can_be_a_conflict(strict_sandbox: CrmSandbox) -> None:
    portal = strict_sandbox.create_portal()
    template = strict_sandbox.add_event_template(
        {
            "name": "T",
            "objectType": "deals",
            "tokens": [{"name": "n", "label": "N", "type": "string"}],
        }
    )
    deal = strict_sandbox.create_as_user(portal.portal_id, "deals", {"dealname": "D"})
    event = {
        "eventTemplateId": template["id"],
        "id": "e-1",
        "objectId": deal["id"],
        "tokens": {"n": "x"},
    }
    with client(strict_sandbox, portal.access_token) as http:
        assert http.post("/integrators/timeline/v3/events", json=event).status_code == 201
        assert http.post("/integrators/timeline/v3/events", json=event).status_code == 409
    assert len(strict_sandbox.timeline_events(portal.portal_id)) == 1


def test_authorization_code_grant_installs_into_the_portal(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    app = crm_sandbox.app()
    code = crm_sandbox.authorization_code(crm_portal.portal_id)
    form = {
        "grant_type": "authorization_code",
        "client_id": app["clientId"],
        "client_secret": app["clientSecret"],
        "code": code,
        "redirect_uri": "http://127.0.0.1/cb",
    }
    first = httpx.post(crm_sandbox.base_url + "/oauth/v1/token", data=form)
    reused = httpx.post(crm_sandbox.base_url + "/oauth/v1/token", data=form)
    assert first.json()["hub_id"] == crm_portal.portal_id
    assert reused.status_code == 400


def test_authorization_code_expires(strict_sandbox: CrmSandbox) -> None:
    portal = strict_sandbox.create_portal()
    app = strict_sandbox.app()
    code = strict_sandbox.authorization_code(portal.portal_id, redirect_uri="http://127.0.0.1/cb")
    time.sleep(0.6)
    form = {
        "grant_type": "authorization_code",
        "client_id": app["clientId"],
        "client_secret": app["clientSecret"],
        "code": code,
        "redirect_uri": "http://127.0.0.1/cb",
    }
    expired = httpx.post(strict_sandbox.base_url + "/oauth/v1/token", data=form)
    assert expired.status_code == 400
    assert expired.json()["status"] == "EXPIRED_AUTH_CODE"


def test_bad_refresh_token_has_hubspots_own_error_shape(crm_sandbox: CrmSandbox) -> None:
    app = crm_sandbox.app()
    response = httpx.post(
        crm_sandbox.base_url + "/oauth/v1/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["clientId"],
            "client_secret": app["clientSecret"],
            "refresh_token": "nope",
        },
    )
    assert response.status_code == 400
    assert response.json()["status"] == "BAD_REFRESH_TOKEN"


def test_missing_scope_is_403(crm_sandbox: CrmSandbox, crm_portal: SandboxPortal) -> None:
    token = crm_sandbox.issue_token(crm_portal.portal_id, scopes=["crm.objects.deals.read"])
    with client(crm_sandbox, token) as http:
        response = http.post("/integrators/timeline/v3/events", json={})
    assert response.status_code == 403
    assert response.json()["category"] == "MISSING_SCOPES"


def test_custom_association_labels_work_both_ways(
    crm_sandbox: CrmSandbox, crm_portal: SandboxPortal
) -> None:
    with client(crm_sandbox, crm_portal.access_token) as http:
        created = http.post(
            "/crm/v4/associations/contacts/companies/labels",
            json={"name": "billing", "label": "Billing contact", "inverseLabel": "Billed company"},
        ).json()["results"]
        forward = created[0]["typeId"]
        contact = http.post(
            "/crm/v3/objects/contacts", json={"properties": {"email": "l@x.io"}}
        ).json()
        company = http.post("/crm/v3/objects/companies", json={"properties": {"name": "L"}}).json()
        put = http.put(
            f"/crm/v4/objects/contacts/{contact['id']}/associations/companies/{company['id']}",
            json=[{"associationCategory": "USER_DEFINED", "associationTypeId": forward}],
        )
        assert put.status_code == 201 and put.json()["labels"] == ["Billing contact"]
        back = http.get(f"/crm/v4/objects/companies/{company['id']}/associations/contacts").json()
    assert back["results"][0]["associationTypes"][0]["label"] == "Billed company"


def test_webhook_subscription_api_uses_the_developer_key(crm_sandbox: CrmSandbox) -> None:
    app = crm_sandbox.app()
    base = f"{crm_sandbox.base_url}/webhooks/v3/{app['appId']}/subscriptions"
    body = {"eventType": "deal.propertyChange", "propertyName": "dealstage"}
    assert httpx.post(base, json=body).status_code == 401
    created = httpx.post(base, params={"hapikey": app["developerKey"]}, json=body)
    assert created.status_code == 201 and created.json()["active"] is False
    crm_sandbox.clear_subscriptions()


def test_multi_currency_deal_gets_amount_in_home_currency(crm_sandbox: CrmSandbox) -> None:
    portal = crm_sandbox.create_portal(additionalCurrencies=["EUR"], exchangeRates={"EUR": "1.10"})
    with client(crm_sandbox, portal.access_token) as http:
        deal = http.post(
            "/crm/v3/objects/deals",
            json={"properties": {"amount": "100.00", "deal_currency_code": "EUR"}},
        ).json()
        wrong = http.post(
            "/crm/v3/objects/deals", json={"properties": {"deal_currency_code": "JPY"}}
        )
    assert deal["properties"]["amount_in_home_currency"] == "110.0000"
    assert wrong.status_code == 400
