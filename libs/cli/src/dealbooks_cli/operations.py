"""The services' sweeps (their operator routes) and connector-auth's accounts (read-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from pymongo import AsyncMongoClient
from pymongo.errors import PyMongoError

from dealbooks_cli.stack import CliError, Stack

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
    if response.status_code != 200:
        raise CliError(f"{service} answered {response.status_code}: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


async def accounts(
    stack: Stack, client: AsyncMongoClient[dict[str, Any]], portal: str | None
) -> list[dict[str, Any]]:
    """Every portal's QuickBooks companies with their state, by portal then connection time."""
    collection = client[stack.database("connector-auth")]["accounts"]
    query = {"portal_id": portal} if portal else {}
    try:
        cursor = collection.find(query, projection={f: 1 for f in ACCOUNT_FIELDS})
        docs = [doc async for doc in cursor]
    except PyMongoError as exc:
        raise CliError(f"cannot read connector-auth's accounts: {exc}") from exc
    rows = [account_row(doc) for doc in docs]
    return sorted(rows, key=lambda r: (r["portal_id"], r["connected_at"] or ""))


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
