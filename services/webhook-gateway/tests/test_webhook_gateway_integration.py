"""webhook-gateway over real HTTP: signed deliveries from the sandboxes become Kafka events."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    Envelope,
    QboEnvironment,
    Tenant,
)
from dealbooks_crm import signature_v3
from dealbooks_qbo import sign
from pymongo import AsyncMongoClient
from webhook_gateway.store import RealmDirectory

pytestmark = pytest.mark.integration


async def connect_realm(gateway: Any, kafka: str, mongo_uri: str, portal: str, realm: str) -> None:
    """connector-auth's event that a realm joined a portal; wait until the gateway knows it."""
    event = Envelope.build(
        AccountConnected(
            company_name="Test Co",
            country="US",
            home_currency="USD",
            multicurrency_enabled=False,
            custom_transaction_numbers=False,
            environment=QboEnvironment.SANDBOX,
            reason=AccountConnectedReason.CONNECTED,
            connected_at=datetime.now(UTC),
        ),
        source="connector-auth",
        tenant=Tenant(portal_id=portal, account_id=realm),
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        await producer.send_and_wait(
            gateway.topic("connector.account-connected.v1"), event.to_bytes(), key=realm.encode()
        )
    finally:
        await producer.stop()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        async with asyncio.timeout(30):
            while not await client[gateway.settings.database_name].realm_portals.find_one(
                {"_id": realm, "portals": portal}
            ):
                await asyncio.sleep(0.1)
    finally:
        await client.close()


async def connected_realm(gateway: Any, kafka: str, mongo_uri: str, portal: str) -> str:
    """A realm id of no company yet, connected to `portal` as far as the gateway knows."""
    realm = f"9{uuid.uuid4().int % 10**14}"
    await connect_realm(gateway, kafka, mongo_uri, portal, realm)
    return realm


def new_company_with_invoice(qbo_sandbox: Any) -> tuple[str, str, str]:
    """A company, an invoice in it, and an access token; returns (realm, invoice id, token)."""
    company = qbo_sandbox.create_company("US")
    customer = qbo_sandbox.user_creates(
        company.realm_id, "customers", {"DisplayName": f"Payer {uuid.uuid4().hex[:6]}"}
    )["Customer"]
    item = qbo_sandbox.user_creates(
        company.realm_id,
        "items",
        {"Name": f"Service {uuid.uuid4().hex[:6]}", "Type": "Service", "UnitPrice": 100},
    )["Item"]
    invoice = httpx.post(
        f"{qbo_sandbox.base_url}/v3/company/{company.realm_id}/invoice",
        json={
            "CustomerRef": {"value": customer["Id"]},
            "Line": [
                {
                    "Amount": 100,
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}, "Qty": 1},
                }
            ],
        },
        headers={
            "Authorization": f"Bearer {company.access_token}",
            "Accept": "application/json",
        },
    )
    assert invoice.status_code == 200, invoice.text
    return company.realm_id, invoice.json()["Invoice"]["Id"], company.access_token


async def payment_events(gateway: Any, kafka: str, tools: Any, realm: str, count: int) -> list[Any]:
    records = await tools.read_events(
        kafka,
        gateway.topic("qbo.entity-changed.v1"),
        lambda r: r.key == realm.encode() and tools.as_event(r)["data"]["entity"] == "Payment",
        count,
    )
    return [tools.as_event(r) for r in records]


async def keyed(tools: Any, kafka: str, gateway: Any, topic: str, key: Any) -> list[Any]:
    """The records of `topic` (its name without the test's prefix) keyed by `key`, a realm
    or a portal: at least one, and all that are there."""
    return list(
        await tools.read_events(
            kafka, gateway.topic(topic), lambda r: r.key == str(key).encode(), 1
        )
    )


