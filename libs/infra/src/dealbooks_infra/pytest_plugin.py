"""Session fixtures that hand tests a real Kafka bootstrap address and a MongoDB URI.

Resolution order for each: an address in the environment (TEST_KAFKA_BOOTSTRAP /
TEST_MONGO_URI); testcontainers when a Docker daemon answers (skip with
TEST_NO_DOCKER=1); otherwise the deploy/local servers, started once per session
on free ports and stopped at the end. With TEST_REQUIRE_INFRA=1 (CI) a missing
server fails the run instead of skipping, so "all skipped" can never look green.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dealbooks_infra.process import ManagedProcess, free_port
from dealbooks_infra.servers import (
    KAFKA_VERSIONS,
    InfraUnavailable,
    ScramListener,
    start_kafka,
    start_mongo,
)
from dealbooks_infra.stack import start_service

_BACKENDS: dict[str, str] = {}
_SCRAM: list[ScramListener] = []  # the session Kafka's SASL/SCRAM listener, when it has one


def unavailable(what: str, why: str) -> None:
    """No server for an integration test: a skip, or under TEST_REQUIRE_INFRA=1 (CI) a failure."""
    message = f"no {what} for integration tests: {why}"
    if os.environ.get("TEST_REQUIRE_INFRA") == "1":
        pytest.fail(message)
    pytest.skip(message)


# The same Apache Kafka as every other path (the local broker, docker-compose, the k8s local
# overlay): its official image, one KRaft node.
KAFKA_IMAGE = f"apache/kafka:{KAFKA_VERSIONS[0]}"


@contextlib.contextmanager
def kafka_container() -> Iterator[str]:
    """A one-node KRaft broker of `KAFKA_IMAGE` under testcontainers; yields host:port. The
    host port is chosen first, so the broker can advertise it before it starts."""
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(9092, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS="PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
    )
    with container:
        wait_for_logs(container, "Kafka Server started", timeout=90)
        yield f"127.0.0.1:{port}"


def docker_available() -> bool:
    if os.environ.get("TEST_NO_DOCKER") == "1":
        return False
    try:
        import docker

        docker.from_env(timeout=2).ping()
    except Exception:  # any failure means "no usable daemon"
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real Kafka broker."""
    if address := os.environ.get("TEST_KAFKA_BOOTSTRAP"):
        _BACKENDS["kafka"] = f"from TEST_KAFKA_BOOTSTRAP at {address}"
        yield address
        return
    if docker_available():
        with kafka_container() as address:
            _BACKENDS["kafka"] = f"testcontainers {KAFKA_IMAGE} at {address}"
            yield address
        return
    try:
        server = start_kafka(tmp_path_factory.mktemp("kafka"), scram=True)
    except (InfraUnavailable, OSError, TimeoutError) as exc:
        unavailable("Kafka broker", str(exc))
        return
    _BACKENDS["kafka"] = server.describe()
    _BACKENDS["kafka_kind"] = server.kind
    if server.scram is not None:
        _SCRAM.append(server.scram)
    try:
        yield server.address
    finally:
        _SCRAM.clear()
        server.stop()


@pytest.fixture
def kafka_scram(kafka_bootstrap: str) -> ScramListener:
    """The session Kafka's SASL_PLAINTEXT listener and its SCRAM-SHA-512 user. A broker from
    the environment or Docker, or the Tansu fallback, has none: a skip that says so. The local
    Apache Kafka always has one, so there its absence is the infra rule's `unavailable` (a
    failure under TEST_REQUIRE_INFRA=1, as in CI)."""
    if not _SCRAM:
        why = f"the session's Kafka has no SCRAM listener ({_BACKENDS.get('kafka')})"
        if _BACKENDS.get("kafka_kind") == "apache-kafka":
            unavailable("Kafka SCRAM listener", why)
        pytest.skip(why)
    return _SCRAM[0]


