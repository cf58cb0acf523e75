"""Health, readiness, metrics and AsyncAPI docs of a service process, on real servers."""

from __future__ import annotations

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


def _runtime(kafka: str, mongo: str, namespace: str, idempotence: bool) -> ServiceRuntime:
    settings = KitSettings(
        service_name="kit-http",
        kafka_bootstrap=kafka,
        mongodb_uri=mongo,
        mongodb_database=namespace,
        topic_prefix=f"{namespace}.",
        kafka_idempotence=idempotence,
    )
    runtime = ServiceRuntime(settings)
    runtime.consume("watch", QboEntityChanged, _noop)
    return runtime


async def test_ready_metrics_docs_and_service_api_are_served(
    kafka_bootstrap: str, mongo_uri: str, namespace: str, kafka_supports_idempotence: bool
) -> None:
    runtime = _runtime(kafka_bootstrap, mongo_uri, namespace, kafka_supports_idempotence)

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
        assert ready.json() == {"ready": True, "checks": {"kafka": True, "mongodb": True}}
        metrics = await client.get("/metrics")
        assert "dealbooks_events_consumed_total" in metrics.text
        docs = await client.get("/docs/asyncapi.json")
        assert f"{namespace}.qbo.entity-changed.v1" in docs.text
        assert (await client.get("/v1/accounts/42")).json() == {"account": "42"}


async def test_not_ready_when_mongodb_is_unreachable(
    kafka_bootstrap: str, namespace: str, kafka_supports_idempotence: bool
) -> None:
    runtime = _runtime(
        kafka_bootstrap,
        "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
        namespace,
        kafka_supports_idempotence,
    )
    app = runtime.asgi(title="kit-http")
    await runtime.broker.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://svc"
        ) as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"kafka": True, "mongodb": False}
    finally:
        await runtime.broker.stop()
