"""Traces across services: one trace from an HTTP request or webhook, through Kafka, into every
handler it leads to and their QuickBooks, CRM and MongoDB calls.

- An HTTP request to a service's API opens a server span (`TracingMiddleware`), continuing the
  caller's trace when it sends a W3C `traceparent` header.
- Publishing an event opens a producer span and writes its W3C trace context into the Kafka
  record's headers (`publishing`); an outbox entry keeps the context of the handler that wrote
  it (`outbox_context`), so a relay by the periodic pass still continues that trace
  (`continuing`).
- A consumer opens one span per record, a child of the context in its headers (`consuming`),
  with the event's type, id and tenant: never its data, never a token.
- Outbound HTTP calls (`dealbooks_http`) and MongoDB commands (`CommandTracer`) open client
  spans under whatever span is current.

Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`configure_tracing`): the tracer is
then OpenTelemetry's no-op one and the kit's hooks return before doing any work. Only the W3C
trace context is propagated, not baggage, which could carry anything.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pymongo import monitoring

from dealbooks_kit.settings import KitSettings

tracer = trace.get_tracer("dealbooks_kit")
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_PROPAGATOR.fields)  # traceparent, tracestate
_configured = threading.Lock()


def configure_tracing(settings: KitSettings) -> bool:
    """Send this process's spans to the OTLP/HTTP endpoint of the settings, in batches from a
    background thread; True when tracing is on. Without an endpoint (or with
    `OTEL_SDK_DISABLED=true`) nothing is installed. Once per process: the first service
    settings to ask name the process's spans (`service.name`)."""
    endpoint = settings.otel_exporter_otlp_endpoint.strip()
    if not endpoint or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return enabled()
    # Imported here: a process that does not trace never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    with _configured:
        if enabled():
            return True
        traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            endpoint.rstrip("/") + "/v1/traces"
        )
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.service_name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
        trace.set_tracer_provider(provider)
    return True


def enabled() -> bool:
    """True once a real tracer provider is installed (by `configure_tracing`, or by a test)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, ProxyTracerProvider | trace.NoOpTracerProvider)


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    context: otel_context.Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span]:
    """A current span that, on an exception, records the exception's type only: its message
    may quote a request or a document."""
    with tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


# --- Kafka --------------------------------------------------------------------------------


class _RecordHeaders(Getter[Any]):
    """Reads trace headers from a Kafka record's `(name, bytes)` pairs."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values = [
            bytes(value).decode(errors="replace")
            for name, value in carrier or ()
            if name == key and value is not None
        ]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [name for name, _ in carrier or ()]


_RECORD_HEADERS = _RecordHeaders()


def inject(headers: MutableMapping[str, str]) -> None:
    """Write the current trace context into `headers` (W3C `traceparent`, `tracestate`)."""
    _PROPAGATOR.inject(headers)


def extract_from_record(headers: Any) -> otel_context.Context:
    """The trace context a Kafka record's headers carry (an empty one if none)."""
    return _PROPAGATOR.extract(headers, getter=_RECORD_HEADERS)


def outbox_context() -> dict[str, str]:
    """The current trace context as fields of an outbox entry (none when tracing is off), so
    the relay that publishes the entry later continues the trace of the handler that wrote it."""
    if not enabled():
        return {}
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextmanager
def continuing(entry: Mapping[str, Any]) -> Iterator[None]:
    """Make the trace context an outbox entry kept (`outbox_context`) the current one, so
    publishing the entry continues the trace of the handler that wrote it."""
    carrier = {k: v for k, v in entry.items() if k in _TRACE_HEADERS and isinstance(v, str)}
    if not carrier or not enabled():
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract(carrier))
    try:
        yield
    finally:
        otel_context.detach(token)


@contextmanager
def publishing(
    topic: str, event_type: str, event_id: str, headers: dict[str, str]
) -> Iterator[None]:
    """A producer span for one event sent to `topic`, under the current span, its context
    written into `headers`."""
    if not enabled():
        yield
        return
    with span(
        f"publish {topic}",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "dealbooks.event.type": event_type,
            "dealbooks.event.id": event_id,
        },
    ):
        inject(headers)
        yield


@contextmanager
def consuming(record: Any, consumer: str, event: Any | None = None) -> Iterator[Span | None]:
    """One consumer span for one Kafka record, a child of the trace context in its headers.

    `event`, when the record decoded to an envelope, names the span's event: type, version, id,
    correlation id and tenant (portal and QuickBooks realm ids), nothing of its data."""
    if not enabled():
        yield None
        return
    attributes: dict[str, Any] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "messaging.consumer.group.name": consumer,
    }
    if event is not None:
        attributes |= {
            "dealbooks.event.type": event.type,
            "dealbooks.event.version": event.version,
            "dealbooks.event.id": str(event.id),
            "dealbooks.correlation_id": event.correlation_id,
            "dealbooks.tenant.portal_id": str(event.tenant.portal_id or ""),
            "dealbooks.tenant.account_id": str(event.tenant.account_id or ""),
        }
    with span(
        f"process {record.topic}",
        context=extract_from_record(getattr(record, "headers", None)),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as current:
        yield current


# --- MongoDB ------------------------------------------------------------------------------


class CommandTracer(monitoring.CommandListener):
    """A client span per MongoDB command, under the current span: the command's name, its
    database and collection; never the command's documents or filters."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, Any], Span] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        attributes = {
            "db.system.name": "mongodb",
            "db.operation.name": event.command_name,
            "db.namespace": event.database_name,
        }
        if collection:
            attributes["db.collection.name"] = collection
        span = tracer.start_span(
            f"{event.command_name} {collection}".strip(),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        self._open[(event.request_id, event.connection_id)] = span

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        span = self._open.pop((event.request_id, event.connection_id), None)
        if span is not None:
            span.end()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        span = self._open.pop((event.request_id, event.connection_id), None)
        if span is not None:
            # The failure's code name only: its message may quote the document.
            code = event.failure.get("codeName") or event.failure.get("code") or "error"
            span.set_status(Status(StatusCode.ERROR, str(code)))
            span.end()


# --- HTTP (server side) -------------------------------------------------------------------


class _AsgiHeaders(Getter[Any]):
    def get(self, carrier: Any, key: str) -> list[str] | None:
        wanted = key.encode()
        values = [v.decode("latin-1") for k, v in carrier if k.lower() == wanted]
        return values or None

    def keys(self, carrier: Any) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_ASGI_HEADERS = _AsgiHeaders()


class TracingMiddleware:
    """An ASGI middleware opening a server span per HTTP request, continuing the caller's
    trace (`traceparent`). The span is named after the route's template once routing found
    one (`POST /webhooks/quickbooks`), and records the method and status: no query string, no
    header but the trace context."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not enabled():
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")
        with span(
            method,
            context=_PROPAGATOR.extract(scope.get("headers") or [], getter=_ASGI_HEADERS),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scope.get("scheme", "")},
        ) as current:

            async def traced_send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    current.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        current.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:
                    current.set_attribute("http.route", route)
                    current.update_name(f"{method} {route}")


__all__ = [
    "CommandTracer",
    "TracingMiddleware",
    "configure_tracing",
    "consuming",
    "continuing",
    "enabled",
    "extract_from_record",
    "inject",
    "outbox_context",
    "publishing",
    "span",
    "tracer",
]
