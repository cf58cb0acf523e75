"""Errors in the shapes QBO really returns: `Fault` (business), lower-case `fault` (gateway)."""

from __future__ import annotations

from typing import Any

STALE_DETAIL = (
    "Stale Object Error : You and API API were working on this at the same time. "
    "API API finished before you did, so your work was not saved."
)
INACTIVE_DETAIL = (
    "Object Not Found : Something you're trying to use has been made inactive. "
    "Check the fields with accounts, customers, items, vendors or employees."
)
DELETED_DETAIL = "Object Not Found : Another user has deleted this transaction."


class QboFault(Exception):
    """A business fault; the HTTP layer renders it as `{"Fault": {...}}` with `status`."""

    def __init__(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        element: str | None = None,
        status: int = 400,
        fault_type: str = "ValidationFault",
    ) -> None:
        super().__init__(f"{code} {message}: {detail}")
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element
        self.status = status
        self.fault_type = fault_type

    def fault_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"Message": self.message, "Detail": self.detail, "code": self.code}
        if self.element is not None:
            error["element"] = self.element
        return {"Error": [error], "type": self.fault_type}


def stale() -> QboFault:
    return QboFault("5010", "Stale Object Error", STALE_DETAIL, element="")


def not_found(deleted: bool = False) -> QboFault:
    return QboFault(
        "610", "Object Not Found", DELETED_DETAIL if deleted else INACTIVE_DETAIL, element=""
    )


def invalid_reference(what: str, value: object) -> QboFault:
    return QboFault(
        "2500", "Invalid Reference Id", f"Invalid Reference Id : {what} assigned is {value}"
    )


def required(field: str) -> QboFault:
    return QboFault(
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {field} is missing in the request",
        element=field,
    )


def business(detail: str) -> QboFault:
    return QboFault(
        "6000",
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element="",
    )


def unsupported(path: str) -> QboFault:
    return QboFault(
        "500",
        "Unsupported Operation",
        f"Operation Could not find resource for relative : {path} is not supported.",
    )


def invalid_query(detail: str, code: str = "4001") -> QboFault:
    return QboFault(code, "Invalid query", f"QueryValidationError: {detail}")


def gateway_body(code: str, message: str, detail: str, fault_type: str) -> dict[str, Any]:
    """The lower-case gateway body the real API sends with 401 and 403."""
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [{"message": message, "detail": detail, "code": code, "element": None}],
            "type": fault_type,
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": 0,
        "status": None,
        "cdcresponse": [],
    }


THROTTLE_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="{time}">'
    '<Fault type="SERVICE"><Error code="3001">'
    "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
    "<Detail>The request limit was reached.  Try again later</Detail>"
    "</Error></Fault></IntuitResponse>"
)


def throttle_json() -> dict[str, Any]:
    return {
        "Error": [
            {
                "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                "Detail": "The request limit was reached.  Try again later",
                "code": "3001",
            }
        ],
        "type": "SERVICE",
    }
