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
from urllib.parse import quote, urlencode

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
        self,
        *,
        client_secret: str | None = None,
        target_url: str | None = None,
        name: str | None = None,
        redirect_urls: list[str] | None = None,
    ) -> dict[str, Any]:
        """`target_url=""` removes the webhook target; `redirect_urls=[]` clears the list."""
        body: dict[str, Any] = {}
        if client_secret is not None:
            body["clientSecret"] = client_secret
        if target_url is not None:
            body["targetUrl"] = target_url or None
        if name is not None:
            body["name"] = name
        if redirect_urls is not None:
            body["redirectUrls"] = redirect_urls
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

    def add_app_event_type(self, definition: dict[str, Any]) -> dict[str, Any]:
        """Deploy an app event type (the JSON of an `app-events/*-hsmeta.json` file); the
        answer carries its `fullyQualifiedName`."""
        return dict(self._call("POST", "/app/app-events", definition))

    def app_event_types(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/app/app-events")["results"])

    def set_app_events_approved(self, portal_id: int, approved: bool) -> None:
        """Whether HubSpot lets the app send app events to this portal (403 when not)."""
        self.update_portal(portal_id, appEventsApproved=approved)

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

    def authorization_code(
        self,
        portal_id: int,
        *,
        redirect_uri: str | None = None,
        user_id: int | None = None,
        scopes: list[str] | None = None,
    ) -> str:
        """A code as if the install screen had been approved (no redirect_uri: not checked)."""
        body = {"redirectUri": redirect_uri, "userId": user_id, "scopes": scopes}
        path = f"/portals/{portal_id}/authorization-codes"
        return str(
            self._call("POST", path, {k: v for k, v in body.items() if v is not None})["code"]
        )

    # ---- users, installs and the authorize screen --------------------------------------------

    def read_portal(self, portal_id: int) -> dict[str, Any]:
        """The portal's settings, `installed`, granted `scopes`, `installingUserId`, `users`."""
        return dict(self._call("GET", f"/portals/{portal_id}"))

    def users(self, portal_id: int) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/portals/{portal_id}/users")["results"])

    def add_user(
        self, portal_id: int, email: str, first_name: str = "", last_name: str = ""
    ) -> dict[str, Any]:
        """A user of the portal: `{"userId", "email", "firstName", "lastName"}`."""
        body = {"email": email, "firstName": first_name, "lastName": last_name}
        return dict(self._call("POST", f"/portals/{portal_id}/users", body))

    def set_consent(
        self,
        *,
        portal_id: int | None = None,
        user_id: int | None = None,
        decision: str = "approve",
        scopes: list[str] | None = None,
        mode: str = "auto",
        count: int | None = None,
    ) -> dict[str, Any]:
        """Who is signed in to HubSpot at the authorize screen and what they answer.
        decision: approve | deny; mode: auto (302 at once) | page (HTML consent screen);
        scopes: granted instead of the requested ones; count: next N authorizations only."""
        body = {
            "portalId": portal_id,
            "userId": user_id,
            "decision": decision,
            "scopes": scopes,
            "mode": mode,
            "count": count,
        }
        return dict(
            self._call("POST", "/oauth/consent", {k: v for k, v in body.items() if v is not None})
        )

    def reset_consent(self) -> None:
        """Back to the default: the first portal's first user approves, automatically."""
        self._call("DELETE", "/oauth/consent")

    def uninstall(self, portal_id: int) -> None:
        """Uninstall the app from the portal, as an admin would in HubSpot's settings."""
        self._call("DELETE", f"/portals/{portal_id}/install")

    def authorize_url(
        self,
        redirect_uri: str,
        scopes: list[str],
        *,
        portal_id: int | None = None,
        optional_scopes: list[str] | None = None,
        state: str | None = None,
        client_id: str | None = None,
    ) -> str:
        """The install URL an app sends the browser to (`/oauth[/{portalId}]/authorize`)."""
        params = {
            "client_id": client_id or self.app()["clientId"],
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
        }
        if optional_scopes:
            params["optional_scope"] = " ".join(optional_scopes)
        if state is not None:
            params["state"] = state
        path = f"/oauth/{portal_id}/authorize" if portal_id is not None else "/oauth/authorize"
        return f"{self.base_url}{path}?{urlencode(params, quote_via=quote)}"

    def token_info(self, token: str, *, refresh: bool = False) -> dict[str, Any] | None:
        """`GET /oauth/v1/access-tokens/{token}` (or refresh-tokens); None when it is 404."""
        kind = "refresh-tokens" if refresh else "access-tokens"
        response = httpx.get(f"{self.base_url}/oauth/v1/{kind}/{token}", timeout=10.0)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return dict(response.json())

    # ---- requests from HubSpot to the app ----------------------------------------------------

    def send_app_request(
        self,
        kind: str,
        url: str,
        portal_id: int,
        *,
        user_id: int | None = None,
        object_type: str | None = None,
        object_id: str | int | None = None,
        properties: dict[str, Any] | list[str] | None = None,
        input_fields: dict[str, Any] | None = None,
        method: str | None = None,
        body: Any = None,
        tamper: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Make the sandbox send a signed request to the app, as HubSpot would, and return
        the app's answer `{"status", "headers", "body", "request"}`.

        kind: card-fetch (legacy CRM card data fetch) | ui-fetch (`hubspot.fetch`) |
        workflow-action; properties: values to send, or names read from the record;
        tamper: signature | timestamp; extra: workflowId, actionDefinitionId, ..."""
        payload = {
            "kind": kind,
            "url": url,
            "portalId": portal_id,
            "userId": user_id,
            "objectType": object_type,
            "objectId": object_id,
            "properties": properties,
            "inputFields": input_fields,
            "method": method,
            "body": body,
            "tamper": tamper,
            **extra,
        }
        clean = {k: v for k, v in payload.items() if v is not None}
        return dict(self._call("POST", "/app/requests", clean))

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

    def app_events(
        self, portal_id: int, *, object_id: str | None = None, event_type: str | None = None
    ) -> list[dict[str, Any]]:
        """App event occurrences stored in the portal (`event_type`: its uid or full name)."""
        return list(
            self._call(
                "GET",
                f"/portals/{portal_id}/app-events",
                objectId=object_id,
                eventTypeName=event_type,
            )["results"]
        )

    def record_timeline(
        self, portal_id: int, object_type: str, object_id: str
    ) -> list[dict[str, Any]]:
        """What a record's timeline shows from the app, oldest first: entries of `kind`
        timeline-event (v3), app-event (v4 occurrences) and note (associated notes)."""
        path = f"/portals/{portal_id}/objects/{object_type}/{object_id}/timeline"
        return list(self._call("GET", path)["results"])

    def notes_on(self, portal_id: int, object_type: str, object_id: str) -> list[dict[str, Any]]:
        """The notes associated with a record (`id`, `timestamp`, `body`, `properties`)."""
        timeline = self.record_timeline(portal_id, object_type, object_id)
        return [entry for entry in timeline if entry["kind"] == "note"]

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


Answer = Callable[[ReceivedRequest], tuple[int, bytes]]


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint that records raw requests (in a thread, so it keeps
    answering while a test's event loop is busy). Queue status codes to simulate failures,
    or give `answer` to reply like an app (e.g. check a signature, return JSON)."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    answer: Answer | None = None
    url: str = ""
    base_url: str = ""
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                received = ReceivedRequest(self.command, self.path, dict(self.headers), body)
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    receiver.requests.append(received)
                content = b""
                if receiver.answer is not None:
                    status, content = receiver.answer(received)
                self.send_response(status)
                self.send_header("Content-Length", str(len(content)))
                if content:
                    self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _record

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/hooks/crm"
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
