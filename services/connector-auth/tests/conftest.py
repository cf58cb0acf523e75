"""Fixtures: connector-auth served over real HTTP (uvicorn in a thread) against the QBO and CRM
sandboxes, a real Kafka broker and the MongoDB-wire server; every log line is kept."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from connector_auth.app import build_app
from connector_auth.crypto import TokenCipher, generate_key_spec
from connector_auth.settings import ConnectorAuthSettings
from dealbooks_contracts import QboEnvironment
from dealbooks_infra import testing
from dealbooks_infra.testing import LogCollector, free_port
from dealbooks_kit import configure_logging
from pymongo import AsyncMongoClient

SERVICE_CREDENTIAL = "svc-" + uuid.uuid4().hex
STATE_SECRET = "state-" + uuid.uuid4().hex
SESSION_KEYS = f"s1:session-{uuid.uuid4().hex}"
GRANT_KEYS = f"g1:grant-{uuid.uuid4().hex}"


@dataclass
class Secrets:
    """Every token and secret the run handled, to look for in logs and on Kafka."""

    values: set[str] = field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


@pytest.fixture(scope="session")
def run_logs() -> Iterator[LogCollector]:
    configure_logging("connector-auth-test", "DEBUG", json=True)
    with LogCollector().on_root() as collector:
        yield collector


@pytest.fixture(scope="session")
def run_secrets() -> Secrets:
    return Secrets()


class ServedApp(testing.ServedApp):
    """One connector-auth replica served by uvicorn on its own thread and event loop."""

    def __init__(self, settings: ConnectorAuthSettings) -> None:
        super().__init__(build_app(settings), settings.http_port, "connector-auth")
        self.settings = settings


@dataclass
class Connector:
    """A running connector-auth plus what tests need to drive it."""

    app: ServedApp
    settings: ConnectorAuthSettings
    qbo_base: str
    cipher: TokenCipher
    secrets: Secrets
    crm_portal_id: str
    crm: Any
    browsers: dict[str, httpx.Cookies] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.app.base_url

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {SERVICE_CREDENTIAL}"}

    def new_portal(self) -> str:
        """A new CRM portal (not yet installed)."""
        portal = self.crm.create_portal()
        self.secrets.add(portal.access_token, portal.refresh_token)
        return str(portal.portal_id)

    async def sign_in(self, portal_id: str, path: str = "/signin") -> httpx.Response:
        """The browser round trip of the CRM's OAuth for `portal_id` (the sandbox consents
        as its admin); the browser keeps the session cookie for later calls."""
        consent = {"portalId": int(portal_id), "mode": "auto", "decision": "approve"}
        self.crm.control.post("/oauth/consent", json=consent).raise_for_status()
        async with self.browser(portal_id) as browser:
            start = await browser.get(f"{self.base_url}{path}")
            assert start.status_code == 302, start.text
            consent = await browser.get(start.headers["location"])
            assert consent.status_code == 302, consent.text
            done = await browser.get(consent.headers["location"])
            self.browsers[portal_id] = browser.cookies
        self.secrets.add(*(c for c in browser.cookies.values()))
        return done

    def browser(self, portal_id: str) -> httpx.AsyncClient:
        """A browser of the person signed in for `portal_id` (its cookies)."""
        return httpx.AsyncClient(timeout=30.0, cookies=self.browsers.get(portal_id))

    async def connect(self, portal_id: str, realm_id: str) -> httpx.Response:
        """The browser round trip: sign in (once per portal) -> connect -> QBO consent (the
        sandbox picks the realm) -> callback."""
        if portal_id not in self.browsers:
            signed_in = await self.sign_in(portal_id)
            assert signed_in.status_code == 200, signed_in.text
        async with self.browser(portal_id) as browser:
            start = await browser.get(f"{self.base_url}/v1/portals/{portal_id}/quickbooks/connect")
            assert start.status_code == 302, start.text
            consent = await browser.get(f"{start.headers['location']}&sandbox_realm={realm_id}")
            assert consent.status_code == 302, consent.text
            return await browser.get(consent.headers["location"])

    async def accounts(self, portal_id: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30.0) as client:
            response = await client.get(f"/v1/portals/{portal_id}/accounts", headers=self.auth())
        assert response.status_code == 200
        return list(response.json()["results"])

    async def token(
        self, portal_id: str, realm_id: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30.0) as client:
            response = await client.post(
                f"/internal/v1/portals/{portal_id}/accounts/{realm_id}/access-token",
                headers=self.auth() if headers is None else headers,
            )
        if response.status_code == 200:
            self.secrets.add(response.json()["access_token"])
        return response

    async def events(
        self, name: str, count: int, portal: str | None = None
    ) -> list[dict[str, Any]]:
        """At least `count` events of this connector's topic `name` (only `portal`'s, if
        given), then every match already there."""
        return await read_events(
            self.settings.kafka_bootstrap,
            self.settings.topic(name),
            lambda e: portal is None or e["tenant"]["portal_id"] == portal,
            count,
        )


def as_event(record: Any) -> dict[str, Any]:
    """A record's JSON, with its raw value and key (to look for secrets in both)."""
    event: dict[str, Any] = json.loads(record.value)
    event["_raw"] = record.value.decode()
    event["_key"] = record.key
    return event


