"""The local stack: Kafka, a MongoDB-wire server, both API sandboxes and every service, each
its own process on 127.0.0.1.

`make up` starts it in the background and records what it started in `.local/`: one PID file
per process (`make down` acts on those PIDs only) and `.local/endpoints.env` with one
NAME=value line per address. `make demo` and end-to-end tests start the same stack in a
folder of their own and stop it when they are done.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from dealbooks_kit.services import SERVICES, env_prefix

from dealbooks_infra.process import (
    ManagedProcess,
    free_port,
    pid_alive,
    port_free,
    stop_pid,
)
from dealbooks_infra.servers import Server, repo_root, start_kafka, start_mongo
from dealbooks_infra.topology import StackSecrets, Topology

SERVICE_ORDER = SERVICES
# Services that may run as several processes in one consumer group (`make up REPLICAS=2`): all
# but the console, which keeps no state and consumes nothing. A replica's process is named
# `<service>#<n>`; the first, on the service's own port, is the one other parts call.
REPLICATED = tuple(name for name in SERVICE_ORDER if name != "console")


def service_of(process: str) -> str:
    """The service a process (`status-tracker`, `status-tracker#2`) runs."""
    return process.split("#", 1)[0]


# Below the kernel's ephemeral range (32768-60999 here), so a client connection's local port
# can never be holding one of them when the stack starts.
DEFAULT_PORTS = {
    "kafka": 19092,
    "mongodb": 17018,
    "qbo-sandbox": 18001,
    "crm-sandbox": 18002,
    # In the order services were added, so a new one moves no other's port.
    **{
        name: 8101 + i
        for i, name in enumerate([s for s in SERVICE_ORDER if s != "reminders"] + ["reminders"])
    },
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


def installed_services() -> list[str]:
    """Services present in this checkout, in start order."""
    root = repo_root() / "services"
    return [
        name
        for name in SERVICE_ORDER
        if (root / name / "src" / name.replace("-", "_") / "__main__.py").exists()
    ]


def _choose_ports() -> dict[str, int]:
    """Preferred ports where free, else any free port; chosen up front so every part can be
    told every other part's address before it starts."""
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name, preferred in DEFAULT_PORTS.items():
        port = preferred if port_free(preferred) and preferred not in taken else free_port()
        taken.add(port)
        ports[name] = port
    return ports


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


def start_sandbox(
    spec: SandboxSpec, logs: Path, port: int | None = None, args: tuple[str, ...] = ()
) -> tuple[ManagedProcess, str] | None:
    """Start a sandbox package as its own process, if it is installed; wait for its health.

    Returns the process and its base URL, or None when the sandbox is not installed.
    """
    if importlib.util.find_spec(spec.module) is None:
        return None
    port = port or free_port()
    argv = [sys.executable, "-m", spec.module, "--host", "127.0.0.1", "--port", str(port), *args]
    proc = ManagedProcess.spawn(spec.name, argv, logs / f"{spec.name}.log")
    url = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{url}/_sandbox/health", spec.name)
    return proc, url


def start_service(
    name: str,
    env: dict[str, str],
    logs: Path,
    port: int | None = None,
    process: str | None = None,
) -> tuple[ManagedProcess, str]:
    """Run `python -m <service>` on a loopback port and wait until /healthz answers;
    `process` names a replica (`<service>#<n>`, its own log file)."""
    process = process or name
    port = port or free_port()
    prefix = env_prefix(name)
    env = {
        **env,
        f"{prefix}SERVICE_NAME": name,
        f"{prefix}HTTP_HOST": "127.0.0.1",
        f"{prefix}HTTP_PORT": str(port),
    }
    module = name.replace("-", "_")
    log = logs / f"{process.replace('#', '-')}.log"
    proc = ManagedProcess.spawn(process, [sys.executable, "-m", module], log, env)
    url = f"http://127.0.0.1:{port}"
    _wait_http(proc, f"{url}/healthz", process)
    return proc, url


