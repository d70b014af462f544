"""A throwaway Request Tracker 5 for the contract tests: its own SQLite database, config and port.

Nothing under ``/etc/request-tracker5`` or ``/var/lib`` is read or written: RT is pointed at a generated site
config through ``RT_SITE_CONFIG`` / ``RT_SITE_CONFIG_DIR`` (RT 5.0 ``RT::Config::LoadConfig``), the database
is initialised fresh with ``rt-setup-database --action init`` (≈1.5 s) and the standalone server
(``rt-server --server Standalone``, Plack) binds 127.0.0.1 on a port the OS picked. Stop it with
:meth:`RTServer.stop` (process group: SIGTERM, then SIGKILL). If RT cannot start, :class:`RTStartError`
carries its stderr; callers must let it fail the test, never skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["RT_ROOT_USER", "RT_ROOT_PASSWORD", "RTServer", "RTStartError", "start_rt", "free_port"]

RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP_DATABASE = shutil.which("rt-setup-database") or "/usr/sbin/rt-setup-database"
RT_ROOT_USER = "root"
RT_ROOT_PASSWORD = "tenure-rt-root"  # the same as scripts/install-peers.sh preseeds for the system RT
_SITE_CONFIG = """\
Set($rtname, 'tenure.test');
Set($Organization, 'tenure.test');
Set($CorrespondAddress, 'rt@tenure.test');
Set($CommentAddress, 'rt-comment@tenure.test');
Set($Timezone, 'UTC');
Set($DatabaseType, 'SQLite');
Set($DatabaseName, '{db}');
Set($DatabaseHost, 'localhost');
Set($DatabaseUser, '');
Set($DatabasePassword, '');
Set($WebPath, '/rt');
Set($WebBaseURL, 'http://127.0.0.1:{port}');
Set($LogToSyslog, undef);
Set($LogToFile, undef);
Set($LogToSTDERR, 'error');
Set($MailCommand, 'testfile');
Set($BcryptCost, 4);  # test-only: RT's default 12 costs ~250 ms of bcrypt on every Basic-auth request
$RT::MasonDataDir = '{mason}';
$RT::MasonSessionDir = '{sessions}';
1;
"""


class RTStartError(RuntimeError):
    """RT is not installed, or its database or server did not come up (message holds RT's stderr)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RTServer:
    """A running RT; ``rest_url`` is the REST2 root (``.../rt/REST/2.0/``)."""

    port: int
    workdir: Path
    process: subprocess.Popen[bytes]
    username: str = RT_ROOT_USER
    password: str = field(default=RT_ROOT_PASSWORD, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/rt/"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}REST/2.0/"

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)

    def create_user(self, name: str, password: str) -> None:
        """Create a privileged user with no rights at all (for 403 tests), as root via REST2."""
        response = httpx.post(
            f"{self.rest_url}user",
            json={"Name": name, "Password": password, "Privileged": 1, "EmailAddress": f"{name}@tenure.test"},
            auth=(self.username, self.password),
            timeout=30,
        )
        if response.status_code != 201:
            raise RTStartError(
                f"could not create RT user {name}: HTTP {response.status_code} {response.text[:200]}"
            )


def _environment(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["RT_SITE_CONFIG"] = str(workdir / "RT_SiteConfig.pm")
    env["RT_SITE_CONFIG_DIR"] = str(workdir / "RT_SiteConfig.d")  # empty: keep /etc's config out
    return env


def _write_config(workdir: Path, port: int) -> None:
    for sub in ("RT_SiteConfig.d", "mason_data", "session_data"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "RT_SiteConfig.pm").write_text(
        _SITE_CONFIG.format(
            db=workdir / "rtdb", port=port, mason=workdir / "mason_data", sessions=workdir / "session_data"
        )
    )
    (workdir / "root-password").write_text(RT_ROOT_PASSWORD + "\n")


def _init_database(workdir: Path) -> None:
    if not RT_SERVER.exists():
        raise RTStartError(
            f"{RT_SERVER} not found: run scripts/install-peers.sh (request-tracker5, rt5-standalone)"
        )
    result = subprocess.run(
        [
            RT_SETUP_DATABASE,
            "--action",
            "init",
            "--skip-create",
            "--root-password-file",
            str(workdir / "root-password"),
        ],
        env=_environment(workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0 or not (workdir / "rtdb").exists():
        raise RTStartError(
            f"rt-setup-database failed ({result.returncode}):\n{result.stdout[-2000:]}\n"
            f"{result.stderr[-2000:]}"
        )


def start_rt(workdir: Path, *, timeout: float = 60.0) -> RTServer:
    """Initialise a fresh RT database in ``workdir`` and start RT on a free port; wait until REST2 answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    _write_config(workdir, port)
    _init_database(workdir)
    stderr_path = workdir / "rt-server.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [
                str(RT_SERVER),
                "--server",
                "Standalone",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webpath",
                "/rt",
            ],
            env=_environment(workdir),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,
        )
    server = RTServer(port=port, workdir=workdir, process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RTStartError(
                f"rt-server exited with {process.returncode}:\n{stderr_path.read_text()[-4000:]}"
            )
        try:
            # 401 without credentials means REST2 is up and its auth middleware answers.
            if httpx.get(server.rest_url, timeout=2).status_code in (200, 401):
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RTStartError(f"rt-server did not answer within {timeout:.0f} s:\n{stderr_path.read_text()[-4000:]}")
