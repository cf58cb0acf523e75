"""status-tracker's periodic passes go on past a tenant that fails: a company whose grant was
revoked, a portal the app was uninstalled from. On real Kafka, a real MongoDB-wire server
and both sandboxes over HTTP."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from dealbooks_infra import testing
from prometheus_client import REGISTRY

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

Harness = Any  # the `tracker` fixture of conftest.py
World = Any


def tenant_failures(job: str) -> float:
    labels = {"job": job}
    return REGISTRY.get_sample_value("dealbooks_periodic_tenant_failures_total", labels) or 0


async def disconnect(tracker: Harness, world: World) -> None:
    """The company's owner disconnects the app inside QuickBooks: its grant is revoked."""
    async with httpx.AsyncClient(base_url=tracker.qbo_sandbox.base_url) as qbo:
        response = await qbo.post(
            "/v2/oauth2/tokens/revoke",
            json={"token": await tracker.qbo_tokens.token(world.realm)},
            auth=("sandbox-client", "sandbox-secret"),
        )
    response.raise_for_status()


async def test_reconciliation_goes_on_past_a_disconnected_company(tracker: Harness) -> None:
    first, disconnected, last = worlds = [tracker.world() for _ in range(3)]
    invoices = [(await world.tracked_invoice("300.00"))[1] for world in worlds]
    for world, invoice_id in zip(worlds, invoices, strict=True):
        world.pay(invoice_id, "100.00")  # every webhook of these payments is lost
    await disconnect(tracker, disconnected)
    realms = await tracker.service.store.realms()
    assert realms.index(first.realm) < realms.index(disconnected.realm) < realms.index(last.realm)
    failures = tenant_failures("reconciliation")

    passed = await tracker.service.passes.reconcile_all()

    assert list(passed.failed) == [disconnected.realm]
    assert "AuthRevoked" in passed.failed[disconnected.realm]
    assert tenant_failures("reconciliation") == failures + 1
    for world, invoice_id in [(first, invoices[0]), (last, invoices[2])]:
        await world.stage(invoice_id, "partially_paid")
        assert world.deal()["properties"]["acct_invoice_status"] == "partially_paid"
    doc = await tracker.service.store.tracked(disconnected.realm, invoices[1])
    assert doc is not None and doc["stage"] == "awaiting_send"


async def test_overdue_sweep_goes_on_past_a_portal_the_app_was_uninstalled_from(
    tracker: Harness,
) -> None:
    due = date.today() + timedelta(days=3)
    first, uninstalled, last = worlds = [tracker.world() for _ in range(3)]
    invoices = [(await world.tracked_invoice("75.00", due))[1] for world in worlds]
    tracker.crm_sandbox.uninstall(uninstalled.portal.portal_id)
    failures = tenant_failures("overdue-clock")

    with tracker.on_day(due + timedelta(days=1)):
        swept = await tracker.service.passes.overdue_sweep()

    assert list(swept.failed) == [uninstalled.tenant.portal_id]
    assert tenant_failures("overdue-clock") == failures + 1
    for world, invoice_id in [(first, invoices[0]), (last, invoices[2])]:
        await world.stage(invoice_id, "overdue")
        assert world.deal()["properties"]["acct_invoice_status"] == "overdue"


async def test_sweep_routes_report_the_tenants_that_failed(tracker: Harness) -> None:
    healthy, disconnected = tracker.world(), tracker.world()
    for world in (healthy, disconnected):
        await world.tracked_invoice("40.00")
    await disconnect(tracker, disconnected)

    async with tracker.api(tracker.operator) as operator:
        reconciled = (await operator.post("/sweeps/reconcile")).json()
        swept = (await operator.post("/sweeps/overdue")).json()

    # Earlier tests' tenants are in the same service: this test's two are looked at.
    assert disconnected.realm in reconciled["failed_realms"]
    assert healthy.realm not in reconciled["failed_realms"]
    assert isinstance(reconciled["changes"], int)
    assert isinstance(swept["moved"], int)
    assert healthy.tenant.portal_id not in swept["failed_portals"]


def counted(name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_a_change_of_a_company_whose_grant_was_revoked_pauses_it_and_dead_letters_nothing(
    tracker: Harness,
) -> None:
    """The failure policy for status-tracker's webhook consumer (nobody waits): a lost grant
    pauses the company, and the event is settled, not dead-lettered; the realm's watermark
    stays where it was, so the reconciliation pass after reconnecting applies the change."""
    world = tracker.world()
    _, invoice_id = await world.tracked_invoice("300.00")
    payment = world.pay(invoice_id, "100.00")
    watermark = await tracker.service.store.watermark(world.realm)
    await disconnect(tracker, world)
    mine = {"service": "status-tracker", "topic": "qbo.entity-changed.v1"}
    paused = counted("dealbooks_tenant_paused_total", **mine, failure="authorisation_lost")
    dead = counted("dealbooks_events_dead_lettered_total", **mine)

    await world.webhook("Payment", str(payment["Id"]), "Create")

    async def settled() -> bool:
        now = counted("dealbooks_tenant_paused_total", **mine, failure="authorisation_lost")
        return now > paused

    await testing.eventually(settled)
    assert counted("dealbooks_events_dead_lettered_total", **mine) == dead
    assert await tracker.service.store.watermark(world.realm) == watermark
    doc = await tracker.service.store.tracked(world.realm, invoice_id)
    assert doc is not None and doc["stage"] == "awaiting_send"
