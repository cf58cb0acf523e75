"""Helpers every test suite shares: poll until something holds, read or watch a Kafka topic
from its start, the account facts connector-auth would announce, serve an ASGI app over real
HTTP on a thread, keep the run's log lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer
from dealbooks_contracts import (
    AccountConnected,
    AccountConnectedReason,
    ContactSynced,
    Envelope,
    EventPayload,
    ExistingCustomer,
    InvoiceDrafted,
    InvoiceLineRequest,
    InvoiceRequested,
    InvoiceRequestOrigin,
    Money,
    QboCustomerRef,
    QboEntityChanged,
    QboEnvironment,
    QboOperation,
    SyncAction,
    SyncTrigger,
    Tenant,
    decode,
)

from dealbooks_infra.process import free_port

__all__ = [
    "LogCollector",
    "ServedApp",
    "account_connected",
    "envelope_of",
    "eventually",
    "free_port",
    "read_events",
    "read_topic",
    "watching",
]

T = TypeVar("T")


async def eventually(
    predicate: Callable[[], Awaitable[T | None]], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """Poll until `predicate()` returns something truthy and return it; raises TimeoutError
    (failing the test) after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if value := await predicate():
                return value
            await asyncio.sleep(interval)


def stack_infra(
    kafka_bootstrap: str, mongo_uri: str, idempotence: bool, tag: str
) -> dict[str, str]:
    """What a `LocalStack` of a test module is given: the session's Kafka and MongoDB-wire
    server, with topics and databases of its own (`tag` + a random part), since other stacks
    of the session share both servers."""
    own = f"{tag}{uuid.uuid4().hex[:8]}"
    return {
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_IDEMPOTENCE": str(idempotence).lower(),
        "MONGODB_URI": mongo_uri,
        "TOPIC_PREFIX": f"{own}.",
        "MONGODB_DATABASE_PREFIX": f"{own}_",
    }


