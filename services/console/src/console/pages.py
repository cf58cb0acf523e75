"""The console's pages. Each asks the services with the person's portal grant and renders the
answer; nothing here keeps business state. Forms post back to the console (with the person's
CSRF token), which calls the service and redirects (post/redirect/get), so reloading a page
never repeats an action.

Pages, under /portals/{portal_id}: the home page, accounts (connect, disconnect), a record's
invoices (deal, contact, company), the invoice wizard (account and source, details, review,
create, the live outcome), adding existing invoices, sync settings, the mapping editor with its
dry run and status, auto-draft rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from dealbooks_kit import get_logger
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from console import domain
from console.backend import Backend, BackendError, Person
from console.catalogue import Texts
from console.people import People
from console.settings import ConsoleSettings

log = get_logger(__name__)
HERE = Path(__file__).parent
LANG_COOKIE = "dealbooks_lang"
NO_STORE = {"Cache-Control": "no-store"}
RECORD_SINGULAR = {"deals": "deal", "contacts": "contact", "companies": "company"}
NAMED_AT_ONCE = 100  # the most records status-tracker names in one answer
Endpoint = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """A page cannot be shown; `key` names the catalogue's sentence for the person."""

    def __init__(self, status: int, key: str, detail: str | None = None) -> None:
        super().__init__(key)
        self.status, self.key, self.detail = status, key, detail


def _portal(request: Request) -> str:
    return str(request.path_params["portal_id"])


def _record_type(request: Request) -> str:
    kind = str(request.path_params["object_type"])
    if kind not in domain.RECORD_TYPES:
        raise Refused(404, "errors.not_found")
    return kind


def _record(request: Request) -> tuple[str, str, str]:
    """The portal, record type and record id of a record's page."""
    return _portal(request), _record_type(request), str(request.path_params["object_id"])


def _about_record(kind: str, record_id: str, name: str | None) -> dict[str, Any]:
    """What a record's page says of the record: its type (plural and singular), its id, and
    what to call it (its name in the CRM, else its id)."""
    return {
        "kind": kind,
        "singular": RECORD_SINGULAR[kind],
        "record_id": record_id,
        "record_label": name or record_id,
    }


