"""Fixtures: webhook-gateway served over real HTTP (uvicorn in a thread) with real Kafka and the
MongoDB-wire server, fed by the QBO and CRM sandboxes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from dealbooks_infra.testing import LogCollector, ServedApp, free_port, read_topic
from dealbooks_kit import configure_logging
from webhook_gateway.app import build_app
from webhook_gateway.settings import WebhookGatewaySettings

VERIFIER_TOKEN = "verifier-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def gateway_logs() -> Iterator[LogCollector]:
    configure_logging("webhook-gateway-test", "DEBUG", json=True)
    with LogCollector().on_root() as collector:
        yield collector


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
    service_settings: Callable[..., WebhookGatewaySettings],
    crm_sandbox: Any,
    gateway_logs: LogCollector,
) -> Iterator[Gateway]:
    """The gateway for the whole module; tests keep apart by realm and portal ids."""
    port = free_port()
    app_info = crm_sandbox.app()
    settings = service_settings(
        WebhookGatewaySettings,
        "gw",
        http_port=port,
        qbo_verifier_token=VERIFIER_TOKEN,
        crm_client_secret=app_info["clientSecret"],
        crm_app_id=str(app_info["appId"]),
        max_body_bytes=200_000,
    )
    with ServedApp(build_app(settings), port, "webhook-gateway") as served:
        yield Gateway(settings, served.base_url, app_info["clientSecret"])


async def read_events(
    bootstrap: str, topic: str, predicate: Any, count: int, timeout: float = 30.0
) -> list[Any]:
    """At least `count` records of `topic` matching `predicate`, then all that are there."""
    return await read_topic(
        bootstrap,
        topic,
        lambda r: r,
        predicate,
        count=count,
        drain=True,
        timeout=timeout,
        poll_ms=500,
    )


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
