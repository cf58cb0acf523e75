"""The installed `dealbooks` command, run as an operator runs it, for the CLI's tests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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
