"""reminders' HTTP surface: a company's workflows (read, change) and its reminder tasks, for a
person signed in for the company's portal (the console) and for operators; the pass, for
operators; the audit trail, for operators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dealbooks_contracts import ReminderWorkflow
from dealbooks_kit import Access, Guard, audit_routes
from dealbooks_kit.openapi import describe
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse

from reminders import domain
from reminders.domain import WorkflowSettings
from reminders.store import CLOSED, OPEN

if TYPE_CHECKING:
    from reminders.app import Service

NOT_ADVANCED = (
    "Reminder workflows come with QuickBooks Online Advanced; this company is on {edition}."
)


class ErrorAnswer(BaseModel):
    """A refusal: a code and a sentence."""

    error: str
    message: str
    problems: list[str] = Field(default_factory=list)


class Workflow(BaseModel):
    """One workflow of a company, as it runs (or would run once switched on)."""

    workflow: ReminderWorkflow
    enabled: bool
    days_before: list[int] = Field(description="Days before a due date (payment, vendor).")
    days_after: list[int] = Field(
        description="Days after the due date (payment, vendor), after the invoice's date "
        "(unsent) or after the payment's date (deposit)."
    )
    subject: str = Field(description="Task subject template; placeholders such as {doc_number}.")
    body: str = Field(description="Task body template.")
    owner_id: str | None = Field(
        description="The CRM owner of every task; none: the owner of the deal or company."
    )
    send_invoice_email: bool = Field(
        description="Payment reminder only: also send QuickBooks' invoice e-mail."
    )
    records_only: bool = Field(
        description="Remind only of items whose invoice dealbooks knows a CRM record for."
    )


class WorkflowsAnswer(BaseModel):
    """A company's four workflows, and whether they are available to it."""

    realm_id: str
    edition: str | None
    available: bool
    reason: str | None = None
    placeholders: list[str]
    workflows: list[Workflow]


class WorkflowChange(BaseModel):
    """What to change of a workflow; fields left out keep their value."""

    model_config = {"extra": "forbid"}

    enabled: bool | None = None
    days_before: list[int] | None = None
    days_after: list[int] | None = None
    subject: str | None = None
    body: str | None = None
    owner_id: str | None = None
    send_invoice_email: bool | None = None
    records_only: bool | None = None


class ReminderTask(BaseModel):
    """One reminder and its CRM task."""

    workflow: ReminderWorkflow
    subject_type: str
    subject_id: str
    doc_number: str | None = None
    party: str | None = None
    period: str
    state: str
    crm_task_id: str | None = None
    subject: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    owner_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    due_date: str | None = None
    opened_at: str | None = None
    closed_at: str | None = None
    reason: str | None = None


class RemindersAnswer(BaseModel):
    realm_id: str
    reminders: list[ReminderTask]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _problem(
    status: int, error: str, message: str, problems: list[str] | None = None
) -> JSONResponse:
    body = {"error": error, "message": message, "problems": problems or []}
    return JSONResponse(body, status_code=status)


async def _company(request: Request) -> dict[str, Any] | JSONResponse:
    """The company of the route if it is connected to the route's portal; else the refusal
    (another portal's company does not exist for this one)."""
    params = request.path_params
    account = await _service(request).store.account(params["realm_id"])
    if account is None or account.get("portal_id") != params["portal_id"]:
        return _problem(404, "unknown_company", "No such company is connected here.")
    return account


def _availability(account: dict[str, Any]) -> str | None:
    """Why the workflows are not available to a company; None when they are."""
    if not account.get("connected"):
        return "The company is disconnected; connect it again to use reminder workflows."
    if not account.get("advanced"):
        return NOT_ADVANCED.format(edition=account.get("edition") or "another edition")
    return None


@describe(answers={200: WorkflowsAnswer, 404: ErrorAnswer})
async def workflows(request: Request) -> JSONResponse:
    """A company's four reminder workflows: on or off, schedule, wording, owner."""
    account = await _company(request)
    if isinstance(account, JSONResponse):
        return account
    found = await _service(request).store.workflows(str(account["_id"]))
    reason = _availability(account)
    return JSONResponse(
        {
            "realm_id": account["_id"],
            "edition": account.get("edition"),
            "available": reason is None,
            "reason": reason,
            "placeholders": sorted(domain.PLACEHOLDERS),
            "workflows": [domain.settings_values(found[w]) for w in ReminderWorkflow],
        }
    )


