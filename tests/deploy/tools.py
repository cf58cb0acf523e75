"""The deployment tools the deploy tests run, built once from the Go module proxy into
.cache/tools/bin (gitignored) at pinned versions: kustomize, kubeconform and docker compose."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".cache" / "tools" / "bin"

KUSTOMIZE = "sigs.k8s.io/kustomize/kustomize/v5@v5.7.1"
KUBECONFORM = "github.com/yannh/kubeconform/cmd/kubeconform@v0.7.0"
COMPOSE = "github.com/docker/compose/v5"
COMPOSE_VERSION = "v5.6.0"
# docker/compose's go.mod excludes two versions, which `go install pkg@version` refuses; a
# module of our own with the same excludes builds the same binary.
COMPOSE_GO_MOD = """module dealbooks.invalid/tools/compose

go 1.26

exclude (
\tgithub.com/davecgh/go-spew v1.1.2-0.20180830191138-d8f796af33cc
\tgithub.com/pmezard/go-difflib v1.0.1-0.20181226105442-5d4384ee4fb2
)
"""


def _go_env() -> dict[str, str]:
    if shutil.which("go") is None:
        raise RuntimeError("the deploy tests build their tools with Go: install Go")
    return {**os.environ, "GOBIN": str(BIN), "GOTOOLCHAIN": "local", "GOFLAGS": "-modcacherw"}


def _stamp(name: str) -> Path:
    return BIN / f".{name}.version"


def _current(name: str, version: str) -> bool:
    stamp = _stamp(name)
    return (BIN / name).exists() and stamp.exists() and stamp.read_text() == version


def _install(name: str, package: str) -> Path:
    if not _current(name, package):
        BIN.mkdir(parents=True, exist_ok=True)
        subprocess.run(["go", "install", package], check=True, env=_go_env())
        _stamp(name).write_text(package)
    return BIN / name


def kustomize() -> Path:
    return _install("kustomize", KUSTOMIZE)


def kubeconform() -> Path:
    return _install("kubeconform", KUBECONFORM)


def docker_compose() -> Path:
    """A standalone `docker-compose` (Compose v2+ runs without the docker CLI)."""
    version = f"{COMPOSE}@{COMPOSE_VERSION}"
    if not _current("docker-compose", version):
        work = ROOT / ".cache" / "tools" / "src" / "compose"
        work.mkdir(parents=True, exist_ok=True)
        (work / "go.mod").write_text(COMPOSE_GO_MOD)
        env = _go_env()
        subprocess.run(
            ["go", "get", f"{COMPOSE}/cmd@{COMPOSE_VERSION}"], cwd=work, check=True, env=env
        )
        subprocess.run(
            ["go", "build", "-trimpath", "-o", str(BIN / "docker-compose"), f"{COMPOSE}/cmd"],
            cwd=work,
            check=True,
            env=env,
        )
        _stamp("docker-compose").write_text(version)
    return BIN / "docker-compose"
