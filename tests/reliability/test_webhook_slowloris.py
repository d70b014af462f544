"""The webhook receiver survives abuse (issue 16, item 3): 300 slowloris sockets, half trickling request headers
and half a request body, against a real ``tenure webhook serve`` subprocess limited to 256 open files
(``ulimit -n 256``): every socket is closed by the server within 60 s, ``/healthz`` answers throughout, the
process lives on and its log stays small, without a traceback."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.reliability.helpers import REPO
from tests.support.slapd import free_port

pytestmark = pytest.mark.slow

SOCKETS = 300
SERVER_FILE_LIMIT = 256
CLOSE_WITHIN_SECONDS = 60.0
PARTIAL_HEADERS = b"POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tenure-Timestamp: 17"
PARTIAL_BODY = (
    b"POST /webhooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: 4096\r\n\r\n" + b'{"event_id": "slow", "pad": "'
)


def _healthz(port: int) -> bool:
    """One GET /healthz on a fresh connection, answered 200 within 5 s."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _limit_files() -> None:  # runs in the server's child process, before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_FILE_LIMIT, SERVER_FILE_LIMIT))


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``tenure webhook serve`` on a free port under ``ulimit -n 256``; its combined output in a file."""
    port = free_port()
    log_path = tmp_path / "webhook.log"
    env = {
        **os.environ,
        "TENURE_WEBHOOK__SECRET": "slowloris-test-secret",
        "TENURE_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "TENURE_POLICY_FILE": str(REPO / "examples" / "policy.yaml"),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenure.cli",
                "webhook",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_files,  # noqa: PLW1509 - only setrlimit, no threads in the child yet
        )
    try:
        deadline = time.monotonic() + 90
        while not _healthz(port):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "the receiver did not come up"
            time.sleep(0.3)
        yield port, process, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _raise_own_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))


def test_slowloris_sockets_are_closed_while_healthz_answers(server) -> None:  # type: ignore[no-untyped-def]
    port, process, log_path = server
    _raise_own_file_limit(SOCKETS + 512)
    selector = selectors.DefaultSelector()
    opened = 0
    for n in range(SOCKETS):
        sock = socket.socket()
        sock.settimeout(30)
        try:
            sock.connect(("127.0.0.1", port))
            sock.sendall(PARTIAL_HEADERS if n % 2 else PARTIAL_BODY)
        except OSError:  # refused or reset at once: not held open
            sock.close()
            continue
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        opened += 1
    assert opened >= SOCKETS // 2  # the attack did get its sockets in

    started = time.monotonic()
    health: list[bool] = []
    last_trickle = started
    while selector.get_map() and time.monotonic() - started < CLOSE_WITHIN_SECONDS:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            try:
                data = sock.recv(65536)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:  # closed by the server
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
        if time.monotonic() - last_trickle >= 2:  # keep trickling, as a slowloris does
            last_trickle = time.monotonic()
            for key in list(selector.get_map().values()):
                with contextlib.suppress(OSError):  # already closed: the next select sees it
                    key.fileobj.send(b"1")  # type: ignore[union-attr]
            health.append(_healthz(port))
    still_open = len(selector.get_map())
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    selector.close()

    assert still_open == 0, f"{still_open} of {opened} slow sockets still open after {CLOSE_WITHIN_SECONDS} s"
    assert health and all(health), health
    assert _healthz(port) and process.poll() is None
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert len(log) < 64 * 1024, f"log grew to {len(log)} bytes"
