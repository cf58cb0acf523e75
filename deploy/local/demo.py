"""`make demo`: start the local stack, run one event through the service kit, show it, stop.

It starts a real Kafka broker, a MongoDB-wire server and the API sandboxes, then pushes a QBO
change notification through a consumer that writes to MongoDB and publishes the next event,
delivers it twice to show the exactly-once effect, and feeds a malformed message to show the
dead-letter topic. It ends with one summary line and stops everything it started.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from dealbooks_contracts import (
    ContactSynced,
    Envelope,
    QboEntityChanged,
    QboOperation,
    SyncAction,
    SyncTrigger,
    Tenant,
)
from dealbooks_infra.process import ManagedProcess
from dealbooks_infra.servers import Server, start_kafka, start_mongo
from dealbooks_infra.stack import SANDBOXES, start_sandbox
from dealbooks_kit import KitSettings, PermanentError, ServiceRuntime, configure_logging


def say(text: str = "") -> None:
    print(text, flush=True)


async def kit_round_trip(kafka: Server, mongo: Server) -> list[str]:
    """Consume, write, publish; the same event twice; a poison message. Returns findings."""
    settings = KitSettings(
        service_name="demo",
        kafka_bootstrap=kafka.address,
        mongodb_uri=mongo.address,
        mongodb_database="demo",
        kafka_idempotence=kafka.kind != "tansu",
        handler_wait_initial=0.05,
    )
    runtime = ServiceRuntime(settings)

    async def on_customer_changed(event: Envelope[QboEntityChanged]) -> None:
        if not event.data.entity_id.isdigit():
            raise PermanentError(f"QBO customer id {event.data.entity_id!r} is not numeric")
        await runtime.db.contacts.update_one(
            {"_id": event.data.entity_id}, {"$inc": {"syncs": 1}}, upsert=True
        )
        synced = ContactSynced(
            action=SyncAction.UPDATED,
            trigger=SyncTrigger.WEBHOOK,
            mapping_version=1,
            qbo_customer_id=event.data.entity_id,
            crm_contact_id=f"crm-{event.data.entity_id}",
        )
        await runtime.publisher.publish(Envelope.build(synced, source="demo", caused_by=event))

    runtime.consume("demo-contacts", QboEntityChanged, on_customer_changed)
    tenant = Tenant(portal_id="demo-portal", account_id="9130350000000001")

    def change(customer_id: str) -> Envelope[QboEntityChanged]:
        payload = QboEntityChanged(
            realm_id="9130350000000001",
            entity="Customer",
            entity_id=customer_id,
            operation=QboOperation.UPDATE,
            last_updated=datetime.now(UTC),
        )
        return Envelope.build(payload, source="demo", tenant=tenant)

    findings: list[str] = []
    async with runtime.running():
        topic = settings.topic("qbo.entity-changed.v1")
        once = change("58")
        for value in (once.to_bytes(), once.to_bytes(), b"{oops", change("abc").to_bytes()):
            await runtime.publisher.publish_raw(topic, value, key=b"9130350000000001", headers={})
        await runtime.publisher.publish(change("59"))
        async with asyncio.timeout(30):
            while await runtime.db.contacts.count_documents({}) < 2:
                await asyncio.sleep(0.1)
        doc = await runtime.db.contacts.find_one({"_id": "58"})
        findings.append(f"customer 58 delivered twice, synced {doc['syncs'] if doc else 0} time(s)")
        dead = await _read(kafka.address, f"{topic}.dlq", 2)
        for record in dead:
            reason = dict(record.headers)["dlq-reason"].decode()
            findings.append(f"dead-lettered: {reason}")
        published = await _read(kafka.address, "contact.synced.v1", 2)
        findings.append(f"contact.synced events published: {len(published)}")
    return findings


async def _read(bootstrap: str, topic: str, count: int) -> list[object]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records: list[object] = []
    try:
        async with asyncio.timeout(30):
            while len(records) < count:
                for part in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(part)
    finally:
        await consumer.stop()
    return records


def main() -> int:
    started = time.monotonic()
    # The demo prints its own story; only real problems should show between its lines.
    configure_logging("demo", "CRITICAL", json=False)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    workdir = Path(tempfile.mkdtemp(prefix="dealbooks-demo-"))
    running: list[ManagedProcess] = []
    try:
        say("== starting the local stack (no Docker)")
        kafka = start_kafka(workdir)
        running.append(kafka.process)
        say(f"   Kafka:   {kafka.describe()}")
        mongo = start_mongo(workdir)
        running.append(mongo.process)
        say(f"   MongoDB: {mongo.describe()}")
        for spec in SANDBOXES:
            started = start_sandbox(spec, workdir / "logs")
            if started is None:
                say(f"   {spec.name}: not installed yet")
                continue
            running.append(started[0])
            say(f"   {spec.name}: {started[1]}")
        say("== one event through the service kit")
        findings = asyncio.run(kit_round_trip(kafka, mongo))
        for line in findings:
            say(f"   {line}")
        ok = findings[0].endswith("synced 1 time(s)") and len(findings) == 4
        elapsed = time.monotonic() - started
        if ok:
            say(f"demo: ok in {elapsed:.0f}s (Kafka {kafka.kind}, MongoDB-wire {mongo.kind})")
            return 0
        say("demo: FAILED: the kit did not show exactly-once effect and two dead letters")
        return 1
    except Exception as exc:
        say(f"demo: FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        for proc in reversed(running):
            proc.stop()


if __name__ == "__main__":
    sys.exit(main())
