"""What the chaos run shares: the figures it prints, the ledger of what the driver did (so the
checks know what to look for in the sandboxes), and the driver's HTTP client.

The driver plays people and the outside world: a signed-in admin of the CRM portal (the
wizard, the sync settings, the auto-draft rule), a QuickBooks user (payments, customer and
item changes, through the QBO sandbox's control API) and a CRM user (deals, quotes, stage
changes, through the CRM sandbox's control API). Like a browser, it tries a call again while
the service behind it is restarting.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
from dealbooks_infra.people import AsyncPerson, FlowFailed
from dealbooks_infra.records import crm_record
from dealbooks_infra.stack import LocalStack
from dealbooks_infra.topology import PORTAL_ID

PIPELINE_START = "appointmentscheduled"
RULE_STAGE = "closedwon"
RULE_ID = "chaos-closed-won"


def say(text: str = "") -> None:
    print(text, flush=True)


class DriverError(Exception):
    """A call the driver needs did not succeed within its patience."""


@dataclass
class Figures:
    """Counts the run prints at the end."""

    events: Counter[str] = field(default_factory=Counter)
    load_errors: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    downtime: dict[str, float] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    settle: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def down(self, name: str, seconds: float) -> None:
        self.downtime[name] = self.downtime.get(name, 0.0) + seconds


@dataclass
class Submitted:
    """A wizard request the driver sent. Accepted: invoice-builder answered 202. In doubt:
    no answer came within the driver's patience (the request may still have been carried
    out; the wizard is asked again while settling)."""

    request_id: str
    realm: str
    deal: str
    kind: str  # "scratch", "overdue", "bad-dates", "quote"
    accepted: bool = False
    outcome: dict[str, Any] | None = None
    in_doubt: bool = False
    answered_in: float | None = None  # seconds from the first attempt to the 202


@dataclass
class Drafted:
    """An invoice QuickBooks holds for a request, as the driver pays it down."""

    realm: str
    invoice_id: str
    balance: Decimal
    deal: str


@dataclass
class Ledger:
    """What the driver did, so the checks know where to look."""

    sync_realm: str = ""
    realms: list[str] = field(default_factory=list)
    submitted: dict[str, Submitted] = field(default_factory=dict)
    drafted: dict[tuple[str, str], Drafted] = field(default_factory=dict)
    auto_deals: dict[str, str] = field(default_factory=dict)  # deal -> auto-draft request id
    rule_products: dict[str, str] = field(default_factory=dict)  # CRM product -> QBO item
    customers: dict[str, bool] = field(default_factory=dict)  # sync realm customer -> active
    items: dict[str, bool] = field(default_factory=dict)  # sync realm item -> active
    contacts: list[tuple[str, str]] = field(default_factory=list)  # (contact, company) of deals
    payments: int = 0


class Client:
    """The driver's HTTP: control APIs of the sandboxes, and the services' routes as the
    signed-in admin (a portal grant) or an operator."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.t = stack.topology
        self.http = httpx.AsyncClient(timeout=40.0)
        self.person = AsyncPerson(self.t, httpx.AsyncClient(timeout=40.0))
        self.crm_ctl = self.t.crm_control()
        self.qbo_ctl = f"{self.t.qbo}/_sandbox"
        self.started = time.monotonic()  # when the load began; log lines count from it
        self.unanswered: Counter[str] = Counter()  # calls tried again: no answer, 5xx, 429

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.person.http.aclose()

    async def grant(self, patience: float = 120.0) -> dict[str, str]:
        """The admin's portal grant, signing in again if connector-auth was restarting."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return await self.person.auth()
            except (FlowFailed, httpx.TransportError) as exc:
                if time.monotonic() > deadline:
                    raise DriverError(f"no portal grant: {exc}") from exc
            await asyncio.sleep(0.5)

    async def call(
        self,
        method: str,
        url: str,
        *,
        as_person: bool = False,
        operator: bool = False,
        patience: float = 120.0,
        final: tuple[int, ...] = (),
        **kw: Any,
    ) -> httpx.Response:
        """One call, tried again on connection errors, 5xx and 429 until `patience` runs out.

        Returns the first 2xx answer, or one whose status is in `final`; any other 4xx is a
        `DriverError` at once."""
        deadline = time.monotonic() + patience
        last = ""
        given = dict(kw.pop("headers", None) or {})
        while True:
            headers = dict(given)
            if as_person:
                headers.update(await self.grant(patience))
            if operator:
                headers.update(self.t.operator_auth)
            try:
                answer = await self.http.request(method, url, headers=headers, **kw)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
                self.unanswered[last] += 1
            else:
                if answer.is_success or answer.status_code in final:
                    return answer
                last = f"{answer.status_code} {answer.text[:300]}"
                if answer.status_code < 500 and answer.status_code != 429:
                    raise DriverError(f"{method} {url}: {last}")
                self.unanswered[f"HTTP {answer.status_code}"] += 1
            if time.monotonic() > deadline:
                raise DriverError(f"{method} {url}: gave up after {patience:.0f} s: {last}")
            await asyncio.sleep(0.5)

    async def json(self, method: str, url: str, **kw: Any) -> Any:
        answer = await self.call(method, url, **kw)
        return answer.json() if answer.content else None

    # --- the CRM, as its users change it ---------------------------------------------------

    async def crm_create(
        self, kind: str, props: dict[str, str], assocs: list[tuple[str, int]] | None = None
    ) -> str:
        body = crm_record(props, assocs or ())
        created = await self.json("POST", f"{self.crm_ctl}/objects/{kind}", json=body)
        return str(created["id"])

    async def crm_update(self, kind: str, object_id: str, props: dict[str, str]) -> None:
        await self.call(
            "PATCH", f"{self.crm_ctl}/objects/{kind}/{object_id}", json={"properties": props}
        )

    async def crm_objects(self, kind: str) -> list[dict[str, Any]]:
        found = await self.json("GET", f"{self.crm_ctl}/objects/{kind}")
        return list(found["results"])

    # --- the services, as the portal's admin ---------------------------------------------

    def wizard(self, path: str) -> str:
        return f"{self.t.wizard()}{path}"

    def mappings(self, realm: str, object_type: str, path: str = "") -> str:
        return (
            f"{self.t.url('mapping-registry')}/portals/{PORTAL_ID}/accounts/{realm}/"
            f"{object_type}{path}"
        )

    def backfill(self, service: str, realm: str) -> str:
        return f"{self.t.url(service)}/portals/{PORTAL_ID}/accounts/{realm}/backfill"
