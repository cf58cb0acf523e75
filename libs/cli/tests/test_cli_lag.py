"""`dealbooks lag --consumer`: a consumer as a dead letter names it finds its group, whose id
the services prefix with TOPIC_PREFIX as their topics."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata
from dealbooks_cli import lag
from dealbooks_cli.stack import CliError, Stack

PREFIX = "run7."
TOPIC = PREFIX + "invoice.drafted.v1"


class Admin:
    async def list_consumer_groups(self) -> list[tuple[str, str]]:
        return [(PREFIX + "status-tracker.drafts", "consumer"), ("other.drafts", "consumer")]

    async def list_consumer_group_offsets(self, group: str) -> dict[Any, Any]:
        return {TopicPartition(TOPIC, 0): OffsetAndMetadata(2, "")}

    async def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        return [{"topic": t, "partitions": [{"partition": 0}]} for t in topics]


class Reader:
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 5)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 0)


@contextlib.asynccontextmanager
async def fake_kafka(stack: Stack) -> AsyncIterator[tuple[Reader, Admin]]:
    yield Reader(), Admin()


@pytest.fixture
def stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setattr(lag, "kafka_clients", fake_kafka)
    return Stack.load({"DEALBOOKS_ROOT": str(tmp_path), "TOPIC_PREFIX": PREFIX})


async def test_a_consumer_named_as_its_dead_letters_name_it_finds_its_prefixed_group(
    stack: Stack,
) -> None:
    expected = [
        {
            "group": PREFIX + "status-tracker.drafts",
            "topic": TOPIC,
            "lag": 3,
            "partitions_behind": 1,
            "partitions": 1,
        }
    ]
    assert await lag.consumer_lag(stack, "status-tracker.drafts") == expected
    assert await lag.consumer_lag(stack, PREFIX + "status-tracker.drafts") == expected
    with pytest.raises(CliError, match=r"no consumer group other\.nobody"):
        await lag.consumer_lag(stack, "other.nobody")
