"""A real, throwaway Prefect server for tests: own PREFECT_HOME, 127.0.0.1 on a free port, stopped by PID.

Usage (a pytest fixture owns the lifetime; see ``tests/e2e/conftest.py``)::

    server = start_prefect_server(tmp_dir)
    try:
        ...  # server.api_url, e.g. http://127.0.0.1:41234/api
    finally:
        server.stop()

``.venv/bin/prefect server start`` runs in its own session (process group) with analytics off, the UI off
(unless asked) and SQLite under the temporary PREFECT_HOME (or ``database_url``, e.g. a PostgreSQL database,
as ``PREFECT_API_DATABASE_CONNECTION_URL``). We wait for ``GET /api/health`` to answer 200; if the server dies
or does not come up in time, :class:`PrefectServerError` carries the tail of its log. :meth:`stop` sends SIGTERM
to the whole group, waits, then SIGKILLs it — nothing survives the test run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.slapd import free_port

__all__ = ["PrefectServerError", "PrefectServerHandle", "start_prefect_server", "prefect_executable"]

STARTUP_TIMEOUT_SECONDS = 90.0  # usually 5–15 s; first start on a slow CI box runs all migrations


class PrefectServerError(RuntimeError):
    """The Prefect server failed to start; the message carries the end of its log."""


def prefect_executable() -> str:
    """The ``prefect`` CLI of the running interpreter's environment (the project venv)."""
    candidate = Path(sys.executable).with_name("prefect")
    return str(candidate) if candidate.exists() else "prefect"


@dataclass
class PrefectServerHandle:
    """A running Prefect server; ``stop()`` ends its process group and is safe to call twice."""

    api_url: str
    port: int
    pid: int
    home: Path
    log_path: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def env(self) -> dict[str, str]:
        """Variables that point a Prefect client (or a child process) at this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home / "client")}

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)


def start_prefect_server(
    workdir: Path,
    *,
    port: int | None = None,
    database_url: str | None = None,
    ui: bool = False,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> PrefectServerHandle:
    """Start ``prefect server start --host 127.0.0.1 --port N`` and wait until ``/api/health`` answers."""
    workdir = Path(workdir)
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PREFECT_")  # the outer test process's Prefect settings must not leak in
    }
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_UI_ENABLED": "true" if ui else "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log_path = workdir / "prefect-server.log"
    log_file = log_path.open("wb")
    try:
        process = subprocess.Popen(
            [prefect_executable(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends uvicorn and any child with it
        )
    finally:
        log_file.close()
    handle = PrefectServerHandle(
        api_url=api_url, port=port, pid=process.pid, home=home, log_path=log_path, _process=process
    )
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            handle.stop()
            raise PrefectServerError(
                f"prefect server exited with {process.returncode} during startup:\n{handle.log_tail()}"
            )
        try:
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            handle.stop()
            raise PrefectServerError(
                f"prefect server not healthy after {timeout:.0f} s:\n{handle.log_tail()}"
            )
        time.sleep(0.25)