async def until_true(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """`eventually` for a plain condition on in-process state."""

    async def check() -> bool:
        return condition()

    await eventually(check, timeout=timeout, interval=0.02)


def entity_changed(
    realm: str, entity: str, entity_id: str, portal: str = "portal-1"
) -> Envelope[QboEntityChanged]:
    """A webhook's `qbo.entity-changed` for an updated `entity` of `realm` (of `portal`)."""
    return Envelope.build(
        QboEntityChanged(
            realm_id=realm,
            entity=entity,
            entity_id=entity_id,
            operation=QboOperation.UPDATE,
            last_updated=datetime.now(UTC),
        ),
        source="test",
        tenant=Tenant(portal_id=portal, account_id=realm),
    )


def invoice_changed(realm: str, entity_id: str) -> Envelope[QboEntityChanged]:
    """A webhook's `qbo.entity-changed` for an updated invoice of `realm` (portal-1)."""
    return entity_changed(realm, "Invoice", entity_id)


def wizard_request(deal_id: str) -> InvoiceRequested:
    """A wizard's invoice request on `deal_id` for the sandbox company's customer 1 and one of
    its item 2 at 250.00 USD, with a new request id."""
    return InvoiceRequested(
        request_id=uuid.uuid4(),
        deal_id=deal_id,
        origin=InvoiceRequestOrigin.WIZARD,
        customer=ExistingCustomer(qbo_customer_id="1"),
        lines=[
            InvoiceLineRequest(
                qbo_item_id="2",
                quantity=Decimal("1"),
                unit_price=Money(amount=Decimal("250.00"), currency="USD"),
            )
        ],
    )


def contact_synced(customer_id: str) -> Envelope[ContactSynced]:
    """contact-sync's `contact.synced` for QuickBooks customer `customer_id` of realm-1
    (portal-1), updated by a webhook."""
    return Envelope.build(
        ContactSynced(
            action=SyncAction.UPDATED,
            trigger=SyncTrigger.WEBHOOK,
            mapping_version=1,
            qbo_customer_id=customer_id,
            crm_contact_id=f"contact-{customer_id}",
        ),
        source="kit-test",
        tenant=Tenant(portal_id="portal-1", account_id="realm-1"),
    )


def eventually_sync(
    predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05
) -> T:
    """`eventually` for synchronous checks (a browser driven through Playwright's sync API)."""
    deadline = time.monotonic() + timeout
    while True:
        if value := predicate():
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        time.sleep(interval)


@contextlib.contextmanager
def qbo_faults(qbo_sandbox: Any, **plan: Any) -> Iterator[None]:
    """The QuickBooks sandbox answers with the faults of `plan` (see its /_sandbox/faults)
    until the block ends, however it ends."""
    qbo_sandbox.inject(**plan)
    try:
        yield
    finally:
        qbo_sandbox.clear_faults()


@contextlib.contextmanager
def crm_fault(crm_sandbox: Any, kind: str, **fault: Any) -> Iterator[None]:
    """The CRM sandbox answers with the fault `kind` (see `CrmSandbox.inject_fault`) until
    the block ends, however it ends."""
    crm_sandbox.inject_fault(kind, **fault)
    try:
        yield
    finally:
        crm_sandbox.clear_faults()


async def with_webhook_dropped(qbo_sandbox: Any, realm: str, act: Callable[[], T]) -> T:
    """`act()`, a person's change in QuickBooks, while the QBO sandbox drops the webhook it
    fires (what a healing pass must find); returns what `act` returned once the drop is seen."""
    endpoint = qbo_sandbox.add_webhook(
        "http://127.0.0.1:9/never-reached", "verifier-heal", "legacy", realms=[realm]
    )
    try:
        with qbo_faults(qbo_sandbox, drop_webhooks=1):
            done = act()

            async def dropped() -> bool:
                return any(
                    d.get("dropped") and d.get("endpoint_id") == endpoint["endpoint_id"]
                    for d in qbo_sandbox.deliveries()
                )

            await eventually(dropped)
    finally:
        qbo_sandbox.remove_webhook(endpoint["endpoint_id"])
    return done


def _from_start(bootstrap: str, topics: Sequence[str]) -> AIOKafkaConsumer:
    # No group: nothing is committed, so every reader sees the topic from its first record.
    return AIOKafkaConsumer(
        *topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )


async def read_topic(
    bootstrap: str,
    topic: str,
    decode: Callable[[Any], T],
    where: Callable[[T], bool] = lambda _: True,
    *,
    count: int = 1,
    drain: bool = False,
    timeout: float = 30.0,
    poll_ms: int = 300,
) -> list[T]:
    """The records of `topic`, from its start, that satisfy `where` (each as `decode` makes it
    of an aiokafka record), as soon as at least `count` matched; with `drain`, also every match
    already on the topic (read until a poll comes back empty). Raises TimeoutError after
    `timeout` seconds."""
    consumer = _from_start(bootstrap, [topic])
    await consumer.start()
    found: list[T] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                batch = await consumer.getmany(timeout_ms=poll_ms)
                found += [
                    item
                    for records in batch.values()
                    for item in map(decode, records)
                    if where(item)
                ]
                if len(found) >= count and not (drain and batch):
                    return found
    finally:
        await consumer.stop()


def envelope_of(record: Any) -> Envelope[Any]:
    """The event an aiokafka record carries."""
    return decode(record.value)


async def read_events(
    bootstrap: str,
    topic: str,
    where: Callable[[Envelope[Any]], bool] = lambda _: True,
    *,
    count: int = 1,
    drain: bool = False,
    timeout: float = 30.0,
    poll_ms: int = 300,
) -> list[Envelope[Any]]:
    """`read_topic` for dealbooks events: the events of `topic` that satisfy `where`."""
    return await read_topic(
        bootstrap,
        topic,
        envelope_of,
        where,
        count=count,
        drain=drain,
        timeout=timeout,
        poll_ms=poll_ms,
    )


def account_connected(**facts: Any) -> AccountConnected:
    """`account.connected` as connector-auth announces a US sandbox company (USD, no
    multicurrency, no custom transaction numbers); `facts` change any of it."""
    defaults: dict[str, Any] = {
        "company_name": "Sandbox Company",
        "country": "US",
        "home_currency": "USD",
        "multicurrency_enabled": False,
        "custom_transaction_numbers": False,
        "environment": QboEnvironment.SANDBOX,
        "reason": AccountConnectedReason.CONNECTED,
        "connected_at": datetime.now(UTC),
    }
    return AccountConnected(**(defaults | facts))


def one_line_invoice(amount: str, **fields: Any) -> dict[str, Any]:
    """The body of a QuickBooks invoice to the sandbox company's customer 1 of one line of its
    item 1 for `amount`; `fields` are added to it."""
    return {
        "CustomerRef": {"value": "1"},
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": Decimal(amount),
                "SalesItemLineDetail": {"ItemRef": {"value": "1"}},
            }
        ],
        **fields,
    }


