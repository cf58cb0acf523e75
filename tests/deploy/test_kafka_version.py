"""One Apache Kafka on every path: the local broker the tests and `make up` run, the
testcontainers broker (when a Docker daemon answers), docker-compose and the local cluster."""

from __future__ import annotations

import re
from pathlib import Path

from dealbooks_infra.pytest_plugin import KAFKA_IMAGE
from dealbooks_infra.servers import KAFKA_VERSIONS

ROOT = Path(__file__).resolve().parents[2]


def images(text: str) -> set[str]:
    return set(re.findall(r"apache/kafka:[\w.\-]+", text))


def test_every_path_runs_the_same_kafka() -> None:
    expected = f"apache/kafka:{KAFKA_VERSIONS[0]}"
    assert expected == KAFKA_IMAGE
    assert images((ROOT / "docker-compose.yml").read_text()) == {expected}
    local = "".join(p.read_text() for p in (ROOT / "deploy/k8s/overlays/local").rglob("*.yaml"))
    assert images(local) == {expected}