async def read_events(
    bootstrap: str, topic: str, predicate: Any, count: int, timeout: float = 30.0
) -> list[dict[str, Any]]:
    """At least `count` events of `topic` (from the start) that satisfy `predicate`, then every
    match already there."""
    return await testing.read_topic(
        bootstrap, topic, as_event, predicate, count=count, drain=True, timeout=timeout, poll_ms=500
    )


@pytest.fixture(scope="module")
def token_keys() -> str:
    return f"{generate_key_spec('k2')},{generate_key_spec('k1')}"


ConnectorSettings = Callable[[QboEnvironment], ConnectorAuthSettings]


@pytest.fixture(scope="module")
def connector_settings(
    service_settings: Callable[..., ConnectorAuthSettings],
    qbo_sandbox: Any,
    crm_sandbox: Any,
    token_keys: str,
) -> ConnectorSettings:
    """The settings of a connector-auth on this run's servers and sandboxes, serving the
    QuickBooks `environment` (a database, topics and port of its own each time)."""

    def settings(environment: QboEnvironment) -> ConnectorAuthSettings:
        port = free_port()
        app_info = crm_sandbox.app()
        client = "production" if environment is QboEnvironment.PRODUCTION else "sandbox"
        return service_settings(
            ConnectorAuthSettings,
            "ca",
            http_port=port,
            qbo_environment=environment,
            qbo_client_id=f"{client}-client",
            qbo_client_secret=f"{client}-secret",
            qbo_oauth_base_url=qbo_sandbox.base_url,
            redirect_uri=f"http://127.0.0.1:{port}/oauth/callback",
            state_secret=STATE_SECRET,
            token_keys=token_keys,
            service_credentials=f"{SERVICE_CREDENTIAL},old-{SERVICE_CREDENTIAL}",
            session_keys=SESSION_KEYS,
            grant_keys=GRANT_KEYS,
            crm_oauth_url=crm_sandbox.base_url,
            crm_client_id=str(app_info["clientId"]),
            crm_client_secret=str(app_info["clientSecret"]),
            crm_redirect_uri=f"http://127.0.0.1:{port}/oauth/crm/callback",
            outbox_relay_seconds=0.5,
        )

    return settings


@pytest.fixture(scope="module")
def connector(
    connector_settings: ConnectorSettings,
    qbo_sandbox: Any,
    crm_sandbox: Any,
    run_logs: LogCollector,
    run_secrets: Secrets,
    token_keys: str,
) -> Iterator[Connector]:
    """connector-auth in sandbox mode, for the whole module (tests use their own portals)."""
    portal = crm_sandbox.create_portal()
    settings = connector_settings(QboEnvironment.SANDBOX)
    run_secrets.add(
        SERVICE_CREDENTIAL,
        STATE_SECRET,
        SESSION_KEYS.split(":", 1)[1],
        GRANT_KEYS.split(":", 1)[1],
        portal.access_token,
        portal.refresh_token,
        *(k.split(":", 1)[1] for k in token_keys.split(",")),
    )
    with ServedApp(settings) as app:
        yield Connector(
            app,
            settings,
            qbo_sandbox.base_url,
            TokenCipher.from_spec(token_keys),
            run_secrets,
            str(portal.portal_id),
            crm_sandbox,
        )


@dataclass(frozen=True)
class Tools:
    """Helpers for test modules (importlib mode: test modules cannot import conftest)."""

    served_app: type[ServedApp] = ServedApp
    connector: type[Connector] = Connector
    free_port: Any = free_port


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools()


@pytest.fixture
async def db(connector: Connector, mongo_uri: str) -> AsyncIterator[Any]:
    """connector-auth's own database, read and written as the tests need."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_uri, tz_aware=True)
    yield client[connector.settings.database_name]
    await client.close()