@pytest.mark.parametrize("fmt", ["legacy", "cloudevents"])
async def test_real_qbo_payment_arrives_signed_and_becomes_an_entity_changed_event(
    gateway: Any, qbo_sandbox: Any, kafka_bootstrap: str, mongo_uri: str, gw_tools: Any, fmt: str
) -> None:
    realm, invoice_id, _ = new_company_with_invoice(qbo_sandbox)
    portal = f"p-{uuid.uuid4().hex[:6]}"
    await connect_realm(gateway, kafka_bootstrap, mongo_uri, portal, realm)
    endpoint = qbo_sandbox.add_webhook(
        gateway.qbo_url, gw_tools.verifier_token, fmt, realms=[realm]
    )
    try:
        paid = qbo_sandbox.record_payment(realm, invoice_id)
        [event] = await payment_events(gateway, kafka_bootstrap, gw_tools, realm, 1)
    finally:
        qbo_sandbox.remove_webhook(endpoint["endpoint_id"])

    assert event["type"] == "qbo.entity-changed"
    assert event["tenant"] == {"portal_id": portal, "account_id": realm}
    assert event["data"]["entity_id"] == paid["Payment"]["Id"]
    assert event["data"]["operation"] == "Create"
    assert event["data"]["realm_id"] == realm
    assert event["source"] == "webhook-gateway"


async def test_a_companyinfo_cloudevent_is_published_with_quickbooks_entity_name(
    gateway: Any, qbo_sandbox: Any, kafka_bootstrap: str, mongo_uri: str, gw_tools: Any
) -> None:
    company = qbo_sandbox.create_company("US")
    portal = f"p-{uuid.uuid4().hex[:6]}"
    await connect_realm(gateway, kafka_bootstrap, mongo_uri, portal, company.realm_id)
    endpoint = qbo_sandbox.add_webhook(
        gateway.qbo_url, gw_tools.verifier_token, "cloudevents", realms=[company.realm_id]
    )
    api = f"{qbo_sandbox.base_url}/v3/company/{company.realm_id}"
    headers = {"Authorization": f"Bearer {company.access_token}", "Accept": "application/json"}
    try:
        async with httpx.AsyncClient(headers=headers) as http:
            info = (await http.get(f"{api}/companyinfo/{company.realm_id}")).json()["CompanyInfo"]
            renamed = await http.post(
                f"{api}/companyinfo",
                json={
                    "Id": info["Id"],
                    "SyncToken": info["SyncToken"],
                    "sparse": True,
                    "CompanyName": "Renamed Co",
                },
            )
            assert renamed.status_code == 200, renamed.text
        [record] = await keyed(
            gw_tools, kafka_bootstrap, gateway, "qbo.entity-changed.v1", company.realm_id
        )
    finally:
        qbo_sandbox.remove_webhook(endpoint["endpoint_id"])
    event = gw_tools.as_event(record)
    assert event["data"]["entity"] == "CompanyInfo"
    assert event["data"]["operation"] == "Update"


async def test_tampered_signature_gets_401_and_publishes_nothing(
    gateway: Any, kafka_bootstrap: str, mongo_uri: str, gw_tools: Any
) -> None:
    realm = await connected_realm(gateway, kafka_bootstrap, mongo_uri, "p-tamper")
    body = legacy_body(realm, "Payment", "77")
    marker_body = legacy_body(realm, "Invoice", "1")

    async with httpx.AsyncClient() as client:
        tampered = await client.post(
            gateway.qbo_url,
            content=body.replace(b'"77"', b'"78"'),
            headers=qbo_headers(gw_tools, body),
        )
        unsigned = await client.post(gateway.qbo_url, content=body)
        marker = await client.post(
            gateway.qbo_url, content=marker_body, headers=qbo_headers(gw_tools, marker_body)
        )

    assert tampered.status_code == unsigned.status_code == 401
    assert marker.status_code == 200
    records = await keyed(gw_tools, kafka_bootstrap, gateway, "qbo.entity-changed.v1", realm)
    assert [gw_tools.as_event(r)["data"]["entity"] for r in records] == ["Invoice"]


async def test_duplicated_webhook_publishes_once(
    gateway: Any, kafka_bootstrap: str, mongo_uri: str, gw_tools: Any
) -> None:
    realm = await connected_realm(gateway, kafka_bootstrap, mongo_uri, "p-dup")
    body = legacy_body(realm, "Payment", "501")
    headers = qbo_headers(gw_tools, body)

    async with httpx.AsyncClient() as client:
        answers = await asyncio.gather(
            client.post(gateway.qbo_url, content=body, headers=headers),
            client.post(gateway.qbo_url, content=body, headers=headers),
        )
        later = await client.post(gateway.qbo_url, content=body, headers=headers)

    assert [a.status_code for a in answers] == [200, 200]
    assert later.status_code == 200
    records = await keyed(gw_tools, kafka_bootstrap, gateway, "qbo.entity-changed.v1", realm)
    assert len(records) == 1


