"""HTTP surface: the QBO v3 API, Intuit's OAuth endpoints, and the /_sandbox control API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import html
import json
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from qbo_sandbox import faults, jsonio, query, seed
from qbo_sandbox.clock import Clock
from qbo_sandbox.company import Company
from qbo_sandbox.config import SandboxConfig
from qbo_sandbox.faults import QboFault
from qbo_sandbox.limits import Limiter
from qbo_sandbox.oauth import OAuthError, OAuthServer
from qbo_sandbox.schema import Leniency
from qbo_sandbox.webhooks import WebhookHub

ENTITY_PATHS = {
    "customer": "Customer",
    "item": "Item",
    "invoice": "Invoice",
    "payment": "Payment",
    "vendor": "Vendor",
    "bill": "Bill",
    "billpayment": "BillPayment",
    "deposit": "Deposit",
    "taxcode": "TaxCode",
    "term": "Term",
    "account": "Account",
}
# What the control API lets a test create or change as a QBO user would.
USER_LISTS = {
    "customers": "Customer",
    "vendors": "Vendor",
    "items": "Item",
    "invoices": "Invoice",
    "bills": "Bill",
    "billpayments": "BillPayment",
    "deposits": "Deposit",
}
CDC_UNSUPPORTED = {"taxcode", "taxrate", "journalcode", "taxagency", "timeactivity"}
JSON_TYPE = "application/json;charset=utf-8"


@dataclass
class FaultPlan:
    """Injected misbehaviour, per realm (or for every realm under the key '*')."""

    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int = 503
    throttle_burst: int = 0
    throttle_format: str | None = None
    retry_after: int | None = None
    timeout_burst: int = 0


@dataclass
class Sandbox:
    config: SandboxConfig
    clock: Clock = field(default_factory=Clock)
    companies: dict[str, Company] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.oauth = OAuthServer(self.config, self.clock)
        self.limiter = Limiter(self.config)
        self.hub = WebhookHub(self.config, self.clock)
        self.faults: dict[str, FaultPlan] = {}
        self.rng = random.Random()

    def add_company(self, spec: dict[str, Any]) -> Company:
        realm_id = str(spec.get("realm_id") or self._new_realm_id())
        if realm_id in self.companies:
            raise ValueError(f"realm {realm_id} exists")
        environment = spec.get("environment", "sandbox")
        if environment not in {"sandbox", "production"}:
            raise ValueError("environment must be sandbox or production")
        company = Company(
            realm_id=realm_id,
            name=spec.get("name") or f"Sandbox Company {realm_id[-4:]}",
            country=str(spec.get("country", "US")).upper(),
            clock=self.clock,
            environment=environment,
            home_currency=spec.get("home_currency", ""),
            multicurrency=bool(spec.get("multicurrency", False)),
            custom_txn_numbers=bool(spec.get("custom_txn_numbers", False)),
            enforce_unique_docnumber=self.config.enforce_unique_docnumber,
            send_bumps_synctoken=self.config.send_bumps_synctoken,
            require_docnumber_with_custom=self.config.require_docnumber_with_custom,
            leniency=Leniency(
                empty_string_as_absent=self.config.empty_string_as_absent,
                numbers_from_strings=self.config.numbers_from_strings,
            ),
            qty_price_check=self.config.qty_price_check,
            edition=str(spec.get("edition") or seed.DEFAULT_EDITION),
        )
        if spec.get("demo_data"):
            company.seed_demo_data()
        company.listeners.append(self.hub.publish)
        self.companies[realm_id] = company
        return company

    def _new_realm_id(self) -> str:
        while True:
            candidate = str(self.rng.randrange(10**14, 10**16))
            if candidate not in self.companies:
                return candidate

    def seed(self) -> None:
        if self.config.seed == "none":
            return
        if self.config.seed == "demo":
            specs = seed.DEMO_COMPANIES
        else:
            specs = json.loads(Path(self.config.seed).read_text())
        for spec in specs:
            self.add_company(spec)

    def plan_for(self, realm_id: str) -> FaultPlan | None:
        return self.faults.get(realm_id) or self.faults.get("*")


def company_summary(c: Company) -> dict[str, Any]:
    return {
        "realm_id": c.realm_id,
        "name": c.name,
        "country": c.country,
        "environment": c.environment,
        "home_currency": c.home_currency,
        "multicurrency": c.multicurrency,
        "custom_txn_numbers": c.custom_txn_numbers,
        "edition": seed.offering_sku(c.edition),
    }


def qbo_json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    hdrs = {"intuit_tid": uuid.uuid4().hex, "QBO-Version": "sandbox"}
    hdrs.update(headers or {})
    return Response(jsonio.dumps(body), status_code=status, media_type=JSON_TYPE, headers=hdrs)


def fault_response(company: Company | None, fault: QboFault) -> Response:
    body: dict[str, Any] = {"Fault": fault.fault_body()}
    if company is not None:
        body["time"] = company.envelope_time()
    return qbo_json(body, status=fault.status)


def gateway_response(
    status: int, code: str, message: str, detail: str, fault_type: str
) -> Response:
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Intuit", error="invalid_token"'
    body = faults.gateway_body(code, message, detail, fault_type)
    body["time"] = int(datetime.now(UTC).timestamp() * 1000)
    return qbo_json(body, status=status, headers=headers)


def throttle_response(sb: Sandbox, company: Company, plan: FaultPlan | None) -> Response:
    fmt = (
        plan.throttle_format if plan and plan.throttle_format else None
    ) or sb.config.throttle_format
    headers = {}
    if plan and plan.retry_after is not None:
        headers["Retry-After"] = str(plan.retry_after)
    if fmt == "xml":
        xml = faults.THROTTLE_XML.format(time=company.envelope_time())
        return Response(xml, status_code=429, media_type="application/xml", headers=headers)
    return qbo_json(
        {"Fault": faults.throttle_json(), "time": company.envelope_time()}, 429, headers
    )


# ------------------------------------------------------------------ QBO API


async def api(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    realm_id = request.path_params["realm"]
    company = sb.companies.get(realm_id)
    problem, grant = sb.oauth.check(_bearer(request))
    if problem == "invalid":
        return gateway_response(
            401,
            "3200",
            "message=AuthenticationFailed; errorCode=003200; statusCode=401",
            "Token invalid or revoked",
            "AUTHENTICATION",
        )
    if problem == "expired":
        return gateway_response(
            401,
            "3200",
            "message=AuthenticationFailed; errorCode=003200; statusCode=401",
            f"Token expired: {(_bearer(request) or '')[:24]}",
            "AUTHENTICATION",
        )
    if (
        company is None
        or grant is None
        or grant.realm_id != realm_id
        or grant.environment != company.environment
    ):
        return gateway_response(
            403,
            "3100",
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            "",
            "SERVICE",
        )
    plan = sb.plan_for(realm_id)
    usage = sb.limiter.for_realm(realm_id)
    stall = False
    if plan is not None:
        if plan.throttle_burst > 0:
            plan.throttle_burst -= 1
            usage.injected_throttles += 1
            return throttle_response(sb, company, plan)
        if plan.timeout_burst > 0:
            # The write happens, the answer never arrives in time: the case requestid exists for.
            plan.timeout_burst -= 1
            stall = True
        if plan.error_rate and sb.rng.random() < plan.error_rate:
            return qbo_json(
                {
                    "Fault": {
                        "Error": [
                            {
                                "Message": "An application error has occurred",
                                "Detail": "Injected fault",
                                "code": "10000",
                            }
                        ],
                        "type": "SystemFault",
                    },
                    "time": company.envelope_time(),
                },
                plan.error_status,
            )
    rest = request.path_params["rest"].strip("/")
    is_batch = rest == "batch" and request.method == "POST"
    raw = await request.body()
    weight = 1
    if is_batch:
        with contextlib.suppress(Exception):
            weight = max(1, len(jsonio.loads(raw).get("BatchItemRequest") or []))
    if not sb.limiter.admit(realm_id, weight=weight, batch=is_batch):
        return throttle_response(sb, company, plan)
    try:
        if plan is not None and plan.latency_ms:
            # Slow answers occupy an in-flight slot, as on QBO (10 concurrent per realm).
            await asyncio.sleep(plan.latency_ms / 1000)
        response = _with_requestid(sb, company, request, rest, raw)
    finally:
        sb.limiter.release(realm_id)
    if stall:
        await asyncio.sleep(30)
    return response


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def _with_requestid(
    sb: Sandbox, company: Company, request: Request, rest: str, raw: bytes
) -> Response:
    requestid = request.query_params.get("requestid")
    if request.method != "POST" or not requestid:
        return _route(sb, company, request, rest, raw)
    digest = hashlib.sha256(
        raw + rest.encode() + str(request.query_params.get("operation")).encode()
    ).hexdigest()
    seen = company.requestids.get(requestid)
    if seen is not None:
        status, body, media, first_digest = seen
        if sb.config.requestid_conflict_600 and first_digest != digest:
            return fault_response(
                company,
                QboFault(
                    "600",
                    "Duplicate Request Id",
                    "RequestId already exists in the system, duplicate request is detected",
                    element="",
                ),
            )
        return Response(body, status_code=status, media_type=media)
    response = _route(sb, company, request, rest, raw)
    if response.status_code < 500:
        company.requestids[requestid] = (
            response.status_code,
            bytes(response.body),
            response.media_type or JSON_TYPE,
            digest,
        )
    return response


def _route(sb: Sandbox, company: Company, request: Request, rest: str, raw: bytes) -> Response:
    try:
        return _dispatch(sb, company, request, rest, raw)
    except QboFault as fault:
        return fault_response(company, fault)


def _parse_body(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QboFault(
            "500", "Unsupported Operation", "Unsupported Operation : MalformedByteSequenceException"
        ) from exc
    try:
        return jsonio.loads(text)
    except json.JSONDecodeError as exc:
        raise QboFault(
            "2010",
            "Request has invalid or unsupported property",
            f"Error parsing object: {exc.msg}",
        ) from exc


def _check_id(entity: str, rid: str) -> None:
    if entity != "TaxCode" and not rid.isdigit():
        raise QboFault(
            "2030", "Invalid ID", f"Id should be a valid number. Supplied value:{rid}", element="Id"
        )


def _dispatch(sb: Sandbox, company: Company, request: Request, rest: str, raw: bytes) -> Response:
    parts = rest.split("/")
    head = parts[0].lower()
    params = dict(request.query_params)
    method = request.method
    envelope_time = company.envelope_time
    if head == "query" and len(parts) == 1:
        statement = params.get("query")
        if method == "POST" and not statement:
            statement = raw.decode("utf-8", "replace")
        if not statement:
            raise faults.invalid_query("no query given", "4000")
        result = query.run(company, statement, sb.config.max_results)
        return qbo_json({"QueryResponse": result, "time": envelope_time()})
    if head == "batch" and len(parts) == 1 and method == "POST":
        return qbo_json(
            {"BatchItemResponse": _batch(sb, company, _parse_body(raw)), "time": envelope_time()}
        )
    if head == "cdc" and len(parts) == 1 and method == "GET":
        return qbo_json(
            {"CDCResponse": [{"QueryResponse": _cdc(sb, company, params)}], "time": envelope_time()}
        )
    if head == "companyinfo" and len(parts) == 1 and method == "POST":
        info = company.update_company_info(_parse_body(raw))
        return qbo_json({"CompanyInfo": info, "time": envelope_time()})
    if head == "companyinfo" and len(parts) == 2 and method == "GET":
        if parts[1] not in {company.realm_id, "1"}:
            raise faults.not_found()
        return qbo_json({"CompanyInfo": company.company_info, "time": envelope_time()})
    if head == "preferences" and len(parts) == 1:
        if method == "POST":
            company.update_preferences(_parse_body(raw))
        return qbo_json({"Preferences": company.preferences, "time": envelope_time()})
    entity = ENTITY_PATHS.get(head)
    if entity is None:
        raise faults.unsupported(request.url.path)
    if len(parts) == 1 and method == "POST":
        body = _parse_body(raw)
        if not isinstance(body, dict):
            raise faults.required(entity)
        record = _write(company, entity, params.get("operation"), body, params)
        return qbo_json({entity: record, "time": envelope_time()})
    if len(parts) == 2 and method == "GET":
        _check_id(entity, parts[1])
        return qbo_json({entity: company.get(entity, parts[1]), "time": envelope_time()})
    if len(parts) == 3 and entity == "Invoice" and parts[2] == "send" and method == "POST":
        _check_id(entity, parts[1])
        return qbo_json(
            {
                "Invoice": company.send_invoice(parts[1], params.get("sendTo")),
                "time": envelope_time(),
            }
        )
    if len(parts) == 3 and entity == "Invoice" and parts[2] == "pdf" and method == "GET":
        invoice = company.get("Invoice", parts[1])
        pdf = (
            b"%PDF-1.4\n% dealbooks sandbox invoice "
            + str(invoice.get("DocNumber", "")).encode()
            + b"\n%%EOF\n"
        )
        return Response(pdf, media_type="application/pdf")
    raise faults.unsupported(request.url.path)


def _write(
    company: Company,
    entity: str,
    operation: str | None,
    body: dict[str, Any],
    params: dict[str, str],
) -> dict[str, Any]:
    if operation == "delete":
        return company.delete(entity, body)
    if operation == "void":
        return company.void(entity, body)
    if operation in (None, "create", "update"):
        if body.get("Id"):
            return company.update(entity, body, params)
        return company.create(entity, body, params)
    raise faults.unsupported(
        f"/v3/company/{company.realm_id}/{entity.lower()}?operation={operation}"
    )


def _batch(sb: Sandbox, company: Company, body: Any) -> list[dict[str, Any]]:
    items = body.get("BatchItemRequest") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise faults.required("BatchItemRequest")
    if len(items) > sb.config.batch_max_items:
        raise QboFault(
            "1040",
            "Batch size exceeds allowed limit",
            f"Batch size {len(items)} exceeds the allowed limit of {sb.config.batch_max_items}",
        )
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for item in items:
        bid = str(item.get("bId", ""))
        if not bid or bid in seen:
            raise QboFault(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter bId is missing or not unique in the request",
                element="bId",
            )
        seen.add(bid)
        try:
            out.append({**_batch_item(sb, company, item), "bId": bid})
        except QboFault as fault:
            out.append({"Fault": fault.fault_body(), "bId": bid})
    return out


def _batch_item(sb: Sandbox, company: Company, item: dict[str, Any]) -> dict[str, Any]:
    if "Query" in item:
        return {"QueryResponse": query.run(company, str(item["Query"]), sb.config.max_results)}
    entity = next((e for e in ENTITY_PATHS.values() if e in item), None)
    if entity is None:
        raise faults.unsupported("batch item without a supported entity")
    body = item[entity]
    operation = item.get("operation", "create")
    options = str(item.get("optionsData") or "")
    params = {"include": "allowduplicatedocnum"} if "allowduplicatedocnum" in options else {}
    if operation == "update" and "void" in options:
        if entity == "Payment":
            params["include"] = "void"
            return {entity: company.update(entity, body, params)}
        return {entity: company.void(entity, body)}
    if operation == "void":
        return {entity: company.void(entity, body)}
    if operation == "delete":
        return {entity: company.delete(entity, body)}
    if operation == "update":
        return {entity: company.update(entity, body, params)}
    if operation == "create":
        return {entity: company.create(entity, body, params)}
    raise QboFault(
        "2170", "Invalid Enumeration", f"Invalid Enumeration : {operation}", element="operation"
    )


def _parse_since(raw: str | None, company: Company) -> datetime:
    if not raw:
        raise faults.required("changedSince")
    try:
        parsed = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError as exc:
        raise QboFault(
            "2040", "Invalid Date", f"Invalid Date : changedSince={raw}", element="changedSince"
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=company.tz)
    return parsed


def _cdc(sb: Sandbox, company: Company, params: dict[str, str]) -> list[dict[str, Any]]:
    since = _parse_since(params.get("changedSince"), company)
    company.settle_balances()
    if since < company.clock.now() - timedelta(days=sb.config.cdc_days):
        # UNVERIFIED: the real code and wording for a too-old changedSince.
        raise QboFault(
            "4001",
            "Invalid query",
            f"QueryValidationError: changedSince must be within the last {sb.config.cdc_days} days",
        )
    names = [n.strip() for n in (params.get("entities") or "").split(",") if n.strip()]
    if not names:
        raise faults.required("entities")
    budget = sb.config.cdc_max_objects
    out: list[dict[str, Any]] = []
    for name in names:
        if name.lower() in CDC_UNSUPPORTED:
            raise faults.invalid_query(f"CDC is not supported for {name}")
        entity = ENTITY_PATHS.get(name.lower())
        if entity is None:
            out.append({})
            continue
        changed: list[tuple[datetime, dict[str, Any]]] = [
            (company.updated_at[(entity, rid)], rec)
            for rid, rec in company.records[entity].items()
            if company.updated_at.get((entity, rid), since) >= since
        ]
        changed += [
            (
                when,
                {
                    "domain": "QBO",
                    "status": "Deleted",
                    "Id": rid,
                    "MetaData": {"LastUpdatedTime": company.local(when)},
                },
            )
            for (ent, rid), when in company.tombstones.items()
            if ent == entity and when >= since
        ]
        changed.sort(key=lambda pair: pair[0])
        rows = [rec for _, rec in changed][: max(0, budget)]
        budget -= len(rows)
        if not rows:
            out.append({})
            continue
        out.append(
            {entity: rows, "startPosition": 1, "maxResults": len(rows), "totalCount": len(rows)}
        )
    return out


# ------------------------------------------------------------------ OAuth


def _chooser_page(request: Request, companies: list[Any]) -> str:
    """Intuit's consent screen, reduced to its one question: which company to connect."""
    keep = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in request.query_params.items()
    )
    options = "".join(
        f'<p><input type="radio" name="sandbox_realm" id="c{c.realm_id}" value="{c.realm_id}"'
        f'{" checked" if i == 0 else ""}><label for="c{c.realm_id}">'
        f"{html.escape(c.name)}</label></p>"
        for i, c in enumerate(companies)
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Connect to "
        "QuickBooks (sandbox)</title></head><body><main><h1>Connect to QuickBooks</h1>"
        "<form method='get' action='/connect/oauth2'><fieldset><legend>Select a company"
        f"</legend>{options}</fieldset>{keep}<p><button type='submit'>Connect</button></p>"
        "</form></main></body></html>"
    )