class Pages:
    """The page endpoints over the backend."""

    def __init__(self, settings: ConsoleSettings, backend: Backend, people: People) -> None:
        self.settings = settings
        self.backend = backend
        self.people = people
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # ------------------------------------------------------------------ rendering

    def texts(self, request: Request) -> Texts:
        person: Person | None = getattr(request.state, "person", None)
        launched = (person.launched or {}).get("lang") if person else None
        return Texts(
            domain.language(
                request.query_params.get("lang"),
                request.cookies.get(LANG_COOKIE),
                launched,
                accept_language=request.headers.get("accept-language"),
            )
        )

    def render(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        t = self.texts(request)
        person: Person | None = getattr(request.state, "person", None)
        portal = request.path_params.get("portal_id") or (person.portals[0] if person else None)
        page = self.env.get_template(template).render(
            t=t,
            lang=t.lang,
            person=person,
            portal=portal,
            advanced_here=domain.shows_advanced(
                person.advanced_portals if person else None, portal
            ),
            csrf=person.csrf if person else "",
            path=request.url.path,
            query=request.url.query,
            money=lambda amount, currency: domain.money(amount, currency, t.lang),
            day=lambda value: domain.day(value, t.lang),
            tones=domain.STAGE_TONES,
            subtotal=domain.subtotal,
            fitting=domain.fitting_properties,
            signin_url=f"{self.settings.signin_base}/signin",
            connect_base=self.settings.signin_base,
            **values,
        )
        response = HTMLResponse(page, status_code=status, headers=NO_STORE)
        chosen = request.query_params.get("lang")
        if chosen in domain.LANGUAGES:
            response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, samesite="lax")
        return response

    def refused(self, request: Request, exc: Exception) -> Response:
        """A page that could not be shown, in the person's words; never a trace or JSON."""
        if isinstance(exc, BackendError):
            key = backend_key(exc)
            return self.render(request, "error.html", _shown_status(exc), key=key, detail=None)
        assert isinstance(exc, Refused)
        return self.render(request, "error.html", exc.status, key=exc.key, detail=exc.detail)

    def crashed(self, request: Request, exc: Exception) -> Response:
        """Anything unforeseen: logged with its trace for operators, a plain page for people."""
        log.error("page failed", path=request.url.path, error=f"{type(exc).__name__}: {exc}",
                  exc_info=exc)  # fmt: skip
        return self.render(request, "error.html", 500, key="errors.generic", detail=None)

    def unauthenticated(self, request: Request, refusal: Response) -> Response:
        """The guard refused: a page sends the person to sign in (or, for a form whose CSRF
        token no longer matches, explains that the form expired)."""
        browser = "text/html" in request.headers.get("accept", "")
        if not browser:
            return refusal  # an API client gets the guard's own answer
        if refusal.status_code == 401 and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/?" + urlencode({"next": target}), 303)
        key = "errors.form_expired" if refusal.status_code == 401 else "errors.forbidden"
        return self.render(request, "error.html", refusal.status_code, key=key, detail=None)

    async def person_of(self, request: Request) -> Person:
        person = await self.people.person(request)
        assert person is not None  # the guard admitted a person
        return person

    # ------------------------------------------------------------------ landing, home

    async def landing(self, request: Request) -> Response:
        person = await self.people.person(request)
        next_url = request.query_params.get("next", "")
        if person is not None:
            if next_url.startswith("/portals/") and "//" not in next_url:
                return RedirectResponse(next_url, 303)
            wanted = request.query_params.get("portal_id")
            portal = wanted if wanted in person.portals else person.portals[0]
            return RedirectResponse(f"/portals/{portal}", 303)
        return self.render(request, "landing.html")

    async def connected(self, request: Request) -> Response:
        """Where connector-auth sends the person back after QuickBooks: the accounts page of
        the portal, saying what happened."""
        person = await self.person_of(request)
        self.people.recheck(request)  # a company more, perhaps on Advanced: the menu follows
        q = request.query_params
        portal = q.get("portal_id") if q.get("portal_id") in person.portals else person.portals[0]
        said = {k: q[k] for k in ("account_id", "error") if q.get(k)}
        return RedirectResponse(f"/portals/{portal}/accounts?{urlencode(said)}", 303)

    async def home(self, request: Request) -> Response:
        person = await self.person_of(request)
        accounts = await self._accounts(person, _portal(request))
        return self.render(request, "home.html", accounts=accounts)

    async def open_record(self, request: Request) -> Response:
        kind = request.query_params.get("type", "deals")
        record = request.query_params.get("id", "").strip()
        if kind not in domain.RECORD_TYPES or not record.isdigit():
            return RedirectResponse(f"/portals/{_portal(request)}?bad_record=1", 303)
        return RedirectResponse(f"/portals/{_portal(request)}/records/{kind}/{record}", 303)

    # ------------------------------------------------------------------ accounts

    async def _accounts(self, person: Person, portal: str) -> list[dict[str, Any]]:
        found = await self.backend.get(person, "connector-auth", f"/v1/portals/{portal}/accounts")
        return [a for a in found.get("results", []) if a.get("status") != "disconnected"]

    async def builder_accounts(self, person: Person, portal: str) -> list[dict[str, Any]]:
        found = await self.backend.get(person, "invoice-builder", f"/portals/{portal}/accounts")
        return list(found.get("accounts", []))

    async def owners_of(self, person: Person, portal: str) -> list[dict[str, Any]] | None:
        """The portal's CRM owners by name, to pick an approver or a task owner from; None
        when they cannot be listed (the owners scope is missing, or the CRM or invoice-builder
        does not answer): the page asks for an owner id instead."""
        try:
            found = await self.backend.get(person, "invoice-builder", f"/portals/{portal}/owners")
        except BackendError as exc:
            log.info("owners not listed", status=exc.status)
            return None
        owners = found.get("owners") if isinstance(found, dict) else None
        if not isinstance(owners, list):
            return None
        return [o for o in owners if isinstance(o, dict) and o.get("id") is not None]

    async def accounts(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal = _portal(request)
        return self.render(
            request,
            "accounts.html",
            accounts=await self._accounts(person, portal),
            connect_url=f"{self.settings.signin_base}/v1/portals/{portal}/quickbooks/connect",
            refused=request.query_params.get("error"),
            connected=request.query_params.get("account_id"),
            disconnected=request.query_params.get("disconnected"),
        )

    async def disconnect(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, account = _portal(request), str(request.path_params["account_id"])
        known = {a["account_id"]: a for a in await self._accounts(person, portal)}
        if account not in known:
            raise Refused(404, "errors.not_found")
        if request.method == "GET":
            return self.render(request, "disconnect.html", account=known[account])
        await self.backend.call(
            person, "connector-auth", "DELETE", f"/v1/portals/{portal}/accounts/{account}"
        )
        self.people.recheck(request)
        return RedirectResponse(f"/portals/{portal}/accounts?disconnected={account}", 303)

    # ------------------------------------------------------------------ a record's invoices

    async def record(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, kind, record_id = _record(request)
        found = await self._record_invoices(person, portal, kind, record_id)
        shown = found.get("shown") or {}
        return self.render(
            request,
            "record.html",
            **_about_record(kind, record_id, found.get("name")),
            invoices=found.get("invoices", []),
            shown=(shown.get("realm_id"), shown.get("invoice_id")),
            added=request.query_params.get("added"),
        )

    async def _record_invoices(
        self, person: Person, portal: str, kind: str, record_id: str
    ) -> dict[str, Any]:
        """The record's invoices and its name in the CRM (status-tracker)."""
        path = f"/portals/{portal}/records/{kind}/{record_id}/invoices"
        found: dict[str, Any] = await self.backend.get(
            person, "status-tracker", path, include="name"
        )
        return found

    async def record_name(
        self, person: Person, portal: str, kind: str, record_id: str
    ) -> str | None:
        """A record's name in the CRM (status-tracker), for a page's heading; None where it
        cannot be read, and the page names the record by its id."""
        try:
            named = await self.backend.get(
                person, "status-tracker", f"/portals/{portal}/records/{kind}/{record_id}"
            )
        except BackendError as exc:
            log.info("record name not read", status=exc.status)
            return None
        name = named.get("name") if isinstance(named, dict) else None
        return name if isinstance(name, str) and name else None

    async def record_names(
        self, person: Person, portal: str, kind: str, record_ids: Iterable[str]
    ) -> dict[str, str]:
        """The names of a list's records in the CRM (status-tracker, one read per hundred),
        by id; a record missing from it is shown by its id."""
        ids = list(dict.fromkeys(str(i) for i in record_ids if i))
        names: dict[str, str] = {}
        for start in range(0, len(ids), NAMED_AT_ONCE):
            chunk = ids[start : start + NAMED_AT_ONCE]
            try:
                found = await self.backend.get(
                    person, "status-tracker", f"/portals/{portal}/records/{kind}",
                    ids=",".join(chunk),
                )  # fmt: skip
            except BackendError as exc:
                log.info("record names not read", status=exc.status)
                break
            said = found.get("names") if isinstance(found, dict) else None
            if isinstance(said, dict):
                names |= {k: v for k, v in said.items() if isinstance(v, str) and v}
        return names

    # ------------------------------------------------------------------ add existing invoices

    async def add_existing(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, kind, record_id = _record(request)
        accounts = await self.builder_accounts(person, portal)
        if request.method == "POST":
            form = await request.form()
            realm = str(form.get("realm") or "")
            chosen = [str(v) for v in form.getlist("invoice") if str(v)]
            if not chosen:
                raise Refused(400, "add.none_chosen")
            for invoice_id in chosen:
                await self.backend.call(
                    person,
                    "invoice-builder",
                    "POST",
                    f"/portals/{portal}/accounts/{realm}/invoice-links",
                    json={
                        "qbo_invoice_id": invoice_id,
                        "target": {"object_type": RECORD_SINGULAR[kind], "object_id": record_id},
                        "requested_by": person.user_id,
                    },
                )
            return RedirectResponse(
                f"/portals/{portal}/records/{kind}/{record_id}?added={len(chosen)}", 303
            )
        realm = request.query_params.get("realm") or (accounts[0]["realm_id"] if accounts else "")
        q = request.query_params.get("q", "").strip()
        found: dict[str, Any] = {"invoices": [], "more": False}
        if realm:
            found = await self.backend.get(
                person,
                "invoice-builder",
                f"/portals/{portal}/accounts/{realm}/invoices",
                q=q,
            )
        return self.render(
            request,
            "add_existing.html",
            **_about_record(
                kind, record_id, await self.record_name(person, portal, kind, record_id)
            ),
            accounts=accounts,
            realm=realm,
            q=q,
            invoices=found.get("invoices", []),
            more=found.get("more", False),
        )

    # ------------------------------------------------------------------ sync and mappings

    def _set(self, request: Request) -> tuple[str, str, str]:
        kind = str(request.path_params["object_type"])
        if kind not in ("contacts", "products"):
            raise Refused(404, "errors.not_found")
        return _portal(request), str(request.path_params["realm"]), kind

    async def sync(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal = _portal(request)
        sets = []
        for account in await self.builder_accounts(person, portal):
            for kind in ("contacts", "products"):
                base = f"/portals/{portal}/accounts/{account['realm_id']}/{kind}"
                found = await self.backend.get(person, "mapping-registry", f"{base}/settings")
                status = await self.backend.get(person, "mapping-registry", f"{base}/status")
                run = await self._latest_run(person, portal, account["realm_id"], kind)
                sets.append(
                    {
                        "account": account,
                        "kind": kind,
                        "version": found["version"],
                        "settings": found["settings"],
                        "records": status.get("records", {}),
                        "failing": sum(1 for m in status.get("mappings", []) if m.get("failed")),
                        "run": run,
                    }
                )
        q = request.query_params
        return self.render(
            request,
            "sync.html",
            sets=sets,
            saved=q.get("saved"),
            backfill_started=q.get("backfill_started"),
            backfill_refused=q.get("backfill_refused"),
        )

    async def save_sync(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, realm, kind = self._set(request)
        form = await request.form()
        settings = {
            "enabled": form.get("enabled") == "on",
            "create_update_policy": str(form.get("create_update_policy") or ""),
            "delete_policy": str(form.get("delete_policy") or ""),
        }
        await self.backend.call(
            person,
            "mapping-registry",
            "PATCH",
            f"/portals/{portal}/accounts/{realm}/{kind}/settings",
            json={k: v for k, v in settings.items() if v != ""},
            headers={"If-Match": f'"{form.get("version")}"'},
        )
        return RedirectResponse(f"/portals/{portal}/sync?saved={realm}-{kind}", 303)

    async def _latest_run(
        self, person: Person, portal: str, realm: str, kind: str
    ) -> dict[str, Any] | None:
        """The set's latest backfill run, if it has one (its state and counts are shown)."""
        service = "contact-sync" if kind == "contacts" else "product-sync"
        status, run, _ = await self.backend.call(
            person, service, "GET", f"/portals/{portal}/accounts/{realm}/backfill", ok=(404,)
        )
        return run if status == 200 and isinstance(run, dict) else None

    async def backfill(self, request: Request) -> Response:
        """Sync the records that existed before sync was switched on (a backfill run of the
        sync service; it refuses while sync is off or a run is going), or resume or cancel
        the set's run (`action`)."""
        person = await self.person_of(request)
        portal, realm, kind = self._set(request)
        service = "contact-sync" if kind == "contacts" else "product-sync"
        action = str((await request.form()).get("action") or "")
        path = f"/portals/{portal}/accounts/{realm}/backfill"
        if action in ("resume", "cancel"):
            path += f"/{action}"
        status, _answer, _ = await self.backend.call(person, service, "POST", path, ok=(409,))
        said = "backfill_started" if status == 202 else "backfill_refused"
        return RedirectResponse(f"/portals/{portal}/sync?{said}={realm}-{kind}", 303)

    async def _mapping_facts(self, person: Person, base: str) -> dict[str, Any]:
        current = await self.backend.get(person, "mapping-registry", f"{base}/mappings")
        options = await self.backend.get(person, "mapping-registry", f"{base}/options")
        status = await self.backend.get(person, "mapping-registry", f"{base}/status")
        health = {m["mapping_id"]: m for m in status.get("mappings", [])}
        return {
            "current": current,
            "options": options,
            "health": health,
            "records": status.get("records", {}),
            "counted_since": status.get("counted_since"),
        }

    async def mappings(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, realm, kind = self._set(request)
        base = f"/portals/{portal}/accounts/{realm}/{kind}"
        facts = await self._mapping_facts(person, base)
        return self.render(
            request,
            "mappings.html",
            realm=realm,
            kind=kind,
            saved=request.query_params.get("saved"),
            **facts,
        )

    def _change(self, form: FormData) -> dict[str, Any]:
        op = str(form.get("op") or "add")
        change: dict[str, Any] = {"op": op}
        if op in ("edit", "delete"):
            change["mapping_id"] = str(form.get("mapping_id") or "")
        if op in ("add", "edit"):
            change["crm_property"] = str(form.get("crm_property") or "")
            change["qbo_field"] = str(form.get("qbo_field") or "")
            transform = str(form.get("transform") or "")
            change["transform"] = transform or None
        return change

    async def mapping_check(self, request: Request) -> Response:
        """The dry run: what the change would write, on a few of the company's records,
        before anything is saved; the page offers Save with the version it was based on."""
        person = await self.person_of(request)
        portal, realm, kind = self._set(request)
        base = f"/portals/{portal}/accounts/{realm}/{kind}"
        form = await request.form()
        change = self._change(form)
        status, answer, _ = await self.backend.call(
            person,
            "mapping-registry",
            "POST",
            f"{base}/dry-run",
            json={"change": change, "sample_size": 5},
            ok=(400, 404, 422),
        )
        problems = _problems(status, answer)
        facts = await self._mapping_facts(person, base)
        return self.render(
            request,
            "mapping_check.html",
            422 if problems else 200,
            realm=realm,
            kind=kind,
            change=change,
            problems=problems,
            records=(answer or {}).get("records", []) if not problems else [],
            version=facts["current"]["version"],
            options=facts["options"],
        )

    async def mapping_save(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, realm, kind = self._set(request)
        base = f"/portals/{portal}/accounts/{realm}/{kind}"
        form = await request.form()
        change = self._change(form)
        headers = {"If-Match": f'"{form.get("version")}"'}
        payload: dict[str, Any] | None = {
            k: v for k, v in change.items() if k not in ("op", "mapping_id")
        }
        call: tuple[str, str, dict[str, Any] | None]
        if change["op"] == "add":
            call = ("POST", f"{base}/mappings", payload)
        elif change["op"] == "edit":
            call = ("PATCH", f"{base}/mappings/{change['mapping_id']}", payload)
        else:
            call = ("DELETE", f"{base}/mappings/{change['mapping_id']}", None)
        status, answer, _ = await self.backend.call(
            person,
            "mapping-registry",
            call[0],
            call[1],
            json=call[2],
            headers=headers,
            ok=(400, 404, 409, 422),
        )
        if status >= 400:
            facts = await self._mapping_facts(person, base)
            return self.render(
                request,
                "mapping_check.html",
                409 if status == 409 else 422,
                realm=realm,
                kind=kind,
                change=change,
                problems=_problems(status, answer),
                records=[],
                version=facts["current"]["version"],
                options=facts["options"],
            )
        return RedirectResponse(f"/portals/{portal}/sync/{realm}/{kind}/mappings?saved=1", 303)

    # ------------------------------------------------------------------ auto-draft rules

    async def rules(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal = _portal(request)
        found = await self.backend.get(
            person, "invoice-builder", f"/portals/{portal}/auto-draft-rules"
        )
        accounts = {a["realm_id"]: a for a in await self.builder_accounts(person, portal)}
        return self.render(
            request,
            "rules.html",
            rules=found.get("rules", []),
            accounts=accounts,
            saved=request.query_params.get("saved"),
            deleted=request.query_params.get("deleted"),
        )

    async def rule(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, rule_id = _portal(request), str(request.path_params["rule_id"])
        accounts = await self.builder_accounts(person, portal)
        if request.method == "POST":
            return await self._save_rule(request, person, portal, rule_id)
        rule: dict[str, Any] = {"enabled": True}
        if rule_id != "new":
            rule = await self.backend.get(
                person, "invoice-builder", f"/portals/{portal}/auto-draft-rules/{rule_id}"
            )
        realm = rule.get("realm_id") or (accounts[0]["realm_id"] if accounts else "")
        terms: list[dict[str, Any]] = []
        if realm:
            terms = (
                await self.backend.get(
                    person, "invoice-builder", f"/portals/{portal}/accounts/{realm}/terms"
                )
            ).get("terms", [])
        return self.render(
            request,
            "rule.html",
            rule_id=rule_id,
            rule=rule,
            accounts=accounts,
            terms=terms,
            problem=None,
        )

    async def _save_rule(
        self, request: Request, person: Person, portal: str, rule_id: str
    ) -> Response:
        form = await request.form()
        rule_id = str(uuid.uuid4()) if rule_id == "new" else rule_id
        body = {
            "realm_id": str(form.get("realm_id") or ""),
            "deal_stage": str(form.get("deal_stage") or "").strip(),
            "enabled": form.get("enabled") == "on",
            "terms_id": str(form.get("terms_id") or "") or None,
            "default_tax_code": str(form.get("default_tax_code") or "") or None,
        }
        if not body["deal_stage"]:
            raise Refused(422, "rules.stage_needed")
        await self.backend.call(
            person,
            "invoice-builder",
            "PUT",
            f"/portals/{portal}/auto-draft-rules/{rule_id}",
            json=body,
        )
        return RedirectResponse(f"/portals/{portal}/rules?saved={rule_id}", 303)

    async def delete_rule(self, request: Request) -> Response:
        person = await self.person_of(request)
        portal, rule_id = _portal(request), str(request.path_params["rule_id"])
        await self.backend.call(
            person, "invoice-builder", "DELETE", f"/portals/{portal}/auto-draft-rules/{rule_id}"
        )
        return RedirectResponse(f"/portals/{portal}/rules?deleted=1", 303)


def _problems(status: int, answer: Any) -> list[dict[str, Any]]:
    """A registry refusal as a list of reasons (its 422 carries one per reason)."""
    if status < 400:
        return []
    body = answer if isinstance(answer, dict) else {}
    if body.get("problems"):
        return list(body["problems"])
    return [{"code": str(status), "message": body.get("error") or "", "field": None}]


def backend_key(exc: BackendError) -> str:
    if exc.status == 0 or exc.status >= 500:
        return "errors.unavailable"
    if str(exc.body.get("code", "")).upper() == "CRM_NOT_CONNECTED":
        return "errors.crm_not_connected"
    if exc.status == 404:
        return "errors.not_found"
    if exc.status in (401, 403):
        return "errors.forbidden"
    if exc.status == 409:
        return "errors.conflict"
    return "errors.generic"


def _shown_status(exc: BackendError) -> int:
    if exc.status == 0 or exc.status >= 500:
        return 503
    return exc.status if exc.status in (403, 404, 409) else 400
