"""Process helpers for the demo: start long-running peers in their own process group, wait until they answer,
remember their PIDs in a state file, and stop them by PID (SIGTERM to the group, then SIGKILL).

Why process groups: ``prefect worker start`` and ``prefect server start`` spawn children (flow-run processes,
uvicorn) and a background worker ignores SIGINT, so stopping only the leader can leave orphans. Every process
started here is a session leader (``start_new_session=True``), so ``os.killpg(pid, ...)`` reaches all of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "Started",
    "StateFile",
    "free_port",
    "port_is_free",
    "spawn",
    "stop_group",
    "wait_for_http",
    "prefect_env",
    "prefect_executable",
    "start_prefect_server",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Started:
    """A process we started: its name (for messages), the Popen handle and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        stop_group(self.pid, timeout=timeout, process=self.process)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Started:
    """Start ``argv`` as the leader of a new session (own process group), output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    return Started(name=name, process=process, log_path=log_path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process: not ours to stop
        return True
    return True


def stop_group(pid: int, *, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group led by ``pid``; SIGKILL what is left after ``timeout``. Idempotent.

    ``process`` (when we are its parent) is reaped; a PID read from a state file is polled instead."""

    def gone() -> bool:
        if process is not None:
            return process.poll() is not None
        return not _alive(pid)

    if gone():
        _killpg(pid, signal.SIGKILL)  # leftovers of a group whose leader already exited
        return
    _killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone():
            break
        time.sleep(0.1)
    _killpg(pid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
            process.wait(timeout=5)


def _killpg(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def wait_for_http(
    url: str,
    *,
    timeout: float,
    started: Started | None = None,
    ok: tuple[int, ...] = (200,),
    headers: Mapping[str, str] | None = None,
) -> None:
    """Poll ``url`` until it answers one of ``ok``; fail early (with its log) if ``started`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if started is not None and started.process.poll() is not None:
            raise RuntimeError(
                f"{started.name} exited with {started.process.returncode}:\n{started.log_tail()}"
            )
        try:
            if httpx.get(url, timeout=2, headers=dict(headers or {})).status_code in ok:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            tail = started.log_tail() if started else ""
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s\n{tail}")
        time.sleep(0.2)


def prefect_executable() -> str:
    """The ``prefect`` console script next to this interpreter (the project venv)."""
    candidate = Path(sys.executable).parent / "prefect"
    return str(candidate) if candidate.exists() else "prefect"


def prefect_env(
    api_url: str, *, home: Path, base: Mapping[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """An environment for Prefect clients (CLI, worker) that talks to ``api_url`` and keeps its profile
    under ``home``; analytics are off (DO_NOT_TRACK, PREFECT_SERVER_ANALYTICS_ENABLED)."""
    env = dict(os.environ if base is None else base)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=api_url,
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED=env.get("PREFECT_UI_ENABLED", "true"),
        PREFECT_LOGGING_LEVEL=env.get("PREFECT_LOGGING_LEVEL", "INFO"),
    )
    env.update(extra)
    return env


def start_prefect_server(
    *,
    home: Path,
    port: int,
    database_url: str | None = None,
    ui: bool = True,
    timeout: float = 90.0,
) -> tuple[Started, str]:
    """``prefect server start`` on 127.0.0.1:``port`` (SQLite under ``home`` unless ``database_url``);
    returns the process and the API URL once ``/api/health`` answers."""
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(api_url, home=home, PREFECT_UI_ENABLED="true" if ui else "false")
    env.pop("PREFECT_API_URL")  # the server itself must not point at an API
    # The UI is a static app that calls back to the API: tell it where (it defaults to 127.0.0.1:4200).
    env.update(
        PREFECT_SERVER_API_HOST="127.0.0.1", PREFECT_SERVER_API_PORT=str(port), PREFECT_UI_API_URL=api_url
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    started = spawn(
        "prefect server",
        [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        log_path=home / "server.log",
        env=env,
    )
    try:
        wait_for_http(f"{api_url}/health", timeout=timeout, started=started)
    except BaseException:
        started.stop()
        raise
    return started, api_url


@dataclass
class StateFile:
    """``<dir>/state.json``: what the demo left running ({name: pid}) and where (URLs), for ``--stop``."""

    path: Path
    pids: dict[str, int] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StateFile:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        return cls(path, {k: int(v) for k, v in data.get("pids", {}).items()}, dict(data.get("info", {})))

    def add(self, started: Started) -> None:
        self.pids[started.name] = started.pid
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"pids": self.pids, "info": self.info}, indent=2))

    def stop_all(self, *, timeout: float = 10.0) -> list[str]:
        """Stop every recorded process group, newest first; returns the names that were still running."""
        stopped = []
        for name, pid in reversed(list(self.pids.items())):
            if _alive(pid):
                stopped.append(name)
            stop_group(pid, timeout=timeout)
        self.pids.clear()
        if self.path.exists():
            self.path.unlink()
        return stopped
