"""In-memory state of the emulator: configuration, the app, portals, tokens, records."""

from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from crm_sandbox.schema import BUILTIN_PROPERTIES, PropertyDef


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as HubSpot renders every datetime."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class SandboxConfig:
    """Behaviour switches; every UNVERIFIED item of the reference is one of these."""

    time_scale: float = 1.0
    webhook_time_scale: float | None = None
    default_limit: int = 110
    window_seconds: float = 10.0
    search_per_second: int = 5
    daily_limit: int | None = None
    search_lag_seconds: float = 0.0
    max_filter_groups: int = 5
    max_filters_per_group: int = 6
    max_filters_total: int = 18
    max_query_chars: int = 3000
    timeline_duplicate: str = "overwrite"
    retry_after_on_429: bool = True
    token_ttl_seconds: int = 1800
    app_id: int = 1160452
    client_id: str = "sandbox-client-id"
    client_secret: str = "sandbox-client-secret"  # noqa: S105 - a sandbox default, not a credential
    developer_key: str = "sandbox-developer-key"
    webhook_batch_size: int = 100
    webhook_max_retries: int = 10
    webhook_timeout_seconds: float = 5.0
    webhook_duplicate_rate: float = 0.0
    auth_code_ttl_seconds: float = 600.0  # HubSpot does not document it; runs on the time scale
    # App events (timeline v4): whether new portals see the app's app events as approved, and
    # what a repeated occurrence id gets: "conflict" (409) or "ignore" (accepted, unchanged).
    app_events_approved: bool = True
    app_event_duplicate: str = "conflict"
    app_events_dir: str | None = None  # an app project's app-events folder, deployed at start

    def scaled(self, seconds: float) -> float:
        """Real seconds for an API-clock duration (rate windows, Retry-After)."""
        return seconds / self.time_scale

    def webhook_scaled(self, seconds: float) -> float:
        return seconds / (self.webhook_time_scale or self.time_scale)


# What a portal created through the control API has granted: the scopes of reference §10, and
# the contact schema scopes an app creating contact properties needs.
DEFAULT_SCOPES = [
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
    "crm.objects.companies.read",
    "crm.objects.companies.write",
    "crm.objects.deals.read",
    "crm.objects.deals.write",
    "crm.schemas.deals.read",
    "crm.schemas.deals.write",
    "crm.objects.line_items.read",
    "crm.objects.line_items.write",
    "crm.objects.quotes.read",
    "e-commerce",
    "crm.objects.invoices.read",
    "crm.objects.invoices.write",
    "timeline",
    "multi-currency-read",
]


@dataclass
class Token:
    value: str
    portal_id: int
    kind: str  # "oauth" | "private"
    expires_at: float | None
    scopes: set[str] | None = None  # None: every scope
    user_id: int | None = None  # the installing user (OAuth); None: the portal's first user


@dataclass
class RefreshToken:
    value: str
    portal_id: int
    user_id: int
    scopes: list[str]


@dataclass
class AuthCode:
    """An authorization code: single use, bound to the request that produced it."""

    code: str
    client_id: str
    redirect_uri: str | None  # None: not checked (codes made through the control API)
    portal_id: int
    user_id: int
    scopes: list[str]
    expires_at: float


# A user's owner id differs from the user id, as in HubSpot, so mixing them up shows.
OWNER_ID_OFFSET = 900_000_000


@dataclass
class User:
    id: int
    email: str
    # A HubSpot user's name, as its owner shows it (empty when the user has not given one).
    first_name: str = ""
    last_name: str = ""

    @property
    def owner_id(self) -> str:
        """The id of the owner HubSpot keeps for this user (`hubspot_owner_id` values)."""
        return str(self.id + OWNER_ID_OFFSET)

    def to_api(self) -> dict[str, Any]:
        return {
            "userId": self.id,
            "email": self.email,
            "firstName": self.first_name,
            "lastName": self.last_name,
        }


@dataclass
class Install:
    """The app installed in a portal: who installed it and what was granted."""

    user_id: int
    scopes: list[str]
    installed_at: int