@pytest.fixture(scope="session")
def mongo_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """mongodb:// URI of a real MongoDB-wire server."""
    if uri := os.environ.get("TEST_MONGO_URI"):
        _BACKENDS["mongodb"] = "from TEST_MONGO_URI"
        yield uri
        return
    if docker_available():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:7") as container:
            _BACKENDS["mongodb"] = "testcontainers mongo:7"
            yield container.get_connection_url()
        return
    try:
        server = start_mongo(tmp_path_factory.mktemp("mongo"))
    except (InfraUnavailable, OSError, TimeoutError) as exc:
        unavailable("MongoDB-wire server", str(exc))
        return
    _BACKENDS["mongodb"] = server.describe()
    try:
        yield server.address
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_supports_idempotence(kafka_bootstrap: str) -> bool:
    """False on the Tansu fallback, whose InitProducerId cannot serve aiokafka."""
    return _BACKENDS.get("kafka_kind") != "tansu"


@pytest.fixture
def namespace() -> str:
    """A short name unique to this test, for its database and topic prefix."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Tracing on for one test (set it up before the clients under test are made), every
    finished span kept by an in-memory exporter; off again afterwards."""
    from dealbooks_http import _transport
    from dealbooks_kit import tracing
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    # The project's tracers resolve the provider once they have one; forget it afterwards.
    monkeypatch.setattr(tracing.tracer, "_real_tracer", None)
    monkeypatch.setattr(_transport._tracer, "_real_tracer", None)
    yield exporter
    provider.shutdown()


SettingsT = TypeVar("SettingsT")


@pytest.fixture(scope="module")
def service_settings(
    kafka_bootstrap: str,
    mongo_uri: str,
    kafka_supports_idempotence: bool,
    qbo_sandbox: Any,
    crm_sandbox: Any,
) -> Callable[..., Any]:
    """Settings of a service under test: `service_settings(StatusTrackerSettings, "st", ...)`
    gives the service a database and topic prefix of its own (`st` and a random part) on the
    session's Kafka and MongoDB-wire server, both sandboxes' addresses, and retries quick
    enough for a test; keywords override any of it."""

    def make(settings_type: Callable[..., SettingsT], prefix: str, **overrides: Any) -> SettingsT:
        namespace = f"{prefix}{uuid.uuid4().hex[:8]}"
        fields: dict[str, Any] = {
            "kafka_bootstrap": kafka_bootstrap,
            "mongodb_uri": mongo_uri,
            "mongodb_database": namespace,
            "topic_prefix": f"{namespace}.",
            "kafka_idempotence": kafka_supports_idempotence,
            "qbo_base_url": qbo_sandbox.base_url,
            "crm_base_url": crm_sandbox.base_url,
            "handler_attempts": 4,
            "handler_wait_initial": 0.05,
            "handler_wait_max": 0.2,
        }
        return settings_type(**{**fields, **overrides})

    return make


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "kafka" in _BACKENDS or "mongodb" in _BACKENDS:
        terminalreporter.section("dealbooks infrastructure used")
        for key in ("kafka", "mongodb"):
            if key in _BACKENDS:
                terminalreporter.write_line(f"{key}: {_BACKENDS[key]}")


class ServiceProcesses:
    """Starts services as separate `python -m <service>` processes, as in production."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._running: list[ManagedProcess] = []

    def start(self, name: str, env: dict[str, str]) -> str:
        """Start `name` with `env` (infra addresses, prefixed settings); return its base URL."""
        proc, url = start_service(name, env, self._logs)
        self._running.append(proc)
        return url

    def stop_all(self) -> None:
        for proc in reversed(self._running):
            proc.stop()
        self._running.clear()


@pytest.fixture
def service_processes(tmp_path: Path) -> Iterator[ServiceProcesses]:
    """A factory for service processes; every process it started is stopped after the test."""
    processes = ServiceProcesses(tmp_path / "logs")
    try:
        yield processes
    finally:
        processes.stop_all()
