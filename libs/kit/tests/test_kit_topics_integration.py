"""The topics a service consumes, and their dead-letter topics, exist once it has started."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from dealbooks_kit import KitSettings
from dealbooks_kit.topics import ensure_topics

pytestmark = pytest.mark.integration


async def test_start_up_creates_consumed_topics_and_their_dlqs_once(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = KitSettings(kafka_bootstrap=kafka_bootstrap, topic_prefix=f"{namespace}.")
    consumed = ["invoice.drafted", "qbo.entity-changed"]
    await ensure_topics(settings, consumed)
    await ensure_topics(settings, consumed)  # a second replica starting: nothing to do

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        ours = {t for t in await admin.list_topics() if t.startswith(f"{namespace}.")}
        described = await admin.describe_topics([f"{namespace}.invoice.drafted.v1"])
    finally:
        await admin.close()
    assert ours == {
        f"{namespace}.invoice.drafted.v1",
        f"{namespace}.invoice.drafted.v1.dlq",
        f"{namespace}.qbo.entity-changed.v1",
        f"{namespace}.qbo.entity-changed.v1.dlq",
    }
    assert len(described[0]["partitions"]) == 3