async def authorize(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    q = request.query_params
    redirect_uri = q.get("redirect_uri")
    if not redirect_uri or q.get("response_type") != "code":
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    try:
        sb.oauth.app(q.get("client_id"))
    except OAuthError as exc:
        return JSONResponse(exc.body(), status_code=400)
    if q.get("sandbox_consent") == "deny":
        return RedirectResponse(
            f"{redirect_uri}?{urlencode({'error': 'access_denied', 'state': q.get('state', '')})}"
        )
    app = sb.oauth.app(q.get("client_id"))
    if not q.get("sandbox_realm") and sb.config.company_chooser:
        choices = [c for c in sb.companies.values() if c.environment == app.environment]
        return HTMLResponse(_chooser_page(request, choices))
    realm_id = q.get("sandbox_realm") or next(
        (c.realm_id for c in sb.companies.values() if c.environment == app.environment), None
    )
    company = sb.companies.get(realm_id or "")
    if company is None:
        return JSONResponse(
            {"error": "invalid_request", "error_description": "no company"}, status_code=400
        )
    # The grant belongs to the environment of the keys: a sandbox realm authorized with
    # production keys answers 403 ApplicationAuthorizationFailed, as QBO does.
    code = sb.oauth.authorize(app.client_id, company.realm_id, app.environment, redirect_uri)
    query_string = urlencode(
        {"code": code, "state": q.get("state", ""), "realmId": company.realm_id}
    )
    return RedirectResponse(f"{redirect_uri}?{query_string}", status_code=302)


def _client_credentials(request: Request, form: dict[str, Any]) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("basic "):
        try:
            cid, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return cid, secret
        except (ValueError, UnicodeDecodeError):
            return None, None
    return form.get("client_id"), form.get("client_secret")


async def token(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    # Form bodies parsed here, so the sandbox needs no multipart library.
    form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
    try:
        app = sb.oauth.app(*_client_credentials(request, form))
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            body = sb.oauth.exchange_code(app, str(form.get("code", "")), form.get("redirect_uri"))
        elif grant_type == "refresh_token":
            body = sb.oauth.refresh_grant(app, str(form.get("refresh_token", "")))
        else:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type} is not supported")
    except OAuthError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def revoke(request: Request) -> Response:
    sb: Sandbox = request.app.state.sandbox
    try:
        payload = await request.json()
        app = sb.oauth.app(*_client_credentials(request, {}))
    except OAuthError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    except ValueError:
        return JSONResponse({"error": "invalid_request"}, status_code=400)
    sb.oauth.revoke(app, str(payload.get("token", "")))
    return JSONResponse({})


# ------------------------------------------------------------------ control API


def _sb(request: Request) -> Sandbox:
    sandbox: Sandbox = request.app.state.sandbox
    return sandbox


def _company_or_404(request: Request) -> Company:
    company = _sb(request).companies.get(request.path_params["realm"])
    if company is None:
        raise LookupError(request.path_params["realm"])
    return company


def _plain(obj: Any) -> Any:
    return json.loads(jsonio.dumps(obj), parse_float=Decimal)


def control_json(obj: Any, status: int = 200) -> Response:
    return Response(jsonio.dumps(obj), status_code=status, media_type="application/json")


async def _json_or_empty(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = jsonio.loads(raw)
    return body if isinstance(body, dict) else {}


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "companies": len(_sb(request).companies)})


