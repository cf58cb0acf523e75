"""Routes of product-sync. Backfilling the items of an account (see `dealbooks_sync.api`);
an operator runs the reconciliation pass now in `POST /sweeps/reconcile` and reads what was
done to an item in `GET /operator/audit/item/{realm}:{id}`."""

from __future__ import annotations

from dealbooks_kit import Guard, audit_routes
from dealbooks_sync.api import backfill_api
from dealbooks_sync.parts import SyncParts
from starlette.applications import Starlette


def routes(sync: SyncParts, guard: Guard) -> Starlette:
    return backfill_api(
        sync.backfill,
        guard,
        *audit_routes(guard, sync.runtime.use_audit()),
        reconciliation=sync.reconciliation,
    )
