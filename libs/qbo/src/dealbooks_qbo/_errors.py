from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import defusedxml.ElementTree as SafeET
import httpx

from dealbooks_qbo import _json


@dataclass(frozen=True)
class FaultDetail:
    """One `Error` entry of a QBO fault."""

    code: str
    message: str
    detail: str
    element: str | None = None


class QboError(Exception):
    """A failed QBO call. `code` is QBO's error code (a string), `status` the HTTP status."""

    def __init__(
        self,
        status: int,
        errors: list[FaultDetail],
        fault_type: str | None = None,
        intuit_tid: str | None = None,
    ) -> None:
        first = errors[0] if errors else FaultDetail("", f"HTTP {status}", "")
        super().__init__(f"QBO {first.code or status}: {first.message} ({first.detail})")
        self.status = status
        self.errors = errors
        self.fault_type = fault_type
        self.intuit_tid = intuit_tid
        self.code = first.code
        self.message = first.message
        self.detail = first.detail
        self.element = first.element


class AuthError(QboError):
    """The gateway refused the token or the app (401/403)."""


class AuthExpired(AuthError):
    """The access token expired (401, 3200, 'Token expired'); a refresh fixes it."""


class AuthRevoked(AuthError):
    """The token or grant is invalid or revoked, or refresh failed: the user must reconnect."""


class Forbidden(AuthError):
    """403 3100: wrong environment (sandbox realm on production keys) or missing scope."""


class Throttled(QboError):
    """429 / 3001 ThrottleExceeded, after the retry budget ran out."""


class ServerError(QboError):
    """5xx or a SystemFault, after the retry budget ran out."""


class UnsupportedOperation(QboError):
    """Code 500: a path or operation QBO does not have."""


class NotFound(QboError):
    """Code 610: the object is gone (deleted transaction) or inactive."""


class DuplicateRequestId(QboError):
    """Code 600: the requestid was seen with a different request."""


class ValidationError(QboError):
    """A 4xx business or validation fault (2000-4999, 6000-6999) without a narrower type."""


class InvalidQuery(ValidationError):
    """Codes 4000/4001: the query did not parse or names an unknown entity."""


class InvalidReference(ValidationError):
    """Code 2500 (or 2030): a `...Ref` or Id that does not resolve."""


class BusinessRuleViolation(ValidationError):
    """Code 6000: a business validation error, e.g. a non-US line without a tax code."""


class AmountMismatch(ValidationError):
    """Code 6070: Amount is not Qty * UnitPrice."""


class InvalidTaxCode(ValidationError):
    """Code 6100: a US line tax code other than TAX/NON."""


class DuplicateDocNumber(ValidationError):
    """Code 6140: DocNumber already used by another transaction."""


class DuplicateName(ValidationError):
    """Code 6240: DisplayName/Name already used by a customer, vendor, employee (or item)."""


class CustomTxnNumbersRequired(ValidationError):
    """The company has custom transaction numbers on and no DocNumber was sent."""


class StaleObject(QboError):
    """Code 5010: the SyncToken is out of date; re-read, re-apply, retry."""


class BatchTooLarge(ValidationError):
    """Code 1040: more items than one batch may carry."""


_BY_CODE: dict[str, type[QboError]] = {
    "500": UnsupportedOperation,
    "600": DuplicateRequestId,
    "610": NotFound,
    "1040": BatchTooLarge,
    "2030": InvalidReference,
    "2500": InvalidReference,
    "3001": Throttled,
    "3100": Forbidden,
    "4000": InvalidQuery,
    "4001": InvalidQuery,
    "5010": StaleObject,
    "6000": BusinessRuleViolation,
    "6070": AmountMismatch,
    "6100": InvalidTaxCode,
    "6140": DuplicateDocNumber,
    "6240": DuplicateName,
}


def _class_for(status: int, first: FaultDetail | None) -> type[QboError]:
    code = first.code if first else ""
    if status == 401 or code in {"3200", "120", "130"}:
        detail = (first.detail if first else "").lower()
        return AuthExpired if "expired" in detail else AuthRevoked
    if status == 429:
        return Throttled
    if code == "2020" and first is not None and first.element == "DocNumber":
        return CustomTxnNumbersRequired
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status == 403:
        return Forbidden
    if status >= 500 or (code.isdigit() and int(code) >= 10000):
        return ServerError
    return ValidationError


def _from_json(body: Any) -> tuple[list[FaultDetail], str | None]:
    if not isinstance(body, dict):
        return [], None
    fault = body.get("Fault") or body.get("fault")
    if not isinstance(fault, dict):
        return [], None
    entries = fault.get("Error") or fault.get("error") or []
    errors = [
        FaultDetail(
            code=str(e.get("code") or ""),
            message=str(e.get("Message") or e.get("message") or ""),
            detail=str(e.get("Detail") or e.get("detail") or ""),
            element=e.get("element") or None,
        )
        for e in entries
        if isinstance(e, dict)
    ]
    return errors, fault.get("type")


def _from_xml(raw: bytes) -> tuple[list[FaultDetail], str | None]:
    try:
        root = SafeET.fromstring(raw)
    except SafeET.ParseError:
        return [], None
    errors: list[FaultDetail] = []
    fault_type = None
    for node in root.iter():
        tag = node.tag.rsplit("}", 1)[-1]
        if tag == "Fault":
            fault_type = node.get("type")
        if tag == "Error":
            texts = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in node}
            errors.append(
                FaultDetail(
                    code=node.get("code") or "",
                    message=texts.get("Message", ""),
                    detail=texts.get("Detail", ""),
                    element=node.get("element"),
                )
            )
    return errors, fault_type


def fault_from_body(
    status: int, raw: bytes, content_type: str = "", intuit_tid: str | None = None
) -> QboError:
    """Build the typed error from any QBO error body: JSON `Fault`, gateway `fault`, or XML."""
    errors: list[FaultDetail] = []
    fault_type: str | None = None
    stripped = raw.lstrip()
    if stripped.startswith(b"<") or "xml" in content_type:
        errors, fault_type = _from_xml(raw)
    else:
        try:
            errors, fault_type = _from_json(_json.loads(raw))
        except ValueError:
            errors = []
    cls = _class_for(status, errors[0] if errors else None)
    return cls(status, errors, fault_type, intuit_tid)


def fault_from_response(response: httpx.Response) -> QboError:
    """The typed error for an HTTP response QBO answered with a failure."""
    tid = response.headers.get("intuit_tid") or response.headers.get("intuit-tid")
    return fault_from_body(
        response.status_code, response.content, response.headers.get("content-type", ""), tid
    )


def fault_from_item(fault: dict[str, Any]) -> QboError:
    """The typed error for one batch item's `Fault` (the batch itself answered 200)."""
    errors, fault_type = _from_json({"Fault": fault})
    return _class_for(400, errors[0] if errors else None)(400, errors, fault_type)
