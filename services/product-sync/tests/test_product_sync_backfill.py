"""Who may start an item backfill: an operator, or an admin of the portal the account is
connected to; a refused call starts nothing."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_infra.sync_world import (
    BACKFILL_REFUSALS,
    OPERATOR,
    backfill_client,
    grant,
    refused_backfills,
)
from dealbooks_infra.testing import eventually

pytestmark = pytest.mark.integration


async def test_backfill_is_for_an_operator_or_the_portals_admin_and_refusals_start_nothing(
    products,
) -> None:
    stack, service = products
    await stack.settings(enabled=True)  # a backfill would run now, if it were let
    other = f"{stack.portal_id}-other"
    mine = f"/portals/{stack.portal_id}/accounts/{stack.realm_id}/backfill"
    runs = service.runtime.db["backfills"]

    statuses = await refused_backfills(service, stack.portal_id, stack.realm_id)
    refused_runs = await runs.count_documents({})

    async with backfill_client(service, OPERATOR) as operator:
        started = await operator.post(mine)
    run = f"{mine}/{started.json()['run_id']}"
    async with backfill_client(service, grant(stack.portal_id)) as admin:

        async def finished() -> dict[str, Any] | None:
            report: dict[str, Any] = (await admin.get(run)).json()
            return report if report["state"] != "running" else None

        report = await eventually(finished, timeout=60)
    async with backfill_client(service, grant(other)) as outsider:
        foreign = await outsider.get(f"/portals/{other}/accounts/{stack.realm_id}/backfill/x")

    assert statuses == BACKFILL_REFUSALS
    assert refused_runs == 0
    assert started.status_code == 202
    assert report["state"] == "done", report
    assert foreign.status_code == 404
