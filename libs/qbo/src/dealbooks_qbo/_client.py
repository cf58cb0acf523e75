from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast

import httpx
from dealbooks_http import (
    RETRYABLE_STATUS,
    Budget,
    Limits,
    RateBudget,
    RetryableHTTPError,
    RetryPolicy,
    TokenProvider,
    async_client,
    retry_after_seconds,
    windows_of,
)

from dealbooks_qbo import _json
from dealbooks_qbo._errors import QboError, fault_from_item, fault_from_response
from dealbooks_qbo._models import (
    ENTITY_MODELS,
    CdcResult,
    CompanyInfo,
    Deleted,
    Entity,
    Invoice,
    Payment,
    Preferences,
    QboModel,
    QueryPage,
)
from dealbooks_qbo._query import Select

PRODUCTION_BASE_URL = "https://quickbooks.api.intuit.com"
SANDBOX_BASE_URL = "https://sandbox-quickbooks.api.intuit.com"
MINOR_VERSION = 75
BATCH_SIZE = 30
MAX_RESULTS = 1000
_REQUESTID_NS = uuid.UUID("6f1c1f8e-3c55-4b8e-9a7c-0d5a1c7e2b10")
_PAGING_RE = re.compile(r"\s+(STARTPOSITION|MAXRESULTS)\s+\d+", re.IGNORECASE)

E = TypeVar("E", bound=Entity)


def default_budget() -> RateBudget:
    """Per-realm budget under QBO's limits (500/min, 10/s, 10 concurrent).

    A leaky bucket admits its burst plus its rate over any window, so a small burst (2) and
    ~6.7/s keep every 1-s window under 10 and every 60-s window near 400: never a 429 from us.
    """
    return RateBudget(rate=2, period=0.3, concurrency=10)


def default_batch_budget() -> RateBudget:
    """At most ~38 batch calls in any minute (QBO: 40/min per realm)."""
    return RateBudget(rate=1, period=1.6, concurrency=10)


# QuickBooks' published limits per company, for budgets shared across processes
# (`dealbooks_http.BudgetSource`): 500 requests a minute, 10 a second, 10 at once; and 40 batch
# calls a minute.
QBO_LIMITS = Limits(windows=windows_of((10, 1.0), (500, 60.0)), concurrency=10)
QBO_BATCH_LIMITS = Limits(windows=windows_of((40, 60.0)), concurrency=10)


def request_id(realm_id: str, operation: str, idempotency_key: str) -> str:
    """The QBO `requestid` for a write: stable for the same realm, operation and caller key,
    36 characters, so it fits both the 50-character and the batch 36-character limits."""
    return str(uuid.uuid5(_REQUESTID_NS, f"{realm_id}|{operation}|{idempotency_key}"))


@dataclass(frozen=True)
class BatchOperation:
    """One item of a batch: an entity write or a query."""

    operation: Literal["create", "update", "delete", "void", "query"]
    entity: str | None = None
    body: dict[str, Any] | QboModel | None = None
    query: str | None = None
    options: str | None = None

    def as_item(self, bid: str) -> dict[str, Any]:
        if self.operation == "query":
            return {"bId": bid, "Query": self.query}
        assert self.entity is not None and self.body is not None
        body = self.body.to_qbo() if isinstance(self.body, QboModel) else dict(self.body)
        item: dict[str, Any] = {"bId": bid, self.entity: body}
        if self.operation == "void":
            item["operation"] = "update"
            item["optionsData"] = "void"
        else:
            item["operation"] = self.operation
            if self.options:
                item["optionsData"] = self.options
        return item


