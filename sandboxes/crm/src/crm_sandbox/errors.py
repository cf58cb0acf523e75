"""HubSpot's error envelope: `{status, message, correlationId, category, errors[]}`."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Raised by handlers; rendered as HubSpot's error body with the given HTTP status."""

    def __init__(
        self,
        status: int,
        category: str,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        context: dict[str, Any] | None = None,
        sub_category: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.errors = errors
        self.context = context
        self.sub_category = sub_category
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "error",
            "message": self.message,
            "correlationId": str(uuid.uuid4()),
            "category": self.category,
        }
        if self.sub_category:
            body["subCategory"] = self.sub_category
        if self.errors:
            body["errors"] = self.errors
        if self.context:
            body["context"] = self.context
        body.update(self.extra)
        return body

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def standard_error(self, context: dict[str, Any] | None = None) -> dict[str, Any]:
        """The per-item `StandardError` shape used inside 207 batch responses."""
        entry: dict[str, Any] = {
            "status": "error",
            "category": self.category,
            "message": self.message,
            "context": context or self.context or {},
            "errors": self.errors or [],
        }
        if self.sub_category:
            entry["subCategory"] = self.sub_category
        return entry


def validation(message: str, **kw: Any) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, **kw)


def not_found(message: str = "Object not found.", **kw: Any) -> ApiError:
    return ApiError(404, "OBJECT_NOT_FOUND", message, **kw)


def conflict(message: str, **kw: Any) -> ApiError:
    return ApiError(409, "CONFLICT", message, **kw)


def missing_scopes(accepted: Sequence[str]) -> ApiError:
    """403 for a token granted none of `accepted`, any one of which would do."""
    return ApiError(
        403,
        "MISSING_SCOPES",
        "This app hasn't been granted all required scopes to make this call.",
        errors=[
            {
                "message": "One or more of the following scopes are required.",
                "context": {"requiredGranularScopes": list(accepted)},
            }
        ],
    )


def property_errors(problems: list[dict[str, Any]]) -> ApiError:
    """HubSpot embeds the per-property problems as a JSON string inside `message`."""
    message = "Property values were not valid: " + json.dumps(problems, separators=(",", ":"))
    errors = [
        {"message": p["message"], "code": p["error"], "context": {"propertyName": [p["name"]]}}
        for p in problems
    ]
    return validation(message, errors=errors)


def property_problem(name: str, error: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": error, "name": name}


class OAuthError(Exception):
    """The OAuth endpoints' own 400 body, `{status, message}` (not the CRM envelope)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return JSONResponse({"status": self.status, "message": self.message}, status_code=400)
