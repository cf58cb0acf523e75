"""Invoices end to end with every part as in production: each service its own process
(`python -m <service>`), both sandboxes as processes over HTTP, the session's real Kafka and
MongoDB-wire server, the QuickBooks company connected through connector-auth's OAuth flow,
webhooks signed and delivered by the QBO sandbox to webhook-gateway.

One stack serves the module; each test works on its own deal and invoice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from connector_auth.crypto import TokenCipher
from dealbooks_infra import testing
from dealbooks_infra.people import AsyncPerson
from dealbooks_infra.records import crm_record
from dealbooks_infra.stack import SERVICE_ORDER, LocalStack, start_service
from dealbooks_infra.topology import PORTAL_ID
from pymongo import AsyncMongoClient

pytestmark = [pytest.mark.integration]

US_REALM = "9341455322581846"  # the QBO sandbox's demo seed: a US company
# Every session value the module's people were given (the log scan looks for each).
HANDED_OUT: set[str] = set()
T = TypeVar("T")


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 60.0) -> T:
    return await testing.eventually(check, timeout=timeout, interval=0.1)


class Stack:
    """The running stack and the calls a person or the CRM card would make."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        t = stack.topology
        self.t = t
        self.http = httpx.AsyncClient(timeout=30.0)
        self.crm_ctl = t.crm_control()
        self.qbo_ctl = f"{t.qbo}/_sandbox"
        self.wizard = t.wizard()
        self.person = AsyncPerson(t, self.http)
        self.tracker = t.url("status-tracker")

    async def ok(self, response: Awaitable[httpx.Response]) -> Any:
        answered = await response
        assert answered.is_success, f"{answered.status_code} {answered.text[:300]}"
        return answered.json() if answered.content else None

    async def connect(self, realm: str) -> None:
        if self.person.session is None:
            await self.person.install()
        await self.person.connect(realm)

        async def builder_knows_it() -> bool:
            found = await self.http.get(f"{self.wizard}/accounts", headers=await self.person.auth())
            accounts = found.json().get("accounts", []) if found.is_success else []
            return any(a["realm_id"] == realm for a in accounts)

        await until(builder_knows_it)

    async def crm_create(
        self, kind: str, props: dict[str, str], assocs: Sequence[tuple[str, int]] = ()
    ) -> str:
        body = crm_record(props, assocs or ())
        created = await self.ok(self.http.post(f"{self.crm_ctl}/objects/{kind}", json=body))
        return str(created["id"])

    async def new_deal(self, amount: str) -> str:
        """A deal with a contact (a new customer for QuickBooks) at a company."""
        tag = uuid.uuid4().hex[:8]
        company = await self.crm_create("companies", {"name": f"Harbour Books {tag}"})
        contact = await self.crm_create(
            "contacts",
            {"email": f"ops-{tag}@harbour.example", "firstname": "Ada", "lastname": tag},
            [(company, 1)],
        )
        return await self.crm_create(
            "deals",
            {"dealname": f"Bookkeeping {tag}", "amount": amount},
            [(contact, 3), (company, 5)],
        )

    async def draft(self, deal: str, quantity: str, price: str) -> dict[str, Any]:
        """An invoice from scratch through the wizard; waits for its outcome."""
        body = {
            "deal_id": deal,
            "lines": [
                {
                    "qbo_item_id": "1",
                    "quantity": quantity,
                    "description": "Monthly bookkeeping",
                    "unit_price": {"amount": price, "currency": "USD"},
                }
            ],
            "terms_id": "3",
            "customer_message": "Thank you for your business.",
        }
        sent = await self.ok(
            self.http.post(
                f"{self.wizard}/accounts/{US_REALM}/invoice-requests",
                json=body,
                headers=await self.person.auth(),
            )
        )

        async def outcome() -> dict[str, Any] | None:
            polled = await self.ok(
                self.http.get(
                    f"{self.wizard}/invoice-requests/{sent['request_id']}",
                    headers=await self.person.auth(),
                )
            )
            return polled if polled.get("status") in {"drafted", "rejected"} else None

        found = await until(outcome)
        assert found["status"] == "drafted", found
        return found

    async def drafted_invoice(self, quantity: str) -> tuple[str, dict[str, Any], str]:
        """A new deal and its invoice from scratch at 150.00 a unit, tracked: (deal, the
        request's outcome, QBO invoice id)."""
        total = f"{int(quantity) * 150}"
        deal = await self.new_deal(total)
        invoice = await self.draft(deal, quantity, "150")
        invoice_id = str(invoice["qbo_invoice_id"])
        await self.reaches(invoice_id, "awaiting_send")
        return deal, invoice, invoice_id

    async def timeline_of_at_least(self, deal: str, count: int) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            events = await self.timeline(deal)
            return events if len(events) >= count else None

        return await until(enough)

    async def pay(self, invoice_id: str, amount: str | None = None) -> None:
        await self.ok(
            self.http.post(
                f"{self.qbo_ctl}/companies/{US_REALM}/invoices/{invoice_id}/payments",
                json={"amount": amount} if amount else {},
            )
        )

    async def stage(self, invoice_id: str) -> str | None:
        found = await self.http.get(
            f"{self.tracker}/portals/{PORTAL_ID}/accounts/{US_REALM}/invoices/{invoice_id}",
            headers=await self.person.auth(),
        )
        return found.json().get("stage") if found.status_code == 200 else None

    async def reaches(self, invoice_id: str, stage: str, timeout: float = 60.0) -> None:
        async def there() -> bool:
            return await self.stage(invoice_id) == stage

        await until(there, timeout)

    async def deal_properties(self, deal: str) -> dict[str, Any]:
        record = await self.ok(self.http.get(f"{self.crm_ctl}/objects/deals/{deal}"))
        return dict(record.get("properties", {}))

    async def timeline(self, deal: str) -> list[dict[str, Any]]:
        events = await self.ok(self.http.get(f"{self.crm_ctl}/timeline-events?objectId={deal}"))
        return list(events.get("results", events))

    async def webhooks_delivered(self) -> None:
        """Until the QBO sandbox has no webhook waiting to go out."""

        async def idle() -> bool:
            endpoints = await self.ok(self.http.get(f"{self.qbo_ctl}/webhooks"))
            return all(e["pending"] == 0 for e in endpoints)

        await until(idle)

    async def caught_up(self, service: str, consumer: str, topic: str) -> None:
        """Until `service`'s consumer has committed every record on `topic` so far: each one
        it was given is handled (or dead-lettered), with its effect durable."""
        prefix = self.t.infra.get("TOPIC_PREFIX", "")
        bootstrap = self.t.infra["KAFKA_BOOTSTRAP"]
        group = f"{prefix}{service}.{consumer}"
        reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await reader.start()
        await admin.start()
        try:
            [described] = await admin.describe_topics([prefix + topic])
            partitions = [
                TopicPartition(prefix + topic, p["partition"]) for p in described["partitions"]
            ]
            assert partitions, f"{prefix + topic} has no partitions"
            ends = await reader.end_offsets(partitions)

            async def committed_all() -> bool:
                offsets = await admin.list_consumer_group_offsets(group)
                return all(
                    end == 0 or (tp in offsets and offsets[tp].offset >= end)
                    for tp, end in ends.items()
                )

            await until(committed_all)
        finally:
            await reader.stop()
            await admin.close()


