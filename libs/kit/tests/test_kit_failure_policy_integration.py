"""The failure policy as a consumer applies it, on a real Kafka broker and MongoDB-wire server:
the same failures end differently when a person waits for them and when nobody does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from dealbooks_contracts import Envelope, QboEntityChanged, Tenant
from dealbooks_crm import CrmNotFound
from dealbooks_http import AccountUnavailable
from dealbooks_infra import testing
from dealbooks_kit import Decision, KitSettings, Origin, PermanentError, ServiceRuntime
from dealbooks_kit.metrics import TENANT_PAUSED
from dealbooks_kit.priority import a_person_waits as person_waits_now
from dealbooks_qbo import Throttled
from dealbooks_qbo._errors import FaultDetail

pytestmark = pytest.mark.integration

TENANT = Tenant(portal_id="portal-1", account_id="realm-1")

# What the handler raises for each entity id: one failure of each kind that ends differently.
FAILURES: dict[str, Callable[[], BaseException]] = {
    "revoked": lambda: AccountUnavailable("portal-1", "realm-1", reauth_required=True),
    "deal-gone": lambda: CrmNotFound("deal 7 does not exist", status=404),
    "refused": lambda: PermanentError("the customer has no email address"),
    "throttled": lambda: Throttled(429, [FaultDetail("3001", "ThrottleExceeded", "")]),
}


class Consumer:
    """One runtime, one consumer of `origin`, counting attempts and what it was told."""

    def __init__(self, settings: KitSettings, origin: Origin) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime(settings)
        self.attempts: dict[str, int] = {}
        self.told: list[tuple[str, str]] = []
        self.person_waited: set[bool] = set()
        self.runtime.consume(
            "policy",
            QboEntityChanged,
            self.handle,
            origin=origin,
            on_reject=self.reject if origin is Origin.PERSON else None,
        )

    async def handle(self, event: Envelope[QboEntityChanged]) -> None:
        entity_id = event.data.entity_id
        self.person_waited.add(person_waits_now())
        self.attempts[entity_id] = self.attempts.get(entity_id, 0) + 1
        if entity_id in FAILURES:
            raise FAILURES[entity_id]()
        await self.runtime.db.done.insert_one({"_id": entity_id})

    async def reject(
        self, event: Envelope[QboEntityChanged], decision: Decision, error: BaseException
    ) -> None:
        self.told.append((event.data.entity_id, decision.failure.value))

    async def run_all(self, dead_letters: int) -> list[Any]:
        """Send one event per failure and a last good one; then read the dead letters."""
        for entity_id in [*FAILURES, "fine"]:
            await self.runtime.publisher.publish_raw(
                self.settings.topic("qbo.entity-changed.v1"),
                testing.invoice_changed("realm-1", entity_id).to_bytes(),
                key=b"realm-1",
                headers={},
            )
        await testing.eventually(lambda: self.runtime.db.done.find_one({"_id": "fine"}))
        # One lane, in order: the good event came last, so every failure has ended.
        return await testing.read_topic(
            self.settings.kafka_bootstrap,
            self.settings.topic("qbo.entity-changed.v1.dlq"),
            lambda record: record,
            count=dead_letters,
            poll_ms=500,
        )


@pytest.fixture
def settings(kit_settings: Any) -> KitSettings:
    return kit_settings(handler_attempts=3, handler_wait_initial=0.02, handler_wait_max=0.05)


def paused() -> float:
    return sum(
        sample.value
        for metric in TENANT_PAUSED.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


@pytest.fixture
async def nobody_waits(settings: KitSettings) -> AsyncIterator[Consumer]:
    consumer = Consumer(settings, Origin.SYSTEM)
    async with consumer.runtime.running():
        yield consumer


@pytest.fixture
async def a_person_waits(settings: KitSettings) -> AsyncIterator[Consumer]:
    consumer = Consumer(settings, Origin.PERSON)
    async with consumer.runtime.running():
        yield consumer


async def test_when_nobody_waits_a_lost_grant_pauses_a_gone_target_settles_the_rest_dead_letters(
    nobody_waits: Consumer,
) -> None:
    before = paused()

    dead = await nobody_waits.run_all(dead_letters=2)

    reasons = {dict(r.headers)["dlq-failure"]: dict(r.headers)["dlq-reason"] for r in dead}
    assert set(reasons) == {b"invalid_input", b"rate_limited"}
    assert reasons[b"rate_limited"].startswith(b"gave up after 3 attempts")
    assert nobody_waits.attempts == {
        "revoked": 1,  # paused at once: nothing for the company can succeed until reconnected
        "deal-gone": 1,  # settled at once
        "refused": 1,  # dead-lettered at once: retrying cannot help
        "throttled": 3,  # retried, then dead-lettered
        "fine": 1,
    }
    assert paused() == before + 1
    assert nobody_waits.told == []
    # Its QuickBooks and CRM calls queue behind those a person waits on.
    assert nobody_waits.person_waited == {False}


async def test_when_a_person_waits_everything_that_cannot_succeed_is_told_to_them(
    a_person_waits: Consumer,
) -> None:
    dead = await a_person_waits.run_all(dead_letters=1)

    # Only what outlasted its retries is also left for an operator.
    assert [dict(r.headers)["dlq-failure"] for r in dead] == [b"rate_limited"]
    assert sorted(a_person_waits.told) == [
        ("deal-gone", "target_gone"),
        ("refused", "invalid_input"),
        ("revoked", "authorisation_lost"),
        ("throttled", "rate_limited"),
    ]
    assert a_person_waits.attempts["throttled"] == 3
    assert a_person_waits.attempts["revoked"] == 1
    # Its QuickBooks and CRM calls go ahead of the background ones.
    assert a_person_waits.person_waited == {True}


def test_a_consumer_a_person_waits_on_cannot_be_built_without_a_way_to_tell_them(
    settings: KitSettings,
) -> None:
    runtime = ServiceRuntime(settings)
    with pytest.raises(ValueError, match="on_reject"):
        runtime.consume("policy", QboEntityChanged, _noop, origin=Origin.PERSON)


async def _noop(event: Envelope[QboEntityChanged]) -> None:
    return None