def invoice_drafted(invoice: Any, deal_id: str, today: date) -> InvoiceDrafted:
    """`invoice.drafted` as invoice-builder publishes it for a QuickBooks invoice (a
    `dealbooks_qbo.Invoice`) it made for `deal_id`, dated `today` if QuickBooks gave no date."""
    return InvoiceDrafted(
        request_id=uuid.uuid4(),
        deal_id=deal_id,
        qbo_invoice_id=str(invoice.Id),
        doc_number=invoice.DocNumber,
        customer=QboCustomerRef(qbo_customer_id=invoice.CustomerRef.value),
        customer_created=False,
        total=Money(
            amount=invoice.TotalAmt or Decimal("0"),
            currency=invoice.CurrencyRef.value if invoice.CurrencyRef else "USD",
        ),
        invoice_date=invoice.TxnDate or today,
        due_date=invoice.DueDate,
    )


@contextlib.asynccontextmanager
async def watching(
    bootstrap: str, topics: Sequence[str], on_record: Callable[[Any], None]
) -> AsyncIterator[None]:
    """While inside, hand every record of `topics` (from their start) to `on_record`, in the
    background."""
    consumer = _from_start(bootstrap, topics)
    await consumer.start()

    async def watch() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    on_record(record)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await consumer.stop()


class ServiceHarness:
    """A service under test on the session's Kafka and MongoDB-wire server and both sandboxes,
    with what its tests drive it by: the QuickBooks and CRM tokens it reads (each test sets its
    company's and portal's), a QuickBooks client of the test's own, publishing an event,
    reading a topic, and calling an API in-process. `build(settings, qbo_tokens=, crm_tokens=)`
    makes the service."""

    def __init__(
        self,
        settings: Any,
        bootstrap: str,
        qbo_sandbox: Any,
        crm_sandbox: Any,
        build: Callable[..., Any],
    ) -> None:
        from dealbooks_http import StaticTokenProvider
        from dealbooks_qbo import QboClient

        self.settings = settings
        self.bootstrap = bootstrap
        self.qbo_sandbox = qbo_sandbox
        self.crm_sandbox = crm_sandbox
        self.qbo_tokens = StaticTokenProvider({})
        self.crm_tokens = StaticTokenProvider({})
        self.service = build(settings, qbo_tokens=self.qbo_tokens, crm_tokens=self.crm_tokens)
        self.qbo = QboClient(qbo_sandbox.base_url, self.qbo_tokens)

    async def aclose(self) -> None:
        await self.qbo.aclose()
        await self.service.aclose()

    async def publish(self, payload: EventPayload, tenant: Tenant) -> Envelope[Any]:
        event = Envelope.build(payload, source="test", tenant=tenant)
        await self.service.runtime.publisher.publish(event)
        return event

    async def events(
        self, event_type: str, predicate: Callable[[Envelope[Any]], bool], count: int = 1
    ) -> list[Envelope[Any]]:
        """Read the events of a type from the start of its topic until `count` match."""
        topic = self.settings.topic(f"{event_type}.v1")
        return await read_events(self.bootstrap, topic, predicate, count=count)

    @staticmethod
    def calling(app: Any, base_url: str, bearer: str | None) -> httpx.AsyncClient:
        """`app` in-process, called with `bearer` (None: no credential)."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=base_url,
            headers={"Authorization": f"Bearer {bearer}"} if bearer else {},
        )


class ServedApp:
    """An ASGI app served by uvicorn on its own thread and event loop at 127.0.0.1:`port`;
    entering waits until `/readyz` answers 200."""

    def __init__(self, app: Any, port: int, name: str = "the app") -> None:
        self.name = name
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            for _ in range(600):
                try:
                    if client.get("/readyz").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if not self.thread.is_alive():
                    break
                threading.Event().wait(0.05)
        raise RuntimeError(f"{self.name} did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@dataclass
class LogCollector(logging.Handler):
    """Keeps every formatted record of the run, as the service would have written it."""

    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __hash__(self) -> int:
        return id(self)

    @contextlib.contextmanager
    def on_root(self) -> Iterator[LogCollector]:
        """Collect the root logger's records, formatted by its first handler's formatter."""
        root = logging.getLogger()
        self.setFormatter(root.handlers[0].formatter)
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)