@describe(body=WorkflowChange, answers={200: Workflow, 400: ErrorAnswer, 404: ErrorAnswer,
                                        409: ErrorAnswer})  # fmt: skip
async def change_workflow(request: Request) -> JSONResponse:
    """Change a workflow of a company on QuickBooks Online Advanced (refused for any other
    edition, with the reason); the whole result is checked before it is saved."""
    account = await _company(request)
    if isinstance(account, JSONResponse):
        return account
    try:
        workflow = ReminderWorkflow(request.path_params["workflow"])
    except ValueError:
        known = ", ".join(w.value for w in ReminderWorkflow)
        return _problem(404, "unknown_workflow", f"The workflows are {known}.")
    reason = _availability(account)
    if reason is not None:
        return _problem(409, "not_available", reason)
    try:
        change = WorkflowChange.model_validate_json(await request.body())
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return _problem(400, "invalid_settings", "The change cannot be read.", problems)
    store = _service(request).store
    current = (await store.workflows(str(account["_id"])))[workflow]
    given = change.model_dump(exclude_unset=True)
    for name in ("days_before", "days_after"):
        if name in given:
            given[name] = tuple(sorted(set(given[name] or ())))
    if "owner_id" in given and not (given["owner_id"] or "").strip():
        given["owner_id"] = None
    proposed = WorkflowSettings(**{**_fields(current), **given})
    problems = domain.settings_problems(proposed)
    if problems:
        return _problem(400, "invalid_settings", "The workflow was not changed.", problems)
    caller = getattr(request.state, "caller", None)
    by = getattr(caller, "user_id", None) or (caller.access.value if caller else None)
    await store.save_workflow(str(account["_id"]), str(account["portal_id"]), proposed, by)
    return JSONResponse(domain.settings_values(proposed))


def _fields(settings: WorkflowSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in WorkflowSettings.__dataclass_fields__}


@describe(answers={200: RemindersAnswer, 404: ErrorAnswer})
async def reminder_tasks(request: Request) -> JSONResponse:
    """A company's reminder tasks, newest first: open ones (`?state=open`, the default),
    closed ones (`closed`) or both (`all`); `?workflow=` narrows to one workflow."""
    account = await _company(request)
    if isinstance(account, JSONResponse):
        return account
    state = request.query_params.get("state", "open")
    states = {"open": [OPEN], "closed": [CLOSED], "all": [OPEN, CLOSED]}.get(state)
    if states is None:
        return _problem(400, "bad_request", "state is open, closed or all.")
    workflow = None
    if request.query_params.get("workflow"):
        try:
            workflow = ReminderWorkflow(request.query_params["workflow"])
        except ValueError:
            return _problem(400, "bad_request", "workflow is payment, vendor, deposit or unsent.")
    docs = await _service(request).store.listing(
        str(account["portal_id"]), str(account["_id"]), states=states, workflow=workflow
    )
    return JSONResponse({"realm_id": account["_id"], "reminders": [_task(d) for d in docs]})


def _task(doc: dict[str, Any]) -> dict[str, Any]:
    shown = {name: doc.get(name) for name in ReminderTask.model_fields}
    for name in ("opened_at", "closed_at"):
        if doc.get(name) is not None:
            shown[name] = doc[name].isoformat()
    return shown


async def run_pass(request: Request) -> JSONResponse:
    """Run the reminder pass now: one company (`?realm_id=`) or all."""
    handlers = _service(request).handlers
    realm = request.query_params.get("realm_id")
    if realm:
        return JSONResponse({"changed": await handlers.pass_company(realm), "failed_realms": {}})
    passed = await handlers.pass_all()
    return JSONResponse({"changed": passed.done, "failed_realms": passed.failed})


def build_api(service: Service, guard: Guard) -> Starlette:
    """A company's workflows and reminders (a grant for the route's portal, or an operator);
    the pass (an operator); the audit trail (an operator)."""
    company = "/portals/{portal_id}/accounts/{realm_id}/reminders"
    who = (Access.PORTAL, Access.OPERATOR)
    api = guard.api(
        [
            guard.route(company + "/workflows", workflows, ["GET"], *who),
            guard.route(company + "/workflows/{workflow}", change_workflow, ["PUT"], *who),
            guard.route(company + "/tasks", reminder_tasks, ["GET"], *who),
            guard.route("/sweeps/reminders", run_pass, ["POST"], Access.OPERATOR),
            *audit_routes(guard, service.runtime.use_audit()),
        ]
    )
    api.state.service = service
    return api
