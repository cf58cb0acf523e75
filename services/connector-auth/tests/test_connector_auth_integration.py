"""connector-auth over real HTTP: QBO and CRM sandboxes, Kafka, the MongoDB-wire server."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from connector_auth.store import RefreshLeases, account_key
from dealbooks_contracts import Envelope, QboEntityChanged, QboEnvironment, QboOperation, Tenant
from dealbooks_http import AccountUnavailable, ConnectorTokenProvider
from dealbooks_kit import KitSettings, ServiceRuntime

pytestmark = pytest.mark.integration


def new_company(qbo_sandbox: Any, name: str, environment: str = "sandbox", **spec: Any) -> str:
    info = qbo_sandbox.control(
        "POST",
        "companies",
        {"country": "US", "name": name, "environment": environment, **spec},
    )
    return str(info["realm_id"])


async def connected_company(connector: Any, qbo_sandbox: Any, name: str) -> tuple[str, str]:
    """A new portal with a new company `name` connected to it: (portal, realm)."""
    portal = connector.new_portal()
    realm = new_company(qbo_sandbox, name)
    await connector.connect(portal, realm)
    return portal, realm


async def stored_tokens(connector: Any, db: Any, portal: str, realm: str) -> dict[str, str]:
    """Decrypt what is stored, as only connector-auth can."""
    key = account_key(portal, realm)
    doc = await db.accounts.find_one({"_id": key})
    tokens = {
        "access": connector.cipher.decrypt(doc["tokens"]["access"], f"{key}:access"),
        "refresh": connector.cipher.decrypt(doc["tokens"]["refresh"], f"{key}:refresh"),
    }
    connector.secrets.add(*tokens.values())
    return tokens


async def test_two_companies_connect_to_one_portal_with_crm_set_up(
    connector: Any, qbo_sandbox: Any, crm_sandbox: Any
) -> None:
    portal = connector.crm_portal_id
    bakery = new_company(qbo_sandbox, "Larry's Bakery")
    joinery = new_company(
        qbo_sandbox,
        "Thames Joinery",
        country="GB",
        custom_txn_numbers=True,
        multicurrency=True,
        edition="Advanced",
    )

    first = await connector.connect(portal, bakery)
    second = await connector.connect(portal, joinery)

    assert first.status_code == 200, first.text
    assert second.json()["status"] == "connected"
    accounts = {a["account_id"]: a for a in await connector.accounts(portal)}
    assert set(accounts) == {bakery, joinery}
    assert accounts[joinery]["company_name"] == "Thames Joinery"
    assert accounts[joinery]["country"] == "GB"
    assert accounts[joinery]["currency"] == "GBP"
    assert accounts[joinery]["status"] == "connected"
    assert accounts[bakery]["last_refresh_at"] is not None
    events = await connector.events("connector.account-connected.v1", 2, portal)
    by_realm = {e["tenant"]["account_id"]: e for e in events}
    assert by_realm[joinery]["data"]["custom_transaction_numbers"] is True
    assert by_realm[joinery]["data"]["multicurrency_enabled"] is True
    assert by_realm[bakery]["data"]["country"] == "US"
    # The edition, from CompanyInfo's OfferingSku: Advanced gets approvals and reminders.
    assert by_realm[joinery]["data"]["edition"] == "QuickBooks Online Advanced"
    assert by_realm[bakery]["data"]["edition"] == "QuickBooks Online Plus"
    assert by_realm[bakery]["data"]["reason"] == "connected"
    assert by_realm[bakery]["_key"] == bakery.encode()
    # The install made the portal ready: the invoice deal properties.
    async with httpx.AsyncClient(base_url=connector.base_url) as own:
        answer = await own.post(
            f"/internal/v1/portals/{portal}/crm/access-token", headers=connector.auth()
        )
        token = answer.json()["access_token"]
        connector.secrets.add(token)
    async with httpx.AsyncClient(base_url=crm_sandbox.base_url) as crm:
        props = await crm.get(
            "/crm/v3/properties/deals", headers={"Authorization": f"Bearer {token}"}
        )
    names = {p["name"]: p for p in props.json()["results"]}
    assert {
        "acct_amount_billed",
        "acct_invoice_recipient",
        "acct_invoice_number",
        "acct_invoice_status",
        "acct_invoice_due_date",
    } <= set(names)
    # The five stages users see, plus the two an invoice can end in.
    assert [o["value"] for o in names["acct_invoice_status"]["options"]] == [
        "awaiting_send",
        "sent",
        "partially_paid",
        "paid",
        "overdue",
        "voided",
        "deleted",
    ]
    # Payments go on deals as app events or notes: the install makes no legacy timeline template.
    templates = crm_sandbox.app()["eventTemplates"]
    assert "QuickBooks invoice payment" not in [t["name"] for t in templates]


async def test_reconnecting_a_company_updates_it_without_duplicating(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Reconnect Ltd")
    before = await stored_tokens(connector, db, portal, realm)

    again = await connector.connect(portal, realm)

    assert again.json()["reason"] == "reconnected"
    assert [a["account_id"] for a in await connector.accounts(portal)] == [realm]
    assert await db.accounts.count_documents({"portal_id": portal}) == 1
    assert (await stored_tokens(connector, db, portal, realm))["refresh"] != before["refresh"]
    events = await connector.events("connector.account-connected.v1", 2, portal)
    assert [e["data"]["reason"] for e in events] == ["connected", "reconnected"]


async def test_disconnect_revokes_at_qbo_deletes_tokens_and_publishes(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Leaving Inc")
    tokens = await stored_tokens(connector, db, portal, realm)

    async with connector.browser(portal) as person:
        csrf = (await person.get(f"{connector.base_url}/v1/session")).json()["csrf_token"]
        url = f"{connector.base_url}/v1/portals/{portal}/accounts/{realm}"
        as_service = await person.delete(url, headers=connector.auth())
        gone = await person.delete(url, headers={"X-CSRF-Token": csrf})
        again = await person.delete(url, headers={"X-CSRF-Token": csrf})
    connector.secrets.add(csrf)

    assert as_service.status_code == 401  # a person's decision: no service may take it

    assert gone.status_code == 204
    assert again.status_code == 404
    assert await connector.accounts(portal) == []
    assert "tokens" not in await db.accounts.find_one({"_id": account_key(portal, realm)})
    async with httpx.AsyncClient(base_url=connector.qbo_base) as qbo:
        refresh = await qbo.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh"]},
            auth=("sandbox-client", "sandbox-secret"),
        )
        api = await qbo.get(
            f"/v3/company/{realm}/companyinfo/{realm}",
            headers={"Authorization": f"Bearer {tokens['access']}", "Accept": "application/json"},
        )
    assert refresh.json()["error"] == "invalid_grant"
    assert api.status_code == 401
    assert (await connector.token(portal, realm)).status_code == 404
    [event] = await connector.events("connector.account-disconnected.v1", 1, portal)
    assert event["data"]["reason"] == "user_requested"
    assert event["data"]["company_name"] == "Leaving Inc"


async def test_the_session_names_the_portals_with_a_quickbooks_online_advanced_company(
    connector: Any, qbo_sandbox: Any
) -> None:
    async def advanced(portal: str) -> Any:
        async with connector.browser(portal) as person:
            session = await person.get(f"{connector.base_url}/v1/session")
        connector.secrets.add(session.json()["csrf_token"])
        return session.json()["advanced_portals"]

    portal, plus = await connected_company(connector, qbo_sandbox, "Plus Only Ltd")
    only_plus = await advanced(portal)
    summit = new_company(qbo_sandbox, "Summit Advanced", edition="Advanced")
    await connector.connect(portal, summit)
    with_advanced = await advanced(portal)
    async with connector.browser(portal) as person:
        csrf = (await person.get(f"{connector.base_url}/v1/session")).json()["csrf_token"]
        url = f"{connector.base_url}/v1/portals/{portal}/accounts/{summit}"
        gone = await person.delete(url, headers={"X-CSRF-Token": csrf})
    after_disconnect = await advanced(portal)

    assert only_plus == []
    assert with_advanced == [portal]
    assert gone.status_code == 204
    assert after_disconnect == []
    assert [a["account_id"] for a in await connector.accounts(portal)] == [plus]  # still there


async def test_sandbox_company_is_refused_in_production_mode(
    connector_settings: Any,
    qbo_sandbox: Any,
    crm_sandbox: Any,
    run_logs: Any,
    run_secrets: Any,
    tools: Any,
) -> None:
    settings = connector_settings(QboEnvironment.PRODUCTION)
    sandbox_realm = new_company(qbo_sandbox, "Developer Playground")
    production_realm = new_company(qbo_sandbox, "Real Shop", environment="production")
    with tools.served_app(settings) as app:
        production = tools.connector(
            app, settings, qbo_sandbox.base_url, None, run_secrets, "", crm_sandbox
        )
        portal = production.new_portal()
        refused = await production.connect(portal, sandbox_realm)
        accepted = await production.connect(portal, production_realm)
        accounts = await production.accounts(portal)

    assert refused.status_code == 403
    assert refused.json()["error"] == "sandbox_company"
    assert "sandbox" in refused.json()["message"]
    assert accepted.status_code == 200, accepted.text
    assert [(a["account_id"], a["environment"]) for a in accounts] == [
        (production_realm, "production")
    ]
    events = await production.events("connector.account-connected.v1", 1)
    assert [e["tenant"]["account_id"] for e in events] == [production_realm]


async def test_tokens_in_the_database_are_not_readable_as_plaintext(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Cipher Co")
    token = (await connector.token(portal, realm)).json()["access_token"]
    plain = await stored_tokens(connector, db, portal, realm)

    doc = await db.accounts.find_one({"_id": account_key(portal, realm)})
    raw = json.dumps(doc, default=str)
    # Outside the sealed fragments nothing may look like a token. (Inside them, random
    # base64 ciphertext can spell "eyJ" by chance, so they are left out of that scan.)
    unsealed = json.dumps(_without_sealed(doc), default=str)

    assert plain["access"] == token
    assert token not in raw and plain["refresh"] not in raw
    assert "RT1-" not in unsealed and "eyJ" not in unsealed
    sealed = doc["tokens"]
    assert sealed["access"]["kid"] == "k2"
    assert set(sealed["access"]) == {"kid", "n", "ct"}


def _without_sealed(value: Any) -> Any:
    """`value` with every {kid, n, ct} fragment replaced by a marker."""
    if isinstance(value, dict):
        if set(value) == {"kid", "n", "ct"}:
            return "<sealed>"
        return {k: _without_sealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_sealed(v) for v in value]
    return value


async def near_expiry(
    connector: Any, qbo_sandbox: Any, db: Any, name: str
) -> tuple[str, str, str, int]:
    """A newly connected company whose access token expires within the refresh margin:
    its portal, realm, account key and token version."""
    portal, realm = await connected_company(connector, qbo_sandbox, name)
    key = account_key(portal, realm)
    await db.accounts.update_one(
        {"_id": key},
        {"$set": {"tokens.access_expires_at": datetime.now(UTC) + timedelta(seconds=20)}},
    )
    return portal, realm, key, (await db.accounts.find_one({"_id": key}))["token_version"]


async def test_two_concurrent_token_requests_near_expiry_refresh_once_across_replicas(
    connector: Any, qbo_sandbox: Any, db: Any, tools: Any
) -> None:
    portal, realm, key, version = await near_expiry(connector, qbo_sandbox, db, "Busy Realm")
    old = await stored_tokens(connector, db, portal, realm)
    replica_settings = connector.settings.model_copy(
        update={"http_port": tools.free_port(), "redirect_uri": connector.settings.redirect_uri}
    )

    with tools.served_app(replica_settings) as replica:
        replica_connector = tools.connector(
            replica,
            replica_settings,
            connector.qbo_base,
            connector.cipher,
            connector.secrets,
            "",
            connector.crm,
        )
        first, second = await asyncio.gather(
            connector.token(portal, realm), replica_connector.token(portal, realm)
        )

    assert first.status_code == second.status_code == 200
    assert first.json()["access_token"] == second.json()["access_token"]
    assert first.json()["access_token"] != old["access"]
    doc = await db.accounts.find_one({"_id": key})
    assert doc["token_version"] == version + 1
    # The rotated refresh token was stored, and it is the one that works now.
    assert (await stored_tokens(connector, db, portal, realm))["refresh"] != old["refresh"]


async def test_revoked_refresh_token_marks_reauth_required_and_publishes(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Revoked Elsewhere")
    tokens = await stored_tokens(connector, db, portal, realm)
    # The user disconnects the app inside QuickBooks: the grant is revoked there.
    async with httpx.AsyncClient(base_url=connector.qbo_base) as qbo:
        await qbo.post(
            "/v2/oauth2/tokens/revoke",
            json={"token": tokens["refresh"]},
            auth=("sandbox-client", "sandbox-secret"),
        )
    await db.accounts.update_one(
        {"_id": account_key(portal, realm)},
        {"$set": {"tokens.access_expires_at": datetime.now(UTC) - timedelta(seconds=1)}},
    )

    response = await connector.token(portal, realm)

    assert response.status_code == 409
    assert response.json()["error"] == "reauth_required"
    [account] = await connector.accounts(portal)
    assert account["status"] == "reauth_required"
    [event] = await connector.events("connector.account-reauth-required.v1", 1, portal)
    assert event["data"]["reason"] == "invalid_grant"
    assert "Revoked Elsewhere" in event["data"]["message"]
    assert (await connector.token(portal, realm)).status_code == 409


async def test_another_portal_or_an_unauthenticated_caller_cannot_obtain_the_token(
    connector: Any, qbo_sandbox: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Private Books")

    other_portal = await connector.token("p-intruder", realm)
    anonymous = await connector.token(portal, realm, headers={})
    wrong = await connector.token(portal, realm, headers={"Authorization": "Bearer guess"})
    rotated_credential = await connector.token(
        portal,
        realm,
        headers={"Authorization": f"Bearer old-{connector.auth()['Authorization'][7:]}"},
    )

    assert other_portal.status_code == 404
    assert "access_token" not in other_portal.text
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert rotated_credential.status_code == 200


async def test_oauth_state_is_single_use_and_cannot_be_forged(
    connector: Any, qbo_sandbox: Any
) -> None:
    realm = new_company(qbo_sandbox, "Csrf Target")
    portal = connector.new_portal()
    await connector.sign_in(portal)
    async with connector.browser(portal) as browser:
        start = await browser.get(f"{connector.base_url}/v1/portals/{portal}/quickbooks/connect")
        consent = await browser.get(f"{start.headers['location']}&sandbox_realm={realm}")
        callback = consent.headers["location"]
        first = await browser.get(callback)
        replay = await browser.get(callback)
        forged = await browser.get(callback.replace("state=", "state=x"))
    # Someone else's browser (an attacker who lured the victim to the link) cannot finish it.
    async with connector.browser(portal) as browser:
        start = await browser.get(f"{connector.base_url}/v1/portals/{portal}/quickbooks/connect")
        consent = await browser.get(f"{start.headers['location']}&sandbox_realm={realm}")
    async with httpx.AsyncClient(timeout=30.0) as stranger:
        elsewhere = await stranger.get(consent.headers["location"])

    assert first.status_code == 200
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_state"
    assert forged.status_code == 400
    assert elsewhere.status_code == 400
    assert elsewhere.json()["error"] == "invalid_state"


async def test_preferences_change_republishes_the_company_facts(
    connector: Any, qbo_sandbox: Any, kafka_bootstrap: str
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Numbering Co")
    qbo_sandbox.set_preferences(realm, custom_txn_numbers=True)

    settings = KitSettings(
        service_name="test-gateway",
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=connector.settings.mongodb_uri,
        mongodb_database=connector.settings.database_name + "_gw",
        topic_prefix=connector.settings.topic_prefix,
        kafka_idempotence=connector.settings.kafka_idempotence,
    )
    runtime = ServiceRuntime(settings)
    async with runtime.running():
        await runtime.publisher.publish(
            Envelope.build(
                QboEntityChanged(
                    realm_id=realm,
                    entity="Preferences",
                    entity_id="1",
                    operation=QboOperation.UPDATE,
                    last_updated=datetime.now(UTC),
                ),
                source="webhook-gateway",
                tenant=Tenant(portal_id=portal, account_id=realm),
            )
        )

    events = await connector.events("connector.account-connected.v1", 2, portal)
    assert events[-1]["data"]["reason"] == "facts_changed"
    assert events[-1]["data"]["custom_transaction_numbers"] is True
    assert events[0]["data"]["custom_transaction_numbers"] is False


async def test_token_provider_caches_until_near_expiry_and_refreshes_a_rejected_token(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm = await connected_company(connector, qbo_sandbox, "Provider Co")
    calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        calls.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [count]})
    provider = ConnectorTokenProvider(
        connector.base_url, connector.auth()["Authorization"][7:], http=http
    )
    tokens = provider.for_portal(portal)
    try:
        first = await tokens.token(realm)
        again = await tokens.token(realm)
        await tokens.invalidate(realm, first)
        refreshed = await tokens.token(realm)
        with pytest.raises(AccountUnavailable) as foreign:
            await provider.for_portal("p-intruder").token(realm)
    finally:
        await http.aclose()
    connector.secrets.add(first, refreshed)

    assert first == again
    assert len(calls) == 3
    assert refreshed != first
    assert (await stored_tokens(connector, db, portal, realm))["access"] == refreshed
    assert foreign.value.reauth_required is False


async def test_no_token_or_secret_reaches_kafka_or_a_log_line(
    connector: Any, run_logs: Any, run_secrets: Any
) -> None:
    # Runs last in this module: it inspects everything the tests above produced.
    events = await connector.events("connector.account-connected.v1", 1)
    assert run_logs.lines, "the run should have logged something"
    assert len(run_secrets.values) > 10
    for secret in run_secrets.values:
        assert not any(secret in line for line in run_logs.lines), "a secret reached the logs"
        assert not any(secret in e["_raw"] for e in events), "a secret reached Kafka"


async def test_a_replica_that_read_the_old_version_cannot_refresh_with_the_spent_token(
    connector: Any, qbo_sandbox: Any, db: Any
) -> None:
    portal, realm, key, version = await near_expiry(connector, qbo_sandbox, db, "Rotating Realm")
    assert (await connector.token(portal, realm)).status_code == 200  # refreshed: version + 1
    # Another replica that read the account just before that refresh asks for the lease of
    # the version it saw: it must not get it (it would spend the rotated refresh token).
    now = datetime.now(UTC)
    leases = RefreshLeases(db)
    assert not await leases.acquire(key, version, "late-replica", now, now + timedelta(seconds=30))
