"""dealbooks event contracts: the envelope, every payload model, the topic registry.

Services import from here::

    from dealbooks_contracts import Envelope, InvoiceDrafted, Tenant, topic_for

    event = Envelope.build(payload, source="invoice-builder", caused_by=request_event)
    await broker.publish(event.to_bytes(), topic=event.topic, key=event.kafka_key)
"""

from . import events
from ._catalog import (
    REGISTRY,
    all_specs,
    all_topics,
    spec_for_model,
    spec_for_topic,
    spec_for_type,
    topic_for,
)
from ._envelope import OPERATOR_SOURCE, Envelope, EnvelopeError, Tenant, decode
from ._registry import (
    DuplicateRegistrationError,
    EventScope,
    EventSpec,
    TopicRegistry,
    UnknownEventError,
    dlq_topic,
    topic_name,
)
from ._types import (
    Address,
    ContractModel,
    CountryCode,
    CurrencyCode,
    DecimalString,
    EventPayload,
    Money,
    NonEmptyStr,
)
from ._uuid7 import uuid7, uuid7_time
from .compat import Incompatibility, IncompatibilityKind, find_incompatibilities, is_compatible
from .events import *  # noqa: F403  (the payload models, as events.__all__ lists them)

__all__ = [
    "OPERATOR_SOURCE",
    "REGISTRY",
    "Address",
    "ContractModel",
    "CountryCode",
    "CurrencyCode",
    "DecimalString",
    "DuplicateRegistrationError",
    "Envelope",
    "EnvelopeError",
    "EventPayload",
    "EventScope",
    "EventSpec",
    "Incompatibility",
    "IncompatibilityKind",
    "Money",
    "NonEmptyStr",
    "Tenant",
    "TopicRegistry",
    "UnknownEventError",
    "all_specs",
    "all_topics",
    "decode",
    "dlq_topic",
    "find_incompatibilities",
    "is_compatible",
    "spec_for_model",
    "spec_for_topic",
    "spec_for_type",
    "topic_for",
    "topic_name",
    "uuid7",
    "uuid7_time",
]
__all__ += events.__all__