@pytest.fixture(scope="module")
def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    kafka_bootstrap: str,
    mongo_uri: str,
    kafka_supports_idempotence: bool,
) -> Iterator[LocalStack]:
    workdir: Path = tmp_path_factory.mktemp("stack")
    stack = LocalStack(
        workdir,
        say=False,
        infra=testing.stack_infra(kafka_bootstrap, mongo_uri, kafka_supports_idempotence, "e"),
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def stack(running_stack: LocalStack) -> AsyncIterator[Stack]:
    s = Stack(running_stack)
    try:
        await s.connect(US_REALM)  # a second connection of the same company is a refresh
        yield s
    finally:
        HANDED_OUT.update(s.person.seen, s.http.cookies.values())
        await s.http.aclose()


async def test_an_invoice_drafted_from_a_deal_then_paid_in_two_parts_shows_on_the_deal(
    stack: Stack,
) -> None:
    deal, invoice, invoice_id = await stack.drafted_invoice("8")

    await stack.pay(invoice_id, "400.00")
    await stack.reaches(invoice_id, "partially_paid")
    await stack.pay(invoice_id)
    await stack.reaches(invoice_id, "paid")

    events = await stack.timeline_of_at_least(deal, 2)
    assert sorted(e["tokens"]["amount"] for e in events) == ["400.00", "800.00"]

    async def deal_paid() -> dict[str, Any] | None:
        props = await stack.deal_properties(deal)
        return props if props.get("acct_invoice_status") == "paid" else None

    props = await until(deal_paid)
    assert props["acct_invoice_number"] == invoice["doc_number"]
    assert props["acct_amount_billed"] in {"1200", "1200.00"}
    assert props["acct_invoice_recipient"].startswith("ops-")


async def test_a_payment_webhook_delivered_three_times_yields_one_timeline_event(
    stack: Stack,
) -> None:
    deal, _, invoice_id = await stack.drafted_invoice("2")
    await stack.webhooks_delivered()
    already = len(await stack.ok(stack.http.get(f"{stack.qbo_ctl}/webhooks/deliveries")))

    await stack.pay(invoice_id)
    await stack.reaches(invoice_id, "paid")
    await stack.webhooks_delivered()
    deliveries = await stack.ok(stack.http.get(f"{stack.qbo_ctl}/webhooks/deliveries"))
    payment_webhooks = [
        d for d in deliveries[already:] if '"Payment"' in d["body"] and d.get("status") == 200
    ]
    assert payment_webhooks, "the QBO sandbox delivered no payment webhook"
    delivered = payment_webhooks[0]

    # The same signed delivery twice more, as QuickBooks does when it is unsure it got through.
    for _ in range(2):
        again = await stack.http.post(
            f"{stack.t.url('webhook-gateway')}/webhooks/quickbooks",
            content=delivered["body"].encode(),
            headers={
                "intuit-signature": delivered["signature"],
                "content-type": "application/json",
            },
        )
        assert again.status_code == 200, again.text
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")

    events = await stack.timeline(deal)
    assert len(events) == 1
    assert events[0]["tokens"]["amount"] == "300.00"


async def test_a_lost_payment_webhook_is_healed_by_the_reconciliation_pass(
    stack: Stack,
) -> None:
    deal, _, invoice_id = await stack.drafted_invoice("3")
    await stack.webhooks_delivered()
    # The draft's own notification handled: a handler still at it could read the invoice
    # from QuickBooks after the payment below, which is what the lost webhook should hide.
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")

    # QuickBooks loses the next webhook: the payment never reaches the gateway.
    await stack.ok(stack.http.post(f"{stack.qbo_ctl}/faults", json={"drop_webhooks": 1}))
    try:
        await stack.pay(invoice_id)
        await stack.webhooks_delivered()
        await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")
        assert await stack.stage(invoice_id) == "awaiting_send"
        assert await stack.timeline(deal) == []

        # The CDC pass (a timer in production; triggered here) finds the payment.
        healed = await stack.ok(
            stack.http.post(
                f"{stack.tracker}/sweeps/reconcile?realm_id={US_REALM}",
                headers=stack.t.operator_auth,
            )
        )
        assert healed["changes"] >= 1
    finally:
        await stack.http.delete(f"{stack.qbo_ctl}/faults")
    assert await stack.stage(invoice_id) == "paid"
    events = await stack.timeline(deal)
    assert [e["tokens"]["amount"] for e in events] == ["450.00"]


async def test_status_tracker_killed_while_payments_arrive_catches_up_after_a_restart(
    stack: Stack,
) -> None:
    deal, _, invoice_id = await stack.drafted_invoice("4")
    t = stack.t
    tracker = stack.stack.processes["status-tracker"]

    os.kill(tracker.pid, signal.SIGKILL)  # no shutdown: whatever was in flight is lost
    tracker.stop()
    await stack.pay(invoice_id, "200.00")
    await stack.pay(invoice_id)
    await stack.webhooks_delivered()  # both reached the gateway and Kafka meanwhile

    restarted, _ = start_service(
        "status-tracker",
        t.service_env("status-tracker"),
        stack.stack.logs,
        t.ports["status-tracker"],
    )
    stack.stack.processes["status-tracker"] = restarted
    await stack.reaches(invoice_id, "paid")

    events = await stack.timeline_of_at_least(deal, 2)
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")
    events = await stack.timeline(deal)
    assert sorted(e["tokens"]["amount"] for e in events) == ["200.00", "400.00"]


# --- the front door -----------------------------------------------------------------------------


async def dead_letters(stack: Stack, topic: str) -> int:
    """How many records the dead-letter topic of `topic` holds so far."""
    dlq = f"{stack.t.infra.get('TOPIC_PREFIX', '')}{topic}.dlq"
    bootstrap = stack.t.infra["KAFKA_BOOTSTRAP"]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await reader.start()
    try:
        if dlq not in await admin.list_topics():
            return 0
        [described] = await admin.describe_topics([dlq])
        ends = await reader.end_offsets(
            [TopicPartition(dlq, p["partition"]) for p in described["partitions"]]
        )
        return sum(ends.values())
    finally:
        await reader.stop()
        await admin.close()


async def crm_calls(stack: Stack) -> int:
    counters = await stack.ok(stack.http.get(f"{stack.crm_ctl}/counters"))
    return int(counters["total"])


async def test_an_uninstalled_portal_is_left_alone_and_a_reinstall_resumes_its_work(
    stack: Stack,
) -> None:
    deal, _, invoice_id = await stack.drafted_invoice("2")
    await stack.webhooks_delivered()
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")
    dead_before = await dead_letters(stack, "qbo.entity-changed.v1")

    # A super admin removes the app in the CRM: its tokens stop working at once.
    await stack.ok(stack.http.delete(f"{stack.crm_ctl}/install"))
    await stack.pay(invoice_id, "100.00")
    await stack.webhooks_delivered()
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")

    # The payment's work for the portal was settled: nothing on the deal, nothing
    # dead-lettered, and no retries hammering the CRM afterwards.
    assert await stack.timeline(deal) == []
    assert await dead_letters(stack, "qbo.entity-changed.v1") == dead_before
    quiet_from = await crm_calls(stack)
    await asyncio.sleep(3)
    assert await crm_calls(stack) == quiet_from
    accounts = await stack.http.get(f"{stack.wizard}/accounts", headers=await stack.person.auth())
    assert accounts.status_code == 200  # the person's session outlives the install

    await stack.person.install()  # the admin installs dealbooks again
    await stack.pay(invoice_id)
    await stack.reaches(invoice_id, "paid")

    async def paid_on_the_deal() -> dict[str, Any] | None:
        props = await stack.deal_properties(deal)
        return props if props.get("acct_invoice_status") == "paid" else None

    await until(paid_on_the_deal)
    # Both payments on the timeline, the one made while the app was gone too: the reinstall
    # brought the portal's tracked invoices up to date.
    await stack.timeline_of_at_least(deal, 2)
    await stack.caught_up("status-tracker", "qbo-changes", "qbo.entity-changed.v1")
    events = await stack.timeline(deal)
    assert sorted(e["tokens"]["amount"] for e in events) == ["100.00", "200.00"]


async def test_a_person_signed_in_for_one_portal_reaches_no_other_portal_in_any_service(
    stack: Stack,
) -> None:
    other = await stack.ok(stack.http.post(f"{stack.t.crm}/_sandbox/portals", json={}))
    other_portal = str(other["portalId"])
    async with httpx.AsyncClient(timeout=30.0) as browser:
        await AsyncPerson(stack.t, browser, other_portal).install()
    mine = await stack.person.auth()
    cookie_jar = stack.http.cookies

    refusals = [
        await stack.http.get(f"{stack.t.wizard(other_portal)}/accounts", headers=mine),
        await stack.http.get(f"{stack.tracker}/portals/{other_portal}/deals/1", headers=mine),
        await stack.http.get(
            f"{stack.t.url('connector-auth')}/v1/portals/{other_portal}/accounts",
            cookies=cookie_jar,
        ),
        await stack.http.get(
            f"{stack.t.url('connector-auth')}/v1/portals/{other_portal}/quickbooks/connect"
        ),
        await stack.http.get(
            f"{stack.t.url('mapping-registry')}/portals/{other_portal}/accounts/{US_REALM}"
            "/contacts/mappings",
            headers=mine,
        ),
        await stack.http.post(
            f"{stack.t.url('contact-sync')}/portals/{other_portal}/accounts/{US_REALM}/backfill",
            headers=mine,
        ),
        await stack.http.post(
            f"{stack.t.url('product-sync')}/portals/{other_portal}/accounts/{US_REALM}/backfill",
            headers=mine,
        ),
    ]
    # Under the person's own portal, a company not connected to it is not there.
    elsewhere = await stack.http.get(
        f"{stack.t.url('mapping-registry')}/portals/{PORTAL_ID}/accounts/unknown-realm"
        "/contacts/mappings",
        headers=mine,
    )

    assert [r.status_code for r in refusals] == [403] * 7
    assert elsewhere.status_code == 404


async def stored_tokens(mongo_uri: str, database: str, token_keys: str) -> set[str]:
    """Every access and refresh token connector-auth holds now, decrypted as only it can."""
    cipher = TokenCipher.from_spec(token_keys)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri)
    db = client[database]
    found: set[str] = set()
    try:
        for collection, context in (("portals", "portal:{_id}"), ("accounts", "{_id}")):
            async for doc in db[collection].find({"tokens": {"$exists": True}}):
                for kind in ("access", "refresh"):
                    where = f"{context.format(_id=doc['_id'])}:{kind}"
                    found.add(cipher.decrypt(doc["tokens"][kind], where))
    finally:
        await client.close()
    assert found, "connector-auth holds no token"
    return found