@dataclass
class Subscription:
    id: int
    event_type: str
    property_name: str | None
    active: bool
    created_at: int

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(self.id),
            "eventType": self.event_type,
            "active": self.active,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        }
        if self.property_name:
            body["propertyName"] = self.property_name
        return body


@dataclass
class EventTemplate:
    id: str
    name: str
    object_type: str
    tokens: list[dict[str, Any]]
    header_template: str = ""
    detail_template: str = ""

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "objectType": self.object_type,
            "headerTemplate": self.header_template,
            "detailTemplate": self.detail_template,
            "tokens": self.tokens,
        }


@dataclass
class AppEventType:
    """An app event type, as the app's project defines it in an `app-events/*-hsmeta.json`."""

    uid: str
    name: str
    object_type: str  # the CRM object type name occurrences go on (deals, contacts, ...)
    properties: dict[str, dict[str, Any]]
    fully_qualified_name: str
    header_template: str = ""
    detail_template: str = ""

    def names(self) -> set[str]:
        """The names an occurrence's `eventTypeName` may give: the uid or the full name."""
        return {self.uid, self.fully_qualified_name}

    def to_api(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "fullyQualifiedName": self.fully_qualified_name,
            "name": self.name,
            "objectType": self.object_type,
            "headerTemplate": self.header_template,
            "detailTemplate": self.detail_template,
            "properties": list(self.properties.values()),
        }


@dataclass
class App:
    """The one public app (client secret signs webhooks and requests to the app)."""

    id: int
    client_id: str
    client_secret: str
    developer_key: str
    name: str = "Dealbooks (sandbox)"
    redirect_urls: list[str] = field(default_factory=list)
    target_url: str | None = None
    max_concurrent: int = 10
    subscriptions: dict[int, Subscription] = field(default_factory=dict)
    templates: dict[str, EventTemplate] = field(default_factory=dict)
    event_types: dict[str, AppEventType] = field(default_factory=dict)  # by uid


@dataclass
class Record:
    id: str
    type: str
    properties: dict[str, str]
    created_at: int
    updated_at: int
    archived: bool = False
    archived_at: int | None = None
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # (visible_from monotonic seconds, properties or None when archived): search lags writes.
    search_versions: list[tuple[float, dict[str, str] | None]] = field(default_factory=list)


@dataclass
class Fault:
    kind: str  # latency | status | rate_limit | drop_webhooks | fail_webhooks
    remaining: int
    portal_id: int | None = None
    path_prefix: str | None = None
    status: int = 503
    seconds: float = 0.0
    policy: str = "TEN_SECONDLY_ROLLING"


@dataclass
class Counters:
    total: int = 0
    by_route: dict[str, int] = field(default_factory=dict)
    rate_limited: int = 0
    injected_faults: int = 0

    def to_api(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "byRoute": dict(self.by_route),
            "rateLimited": self.rate_limited,
            "injectedFaults": self.injected_faults,
        }


