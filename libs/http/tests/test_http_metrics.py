"""Outbound HTTP metrics, read from prometheus-client's registry after real calls to a local
server: calls by host and status class, 429s, retries, and time spent waiting on a budget."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from dealbooks_http import RateBudget, RetryableHTTPError, RetryPolicy, async_client
from prometheus_client import REGISTRY

HOST = "127.0.0.1"


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def server(serve: Any) -> AsyncIterator[str]:
    """Answers /busy with 429 (Retry-After: 0) the first time, 200 afterwards."""
    answered: list[int] = []

    async def busy(request: web.Request) -> web.Response:
        status = 429 if not answered else 200
        answered.append(status)
        return web.Response(status=status, headers={"Retry-After": "0"}, text="ok")

    app = web.Application()
    app.router.add_get("/busy", busy)
    yield await serve(app)


async def test_a_429_then_200_counts_calls_the_429_the_retry_and_the_budget_wait(
    server: str,
) -> None:
    before = {
        "ok": value("dealbooks_http_calls_total", host=HOST, status_class="2xx"),
        "4xx": value("dealbooks_http_calls_total", host=HOST, status_class="4xx"),
        "429": value("dealbooks_http_rate_limited_total", host=HOST),
        "retries": value("dealbooks_http_retries_total", host=HOST),
        "waits": value("dealbooks_http_budget_wait_seconds_count", host=HOST),
        "waited": value("dealbooks_http_budget_wait_seconds_sum", host=HOST),
    }
    # One request per 0.2 s: the retry has to wait for the budget's next slot.
    budget = RateBudget(rate=1, period=0.2, concurrency=1)
    policy = RetryPolicy(attempts=3, timeout=5.0, wait_initial=0.01, wait_max=0.05)

    async with async_client(base_url=server) as client:

        async def attempt() -> httpx.Response:
            async with budget.slot("realm-1", host=HOST):
                response = await client.get("/busy")
            if response.status_code == 429:
                raise RetryableHTTPError(response, 0.0)
            return response

        response = await policy.run(attempt)

    assert response.status_code == 200
    assert value("dealbooks_http_calls_total", host=HOST, status_class="2xx") == before["ok"] + 1
    assert value("dealbooks_http_calls_total", host=HOST, status_class="4xx") == before["4xx"] + 1
    assert value("dealbooks_http_rate_limited_total", host=HOST) == before["429"] + 1
    assert value("dealbooks_http_retries_total", host=HOST) == before["retries"] + 1
    assert value("dealbooks_http_budget_wait_seconds_count", host=HOST) == before["waits"] + 2
    waited = value("dealbooks_http_budget_wait_seconds_sum", host=HOST) - before["waited"]
    assert waited >= 0.1  # the second slot came about 0.2 s after the first


async def test_a_call_that_gets_no_answer_counts_as_an_error_of_its_host() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    before = value("dealbooks_http_calls_total", host=HOST, status_class="error")
    async with async_client() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://{HOST}:{port}/")
    assert value("dealbooks_http_calls_total", host=HOST, status_class="error") == before + 1


def test_labels_name_the_host_and_never_the_tenant_key() -> None:
    labels = {
        metric.name: sorted({k for s in metric.samples for k in s.labels})
        for metric in REGISTRY.collect()
        if metric.name.startswith("dealbooks_http_")
    }
    for names in labels.values():
        assert set(names) <= {"host", "status_class", "le"}
