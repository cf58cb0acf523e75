"""`dealbooks lag` on a real Kafka broker: a consumer group's committed offsets against the
ends of the partitions it reads, as KEDA counts them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

pytestmark = pytest.mark.integration

Cli = Any  # the `Cli` of conftest.py: the installed command with an environment


async def test_lag_counts_what_a_group_has_not_committed_per_topic(
    dealbooks: Callable[..., Cli], kafka_bootstrap: str, namespace: str
) -> None:
    topic = f"{namespace}.lag-sample.v1"
    group = f"{namespace}-ledger.apply"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for partition, count in ((0, 3), (1, 2)):
            for n in range(count):
                await producer.send_and_wait(topic, b"{}", key=str(n).encode(), partition=partition)
    finally:
        await producer.stop()
    # The group handled one record of partition 0 and has never committed on partition 1.
    reader = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, 0)])
        await reader.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "")})
    finally:
        await reader.stop()
    cli = dealbooks()

    code, rows, err = await cli("lag", "--consumer", group)
    assert code == 0, err
    assert rows == [
        {"group": group, "topic": topic, "lag": 4, "partitions_behind": 2, "partitions": 3}
    ]
    code, shown, err = await cli.text("lag", "--consumer", group)
    assert code == 0, err
    [heading, line] = shown.splitlines()
    assert heading.split() == ["GROUP", "TOPIC", "LAG", "PARTITIONS", "BEHIND"]
    assert line.split() == [group, topic, "4", "2/3"]

    code, _, err = await cli("lag", "--consumer", f"{namespace}-nobody.reads")
    assert code == 1
    assert err.startswith(f"dealbooks: no consumer group {namespace}-nobody.reads has read")
