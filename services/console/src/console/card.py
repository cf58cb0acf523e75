"""The CRM app card's backend: `GET /crm/cards/{object_type}?objectId=` answers the card's
signed `hubspot.fetch` with the record's invoices (and, on a deal, those waiting for approval),
the card's labels in the person's language, and the links its buttons open in an iframe (each
with a launch ticket), and `/launch` redeems such a ticket into a console visit scoped to that
portal."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlencode

from dealbooks_kit import Caller, get_logger
from dealbooks_kit.auth import mint_grant
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from console import domain
from console.backend import Backend, BackendError, Person
from console.catalogue import Texts
from console.pages import LANG_COOKIE, RECORD_SINGULAR, Pages
from console.people import LAUNCH_COOKIE, People
from console.settings import ConsoleSettings

PLURAL = {v: k for k, v in RECORD_SINGULAR.items()}
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
log = get_logger(__name__)


class Card:
    def __init__(
        self, settings: ConsoleSettings, backend: Backend, people: People, pages: Pages
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.people = people
        self.pages = pages

    def _base(self, request: Request) -> str:
        return (self.settings.public_base_url or str(request.base_url)).rstrip("/")

    async def card(self, request: Request) -> Response:
        caller: Caller = request.state.caller
        [portal] = caller.portals
        object_type = str(request.path_params["object_type"])
        object_id = request.query_params.get("objectId") or request.query_params.get(
            "associatedObjectId"
        )
        if object_type not in PLURAL or not object_id:
            return JSONResponse(
                {"error": "bad_request", "message": "say which record: a deal, contact or "
                 "company, and objectId"}, status_code=400)  # fmt: skip
        lang = domain.language(request.query_params.get("locale"))
        t = Texts(lang)
        keys = self.settings.grant_keys.get_secret_value()
        grant = mint_grant(keys, [portal], user_id=caller.user_id or "crm-user", sid="card")
        person = Person(caller.user_id or "crm-user", (portal,), grant, "")
        kind = PLURAL[object_type]
        try:
            found, waiting = await asyncio.gather(
                self.backend.get(
                    person, "status-tracker",
                    f"/portals/{portal}/records/{kind}/{object_id}/invoices",
                ),
                self._waiting(person, portal, kind, object_id),
            )  # fmt: skip
        except BackendError as exc:
            return JSONResponse(
                {"error": "unavailable", "message": t("card.error"), "text": t.group("card")},
                status_code=503 if exc.status in (0, 500, 502, 503, 504) else 502,
            )

        def link(page: str, **more: str) -> str:
            ticket = self.people.ticket(portal, caller.user_id, kind, object_id, lang=lang)
            return f"{self._base(request)}/launch?" + urlencode({"t": ticket, "to": page, **more})

        return JSONResponse(
            {
                "object_type": object_type,
                "object_id": object_id,
                "locale": lang,
                "text": {**t.group("card"), "stages": t.group("stages")},
                "invoices": [_card_row(row) for row in found.get("invoices", [])],
                "approvals": [
                    {**_approval_row(a), "open": link("approval", request=a["request_id"])}
                    for a in waiting
                ],
                "actions": {
                    "create_invoice": link("create") if kind == "deals" else None,
                    "add_existing": link("add"),
                },
            }
        )

    async def _waiting(
        self, person: Person, portal: str, kind: str, object_id: str
    ) -> list[dict[str, Any]]:
        """A deal's invoices waiting for approval (QuickBooks Online Advanced). The card still
        lists the invoices when invoice-builder does not answer; it then shows none waiting."""
        if kind != "deals":
            return []
        try:
            found = await self.backend.get(
                person, "invoice-builder", f"/portals/{portal}/approvals",
                status="pending", deal_id=object_id,
            )  # fmt: skip
        except BackendError as exc:
            log.warning("approvals not listed on the card", status=exc.status)
            return []
        return list(found.get("approvals", []))

    async def launch(self, request: Request) -> Response:
        ticket = request.query_params.get("t")
        claims = self.people.redeem(ticket)
        if claims is None or ticket is None:
            return self.pages.render(request, "error.html", 401, key="errors.launch_expired")
        portal, kind, record = claims["portal"], claims["object_type"], claims["object_id"]
        base = f"/portals/{portal}"
        to = request.query_params.get("to")
        waiting = request.query_params.get("request", "")
        if to == "create" and kind == "deals":
            target = f"{base}/deals/{record}/invoices/new"
        elif to == "approval" and REQUEST_ID.fullmatch(waiting):
            target = f"{base}/approvals/{waiting}"
        elif to == "add":
            target = f"{base}/records/{kind}/{record}/add"
        else:
            target = f"{base}/records/{kind}/{record}"
        response = RedirectResponse(target, 303)
        # The card opens the console in an iframe inside the CRM: a third-party context, so
        # the cookie must be SameSite=None (and therefore Secure; browsers treat localhost as
        # secure) and partitioned per top-level site.
        response.set_cookie(
            LAUNCH_COOKIE,
            ticket,
            max_age=self.settings.launch_ttl_seconds,
            httponly=True,
            secure=True,
            samesite="none",
            path="/",
        )
        response.headers.append("Set-Cookie", _partitioned(response))
        if claims.get("lang"):
            response.set_cookie(LANG_COOKIE, str(claims["lang"]), samesite="lax")
        return response


def _partitioned(response: Response) -> str:
    """The launch cookie again with `Partitioned` (CHIPS), which Starlette cannot set."""
    for name, value in response.raw_headers:
        if name == b"set-cookie" and value.startswith(LAUNCH_COOKIE.encode() + b"="):
            response.raw_headers.remove((name, value))
            return value.decode() + "; Partitioned"
    raise AssertionError("the launch cookie was not set")


def _approval_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "request_id": row.get("request_id"),
        "customer": row.get("customer_name"),
        "subtotal": row.get("subtotal"),
        "currency": row.get("currency"),
        "requested_at": row.get("requested_at"),
    }


def _card_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "realm_id": row.get("realm_id"),
        "invoice_id": row.get("invoice_id"),
        "number": row.get("doc_number"),
        "customer": row.get("customer_name"),
        "total": row.get("total"),
        "balance": row.get("balance"),
        "currency": row.get("currency"),
        "stage": row.get("stage"),
        "due_date": row.get("due_date"),
        "qbo_url": row.get("qbo_url"),
    }
