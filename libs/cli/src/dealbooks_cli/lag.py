"""`dealbooks lag`: how far each consumer group is behind its topics, as KEDA counts it when it
scales a service (deploy/k8s/README.md): per partition, the end offset less the group's
committed offset, or less the partition's first offset where the group committed none (the
kit's consumers start from the earliest record)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from dealbooks_cli.deadletters import kafka_clients
from dealbooks_cli.stack import CliError, Stack


async def consumer_lag(stack: Stack, group: str | None = None) -> list[dict[str, Any]]:
    """One row per group and topic it reads (the topics it committed on), by group then
    topic: the lag, and how many of the topic's partitions have some. `group` is a group id,
    or `<service>.<consumer>` as a dead letter names it: the services prefix their group ids
    with TOPIC_PREFIX, as their topics."""
    prefix = stack.topic_prefix
    wanted = None if group is None else {group, prefix + group}
    async with kafka_clients(stack) as (consumer, admin):
        try:
            groups = sorted(g for g, _ in await admin.list_consumer_groups())
            rows = []
            for name in groups:
                if wanted is not None and name not in wanted:
                    continue
                committed = await admin.list_consumer_group_offsets(name)
                topics = sorted({tp.topic for tp in committed if tp.topic.startswith(prefix)})
                numbers = {
                    described["topic"]: sorted(p["partition"] for p in described["partitions"])
                    for described in (await admin.describe_topics(topics) if topics else [])
                }
                partitions = [TopicPartition(t, n) for t in topics for n in numbers.get(t, [])]
                rows += await _rows(consumer, name, partitions, committed)
        except KafkaError as exc:
            raise CliError(f"cannot read consumer groups from Kafka: {exc}") from exc
    if group is not None and not rows:
        raise CliError(f"no consumer group {group} has read anything (`dealbooks lag` lists all)")
    return rows


async def _rows(
    consumer: Any, group: str, partitions: list[TopicPartition], committed: dict[Any, Any]
) -> list[dict[str, Any]]:
    if not partitions:
        return []
    ends = await consumer.end_offsets(partitions)
    starts = await consumer.beginning_offsets(partitions)
    lag: dict[str, list[int]] = defaultdict(list)
    for tp in partitions:
        at = committed.get(tp)
        done = at.offset if at is not None and at.offset >= 0 else starts[tp]
        lag[tp.topic].append(max(0, ends[tp] - done))
    return [
        {
            "group": group,
            "topic": topic,
            "lag": sum(each),
            "partitions_behind": sum(1 for n in each if n),
            "partitions": len(each),
        }
        for topic, each in lag.items()
    ]
