"""Health, readiness, metrics and AsyncAPI docs of a service process, on real servers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from dealbooks_contracts import QboEntityChanged
from dealbooks_kit import KitSettings, ServiceRuntime
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

pytestmark = pytest.mark.integration


async def _noop(event: object) -> None:
    return None


def _runtime(settings: KitSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings)
    runtime.consume("watch", QboEntityChanged, _noop)
    return runtime


async def test_ready_metrics_docs_and_service_api_are_served(
    kit_settings: Any, namespace: str
) -> None:
    runtime = _runtime(kit_settings(service_name="kit-http"))

    async def account(request: object) -> JSONResponse:
        return JSONResponse({"account": request.path_params["account_id"]})  # type: ignore[attr-defined]

    api = Starlette(routes=[Route("/v1/accounts/{account_id}", account)])
    app = runtime.asgi(api=api, title="kit-http")
    async with (
        runtime.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client,
    ):
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "ready": True,
            "checks": {"started": True, "kafka": True, "mongodb": True},
        }
        metrics = await client.get("/metrics")
        assert "dealbooks_events_consumed_total" in metrics.text
        docs = await client.get("/docs/asyncapi.json")
        assert f"{namespace}.qbo.entity-changed.v1" in docs.text
        assert (await client.get("/v1/accounts/42")).json() == {"account": "42"}


async def test_metrics_count_database_commands_by_collection(kit_settings: Any) -> None:
    runtime = _runtime(kit_settings(service_name="kit-db-count"))
    app = runtime.asgi(title="kit-db-count")
    async with (
        runtime.running(),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client,
    ):
        for _ in range(3):
            await runtime.db["counted"].find_one({"_id": "nothing"})
        metrics = (await client.get("/metrics")).text
    line = 'dealbooks_db_commands_total{collection="counted",command="find",service="kit-db-count"}'
    assert f"{line} 3.0" in metrics


async def test_not_ready_when_mongodb_is_unreachable(kit_settings: Any) -> None:
    unreachable = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300"
    runtime = _runtime(kit_settings(service_name="kit-http", mongodb_uri=unreachable))
    app = runtime.asgi(title="kit-http")
    await runtime.broker.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://svc"
        ) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"started": False, "kafka": True, "mongodb": False}
    finally:
        await runtime.broker.stop()


async def test_periodic_job_keeps_running_after_a_failure_and_readiness_follows_the_start(
    kit_settings: Any,
) -> None:
    runtime = _runtime(kit_settings(service_name="kit-http"))
    runs: list[int] = []

    async def flaky_sweep() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise TimeoutError("QBO did not answer")

    runtime.every("flaky-sweep", 0.05, flaky_sweep)
    app = runtime.asgi(title="kit-http")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        await runtime.broker.start()
        before = (await client.get("/readyz")).json()
        await runtime.start_periodic()
        async with asyncio.timeout(10):
            while len(runs) < 3:
                await asyncio.sleep(0.02)
        after = (await client.get("/readyz")).json()
        await runtime.stop_periodic()
        await runtime.broker.stop()
    assert before["checks"]["started"] is False
    assert after == {"ready": True, "checks": {"started": True, "kafka": True, "mongodb": True}}
