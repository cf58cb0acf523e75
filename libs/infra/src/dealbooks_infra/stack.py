"""`make up` / `make down` / `make status`: the local stack as background processes.

What `up` started is recorded in `.local/`: one PID file per process (stop acts on those PIDs
only) and `.local/endpoints.env` with one NAME=value line per address.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from dealbooks_infra.process import (
    ManagedProcess,
    free_port,
    pid_alive,
    port_open,
    stop_pid,
)
from dealbooks_infra.servers import Server, repo_root, start_kafka, start_mongo

SERVICE_ORDER = (
    "connector-auth",
    "webhook-gateway",
    "invoice-builder",
    "status-tracker",
    "contact-sync",
    "product-sync",
    "mapping-registry",
)
DEFAULT_PORTS = {
    "kafka": 39092,
    "mongodb": 37018,
    "qbo-sandbox": 38001,
    "crm-sandbox": 38002,
    **{name: 8101 + i for i, name in enumerate(SERVICE_ORDER)},
}


@dataclass(frozen=True)
class SandboxSpec:
    name: str
    module: str
    env_name: str


SANDBOXES = (
    SandboxSpec("qbo-sandbox", "qbo_sandbox", "QBO_BASE_URL"),
    SandboxSpec("crm-sandbox", "crm_sandbox", "CRM_BASE_URL"),
)


def local_dir() -> Path:
    path = repo_root() / ".local"
    (path / "pids").mkdir(parents=True, exist_ok=True)
    return path


def _port(name: str) -> int:
    preferred = DEFAULT_PORTS[name]
    return free_port() if port_open(preferred) else preferred


def _record(name: str, pid: int) -> None:
    (local_dir() / "pids" / f"{name}.pid").write_text(str(pid))


def _recorded() -> dict[str, int]:
    pids = {}
    for path in sorted((local_dir() / "pids").glob("*.pid")):
        try:
            pids[path.stem] = int(path.read_text().strip())
        except ValueError:
            path.unlink()
    return pids


def read_endpoints() -> dict[str, str]:
    path = local_dir() / "endpoints.env"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def _write_endpoints(endpoints: dict[str, str]) -> None:
    body = "".join(f"{k}={v}\n" for k, v in endpoints.items())
    (local_dir() / "endpoints.env").write_text(body)


def start_sandbox(
    spec: SandboxSpec, logs: Path, port: int | None = None
) -> tuple[ManagedProcess, str] | None:
    """Start a sandbox package as its own process, if it is installed; wait for its health.

    Returns the process and its base URL, or None when the sandbox is not installed.
    """
    if importlib.util.find_spec(spec.module) is None:
        return None
    port = port or _port(spec.name)
    proc = ManagedProcess.spawn(
        spec.name,
        [sys.executable, "-m", spec.module, "--host", "127.0.0.1", "--port", str(port)],
        logs / f"{spec.name}.log",
    )
    url = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{url}/_sandbox/health", spec.name)
    return proc, url


def env_prefix(service: str) -> str:
    """The settings prefix of a service: invoice-builder -> INVOICE_BUILDER_."""
    return service.upper().replace("-", "_") + "_"


def installed_services() -> list[str]:
    """Services present in this checkout, in start order."""
    root = repo_root() / "services"
    return [
        name
        for name in SERVICE_ORDER
        if (root / name / "src" / name.replace("-", "_") / "__main__.py").exists()
    ]


def start_service(
    name: str, endpoints: dict[str, str], logs: Path, extra_env: dict[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """Run `python -m <service>` on a loopback port and wait until /healthz answers."""
    port = _port(name)
    prefix = env_prefix(name)
    env = {
        **endpoints,
        f"{prefix}SERVICE_NAME": name,
        f"{prefix}HTTP_HOST": "127.0.0.1",
        f"{prefix}HTTP_PORT": str(port),
        **(extra_env or {}),
    }
    module = name.replace("-", "_")
    proc = ManagedProcess.spawn(name, [sys.executable, "-m", module], logs / f"{name}.log", env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{url}/healthz", name)
    return proc, url


def _wait_http(proc: ManagedProcess, url: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{name} exited at start:\n{proc.log_tail()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise TimeoutError(f"{name} did not answer {url}:\n{proc.log_tail()}")


def up() -> dict[str, str]:
    """Start everything not already running; return the endpoints."""
    running = {name for name, pid in _recorded().items() if pid_alive(pid)}
    endpoints = read_endpoints() if running else {}
    data = local_dir()
    logs = data / "logs"
    if "kafka" not in running:
        server = start_kafka(data, _port("kafka"))
        _announce(server)
        _record("kafka", server.process.pid)
        endpoints["KAFKA_BOOTSTRAP"] = server.address
        endpoints["KAFKA_SERVER"] = server.kind
        endpoints["KAFKA_IDEMPOTENCE"] = "false" if server.kind == "tansu" else "true"
    if "mongodb" not in running:
        mongo = start_mongo(data, _port("mongodb"))
        _announce(mongo)
        _record("mongodb", mongo.process.pid)
        endpoints["MONGODB_URI"] = mongo.address
        endpoints["MONGODB_SERVER"] = mongo.kind
    for spec in SANDBOXES:
        if spec.name in running:
            continue
        started = start_sandbox(spec, logs)
        if started is not None:
            proc, url = started
            _record(spec.name, proc.pid)
            endpoints[spec.env_name] = url
            print(f"[stack] {spec.name} at {url}")
    for name in installed_services():
        if name in running:
            continue
        proc, url = start_service(name, endpoints, logs)
        _record(name, proc.pid)
        endpoints[f"{env_prefix(name)}URL"] = url
        print(f"[stack] {name} at {url}")
    _write_endpoints(endpoints)
    return endpoints


def _announce(server: Server) -> None:
    print(f"[stack] {server.describe()}", flush=True)


def down() -> None:
    """Stop every process `up` recorded, by its PID, services first."""
    pids = _recorded()
    order = sorted(pids, key=lambda n: (n in {"kafka", "mongodb"}, n in SANDBOX_NAMES, n))
    for name in order:
        pid = pids[name]
        if pid_alive(pid):
            print(f"[stack] stopping {name} (pid {pid})")
            stop_pid(pid)
        (local_dir() / "pids" / f"{name}.pid").unlink(missing_ok=True)
    (local_dir() / "endpoints.env").unlink(missing_ok=True)


SANDBOX_NAMES = {s.name for s in SANDBOXES}


def status() -> int:
    pids = _recorded()
    if not pids:
        print("[stack] nothing is running (make up starts it)")
        return 1
    for name, pid in pids.items():
        print(f"[stack] {name:<16} pid {pid:<8} {'running' if pid_alive(pid) else 'DEAD'}")
    for key, value in read_endpoints().items():
        print(f"[stack] {key}={value}")
    return 0 if all(pid_alive(p) for p in pids.values()) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dealbooks_infra")
    parser.add_argument("command", choices=["up", "down", "status", "install"])
    args = parser.parse_args(argv)
    if args.command == "up":
        for key, value in up().items():
            print(f"{key}={value}")
        return 0
    if args.command == "down":
        down()
        return 0
    if args.command == "install":
        from dealbooks_infra.servers import KAFKA_VERSIONS, ensure_ferretdb, ensure_kafka_jars

        print(f"[stack] Kafka jars: {ensure_kafka_jars(KAFKA_VERSIONS[0])}")
        print(f"[stack] FerretDB: {ensure_ferretdb()}")
        return 0
    return status()
