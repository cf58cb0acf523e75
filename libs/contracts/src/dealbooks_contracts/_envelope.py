"""The envelope every event travels in, and how to build, chain, encode and decode one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, Self, TypeVar, cast
from uuid import UUID

from pydantic import UUID7, AwareDatetime, Field, ValidationError, field_validator, model_validator

from ._catalog import REGISTRY
from ._registry import EventScope, TopicRegistry, topic_name
from ._types import ContractModel, EventPayload, NonEmptyStr
from ._uuid7 import uuid7

__all__ = ["OPERATOR_SOURCE", "Envelope", "EnvelopeError", "Tenant", "decode"]

# The source of the events an operator publishes (`dealbooks replay record`): a request to read
# what the event names again, so a consumer does not answer it from what it remembers.
OPERATOR_SOURCE = "dealbooks-operator"

DataT = TypeVar("DataT", bound=EventPayload)
P = TypeVar("P", bound=EventPayload)


class EnvelopeError(ValueError):
    """Bytes that are not a valid envelope of a registered event."""


class Tenant(ContractModel):
    """Whose event this is: a CRM portal and, for most events, one QBO company (realm)."""

    portal_id: NonEmptyStr
    account_id: NonEmptyStr | None = Field(
        default=None,
        description="QBO realm id. None only for portal-scoped events (crm.object-changed).",
    )

    def require_account_id(self) -> str:
        """The realm id; raises for a portal-scoped event that has none."""
        if self.account_id is None:
            raise ValueError(f"portal {self.portal_id}: event carries no QBO account id")
        return self.account_id


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Envelope(ContractModel, Generic[DataT]):
    """One event: identity, type and major version, time, origin, tenant, causality, payload.

    Build one with :meth:`build`; the type and version come from the registry.
    """

    id: UUID7 = Field(default_factory=uuid7, description="Unique; consumers dedupe on it.")
    type: NonEmptyStr = Field(description="Event type, e.g. 'invoice.drafted'.")
    version: int = Field(ge=1, description="Major version; the topic carries it too.")
    occurred_at: AwareDatetime = Field(default_factory=_utc_now, description="UTC, ISO 8601.")
    source: NonEmptyStr = Field(description="The producing service, e.g. 'invoice-builder'.")
    tenant: Tenant
    correlation_id: NonEmptyStr = Field(
        description="The user action or webhook that started the chain."
    )
    causation_id: UUID | None = Field(default=None, description="Id of the event that caused it.")
    data: DataT

    @field_validator("occurred_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)

    @model_validator(mode="after")
    def _matches_registry(self) -> Self:
        # Payload, type/version and key scope can only disagree through a producer bug; catch it
        # at the producer rather than in every consumer.
        if isinstance(self.data, EventPayload):
            spec = REGISTRY.find_model(type(self.data))
            if spec is not None:
                if (spec.type, spec.version) != (self.type, self.version):
                    raise ValueError(
                        f"{type(self.data).__name__} is {spec.type} v{spec.version}, "
                        f"not {self.type} v{self.version}"
                    )
                if spec.scope is EventScope.ACCOUNT and self.tenant.account_id is None:
                    raise ValueError(f"{spec.type} is keyed by QBO account: tenant.account_id")
        return self

    @classmethod
    def build(
        cls,
        data: P,
        *,
        source: str,
        tenant: Tenant | None = None,
        caused_by: Envelope[Any] | None = None,
        correlation_id: str | None = None,
        occurred_at: datetime | None = None,
        registry: TopicRegistry = REGISTRY,
    ) -> Envelope[P]:
        """Wrap a payload, filling type and version from the registry.

        ``caused_by`` carries the parent's correlation id and tenant and sets the causation id.
        Without a parent, the correlation id defaults to the new event's own id (a new chain).
        """
        spec = registry.by_model(type(data))
        if caused_by is not None and correlation_id is not None:
            raise ValueError("give either caused_by or correlation_id, not both")
        if tenant is None:
            if caused_by is None:
                raise ValueError("a tenant is required when there is no parent event")
            tenant = caused_by.tenant
        event_id = uuid7()
        fields: dict[str, Any] = {
            "id": event_id,
            "type": spec.type,
            "version": spec.version,
            "source": source,
            "tenant": tenant,
            "correlation_id": correlation_id or str(event_id),
            "data": data,
        }
        if caused_by is not None:
            fields["correlation_id"] = caused_by.correlation_id
            fields["causation_id"] = caused_by.id
        if occurred_at is not None:
            fields["occurred_at"] = occurred_at
        model = cast("type[Envelope[P]]", Envelope[type(data)])  # type: ignore[misc]
        return model(**fields)

    def caused_by(self, parent: Envelope[Any]) -> Self:
        """A copy of this event that continues ``parent``'s chain (correlation and causation)."""
        return self.model_copy(
            update={"correlation_id": parent.correlation_id, "causation_id": parent.id}
        )

    @property
    def topic(self) -> str:
        """The Kafka topic of this event: ``<type>.v<version>``."""
        return topic_name(self.type, self.version)

    @property
    def kafka_key(self) -> bytes:
        """The Kafka message key: the QBO realm id, or the portal id for portal-scoped events."""
        return (self.tenant.account_id or self.tenant.portal_id).encode()

    def to_bytes(self) -> bytes:
        """The JSON wire form (UTF-8)."""
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes | str) -> Self:
        """Parse the JSON wire form into this (parametrized) envelope class."""
        return cls.model_validate_json(raw)


class _Header(ContractModel):
    type: str
    version: int


def decode(
    raw: bytes | str, *, topic: str | None = None, registry: TopicRegistry = REGISTRY
) -> Envelope[EventPayload]:
    """Parse any registered event, choosing the payload model from its type and version.

    If ``topic`` is given, the event must belong to it. Raises :class:`EnvelopeError`.
    """
    try:
        header = _Header.model_validate_json(raw)
        spec = registry.by_type(header.type, header.version)
        if topic is not None and spec.topic != topic:
            raise EnvelopeError(f"{spec.type} v{spec.version} does not belong on topic {topic}")
        model = cast("type[Envelope[EventPayload]]", Envelope[spec.model])  # type: ignore[name-defined]
        return model.model_validate_json(raw)
    except (ValidationError, LookupError) as exc:
        raise EnvelopeError(str(exc)) from exc