@dataclass
class BatchResult:
    """The answer to one batch item: an entity, a query page, or a typed error."""

    bid: str
    operation: BatchOperation
    entity: Entity | Deleted | dict[str, Any] | None = None
    page: QueryPage | None = None
    error: QboError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class QboClient:
    """Async QBO Accounting API client, shared by every service.

    Works unchanged against `PRODUCTION_BASE_URL`, `SANDBOX_BASE_URL` or the local sandbox.
    Every call goes through the per-realm `RateBudget`, the `RetryPolicy` (429/5xx/timeouts,
    Retry-After honoured) and the `TokenProvider` (one refresh-and-retry on 401).
    """

    base_url: str
    tokens: TokenProvider
    http: httpx.AsyncClient | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    budget: Budget = field(default_factory=default_budget)
    batch_budget: Budget = field(default_factory=default_batch_budget)
    minor_version: int = MINOR_VERSION
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._host = httpx.URL(self.base_url).host  # labels the budget's waits, never a realm
        self._owns_http = self.http is None
        if self.http is None:
            self.http = async_client(timeout=self.timeout)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http and self.http is not None:
            await self.http.aclose()

    async def __aenter__(self) -> QboClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def company(self, realm_id: str) -> QboCompany:
        """Operations on one company (realm)."""
        return QboCompany(self, realm_id)

    async def request(
        self,
        realm_id: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        content_type: str = "application/json",
        weight: int = 1,
        batch: bool = False,
    ) -> Any:
        """One QBO call with budget, retries and token refresh; returns the parsed JSON body."""
        assert self.http is not None
        http = self.http
        url = f"{self.base_url}/v3/company/{realm_id}/{path.lstrip('/')}"
        query = {"minorversion": str(self.minor_version), **(params or {})}
        payload = _json.dumps(body) if body is not None else content

        async def send() -> httpx.Response:
            token = await self.tokens.token(realm_id)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if payload is not None or method == "POST":
                headers["Content-Type"] = content_type
            response = await http.request(
                method, url, params=query, content=payload, headers=headers
            )
            if response.status_code == 401:
                await self.tokens.invalidate(realm_id, token)
            return response

        async def attempt() -> Any:
            async with self._slots(realm_id, weight, batch):
                response = await send()
            if response.status_code == 401:
                # One refresh-and-retry: the provider was told the old token failed.
                async with self._slots(realm_id, weight, batch):
                    response = await send()
            if response.status_code in RETRYABLE_STATUS:
                raise RetryableHTTPError(response, retry_after_seconds(response))
            if response.status_code >= 400:
                raise fault_from_response(response)
            if response.headers.get("content-type", "").startswith("application/pdf"):
                return response.content
            return _json.loads(response.content)

        try:
            return await self.retry.run(attempt)
        except RetryableHTTPError as exc:
            raise fault_from_response(exc.response) from exc

    def _slots(self, realm_id: str, weight: int, batch: bool) -> Any:
        host = self._host
        if not batch:
            return self.budget.slot(realm_id, weight, host=host)
        return _Nested(
            self.batch_budget.slot(realm_id, host=host),
            self.budget.slot(realm_id, weight, host=host),
        )


class _Nested:
    """Hold two budget slots together (a batch counts against both budgets)."""

    def __init__(self, outer: Any, inner: Any) -> None:
        self._outer, self._inner = outer, inner

    async def __aenter__(self) -> None:
        await self._outer.__aenter__()
        try:
            await self._inner.__aenter__()
        except BaseException:
            await self._outer.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._inner.__aexit__(*exc)
        finally:
            await self._outer.__aexit__(*exc)


