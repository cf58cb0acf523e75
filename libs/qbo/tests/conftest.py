from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dealbooks_http import RetryPolicy, StaticTokenProvider
from dealbooks_qbo import QboClient, QboCompany
from qbo_sandbox.pytest_plugin import SandboxCompany, SandboxHandle

FAST_RETRY = RetryPolicy(
    attempts=6, timeout=30.0, wait_initial=0.05, wait_max=1.0, wait_jitter=0.05
)


@pytest.fixture
async def client(
    qbo_sandbox: SandboxHandle, qbo_company: SandboxCompany
) -> AsyncIterator[QboClient]:
    tokens = StaticTokenProvider({qbo_company.realm_id: qbo_company.access_token})
    async with QboClient(qbo_sandbox.base_url, tokens, retry=FAST_RETRY) as qbo:
        yield qbo


@pytest.fixture
def company(client: QboClient, qbo_company: SandboxCompany) -> QboCompany:
    return client.company(qbo_company.realm_id)


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    """A tiny HTTP endpoint that records webhook POSTs; `fail_next` answers 500 that often."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    state = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with state.lock:
                failing = state.fail_next > 0
                if failing:
                    state.fail_next -= 1
                state.received.append(
                    Received(body, {k.lower(): v for k, v in self.headers.items()})
                )
            self.send_response(500 if failing else 200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/qbo"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
