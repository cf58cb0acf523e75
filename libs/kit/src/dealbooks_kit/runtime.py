"""Composition root helpers: one `ServiceRuntime` per process wires settings, Kafka, MongoDB,
consumers and the HTTP surface (health, readiness, metrics, AsyncAPI docs, the service API)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from dealbooks_contracts import REGISTRY, Envelope, EventPayload
from dealbooks_crm import CrmLimits
from dealbooks_http import TokenProvider
from faststream.asgi import AsgiFastStream, AsgiResponse, AsyncAPIRoute, get
from faststream.asgi.types import ASGIApp, Receive, Scope, Send
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_kit import metrics
from dealbooks_kit.access import ApiAccessSettings, ApiClients, api_clients
from dealbooks_kit.audit import AUDIT_INDEXES, Audit
from dealbooks_kit.budgets import SharedBudgets
from dealbooks_kit.consumer import (
    PROCESSED_INDEXES,
    DeadLetterHook,
    EventConsumer,
    Handler,
    P,
    ProcessedEvents,
    RejectHook,
)
from dealbooks_kit.eventdocs import documented_envelope, event_summary
from dealbooks_kit.failures import Origin
from dealbooks_kit.kafka import EventPublisher, make_broker
from dealbooks_kit.logging import configure_logging, get_logger
from dealbooks_kit.mongo import IndexSpec, ensure_indexes, mongo_client, ping
from dealbooks_kit.openapi import KitRoute, openapi_document
from dealbooks_kit.outbox import Outbox, outbox_index
from dealbooks_kit.periodic import (
    JobLeases,
    PeriodicJob,
    process_holder,
    run_leased,
    run_unleased,
)
from dealbooks_kit.settings import KitSettings
from dealbooks_kit.topics import ensure_topics
from dealbooks_kit.tracing import TracingMiddleware, configure_tracing

log = get_logger(__name__)

# The routes every service process serves besides its own API (all public by design).
KIT_ROUTES = (
    KitRoute("/healthz", "Liveness: the process runs."),
    KitRoute("/readyz", "Readiness: whether Kafka and MongoDB answer."),
    KitRoute("/metrics", "Prometheus metrics.", "text/plain"),
    KitRoute("/docs/asyncapi", "The event catalogue (AsyncAPI), as a page.", "text/html"),
    KitRoute("/docs/asyncapi.json", "The event catalogue (AsyncAPI 3.0)."),
    KitRoute("/docs/openapi.json", "This document: the HTTP API (OpenAPI 3.1)."),
)


class ServiceApp(AsgiFastStream):
    """AsgiFastStream with a fallback ASGI app for the service's own API.

    AsgiFastStream matches exact paths only; APIs with path parameters (Starlette) get every
    request the fixed routes (health, metrics, docs) did not take.
    """

    def __init__(self, *args: Any, api: ASGIApp | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._api = api

    async def not_found(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._api is not None and scope["type"] in {"http", "websocket"}:
            await self._api(scope, receive, send)
            return
        await super().not_found(scope, receive, send)


class ServiceRuntime:
    """Everything a service process owns, built from its settings."""

    def __init__(self, settings: KitSettings, indexes: Sequence[IndexSpec] = ()) -> None:
        self.settings = settings
        configure_tracing(settings)  # first: the MongoDB client traces its commands if it is on
        self.broker: KafkaBroker = make_broker(settings)
        self.mongo: AsyncMongoClient[dict[str, Any]] = mongo_client(settings)
        self.db: AsyncDatabase[dict[str, Any]] = self.mongo[settings.database_name]
        self.publisher = EventPublisher(self.broker, settings)
        self.indexes: list[IndexSpec] = [*PROCESSED_INDEXES, *indexes]
        self.consumers: list[EventConsumer[Any]] = []
        self.outbox = Outbox(self.db, self.publisher, service=settings.service_name)
        self._periodic: list[PeriodicJob] = []
        # Leased timers run in the replica holding the job's lease (dealbooks_kit.periodic).
        self.leases = JobLeases(self.db, settings.service_name, process_holder())
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False
        self.processed = ProcessedEvents(self.db)
        self._audit: Audit | None = None
        self.published: list[type[EventPayload]] = []
        self._budgets: SharedBudgets | None = None

    def consume(
        self,
        name: str,
        payload: type[P],
        handler: Handler[P],
        *,
        on_dead_letter: DeadLetterHook[P] | None = None,
        origin: Origin = Origin.SYSTEM,
        on_reject: RejectHook[P] | None = None,
        accepts: Callable[[Envelope[P]], bool] | None = None,
        ordering_key: Callable[[Envelope[P]], str] | None = None,
        selective: bool = False,
        dedupe: bool = True,
        **subscriber_options: Any,
    ) -> EventConsumer[P]:
        """Subscribe `handler` to the topic of `payload` under the kit's delivery rules;
        `on_dead_letter` hears of every decoded event the consumer gave up on; `origin` says
        whether a person waits for the outcome (`Origin.PERSON`: whatever cannot succeed is
        told to them through `on_reject`, see `dealbooks_kit.failures`); events
        `accepts` turns down are acknowledged without any work (or database call); events
        with the same `ordering_key` (default: the Kafka key, i.e. the tenant) are handled
        in order, others concurrently. A `selective` consumer, one that keeps few of its
        topic's events, lets Kafka gather records for `consumer_selective_wait_ms` before
        each fetch is answered, rather than fetching once per record. `dedupe=False` is for a
        handler that dedupes on a natural key of its own, reading that record first (a
        request's id, which also catches the same request sent again in a new envelope): the
        consumer then keeps no record per event id."""
        if selective:
            wait = self.settings.consumer_selective_wait_ms
            subscriber_options = {
                "fetch_max_wait_ms": wait,
                "fetch_min_bytes": 1 << 20,
                "batch_timeout_ms": max(wait, 50),
                **subscriber_options,
            }
        consumer = EventConsumer(
            name=name,
            payload=payload,
            handler=handler,
            settings=self.settings,
            db=self.db,
            publisher=self.publisher,
            on_dead_letter=on_dead_letter,
            origin=origin,
            on_reject=on_reject,
            accepts=accepts,
            ordering_key=ordering_key,
            dedupe=dedupe,
        )
        consumer.subscribe(self.broker, **subscriber_options)
        if not self.consumers:
            self.every("dedupe-pruning", 3600.0, self.forget_old_events)
        self.consumers.append(consumer)
        return consumer

    def publishes(self, *payloads: type[EventPayload]) -> None:
        """Declare the events this service publishes (through `publisher` or the outbox), for
        its AsyncAPI document. Declarations only: `EventPublisher` publishes any payload."""
        for payload in payloads:
            if payload in self.published:
                continue
            spec = REGISTRY.by_model(payload)
            self.broker.publisher(
                self.settings.topic(spec.topic),
                title=f"{self.settings.service_name}:{spec.topic}",
                description=f"{event_summary(spec)} Published by {self.settings.service_name}.",
                schema=documented_envelope(payload),
            )
            self.published.append(payload)

    async def forget_old_events(self) -> int:
        """Drop dedupe records older than `dedupe_retention_days`, so they do not grow forever."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.dedupe_retention_days)
        return await self.processed.forget_before(cutoff)

    def use_audit(self) -> Audit:
        """The service's audit recorder (`dealbooks_kit.audit`): declares its indexes and the
        daily pass that deletes entries past `audit_retention_days`."""
        if self._audit is None:
            self._audit = Audit(
                self.db, self.settings.service_name, self.settings.audit_retention_days
            )
            self.indexes.extend(AUDIT_INDEXES)
            self.every("audit-retention", 86400.0, self._audit.forget_expired)
        return self._audit

    def api_budgets(self, settings: ApiAccessSettings) -> SharedBudgets | None:
        """The QuickBooks and CRM budgets this process shares with every other service and
        replica (`dealbooks_kit.budgets`), for `api_clients(..., budgets=)`; None when the
        settings keep budgets per process (`API_BUDGETS=local`)."""
        if settings.api_budgets != "shared":
            return None
        if self._budgets is None:
            self._budgets = SharedBudgets(self.mongo[settings.api_budget_database])
            self.every("budget-cleanup", 3600.0, self._budgets.forget_idle)
        return self._budgets

    def api_clients(
        self,
        portal_of: Callable[[str], Awaitable[str | None]],
        *,
        qbo_tokens: TokenProvider | None = None,
        crm_tokens: TokenProvider | None = None,
        crm_limits: CrmLimits | None = None,
    ) -> ApiClients:
        """This process's QuickBooks and CRM clients (`dealbooks_kit.api_clients`) on its own
        settings, inside the budgets it shares with every other service and replica
        (`api_budgets`). Tests may inject token providers."""
        settings = self.settings
        if not isinstance(settings, ApiAccessSettings):
            raise TypeError(f"settings with API access, not {type(settings).__name__}")
        return api_clients(
            settings,
            portal_of,
            qbo_tokens=qbo_tokens,
            crm_tokens=crm_tokens,
            crm_limits=crm_limits,
            budgets=self.api_budgets(settings),
        )

    def use_outbox(self, *collections: str, reread: bool = False) -> Outbox:
        """Relay the outbox of documents in `collections`, periodically while running.

        `reread`: the collections grow with traffic, so the periodic pass scans them at its
        first run only, and their writers reread a document before changing it and relay what
        it still holds (`Outbox.relay_left`)."""
        if not self.outbox.collections:
            # In every replica: each relays what its own failed relays left (`check_later`,
            # failed publishes) and scans reread collections at its first pass.
            self.every(
                "outbox-relay",
                self.settings.outbox_relay_seconds,
                self.outbox.relay_pending,
                leased=False,
            )
        self.outbox.watch(*collections, reread=reread)
        if not reread:
            self.indexes.extend(outbox_index(c) for c in collections)
        return self.outbox

    def every(
        self,
        name: str,
        seconds: float,
        job: Callable[[], Awaitable[object]],
        *,
        leased: bool = True,
    ) -> None:
        """Run `job` every `seconds` while the service runs (first run at start), in one
        replica of the service at a time: the one holding the job's lease
        (`dealbooks_kit.periodic`). `leased=False` runs it in every replica, for work on the
        process's own state (what its own failed writes left, its caches).

        A failing run is logged and counted; the next one tries again. Timers (overdue clock,
        reconciliation, housekeeping) are registered here rather than started by hand, so they
        start after the broker and stop before it.
        """
        self._periodic.append(PeriodicJob(name, seconds, job, leased))

    async def prepare(self) -> None:
        """Create the service's indexes and topics (idempotent); runs before the broker starts."""
        await ensure_indexes(self.db, self.indexes)
        for consumer in self.consumers:
            consumer.reopen()
        if self.settings.kafka_create_topics and self.consumers:
            await ensure_topics(self.settings, {c.spec.type for c in self.consumers})

    async def start_periodic(self) -> None:
        """Start the registered timers (after the broker, which they may publish through)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._timer(job), name=job.name) for job in self._periodic
            ]
        self.started = True

    async def _timer(self, job: PeriodicJob) -> None:
        if not job.leased:
            return await run_unleased(job)
        await run_leased(job, self.leases, self.settings.periodic_lease_min_seconds)

    async def stop_periodic(self) -> None:
        """Stop the timers and let the consumers' in-flight handlers finish (before the broker
        stops, so what they publish still goes out and their offsets are committed)."""
        self.started = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(
            *(c.drain(self.settings.consumer_drain_seconds) for c in self.consumers)
        )
        try:
            await self.outbox.settle()
        except Exception as exc:  # left for the next start's pass, which relays them again
            log.warning("published outbox entries not removed", error=repr(exc))

    async def ready(self) -> dict[str, bool]:
        return {
            "started": self.started,
            "kafka": await self.broker.ping(timeout=2.0),
            "mongodb": await ping(self.mongo),
        }

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ServiceRuntime]:
        """Start consumers and the producer without HTTP (tests, workers); stop on exit."""
        await self.prepare()
        await self.broker.start()
        await self.start_periodic()
        try:
            yield self
        finally:
            await self.stop_periodic()
            await self.broker.stop()
            await self.mongo.close()

    def openapi(self, api: ASGIApp | None, *, title: str, version: str = "1") -> dict[str, Any]:
        """The OpenAPI document of the process: the kit's routes and those of `api` (built by
        a `Guard`, see `dealbooks_kit.openapi`)."""
        return openapi_document(
            getattr(api, "routes", None) or (),
            title=title,
            version=version,
            description=f"The HTTP API of {self.settings.service_name}.",
            kit_routes=KIT_ROUTES,
        )

    def asgi(self, *, api: ASGIApp | None = None, title: str, version: str = "1") -> ServiceApp:
        """The process's ASGI app: /healthz, /readyz, /metrics, /docs/asyncapi,
        /docs/openapi.json and `api`."""

        @get(include_in_schema=False)
        async def healthz(scope: Scope) -> AsgiResponse:
            return AsgiResponse(
                b'{"status":"ok"}', 200, headers={"content-type": "application/json"}
            )

        @get(include_in_schema=False)
        async def readyz(scope: Scope) -> AsgiResponse:
            checks = await self.ready()
            status = 200 if all(checks.values()) else 503
            body = json.dumps({"ready": status == 200, "checks": checks}).encode()
            return AsgiResponse(body, status, headers={"content-type": "application/json"})

        @get(include_in_schema=False)
        async def metrics_route(scope: Scope) -> AsgiResponse:
            body, content_type = metrics.render()
            return AsgiResponse(body, 200, headers={"content-type": content_type})

        @get(include_in_schema=False)
        async def openapi_route(scope: Scope) -> AsgiResponse:
            body = json.dumps(self.openapi(api, title=title, version=version)).encode()
            return AsgiResponse(body, 200, headers={"content-type": "application/json"})

        async def shutdown() -> None:
            await self.mongo.close()

        return ServiceApp(
            self.broker,
            api=None if api is None else TracingMiddleware(api),
            asgi_routes=[
                ("/healthz", healthz),
                ("/readyz", readyz),
                ("/metrics", metrics_route),
                ("/docs/openapi.json", openapi_route),
            ],
            on_startup=[self.prepare],
            after_startup=[self.start_periodic],
            on_shutdown=[self.stop_periodic],
            after_shutdown=[shutdown],
            specification=AsyncAPI(self.broker, title=title, version=version),
            # The catalogue only: faststream's "try it out" would publish anything to the real
            # broker for anyone who asks.
            asyncapi_path=AsyncAPIRoute(
                "/docs/asyncapi", asyncapi_json_path="/docs/asyncapi.json", try_it_out_path=None
            ),
        )


def serve(app: ServiceApp, settings: KitSettings) -> None:
    """Run the app under uvicorn on the configured loopback address."""
    import uvicorn

    configure_logging(settings.service_name, settings.log_level, json=settings.log_json)
    log.info("starting", host=settings.http_host, port=settings.http_port)
    uvicorn.run(
        app, host=settings.http_host, port=settings.http_port, log_config=None, access_log=False
    )


__all__ = ["ServiceApp", "ServiceRuntime", "serve"]
