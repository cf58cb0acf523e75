"""The services' sweeps (their operator routes) and connector-auth's accounts (read-only)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from enum import StrEnum
from typing import Any

import httpx
from dealbooks_kit.services import SERVICES, env_prefix
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack


class AccountState(StrEnum):
    """Where connector-auth's link to a company stands."""

    connected = "connected"
    reauth_required = "reauth_required"
    disconnected = "disconnected"


# Only these fields of an account are ever read: never its tokens or outbox.
ACCOUNT_FIELDS = (
    "portal_id",
    "realm_id",
    "status",
    "environment",
    "company",
    "connected_at",
    "last_refresh_at",
    "disconnected_at",
)


async def sweep(
    stack: Stack,
    path: str,
    params: dict[str, str] | None = None,
    service: str = "status-tracker",
) -> dict[str, Any]:
    """POST one of a service's sweep routes (status-tracker's by default) with the operator
    credential."""
    url = stack.url(service) + path
    headers = {"Authorization": f"Bearer {stack.operator_credential()}"}
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600, connect=5)) as client:
            response = await client.post(url, params=params, headers=headers)
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach {service} at {url}: {exc}") from exc
    return answer_of(service, response)


def answer_of(service: str, response: httpx.Response) -> dict[str, Any]:
    """A service's JSON answer; CliError saying in one line what a refusal or an answer that
    is not the service's (a proxy's page, another server on the port) was."""
    body = json_of(response)
    own = isinstance(body, dict)
    elsewhere = f" (is {env_prefix(service)}URL, {response.request.url}, the service's?)"
    if response.status_code >= 400:
        said = _said(body, response) + ("" if own else elsewhere)
        if response.status_code in (401, 403):
            said += (
                " (the operator credential was refused: set DEALBOOKS_OPERATOR_CREDENTIALS to "
                f"one of {service}'s)"
            )
        raise CliError(f"{service} answered {response.status_code}: {said}")
    if not isinstance(body, dict):
        kind = response.headers.get("content-type") or "no content type"
        raise CliError(
            f"{service} answered {response.status_code} with no JSON ({kind}){elsewhere}"
        )
    return body


def json_of(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it has none."""
    try:
        return response.json()
    except ValueError:
        return None


def _said(body: Any, response: httpx.Response) -> str:
    """What a refusal says: its `error` and `message` when it is the service's JSON, else the
    start of its body on one line."""
    if isinstance(body, dict) and (body.get("error") or body.get("message")):
        return ": ".join(str(body[k]) for k in ("error", "message") if body.get(k))
    text = " ".join(response.text.split())
    return (text[:200] + "…" if len(text) > 200 else text) or response.reason_phrase


async def readiness(stack: Stack) -> list[dict[str, Any]]:
    """Each service's readiness probe (`/readyz`: its Kafka and MongoDB answer): `ready`,
    `not ready` (with the checks that failed), `unreachable`, or `unknown` when no
    `<SERVICE>_URL` says where it is."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5, connect=3)) as client:
        return list(await asyncio.gather(*(_ready(stack, client, s) for s in SERVICES)))


async def _ready(stack: Stack, client: httpx.AsyncClient, service: str) -> dict[str, Any]:
    try:
        url = stack.url(service)
    except CliError:
        row = {"service": service, "url": None, "state": "unknown"}
        return {**row, "detail": f"{env_prefix(service)}URL is not set"}
    row = {"service": service, "url": url}
    try:
        response = await client.get(url + "/readyz")
    except httpx.HTTPError as exc:
        return {**row, "state": "unreachable", "detail": str(exc) or type(exc).__name__}
    body = json_of(response)
    checks = body.get("checks") if isinstance(body, dict) else None
    said_not = isinstance(body, dict) and body.get("ready") is False
    if response.status_code == 200 and not said_not:  # a probe's 200 is ready
        return {**row, "state": "ready", "detail": ""}
    if isinstance(checks, dict):
        failed = [name for name, ok in checks.items() if not ok]
        return {**row, "state": "not ready", "detail": "failing: " + ", ".join(failed)}
    return {**row, "state": "not ready", "detail": f"/readyz answered {response.status_code}"}


async def accounts(
    stack: Stack,
    client: AsyncMongoClient[dict[str, Any]],
    portal: str | None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Every portal's (or one's) QuickBooks companies with their state (or those in one
    state), by portal then connection time."""
    collection = client[stack.database("connector-auth")]["accounts"]
    query = {"portal_id": portal} if portal else {}
    if status:
        query["status"] = status
    try:
        cursor = collection.find(query, projection={f: 1 for f in ACCOUNT_FIELDS})
        docs = [doc async for doc in cursor]
    except PyMongoError as exc:
        raise CliError(f"cannot read connector-auth's accounts: {exc}") from exc
    rows = [account_row(doc) for doc in docs]
    return sorted(rows, key=lambda r: (r["portal_id"], r["connected_at"] or ""))


async def realm_states(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], realm: str
) -> dict[str, str]:
    """The state of the company `realm` in each portal that has it (none: no portal)."""
    collection = client[stack.database("connector-auth")]["accounts"]
    try:
        docs = [
            d async for d in collection.find({"realm_id": realm}, {"portal_id": 1, "status": 1})
        ]
    except PyMongoError as exc:
        raise CliError(f"cannot read connector-auth's accounts: {exc}") from exc
    return {str(d.get("portal_id")): str(d.get("status")) for d in docs}


def account_row(doc: dict[str, Any]) -> dict[str, Any]:
    """What the operator is shown of an account document (never its tokens)."""
    company = doc.get("company") or {}
    return {
        "portal_id": doc.get("portal_id", ""),
        "realm_id": doc.get("realm_id", ""),
        "status": doc.get("status", ""),
        "environment": doc.get("environment", ""),
        "company_name": company.get("company_name", ""),
        "country": company.get("country", ""),
        "home_currency": company.get("home_currency", ""),
        "multicurrency_enabled": company.get("multicurrency_enabled"),
        "custom_transaction_numbers": company.get("custom_transaction_numbers"),
        **{k: iso(doc.get(k)) for k in ("connected_at", "last_refresh_at", "disconnected_at")},
    }


def iso(value: Any) -> Any:
    """A stored time as ISO 8601; anything else as it is."""
    return value.isoformat() if isinstance(value, datetime) else value
