"""How an event is described in a service's AsyncAPI document: the envelope carrying one
payload model, named after it, with the topic's fixed type and version, as in the contract
snapshots (`dealbooks_contracts.schemas`).

These models document; they never decode (consumers decode with `Envelope[payload]`)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from functools import cache
from typing import Annotated, Any, TypeVar

from dealbooks_contracts import REGISTRY, Envelope, EventPayload, EventSpec
from pydantic import ConfigDict, SkipValidation

__all__ = [
    "dead_letter_description",
    "documented_envelope",
    "event_summary",
    "with_event_schema",
]

H = TypeVar("H", bound=Callable[..., Awaitable[None]])


@cache
def documented_envelope(payload: type[EventPayload]) -> type[Envelope[Any]]:
    """The envelope of `payload` as the documents show it: `<Payload>Envelope`, its `type` and
    `version` the constants of the payload's topic."""
    spec = REGISTRY.by_model(payload)

    def fixed(schema: dict[str, Any]) -> None:
        properties = schema.setdefault("properties", {})
        properties["type"] = {"const": spec.type, "title": "Type", "type": "string"}
        properties["version"] = {"const": spec.version, "title": "Version", "type": "integer"}

    base: Any = Envelope[payload]  # type: ignore[valid-type]
    model: type[Envelope[Any]] = type(
        f"{payload.__name__}Envelope",
        (base,),
        {
            "__module__": __name__,
            "__doc__": f"A `{spec.topic}` event: the envelope carrying a {payload.__name__}.",
            "model_config": ConfigDict(json_schema_extra=fixed),
        },
    )
    return model


def event_summary(spec: EventSpec) -> str:
    """The first paragraph of the payload's docstring: what the event says happened."""
    text = (spec.model.__doc__ or "").strip()
    return " ".join(text.split("\n\n", 1)[0].split())


DLQ_HEADERS = (
    "dlq-reason",
    "dlq-error-type",
    "dlq-failure",
    "dlq-consumer",
    "dlq-attempts",
    "dlq-original-topic",
    "dlq-original-partition",
    "dlq-original-offset",
    "dlq-failed-at",
)


def with_event_schema(handler: H, payload: type[EventPayload]) -> H:
    """`handler`, taking what the subscriber's decoder returned, with the signature
    `(event: <Payload>Envelope)` under `SkipValidation`: faststream documents the payload from
    it, and hands the decoded body through unchecked; decoding stays the consumer's own."""
    model: Any = documented_envelope(payload)

    async def documented(event: Any) -> None:
        await handler(event)

    documented.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "event",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[model, SkipValidation],
            )
        ],
        return_annotation=None,
    )
    return documented  # type: ignore[return-value]


def dead_letter_description(spec: EventSpec, consumer: str) -> str:
    """What a consumer's dead-letter topic carries."""
    return (
        f"What {consumer} gave up on: the original bytes of a {spec.topic} record (this "
        "envelope, or malformed bytes as they came), keyed as the original, with the headers "
        f"{', '.join(DLQ_HEADERS)}. `dealbooks dlq` lists and replays them."
    )
