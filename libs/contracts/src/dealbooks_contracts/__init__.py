"""dealbooks event contracts: the envelope, every payload model, the topic registry.

Services import from here::

    from dealbooks_contracts import Envelope, InvoiceDrafted, Tenant, topic_for

    event = Envelope.build(payload, source="invoice-builder", caused_by=request_event)
    await broker.publish(event.to_bytes(), topic=event.topic, key=event.kafka_key)
"""

from . import _catalog, _envelope, _registry, _types, _uuid7, compat, events
from ._catalog import *  # noqa: F403
from ._envelope import *  # noqa: F403
from ._registry import *  # noqa: F403
from ._types import *  # noqa: F403
from ._uuid7 import *  # noqa: F403
from .compat import *  # noqa: F403
from .events import *  # noqa: F403

# The package's names are those its modules list in their `__all__`.
__all__: list[str] = []
__all__ += _catalog.__all__
__all__ += _envelope.__all__
__all__ += _registry.__all__
__all__ += _types.__all__
__all__ += _uuid7.__all__
__all__ += compat.__all__
__all__ += events.__all__