async def companies(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "POST":
        spec = await _json_or_empty(request)
        try:
            company = sb.add_company(spec)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return control_json(company_summary(company), 201)
    return control_json([company_summary(c) for c in sb.companies.values()])


async def company_detail(request: Request) -> Response:
    return control_json(company_summary(_company_or_404(request)))


async def company_preferences(request: Request) -> Response:
    company = _company_or_404(request)
    body = await _json_or_empty(request)
    sales: dict[str, Any] = {}
    if "custom_txn_numbers" in body:
        sales["CustomTxnNumbers"] = bool(body["custom_txn_numbers"])
    prefs: dict[str, Any] = {k: v for k, v in body.items() if k[:1].isupper()}
    if sales:
        prefs.setdefault("SalesFormsPrefs", {}).update(sales)
    if body.get("multicurrency"):
        prefs.setdefault("CurrencyPrefs", {})["MultiCurrencyEnabled"] = True
    company.set_preferences(prefs)
    return control_json({"Preferences": company.preferences, **company_summary(company)})


async def company_edition(request: Request) -> Response:
    """`{"edition": "Advanced"}` (or a full OfferingSku): the company changes edition; its
    CompanyInfo's OfferingSku follows and a CompanyInfo webhook fires."""
    company = _company_or_404(request)
    body = await _json_or_empty(request)
    try:
        info = company.set_edition(str(body.get("edition", "")))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return control_json({"CompanyInfo": info, **company_summary(company)})


async def company_tokens(request: Request) -> Response:
    sb = _sb(request)
    company = _company_or_404(request)
    body = await _json_or_empty(request)
    default_client = next(
        a.client_id for a in sb.config.apps if a.environment == company.environment
    )
    try:
        issued = sb.oauth.connect(
            body.get("client_id", default_client), company.realm_id, company.environment
        )
    except OAuthError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    return control_json(issued)


async def user_create(request: Request) -> Response:
    """A QBO user adds a customer, vendor, item, bill or deposit in the UI: same rules,
    webhooks fire."""
    company = _company_or_404(request)
    entity = USER_LISTS[request.path_params["kind"]]
    body = await _json_or_empty(request)
    if entity == "Item":
        body.setdefault("IncomeAccountRef", {"value": seed.INCOME_ACCOUNT_ID})
    try:
        record = company.create(entity, body, {})
    except QboFault as fault:
        return control_json({"Fault": fault.fault_body()}, 400)
    return control_json({entity: record}, 201)


async def user_update(request: Request) -> Response:
    company = _company_or_404(request)
    entity = USER_LISTS[request.path_params["kind"]]
    current = company.get(entity, request.path_params["id"])
    body = await _json_or_empty(request)
    body.update({"Id": current["Id"], "SyncToken": current["SyncToken"], "sparse": True})
    try:
        record = company.update(entity, body, {})
    except QboFault as fault:
        return control_json({"Fault": fault.fault_body()}, 400)
    return control_json({entity: record})


async def bulk_seed(request: Request) -> Response:
    """Many customers and invoices in one call (benchmarks): `{"customers": {"count": n,
    "display_name": "Customer {n:05d}", "email": "c{n}@example.com", "company_name": ...},
    "invoices": {"count": n, "amount": "100.00", "days": 365}}`. No webhooks fire."""
    company = _company_or_404(request)
    body = await _json_or_empty(request)
    customers = body.get("customers") or {}
    invoices = body.get("invoices") or {}
    options: dict[str, Any] = {
        key: customers[key] for key in ("display_name", "email", "company_name") if key in customers
    }
    options.update({key: invoices[key] for key in ("amount", "days") if key in invoices})
    try:
        seeded = company.bulk_seed(
            int(customers.get("count", 0)), int(invoices.get("count", 0)), **options
        )
    except QboFault as fault:
        return control_json({"Fault": fault.fault_body()}, 400)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return JSONResponse({"error": f"bad bulk spec: {exc}"}, status_code=400)
    return control_json(seeded, 201)


async def record_payment(request: Request) -> Response:
    company = _company_or_404(request)
    invoice = company.get("Invoice", request.path_params["id"])
    body = await _json_or_empty(request)
    amount = Decimal(str(body.get("amount", invoice["Balance"])))
    payload = {
        "CustomerRef": {"value": invoice["CustomerRef"]["value"]},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
    }
    if body.get("txn_date"):
        payload["TxnDate"] = body["txn_date"]
    try:
        payment = company.create("Payment", payload, {})
    except QboFault as fault:
        return control_json({"Fault": fault.fault_body()}, 400)
    return control_json({"Payment": payment, "Invoice": company.get("Invoice", invoice["Id"])}, 201)


async def mark_emailed(request: Request) -> Response:
    company = _company_or_404(request)
    invoice = company.get("Invoice", request.path_params["id"])
    body = await _json_or_empty(request)
    address = (
        body.get("to") or (invoice.get("BillEmail") or {}).get("Address") or "customer@example.com"
    )
    company.mark_emailed(invoice, address)
    return control_json({"Invoice": invoice})


async def outbox(request: Request) -> Response:
    return control_json(_company_or_404(request).outbox)


async def stats(request: Request) -> Response:
    return control_json(_sb(request).limiter.for_realm(request.path_params["realm"]).stats())


async def fault_plan(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "DELETE":
        sb.faults.clear()
        sb.hub.drop_next = 0
        sb.hub.duplicate = False
        return control_json({"faults": {}})
    body = await _json_or_empty(request)
    realm = str(body.pop("realm_id", "*"))
    sb.hub.drop_next = int(body.pop("drop_webhooks", sb.hub.drop_next))
    sb.hub.duplicate = bool(body.pop("duplicate_webhooks", sb.hub.duplicate))
    if "expire_tokens" in body and body.pop("expire_tokens"):
        sb.oauth.expire_all()
    try:
        sb.faults[realm] = FaultPlan(**body)
    except TypeError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return control_json({"faults": {k: vars(v) for k, v in sb.faults.items()}})


async def chooser(request: Request) -> Response:
    """Whether the consent screen asks which company to connect (`{"enabled": true}`)."""
    sb = _sb(request)
    body = await _json_or_empty(request)
    sb.config.company_chooser = bool(body.get("enabled", True))
    return control_json({"company_chooser": sb.config.company_chooser})


async def clock(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "POST":
        body = await _json_or_empty(request)
        if "set" in body:
            sb.clock.set(datetime.fromisoformat(body["set"]))
        seconds = float(body.get("advance_seconds", 0)) + 86400 * float(body.get("advance_days", 0))
        sb.clock.advance(seconds)
    return control_json(
        {"now": sb.clock.now().isoformat(), "offset_seconds": sb.clock.offset.total_seconds()}
    )


async def webhooks(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "POST":
        body = await _json_or_empty(request)
        try:
            ep = sb.hub.add(
                body["url"],
                body.get("verifier_token", "sandbox-verifier-token"),
                body.get("format", "legacy"),
                body.get("entities"),
                body.get("realms"),
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return control_json(
            {"endpoint_id": ep.endpoint_id, "url": ep.url, "format": ep.format}, 201
        )
    return control_json(
        [
            {
                "endpoint_id": e.endpoint_id,
                "url": e.url,
                "format": e.format,
                "pending": len(e.queue),
                "failures": e.failures,
            }
            for e in sb.hub.endpoints.values()
        ]
    )


async def webhook_delete(request: Request) -> Response:
    await _sb(request).hub.remove(request.path_params["endpoint_id"])
    return control_json({})


async def deliveries(request: Request) -> Response:
    return control_json(_sb(request).hub.deliveries)


async def not_found_handler(request: Request, exc: Exception) -> Response:
    if isinstance(exc, QboFault):
        return control_json({"Fault": exc.fault_body()}, exc.status)
    return JSONResponse({"error": "not found", "detail": str(exc)}, status_code=404)


def build_app(config: SandboxConfig | None = None) -> Starlette:
    """The sandbox as an ASGI app; state lives in `app.state.sandbox`."""
    sandbox = Sandbox(config or SandboxConfig())
    sandbox.seed()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.hub.start()
        try:
            yield
        finally:
            await sandbox.hub.stop()

    routes = [
        Route("/v3/company/{realm}/{rest:path}", api, methods=["GET", "POST"]),
        Route("/connect/oauth2", authorize, methods=["GET"]),
        Route("/oauth2/v1/tokens/bearer", token, methods=["POST"]),
        Route("/v2/oauth2/tokens/revoke", revoke, methods=["POST"]),
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/companies", companies, methods=["GET", "POST"]),
        Route("/_sandbox/companies/{realm}", company_detail, methods=["GET"]),
        Route("/_sandbox/companies/{realm}/preferences", company_preferences, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/tokens", company_tokens, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/edition", company_edition, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/stats", stats, methods=["GET"]),
        Route("/_sandbox/companies/{realm}/outbox", outbox, methods=["GET"]),
        Route(
            "/_sandbox/companies/{realm}/invoices/{id}/payments", record_payment, methods=["POST"]
        ),
        Route("/_sandbox/companies/{realm}/invoices/{id}/emailed", mark_emailed, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/bulk", bulk_seed, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/{kind:str}", user_create, methods=["POST"]),
        Route("/_sandbox/companies/{realm}/{kind:str}/{id}", user_update, methods=["POST"]),
        Route("/_sandbox/faults", fault_plan, methods=["POST", "DELETE"]),
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
        Route("/_sandbox/oauth/chooser", chooser, methods=["POST"]),
        Route("/_sandbox/webhooks", webhooks, methods=["GET", "POST"]),
        Route("/_sandbox/webhooks/deliveries", deliveries, methods=["GET"]),
        Route("/_sandbox/webhooks/{endpoint_id}", webhook_delete, methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            LookupError: not_found_handler,
            KeyError: not_found_handler,
            QboFault: not_found_handler,
        },
    )
    app.state.sandbox = sandbox
    return app
