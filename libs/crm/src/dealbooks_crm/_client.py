from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, TypedDict, TypeVar, Unpack

import httpx
from dealbooks_http import (
    Budget,
    BudgetSource,
    RetryableHTTPError,
    RetryPolicy,
    TokenProvider,
    async_client,
    json_object,
    retry_after_seconds,
)

from dealbooks_crm._errors import (
    CrmConflict,
    CrmError,
    CrmNotFound,
    CrmUnavailable,
    CrmValidation,
    SearchCapExceeded,
    error_from_response,
)
from dealbooks_crm._limits import DEFAULT_RETRY, CrmLimits, rolling_window_budget
from dealbooks_crm._models import (
    AccountDetails,
    AppEventOccurrence,
    AssociatedObject,
    BatchError,
    BatchResult,
    CrmObject,
    DealDetails,
    Property,
    PropertyDefinition,
    PropertyGroup,
    QuoteDetails,
    SearchPage,
    SearchRequest,
    TimelineEvent,
    TimelineEventResult,
)
from dealbooks_crm._paths import ApiPaths, PathStyle
from dealbooks_crm._types import NOTE_TO, TASK_PROPERTIES, TASK_TO, ObjectTypes
from dealbooks_crm._values import PropertyValue, to_properties

__all__ = ["CrmClient", "PortalCrm", "timeline_event_id"]

HUBSPOT_API = "https://api.hubapi.com"
MAX_BATCH = 100
MAX_ASSOCIATION_READ = 1000
MAX_ASSOCIATION_CREATE = 2000
SEARCH_RESULT_CAP = 10_000
RETRYABLE_STATUS = frozenset({423, 429, 477, 500, 502, 503, 504, 521, 522, 523, 524})
# Answers after which the CRM surely did nothing: safe to send again even what is not
# idempotent (a 5xx or a broken connection may come after the work was done).
REFUSED_UNDONE = frozenset({423, 429, 477})
UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

QUOTE_PROPERTIES = [
    "hs_title",
    "hs_status",
    "hs_expiration_date",
    "hs_currency",
    "hs_quote_number",
    "hs_quote_amount",
    "hs_locked",
    "hs_quote_link",
    "hs_public_url_key",
    "hs_template_type",
]
LINE_ITEM_PROPERTIES = [
    "name",
    "description",
    "quantity",
    "price",
    "amount",
    "discount",
    "hs_discount_percentage",
    "hs_total_discount",
    "hs_product_id",
    "hs_sku",
    "hs_line_item_currency_code",
    "hs_tax_rate_group_id",
]
CONTACT_PROPERTIES = ["email", "firstname", "lastname", "phone", "company"]
COMPANY_PROPERTIES = ["name", "domain", "address", "city", "state", "zip", "country"]
DEAL_PROPERTIES = [
    "dealname",
    "amount",
    "deal_currency_code",
    "dealstage",
    "pipeline",
    "closedate",
]

