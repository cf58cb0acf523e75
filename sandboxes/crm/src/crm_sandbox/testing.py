"""Run the sandbox as a subprocess on a free loopback port and drive its control API.

Used by the pytest plugin and the benchmark; stops the process by its own handle."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class SandboxPortal:
    """A portal created through the control API, with its tokens."""

    portal_id: int
    access_token: str
    private_app_token: str
    refresh_token: str
    company_currency: str

    @property
    def key(self) -> str:
        return str(self.portal_id)


class CrmSandbox:
    """A running sandbox: its base URL and helpers for the `/_sandbox` control API."""

    def __init__(self, base_url: str, process: subprocess.Popen[bytes] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.process = process
        self.control = httpx.Client(base_url=self.base_url + "/_sandbox", timeout=10.0)

    def close(self) -> None:
        self.control.close()

    def _call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.control.request(
            method, path, json=body, params={k: v for k, v in params.items() if v is not None}
        )
        response.raise_for_status()
        return response.json() if response.content else None

    # ---- app -------------------------------------------------------------------------------

    def app(self) -> dict[str, Any]:
        return dict(self._call("GET", "/app"))

    def configure_app(
        self, *, client_secret: str | None = None, target_url: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if client_secret is not None:
            body["clientSecret"] = client_secret
        if target_url is not None:
            body["targetUrl"] = target_url or None
        return dict(self._call("PUT", "/app", body))

    def subscribe(self, event_type: str, property_name: str | None = None) -> dict[str, Any]:
        body = {"eventType": event_type, "active": True}
        if property_name:
            body["propertyName"] = property_name
        return dict(self._call("POST", "/app/subscriptions", body))

    def clear_subscriptions(self) -> None:
        self._call("DELETE", "/app/subscriptions")

    def add_event_template(self, template: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", "/app/event-templates", template))

    # ---- portals and tokens ----------------------------------------------------------------

    def create_portal(self, **settings: Any) -> SandboxPortal:
        """Create a portal; settings use control API names (companyCurrency, limitPer10s, ...)."""
        body = self._call("POST", "/portals", settings)
        return SandboxPortal(
            portal_id=int(body["portalId"]),
            access_token=body["accessToken"],
            private_app_token=body["privateAppToken"],
            refresh_token=body["refreshToken"],
            company_currency=body["companyCurrency"],
        )

    def update_portal(self, portal_id: int, **settings: Any) -> dict[str, Any]:
        return dict(self._call("PATCH", f"/portals/{portal_id}", settings))

    def issue_token(
        self,
        portal_id: int,
        kind: str = "oauth",
        *,
        ttl_seconds: int | None = None,
        scopes: list[str] | None = None,
    ) -> str:
        body: dict[str, Any] = {"kind": kind, "ttlSeconds": ttl_seconds, "scopes": scopes}
        return str(self._call("POST", f"/portals/{portal_id}/tokens", body)["token"])

    def expire_token(self, token: str) -> None:
        self._call("POST", f"/tokens/{token}/expire")

    def authorization_code(self, portal_id: int) -> str:
        return str(self._call("POST", f"/portals/{portal_id}/authorization-codes")["code"])

    def counters(self, portal_id: int) -> dict[str, Any]:
        return dict(self._call("GET", f"/portals/{portal_id}/counters"))

    def reset_counters(self, portal_id: int) -> None:
        self._call("DELETE", f"/portals/{portal_id}/counters")

    # ---- objects "as a CRM user" -------------------------------------------------------------

    def objects(
        self, portal_id: int, object_type: str, archived: str = "any"
    ) -> list[dict[str, Any]]:
        return list(
            self._call("GET", f"/portals/{portal_id}/objects/{object_type}", archived=archived)[
                "results"
            ]
        )

    def read(self, portal_id: int, object_type: str, object_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/portals/{portal_id}/objects/{object_type}/{object_id}"))

    def create_as_user(
        self,
        portal_id: int,
        object_type: str,
        properties: dict[str, Any],
        associations: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"properties": properties}
        if associations:
            body["associations"] = associations
        return dict(self._call("POST", f"/portals/{portal_id}/objects/{object_type}", body))

    def update_as_user(
        self, portal_id: int, object_type: str, object_id: str, properties: dict[str, Any]
    ) -> dict[str, Any]:
        return dict(
            self._call(
                "PATCH",
                f"/portals/{portal_id}/objects/{object_type}/{object_id}",
                {"properties": properties},
            )
        )

    def archive_as_user(self, portal_id: int, object_type: str, object_id: str) -> None:
        self._call("DELETE", f"/portals/{portal_id}/objects/{object_type}/{object_id}")

    def associate_as_user(
        self,
        portal_id: int,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_id: int | None = None,
    ) -> None:
        body = {
            "fromType": from_type,
            "fromId": from_id,
            "toType": to_type,
            "toId": to_id,
            "typeId": type_id,
        }
        self._call("PUT", f"/portals/{portal_id}/associations", body)

    def timeline_events(
        self, portal_id: int, *, object_id: str | None = None, template_id: str | None = None
    ) -> list[dict[str, Any]]:
        return list(
            self._call(
                "GET",
                f"/portals/{portal_id}/timeline-events",
                objectId=object_id,
                eventTemplateId=template_id,
            )["results"]
        )

    # ---- faults and webhooks -----------------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        portal_id: int | None = None,
        path_prefix: str | None = None,
        status: int | None = None,
        seconds: float | None = None,
        policy_name: str | None = None,
    ) -> None:
        """kind: latency | status | rate_limit | drop_webhooks | fail_webhooks."""
        body = {
            "kind": kind,
            "count": count,
            "portalId": portal_id,
            "pathPrefix": path_prefix,
            "status": status,
            "seconds": seconds,
            "policyName": policy_name,
        }
        self._call("POST", "/faults", {k: v for k, v in body.items() if v is not None})

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def deliveries(self) -> dict[str, Any]:
        return dict(self._call("GET", "/webhooks/deliveries"))

    def clear_deliveries(self) -> None:
        self._call("DELETE", "/webhooks/deliveries")


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll until `predicate()` is truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


@contextmanager
def running_sandbox(*args: str, startup_timeout: float = 20.0) -> Iterator[CrmSandbox]:
    """Start `python -m crm_sandbox` on a free 127.0.0.1 port; stop it by its Popen handle."""
    last_error = "did not start"
    for _ in range(3):  # a free port can be taken between probing and binding
        port = free_port()
        command = [sys.executable, "-m", "crm_sandbox", "--host", "127.0.0.1", "--port", str(port)]
        # A file, not a pipe: an unread pipe fills up and blocks the server.
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [*command, *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            base_url = f"http://127.0.0.1:{port}"
            if _wait_healthy(base_url, process, startup_timeout):
                sandbox = CrmSandbox(base_url, process)
                try:
                    yield sandbox
                finally:
                    sandbox.close()
                    _stop(process)
                return
            _stop(process)
            log.seek(0)
            last_error = log.read().decode(errors="replace")[-2000:]
    raise RuntimeError(f"CRM sandbox failed to start: {last_error}")


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            if httpx.get(base_url + "/_sandbox/health", timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def events(self) -> list[dict[str, Any]]:
        return list(json.loads(self.body))


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint that records raw webhook requests (in a thread, so it keeps
    answering while a test's event loop is busy). Queue status codes to simulate failures."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.requests.append(
                        ReceivedRequest("POST", self.path, dict(self.headers.items()), body)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/hooks/crm"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for r in self.requests for e in r.events()]

    def wait_for_events(
        self, predicate: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 10.0
    ) -> list[dict[str, Any]]:
        def matched() -> list[dict[str, Any]] | None:
            found = [e for e in self.events() if predicate(e)]
            return found if len(found) >= count else None

        return list(wait_until(matched, timeout=timeout))
