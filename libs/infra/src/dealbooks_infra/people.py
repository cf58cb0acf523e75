"""A person at a browser on the local stack: installs the app into a CRM portal through the CRM
sandbox's OAuth screen, is signed in (the session cookie stays in the client's jar), connects
QuickBooks companies, and calls the services' portal routes with the grant of that session.

The demo (sync) and the end-to-end tests and benchmarks (async) use it, so the round trips are
described once: `steps` lists the URLs in order, the two clients follow them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from dealbooks_infra.topology import PORTAL_ID, Topology

GRANT_MARGIN_SECONDS = 60.0


class FlowFailed(Exception):
    """A step of a browser round trip did not answer as a person's browser expects."""


@dataclass
class Session:
    """What `GET /v1/session` says of the signed-in person."""

    user_id: str
    portals: list[str]
    csrf: str
    grant: str
    good_until: float

    @classmethod
    def of(cls, body: dict[str, Any]) -> Session:
        grant = body["grant"]
        good_until = time.monotonic() + float(grant["expires_in"]) - GRANT_MARGIN_SECONDS
        return cls(body["user_id"], body["portals"], body["csrf_token"], grant["token"], good_until)

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.good_until


def _redirect(response: httpx.Response, what: str) -> str:
    if response.status_code != 302:
        raise FlowFailed(f"{what}: expected a redirect, got {response.status_code} "
                         f"{response.text[:300]}")  # fmt: skip
    return response.headers["location"]


def _connected(done: httpx.Response) -> dict[str, Any]:
    """What the QuickBooks callback said: JSON, or (with a console configured) a redirect to
    the console's accounts page that names the account, or the refusal."""
    if done.status_code == 302:
        query = dict(parse_qsl(urlsplit(done.headers["location"]).query))
        if "account_id" not in query:
            raise FlowFailed(f"QuickBooks callback: refused ({query.get('error')})")
        return {"status": "connected", **query}
    return dict(_ok(done, "QuickBooks callback").json())


def _ok(response: httpx.Response, what: str) -> httpx.Response:
    if response.status_code >= 400:
        raise FlowFailed(f"{what}: {response.status_code} {response.text[:300]}")
    return response


class Person:
    """A person with a synchronous browser (`httpx.Client`, which keeps the cookies)."""

    def __init__(self, t: Topology, http: httpx.Client, portal_id: str = PORTAL_ID) -> None:
        self.t, self.http, self.portal_id = t, http, portal_id
        self.session: Session | None = None
        # Every grant and CSRF token this person was given, for tests that look for leaks.
        self.seen: set[str] = set()

    def install(self, path: str = "/install") -> Session:
        """Install the app into the portal (or sign in: `path="/signin"`) as its admin."""
        self.http.post(f"{self.t.crm}/_sandbox/oauth/consent", json=self.t.consent(self.portal_id))
        start = self.http.get(f"{self.t.url('connector-auth')}{path}")
        consent = self.http.get(_redirect(start, "install"))
        _ok(self.http.get(_redirect(consent, "CRM consent")), "install callback")
        return self.refresh()

    def refresh(self) -> Session:
        url = f"{self.t.url('connector-auth')}/v1/session"
        self.session = Session.of(_ok(self.http.get(url), "session").json())
        self.seen |= {self.session.grant, self.session.csrf}
        return self.session

    def auth(self) -> dict[str, str]:
        """The header of the person's calls to the services' portal routes."""
        session = self.session if self.session and self.session.fresh else self.refresh()
        return {"Authorization": f"Bearer {session.grant}"}

    def connect(self, realm_id: str) -> dict[str, Any]:
        """Connect a QuickBooks company to the portal (the QBO sandbox consents for it)."""
        url = f"{self.t.url('connector-auth')}/v1/portals/{self.portal_id}/quickbooks/connect"
        consent = self.http.get(
            f"{_redirect(self.http.get(url), 'connect')}&sandbox_realm={realm_id}"
        )
        return _connected(self.http.get(_redirect(consent, "QuickBooks consent")))


class AsyncPerson:
    """The same person with an asynchronous browser (`httpx.AsyncClient`)."""

    def __init__(self, t: Topology, http: httpx.AsyncClient, portal_id: str = PORTAL_ID) -> None:
        self.t, self.http, self.portal_id = t, http, portal_id
        self.session: Session | None = None
        # Every grant and CSRF token this person was given, for tests that look for leaks.
        self.seen: set[str] = set()

    async def install(self, path: str = "/install") -> Session:
        consent_url = f"{self.t.crm}/_sandbox/oauth/consent"
        await self.http.post(consent_url, json=self.t.consent(self.portal_id))
        start = await self.http.get(f"{self.t.url('connector-auth')}{path}")
        consent = await self.http.get(_redirect(start, "install"))
        _ok(await self.http.get(_redirect(consent, "CRM consent")), "install callback")
        return await self.refresh()

    async def refresh(self) -> Session:
        url = f"{self.t.url('connector-auth')}/v1/session"
        self.session = Session.of(_ok(await self.http.get(url), "session").json())
        self.seen |= {self.session.grant, self.session.csrf}
        return self.session

    async def auth(self) -> dict[str, str]:
        session = self.session if self.session and self.session.fresh else await self.refresh()
        return {"Authorization": f"Bearer {session.grant}"}

    async def connect(self, realm_id: str) -> dict[str, Any]:
        url = f"{self.t.url('connector-auth')}/v1/portals/{self.portal_id}/quickbooks/connect"
        start = _redirect(await self.http.get(url), "connect")
        consent = await self.http.get(f"{start}&sandbox_realm={realm_id}")
        return _connected(await self.http.get(_redirect(consent, "QuickBooks consent")))