async def test_no_token_secret_or_session_value_appears_in_any_log_line(stack: Stack) -> None:
    # Runs last in this module: it reads every log line every process of the stack wrote.
    t = stack.t
    secrets = {v for v in vars(t.secrets).values() if isinstance(v, str)}
    secrets |= {value.split(":", 1)[1] for value in (t.secrets.session_key, t.secrets.grant_key)}
    session = await stack.person.refresh()
    secrets |= {session.grant, session.csrf, *stack.person.seen, *stack.http.cookies.values()}
    secrets |= HANDED_OUT  # every grant, CSRF token and cookie of the tests before
    service = {"Authorization": f"Bearer {t.secrets.service_credential}"}
    internal = f"{t.url('connector-auth')}/internal/v1/portals/{PORTAL_ID}"
    crm = await stack.ok(stack.http.post(f"{internal}/crm/access-token", headers=service))
    qbo = await stack.ok(
        stack.http.post(f"{internal}/accounts/{US_REALM}/access-token", headers=service)
    )
    secrets |= {crm["access_token"], qbo["access_token"]}
    database = t.service_env("connector-auth")["CONNECTOR_AUTH_MONGODB_DATABASE"]
    secrets |= await stored_tokens(t.infra["MONGODB_URI"], database, t.secrets.token_key)
    # Our services' logs; the sandboxes play Intuit and HubSpot, whose logs are theirs.
    logs = [stack.stack.logs / f"{name}.log" for name in SERVICE_ORDER]
    assert all(path.exists() for path in logs), "a service wrote no log"
    lines = [line for path in logs for line in path.read_text(errors="replace").splitlines()]
    assert len(lines) > 100
    leaked = {s[:6] + "…" for s in secrets if len(s) >= 8 and any(s in line for line in lines)}
    assert not leaked, f"secrets in the logs: {leaked}"


