"""Who may start an item backfill: an operator, or an admin of the portal the account is
connected to; a refused call starts nothing."""

from __future__ import annotations

from typing import Any

import pytest
from dealbooks_infra.sync_world import OPERATOR, backfill_client, grant
from dealbooks_infra.testing import eventually

pytestmark = pytest.mark.integration


async def test_backfill_is_for_an_operator_or_the_portals_admin_and_refusals_start_nothing(
    products,
) -> None:
    stack, service = products
    await stack.settings(enabled=True)  # a backfill would run now, if it were let
    other = f"{stack.portal_id}-other"
    mine = f"/portals/{stack.portal_id}/accounts/{stack.realm_id}/backfill"
    elsewhere = f"/portals/{other}/accounts/{stack.realm_id}/backfill"
    runs = service.runtime.db["backfills"]

    statuses = {}
    for name, token, path in [
        ("no credential", None, mine),
        ("wrong operator credential", "not-the-operator", mine),
        ("another portal's grant", grant(other), mine),
        ("another portal's grant, its own path", grant(other), elsewhere),
        ("operator, a portal the account is not connected to", OPERATOR, elsewhere),
    ]:
        async with backfill_client(service, token) as caller:
            statuses[name] = (await caller.post(path)).status_code
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

    assert statuses == {
        "no credential": 401,
        "wrong operator credential": 401,
        "another portal's grant": 403,
        "another portal's grant, its own path": 404,
        "operator, a portal the account is not connected to": 404,
    }
    assert refused_runs == 0
    assert started.status_code == 202
    assert report["state"] == "done", report
    assert foreign.status_code == 404
