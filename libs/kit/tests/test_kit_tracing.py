"""Trace context across Kafka records, outbox entries, HTTP requests and MongoDB commands, on an
in-memory span exporter; and nothing at all while tracing is off."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from dealbooks_contracts import Envelope, QboEntityChanged
from dealbooks_infra import testing
from dealbooks_kit import KitSettings, tracing
from dealbooks_kit.outbox import outbox_entry
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id
from opentelemetry.util._once import Once
from pymongo import monitoring
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def invoice_changed() -> Envelope[QboEntityChanged]:
    return testing.entity_changed("realm-9", "Invoice", "130", portal="portal-9")


@dataclass
class Record:
    """What the consumer reads of a Kafka record."""

    headers: list[tuple[str, bytes]] = field(default_factory=list)
    topic: str = "qbo.entity-changed.v1"
    partition: int = 2
    offset: int = 41


def only(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    [found] = [s for s in exporter.get_finished_spans() if s.name == name]
    return found


def test_publishing_writes_the_producer_spans_context_into_the_headers(
    spans: InMemorySpanExporter,
) -> None:
    headers = {"event-id": "e-1"}
    with (
        tracing.span("handle") as outer,
        tracing.publishing("invoice.drafted.v1", "invoice.drafted", "e-1", headers),
    ):
        pass

    producer = only(spans, "publish invoice.drafted.v1")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.parent is not None
    assert producer.parent.span_id == outer.get_span_context().span_id
    context = producer.get_span_context()
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        format_trace_id(context.trace_id),
        format_span_id(context.span_id),
    )
    assert producer.attributes is not None
    assert producer.attributes["messaging.destination.name"] == "invoice.drafted.v1"
    assert producer.attributes["dealbooks.event.id"] == "e-1"


def test_consuming_continues_the_trace_of_the_records_headers(
    spans: InMemorySpanExporter,
) -> None:
    event = invoice_changed()
    record = Record(headers=[("event-id", b"x"), ("traceparent", TRACEPARENT.encode())])

    with tracing.consuming(record, "status-tracker.invoice-changes", event):
        pass

    consumer = only(spans, "process qbo.entity-changed.v1")
    assert consumer.kind is SpanKind.CONSUMER
    assert format_trace_id(consumer.context.trace_id) == TRACE_ID
    assert consumer.parent is not None and format_span_id(consumer.parent.span_id) == PARENT_ID
    assert consumer.attributes == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "qbo.entity-changed.v1",
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 41,
        "messaging.consumer.group.name": "status-tracker.invoice-changes",
        "dealbooks.event.type": "qbo.entity-changed",
        "dealbooks.event.version": 1,
        "dealbooks.event.id": str(event.id),
        "dealbooks.correlation_id": event.correlation_id,
        "dealbooks.tenant.portal_id": "portal-9",
        "dealbooks.tenant.account_id": "realm-9",
    }


def test_a_record_without_trace_headers_starts_a_trace_of_its_own(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.consuming(Record(), "status-tracker.invoice-changes"):
        pass

    consumer = only(spans, "process qbo.entity-changed.v1")
    assert consumer.parent is None
    assert "dealbooks.event.id" not in (consumer.attributes or {})


def test_an_outbox_entry_relayed_later_continues_its_writers_trace(
    spans: InMemorySpanExporter,
) -> None:
    event = invoice_changed()
    with tracing.span("handler") as handler:
        entry = outbox_entry(event)

    # Relayed by a periodic pass, outside the handler.
    headers: dict[str, str] = {}
    with (
        tracing.continuing(entry),
        tracing.publishing("qbo.entity-changed.v1", event.type, str(event.id), headers),
    ):
        pass

    assert entry["traceparent"].startswith("00-")
    producer = only(spans, "publish qbo.entity-changed.v1")
    assert producer.context.trace_id == handler.get_span_context().trace_id
    assert producer.parent is not None
    assert producer.parent.span_id == handler.get_span_context().span_id
    assert trace.get_current_span() is trace.INVALID_SPAN  # the relay's own context is back


def test_tracing_off_leaves_headers_entries_and_records_untouched() -> None:
    assert not tracing.enabled()
    event = invoice_changed()
    headers = {"event-id": "e-1"}

    with tracing.publishing("invoice.drafted.v1", "invoice.drafted", "e-1", headers):
        pass
    with tracing.consuming(Record(headers=[("traceparent", TRACEPARENT.encode())]), "c") as span:
        assert span is None

    assert headers == {"event-id": "e-1"}
    assert set(outbox_entry(event)) == {"id", "event"}


def test_a_mongodb_command_is_a_span_naming_command_and_collection_only(
    spans: InMemorySpanExporter,
) -> None:
    listener = tracing.CommandTracer()
    command = {"find": "tracked_invoices", "filter": {"email": "payer@example.com"}}
    connection = ("127.0.0.1", 27017)
    with tracing.span("handler") as handler:
        listener.started(
            monitoring.CommandStartedEvent(command, "status_tracker", 7, connection, 7)
        )
        listener.succeeded(
            monitoring.CommandSucceededEvent(
                timedelta(milliseconds=2),
                {"ok": 1},
                "find",
                7,
                connection,
                7,
                database_name="status_tracker",
            )
        )

    span = only(spans, "find tracked_invoices")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None
    assert span.parent.span_id == handler.get_span_context().span_id
    assert span.attributes == {
        "db.system.name": "mongodb",
        "db.operation.name": "find",
        "db.namespace": "status_tracker",
        "db.collection.name": "tracked_invoices",
    }


def test_a_failed_mongodb_command_records_its_code_name_not_its_message(
    spans: InMemorySpanExporter,
) -> None:
    listener = tracing.CommandTracer()
    connection = ("127.0.0.1", 27017)
    listener.started(
        monitoring.CommandStartedEvent({"insert": "payments"}, "status_tracker", 8, connection, 8)
    )
    listener.failed(
        monitoring.CommandFailedEvent(
            timedelta(milliseconds=2),
            {"code": 11000, "codeName": "DuplicateKey", "errmsg": "dup key: payer@example.com"},
            "insert",
            8,
            connection,
            8,
            database_name="status_tracker",
        )
    )

    span = only(spans, "insert payments")
    assert span.status.description == "DuplicateKey"
    assert "payer@example.com" not in repr(span.to_json())


async def test_a_request_is_a_server_span_named_by_its_route_in_the_callers_trace(
    spans: InMemorySpanExporter,
) -> None:
    async def one(request: Request) -> JSONResponse:
        return JSONResponse({"id": request.path_params["invoice_id"]})

    app = tracing.TracingMiddleware(Starlette(routes=[Route("/invoices/{invoice_id}", one)]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tracker"
    ) as client:
        answer = await client.get(
            "/invoices/130?access_token=secret-in-query", headers={"traceparent": TRACEPARENT}
        )

    assert answer.status_code == 200
    server = only(spans, "GET /invoices/{invoice_id}")
    assert server.kind is SpanKind.SERVER
    assert format_trace_id(server.context.trace_id) == TRACE_ID
    assert server.parent is not None and format_span_id(server.parent.span_id) == PARENT_ID
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.route"] == "/invoices/{invoice_id}"
    assert "secret-in-query" not in repr(server.to_json())


async def test_a_failing_request_is_an_error_span_with_the_exceptions_type_only(
    spans: InMemorySpanExporter,
) -> None:
    async def broken(request: Request) -> Any:
        raise RuntimeError("payer@example.com could not be read")

    app = tracing.TracingMiddleware(Starlette(routes=[Route("/broken", broken)]))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://tracker",
    ) as client:
        await client.get("/broken")

    [server] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert not server.status.is_ok
    assert "payer@example.com" not in repr(server.to_json())


@pytest.fixture
def fresh_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No tracer provider yet, as in a new process; whatever the test installs is dropped."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(tracing.tracer, "_real_tracer", None)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    yield
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """An OTLP/HTTP endpoint that keeps what it is sent: (path, content type, body)."""
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        thread.join()


def test_without_an_endpoint_tracing_stays_off(fresh_provider: None) -> None:
    assert not tracing.configure_tracing(KitSettings(service_name="status-tracker"))
    assert not tracing.enabled()


def test_with_an_endpoint_spans_are_sent_there_over_otlp_http(
    fresh_provider: None, collector: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    endpoint, received = collector
    settings = KitSettings(service_name="status-tracker", otel_exporter_otlp_endpoint=endpoint)

    assert tracing.configure_tracing(settings)
    assert tracing.enabled()
    with tracing.span("sweep overdue invoices"):
        pass
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    provider.force_flush()

    [(path, content_type, body)] = received
    assert path == "/v1/traces"
    assert content_type == "application/x-protobuf"
    exported = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = exported.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "status-tracker"
    [scope_spans] = resource_spans.scope_spans
    assert [s.name for s in scope_spans.spans] == ["sweep overdue invoices"]
