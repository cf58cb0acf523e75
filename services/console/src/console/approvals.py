"""The approval pages (QuickBooks Online Advanced): the invoices of the portal waiting for
approval with each company's approval settings, and one approval with its invoice as it would
be created, whose lines may be edited before it is approved, or which is rejected with a
reason for the deal. invoice-builder decides; these pages ask it with the person's grant, so
the person at the browser is the one recorded as deciding.

    GET  /portals/{portal_id}/approvals                      the list and the settings
    POST /portals/{portal_id}/approvals/settings/{realm}     a company's settings
    GET  /portals/{portal_id}/approvals/{request_id}         one approval
    POST /portals/{portal_id}/approvals/{request_id}         approve (with edits) or reject
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console import domain

if TYPE_CHECKING:
    from console.pages import Pages

STATUSES = ("pending", "approved", "rejected", "all")
BUILDER = "invoice-builder"


def edited_lines(form: FormData, lines: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The invoice's lines with the quantities and prices the form carries: None when none
    changed (approve as asked), else every line as the request takes it. ValueError names a
    value that is not a number."""
    changed = False
    result = []
    for index, line in enumerate(lines):
        asked_qty, asked_price = str(line["quantity"]), str(line["unit_price"]["amount"])
        qty = str(form.get(f"quantity_{index}") or asked_qty).strip()
        price = str(form.get(f"price_{index}") or asked_price).strip()
        new_qty, new_price = domain.decimal_of(qty), domain.decimal_of(price)
        if new_qty is None or new_price is None or new_qty <= 0 or new_price < 0:
            raise ValueError(f"line {index + 1}")
        if new_qty != domain.decimal_of(asked_qty) or new_price != domain.decimal_of(asked_price):
            changed = True
        kept = {k: v for k, v in line.items() if k != "amount"}
        kept["quantity"] = qty
        kept["unit_price"] = {**line["unit_price"], "amount": price}
        result.append(kept)
    return result if changed else None


class ApprovalPages:
    """The approval endpoints, rendered by the console's pages."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.backend = pages.backend

    async def approvals(self, request: Request) -> Response:
        person = await self.pages.people.person(request)
        assert person is not None
        portal = str(request.path_params["portal_id"])
        status = request.query_params.get("status", "pending")
        if status not in STATUSES:
            status = "pending"
        found = await self.backend.get(
            person, BUILDER, f"/portals/{portal}/approvals", status=status
        )
        accounts = await self.backend.get(person, BUILDER, f"/portals/{portal}/accounts")
        settings = await asyncio.gather(
            *(
                self.backend.get(
                    person, BUILDER, f"/portals/{portal}/accounts/{a['realm_id']}/approval-settings"
                )
                for a in accounts.get("accounts", [])
            )
        )
        advanced = any(s.get("advanced") for s in settings)
        owners = await self.pages.owners_of(person, portal) if advanced else None
        listed = found.get("approvals", [])
        deals = await self.pages.record_names(
            person, portal, "deals", (a.get("deal_id") for a in listed)
        )
        for a in listed:
            a["deal_name"] = deals.get(str(a.get("deal_id")))
        q = request.query_params
        return self.pages.render(
            request,
            "approvals.html",
            approvals=listed,
            shown=status,
            statuses=STATUSES,
            settings=list(settings),
            owners=owners,
            saved=q.get("saved"),
            refused=q.get("refused"),
        )

    async def save_settings(self, request: Request) -> Response:
        person = await self.pages.people.person(request)
        assert person is not None
        portal, realm = str(request.path_params["portal_id"]), str(request.path_params["realm"])
        form = await request.form()
        hours = domain.decimal_of(str(form.get("remind_after_hours") or "").strip())
        body = {
            "enabled": form.get("enabled") == "on",
            "approver_owner_id": str(form.get("approver_owner_id") or "").strip() or None,
            "remind_after_hours": float(hours) if hours is not None and hours > 0 else None,
            "approver_only": form.get("approver_only") == "on",
        }
        status, _, _ = await self.backend.call(
            person,
            BUILDER,
            "PUT",
            f"/portals/{portal}/accounts/{realm}/approval-settings",
            json=body,
            ok=(400, 422),
        )
        said = {"saved": realm} if status < 400 else {"refused": realm}
        return RedirectResponse(f"/portals/{portal}/approvals?{urlencode(said)}", 303)

    async def _approval(self, request: Request) -> dict[str, Any]:
        person = await self.pages.people.person(request)
        assert person is not None
        portal, request_id = _ids(request)
        found: dict[str, Any] = await self.backend.get(
            person, BUILDER, f"/portals/{portal}/approvals/{request_id}"
        )
        if found.get("approver_id") or found.get("requested_by"):
            # By name where the portal's owners can be listed, else by id: the approver is an
            # owner id, whoever asked a CRM user id.
            owners = await self.pages.owners_of(person, portal) or []
            found["approver_name"] = domain.owner_name(owners, "id", found.get("approver_id"))
            found["requested_by_name"] = domain.owner_name(
                owners, "user_id", found.get("requested_by")
            )
        if found.get("deal_id"):
            found["deal_name"] = await self.pages.record_name(
                person, portal, "deals", str(found["deal_id"])
            )
        return found

    async def approval(self, request: Request) -> Response:
        found = await self._approval(request)
        q = request.query_params
        return self.pages.render(
            request,
            "approval.html",
            approval=found,
            done=q.get("done"),
            already=q.get("already"),
            problem=None,
            values={},
        )

    async def decide(self, request: Request) -> Response:
        """Approve (with the lines as the form shows them) or reject (with the reason)."""
        person = await self.pages.people.person(request)
        assert person is not None
        portal, request_id = _ids(request)
        form = await request.form()
        action = str(form.get("action") or "")
        found = await self._approval(request)
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        base = f"/portals/{portal}/approvals/{request_id}"
        body: dict[str, Any]
        if action == "reject":
            reason = str(form.get("reason") or "").strip()
            if not reason:
                return self._again(request, found, values, "approvals.reason_needed")
            path, body = f"{base}/reject", {"reason": reason}
        elif action == "approve":
            try:
                lines = edited_lines(form, found["invoice"]["lines"])
            except ValueError as exc:
                return self._again(request, found, values, "approvals.bad_number", str(exc))
            path, body = f"{base}/approve", ({"lines": lines} if lines else {})
        else:
            return RedirectResponse(base, 303)
        status, answer, _ = await self.backend.call(
            person, BUILDER, "POST", path, json=body, ok=(403, 409, 422)
        )
        if status == 403:
            said = str((answer or {}).get("error") or "")
            return self._again(request, found, values, "approvals.not_approver", said)
        if status == 422:
            problem = (answer or {}).get("problem") or {"code": "other", "message": ""}
            return self.pages.render(
                request, "approval.html", 422, approval=found, done=None, already=None,
                problem=problem, values=values,
            )  # fmt: skip
        if status == 409:
            return RedirectResponse(f"{base}?already=1", 303)
        return RedirectResponse(f"{base}?done={action}", 303)

    def _again(
        self,
        request: Request,
        found: dict[str, Any],
        values: dict[str, str],
        key: str,
        line: str | None = None,
    ) -> Response:
        """The approval page again with what the person typed and why it cannot be sent."""
        return self.pages.render(
            request,
            "approval.html",
            422,
            approval=found,
            done=None,
            already=None,
            problem={"key": key, "line": line},
            values=values,
        )


def _ids(request: Request) -> tuple[str, str]:
    return str(request.path_params["portal_id"]), str(request.path_params["request_id"])
