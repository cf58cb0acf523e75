"""The topics a service consumes, and their dead-letter topics, exist before it subscribes.

Creating them up front spares a consumer group an empty first assignment and gives dead letters
a home before the first one is written. Topics a service only produces to are created by the
broker on first publish. Where an operator provisions topics, `KAFKA_CREATE_TOPICS=false`
turns this off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from dealbooks_contracts import REGISTRY

from dealbooks_kit.kafka import kafka_client_options
from dealbooks_kit.settings import KitSettings


def topic_names(settings: KitSettings, event_types: Iterable[str]) -> list[str]:
    """The topics of `event_types` and their dead-letter topics, with the settings' prefix."""
    names: list[str] = []
    for event_type in event_types:
        spec = REGISTRY.by_type(event_type)
        names += [settings.topic(spec.topic), settings.topic(spec.dlq_topic)]
    return names


async def ensure_topics(settings: KitSettings, event_types: Iterable[str]) -> None:
    """Create the missing topics (one request); existing ones are left as they are."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in topic_names(settings, event_types) if n not in existing]
        if not missing:
            return
        new = [
            NewTopic(name, settings.kafka_partitions, settings.kafka_replication_factor)
            for name in missing
        ]
        # Another replica or service may have created some a moment ago; that is the goal too.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
    finally:
        await admin.close()