async def test_the_app_card_reads_a_deal_only_in_a_request_the_crm_signed(stack: Stack) -> None:
    deal, _, invoice_id = await stack.drafted_invoice("1")
    url = f"{stack.t.url('console')}/crm/cards/deal?objectId={deal}&locale=nl-nl"
    control = f"{stack.t.crm}/_sandbox/app/requests"

    async def fetch(portal: str, **extra: Any) -> dict[str, Any]:
        body = {"kind": "ui-fetch", "url": url, "portalId": int(portal), **extra}
        return dict(await stack.ok(stack.http.post(control, json=body)))

    card = await fetch(PORTAL_ID)
    forged = await fetch(PORTAL_ID, tamper="signature")
    stale = await fetch(PORTAL_ID, tamper="timestamp")
    sent = card["request"]
    replayed = await stack.http.request(
        sent["method"], sent["url"], headers=sent["headers"], content=sent["body"].encode()
    )
    other = await stack.ok(stack.http.post(f"{stack.t.crm}/_sandbox/portals", json={}))
    elsewhere = await fetch(str(other["portalId"]))

    assert card["status"] == 200, card
    shown = json.loads(card["body"])
    assert (shown["object_type"], shown["object_id"], shown["locale"]) == ("deal", deal, "nl")
    assert [i["invoice_id"] for i in shown["invoices"]] == [invoice_id]
    assert shown["text"]["stages"]["awaiting_send"] == "Te verzenden"
    assert shown["actions"]["create_invoice"].startswith(f"{stack.t.url('console')}/launch?t=")
    assert [forged["status"], stale["status"], replayed.status_code] == [401, 401, 401]
    # Another portal's card asks for the same deal id: it is not that portal's deal.
    assert json.loads(elsewhere["body"])["invoices"] == []
