"""`dealbooks backfill status` of a run with records it could not sync: the records, with the
code and sentence of the `contact.sync-failed` events the run published (on a real Kafka
broker), and exit 1; a run of an account that has had none is a normal answer. contact-sync's
backfill route is a stand-in answering as the service does."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dealbooks_contracts import (
    ContactSyncFailed,
    Envelope,
    SyncFailureCode,
    SyncTrigger,
    Tenant,
)
from dealbooks_infra.sync_world import SyncStack
from dealbooks_kit import EventPublisher, KitSettings, make_broker
from dealbooks_sync.parts import SyncParts
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

pytestmark = pytest.mark.integration

Cli = Any  # the `Cli` of conftest.py: the installed command with an environment
BASE = "/portals/p1/accounts/{realm}/backfill"
WHERE = ["--kind", "contacts", "--portal", "p1"]


def failure(realm: str, qbo_id: str, trigger: SyncTrigger, correlation: str) -> Envelope[Any]:
    data = ContactSyncFailed(
        qbo_customer_id=qbo_id,
        code=SyncFailureCode.MISSING_KEY,
        message=f"QuickBooks customer {qbo_id} has no email, the contact's key",
        trigger=trigger,
        permanent=True,
        attempts=1,
        mapping_version=1,
    )
    tenant = Tenant(portal_id="p1", account_id=realm)
    return Envelope.build(data, source="contact-sync", tenant=tenant, correlation_id=correlation)


async def publish(bootstrap: str, idempotence: bool, prefix: str, *events: Any) -> None:
    settings = KitSettings(
        service_name="contact-sync",
        kafka_bootstrap=bootstrap,
        kafka_idempotence=idempotence,
        topic_prefix=prefix,
    )
    broker = make_broker(settings)
    await broker.connect()
    try:
        for event in events:
            await EventPublisher(broker, settings).publish(event)
    finally:
        await broker.stop()


async def test_a_runs_failed_records_are_named_with_why_and_exit_1(
    dealbooks: Callable[..., Cli],
    served: Any,
    kafka_bootstrap: str,
    kafka_supports_idempotence: bool,
    namespace: str,
) -> None:
    started = datetime.now(UTC)
    ours = "backfill:r1:contacts"
    await publish(
        kafka_bootstrap,
        kafka_supports_idempotence,
        f"{namespace}.",
        failure("r1", "58", SyncTrigger.BACKFILL, ours),
        # Not this run's: another company's backfill, and a webhook's sync of r1.
        failure("r2", "7", SyncTrigger.BACKFILL, "backfill:r2:contacts"),
        failure("r1", "59", SyncTrigger.WEBHOOK, "some-webhook"),
    )
    finished = datetime.now(UTC) + timedelta(seconds=1)
    run = {
        "run_id": "run-1",
        "realm_id": "r1",
        "state": "done",
        "read": 3,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "failed": 1,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
    }

    async def latest(request: Request) -> Any:
        if request.path_params["realm"] == "r1":
            return JSONResponse(run)
        return JSONResponse({"error": "no backfill run of this account"}, status_code=404)

    routes = [Route(BASE, latest, methods=["GET"])]
    with served(contact_sync=routes) as env:
        cli = dealbooks(**env)
        code, shown, err = await cli("backfill", "status", *WHERE, "--realm", "r1")
        text_code, text, _ = await cli.text("backfill", "status", *WHERE, "--realm", "r1")
        none_code, none, none_err = await cli("backfill", "status", *WHERE, "--realm", "r3")
        none_text_code, none_text, _ = await cli.text("backfill", "status", *WHERE, "--realm", "r3")
    assert code == 1, err
    [found] = shown["failures"]
    assert (found["record"], found["qbo_id"], found["code"]) == ("customer", "58", "MISSING_KEY")
    assert found["message"] == "QuickBooks customer 58 has no email, the contact's key"
    assert found["topic"] == f"{namespace}.contact.sync-failed.v1"
    assert text_code == 1
    assert "failed     1" in text.splitlines()
    assert any(line.split()[:3] == ["customer", "58", "MISSING_KEY"] for line in text.splitlines())
    assert "dealbooks replay record customer r1 58" in text
    assert "59" not in text.split("failures")[1].split("fix the cause")[0]
    # No run yet is an answer, not a refusal.
    assert (none_code, none, none_err) == (0, None, "")
    assert none_text_code == 0
    assert none_text == "no contacts backfill of r3 in portal p1 yet\n"


async def test_a_real_backfills_failed_customer_is_named_by_backfill_status(
    contacts: tuple[SyncStack, SyncParts],
    dealbooks: Callable[..., Cli],
    served: Any,
    qbo_sandbox: Any,
    qbo_company: Any,
    crm_portal: Any,
) -> None:
    """contact-sync's own backfill, on the sandboxes: a customer with no email cannot become
    a contact, and `backfill status` says which and why from what the run published."""
    stack, service = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    tag = uuid.uuid4().hex[:8]
    keyless = qbo_sandbox.user_creates(realm, "customers", {"DisplayName": f"No email {tag}"})
    keyless_id = keyless["Customer"]["Id"]
    report = await service.backfill.run(realm)
    assert report.state == "done" and report.failed >= 1, report
    run = await service.backfill.status(realm)  # what the service's route answers

    async def latest(request: Request) -> Any:
        return JSONResponse(run)

    routes = [Route(BASE.format(realm=realm).replace("p1", stack.portal_id), latest)]
    with served(contact_sync=routes) as env:
        cli = dealbooks(**env)
        where = ["--kind", "contacts", "--portal", stack.portal_id, "--realm", realm]
        code, shown, err = await cli("backfill", "status", *where)
    assert code == 1, err
    assert len(shown["failures"]) == report.failed
    [failure] = [f for f in shown["failures"] if f["qbo_id"] == keyless_id]
    assert (failure["record"], failure["code"]) == ("customer", "MISSING_KEY")
    assert "no email" in failure["message"]