class LocalStack:
    """Starts every part in dependency order; `stop()` stops what it started, newest first."""

    def __init__(
        self,
        workdir: Path,
        *,
        say: bool = True,
        infra: dict[str, str] | None = None,
        replicas: int = 1,
    ) -> None:
        """`infra` (KAFKA_BOOTSTRAP, MONGODB_URI, KAFKA_IDEMPOTENCE, optionally TOPIC_PREFIX):
        use running servers instead of starting Kafka and the MongoDB-wire server (tests).
        `replicas`: processes per `REPLICATED` service, sharing its consumer groups."""
        self.workdir = workdir
        self.replicas = max(1, replicas)
        # The port of each extra replica (`<service>#<n>`), kept for a restart.
        self.replica_ports: dict[str, int] = {}
        self._given_infra = dict(infra or {})
        self.logs = workdir / "logs"
        self.processes: dict[str, ManagedProcess] = {}
        self.servers: dict[str, Server] = {}
        self._say = say
        self.topology = Topology(
            ports=_choose_ports(),
            secrets=StackSecrets.load_or_create(workdir / "secrets.json"),
        )

    def _announce(self, text: str) -> None:
        if self._say:
            print(f"[stack] {text}", flush=True)

    def start(self) -> dict[str, str]:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self.topology.endpoints()

    def _start(self) -> None:
        t = self.topology
        if self._given_infra:
            t.infra = dict(self._given_infra)
        else:
            self._start_servers()
        self._start_parts()

    def _start_servers(self) -> None:
        t = self.topology
        kafka = start_kafka(self.workdir, t.ports["kafka"])
        self._keep("kafka", kafka.process)
        self.servers["kafka"] = kafka
        self._announce(f"Kafka: {kafka.describe()}")
        mongo = start_mongo(self.workdir, t.ports["mongodb"])
        self._keep("mongodb", mongo.process)
        self.servers["mongodb"] = mongo
        self._announce(f"MongoDB-wire: {mongo.describe()}")
        t.infra = {
            "KAFKA_BOOTSTRAP": kafka.address,
            "KAFKA_IDEMPOTENCE": "false" if kafka.kind == "tansu" else "true",
            "MONGODB_URI": mongo.address,
        }

    def _start_parts(self) -> None:
        t = self.topology
        crm_seed = self.workdir / "crm-seed.json"
        crm_seed.write_text(json.dumps(t.crm_seed()))
        sandbox_args = {"qbo-sandbox": ("--seed", "demo"), "crm-sandbox": ("--seed", str(crm_seed))}
        for spec in SANDBOXES:
            started = start_sandbox(spec, self.logs, t.ports[spec.name], sandbox_args[spec.name])
            if started is None:
                raise RuntimeError(f"{spec.module} is not installed (make venv)")
            self._keep(spec.name, started[0])
            self._announce(f"{spec.name}: {started[1]}")
        # QBO delivers every webhook to the gateway, signed with the shared verifier token.
        httpx.post(
            f"{t.qbo}/_sandbox/webhooks",
            json={
                "url": f"{t.url('webhook-gateway')}/webhooks/quickbooks",
                "verifier_token": t.secrets.qbo_verifier_token,
                "format": "legacy",
            },
            timeout=10,
        ).raise_for_status()
        for name in installed_services():
            proc, url = start_service(name, t.service_env(name), self.logs, t.ports[name])
            self._keep(name, proc)
            self._announce(f"{name}: {url}")
            if name not in REPLICATED:
                continue
            for n in range(2, self.replicas + 1):
                replica = f"{name}#{n}"
                port = free_port()
                proc, url = start_service(name, t.service_env(name), self.logs, port, replica)
                self.replica_ports[replica] = port
                self._keep(replica, proc)
                self._announce(f"{replica}: {url}")

    def start_process(self, process: str) -> ManagedProcess:
        """Start one service process again (a primary or a replica) on its own port."""
        name, t = service_of(process), self.topology
        port = self.replica_ports.get(process, t.ports[name])
        proc, _ = start_service(name, t.service_env(name), self.logs, port, process)
        self.processes[process] = proc
        return proc

    def _keep(self, name: str, proc: ManagedProcess) -> None:
        self.processes[name] = proc

    def stop(self) -> None:
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()


# --- make up / down / status ----------------------------------------------------------------


def local_dir() -> Path:
    path = repo_root() / ".local"
    (path / "pids").mkdir(parents=True, exist_ok=True)
    return path


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


def up(replicas: int = 1) -> dict[str, str]:
    """Start the stack in the background (once); record PIDs and endpoints in .local/."""
    alive = {name for name, pid in _recorded().items() if pid_alive(pid)}
    if alive:
        print(f"[stack] already running ({', '.join(sorted(alive))}); `make down` first")
        return read_endpoints()
    data = local_dir()
    stack = LocalStack(data, replicas=replicas)
    endpoints = stack.start()
    for name, proc in stack.processes.items():
        (data / "pids" / f"{name}.pid").write_text(str(proc.pid))
    (data / "endpoints.env").write_text("".join(f"{k}={v}\n" for k, v in endpoints.items()))
    return endpoints


def down() -> None:
    """Stop every process `up` recorded, by its PID, newest (services) first."""
    pids = _recorded()
    start_order = ["kafka", "mongodb", *(s.name for s in SANDBOXES), *SERVICE_ORDER]

    def order(name: str) -> int:
        return -start_order.index(service_of(name)) if service_of(name) in start_order else 0

    for name in sorted(pids, key=order):
        pid = pids[name]
        if pid_alive(pid):
            print(f"[stack] stopping {name} (pid {pid})")
            stop_pid(pid)
        (local_dir() / "pids" / f"{name}.pid").unlink(missing_ok=True)
    (local_dir() / "endpoints.env").unlink(missing_ok=True)


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
    parser.add_argument(
        "--replicas", type=int, default=1, help="processes per consumer service (up)"
    )
    args = parser.parse_args(argv)
    if args.command == "up":
        endpoints = up(args.replicas)
        for key, value in endpoints.items():
            print(f"{key}={value}")
        if endpoints.get("CONSOLE_URL"):
            print(f"\nOpen the console: {endpoints['CONSOLE_URL']}/ (sign in with the CRM sandbox)")
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
