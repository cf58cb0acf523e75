"""Outbound calls as client spans (method, host, status; no query string, no header) that hand
their trace context to the server called, on an in-memory span exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from dealbooks_http import async_client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, format_span_id, format_trace_id

HOST = "127.0.0.1"
TOKEN = "at-5c1e0b-secret"


@pytest.fixture
async def server(serve: Any) -> AsyncIterator[tuple[str, list[str]]]:
    """Answers /v3/company/1/query with the traceparent it was sent (recorded), /missing 404."""
    received: list[str] = []

    async def query(request: web.Request) -> web.Response:
        received.append(request.headers.get("traceparent", ""))
        return web.json_response({"QueryResponse": {}})

    app = web.Application()
    app.router.add_get("/v3/company/1/query", query)
    yield await serve(app), received


async def test_a_call_is_a_client_span_whose_context_the_server_receives(
    spans: InMemorySpanExporter, server: tuple[str, list[str]]
) -> None:
    base, received = server
    async with async_client(base_url=base) as client:
        answer = await client.get(
            "/v3/company/1/query",
            params={"query": "select * from Invoice", "access_token": TOKEN},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        missing = await client.get("/missing")

    assert answer.status_code == 200 and missing.status_code == 404
    first, second = spans.get_finished_spans()
    assert first.name == f"GET {HOST}"
    assert first.kind is SpanKind.CLIENT
    assert first.attributes is not None
    assert first.attributes["http.request.method"] == "GET"
    assert first.attributes["server.address"] == HOST
    assert first.attributes["http.response.status_code"] == 200
    assert first.status.is_ok
    context = first.get_span_context()
    [traceparent] = received
    assert traceparent.split("-")[1:3] == [
        format_trace_id(context.trace_id),
        format_span_id(context.span_id),
    ]
    assert second.attributes is not None
    assert second.attributes["http.response.status_code"] == 404
    assert not second.status.is_ok
    shown = first.to_json() + second.to_json()
    assert TOKEN not in shown
    assert "select" not in shown and "query" not in shown.replace("/query", "")


async def test_a_call_that_gets_no_answer_is_an_error_span_naming_the_error_type(
    spans: InMemorySpanExporter,
) -> None:
    async with async_client(base_url="http://127.0.0.1:9") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("/v3/company/1/query", params={"access_token": TOKEN})

    [span] = spans.get_finished_spans()
    assert span.status.description == "ConnectError"
    assert TOKEN not in span.to_json()


async def test_without_tracing_no_trace_context_is_sent(server: tuple[str, list[str]]) -> None:
    base, received = server
    async with async_client(base_url=base) as client:
        await client.get("/v3/company/1/query")

    assert received == [""]
