"""invoice-builder's side of the kit's failure policy: a person waits on its request consumers
(`Origin.PERSON`, see app.py; the drafts and links tests show it end to end), and each failure
they are told of comes back in invoice-builder's own words (a rejection code the console
explains)."""

from __future__ import annotations

import pytest
from dealbooks_contracts import RejectionCode
from dealbooks_crm import CrmNotFound
from dealbooks_http import AccountUnavailable
from dealbooks_kit import (
    Action,
    CrmPortalNotConfigured,
    CrmPortalNotInstalled,
    Failed,
    Failure,
    Origin,
    decide,
)
from dealbooks_qbo import AuthRevoked, BusinessRuleViolation, ServerError, Throttled
from dealbooks_qbo._errors import FaultDetail
from invoice_builder.domain import Rejection
from invoice_builder.requests import rejection_for


def qbo(cls: type[Exception], status: int, code: str, message: str = "fault") -> Exception:
    return cls(status, [FaultDetail(code, message, "")])  # type: ignore[call-arg]


OWN = Rejection(RejectionCode.QUOTE_EXPIRED, "The quote expired on 1 May.", field="quote_id")

CASES = [
    # failure, the code the person reads, what the policy does first
    (
        Failed(OWN.message, failure=Failure.INVALID_INPUT, detail=OWN),
        RejectionCode.QUOTE_EXPIRED,
        Action.REJECT,
    ),
    (
        qbo(BusinessRuleViolation, 400, "6000", "Tax code required"),
        RejectionCode.QBO_VALIDATION,
        Action.REJECT,
    ),
    (qbo(AuthRevoked, 401, "3200"), RejectionCode.ACCOUNT_REAUTH_REQUIRED, Action.REJECT),
    (
        AccountUnavailable("p", "r", reauth_required=True),
        RejectionCode.ACCOUNT_REAUTH_REQUIRED,
        Action.REJECT,
    ),
    (
        AccountUnavailable("p", "r", reauth_required=False),
        RejectionCode.ACCOUNT_NOT_CONNECTED,
        Action.REJECT,
    ),
    (CrmPortalNotInstalled("p"), RejectionCode.CRM_NOT_CONNECTED, Action.REJECT),
    (CrmPortalNotConfigured("p"), RejectionCode.CRM_NOT_CONNECTED, Action.DEAD_LETTER),
    (CrmNotFound("no quote", status=404), RejectionCode.REQUEST_FAILED, Action.REJECT),
    (qbo(ServerError, 503, "10000"), RejectionCode.QBO_UNAVAILABLE, Action.RETRY),
    (qbo(Throttled, 429, "3001"), RejectionCode.QBO_UNAVAILABLE, Action.RETRY),
    (KeyError("a defect"), RejectionCode.REQUEST_FAILED, Action.RETRY),
]


@pytest.mark.parametrize(("error", "code", "first"), CASES, ids=lambda v: str(v)[:40])
def test_each_failure_of_a_request_reaches_the_person_in_invoice_builders_words(
    error: BaseException, code: RejectionCode, first: Action
) -> None:
    decision = decide(error, Origin.PERSON)

    assert decision.action is first
    assert decision.rule.tell  # whatever happens first, the person hears the end of it
    assert rejection_for(decision, error, "portal-1").code is code


def test_a_refusal_of_our_own_is_said_as_written() -> None:
    error = Failed(OWN.message, failure=Failure.INVALID_INPUT, detail=OWN)
    assert rejection_for(decide(error, Origin.PERSON), error, "portal-1") == OWN


def test_a_validation_fault_names_quickbooks_words_and_code() -> None:
    error = qbo(BusinessRuleViolation, 400, "6000", "Tax code required")
    rejection = rejection_for(decide(error, Origin.PERSON), error, "portal-1")
    assert "Tax code required" in rejection.message
    assert rejection.qbo_fault_code == "6000"