async def test_unknown_realm_is_accepted_and_dead_lettered_with_a_reason(
    gateway: Any, kafka_bootstrap: str, gw_tools: Any
) -> None:
    realm = f"8{uuid.uuid4().int % 10**14}"
    body = legacy_body(realm, "Invoice", "5")

    async with httpx.AsyncClient() as client:
        answer = await client.post(
            gateway.qbo_url, content=body, headers=qbo_headers(gw_tools, body)
        )

    assert answer.status_code == 200
    [dead] = await keyed(gw_tools, kafka_bootstrap, gateway, "qbo.entity-changed.v1.dlq", realm)
    headers = dict(dead.headers)
    assert headers["dlq-reason"] == f"realm {realm} is not connected to any portal".encode()
    assert headers["dlq-error-type"] == b"unknown_realm"


async def test_bad_input_is_400_or_413_never_5xx(gateway: Any, gw_tools: Any) -> None:
    not_json = b"{not json"
    huge = b"[" + b" " * 300_000 + b"]"
    async with httpx.AsyncClient() as client:
        malformed = await client.post(
            gateway.qbo_url, content=not_json, headers=qbo_headers(gw_tools, not_json)
        )
        oversized = await client.post(gateway.qbo_url, content=huge)
        crm_oversized = await client.post(gateway.crm_url, content=huge)
        metrics = await client.get(f"{gateway.base_url}/metrics")

    assert malformed.status_code == 400
    assert oversized.status_code == crm_oversized.status_code == 413
    assert (
        'dealbooks_webhooks_rejected_total{reason="too_large",sender="quickbooks"}' in metrics.text
    )
    assert "dealbooks_webhook_publish_seconds_bucket" in metrics.text
    assert "dealbooks_webhook_events_published_total" in metrics.text


async def test_crm_webhook_valid_is_published_stale_and_tampered_get_401(
    gateway: Any, crm_sandbox: Any, kafka_bootstrap: str, gw_tools: Any
) -> None:
    portal = crm_sandbox.create_portal()
    crm_sandbox.clear_subscriptions()
    crm_sandbox.configure_app(target_url=gateway.crm_url)
    crm_sandbox.subscribe("deal.propertyChange", "dealstage")
    try:
        deal = crm_sandbox.create_as_user(portal.portal_id, "deals", {"dealname": "Big one"})
        crm_sandbox.update_as_user(
            portal.portal_id, "deals", deal["id"], {"dealstage": "closedwon"}
        )
        records = await keyed(
            gw_tools, kafka_bootstrap, gateway, "crm.object-changed.v1", portal.portal_id
        )
    finally:
        crm_sandbox.configure_app(target_url="")
        crm_sandbox.clear_subscriptions()
    [event] = [gw_tools.as_event(r) for r in records]
    assert event["data"]["object_type"] == "deal"
    assert event["data"]["object_id"] == str(deal["id"])
    assert event["data"]["change"] == "property_changed"
    assert event["data"]["property_value"] == "closedwon"
    assert event["tenant"] == {"portal_id": str(portal.portal_id), "account_id": None}

    body = json.dumps([crm_event(portal.portal_id, 99)]).encode()
    stale_ts = str(int(time.time() * 1000) - 6 * 60 * 1000)
    fresh_ts = str(int(time.time() * 1000))
    async with httpx.AsyncClient() as client:
        stale = await client.post(
            gateway.crm_url,
            content=body,
            headers=crm_headers(gateway, body, stale_ts),
        )
        tampered = await client.post(
            gateway.crm_url,
            content=body.replace(b"closedwon", b"closedlost"),
            headers=crm_headers(gateway, body, fresh_ts),
        )
    assert stale.status_code == 401
    assert stale.json()["error"] == "stale"
    assert tampered.status_code == 401
    assert tampered.json()["error"] == "signature"


