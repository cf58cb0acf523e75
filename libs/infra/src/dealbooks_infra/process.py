"""Child processes that are started in their own process group and stopped by their own PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if `port` can be bound now (nothing listens on it, no socket holds it). With
    SO_REUSEADDR, as the servers bind: connections of a stopped server lingering in TIME_WAIT
    do not stop them, so they do not count here either."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def wait_for_port(
    port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until 127.0.0.1:`port` accepts TCP; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process exited with code {proc.returncode} before port {port} opened"
            )
        time.sleep(0.2)
    raise TimeoutError(f"nothing answered on 127.0.0.1:{port} within {timeout:.0f}s")


@dataclass
class ManagedProcess:
    """A server child process with its log file; `stop()` acts on its PID only."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    extra_cleanup: list[Path] = field(default_factory=list)

    @classmethod
    def spawn(
        cls, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None
    ) -> ManagedProcess:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                process_group=0,
            )
        return cls(name=name, popen=popen, log_path=log_path)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        stop_pid(self.popen.pid, timeout=timeout, popen=self.popen)


def stop_pid(
    pid: int, *, timeout: float = 15.0, popen: subprocess.Popen[bytes] | None = None
) -> None:
    """SIGTERM the process (and its group, which it leads), wait, then SIGKILL."""
    if popen is not None and popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if popen is not None:
        popen.wait(timeout=5)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still "exists"; treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True
