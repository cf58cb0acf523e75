"""Requests HubSpot sends to the app while a user works in HubSpot: a legacy CRM card's data
fetch, a UI extension's `hubspot.fetch`, and a custom workflow action. Each is signed with the
client secret (v3, and v2 as well) exactly as HubSpot signs it; a test may ask for a bad
signature or a stale timestamp to see the app refuse it."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from yarl import URL

from crm_sandbox.errors import not_found, validation
from crm_sandbox.schema import SINGULAR, canonical_type
from crm_sandbox.state import Portal, SandboxState, User, now_ms
from crm_sandbox.store import Store
from crm_sandbox.webhooks import sign_v2, sign_v3

KINDS = {"card-fetch", "ui-fetch", "workflow-action"}
TAMPERING = {"signature", "timestamp"}
STALE_MS = 10 * 60 * 1000  # twice the 5-minute window apps must enforce
USER_AGENT = "HubSpot Connect 2.0 (http://dev.hubspot.com/)"
# hubspot.fetch times out after 15 s (documented); the others are assumed.
TIMEOUT_SECONDS = {"card-fetch": 5.0, "ui-fetch": 15.0, "workflow-action": 20.0}


@dataclass
class Outgoing:
    method: str
    url: str  # exactly as sent, percent-encoded
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def to_api(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": self.body.decode(),
        }


def _query(url: str, params: list[tuple[str, str]]) -> str:
    # %-encoded as a browser would (`@` -> %40, space -> %20); v3 signs them decoded.
    extra = urlencode(params, quote_via=quote)
    return f"{url}{'&' if urlsplit(url).query else '?'}{extra}" if extra else url


class AppRequests:
    def __init__(self, state: SandboxState, store: Store) -> None:
        self.state = state
        self.store = store
        self._callbacks = itertools.count(56776413549)

    def build(self, body: dict[str, Any]) -> tuple[str, Outgoing]:
        kind = str(body.get("kind", ""))
        if kind not in KINDS:
            raise validation(f"kind must be one of {sorted(KINDS)}")
        url = str(body.get("url") or "")
        if not url.startswith(("http://", "https://")):
            raise validation("url must be an http(s) URL")
        tamper = body.get("tamper")
        if tamper is not None and tamper not in TAMPERING:
            raise validation(f"tamper must be one of {sorted(TAMPERING)}")
        portal = self._portal(body.get("portalId"))
        user = self._user(portal, body.get("userId"))
        if kind == "card-fetch":
            outgoing = self._card_fetch(body, url, portal, user)
        elif kind == "ui-fetch":
            outgoing = self._ui_fetch(body, url, portal, user)
        else:
            outgoing = self._workflow_action(body, url, portal)
        self._sign(outgoing, tamper)
        return kind, outgoing

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        kind, outgoing = self.build(body)
        result: dict[str, Any] = {"request": outgoing.to_api()}
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS[kind])
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    outgoing.method,
                    URL(outgoing.url, encoded=True),  # sent byte for byte as signed
                    data=outgoing.body or None,
                    headers=outgoing.headers,
                ) as response,
            ):
                text = await response.text()
                result.update(status=response.status, headers=dict(response.headers), body=text)
        except (aiohttp.ClientError, TimeoutError) as exc:
            result.update(status=None, headers={}, body=None, error=type(exc).__name__)
        return result

    # ---- the three kinds -----------------------------------------------------------------

    def _card_fetch(self, body: dict[str, Any], url: str, portal: Portal, user: User) -> Outgoing:
        """Legacy CRM card data fetch: a GET with the documented default parameters, then
        the card's `propertiesToSend` values."""
        type_name, object_id = self._object(body)
        params = [
            ("userId", str(user.id)),
            ("userEmail", user.email),
            ("associatedObjectId", object_id),
            ("associatedObjectType", SINGULAR[type_name].upper()),
            ("portalId", str(portal.id)),
            *self._properties(body, portal, type_name, object_id).items(),
        ]
        method = str(body.get("method") or "GET").upper()
        return Outgoing(method, _query(url, params), self._raw_body(body))

    def _ui_fetch(self, body: dict[str, Any], url: str, portal: Portal, user: User) -> Outgoing:
        """`hubspot.fetch` from a UI extension: the extension's method and JSON body, with
        HubSpot's own identifying parameters added to the URL."""
        params = [
            ("userId", str(user.id)),
            ("portalId", str(portal.id)),
            ("userEmail", user.email),
            ("appId", str(self.state.app.id)),
        ]
        method = str(body.get("method") or "GET").upper()
        outgoing = Outgoing(method, _query(url, params), self._raw_body(body))
        if outgoing.body:
            outgoing.headers["Content-Type"] = "application/json"
        return outgoing

    def _workflow_action(self, body: dict[str, Any], url: str, portal: Portal) -> Outgoing:
        type_name, object_id = self._object(body)
        payload = {
            "callbackId": f"ap-{portal.id}-{next(self._callbacks)}-1-0",
            "origin": {
                "portalId": portal.id,
                "actionDefinitionId": int(body.get("actionDefinitionId", 10860211)),
                "actionDefinitionVersion": int(body.get("actionDefinitionVersion", 1)),
            },
            "context": {
                "source": "WORKFLOWS",
                "workflowId": int(body.get("workflowId", 192814114)),
            },
            "object": {
                "objectId": int(object_id),
                "objectType": SINGULAR[type_name].upper(),
                "properties": self._properties(body, portal, type_name, object_id),
            },
            "inputFields": dict(body.get("inputFields") or {}),
        }
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return Outgoing("POST", url, raw, {"Content-Type": "application/json"})

    # ---- signing -------------------------------------------------------------------------

    def _sign(self, outgoing: Outgoing, tamper: str | None) -> None:
        secret = self.state.app.client_secret
        if tamper == "signature":
            secret = secret + "-not-the-client-secret"
        stamp = now_ms() - (STALE_MS if tamper == "timestamp" else 0)
        timestamp = str(stamp)
        outgoing.headers.update(
            {
                "User-Agent": USER_AGENT,
                "X-HubSpot-Signature": sign_v2(
                    secret, outgoing.method, outgoing.url, outgoing.body
                ),
                "X-HubSpot-Signature-Version": "v2",
                "X-HubSpot-Signature-v3": sign_v3(
                    secret, outgoing.method, outgoing.url, outgoing.body, timestamp
                ),
                "X-HubSpot-Request-Timestamp": timestamp,
            }
        )

    # ---- inputs --------------------------------------------------------------------------

    def _portal(self, raw: Any) -> Portal:
        if raw is None:
            raise validation("portalId is required")
        portal = self.state.portals.get(int(raw))
        if portal is None:
            raise not_found(f"Portal {raw} not found")
        return portal

    @staticmethod
    def _user(portal: Portal, raw: Any) -> User:
        if raw is None:
            return portal.admin
        user = portal.users.get(int(raw))
        if user is None:
            raise validation(f"User {raw} is not a user of portal {portal.id}")
        return user

    @staticmethod
    def _object(body: dict[str, Any]) -> tuple[str, str]:
        type_name = canonical_type(str(body.get("objectType") or ""))
        object_id = body.get("objectId")
        if type_name is None or object_id is None:
            raise validation("objectType and objectId are required for this kind")
        return str(type_name), str(object_id)

    def _properties(
        self, body: dict[str, Any], portal: Portal, type_name: str, object_id: str
    ) -> dict[str, str]:
        """A dict is sent as given; a list names properties read from the record, as the
        card's `propertiesToSend` or the action's requested properties are."""
        wanted = body.get("properties")
        if wanted is None:
            return {}
        if isinstance(wanted, dict):
            return {str(k): "" if v is None else str(v) for k, v in wanted.items()}
        record = self.store.find(portal, type_name, object_id)
        if record is None:
            raise not_found(f"{type_name} {object_id} not found in portal {portal.id}")
        return {str(name): record.properties.get(str(name)) or "" for name in wanted}

    @staticmethod
    def _raw_body(body: dict[str, Any]) -> bytes:
        raw = body.get("body")
        if raw is None:
            return b""
        if isinstance(raw, str):
            return raw.encode()
        return json.dumps(raw, separators=(",", ":")).encode()