@dataclass
class Portal:
    id: int
    company_currency: str = "USD"
    additional_currencies: list[str] = field(default_factory=list)
    exchange_rates: dict[str, Decimal] = field(default_factory=dict)
    time_zone: str = "US/Eastern"
    limit_per_window: int = 110
    daily_limit: int | None = None
    search_per_second: int = 5
    records: dict[str, dict[str, Record]] = field(default_factory=dict)
    properties: dict[str, dict[str, PropertyDef]] = field(default_factory=dict)
    groups: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # (from_type, from_id, to_type, to_id) -> {(category, type_id)}
    associations: dict[tuple[str, str, str, str], set[tuple[str, int]]] = field(
        default_factory=dict
    )
    custom_labels: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # (object type, unique property) -> value -> id of the live record holding it
    unique_index: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    timeline: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # App events: whether HubSpot lets the app send them here, and the occurrences by
    # (event type uid, occurrence id); occurrences are immutable.
    app_events_approved: bool = True
    app_events: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    window: deque[float] = field(default_factory=deque)
    search_window: deque[float] = field(default_factory=deque)
    daily_count: int = 0
    users: dict[int, User] = field(default_factory=dict)
    install: Install | None = None
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def __post_init__(self) -> None:
        for type_name, defs in BUILTIN_PROPERTIES.items():
            self.records.setdefault(type_name, {})
            self.properties.setdefault(type_name, {d.name: PropertyDef(**vars(d)) for d in defs})
            self.groups.setdefault(type_name, {})
        deal_currency = self.properties["deals"]["deal_currency_code"]
        deal_currency.options = [
            {"label": c, "value": c, "displayOrder": i, "hidden": False}
            for i, c in enumerate(self.currencies())
        ]
        if not self.users:
            self.add_user(f"admin@{self.id}.example.com")

    @property
    def domain(self) -> str:
        return f"{self.id}.example.com"

    @property
    def admin(self) -> User:
        return next(iter(self.users.values()))

    def add_user(self, email: str, first_name: str = "", last_name: str = "") -> User:
        # Stable ids: the portal id and a per-portal number, so runs give the same ids.
        user = User(self.id * 1000 + len(self.users) + 1, email, first_name, last_name)
        self.users[user.id] = user
        return user

    def owner(self, owner_id: str) -> User | None:
        """The user an owner id stands for, if it is one of this portal's owners."""
        for user in self.users.values():
            if user.owner_id == owner_id:
                return user
        return None

    def currencies(self) -> list[str]:
        return [self.company_currency, *self.additional_currencies]

    def next_id(self) -> str:
        # Distinct per portal so a leaked id from another portal does not resolve by accident.
        return str(self.id * 1_000_000 + next(self._ids))

    def account_info(self) -> dict[str, Any]:
        return {
            "portalId": self.id,
            "accountType": "STANDARD",
            "timeZone": self.time_zone,
            "companyCurrency": self.company_currency,
            "additionalCurrencies": list(self.additional_currencies),
            "utcOffset": "+00:00",
            "utcOffsetMilliseconds": 0,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }


class SandboxState:
    """Everything the emulator knows; one instance per process."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.app = App(
            id=config.app_id,
            client_id=config.client_id,
            client_secret=config.client_secret,
            developer_key=config.developer_key,
        )
        self.portals: dict[int, Portal] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.auth_codes: dict[str, AuthCode] = {}
        self.faults: list[Fault] = []
        self._portal_ids = itertools.count(62515)
        self._subscription_ids = itertools.count(25)
        self._template_ids = itertools.count(1234567)

    def create_portal(self, **kw: Any) -> Portal:
        portal_id = int(kw.pop("portal_id", None) or next(self._portal_ids))
        while portal_id in self.portals:
            portal_id = next(self._portal_ids)
        kw.setdefault("limit_per_window", self.config.default_limit)
        kw.setdefault("daily_limit", self.config.daily_limit)
        kw.setdefault("search_per_second", self.config.search_per_second)
        kw.setdefault("app_events_approved", self.config.app_events_approved)
        portal = Portal(id=portal_id, **kw)
        portal.install = Install(portal.admin.id, list(DEFAULT_SCOPES), now_ms())
        self.portals[portal_id] = portal
        return portal

    def issue_token(
        self,
        portal_id: int,
        kind: str = "oauth",
        *,
        ttl: int | None = None,
        scopes: set[str] | None = None,
        user_id: int | None = None,
    ) -> Token:
        prefix = "pat-na1-" if kind == "private" else "CJ"
        value = prefix + secrets.token_urlsafe(24)
        expires_at = None
        if kind == "oauth":
            expires_at = time.time() + (self.config.token_ttl_seconds if ttl is None else ttl)
        token = Token(value, portal_id, kind, expires_at, scopes, user_id)
        self.tokens[value] = token
        return token

    def issue_refresh_token(
        self,
        portal_id: int,
        *,
        user_id: int | None = None,
        scopes: list[str] | None = None,
        value: str | None = None,
    ) -> RefreshToken:
        portal = self.portals[portal_id]
        install = portal.install
        token = RefreshToken(
            value or "na1-" + secrets.token_hex(16),
            portal_id,
            user_id if user_id is not None else portal.admin.id,
            list(scopes if scopes is not None else (install.scopes if install else [])),
        )
        self.refresh_tokens[token.value] = token
        return token

    def new_subscription_id(self) -> int:
        return next(self._subscription_ids)

    def new_template_id(self) -> str:
        return str(next(self._template_ids))
