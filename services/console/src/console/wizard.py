"""The invoice wizard: the company and source, the details, the review, create, and the live
outcome. invoice-builder does the work; these pages ask it with the person's grant.

A submission carries its request id from the moment the details step is shown, so sending it
again never makes a second invoice. When invoice-builder does not answer (it restarts, or a
replica is replaced), the console sends the same request again for a few seconds; if it still
does not answer, the person gets a page that keeps the whole form, says what is happening, and
sends it again by itself, with the same request id.

Each page is headed with the deal's name, from invoice-builder's draft answer (which the
source, details and review steps read anyway); the pages without one (the resend page and the
outcome) have it from the form or the link, as display text only. Without a name, the id.

    GET  /portals/{portal_id}/deals/{deal_id}/invoices/new           company and source
    GET  /portals/{portal_id}/deals/{deal_id}/invoices/new/details   the details step
    POST /portals/{portal_id}/deals/{deal_id}/invoices/new/review    review, search, edit, create
    GET  /portals/{portal_id}/requests/{request_id}                  the outcome, live
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console import domain
from console.backend import BackendError, Person
from console.pages import Pages, Refused, backend_key

BUILDER = "invoice-builder"
# The form fields the resend page does not carry over: the page adds its own.
NOT_CARRIED = ("csrf_token", "action", "attempt")
# The most of a deal's name a heading shows.
DEAL_NAME_SHOWN = 200


class WizardPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.backend = pages.backend
        self.settings = pages.settings

    async def start(self, request: Request) -> Response:
        person = await self.pages.person_of(request)
        portal, deal = _portal(request), str(request.path_params["deal_id"])
        accounts = await self.pages.builder_accounts(person, portal)
        if not accounts:
            return self.pages.render(request, "wizard_no_account.html", deal=deal)
        realm = request.query_params.get("realm") or accounts[0]["realm_id"]
        quotes: list[dict[str, Any]] = []
        problem, deal_name = None, None
        try:
            draft = await self.backend.get(
                person, BUILDER, f"/portals/{portal}/accounts/{realm}/deals/{deal}/draft"
            )
            quotes = draft.get("quotes", [])
            deal_name = shown_name(draft.get("deal_name"))
        except BackendError as exc:
            problem = backend_key(exc)
        return self.pages.render(
            request,
            "wizard_start.html",
            deal=deal,
            deal_name=deal_name,
            accounts=accounts,
            realm=realm,
            quotes=quotes,
            problem=problem,
        )

    async def _facts(
        self, person: Person, portal: str, realm: str, deal: str, quote: str | None
    ) -> dict[str, Any]:
        """What the details step shows: the deal's name, the company, the lines, who to bill,
        the lists."""
        base = f"/portals/{portal}/accounts/{realm}"
        accounts = {a["realm_id"]: a for a in await self.pages.builder_accounts(person, portal)}
        account = accounts.get(realm)
        if account is None:
            raise Refused(404, "errors.not_found")
        is_us = bool(account.get("is_us", (account.get("country") or "US") == "US"))
        ask = self.backend.get
        # Side by side: each is a separate question to invoice-builder (and QuickBooks).
        draft, customers, items, terms, taxes = await asyncio.gather(
            ask(person, BUILDER, f"{base}/deals/{deal}/draft", quote_id=quote),
            ask(person, BUILDER, f"{base}/customers", deal_id=deal, q=""),
            ask(person, BUILDER, f"{base}/items"),
            ask(person, BUILDER, f"{base}/terms"),
            _nothing() if is_us else ask(person, BUILDER, f"{base}/tax-codes"),
        )
        return {
            "deal_name": shown_name(draft.get("deal_name")),
            "account": account,
            "is_us": is_us,
            "draft": draft,
            "proposal": customers.get("proposal"),
            "customers": customers.get("customers", []),
            "items": items.get("items", []),
            "terms": terms.get("terms", []),
            "tax_codes": list((taxes or {}).get("tax-codes", [])),
        }

    async def details(self, request: Request) -> Response:
        person = await self.pages.person_of(request)
        portal, deal = _portal(request), str(request.path_params["deal_id"])
        realm = request.query_params.get("realm", "")
        quote = request.query_params.get("quote") or None
        facts = await self._facts(person, portal, realm, deal, quote)
        lines = lines_from_form(FormData(), facts["draft"].get("lines", []))
        return self.pages.render(
            request,
            "wizard_details.html",
            deal=deal,
            realm=realm,
            quote=quote,
            lines=lines,
            values={},
            due_from_terms=None,
            today=date.today().isoformat(),
            request_id=str(uuid.uuid4()),
            missing=[],
            problem=None,
            **facts,
        )

    async def review(self, request: Request) -> Response:
        """Review (or, from the review, create): the preview's totals and problems first. A
        post that meets invoice-builder not answering keeps its form on the resend page."""
        person = await self.pages.person_of(request)
        form = await request.form()
        try:
            return await self._review(request, person, form)
        except BackendError as exc:
            if not exc.unavailable:
                raise
            return self._resend(request, form, exc)

    async def _review(self, request: Request, person: Person, form: FormData) -> Response:
        portal, deal = _portal(request), str(request.path_params["deal_id"])
        realm = str(form.get("realm") or "")
        quote = str(form.get("quote") or "") or None
        facts = await self._facts(person, portal, realm, deal, quote)
        lines = lines_from_form(form, facts["draft"].get("lines", []))
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        # The review page carries the name as the draft has it now, not as it was posted.
        values["deal_name"] = facts["deal_name"] or ""
        again = {
            "deal": deal,
            "realm": realm,
            "quote": quote,
            "lines": lines,
            "values": values,
            "today": date.today().isoformat(),
            "request_id": values.get("request_id") or str(uuid.uuid4()),
            "due_from_terms": due_from_terms(values, facts["terms"]),
            **facts,
        }
        action = form.get("action")
        if action == "search":
            found = await self.backend.get(
                person, BUILDER, f"/portals/{portal}/accounts/{realm}/customers",
                q=str(form.get("customer_q") or ""),
            )  # fmt: skip
            again["customers"] = found.get("customers", [])
            return self._details_again(request, 200, again, searched=True)
        if action == "edit":
            return self._details_again(request, 200, again)
        missing = domain.missing_choices(lines, needs_tax_codes=not facts["is_us"])
        customer_missing = _customer_missing(form)
        if missing or customer_missing:
            return self._details_again(
                request, 422, again, missing=missing, customer_missing=customer_missing
            )
        body = wizard_body(form, deal, quote, lines, requested_by=person.user_id)
        if action == "create":
            return await self._create(request, person, body, again)
        return await self._preview(request, person, body, again)

    def _details_again(
        self, request: Request, status: int, again: dict[str, Any], **shown: Any
    ) -> Response:
        values = {"missing": [], "problem": None, **shown}
        return self.pages.render(request, "wizard_details.html", status, **values, **again)

    async def _preview(
        self, request: Request, person: Person, body: dict[str, Any], again: dict[str, Any]
    ) -> Response:
        path = f"/portals/{_portal(request)}/accounts/{again['realm']}/preview"
        _, preview, _ = await self.backend.call(person, BUILDER, "POST", path, json=body, ok=(422,))
        problem = (preview or {}).get("problem")
        if problem:
            return self._details_again(request, 422, again, problem=problem)
        return self.pages.render(request, "wizard_review.html", preview=preview, **again)

    async def _create(
        self, request: Request, person: Person, body: dict[str, Any], again: dict[str, Any]
    ) -> Response:
        """Send the request; while invoice-builder does not answer, send the same request (the
        same id) again for a few seconds, then leave it to the resend page."""
        portal = _portal(request)
        path = f"/portals/{portal}/accounts/{again['realm']}/invoice-requests"
        status, answer, _ = await self.backend.call_patiently(
            person, BUILDER, "POST", path, json=body, ok=(409, 422),
            patience=self.settings.resend_patience_seconds,
        )  # fmt: skip
        if status == 422:
            return self._details_again(request, 422, again, problem=(answer or {}).get("problem"))
        if status == 409:
            raise Refused(409, "wizard.taken")
        # The deal, for the outcome's heading while invoice-builder cannot say whose it is.
        about = {"deal": again["deal"]}
        return RedirectResponse(
            f"/portals/{portal}/requests/{answer['request_id']}?{urlencode(about)}", 303
        )

    def _resend(self, request: Request, form: FormData, exc: BackendError) -> Response:
        """The form, kept whole, with what is happening and a button that sends it again; with
        script it is sent again by itself after a pause, a limited number of times."""
        attempt = _attempt(form) + 1
        carried = [(k, str(v)) for k, v in form.multi_items() if k not in NOT_CARRIED]
        response = self.pages.render(
            request,
            "wizard_resend.html",
            503,
            deal=str(request.path_params["deal_id"]),
            deal_name=shown_name(form.get("deal_name")),
            carried=carried,
            action=str(form.get("action") or ""),
            creating=form.get("action") == "create",
            request_id=str(form.get("request_id") or ""),
            attempt=attempt,
            automatic=attempt <= self.settings.resend_automatic_attempts,
            wait=self.settings.resend_wait_seconds,
        )
        response.headers["Retry-After"] = str(self.settings.resend_wait_seconds)
        return response

    async def outcome(self, request: Request) -> Response:
        """The request's outcome, asked again by the page until it is settled. While
        invoice-builder does not answer, the page stays pending and says why."""
        person = await self.pages.person_of(request)
        portal, request_id = _portal(request), str(request.path_params["request_id"])
        restarting = False
        try:
            found = await self.backend.get(
                person, BUILDER, f"/portals/{portal}/invoice-requests/{request_id}"
            )
        except BackendError as exc:
            if not exc.unavailable:
                raise
            found, restarting = {"status": "pending"}, True
        # Whose deal it is comes from the request itself; a link says it only while
        # invoice-builder cannot, and never names it.
        deal = str(found.get("deal_id") or request.query_params.get("deal") or "")
        deal = deal if deal.isdigit() else ""
        part = bool(request.query_params.get("part"))
        deal_name = None
        if deal and not part:  # the part the page asks for again has no heading
            deal_name = shown_name(await self.pages.record_name(person, portal, "deals", deal))
        return self.pages.render(
            request,
            "outcome_part.html" if part else "outcome.html",
            503 if restarting else 200,
            outcome=found,
            restarting=restarting,
            request_id=request_id,
            deal=deal or None,
            deal_name=deal_name,
        )


# ---------------------------------------------------------------------- the form, read


def lines_from_form(form: FormData, lines: list[dict[str, Any]]) -> list[domain.LineDraft]:
    drafts = []
    for index, line in enumerate(lines):
        drafts.append(
            domain.LineDraft(
                line_item_id=str(line["line_item_id"]),
                name=str(line.get("name") or line.get("description") or ""),
                quantity=Decimal(str(line["quantity"])),
                price=Decimal(str(line["price"])),
                currency=str(line["currency"]),
                qbo_item_id=str(form.get(f"item_{index}") or line.get("qbo_item_id") or "") or None,
                tax_code_id=str(form.get(f"tax_{index}") or "") or None,
            )
        )
    return drafts


def wizard_body(
    form: FormData,
    deal: str,
    quote: str | None,
    lines: list[domain.LineDraft],
    *,
    requested_by: str | None,
) -> dict[str, Any]:
    """invoice-builder's invoice request (and preview) body from the details form."""
    customer: dict[str, Any]
    choice = str(form.get("customer") or "")
    if choice == "new":
        customer = {
            "kind": "new",
            "display_name": str(form.get("new_name") or "").strip(),
            "email": str(form.get("new_email") or "").strip() or None,
        }
    else:
        if choice == "other":
            choice = str(form.get("customer_other") or "")
        customer = {"kind": "existing", "qbo_customer_id": choice}
    return {
        "deal_id": deal,
        "quote_id": quote,
        "customer": customer,
        "chosen_items": {ln.line_item_id: ln.qbo_item_id for ln in lines if ln.qbo_item_id},
        "tax_codes": {ln.line_item_id: ln.tax_code_id for ln in lines if ln.tax_code_id},
        "terms_id": str(form.get("terms_id") or "") or None,
        "invoice_date": str(form.get("invoice_date") or "") or None,
        "due_date": str(form.get("due_date") or "") or None,
        "customer_message": str(form.get("customer_message") or "").strip() or None,
        "request_id": str(form.get("request_id") or "") or None,
        "requested_by": requested_by,
    }