T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timeline_event_id(kind: str, *parts: str | int) -> str:
    """A deterministic timeline event id: the same business fact always gives the same id,
    so a redelivered message cannot create a second event."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]
    return f"{kind}-{digest}"


# Tokens one call may try after 401s: a stale cached one, the current one, and its refresh.
AUTH_TRIES = 3


class _Budgets:
    """The ten-second and the search budget for one set of limits: from `source` (shared
    across processes) when there is one, else kept in this process."""

    def __init__(self, limits: CrmLimits, source: BudgetSource | None = None) -> None:
        self.standard: Budget
        self.search: Budget
        if source is not None:
            self.standard = source.budget("crm", limits.standard())
            self.search = source.budget("crm-search", limits.searches())
            return
        self.standard = rolling_window_budget(
            limits.requests_per_window,
            limits.window_seconds,
            headroom=limits.headroom,
            concurrency=limits.concurrency,
        )
        self.search = rolling_window_budget(
            limits.search_per_second,
            limits.search_window_seconds,
            headroom=limits.headroom,
            concurrency=limits.search_concurrency,
        )


class _TokenRejected(Exception):
    def __init__(self, response: httpx.Response, token: str) -> None:
        super().__init__("token rejected")
        self.response = response
        self.token = token


class CrmClient:
    """Async client for HubSpot's CRM APIs, shared by every service.

    Works unchanged against https://api.hubapi.com and the sandbox. Each portal gets its own
    rate budget (ten-second and search limits; `portal_limits` overrides `limits` for portals
    on another tier; kept in this process, or shared by every process when `budgets` is given,
    see `dealbooks_kit.budgets`), every call retries transient failures with
    backoff and jitter honouring Retry-After, and errors surface as `CrmError` subclasses.
    """

    def __init__(
        self,
        tokens: TokenProvider,
        *,
        base_url: str = HUBSPOT_API,
        path_style: PathStyle = "v3",
        limits: CrmLimits | None = None,
        portal_limits: Mapping[str | int, CrmLimits] | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
        budgets: BudgetSource | None = None,
    ) -> None:
        self.limits = limits or CrmLimits()
        self.paths = ApiPaths(path_style)
        self._tokens = tokens
        self._retry = retry or DEFAULT_RETRY
        self._budgets = _Budgets(self.limits, budgets)
        self._portal_budgets = {
            str(k): _Budgets(v, budgets) for k, v in (portal_limits or {}).items()
        }
        self._owns_http = http is None
        self._http = http or async_client(
            base_url=base_url, timeout=timeout, headers={"Accept": "application/json"}
        )
        # Labels the budget's waits (never the portal: that is a tenant).
        self._host = self._http.base_url.host or httpx.URL(base_url).host

    async def __aenter__(self) -> CrmClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    def portal(self, portal_id: str | int) -> PortalCrm:
        """Operations bound to one portal (hub id); tokens and budgets are keyed by it."""
        return PortalCrm(self, str(portal_id))

    async def request(
        self,
        portal_id: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        search: bool = False,
        replay_safe: bool = True,
    ) -> httpx.Response:
        """Send one API call within the portal's budget; retry transient failures.

        A 401 invalidates the token and tries again with a fresh one; a token refused twice
        is the answer. The token given next may be another one that is also refused (a
        cached token older than the one the provider holds now, itself gone with an
        uninstall), so each new token gets its try, up to `AUTH_TRIES`.

        `replay_safe=False` is for a call that must not be made twice (it creates something
        without a key that dedupes): it is sent again only after answers that say nothing
        was done (429, 423, 477, or a connection never made); a 5xx or a connection broken
        after sending raises `CrmUnavailable`, and the caller finds out what happened.
        """

        async def attempt() -> httpx.Response:
            try:
                return await self._attempt(portal_id, method, path, json, params, search)
            except RetryableHTTPError as exc:
                if replay_safe or exc.response.status_code in REFUSED_UNDONE:
                    raise
                raise error_from_response(exc.response) from None
            except httpx.TransportError as exc:
                if replay_safe or isinstance(exc, UNSENT):
                    raise
                raise CrmUnavailable(
                    f"CRM call may or may not have been done: {type(exc).__name__}: {exc}"
                ) from exc

        refused: set[str] = set()
        for _ in range(AUTH_TRIES):
            try:
                response: httpx.Response = await self._retry.run(attempt)
                return response
            except _TokenRejected as rejected:
                if rejected.token in refused or len(refused) == AUTH_TRIES - 1:
                    raise error_from_response(rejected.response) from None
                refused.add(rejected.token)
                await self._tokens.invalidate(portal_id, rejected.token)
            except RetryableHTTPError as exc:
                raise error_from_response(exc.response) from exc
            except httpx.TransportError as exc:
                raise CrmUnavailable(f"CRM unreachable: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(
        self,
        key: str,
        method: str,
        path: str,
        json: Any,
        params: Mapping[str, Any] | None,
        search: bool,
    ) -> httpx.Response:
        budgets = self._portal_budgets.get(key, self._budgets)
        budget = budgets.search if search else budgets.standard
        async with budget.slot(key, host=self._host):
            token = await self._tokens.token(key)
            response = await self._http.request(
                method,
                path,
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
        status = response.status_code
        if status < 400:
            return response
        if status == 401:
            raise _TokenRejected(response, token)
        if status == 429 and json_object(response).get("policyName") == "DAILY":
            raise error_from_response(response)  # a daily cap does not lift by retrying
        if status in RETRYABLE_STATUS:
            raise RetryableHTTPError(response, retry_after_seconds(response))
        raise error_from_response(response)


class _CallOptions(TypedDict, total=False):
    """The keywords of `CrmClient.request` after the path."""

    json: Any
    params: Mapping[str, Any] | None
    search: bool
    replay_safe: bool


def _query(fixed: dict[str, Any], **optional: str | Sequence[str] | None) -> dict[str, Any]:
    """Query parameters: `fixed` as given, then each optional one that is set (a list joined
    with commas)."""
    params = dict(fixed)
    for key, value in optional.items():
        if value:
            params[key] = value if isinstance(value, str) else ",".join(value)
    return params


class _ApiInput(Protocol):
    """A model a batch route takes as one of its inputs."""

    def to_api(self) -> dict[str, Any]: ...


class PortalCrm:
    """CRM operations for one portal. Obtain with `CrmClient.portal(portal_id)`."""

    def __init__(self, client: CrmClient, portal_id: str) -> None:
        self.client = client
        self.portal_id = portal_id
        self._paths = client.paths

    async def _call(
        self, method: str, path: str, **options: Unpack[_CallOptions]
    ) -> httpx.Response:
        return await self.client.request(self.portal_id, method, path, **options)

    async def _batches(self, path: str, items: Sequence[_ApiInput]) -> AsyncIterator[Any]:
        """POST `items` to the batch route `path` as `{"inputs": [...]}`, 100 per call, one
        call after the other; each answer's body, before the next call is sent."""
        for chunk in _chunks(list(items), MAX_BATCH):
            response = await self._call("POST", path, json={"inputs": [i.to_api() for i in chunk]})
            yield response.json()

    # ---- single objects ----------------------------------------------------------------

    async def get(
        self,
        object_type: str,
        object_id: str,
        *,
        properties: Sequence[str] | None = None,
        associations: Sequence[str] | None = None,
        id_property: str | None = None,
        archived: bool = False,
        properties_with_history: Sequence[str] | None = None,
    ) -> CrmObject:
        """Read one record (by id, or by a unique property with `id_property`);
        `properties_with_history` also returns each change of those properties."""
        params = _query(
            {"archived": str(archived).lower()},
            properties=properties,
            propertiesWithHistory=properties_with_history,
            associations=associations,
            idProperty=id_property,
        )
        response = await self._call(
            "GET", f"{self._paths.objects(object_type)}/{object_id}", params=params
        )
        return CrmObject.model_validate(response.json())

    async def create(
        self,
        object_type: str,
        properties: Mapping[str, PropertyValue],
        *,
        associations: Sequence[tuple[str, int]] | None = None,
        replay_safe: bool = True,
    ) -> CrmObject:
        """Create a record; `associations` are (to_id, HUBSPOT_DEFINED type id) pairs.
        `replay_safe=False`: see `CrmClient.request` (for records nothing dedupes)."""
        body: dict[str, Any] = {"properties": to_properties(dict(properties))}
        if associations:
            body["associations"] = [
                {
                    "to": {"id": to_id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t}],
                }
                for to_id, t in associations
            ]
        response = await self._call(
            "POST", self._paths.objects(object_type), json=body, replay_safe=replay_safe
        )
        return CrmObject.model_validate(response.json())

    async def update(
        self,
        object_type: str,
        object_id: str,
        properties: Mapping[str, PropertyValue],
        *,
        id_property: str | None = None,
    ) -> CrmObject:
        """Partial update; a None value clears the property."""
        params = {"idProperty": id_property} if id_property else None
        response = await self._call(
            "PATCH",
            f"{self._paths.objects(object_type)}/{object_id}",
            json={"properties": to_properties(dict(properties))},
            params=params,
        )
        return CrmObject.model_validate(response.json())

    async def archive(self, object_type: str, object_id: str) -> None:
        """Move a record to the recycle bin (204 even when it is already gone)."""
        await self._call("DELETE", f"{self._paths.objects(object_type)}/{object_id}")

    async def iter_objects(
        self,
        object_type: str,
        *,
        properties: Sequence[str] | None = None,
        associations: Sequence[str] | None = None,
        archived: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[CrmObject]:
        """Every record of a type, following `paging.next.after`; the way to backfill."""
        after: str | None = None
        while True:
            params = _query(
                {"limit": page_size, "archived": str(archived).lower()},
                properties=properties,
                associations=associations,
                after=after,
            )
            response = await self._call("GET", self._paths.objects(object_type), params=params)
            body = response.json()
            for item in body.get("results", []):
                yield CrmObject.model_validate(item)
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    # ---- batches -----------------------------------------------------------------------

    async def _batch(
        self, object_type: str, action: str, inputs: Sequence[dict[str, Any]], **extra: Any
    ) -> BatchResult:
        path = f"{self._paths.objects(object_type)}/batch/{action}"

        async def send(chunk: Sequence[dict[str, Any]]) -> BatchResult:
            response = await self._call("POST", path, json={"inputs": list(chunk), **extra})
            return BatchResult.model_validate(response.json())

        results = await asyncio.gather(*(send(c) for c in _chunks(inputs, MAX_BATCH)))
        merged = BatchResult()
        for result in results:
            merged = merged.merge(result)
        return merged

    async def batch_read(
        self,
        object_type: str,
        ids: Sequence[str],
        *,
        properties: Sequence[str] | None = None,
        id_property: str | None = None,
    ) -> BatchResult:
        """Read many records, 100 per call; missing ids are reported in `errors`."""
        extra: dict[str, Any] = {"properties": list(properties or [])}
        if id_property:
            extra["idProperty"] = id_property
        return await self._batch(object_type, "read", [{"id": i} for i in ids], **extra)

    async def batch_create(
        self, object_type: str, records: Sequence[Mapping[str, PropertyValue]]
    ) -> BatchResult:
        """Create many records, 100 per call."""
        inputs = [{"properties": to_properties(dict(r))} for r in records]
        return await self._batch(object_type, "create", inputs)

    async def batch_update(
        self,
        object_type: str,
        updates: Sequence[tuple[str, Mapping[str, PropertyValue]]],
        *,
        id_property: str | None = None,
    ) -> BatchResult:
        """Update many records given as (id, properties), 100 per call."""
        inputs: list[dict[str, Any]] = []
        for object_id, props in updates:
            item: dict[str, Any] = {"id": object_id, "properties": to_properties(dict(props))}
            if id_property:
                item["idProperty"] = id_property
            inputs.append(item)
        return await self._batch(object_type, "update", inputs)

    async def batch_upsert(
        self,
        object_type: str,
        id_property: str,
        records: Sequence[tuple[str, Mapping[str, PropertyValue]]],
    ) -> BatchResult:
        """Create-or-update by a unique property, 100 per call; each result carries `new`."""
        inputs = [
            {"id": key, "idProperty": id_property, "properties": to_properties(dict(props))}
            for key, props in records
        ]
        return await self._batch(object_type, "upsert", inputs)

    async def batch_archive(self, object_type: str, ids: Sequence[str]) -> None:
        """Archive many records, 100 per call."""
        path = f"{self._paths.objects(object_type)}/batch/archive"
        await asyncio.gather(
            *(
                self._call("POST", path, json={"inputs": [{"id": i} for i in chunk]})
                for chunk in _chunks(list(ids), MAX_BATCH)
            )
        )

    # ---- search ------------------------------------------------------------------------

    async def search(self, object_type: str, request: SearchRequest) -> SearchPage:
        """One search page (at most 200). Search lags writes by a few seconds."""
        request.check_caps()
        response = await self._call(
            "POST", f"{self._paths.objects(object_type)}/search", json=request.to_api(), search=True
        )
        return SearchPage.model_validate(response.json())

    async def search_all(
        self, object_type: str, request: SearchRequest
    ) -> AsyncIterator[CrmObject]:
        """Every match of a search, page by page.

        Raises `SearchCapExceeded` before yielding anything when more than 10,000 records
        match: those are unreachable through search, so callers must list or batch-read.
        """
        page_request = request.model_copy()
        while True:
            page = await self.search(object_type, page_request)
            if page.total > SEARCH_RESULT_CAP:
                raise SearchCapExceeded(page.total)
            for item in page.results:
                yield item
            after = page.next_after
            if after is None:
                return
            page_request = page_request.model_copy(update={"after": after})

    # ---- helpers the services use ----------------------------------------------------------

    async def upsert_contact_by_email(
        self, email: str, properties: Mapping[str, PropertyValue]
    ) -> CrmObject:
        """Create or update the contact with this email (one call; no search-then-create race)."""
        result = await self.batch_upsert("contacts", "email", [(email, properties)])
        return _single(result)

    async def upsert_contacts_by_email(
        self, contacts: Sequence[tuple[str, Mapping[str, PropertyValue]]]
    ) -> BatchResult:
        """Create or update contacts keyed by email, 100 per call."""
        return await self.batch_upsert("contacts", "email", contacts)

    async def upsert_product(
        self, id_property: str, external_id: str, properties: Mapping[str, PropertyValue]
    ) -> CrmObject:
        """Create or update the product whose unique `id_property` equals `external_id`."""
        result = await self.batch_upsert("products", id_property, [(external_id, properties)])
        return _single(result)

    async def upsert_products(
        self, id_property: str, products: Sequence[tuple[str, Mapping[str, PropertyValue]]]
    ) -> BatchResult:
        """Create or update products keyed by a unique dealbooks id property, 100 per call."""
        return await self.batch_upsert("products", id_property, products)

    async def set_deal_properties(
        self,
        deal_id: str,
        properties: Mapping[str, PropertyValue],
        *,
        id_property: str | None = None,
    ) -> CrmObject:
        """PATCH deal properties (Decimal, date and datetime values are rendered for you)."""
        return await self.update("deals", deal_id, properties, id_property=id_property)

    async def create_timeline_event(self, event: TimelineEvent) -> TimelineEventResult:
        """Create a timeline event; the same `id` twice still leaves exactly one event."""
        response = await self._call("POST", f"{self._paths.timeline()}/events", json=event.to_api())
        return TimelineEventResult.model_validate(response.json())

    async def create_timeline_events(
        self, events: Sequence[TimelineEvent]
    ) -> list[TimelineEventResult]:
        """Create many timeline events, 100 per call; raise on any per-event error."""
        out: list[TimelineEventResult] = []
        async for body in self._batches(f"{self._paths.timeline()}/events/batch/create", events):
            if body.get("errors"):
                first = body["errors"][0]
                raise CrmValidation(str(first.get("message")), status=207, body=body)
            out.extend(TimelineEventResult.model_validate(r) for r in body.get("results", []))
        return out

    async def send_app_event(self, occurrence: AppEventOccurrence) -> bool:
        """Send one app event occurrence (timeline v4). True when HubSpot took it now, False
        when it already has this `id` for the type (409: occurrences are immutable, so the
        first one stands).

        Where the app's app events are not approved, or `timeline` is not granted, HubSpot
        answers 403 (`CrmAuthError`); an event type it does not know, or a record that does
        not exist, 404 (`CrmNotFound`)."""
        try:
            await self._call("POST", self._paths.app_events(), json=occurrence.to_api())
        except CrmConflict:
            return False
        return True

    async def send_app_events(self, occurrences: Sequence[AppEventOccurrence]) -> list[BatchError]:
        """Send many occurrences, 100 per call; the per-occurrence errors (a repeated `id`
        is one, category CONFLICT), empty when every one was taken."""
        errors: list[BatchError] = []
        async for body in self._batches(f"{self._paths.app_events()}/batch", occurrences):
            errors += [BatchError.model_validate(e) for e in body.get("errors", [])]
        return errors

    async def create_note(
        self,
        body: str,
        *,
        on: Sequence[tuple[str, str]],
        timestamp: datetime | None = None,
    ) -> CrmObject:
        """Create a note (HTML `body`) on records given as (object type, id): deals, contacts,
        companies. A note has no key that dedupes, so it is never sent twice on its own: an
        answer that leaves unknown whether it was made raises `CrmUnavailable`; look with
        `notes_on` before creating it again."""
        properties: dict[str, PropertyValue] = {
            "hs_note_body": body,
            "hs_timestamp": timestamp or datetime.now(UTC),
        }
        associations = [(object_id, NOTE_TO[object_type]) for object_type, object_id in on]
        return await self.create(
            ObjectTypes.NOTES, properties, associations=associations, replay_safe=False
        )

    async def notes_on(self, object_type: str, object_id: str) -> list[CrmObject]:
        """The notes associated with a record, with `hs_note_body` and `hs_timestamp`."""
        linked = await self.associations(object_type, object_id, ObjectTypes.NOTES)
        if not linked:
            return []
        ids = [a.to_object_id for a in linked]
        found = await self.batch_read(
            ObjectTypes.NOTES, ids, properties=["hs_note_body", "hs_timestamp"]
        )
        return found.results

    async def create_task(
        self,
        subject: str,
        *,
        body: str,
        due: datetime,
        on: Sequence[tuple[str, str]],
        owner_id: str | None = None,
        priority: str = "MEDIUM",
        task_type: str = "TODO",
    ) -> CrmObject:
        """Create a task due at `due` (its `hs_timestamp`) on records given as (object type,
        id), assigned to `owner_id` when given. Like a note, a task has no key that dedupes,
        so it is never sent twice on its own: claim it first and look with `tasks_on` before
        creating it again (see status-tracker's notes)."""
        properties: dict[str, PropertyValue] = {
            "hs_task_subject": subject,
            "hs_task_body": body,
            "hs_timestamp": due,
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": priority,
            "hs_task_type": task_type,
        }
        if owner_id:
            properties["hubspot_owner_id"] = owner_id
        associations = [(object_id, TASK_TO[object_type]) for object_type, object_id in on]
        return await self.create(
            ObjectTypes.TASKS, properties, associations=associations, replay_safe=False
        )

    async def owner(self, owner_id: str) -> dict[str, Any] | None:
        """One owner of the portal (`id`, `email`, `userId`, ...), or None when the portal has
        no such owner. Needs `crm.objects.owners.read` (CrmAuthError without it)."""
        try:
            response = await self._call("GET", f"{self._paths.owners()}/{owner_id}")
        except CrmNotFound:
            return None
        found: dict[str, Any] = response.json()
        return found

    async def owners(self, *, page_size: int = 100) -> list[dict[str, Any]]:
        """Every active owner of the portal (`id`, `email`, `firstName`, `lastName`,
        `userId`, ...), following `paging.next.after`. Needs `crm.objects.owners.read`
        (CrmAuthError without it)."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = _query({"limit": page_size}, after=after)
            body = (await self._call("GET", self._paths.owners(), params=params)).json()
            found.extend(body.get("results", []))
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found

    async def complete_task(self, task_id: str) -> CrmObject:
        """Mark a task done (HubSpot stamps its completion date)."""
        return await self.update(ObjectTypes.TASKS, task_id, {"hs_task_status": "COMPLETED"})

    async def tasks_on(self, object_type: str, object_id: str) -> list[CrmObject]:
        """The tasks associated with a record, with their subject, body, status, due time and
        owner."""
        linked = await self.associations(object_type, object_id, ObjectTypes.TASKS)
        if not linked:
            return []
        ids = [a.to_object_id for a in linked]
        found = await self.batch_read(ObjectTypes.TASKS, ids, properties=TASK_PROPERTIES)
        return found.results

    async def ensure_property_group(
        self, object_type: str, name: str, label: str, *, display_order: int = -1
    ) -> PropertyGroup:
        """Return the property group, creating it if it does not exist yet (idempotent)."""
        path = f"{self._paths.properties(object_type)}/groups"
        try:
            response = await self._call("GET", f"{path}/{name}")
            return PropertyGroup.model_validate(response.json())
        except CrmNotFound:
            pass
        body = {"name": name, "label": label, "displayOrder": display_order}
        try:
            response = await self._call("POST", path, json=body)
        except CrmConflict:  # another installer created it meanwhile
            response = await self._call("GET", f"{path}/{name}")
        return PropertyGroup.model_validate(response.json())

    async def ensure_properties(
        self, object_type: str, definitions: Sequence[PropertyDefinition]
    ) -> list[Property]:
        """Create whichever of `definitions` the portal lacks (one read, one batch create)."""
        path = self._paths.properties(object_type)
        existing = {
            p["name"]: Property.model_validate(p)
            for p in (await self._call("GET", path)).json().get("results", [])
        }
        missing = [d for d in definitions if d.name not in existing]
        async for body in self._batches(f"{path}/batch/create", missing):
            for item in body.get("results", []):
                existing[item["name"]] = Property.model_validate(item)
            failures = [e for e in body.get("errors", []) if e.get("category") != "CONFLICT"]
            if failures:
                raise CrmValidation(str(failures[0].get("message")), status=207, body=body)
        if any(d.name not in existing for d in definitions):
            # Created concurrently by someone else: read them back.
            existing = {
                p["name"]: Property.model_validate(p)
                for p in (await self._call("GET", path)).json().get("results", [])
            }
        return [existing[d.name] for d in definitions]

    async def associate(
        self,
        from_type: str,
        from_id: str,
        to_type: str,
        to_id: str,
        type_ids: Sequence[int] | None = None,
        *,
        category: str = "HUBSPOT_DEFINED",
    ) -> None:
        """Associate two records. Without `type_ids`, the default (unlabeled) type is used;
        with them, the pair gets exactly those types (labels not listed are replaced)."""
        base = f"{self._paths.object_associations(from_type, from_id)}"
        if not type_ids:
            await self._call("PUT", f"{base}/default/{to_type}/{to_id}")
            return
        specs = [{"associationCategory": category, "associationTypeId": t} for t in type_ids]
        await self._call("PUT", f"{base}/{to_type}/{to_id}", json=specs)

    async def associate_many(
        self,
        from_type: str,
        to_type: str,
        pairs: Sequence[tuple[str, str]],
        type_ids: Sequence[int] | None = None,
        *,
        category: str = "HUBSPOT_DEFINED",
    ) -> BatchResult:
        """Associate many (from_id, to_id) pairs, 2,000 per call."""
        base = self._paths.association_batch(from_type, to_type)
        merged = BatchResult()
        for chunk in _chunks(list(pairs), MAX_ASSOCIATION_CREATE):
            if type_ids:
                specs = [
                    {"associationCategory": category, "associationTypeId": t} for t in type_ids
                ]
                inputs = [{"from": {"id": f}, "to": {"id": t}, "types": specs} for f, t in chunk]
                path = f"{base}/batch/create"
            else:
                inputs = [{"from": {"id": f}, "to": {"id": t}} for f, t in chunk]
                path = f"{base}/batch/associate/default"
            response = await self._call("POST", path, json={"inputs": inputs})
            body = response.json()
            merged = merged.merge(
                BatchResult(
                    status=body.get("status", "COMPLETE"),
                    errors=body.get("errors", []),
                    numErrors=body.get("numErrors", 0),
                )
            )
        return merged

    async def associations(
        self, from_type: str, from_id: str, to_type: str
    ) -> list[AssociatedObject]:
        """Every record of `to_type` associated with this one, with the type ids linking them."""
        out: list[AssociatedObject] = []
        after: str | None = None
        base = f"{self._paths.object_associations(from_type, from_id)}/{to_type}"
        while True:
            params: dict[str, Any] = {"limit": 500}
            if after:
                params["after"] = after
            body = (await self._call("GET", base, params=params)).json()
            out.extend(AssociatedObject.model_validate(r) for r in body.get("results", []))
            after = ((body.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return out

    async def batch_associations(
        self, from_type: str, to_type: str, ids: Sequence[str]
    ) -> dict[str, list[AssociatedObject]]:
        """Associations of many records at once (1,000 per call), keyed by from id."""
        out: dict[str, list[AssociatedObject]] = {i: [] for i in ids}
        path = f"{self._paths.association_batch(from_type, to_type)}/batch/read"
        for chunk in _chunks(list(ids), MAX_ASSOCIATION_READ):
            body = (
                await self._call("POST", path, json={"inputs": [{"id": i} for i in chunk]})
            ).json()
            for row in body.get("results", []):
                out[str(row["from"]["id"])] = [
                    AssociatedObject.model_validate(t) for t in row.get("to", [])
                ]
        return out

    async def remove_association(
        self, from_type: str, from_id: str, to_type: str, to_id: str
    ) -> None:
        """Remove every association type between the pair."""
        base = self._paths.object_associations(from_type, from_id)
        await self._call("DELETE", f"{base}/{to_type}/{to_id}")

    async def _associated(
        self, record: CrmObject, object_type: str, properties: list[str]
    ) -> list[CrmObject]:
        """The records of `object_type` associated with `record` (read with `associations=`),
        in association order, with one batch read."""
        ids = record.associated_ids(object_type)
        if not ids:
            return []
        result = await self.batch_read(object_type, ids, properties=properties)
        order = {object_id: n for n, object_id in enumerate(ids)}
        return sorted(result.results, key=lambda r: order.get(r.id, len(order)))

    async def read_quote(self, quote_id: str) -> QuoteDetails:
        """A quote with its line items, contacts, companies and deal (one read plus one
        batch read per associated type)."""
        quote = await self.get(
            "quotes",
            quote_id,
            properties=QUOTE_PROPERTIES,
            associations=["line_items", "contacts", "companies", "deals"],
        )
        line_items, contacts, companies, deals = await asyncio.gather(
            self._associated(quote, "line_items", LINE_ITEM_PROPERTIES),
            self._associated(quote, "contacts", CONTACT_PROPERTIES),
            self._associated(quote, "companies", COMPANY_PROPERTIES),
            self._associated(quote, "deals", DEAL_PROPERTIES),
        )
        return QuoteDetails(
            quote=quote,
            line_items=line_items,
            contacts=contacts,
            companies=companies,
            deal=deals[0] if deals else None,
        )

    async def read_deal(self, deal_id: str) -> DealDetails:
        """A deal with its line items, contacts and companies (one read plus one batch read
        per associated type), as an invoice drafted from the deal needs them."""
        deal = await self.get(
            "deals",
            deal_id,
            properties=DEAL_PROPERTIES,
            associations=["line_items", "contacts", "companies"],
        )
        line_items, contacts, companies = await asyncio.gather(
            self._associated(deal, "line_items", LINE_ITEM_PROPERTIES),
            self._associated(deal, "contacts", CONTACT_PROPERTIES),
            self._associated(deal, "companies", COMPANY_PROPERTIES),
        )
        return DealDetails(deal=deal, line_items=line_items, contacts=contacts, companies=companies)

    async def account_details(self) -> AccountDetails:
        """Portal id, time zone and company currency of the portal."""
        response = await self._call("GET", "/account-info/v3/details")
        return AccountDetails.model_validate(response.json())


def _single(result: BatchResult) -> CrmObject:
    if result.errors:
        first = result.errors[0]
        raise CrmValidation(first.message, status=207, category=first.category)
    if not result.results:
        raise CrmError("batch returned no result")
    return result.results[0]
