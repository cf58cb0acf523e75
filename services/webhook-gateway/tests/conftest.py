"""Fixtures: webhook-gateway served over real HTTP (uvicorn in a thread) with real Kafka and the
MongoDB-wire server, fed by the QBO and CRM sandboxes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from dealbooks_kit import configure_logging
from webhook_gateway.app import build_app
from webhook_gateway.settings import WebhookGatewaySettings

VERIFIER_TOKEN = "verifier-" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LogCollector(logging.Handler):
    """Every formatted log record of the run."""

    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        logging.Handler.__init__(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __hash__(self) -> int:
        return id(self)


@pytest.fixture(scope="session")
def gateway_logs() -> Iterator[LogCollector]:
    configure_logging("webhook-gateway-test", "DEBUG", json=True)
    root = logging.getLogger()
    collector = LogCollector()
    collector.setFormatter(root.handlers[0].formatter)
    root.addHandler(collector)
    yield collector
    root.removeHandler(collector)


@dataclass
class Gateway:
    """A running gateway and its settings."""

    settings: WebhookGatewaySettings
    base_url: str
    crm_secret: str

    @property
    def qbo_url(self) -> str:
        return f"{self.base_url}/webhooks/quickbooks"

    @property
    def crm_url(self) -> str:
        return f"{self.base_url}/webhooks/crm"

    def topic(self, name: str) -> str:
        return self.settings.topic(name)


@pytest.fixture(scope="module")
def gateway(
    kafka_bootstrap: str,
    mongo_uri: str,
    kafka_supports_idempotence: bool,
    crm_sandbox: Any,
    gateway_logs: LogCollector,
) -> Iterator[Gateway]:
    """The gateway for the whole module; tests keep apart by realm and portal ids."""
    database = f"gw{uuid.uuid4().hex[:8]}"
    port = free_port()
    app_info = crm_sandbox.app()
    settings = WebhookGatewaySettings(
        kafka_bootstrap=kafka_bootstrap,
        mongodb_uri=mongo_uri,
        mongodb_database=database,
        topic_prefix=f"{database}.",
        kafka_idempotence=kafka_supports_idempotence,
        http_port=port,
        qbo_verifier_token=VERIFIER_TOKEN,
        crm_client_secret=app_info["clientSecret"],
        crm_app_id=str(app_info["appId"]),
        max_body_bytes=200_000,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            build_app(settings),
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base_url, timeout=2.0) as client:
        for _ in range(600):
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            threading.Event().wait(0.05)
    try:
        yield Gateway(settings, base_url, app_info["clientSecret"])
    finally:
        server.should_exit = True
        thread.join(timeout=20)


async def read_events(
    bootstrap: str, topic: str, predicate: Any, count: int, timeout: float = 30.0
) -> list[Any]:
    """At least `count` records of `topic` matching `predicate`, then all that are there."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            batch: dict[Any, Any] = {"": ()}
            while len(found) < count or batch:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(r for r in records if predicate(r))
    finally:
        await consumer.stop()
    return found


def as_event(record: Any) -> dict[str, Any]:
    return dict(json.loads(record.value))


@dataclass(frozen=True)
class Tools:
    """Helpers for test modules (importlib mode: test modules cannot import conftest)."""

    read_events: Any = read_events
    as_event: Any = as_event
    verifier_token: str = VERIFIER_TOKEN


@pytest.fixture(scope="session")
def gw_tools() -> Tools:
    return Tools()
