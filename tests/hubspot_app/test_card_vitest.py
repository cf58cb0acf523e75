"""hubspot-app's own tests run with the rest: vitest on the card (HubSpot's test renderer) and
TypeScript's check of the card against the SDK's types.

Unmarked, like the other tests that need no servers, so `make unit` runs them too. Node.js
with npm is a requirement of the suite, not an option: without it these fail, naming it.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "hubspot-app"
LOCK_FILE = APP / "package-lock.json"
# Written after a good `npm ci`: the lock file's digest that node_modules was installed from.
STAMP = APP / "node_modules" / ".dealbooks-lock-digest"
BIN = APP / "node_modules" / ".bin"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: hubspot-app's tests need Node.js with npm", pytrace=False
        )
    return path


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0", "CI": "true"}
    return subprocess.run(
        args, cwd=APP, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@contextmanager
def _locked(mode: int) -> Iterator[None]:
    # Test runs share this checkout: one installs while nobody else reads node_modules.
    with LOCK_FILE.open("rb") as handle:
        fcntl.flock(handle, mode)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@functools.cache
def _install() -> str | None:
    """Bring node_modules in line with package-lock.json; None, or why that failed."""
    npm = _tool("npm")
    digest = hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    with _locked(fcntl.LOCK_EX):
        if STAMP.is_file() and STAMP.read_text() == digest:
            return None
        result = _run([npm, "ci", "--no-audit", "--no-fund"], timeout=600)
        if result.returncode != 0:
            return f"npm ci in hubspot-app failed:\n{result.stdout}{result.stderr}"
        STAMP.write_text(digest)
    return None


def _passes(tool: str, *args: str) -> None:
    node = _tool("node")
    problem = _install()
    if problem is not None:
        pytest.fail(problem, pytrace=False)
    with _locked(fcntl.LOCK_SH):
        result = _run([node, str(BIN / tool), *args], timeout=180)
    if result.returncode != 0:
        pytest.fail(
            f"{tool} {' '.join(args)} failed:\n{result.stdout}{result.stderr}", pytrace=False
        )


def test_card_tests_pass_under_vitest() -> None:
    _passes("vitest", "run", "--reporter=dot")


def test_card_typechecks_against_the_sdk() -> None:
    _passes("tsc", "--noEmit", "-p", "tsconfig.json")
