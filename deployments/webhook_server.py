"""Serving the webhook receiver so that abuse cannot hold it: uvicorn, with limits it does not have itself.

uvicorn's HTTP/1.1 protocol (h11) waits for a request's headers and body for as long as the client likes, and
accepts connections until the process runs out of file descriptors; asyncio then logs a traceback for every
failed ``accept()``. :func:`serve` runs the app with :class:`GuardedH11Protocol` and these limits
(:class:`ServerLimits`, from ``TENURE_WEBHOOK__*``):

- **header timeout**: a request's headers must arrive within ``header_timeout_seconds`` of its first byte (of
  the connection, for the first request), however slowly they trickle (slowloris, partial headers);
- **body timeout**: its body within ``body_timeout_seconds`` of the headers (partial bodies); the app is then
  told the client went away. An idle keep-alive connection is closed after ``keepalive_timeout_seconds``;
- **connection cap**: at most ``max_connections`` at once, and never more than the open-file limit leaves room
  for. A connection over the cap takes the place of the oldest one that is still sending its request or idle
  (so a flood of slow connections cannot lock out ``/healthz`` or the HRIS); if every connection is busy in the
  app, the new one is closed. The listen backlog is bounded as well, so one round of ``accept()`` cannot take
  more descriptors than that leaves;
- **bounded logs**: timeouts, evictions, uvicorn's "Invalid HTTP request" warnings and ``accept()`` failures for
  lack of descriptors are one line each, and at most :data:`LOG_BURST` lines per call site per
  :data:`LOG_INTERVAL_SECONDS` (the next says how many were left out); never a traceback per failed accept.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from tenure.settings import WebhookSettings

__all__ = ["ServerLimits", "RateLimitedLog", "GuardedH11Protocol", "guarded_protocol", "serve"]

log = logging.getLogger("uvicorn.error.tenure")  # printed by uvicorn's handler, like its own lines
LOG_BURST = 5
LOG_INTERVAL_SECONDS = 10.0
FD_RESERVE = 64  # descriptors kept for the database, the Prefect client, logs and the interpreter itself
MAX_BACKLOG = 128
MAX_HEADER_BYTES = 64 * 1024
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
Phase = Literal["headers", "body", "app", "idle"]


@dataclass(frozen=True)
class ServerLimits:
    """How long a request may take to arrive and how many connections may be open."""

    header_timeout_seconds: float
    body_timeout_seconds: float
    keepalive_timeout_seconds: float
    max_connections: int
    backlog: int

    @classmethod
    def from_settings(cls, settings: WebhookSettings, *, file_limit: int | None = None) -> ServerLimits:
        """The configured limits, the connection cap and backlog lowered to fit the open-file limit."""
        if file_limit is None:
            file_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        room = max(8, file_limit - FD_RESERVE)
        backlog = max(8, min(MAX_BACKLOG, settings.max_connections // 2, room // 3))
        return cls(
            header_timeout_seconds=settings.header_timeout_seconds,
            body_timeout_seconds=settings.body_timeout_seconds,
            keepalive_timeout_seconds=settings.keepalive_timeout_seconds,
            max_connections=max(1, min(settings.max_connections, room - backlog)),
            backlog=backlog,
        )


class RateLimitedLog(logging.Filter):
    """A logging filter passing at most ``burst`` records per call site (logger, file, line) per ``interval``
    seconds; the first record of a new interval says how many of its kind were left out."""

    def __init__(
        self, burst: int = LOG_BURST, interval: float = LOG_INTERVAL_SECONDS, clock: Any = time.monotonic
    ) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        self._clock = clock
        self._windows: dict[tuple[str, str, int], list[float | int]] = {}  # site -> [start, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        site = (record.name, record.pathname, record.lineno)
        now = self._clock()
        window = self._windows.setdefault(site, [now, 0, 0])
        if now - window[0] >= self.interval:
            dropped = int(window[2])
            window[:] = [now, 0, 0]
            if dropped:
                record.msg = f"{record.getMessage()} ({dropped} similar messages left out)"
                record.args = None
        if window[1] >= self.burst:
            window[2] += 1
            return False
        window[1] += 1
        return True


_RATE_LIMIT = RateLimitedLog()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with per-request read deadlines and a connection cap (module docstring)."""

    limits: ClassVar[ServerLimits]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self._phase: Phase = "headers"
        self._cycle_seen: object = None
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout_seconds, "request headers")
        if len(self.connections) > self.limits.max_connections:
            self._make_room()

    def data_received(self, data: bytes) -> None:
        if self._phase == "idle":  # the next request on a keep-alive connection
            self._phase = "headers"
            self._arm(self.limits.header_timeout_seconds, "request headers")
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._cycle_seen:  # its headers are complete
            self._cycle_seen = self.cycle
            self._phase = "body"
            self._arm(self.limits.body_timeout_seconds, "request body")
        if self._phase == "body" and self.cycle is not None and not self.cycle.more_body:
            self._phase = "app"
            self._disarm()

    def on_response_complete(self) -> None:
        self._phase = "idle"  # uvicorn's keep-alive timeout takes over
        self._disarm()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -------------------------------------------------------------------------------------------- limits

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str, seconds: float) -> None:
        self._deadline = None
        log.warning("closed a connection: %s not received within %.0f s", what, seconds)
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _waiting(self) -> bool:
        """Still sending its request (or idle): it may make room for a new connection."""
        return self._phase != "app" and not self.transport.is_closing()

    def _make_room(self) -> None:
        waiting = [
            c
            for c in self.connections
            if c is not self and isinstance(c, GuardedH11Protocol) and c._waiting()
        ]
        if not waiting:
            log.warning("refused a connection: %d connections busy", len(self.connections) - 1)
            self._close()
            return
        oldest = min(waiting, key=lambda c: c._since)
        log.warning("closed the oldest waiting connection: %d connections open", len(self.connections))
        oldest._close()


def guarded_protocol(limits: ServerLimits) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` class bound to ``limits`` (uvicorn builds one instance per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def _bounded_loop_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An ``accept()`` failing for lack of descriptors is one line (asyncio retries the listener in 1 s)."""
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in _OUT_OF_RESOURCES:
        log.warning("cannot accept connections now: %s", exc.strerror or type(exc).__name__)
        return
    loop.default_exception_handler(context)


def serve(app: Any, *, host: str, port: int, settings: WebhookSettings) -> None:
    """Serve ``app`` on ``host:port`` under the limits of ``settings`` until interrupted."""
    limits = ServerLimits.from_settings(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        backlog=limits.backlog,
        timeout_keep_alive=int(max(1, limits.keepalive_timeout_seconds)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,  # the app enforces max_body_bytes itself
        log_level="info",
        lifespan="off",
    )
    for name in ("uvicorn.error", log.name, "asyncio"):  # a logger's filters see only its own records
        logging.getLogger(name).addFilter(_RATE_LIMIT)
    server = uvicorn.Server(config)
    log.info(
        "limits: headers %.0f s, body %.0f s, %d connections, backlog %d",
        limits.header_timeout_seconds,
        limits.body_timeout_seconds,
        limits.max_connections,
        limits.backlog,
    )

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(_bounded_loop_errors)
        await server.serve()

    asyncio.run(main())
