"""The reminder pages (QuickBooks Online Advanced): for one connected company at a time, its
open reminder tasks and its four workflows (payment, vendor, deposit, unsent), each with its
schedule, wording and owner, which an admin adjusts and then switches on. The reminders
service decides and checks; these pages ask it with the person's grant.

    GET  /portals/{portal_id}/reminders                      ?realm= picks the company
    POST /portals/{portal_id}/reminders/{realm}/{workflow}   save one workflow
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.backend import BackendError, Person
from console.pages import RECORD_SINGULAR, Pages, Refused

SERVICE = "reminders"
WORKFLOWS = ("payment", "vendor", "deposit", "unsent")
# Workflows that count days before a due date; the others count days after only.
DUE_DATE_WORKFLOWS = ("payment", "vendor")


class BadDays(ValueError):
    """A days field that is not whole numbers separated by commas; names the field."""


def days_of(text: str, field: str) -> list[int]:
    """ "1, 7 ,14" as [1, 7, 14]; empty as []. BadDays names the field otherwise."""
    days = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise BadDays(field)
        days.append(int(part))
    return days


def workflow_change(workflow: str, form: FormData) -> dict[str, Any]:
    """The reminders service's change of one workflow from its form (every field given, so
    what the form shows is what is saved)."""
    change: dict[str, Any] = {
        "enabled": form.get("enabled") == "on",
        "days_after": days_of(str(form.get("days_after") or ""), "days_after"),
        "subject": str(form.get("subject") or "").strip(),
        "body": str(form.get("body") or "").strip(),
        "owner_id": str(form.get("owner_id") or "").strip() or None,
        "records_only": form.get("records_only") == "on",
    }
    if workflow in DUE_DATE_WORKFLOWS:
        change["days_before"] = days_of(str(form.get("days_before") or ""), "days_before")
    if workflow == "payment":
        change["send_invoice_email"] = form.get("send_invoice_email") == "on"
    return change


class ReminderPages:
    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.backend = pages.backend

    async def reminders(self, request: Request) -> Response:
        return await self._page(request)

    async def _page(
        self,
        request: Request,
        status: int = 200,
        realm: str | None = None,
        typed: dict[str, Any] | None = None,
    ) -> Response:
        """The page for one company; `typed` is a refused form shown again with its reasons."""
        person = await self.pages.person_of(request)
        portal = str(request.path_params["portal_id"])
        accounts = await self.pages.builder_accounts(person, portal)
        q = request.query_params
        realm = realm or q.get("realm") or (accounts[0]["realm_id"] if accounts else None)
        account = next((a for a in accounts if a["realm_id"] == realm), None)
        if accounts and account is None:
            raise Refused(404, "errors.not_found")
        found: dict[str, Any] = {}
        listed: dict[str, Any] = {}
        tasks: list[dict[str, Any]] = []
        if account is not None:
            base = f"/portals/{portal}/accounts/{realm}/reminders"
            try:
                found, listed = await asyncio.gather(
                    self.backend.get(person, SERVICE, f"{base}/workflows"),
                    self.backend.get(person, SERVICE, f"{base}/tasks", state="open"),
                )
            except BackendError as exc:
                if exc.status != 404:
                    raise
                # Connected a moment ago: the reminders service has not heard of it yet.
                found, listed = {"available": False, "unknown": True}, {}
            tasks = await self._named(person, portal, listed.get("reminders", []))
        owners = await self.pages.owners_of(person, portal) if found.get("workflows") else None
        return self.pages.render(
            request,
            "reminders.html",
            status,
            accounts=accounts,
            account=account,
            company=found,
            workflows=_with_typed(found.get("workflows", []), typed),
            tasks=tasks,
            owners=owners,
            placeholders=", ".join("{" + name + "}" for name in found.get("placeholders", [])),
            saved=q.get("saved"),
            typed=typed,
        )

    async def _named(
        self, person: Person, portal: str, tasks: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The tasks with the names of the deals and companies they are on, where the CRM
        gives them."""
        kinds = {str(r.get("object_type")) for r in tasks if r.get("object_id")}
        for kind in sorted(kinds & RECORD_SINGULAR.keys()):
            of_kind = [r for r in tasks if r.get("object_type") == kind and r.get("object_id")]
            names = await self.pages.record_names(
                person, portal, kind, (str(r["object_id"]) for r in of_kind)
            )
            for r in of_kind:
                r["record_name"] = names.get(str(r["object_id"]))
        return tasks

    async def save(self, request: Request) -> Response:
        person = await self.pages.person_of(request)
        portal = str(request.path_params["portal_id"])
        realm, workflow = str(request.path_params["realm"]), str(request.path_params["workflow"])
        if workflow not in WORKFLOWS:
            raise Refused(404, "errors.not_found")
        form = await request.form()
        typed: dict[str, Any] = {"workflow": workflow, "form": _form_values(form)}
        try:
            change = workflow_change(workflow, form)
        except BadDays as exc:
            typed["problems"], typed["key"] = [str(exc)], "reminders.bad_days"
            return await self._page(request, 422, realm, typed)
        status, answer, _ = await self.backend.call(
            person, SERVICE, "PUT",
            f"/portals/{portal}/accounts/{realm}/reminders/workflows/{workflow}",
            json=change, ok=(400, 409),
        )  # fmt: skip
        if status >= 400:
            body = answer if isinstance(answer, dict) else {}
            typed["problems"] = list(body.get("problems") or [body.get("message") or ""])
            typed["key"] = "reminders.refused"
            return await self._page(request, 422, realm, typed)
        said = urlencode({"realm": realm, "saved": workflow})
        return RedirectResponse(f"/portals/{portal}/reminders?{said}#workflow-{workflow}", 303)


def _form_values(form: FormData) -> dict[str, str]:
    return {k: str(v) for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}


def _with_typed(
    workflows: list[dict[str, Any]], typed: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Each workflow as the service has it, in form words (days as "1, 7, 14"); a refused
    form's workflow as the person typed it."""
    shown = []
    for w in workflows:
        fields = {
            **w,
            "days_before": ", ".join(str(d) for d in w.get("days_before", [])),
            "days_after": ", ".join(str(d) for d in w.get("days_after", [])),
            "owner_id": w.get("owner_id") or "",
        }
        if typed and typed["workflow"] == w["workflow"]:
            form = typed["form"]
            fields.update({k: form.get(k, "") for k in ("days_before", "days_after", "subject",
                                                        "body", "owner_id")})  # fmt: skip
            for box in ("enabled", "send_invoice_email", "records_only"):
                fields[box] = form.get(box) == "on"
        shown.append(fields)
    return shown
