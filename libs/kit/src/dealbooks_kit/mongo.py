"""The service's MongoDB client and the indexes it declares.

Services stay inside the portable subset FerretDB 1.x, SecantusDB and MongoDB share:
no multi-document transactions, no change streams, no TTL or partial indexes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.database import AsyncDatabase

from dealbooks_kit.metrics import DB_COMMANDS
from dealbooks_kit.settings import KitSettings
from dealbooks_kit.tracing import CommandTracer, enabled


@dataclass(frozen=True)
class IndexSpec:
    """One index on one collection, created at start-up (createIndexes is idempotent)."""

    collection: str
    keys: Sequence[tuple[str, int]]
    unique: bool = False
    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class CommandCounter(monitoring.CommandListener):
    """Counts the database commands a service sends, by command and collection
    (`dealbooks_db_commands_total`): the cost of an event in round trips, on /metrics."""

    def __init__(self, service: str) -> None:
        self.service = service

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        collection = target if isinstance(target, str) else ""
        DB_COMMANDS.labels(self.service, event.command_name, collection).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def make_mongo_client(
    uri: str, app_name: str, *, tls_cafile: str = "", tls_certfile: str = ""
) -> AsyncMongoClient[dict[str, Any]]:
    """An async client with conservative timeouts (fail fast, retry at the consumer) that
    counts its commands (and traces them, when tracing is on: `dealbooks_kit.tracing`).

    Credentials and TLS options can be in `uri`; `tls_cafile` (the CA of the servers'
    certificates) and `tls_certfile` (a PEM with the client's certificate and key) turn TLS on.
    """
    tls: dict[str, Any] = {}
    if tls_cafile:
        tls["tlsCAFile"] = tls_cafile
    if tls_certfile:
        tls["tlsCertificateKeyFile"] = tls_certfile
    if tls:
        tls["tls"] = True
    listeners: list[monitoring.CommandListener] = [CommandCounter(app_name)]
    if enabled():
        listeners.append(CommandTracer())
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        event_listeners=listeners,
        **tls,
    )


def mongo_client(
    settings: KitSettings, app_name: str | None = None
) -> AsyncMongoClient[dict[str, Any]]:
    """`make_mongo_client` for the settings' URI and TLS files, named after the service
    unless `app_name` is given."""
    return make_mongo_client(
        settings.mongodb_uri,
        app_name or settings.service_name,
        tls_cafile=settings.mongodb_tls_cafile,
        tls_certfile=settings.mongodb_tls_certfile,
    )


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]], specs: Iterable[IndexSpec]) -> None:
    """Create every declared index; a no-op for those that already exist."""
    for spec in specs:
        options = dict(spec.options)
        if spec.name:
            options["name"] = spec.name
        await db[spec.collection].create_index(list(spec.keys), unique=spec.unique, **options)


async def ping(client: AsyncMongoClient[dict[str, Any]]) -> bool:
    try:
        await client.admin.command("ping")
    except Exception:  # any failure means "not ready"
        return False
    return True