@dataclass
class QboCompany:
    """The QBO API for one realm. Writes take an `idempotency_key`: the same key yields the
    same `requestid`, so a retried or redelivered write creates nothing twice."""

    client: QboClient
    realm_id: str

    async def _write(
        self,
        entity: str,
        body: dict[str, Any],
        idempotency_key: str | None,
        operation: str,
        params: dict[str, str] | None = None,
    ) -> Any:
        key = idempotency_key or uuid.uuid4().hex
        query = {"requestid": request_id(self.realm_id, f"{operation}:{entity}", key)}
        query.update(params or {})
        return await self.client.request(
            self.realm_id, "POST", entity.lower(), params=query, body=body
        )

    @staticmethod
    def _body(obj: dict[str, Any] | QboModel) -> dict[str, Any]:
        return obj.to_qbo() if isinstance(obj, QboModel) else dict(obj)

    async def create(
        self,
        model: type[E],
        body: dict[str, Any] | QboModel,
        *,
        idempotency_key: str | None = None,
        allow_duplicate_doc_number: bool = False,
    ) -> E:
        """Create an entity; returns it as QBO stored it (Id, SyncToken, computed fields)."""
        name = model.__name__
        params = {"include": "allowduplicatedocnum"} if allow_duplicate_doc_number else None
        data = await self._write(name, self._body(body), idempotency_key, "create", params)
        return model.model_validate(data[name])

    async def read(self, model: type[E], entity_id: str) -> E:
        """Read one entity by Id (NotFound if deleted or unknown)."""
        name = model.__name__
        data = await self.client.request(self.realm_id, "GET", f"{name.lower()}/{entity_id}")
        return model.model_validate(data[name])

    async def update(
        self,
        model: type[E],
        body: dict[str, Any] | QboModel,
        *,
        sparse: bool = True,
        idempotency_key: str | None = None,
    ) -> E:
        """Update with the body's Id and SyncToken; sparse by default (only sent fields change).
        A full update (sparse=False) resets writable fields left out. StaleObject on 5010."""
        name = model.__name__
        payload = self._body(body)
        if not payload.get("Id") or payload.get("SyncToken") is None:
            raise ValueError("update needs Id and SyncToken")
        payload["sparse"] = sparse
        data = await self._write(name, payload, idempotency_key, "update")
        return model.model_validate(data[name])

    async def delete(
        self,
        model: type[Entity],
        entity_id: str,
        sync_token: str,
        *,
        idempotency_key: str | None = None,
    ) -> Deleted:
        """Delete a transaction (Invoice, Payment). Name lists are inactivated instead."""
        name = model.__name__
        data = await self._write(
            name,
            {"Id": entity_id, "SyncToken": sync_token},
            idempotency_key,
            "delete",
            {"operation": "delete"},
        )
        return Deleted.model_validate(data[name])

    async def inactivate(
        self, model: type[E], entity_id: str, sync_token: str, *, idempotency_key: str | None = None
    ) -> E:
        """Make a Customer/Item inactive (QBO appends ' (deleted)' to its name)."""
        body = {"Id": entity_id, "SyncToken": sync_token, "Active": False}
        return await self.update(model, body, idempotency_key=idempotency_key)

    async def void_invoice(
        self, invoice_id: str, sync_token: str, *, idempotency_key: str | None = None
    ) -> Invoice:
        """Void: amounts become 0, PrivateNote 'Voided', SyncToken moves."""
        data = await self._write(
            "Invoice",
            {"Id": invoice_id, "SyncToken": sync_token},
            idempotency_key,
            "void",
            {"operation": "void"},
        )
        return Invoice.model_validate(data["Invoice"])

    async def void_payment(
        self, payment_id: str, sync_token: str, *, idempotency_key: str | None = None
    ) -> Payment:
        """Void a payment; the invoices it paid get their balance back."""
        data = await self._write(
            "Payment",
            {"Id": payment_id, "SyncToken": sync_token, "sparse": True},
            idempotency_key,
            "void",
            {"operation": "update", "include": "void"},
        )
        return Payment.model_validate(data["Payment"])

    async def send_invoice(
        self, invoice_id: str, *, send_to: str | None = None, idempotency_key: str | None = None
    ) -> Invoice:
        """E-mail the invoice (EmailStatus becomes EmailSent, DeliveryInfo is set)."""
        key = idempotency_key or uuid.uuid4().hex
        params = {"requestid": request_id(self.realm_id, "send:Invoice", key)}
        if send_to:
            params["sendTo"] = send_to
        data = await self.client.request(
            self.realm_id,
            "POST",
            f"invoice/{invoice_id}/send",
            params=params,
            content=b"",
            content_type="application/octet-stream",
        )
        return Invoice.model_validate(data["Invoice"])

    async def invoice_pdf(self, invoice_id: str) -> bytes:
        """The invoice as PDF bytes."""
        data = await self.client.request(self.realm_id, "GET", f"invoice/{invoice_id}/pdf")
        return cast(bytes, data)

    async def company_info(self) -> CompanyInfo:
        """CompanyInfo (Country decides the tax model)."""
        path = f"companyinfo/{self.realm_id}"
        data = await self.client.request(self.realm_id, "GET", path)
        return CompanyInfo.model_validate(data["CompanyInfo"])

    async def preferences(self) -> Preferences:
        """Preferences (CustomTxnNumbers, HomeCurrency, MultiCurrencyEnabled, ...)."""
        data = await self.client.request(self.realm_id, "GET", "preferences")
        return Preferences.model_validate(data["Preferences"])

    async def query_page(self, statement: str | Select) -> QueryPage:
        """Run one SELECT as written; returns the page (empty page: no rows)."""
        params = {"query": str(statement)}
        data = await self.client.request(self.realm_id, "GET", "query", params=params)
        return QueryPage.from_response(data["QueryResponse"])

    async def count(self, entity: str, where: str | None = None) -> int:
        """SELECT COUNT(*) FROM entity [WHERE ...]."""
        statement = f"SELECT COUNT(*) FROM {entity}" + (f" WHERE {where}" if where else "")  # noqa: S608 (QBO query language, read-only)
        page = await self.query_page(statement)
        return page.totalCount or 0

    async def query(
        self, statement: str | Select, *, page_size: int = MAX_RESULTS
    ) -> AsyncIterator[Any]:
        """Every row of a SELECT, page by page, until a short page (never trusts totalCount)."""
        if not 1 <= page_size <= MAX_RESULTS:
            raise ValueError(f"page_size must be within 1..{MAX_RESULTS}")
        base = _PAGING_RE.sub("", str(statement)).strip()
        start = 1
        while True:
            page = await self.query_page(f"{base} STARTPOSITION {start} MAXRESULTS {page_size}")
            for row in page.rows:
                yield row
            if len(page.rows) < page_size:
                return
            start += page_size

    async def query_all(
        self, statement: str | Select, *, page_size: int = MAX_RESULTS
    ) -> list[Any]:
        """`query` collected into a list."""
        return [row async for row in self.query(statement, page_size=page_size)]

    async def batch(
        self, operations: Sequence[BatchOperation], *, idempotency_key: str | None = None
    ) -> list[BatchResult]:
        """Run operations in batches of 30; results come back in the caller's order, matched
        by bId (QBO may reorder). Per-item faults become `BatchResult.error`, typed."""
        results: list[BatchResult] = []
        for start in range(0, len(operations), BATCH_SIZE):
            chunk = list(operations[start : start + BATCH_SIZE])
            bids = [f"b{start + i}" for i in range(len(chunk))]
            items = [op.as_item(bid) for op, bid in zip(chunk, bids, strict=True)]
            params = None
            if idempotency_key:
                params = {"requestid": request_id(self.realm_id, f"batch:{start}", idempotency_key)}
            data = await self.client.request(
                self.realm_id,
                "POST",
                "batch",
                params=params,
                body={"BatchItemRequest": items},
                weight=len(items),
                batch=True,
            )
            by_bid = {str(r.get("bId")): r for r in data.get("BatchItemResponse", [])}
            for op, bid in zip(chunk, bids, strict=True):
                results.append(_batch_result(bid, op, by_bid.get(bid)))
        return results

    async def cdc(self, entities: Sequence[str], changed_since: datetime) -> CdcResult:
        """Changes since `changed_since` (at most 30 days back); use `result.time` next."""
        params = {"entities": ",".join(entities), "changedSince": changed_since.isoformat()}
        data = await self.client.request(self.realm_id, "GET", "cdc", params=params)
        return CdcResult.from_response(data)


def _batch_result(bid: str, op: BatchOperation, item: dict[str, Any] | None) -> BatchResult:
    if item is None:
        missing = QboError(200, [], None)
        return BatchResult(bid, op, error=missing)
    if "Fault" in item:
        return BatchResult(bid, op, error=fault_from_item(item["Fault"]))
    if "QueryResponse" in item:
        return BatchResult(bid, op, page=QueryPage.from_response(item["QueryResponse"]))
    name = op.entity or next(k for k in item if k != "bId")
    data = item.get(name, {})
    if data.get("status") == "Deleted":
        return BatchResult(bid, op, entity=Deleted.model_validate(data))
    model = ENTITY_MODELS.get(name)
    return BatchResult(bid, op, entity=model.model_validate(data) if model else data)
