"""Who is at the browser: a person signed in with the CRM (connector-auth's session cookie),
or a person who opened the console from the CRM app card (a short-lived launch ticket the
card's signed fetch was given). Both become a `Person` with a portal grant to call the
services with and a CSRF token their forms must carry."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from dealbooks_kit import Access, Caller
from dealbooks_kit.auth import Signer, mint_grant
from starlette.requests import Request

from console.backend import SESSION_COOKIE, Backend, Person
from console.settings import ConsoleSettings

LAUNCH_COOKIE = "dealbooks_launch"
LAUNCH_PREFIX = "dbl1"
GRANT_SECONDS = 300.0


class People:
    def __init__(self, settings: ConsoleSettings, backend: Backend) -> None:
        self.settings = settings
        self.backend = backend
        self._keys = settings.grant_keys.get_secret_value()
        self.tickets = Signer(self._keys, LAUNCH_PREFIX)

    # ---- launch tickets (made for the CRM app card, redeemed by /launch)

    def ticket(
        self, portal_id: str, user_id: str | None, object_type: str, object_id: str, **extra: str
    ) -> str:
        claims = {
            "portal": portal_id,
            "sub": user_id or "",
            "object_type": object_type,
            "object_id": object_id,
            **extra,
        }
        return self.tickets.sign(claims, self.settings.launch_ttl_seconds)

    def redeem(self, ticket: str | None) -> dict[str, Any] | None:
        return self.tickets.verify(ticket) if ticket else None

    def _launched(self, ticket: str) -> Person | None:
        claims = self.redeem(ticket)
        if claims is None:
            return None
        portal, user = str(claims["portal"]), str(claims.get("sub") or "crm-user")
        digest = hashlib.sha256(ticket.encode()).hexdigest()[:16]
        grant = mint_grant(
            self._keys, [portal], user_id=user, sid=f"launch:{digest}", ttl_seconds=GRANT_SECONDS
        )
        csrf = hmac.new(self._keys.encode(), b"csrf:" + ticket.encode(), "sha256").hexdigest()
        launched = {
            k: str(v) for k, v in claims.items() if k in {"object_type", "object_id", "lang"}
        }
        return Person(user, (portal,), grant, csrf, launched=launched)

    # ---- the guard's question

    async def person(self, request: Request) -> Person | None:
        if "person" in request.scope.get("state", {}):
            found: Person | None = request.state.person
            return found
        person = await self.backend.person(request.cookies.get(SESSION_COOKIE))
        if person is None and request.cookies.get(LAUNCH_COOKIE):
            person = self._launched(request.cookies[LAUNCH_COOKIE])
        request.state.person = person
        return person

    def recheck(self, request: Request) -> None:
        """The next page asks connector-auth about the session again, instead of what it said
        a moment ago: a company was connected or disconnected, and the menu follows."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            self.backend.sessions.forget(cookie)

    async def caller(self, request: Request) -> Caller | None:
        """The guard's session check: the person, and on a form post their CSRF token."""
        person = await self.person(request)
        if person is None:
            return None
        if request.method not in {"GET", "HEAD"}:
            form = await request.form()
            presented = str(form.get("csrf_token") or request.headers.get("x-csrf-token") or "")
            if not hmac.compare_digest(presented.encode(), person.csrf.encode()):
                return None
        return Caller(Access.SESSION, frozenset(person.portals), person.user_id, person.email)
