"""One portal's QuickBooks companies in detail (`dealbooks accounts show`): each company's
state (connector-auth), where each healing pass stands for it and when a pass last ran
(status-tracker for invoices, contact-sync and product-sync for customers and items), its
last backfill runs, and the errors recorded about it. Read-only, straight from each service's
own database; never a token.

Where a pass stands is the account's reconciliation watermark (`cdc_watermarks.since`: the
changes before it are applied); when a pass last ran is the `acquired_at` of the service's
`reconciliation` lease (`periodic_leases`), taken at the start of every pass, for all of the
service's accounts at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from dealbooks_cli.operations import ACCOUNT_FIELDS, account_row, iso
from dealbooks_cli.stack import CliError, Stack

Doc = dict[str, Any]
RECONCILE_JOB = "reconciliation"
BACKFILL_FIELDS = (
    "run_id",
    "state",
    "reason",
    "read",
    "created",
    "updated",
    "unchanged",
    "failed",
    "error",
    "started_at",
    "finished_at",
)


@dataclass(frozen=True)
class Healer:
    """A service that heals one kind of record by CDC passes."""

    kind: str
    service: str
    # The object type of its mapping sets and backfills; None: it has neither.
    object_type: str | None = None


HEALERS = (
    Healer("invoices", "status-tracker"),
    Healer("contacts", "contact-sync", "contacts"),
    Healer("products", "product-sync", "products"),
)


async def show(
    stack: Stack, client: AsyncMongoClient[Doc], portal: str, realm: str | None
) -> list[Doc]:
    """The portal's companies (only `realm`, if given), each with its sync state and errors;
    CliError when the portal has none."""
    try:
        accounts = await _accounts(stack, client, portal, realm)
        if not accounts:
            which = (
                f"company {realm} in portal {portal}" if realm else f"company in portal {portal}"
            )
            raise CliError(f"no {which} (dealbooks accounts list shows every one)")
        return [await _detail(stack, client, account) for account in accounts]
    except PyMongoError as exc:
        raise CliError(f"cannot read the services' databases: {exc}") from exc


async def _accounts(
    stack: Stack, client: AsyncMongoClient[Doc], portal: str, realm: str | None
) -> list[Doc]:
    query: Doc = {"portal_id": portal, **({"realm_id": realm} if realm else {})}
    collection = client[stack.database("connector-auth")]["accounts"]
    docs = [d async for d in collection.find(query, projection=dict.fromkeys(ACCOUNT_FIELDS, 1))]
    return sorted(docs, key=lambda d: iso(d.get("connected_at")) or "")


async def _detail(stack: Stack, client: AsyncMongoClient[Doc], account: Doc) -> Doc:
    row = account_row(account)
    realm = row["realm_id"]
    sync = {h.kind: await _healing(client[stack.database(h.service)], h, realm) for h in HEALERS}
    errors = _account_errors(row)
    for healer in HEALERS:
        errors += _backfill_errors(healer, sync[healer.kind].get("last_backfill"))
    errors += await _mapping_errors(client[stack.database("mapping-registry")], realm)
    return {**row, "sync": sync, "errors": errors}


async def _healing(db: AsyncDatabase[Doc], healer: Healer, realm: str) -> Doc:
    watermark = await db["cdc_watermarks"].find_one({"_id": realm})
    lease = await db["periodic_leases"].find_one({"job": RECONCILE_JOB})
    state: Doc = {
        "service": healer.service,
        "watermark": iso(watermark.get("since")) if watermark else None,
        "last_cdc_pass": iso(lease.get("acquired_at")) if lease else None,
    }
    if healer.object_type is None:
        return state
    mapping_set = await db["mapping_sets"].find_one(
        {"realm_id": realm, "object_type": healer.object_type}, projection={"settings": 1}
    )
    run = await db["backfills"].find_one({"_id": realm, "run_id": {"$exists": True}})
    return {
        **state,
        "enabled": bool(((mapping_set or {}).get("settings") or {}).get("enabled")),
        "last_backfill": {k: iso(run.get(k)) for k in BACKFILL_FIELDS} if run else None,
    }


def _account_errors(row: Doc) -> list[Doc]:
    if row["status"] == "connected":
        return []
    at = row.get("disconnected_at") if row["status"] == "disconnected" else None
    return [{"source": "connector-auth", "at": at, "error": f"company is {row['status']}"}]


def _backfill_errors(healer: Healer, run: Doc | None) -> list[Doc]:
    if not run or not (run.get("error") or run.get("state") == "failed"):
        return []
    error = run.get("error") or run.get("reason") or "failed"
    return [
        {
            "source": f"{healer.service} backfill {run['run_id']}",
            "at": run.get("finished_at") or run.get("started_at"),
            "error": str(error),
        }
    ]


async def _mapping_errors(db: AsyncDatabase[Doc], realm: str) -> list[Doc]:
    """The last error of each mapping of the company that has one (mapping-registry)."""
    cursor = db["mapping_status"].find({"realm_id": realm, "last_error": {"$exists": True}})
    errors = [
        {
            "source": f"mapping-registry {doc.get('object_type')} mapping {doc.get('mapping_id')}",
            "at": iso(doc.get("last_error_at")),
            "error": str(doc["last_error"]),
        }
        async for doc in cursor
        if doc.get("last_error")
    ]
    return sorted(errors, key=lambda e: e["at"] or "")
