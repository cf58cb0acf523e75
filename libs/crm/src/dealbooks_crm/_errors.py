from __future__ import annotations

import re
from typing import Any

import httpx
from dealbooks_http import json_object

__all__ = [
    "CrmAuthError",
    "CrmConflict",
    "CrmError",
    "CrmNotFound",
    "CrmRateLimited",
    "CrmUnavailable",
    "CrmValidation",
    "SearchCapExceeded",
    "error_from_response",
]

_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


class CrmError(Exception):
    """A CRM API call failed. `category` and `correlation_id` come from HubSpot's error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        category: str | None = None,
        correlation_id: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.category = category
        self.correlation_id = correlation_id
        self.body = body or {}


class CrmConflict(CrmError):
    """409: the record exists already; `existing_id` is parsed from the message when present."""

    @property
    def existing_id(self) -> str | None:
        match = _EXISTING_ID.search(self.message)
        return match.group(1) if match else None


class CrmNotFound(CrmError):
    """404: the object does not exist in this portal (or belongs to another portal)."""


class CrmValidation(CrmError):
    """400: the request was rejected; `problems` lists HubSpot's per-property errors, if any."""

    @property
    def problems(self) -> list[dict[str, Any]]:
        errors = self.body.get("errors")
        return list(errors) if isinstance(errors, list) else []


class CrmAuthError(CrmError):
    """401/403: the token is missing, invalid, expired or lacks scopes."""

    @property
    def expired(self) -> bool:
        return self.category == "EXPIRED_AUTHENTICATION"


class CrmRateLimited(CrmError):
    """429 that will not be retried: a DAILY limit, or a burst limit that outlasted retries."""

    def __init__(self, message: str, *, policy_name: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.policy_name = policy_name


class CrmUnavailable(CrmError):
    """5xx, 423, 477 or a transport failure that outlasted retries."""


class SearchCapExceeded(CrmError):
    """A search matches more than 10,000 records; page with list or batch read instead."""

    def __init__(self, total: int) -> None:
        super().__init__(
            f"search matched {total} records; only 10,000 are reachable through search. "
            "Use list or batch read for backfills.",
        )
        self.total = total


def error_from_response(response: httpx.Response) -> CrmError:
    """Map an error response to the matching `CrmError` subclass; every body field is optional."""
    body = json_object(response)
    status = response.status_code
    message = str(body.get("message") or f"HTTP {status} from CRM")
    kw: dict[str, Any] = {
        "status": status,
        "category": body.get("category") or body.get("errorType"),
        "correlation_id": body.get("correlationId"),
        "body": body,
    }
    if status == 409:
        return CrmConflict(message, **kw)
    if status == 404:
        return CrmNotFound(message, **kw)
    if status in {401, 403}:
        return CrmAuthError(message, **kw)
    if status == 429:
        return CrmRateLimited(message, policy_name=body.get("policyName"), **kw)
    if status in {400, 422}:
        return CrmValidation(message, **kw)
    if status >= 500 or status in {423, 477}:
        return CrmUnavailable(message, **kw)
    return CrmError(message, **kw)
