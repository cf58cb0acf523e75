"""The failure policy: every exception the project meets sorted into one kind, one table from
kind and origin to what happens, the same table in the README, and what an API answers."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from dealbooks_crm import (
    CrmAuthError,
    CrmConflict,
    CrmNotFound,
    CrmRateLimited,
    CrmUnavailable,
    CrmValidation,
)
from dealbooks_http import AccountUnavailable, PortalNotInstalled
from dealbooks_kit import (
    Action,
    ConflictError,
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Failed,
    Failure,
    Origin,
    PermanentError,
    TransientError,
    classify,
    decide,
    retried,
)
from dealbooks_kit.failures import POLICY, failure_answer
from dealbooks_qbo import (
    AuthExpired,
    AuthRevoked,
    BusinessRuleViolation,
    Forbidden,
    NotFound,
    ServerError,
    StaleObject,
    Throttled,
)
from dealbooks_qbo._errors import FaultDetail
from pydantic import BaseModel
from pydantic import ValidationError as ModelValidationError
from pymongo.errors import AutoReconnect, ServerSelectionTimeoutError

README = Path(__file__).resolve().parents[3] / "README.md"


def qbo(cls: type[Exception], status: int, code: str, detail: str = "") -> Exception:
    return cls(status, [FaultDetail(code, "fault", detail)])  # type: ignore[call-arg]


def model_error() -> ModelValidationError:
    class Thing(BaseModel):
        amount: int

    try:
        Thing.model_validate({"amount": "many"})
    except ModelValidationError as exc:
        return exc
    raise AssertionError("unreachable")


CASES: list[tuple[BaseException, Failure]] = [
    (qbo(Throttled, 429, "3001"), Failure.RATE_LIMITED),
    (qbo(ServerError, 503, "10000"), Failure.TRANSIENT),
    (qbo(StaleObject, 400, "5010"), Failure.CONFLICT),
    (qbo(AuthExpired, 401, "3200", "Token expired"), Failure.TRANSIENT),
    (qbo(AuthRevoked, 401, "3200", "Token revoked"), Failure.AUTHORISATION_LOST),
    (qbo(Forbidden, 403, "3100"), Failure.AUTHORISATION_LOST),
    (qbo(NotFound, 400, "610"), Failure.TARGET_GONE),
    (qbo(BusinessRuleViolation, 400, "6000"), Failure.INVALID_INPUT),
    (CrmRateLimited("slow down", status=429), Failure.RATE_LIMITED),
    (CrmRateLimited("daily", status=429, policy_name="DAILY"), Failure.INVALID_INPUT),
    (CrmUnavailable("down", status=502), Failure.TRANSIENT),
    (CrmAuthError("expired", status=401, category="EXPIRED_AUTHENTICATION"), Failure.TRANSIENT),
    (CrmAuthError("no scope", status=403, category="MISSING_SCOPES"), Failure.AUTHORISATION_LOST),
    (CrmNotFound("no deal", status=404), Failure.TARGET_GONE),
    (CrmValidation("bad property", status=400), Failure.INVALID_INPUT),
    (CrmConflict("exists", status=409), Failure.INVALID_INPUT),
    (AccountUnavailable("p", "r", reauth_required=True), Failure.AUTHORISATION_LOST),
    (AccountUnavailable("p", "r", reauth_required=False), Failure.NOT_CONNECTED),
    (PortalNotInstalled("p"), Failure.NOT_CONNECTED),
    (CrmPortalNotInstalled("p"), Failure.NOT_CONNECTED),
    (CrmPortalNotConfigured("p"), Failure.MISCONFIGURED),
    (TimeoutError(), Failure.TRANSIENT),
    (httpx.ConnectError("refused"), Failure.TRANSIENT),
    (AutoReconnect("primary gone"), Failure.TRANSIENT),
    (ServerSelectionTimeoutError("no server"), Failure.TRANSIENT),
    (model_error(), Failure.INVALID_INPUT),
    (TransientError("later"), Failure.TRANSIENT),
    (ConflictError("changed"), Failure.CONFLICT),
    (PermanentError("never"), Failure.INVALID_INPUT),
    (Failed("gone", failure=Failure.TARGET_GONE), Failure.TARGET_GONE),
    (KeyError("a defect"), Failure.UNEXPECTED),
]


@pytest.mark.parametrize(("error", "failure"), CASES, ids=lambda v: type(v).__name__)
def test_every_exception_the_project_meets_is_one_kind_of_failure(
    error: BaseException, failure: Failure
) -> None:
    assert classify(error) is failure


def test_a_person_is_told_of_everything_that_cannot_succeed_and_nobody_is_bothered_by_noise() -> (
    None
):
    person, system = POLICY[Origin.PERSON], POLICY[Origin.SYSTEM]
    assert set(person) == set(system) == set(Failure)
    # Whatever a person waits for ends in their hearing of it, at once or after retries.
    assert all(rule.tell for rule in person.values())
    # Passing failures retry for everyone, then go where an operator sees them.
    for failure in (Failure.TRANSIENT, Failure.RATE_LIMITED, Failure.CONFLICT, Failure.UNEXPECTED):
        for rules in (person, system):
            assert (rules[failure].action, rules[failure].then) == (
                Action.RETRY,
                Action.DEAD_LETTER,
            )
    # Nothing an operator could fix is settled, and nothing settled could be fixed by one.
    assert system[Failure.AUTHORISATION_LOST].action is Action.PAUSE_TENANT
    assert system[Failure.NOT_CONNECTED].action is Action.SETTLE
    assert system[Failure.TARGET_GONE].action is Action.SETTLE
    assert system[Failure.INVALID_INPUT].action is Action.DEAD_LETTER
    assert system[Failure.MISCONFIGURED].action is Action.DEAD_LETTER
    assert person[Failure.MISCONFIGURED].action is Action.DEAD_LETTER


def test_a_retried_failure_ends_in_its_final_action_when_the_attempts_run_out() -> None:
    decision = decide(qbo(Throttled, 429, "3001"), Origin.SYSTEM)
    assert [decision.final(n, 3) for n in (1, 2, 3)] == [
        Action.RETRY,
        Action.RETRY,
        Action.DEAD_LETTER,
    ]
    assert decide(CrmNotFound("no deal", status=404), Origin.PERSON).final(1, 3) is Action.REJECT
    assert retried(TimeoutError()) and not retried(PermanentError("never"))


def test_the_readme_states_the_policy_the_code_applies() -> None:
    text = README.read_text()
    section = text[text.index("### Failure policy") :]
    rows = {}
    for line in section.splitlines()[1:]:
        if line.startswith("### ") or line.startswith("## "):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        named = re.match(r"`(\w+)`", cells[0]) if len(cells) == 3 else None
        if named:
            rows[Failure(named.group(1))] = (cells[1], cells[2])
    assert set(rows) == set(Failure), "every failure has its row"
    for failure, (person, system) in rows.items():
        assert person == _said(POLICY[Origin.PERSON][failure]), failure
        assert system == _said(POLICY[Origin.SYSTEM][failure]), failure


def _said(rule: object) -> str:
    from dealbooks_kit.failures import Rule

    assert isinstance(rule, Rule)
    words = {
        Action.RETRY: "retry",
        Action.PAUSE_TENANT: "pause the tenant",
        Action.DEAD_LETTER: "dead-letter",
        Action.REJECT: "reject",
        Action.SETTLE: "settle",
    }
    said = words[rule.action]
    if rule.then is not None:
        said += f", then {words[rule.then]}"
    if rule.tell and rule.action is not Action.REJECT:
        said += " and tell"
    return said


@pytest.mark.parametrize(
    ("error", "status", "retry_after"),
    [
        (qbo(ServerError, 503, "10000"), 503, "5"),
        (qbo(Throttled, 429, "3001"), 503, "10"),
        (AccountUnavailable("p", "r", reauth_required=True), 409, None),
        (CrmNotFound("no deal", status=404), 404, None),
        (qbo(BusinessRuleViolation, 400, "6000"), 422, None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_an_api_answers_a_failed_call_by_its_kind(
    error: BaseException, status: int, retry_after: str | None
) -> None:
    answer = failure_answer(error)
    assert answer is not None
    got_status, body, headers = answer
    assert (got_status, headers.get("Retry-After")) == (status, retry_after)
    assert body["error"] == classify(error).value
    assert re.search(r"token|secret", body["message"], re.I) is None


def test_an_unexpected_failure_stays_a_server_error() -> None:
    assert failure_answer(KeyError("defect")) is None
