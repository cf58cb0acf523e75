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


def make_mongo_client(uri: str, app_name: str) -> AsyncMongoClient[dict[str, Any]]:
    """An async client with conservative timeouts (fail fast, retry at the consumer) that
    counts its commands."""
    return AsyncMongoClient(
        uri,
        appname=app_name,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        connectTimeoutMS=5000,
        event_listeners=[CommandCounter(app_name)],
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
