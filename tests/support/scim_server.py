"""A real scim2-server (in memory) as a subprocess on 127.0.0.1, for contract and e2e tests.

One server can serve many isolated directories: it runs with ``--dynamic-tenants``, so each
``server.tenant_url()`` (``http://127.0.0.1:PORT/<random>/``) starts empty. Stop it by PID
(terminate, then kill) — :func:`running_scim_server` does so on exit, whatever happens.

Usage in a test module::

    @pytest.fixture(scope="module")
    def scim_server():
        with running_scim_server() as server:
            yield server

The SCIM protocol we implement has no ``create_group``; tests create groups with :func:`create_group`
(a raw ``POST /Groups``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["SCIMServer", "free_port", "start_scim_server", "running_scim_server", "create_group"]

GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> str:
    """The ``scim2-server`` console script next to this interpreter (the project venv), else on PATH."""
    candidate = Path(sys.executable).parent / "scim2-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("scim2-server")
    if not found:
        raise RuntimeError("scim2-server is not installed (pip install scim2-server)")
    return found


@dataclass
class SCIMServer:
    """A running scim2-server: its root URL, bearer token and process."""

    port: int
    token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    tenants: list[str] = field(default_factory=list)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def tenant_url(self, name: str | None = None) -> str:
        """The base URL of a fresh, empty tenant (created by the server on first use)."""
        name = name or f"t{uuid.uuid4().hex[:12]}"
        self.tenants.append(name)
        return f"{self.root_url}{name}/"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/scim+json"}

    def log_text(self) -> str:
        """What the server printed (request lines; the token is never logged by it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Terminate by PID, then kill if it lingers; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        with suppress(OSError):
            self.log_path.unlink()


def start_scim_server(
    *,
    token: str | None = None,
    service_provider_config: dict[str, Any] | None = None,
    startup_timeout: float = 20.0,
) -> SCIMServer:
    """Start scim2-server on a free 127.0.0.1 port and wait until it answers an authenticated request.

    ``service_provider_config`` replaces the announced features (RFC 7643 §5), e.g. to serve a provider
    without PATCH."""
    token = token or f"scim-{secrets.token_urlsafe(24)}"
    port = free_port()
    fd, log_name = tempfile.mkstemp(prefix="scim2-server-", suffix=".log")
    log_path = Path(log_name)
    extra: list[str] = []
    if service_provider_config is not None:
        config_fd, config_name = tempfile.mkstemp(prefix="scim2-spc-", suffix=".json")
        with os.fdopen(config_fd, "w") as config_file:
            json.dump(service_provider_config, config_file)
        extra = ["--service-provider-config", config_name]
    with os.fdopen(fd, "wb") as log_file:
        process = subprocess.Popen(
            [
                _executable(),
                "--hostname",
                "127.0.0.1",
                "--port",
                str(port),
                "--bearer-token",
                token,
                "--dynamic-tenants",
                *extra,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = SCIMServer(port=port, token=token, process=process, log_path=log_path)
    deadline = time.monotonic() + startup_timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"scim2-server exited with {process.returncode}: {server.log_text()[-2000:]}"
                )
            try:
                response = httpx.get(
                    f"{server.root_url}ServiceProviderConfig", headers=server.headers(), timeout=2
                )
                if response.status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"scim2-server did not answer on port {port} within {startup_timeout} s")
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise


@contextmanager
def running_scim_server(
    *, token: str | None = None, service_provider_config: dict[str, Any] | None = None
) -> Iterator[SCIMServer]:
    """A started server, stopped by PID when the block exits."""
    server = start_scim_server(token=token, service_provider_config=service_provider_config)
    try:
        yield server
    finally:
        server.stop()


async def create_group(base_url: str, token: str, name: str) -> dict[str, object]:
    """``POST /Groups`` with a raw client (the IdentityProvider protocol has no create_group)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        response = await client.post(
            "Groups",
            json={"schemas": [GROUP_SCHEMA], "displayName": name},
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"},
        )
        response.raise_for_status()
        return dict(response.json())
