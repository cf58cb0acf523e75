"""contact-sync's HTTP routes: an account's customer backfill (`dealbooks_sync.api`), for an
operator or an admin of the portal; the operator's reconciliation pass now
(`POST /sweeps/reconcile`) and audit trail of each customer's syncs."""

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
