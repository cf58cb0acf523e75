"""The topic registry: event type + major version <-> topic <-> payload model."""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from ._types import EventPayload

__all__ = [
    "DuplicateRegistrationError",
    "EventScope",
    "EventSpec",
    "TopicRegistry",
    "UnknownEventError",
    "dlq_topic",
    "topic_name",
]

_SEGMENT = r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*"
_EVENT_TYPE = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})+$")
_RESERVED_LAST_SEGMENT = re.compile(r"^(?:v\d+|dlq)$")
DLQ_SUFFIX = ".dlq"


class DuplicateRegistrationError(ValueError):
    """An event type/version, topic or payload model is already registered."""


class UnknownEventError(LookupError):
    """No event is registered under the given type, topic or model."""


class EventScope(StrEnum):
    """Which tenant id keys an event on Kafka."""

    ACCOUNT = "account"
    """Keyed by the QBO realm id: one realm's work stays ordered on one partition."""
    PORTAL = "portal"
    """Keyed by the CRM portal id: the event happens before any QBO company is chosen."""


def topic_name(event_type: str, version: int) -> str:
    """The Kafka topic of an event type at a major version: ``invoice.drafted.v1``."""
    return f"{event_type}.v{version}"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a topic: ``invoice.drafted.v1.dlq``."""
    if topic.endswith(DLQ_SUFFIX):
        raise ValueError(f"{topic!r} is already a dead-letter topic")
    return f"{topic}{DLQ_SUFFIX}"


@dataclass(frozen=True)
class EventSpec:
    """One registered event: its type, major version, payload model and key scope."""

    type: str
    version: int
    model: builtins.type[EventPayload]
    scope: EventScope = EventScope.ACCOUNT

    @property
    def topic(self) -> str:
        """The Kafka topic of this event: ``<type>.v<version>``."""
        return topic_name(self.type, self.version)

    @property
    def dlq_topic(self) -> str:
        """The dead-letter topic of this event's topic."""
        return dlq_topic(self.topic)


@dataclass
class TopicRegistry:
    """Maps every event type and major version to exactly one topic and one payload model."""

    _by_key: dict[tuple[str, int], EventSpec] = field(default_factory=dict)
    _by_topic: dict[str, EventSpec] = field(default_factory=dict)
    _by_model: dict[type[EventPayload], EventSpec] = field(default_factory=dict)

    def register(
        self,
        event_type: str,
        version: int,
        model: type[EventPayload],
        *,
        scope: EventScope = EventScope.ACCOUNT,
    ) -> EventSpec:
        """Register an event; refuses a type/version, topic or model seen before."""
        _validate_type(event_type)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"version must be a positive int, got {version!r}")
        if not (isinstance(model, type) and issubclass(model, EventPayload)):
            raise TypeError(f"{model!r} is not an EventPayload subclass")
        spec = EventSpec(event_type, version, model, scope)
        if (event_type, version) in self._by_key:
            raise DuplicateRegistrationError(f"{event_type} v{version} is already registered")
        if spec.topic in self._by_topic:
            raise DuplicateRegistrationError(f"topic {spec.topic} is already registered")
        if model in self._by_model:
            other = self._by_model[model]
            raise DuplicateRegistrationError(
                f"{model.__name__} is already the payload of {other.topic}"
            )
        self._by_key[(event_type, version)] = spec
        self._by_topic[spec.topic] = spec
        self._by_model[model] = spec
        return spec

    def by_type(self, event_type: str, version: int | None = None) -> EventSpec:
        """The spec of an event type at a major version (the highest registered if None)."""
        if version is not None:
            try:
                return self._by_key[(event_type, version)]
            except KeyError:
                raise UnknownEventError(f"no event {event_type} v{version}") from None
        versions = [v for (t, v) in self._by_key if t == event_type]
        if not versions:
            raise UnknownEventError(f"no event of type {event_type}")
        return self._by_key[(event_type, max(versions))]

    def by_topic(self, topic: str) -> EventSpec:
        """The spec of a topic (``invoice.drafted.v1``)."""
        try:
            return self._by_topic[topic]
        except KeyError:
            raise UnknownEventError(f"no event on topic {topic}") from None

    def by_model(self, model: type[EventPayload]) -> EventSpec:
        """The spec whose payload is ``model``."""
        try:
            return self._by_model[model]
        except KeyError:
            raise UnknownEventError(f"{model.__name__} is not a registered payload") from None

    def find_model(self, model: type[EventPayload]) -> EventSpec | None:
        """Like :meth:`by_model`, but None for an unregistered model."""
        return self._by_model.get(model)

    def specs(self) -> tuple[EventSpec, ...]:
        """Every registered event, ordered by topic."""
        return tuple(self._by_topic[t] for t in sorted(self._by_topic))

    def topics(self) -> tuple[str, ...]:
        """Every registered topic, sorted."""
        return tuple(sorted(self._by_topic))

    def __iter__(self) -> Iterator[EventSpec]:
        return iter(self.specs())

    def __len__(self) -> int:
        return len(self._by_topic)


def _validate_type(event_type: str) -> None:
    if not _EVENT_TYPE.match(event_type):
        raise ValueError(
            f"event type {event_type!r} must be dotted lower-case kebab segments, "
            "e.g. 'invoice.drafted'"
        )
    if _RESERVED_LAST_SEGMENT.match(event_type.rsplit(".", 1)[1]):
        raise ValueError(f"event type {event_type!r} must not end in a version or '.dlq'")
