"""pytest fixtures: the sandbox as a real subprocess on a free 127.0.0.1 port.

`qbo_sandbox` (session) yields a `SandboxHandle` with `base_url` and control-API helpers;
`qbo_company` (function) is a fresh US company with demo lists and an access token.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class SandboxCompany:
    realm_id: str
    access_token: str
    refresh_token: str
    country: str


class SandboxHandle:
    """A running sandbox: its base URL, its process, and the /_sandbox control API."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.base_url = base_url
        self.process = process
        self.http = httpx.Client(base_url=base_url, timeout=10.0)

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = self.http.request(method, f"/_sandbox/{path.lstrip('/')}", json=json)
        response.raise_for_status()
        return response.json()

    def create_company(self, country: str = "US", **spec: Any) -> SandboxCompany:
        """A new company plus a fresh grant (access and refresh token) for it."""
        spec.setdefault("demo_data", True)
        info = self.control("POST", "companies", {"country": country, **spec})
        tokens = self.control("POST", f"companies/{info['realm_id']}/tokens")
        return SandboxCompany(
            info["realm_id"], tokens["access_token"], tokens["refresh_token"], country
        )

    def set_preferences(self, realm_id: str, **prefs: Any) -> Any:
        return self.control("POST", f"companies/{realm_id}/preferences", prefs)

    def record_payment(self, realm_id: str, invoice_id: str, amount: Any = None) -> Any:
        body = {} if amount is None else {"amount": str(amount)}
        return self.control("POST", f"companies/{realm_id}/invoices/{invoice_id}/payments", body)

    def mark_emailed(self, realm_id: str, invoice_id: str) -> Any:
        return self.control("POST", f"companies/{realm_id}/invoices/{invoice_id}/emailed", {})

    def user_creates(self, realm_id: str, kind: str, body: dict[str, Any]) -> Any:
        """kind: 'customers' or 'items'; behaves like a QBO user (webhooks fire)."""
        return self.control("POST", f"companies/{realm_id}/{kind}", body)

    def bulk_seed(
        self, realm_id: str, customers: dict[str, Any], invoices: dict[str, Any] | None = None
    ) -> Any:
        """Many customers (`{"count", "display_name", "email", "company_name"}`) and invoices
        (`{"count", "amount", "days"}`) at once; no webhooks fire."""
        response = self.http.post(
            f"/_sandbox/companies/{realm_id}/bulk",
            json={"customers": customers, "invoices": invoices or {}},
            timeout=300.0,
        )
        response.raise_for_status()
        return response.json()

    def all_of(self, realm_id: str, token: str, entity: str) -> list[dict[str, Any]]:
        """Every `entity` of the company, read over the public API as a client would."""
        response = self.http.get(
            f"/v3/company/{realm_id}/query",
            params={"query": f"SELECT * FROM {entity}"},  # noqa: S608 (a test-chosen entity)
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )
        response.raise_for_status()
        return list(response.json()["QueryResponse"].get(entity, []))

    def inject(self, **plan: Any) -> Any:
        return self.control("POST", "faults", plan)

    def clear_faults(self) -> Any:
        return self.control("DELETE", "faults")

    def now(self) -> datetime:
        """The sandbox's clock (moved by `advance_clock`): what QuickBooks stamps changes with."""
        return datetime.fromisoformat(self.control("GET", "clock")["now"])

    def advance_clock(self, seconds: float = 0, days: float = 0) -> Any:
        return self.control("POST", "clock", {"advance_seconds": seconds, "advance_days": days})

    def stats(self, realm_id: str) -> Any:
        return self.control("GET", f"companies/{realm_id}/stats")

    def add_webhook(self, url: str, verifier_token: str, fmt: str = "legacy", **extra: Any) -> Any:
        body = {"url": url, "verifier_token": verifier_token, "format": fmt, **extra}
        return self.control("POST", "webhooks", body)

    def remove_webhook(self, endpoint_id: str) -> Any:
        return self.control("DELETE", f"webhooks/{endpoint_id}")

    def deliveries(self) -> Any:
        return self.control("GET", "webhooks/deliveries")

    def close(self) -> None:
        self.http.close()


def start_sandbox(*extra_args: str, timeout: float = 20.0) -> SandboxHandle:
    """Start `python -m qbo_sandbox` on a free port and wait for /_sandbox/health."""
    port = free_port()
    cmd = [sys.executable, "-m", "qbo_sandbox", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen([*cmd, *extra_args], env=dict(os.environ))
    handle = SandboxHandle(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qbo_sandbox exited with {process.returncode}")
        try:
            if handle.http.get("/_sandbox/health").status_code == 200:
                return handle
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_sandbox(handle)
    raise RuntimeError("qbo_sandbox did not become healthy")


def stop_sandbox(handle: SandboxHandle) -> None:
    """Stop the sandbox by its own process handle."""
    handle.close()
    if handle.process is not None and handle.process.poll() is None:
        handle.process.terminate()
        try:
            handle.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            handle.process.kill()
            handle.process.wait()


@pytest.fixture(scope="session")
def qbo_sandbox() -> Iterator[SandboxHandle]:
    """A sandbox subprocess for the whole session. Set QBO_SANDBOX_URL to use a running one."""
    external = os.environ.get("QBO_SANDBOX_URL")
    if external:
        handle = SandboxHandle(external.rstrip("/"))
        yield handle
        handle.close()
        return
    # Webhook back-off compressed 1000x so retries are visible in milliseconds.
    handle = start_sandbox("--time-scale", "1000", "--seed", "demo")
    try:
        yield handle
    finally:
        stop_sandbox(handle)


@pytest.fixture
def qbo_company(qbo_sandbox: SandboxHandle) -> SandboxCompany:
    """A fresh US company with demo customers and items, and tokens for it."""
    return qbo_sandbox.create_company("US")
