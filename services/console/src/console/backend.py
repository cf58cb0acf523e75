"""The console's calls to the services: connector-auth for the person's session, the others
with the person's portal grant. A service's refusal comes back as `BackendError` with its
status and its own message; the pages turn it into a sentence from the catalogue."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from dealbooks_kit import get_logger
from dealbooks_kit.auth import SESSION_PREFIX

from console.settings import ConsoleSettings

log = get_logger(__name__)
SESSION_COOKIE = "dealbooks_session"
GRANT_MARGIN_SECONDS = 60.0
# No answer at all (0), or a gateway or the service saying it cannot answer now.
NOT_ANSWERING = (0, 502, 503, 504)


@dataclass(frozen=True)
class Person:
    """Who is at the browser: the portals they may act for, the grant the console calls the
    services with, and the CSRF token their forms carry."""

    user_id: str
    portals: tuple[str, ...]
    grant: str
    csrf: str
    email: str | None = None
    # Set for a person who came from the CRM app card: the record and language it passed.
    launched: dict[str, str] | None = None
    # Their portals with a company on QuickBooks Online Advanced, as connector-auth said with
    # the session; None where it did not say (a person from the app card).
    advanced_portals: tuple[str, ...] | None = None


def _session_shaped(cookie: str) -> bool:
    """A session cookie is a token connector-auth signed: `dbs1.<kid>.<claims>.<mac>`."""
    parts = cookie.split(".")
    return len(parts) == 4 and parts[0] == SESSION_PREFIX and all(parts)


class BackendError(Exception):
    """A service refused or failed; `status` 0 means it did not answer at all."""

    def __init__(
        self,
        service: str,
        status: int,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.service, self.status, self.body = service, status, body or {}
        self.headers = headers or httpx.Headers()
        super().__init__(f"{service} answered {status}")

    @property
    def message(self) -> str | None:
        """The service's own sentence, when it gave one (shown only where it is written for
        people, such as a rejection's reason)."""
        found = self.body.get("message") or self.body.get("error")
        return str(found) if isinstance(found, str) else None

    @property
    def unavailable(self) -> bool:
        """The service did not answer, or answered that it cannot now (a restart, a replica
        being replaced, its own dependency down): the same call may be sent again later."""
        return self.status in NOT_ANSWERING

    @property
    def retry_after(self) -> float | None:
        """The service's own `Retry-After` in seconds, when it gave one."""
        try:
            return float(self.headers.get("retry-after", ""))
        except ValueError:
            return None


class Sessions:
    """connector-auth's answers about session cookies, kept for a short while (by the
    cookie's digest, never the cookie itself) so a page does not ask twice."""

    def __init__(self, limit: int = 2000) -> None:
        self._known: OrderedDict[str, tuple[float, Person]] = OrderedDict()
        self._limit = limit

    @staticmethod
    def key(cookie: str) -> str:
        return hashlib.sha256(cookie.encode()).hexdigest()

    def get(self, cookie: str) -> Person | None:
        found = self._known.get(self.key(cookie))
        if found is None or found[0] < time.monotonic():
            return None
        return found[1]

    def forget(self, cookie: str) -> None:
        self._known.pop(self.key(cookie), None)

    def put(self, cookie: str, person: Person, good_for: float) -> None:
        self._known[self.key(cookie)] = (time.monotonic() + good_for, person)
        self._known.move_to_end(self.key(cookie))
        while len(self._known) > self._limit:
            self._known.popitem(last=False)


class Backend:
    """One HTTP client for every service the console asks."""

    def __init__(self, settings: ConsoleSettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self.http = http or httpx.AsyncClient(timeout=settings.backend_timeout_seconds)
        self.sessions = Sessions()
        self.urls = {
            "connector-auth": settings.connector_auth_url.rstrip("/"),
            "invoice-builder": settings.invoice_builder_url.rstrip("/"),
            "status-tracker": settings.status_tracker_url.rstrip("/"),
            "mapping-registry": settings.mapping_registry_url.rstrip("/"),
            "contact-sync": settings.contact_sync_url.rstrip("/"),
            "product-sync": settings.product_sync_url.rstrip("/"),
            "reminders": settings.reminders_url.rstrip("/"),
        }

    async def close(self) -> None:
        await self.http.aclose()

    # ---- the person

    async def person(self, cookie: str | None) -> Person | None:
        """The signed-in person of a session cookie, or None (no cookie, signed out, expired)."""
        if not cookie or not _session_shaped(cookie):
            return None  # not a cookie connector-auth made: no need to ask it
        known = self.sessions.get(cookie)
        if known is not None:
            return known
        try:
            answer = await self.http.get(
                f"{self.urls['connector-auth']}/v1/session", cookies={SESSION_COOKIE: cookie}
            )
        except httpx.HTTPError as exc:
            raise BackendError("connector-auth", 0) from exc
        if answer.status_code in (401, 403):
            return None
        if answer.status_code != 200:
            raise BackendError("connector-auth", answer.status_code)
        body = answer.json()
        grant = body["grant"]
        advanced = body.get("advanced_portals")
        person = Person(
            user_id=str(body["user_id"]),
            portals=tuple(str(p) for p in body["portals"]),
            grant=grant["token"],
            csrf=body["csrf_token"],
            email=body.get("email"),
            advanced_portals=tuple(str(p) for p in advanced)
            if isinstance(advanced, list)
            else None,
        )
        good_for = min(
            float(grant["expires_in"]) - GRANT_MARGIN_SECONDS,
            self.settings.session_recheck_seconds,
        )
        self.sessions.put(cookie, person, max(good_for, 1.0))
        return person

    # ---- the services, as the person

    async def call(
        self,
        person: Person,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
    ) -> tuple[int, Any, httpx.Headers]:
        """One call with the person's grant; any status in `ok` or below 400 is an answer."""
        url = f"{self.urls[service]}{path}"
        sent = {"Authorization": f"Bearer {person.grant}", **(headers or {})}
        try:
            answer = await self.http.request(method, url, json=json, params=params, headers=sent)
        except httpx.HTTPError as exc:
            log.warning("service did not answer", service=service, error=type(exc).__name__)
            raise BackendError(service, 0) from exc
        body: Any = None
        if answer.content:
            try:
                body = answer.json()
            except ValueError:
                body = None
        if answer.status_code >= 400 and answer.status_code not in ok:
            log.info("service refused", service=service, status=answer.status_code)
            raise BackendError(
                service, answer.status_code, body if isinstance(body, dict) else {}, answer.headers
            )
        return answer.status_code, body, answer.headers

    async def call_patiently(
        self,
        person: Person,
        service: str,
        method: str,
        path: str,
        *,
        patience: float,
        **call: Any,
    ) -> tuple[int, Any, httpx.Headers]:
        """`call`, sent again while the service does not answer, for up to `patience` seconds
        (pausing as the service asks, or 0.5, 1, 2 s ...). Only for a call the service
        dedupes, such as a submission carrying its request id."""
        deadline = time.monotonic() + patience
        pause = 0.5
        while True:
            try:
                return await self.call(person, service, method, path, **call)
            except BackendError as exc:
                wait = min(exc.retry_after or pause, 5.0)
                if not exc.unavailable or time.monotonic() + wait > deadline:
                    raise
                log.info("service not answering; sending again", service=service, wait=wait)
                await asyncio.sleep(wait)
                pause *= 2

    async def get(self, person: Person, service: str, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v not in (None, "")}
        return (await self.call(person, service, "GET", path, params=query))[1]