def due_from_terms(values: dict[str, str], terms: list[dict[str, Any]]) -> date | None:
    """The due date the chosen terms imply, for a page shown again after a post (the script
    shows it at once; without it, this is where a person sees it)."""
    chosen = next((t for t in terms if str(t.get("id")) == values.get("terms_id")), None)
    start = domain.parse_day(values.get("invoice_date")) or date.today()
    return domain.due_date(start, chosen.get("due_days")) if chosen else None


def shown_name(value: Any) -> str | None:
    """A deal's name as a heading shows it: text only, trimmed and at most `DEAL_NAME_SHOWN`
    characters; None (the heading names the deal by its id) when there is none. A carried name
    is what the person's own form or link says: it changes their heading's text, nothing else."""
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())[:DEAL_NAME_SHOWN].strip()
    return name or None


def _customer_missing(form: FormData) -> bool:
    chosen = form.get("customer")
    return (
        not chosen
        or (chosen == "new" and not str(form.get("new_name") or "").strip())
        or (chosen == "other" and not form.get("customer_other"))
    )


def _attempt(form: FormData) -> int:
    try:
        return max(0, int(str(form.get("attempt") or "0")))
    except ValueError:
        return 0


def _portal(request: Request) -> str:
    return str(request.path_params["portal_id"])


async def _nothing() -> None:
    return None
