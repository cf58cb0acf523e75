"""The installed `dealbooks` command, run as an operator runs it, for the CLI's tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from contact_sync.app import Settings, build
from dealbooks_contracts import SyncObjectType
from dealbooks_infra import testing
from dealbooks_infra.sync_world import SyncStack, SyncWorld
from dealbooks_sync.parts import SyncParts
from mapping_registry.app import Settings as RegistrySettings
from mapping_registry.app import build as build_registry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

DEALBOOKS = Path(sys.executable).with_name("dealbooks")


@dataclass
class Cli:
    env: dict[str, str]

    async def __call__(self, *args: str) -> tuple[int, Any, str]:
        """Run the installed `dealbooks` with `--json`; its exit code, parsed output, stderr."""
        proc = await asyncio.create_subprocess_exec(
            str(DEALBOOKS),
            *args,
            "--json",
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        parsed = json.loads(out) if out.strip() else None
        return int(proc.returncode or 0), parsed, err.decode()

    async def text(self, *args: str) -> tuple[int, str, str]:
        """Run the installed `dealbooks` as a person reads it (no `--json`); its exit code,
        stdout and stderr."""
        proc = await asyncio.create_subprocess_exec(
            str(DEALBOOKS),
            *args,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        return int(proc.returncode or 0), out.decode(), err.decode()

    def with_env(self, **more: str) -> Cli:
        return Cli({**self.env, **more})


@pytest.fixture
def dealbooks(
    kafka_bootstrap: str,
    mongo_uri: str,
    namespace: str,
    kafka_supports_idempotence: bool,
    tmp_path: Path,
) -> Callable[..., Cli]:
    """`dealbooks(**env)`: the command on the session's Kafka and MongoDB-wire server with this
    test's topic prefix, and no `.local` beside it (the environment alone); `env` adds
    variables, such as the database of each service it reads."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "DEALBOOKS_ROOT": str(tmp_path),
        "KAFKA_BOOTSTRAP": kafka_bootstrap,
        "KAFKA_IDEMPOTENCE": str(kafka_supports_idempotence).lower(),
        "MONGODB_URI": mongo_uri,
        "TOPIC_PREFIX": f"{namespace}.",
    }
    return lambda **env: Cli({**base, **env})


ServeStandIns = Callable[..., contextlib.AbstractContextManager[dict[str, str]]]


@pytest.fixture
def served(tmp_path: Path) -> ServeStandIns:
    """`with served(contact_sync=routes) as env`: each service's stand-in (its operator routes
    as the test answers them) served on a port of its own, and the environment in which
    `dealbooks` reaches them (`CONTACT_SYNC_URL`, ...) as an operator holding `credentials`
    (op-1 unless given), with no `.local` beside it."""

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @contextlib.contextmanager
    def serve(credentials: str = "op-1", **services: list[Route]) -> Iterator[dict[str, str]]:
        env = {"DEALBOOKS_ROOT": str(tmp_path), "DEALBOOKS_OPERATOR_CREDENTIALS": credentials}
        with contextlib.ExitStack() as stack:
            for name, routes in services.items():
                port = testing.free_port()
                stand_in = Starlette(routes=[*routes, Route("/readyz", ready)])
                stack.enter_context(testing.ServedApp(stand_in, port, name.replace("_", "-")))
                env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
            yield env

    return serve


@pytest.fixture
async def contacts(request: pytest.FixtureRequest) -> AsyncIterator[tuple[SyncStack, SyncParts]]:
    """contact-sync with the mapping registry, running on the session's servers and both
    sandboxes, for the commands that read or drive a real sync service."""
    world = SyncWorld.of(request)
    registry = build_registry(RegistrySettings(**world.settings("registry")), **world.tokens)
    service = build(Settings(**world.settings("contacts")), **world.tokens)
    async with world.running(registry, service, SyncObjectType.CONTACTS) as stack:
        yield stack, service
