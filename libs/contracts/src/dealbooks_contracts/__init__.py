"""dealbooks event contracts: the envelope, every payload model, the topic registry.

Services import from here::

    from dealbooks_contracts import Envelope, InvoiceDrafted, Tenant, topic_for

    event = Envelope.build(payload, source="invoice-builder", caused_by=request_event)
    await broker.publish(event.to_bytes(), topic=event.topic, key=event.kafka_key)
"""

from . import _catalog, _registry, _types, events
from ._catalog import *  # noqa: F403
from ._envelope import OPERATOR_SOURCE, Envelope, EnvelopeError, Tenant, decode
from ._registry import *  # noqa: F403
from ._types import *  # noqa: F403
from ._uuid7 import uuid7, uuid7_time
from .compat import Incompatibility, IncompatibilityKind, find_incompatibilities, is_compatible
from .events import *  # noqa: F403

__all__ = [
    "OPERATOR_SOURCE",
    "Envelope",
    "EnvelopeError",
    "Incompatibility",
    "IncompatibilityKind",
    "Tenant",
    "decode",
    "find_incompatibilities",
    "is_compatible",
    "uuid7",
    "uuid7_time",
]
# The registry, the shared types and the payload models: the names their modules list in `__all__`.
__all__ += _catalog.__all__
__all__ += _registry.__all__
__all__ += _types.__all__
__all__ += events.__all__
