"""Where the running stack is: the environment first, then `.local/` from `make up`.

`make up` writes `.local/endpoints.env` (KAFKA_BOOTSTRAP, MONGODB_URI, TOPIC_PREFIX when set,
each service's `<SERVICE>_URL`) and keeps the operator credential in `.local/secrets.json`;
production sets the same names in the environment, which wins. Read here rather than through
dealbooks_infra, which brings pytest and the local servers with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dealbooks_kit import KitSettings
from dealbooks_kit.mongo import mongo_client
from dealbooks_kit.services import env_prefix
from pymongo import AsyncMongoClient


class CliError(Exception):
    """A failure the command reports in one line (and exits non-zero)."""


def local_dir(environ: Mapping[str, str]) -> Path | None:
    """The `.local/` of the checkout: under $DEALBOOKS_ROOT, else the nearest one above the
    working directory that holds an endpoints.env."""
    if root := environ.get("DEALBOOKS_ROOT"):
        return Path(root) / ".local"
    for parent in (Path.cwd(), *Path.cwd().parents):
        if (parent / ".local" / "endpoints.env").is_file():
            return parent / ".local"
    return None


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def unanswered(consumer: str) -> str:
    """What to look at when `consumer` (`<service>.<consumer>`) gave no outcome in time."""
    return (
        f"is {consumer} running and caught up? `dealbooks status` and "
        f"`dealbooks lag --consumer {consumer}` say"
    )


@dataclass(frozen=True)
class Stack:
    """The addresses and operator credential of one running dealbooks."""

    env: Mapping[str, str]
    local: Path | None = None

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> Stack:
        environ = dict(os.environ if environ is None else environ)
        local = local_dir(environ)
        recorded = _read_env_file(local / "endpoints.env") if local else {}
        return cls(env={**recorded, **environ}, local=local)

    def _require(self, name: str) -> str:
        value = self.env.get(name, "").strip()
        if not value:
            raise CliError(
                f"{name} is not set: start the stack with `make up` (it writes "
                ".local/endpoints.env) or set it in the environment"
            )
        return value

    @property
    def kafka_bootstrap(self) -> str:
        return self._require("KAFKA_BOOTSTRAP")

    @property
    def mongodb_uri(self) -> str:
        return self._require("MONGODB_URI")

    @property
    def topic_prefix(self) -> str:
        return self.env.get("TOPIC_PREFIX", "")

    def settings(self) -> KitSettings:
        """The kit's settings for the operator's own producer (topic names, broker)."""
        return KitSettings(
            service_name="dealbooks-operator",
            kafka_bootstrap=self.kafka_bootstrap,
            kafka_idempotence=self.env.get("KAFKA_IDEMPOTENCE", "true").lower() != "false",
            mongodb_uri=self.mongodb_uri,
            topic_prefix=self.topic_prefix,
        )

    def database(self, service: str) -> str:
        """A service's MongoDB database, as the service itself names it."""
        own = self.env.get(f"{env_prefix(service)}MONGODB_DATABASE")
        if own:
            return own
        return self.env.get("MONGODB_DATABASE_PREFIX", "") + service.replace("-", "_")

    def mongo(self) -> AsyncMongoClient[dict[str, Any]]:
        """A client of the stack's MongoDB, with its TLS files as the services have them."""
        settings = KitSettings(service_name="dealbooks-operator", mongodb_uri=self.mongodb_uri)
        return mongo_client(settings)

    def url(self, service: str) -> str:
        return self._require(f"{env_prefix(service)}URL").rstrip("/")

    def operator_credential(self) -> str:
        """The first of DEALBOOKS_OPERATOR_CREDENTIALS, else the one `make up` generated."""
        listed = [c.strip() for c in self.env.get("DEALBOOKS_OPERATOR_CREDENTIALS", "").split(",")]
        if listed and listed[0]:
            return listed[0]
        secrets = self.local / "secrets.json" if self.local else None
        if secrets and secrets.is_file():
            credential = json.loads(secrets.read_text()).get("operator_credential")
            if credential:
                return str(credential)
        raise CliError(
            "no operator credential: set DEALBOOKS_OPERATOR_CREDENTIALS (or run `make up`)"
        )