async def test_crm_echo_of_our_own_write_is_suppressed(
    gateway: Any, crm_sandbox: Any, kafka_bootstrap: str, gw_tools: Any
) -> None:
    portal = crm_sandbox.create_portal()
    crm_sandbox.clear_subscriptions()
    crm_sandbox.clear_deliveries()
    crm_sandbox.configure_app(target_url=gateway.crm_url)
    crm_sandbox.subscribe("deal.propertyChange", "dealstage")
    try:
        deal = crm_sandbox.create_as_user(portal.portal_id, "deals", {"dealname": "Echo"})
        # dealbooks writes the deal through the API with the app's OAuth token...
        async with httpx.AsyncClient(base_url=crm_sandbox.base_url) as crm:
            ours = await crm.patch(
                f"/crm/v3/objects/deals/{deal['id']}",
                json={"properties": {"dealstage": "contractsent"}},
                headers={"Authorization": f"Bearer {portal.access_token}"},
            )
        assert ours.status_code == 200, ours.text
        # ...then a person moves it on in the CRM.
        crm_sandbox.update_as_user(
            portal.portal_id, "deals", deal["id"], {"dealstage": "closedwon"}
        )
        records = await keyed(
            gw_tools, kafka_bootstrap, gateway, "crm.object-changed.v1", portal.portal_id
        )
        delivered = crm_sandbox.deliveries()
    finally:
        crm_sandbox.configure_app(target_url="")
        crm_sandbox.clear_subscriptions()

    assert [gw_tools.as_event(r)["data"]["property_value"] for r in records] == ["closedwon"]
    assert sum(d["count"] for d in delivered["results"] if d["status"] == 200) >= 2
    async with httpx.AsyncClient() as client:
        metrics = await client.get(f"{gateway.base_url}/metrics")
    assert 'dealbooks_webhook_events_dropped_total{reason="own_write",sender="crm"}' in metrics.text


async def test_no_secret_reaches_a_log_line(gateway: Any, gateway_logs: Any, gw_tools: Any) -> None:
    assert gateway_logs.lines
    for secret in (gw_tools.verifier_token, gateway.crm_secret):
        assert not any(secret in line for line in gateway_logs.lines)


def legacy_body(realm: str, entity: str, entity_id: str) -> bytes:
    return json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": realm,
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": entity,
                                "id": entity_id,
                                "operation": "Create",
                                "lastUpdated": "2026-10-05T14:42:19-0700",
                            }
                        ]
                    },
                }
            ]
        }
    ).encode()


def qbo_headers(tools: Any, body: bytes) -> dict[str, str]:
    """The header that signs a QuickBooks delivery of `body` with the verifier token."""
    return {"intuit-signature": sign(body, tools.verifier_token)}


def crm_event(portal_id: int, object_id: int) -> dict[str, Any]:
    return {
        "eventId": 1,
        "subscriptionId": 25,
        "portalId": portal_id,
        "appId": 1,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "deal.propertyChange",
        "attemptNumber": 0,
        "objectId": object_id,
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "changeSource": "CRM_UI",
        "sourceId": "userId:1",
    }


def crm_headers(gateway: Any, body: bytes, timestamp: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": signature_v3(
            gateway.crm_secret, "POST", gateway.crm_url, body, timestamp
        ),
        "X-HubSpot-Request-Timestamp": timestamp,
    }


async def test_a_realms_portals_are_remembered_briefly_and_forgotten_on_disconnect(
    mongo_uri: str, namespace: str
) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    try:
        db = client[f"{namespace}_realms"]
        here, replica = RealmDirectory(db, remember_seconds=0.3), RealmDirectory(db)
        assert await here.portals("r1") == []  # unknown: not remembered
        await replica.connect("r1", "p1")
        assert await here.portals("r1") == ["p1"]  # read again, then remembered
        await replica.connect("r1", "p2")
        assert await here.portals("r1") == ["p1"]  # another replica's change: not yet seen
        await asyncio.sleep(0.35)
        assert sorted(await here.portals("r1")) == ["p1", "p2"]
        await here.disconnect("r1", "p1")
        assert await here.portals("r1") == ["p2"]  # its own change: seen at once
    finally:
        await client.close()
