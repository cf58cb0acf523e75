"""The reconciliation pass when more changes wait than one CDC answer holds: QuickBooks answers
at most 1,000 objects per call, so the pass calls again from where the answer stopped. Here
1,050 customers appear in QuickBooks at once (the sandbox's bulk seed: no webhooks, and all
but the first stamped with the same LastUpdatedTime), and one pass brings every one of them to
the CRM as exactly one contact (contact-sync and the mapping registry on real Kafka, FerretDB
and both sandboxes over HTTP)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from dealbooks_contracts import SyncAction
from dealbooks_http import RateBudget
from dealbooks_infra.sync_world import SyncStack
from dealbooks_infra.testing import eventually
from dealbooks_sync.healing import CDC_MAX_OBJECTS
from dealbooks_sync.parts import SyncParts
from qbo_sandbox.pytest_plugin import SandboxHandle, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration

CUSTOMERS = CDC_MAX_OBJECTS + 50


@pytest.fixture(scope="module")
def qbo_sandbox() -> Iterator[SandboxHandle]:
    """A QBO sandbox of this module's own without QuickBooks' per-company request limits, so
    re-reading a thousand customers takes seconds; its CDC keeps its 1,000-object cap."""
    handle = start_sandbox("--seed", "demo", "--no-throttle")
    try:
        yield handle
    finally:
        stop_sandbox(handle)


@pytest.fixture
def tune_contacts() -> Callable[[SyncParts], None]:
    """contact-sync (the conftest's `contacts`) without a QBO rate budget: the sandbox above
    has no limit to keep under."""

    def unlimited(service: SyncParts) -> None:
        service.clients.qbo.budget = RateBudget(rate=1000, period=1.0, concurrency=10)

    return unlimited


async def test_more_changes_than_one_cdc_answer_holds_reach_the_crm_each_exactly_once(
    contacts: tuple[SyncStack, SyncParts],
    qbo_sandbox: SandboxHandle,
    qbo_company: Any,
    crm_sandbox: Any,
    crm_portal: Any,
) -> None:
    stack, service = contacts
    await stack.settings(enabled=True)
    realm = qbo_company.realm_id
    tag = uuid.uuid4().hex[:8]
    seeded = qbo_sandbox.bulk_seed(
        realm,
        {
            "count": CUSTOMERS,
            "display_name": f"Cap {tag} {{n:05d}}",
            "email": f"cap.{tag}.{{n:05d}}@example.com",
        },
    )
    first_id = int(seeded["first_customer_id"])
    ids = {str(first_id + n) for n in range(CUSTOMERS)}
    # One CDC answer cannot hold them all: the pass has to ask again.
    since = await service.reconciliation.watermarks.get(realm)
    assert since is not None
    one_answer = await service.clients.qbo.company(realm).cdc(["Customer"], since)
    assert len(one_answer.changes["Customer"]) == CDC_MAX_OBJECTS

    report = await service.reconciliation.reconcile_all()

    assert report.failed == {}
    contacts_made = [
        c
        for c in crm_sandbox.objects(crm_portal.portal_id, "contacts")
        if c["properties"].get("dealbooks_qbo_customer_id") in ids
    ]
    per_customer = Counter(c["properties"]["dealbooks_qbo_customer_id"] for c in contacts_made)
    assert set(per_customer) == ids, f"{len(ids - set(per_customer))} customers never synced"
    assert set(per_customer.values()) == {1}

    def created() -> Counter[str]:
        return Counter(
            e.data.qbo_customer_id
            for e in stack.events
            if getattr(e.data, "qbo_customer_id", None) in ids
            and e.data.action is SyncAction.CREATED
        )

    async def all_announced() -> bool:
        return set(created()) == ids

    await eventually(all_announced)
    assert set(created().values()) == {1}

    # The next pass starts past them all: nothing is created again.
    again = await service.reconciliation.reconcile_all()
    assert again.failed == {}
    assert sum(created().values()) == CUSTOMERS
    after = [
        c
        for c in crm_sandbox.objects(crm_portal.portal_id, "contacts")
        if c["properties"].get("dealbooks_qbo_customer_id") in ids
    ]
    assert len(after) == CUSTOMERS
