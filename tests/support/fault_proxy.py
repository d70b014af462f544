"""A fault-injecting HTTP/1.1 reverse proxy on 127.0.0.1, in front of a real local peer (scim2-server, RT).

It answers like the peer, except that a configured share of requests (``rate``) gets a fault:

``429``      answered by the proxy with ``Retry-After`` (0 or 1 s, RFC 9110 §10.2.3); not forwarded.
``503``      answered by the proxy; not forwarded.
``reset``    the connection is aborted (TCP RST) before forwarding; the peer never sees the request.
``slow``     the proxy holds the request for ``slow_seconds`` (longer than the client timeout); if the client is
             still connected it is then forwarded and answered late, if it gave up the request is dropped.
``drop``     the request IS forwarded and applied by the peer, then the connection is aborted without an
             answer: the client sees a failure after the write took effect (the case idempotency is for).

Fault choice is deterministic for a seed *whatever the concurrency*: the n-th occurrence of one request
(method, target and body hash) draws from a generator seeded with ``(seed, request, n)``. A retry of the same
request is its next occurrence, so it draws again. ``rules`` can instead force a fault for requests matching a
method and a path pattern (scripted scenarios). ``latency`` adds a fixed delay to every forwarded request
(benchmarks).

Counts: ``requests[(METHOD, normalised path)]`` (ids and numbers replaced with ``{id}``), ``faults[kind]``,
``forwarded`` and ``forwarded_writes``.

Run it in the test's event loop (``async with FaultProxy(...)``) or in its own thread (``with
FaultProxy(...).in_thread()``), which benchmarks prefer so the proxy does not compete with the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["FAULT_KINDS", "FaultRule", "FaultProxy", "normalise_path"]

FAULT_KINDS: tuple[str, ...] = ("429", "503", "reset", "slow", "drop")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "host",
    }
)
MAX_HEADER_BYTES = 65_536
_ID_SEGMENT = re.compile(r"^(?:[0-9a-fA-F]{8,}|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27,}|\d+)$")


def normalise_path(path: str) -> str:
    """The path without query, every id-like segment (hex ≥ 8 chars, uuid, number) replaced by ``{id}``."""
    bare = path.split("?", 1)[0]
    return "/".join("{id}" if _ID_SEGMENT.match(seg) else seg for seg in bare.split("/"))


@dataclass(frozen=True)
class FaultRule:
    """Force ``kind`` for requests with ``method`` (None = any) whose path matches ``path`` (a regex), at most
    ``times`` times (None = always)."""

    kind: str
    method: str | None = None
    path: str = ".*"
    times: int | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and re.search(self.path, path) is not None


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes


class _Closed(Exception):
    """The client closed the connection."""


@dataclass
class FaultProxy:
    """A reverse proxy to ``upstream`` (``http://127.0.0.1:PORT``) injecting faults; see the module docstring."""

    upstream: str
    rate: float = 0.0
    seed: int = 0
    kinds: Sequence[str] = FAULT_KINDS
    weights: Sequence[float] | None = None
    slow_seconds: float = 3.0
    latency: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)
    max_retry_after: int = 1
    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0
    forwarded_writes: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS) | {r.kind for r in self.rules} - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        self.port = 0
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._occurrences: Counter[str] = Counter()
        self._rule_hits: Counter[int] = Counter()
        self._connections: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy (append the peer's path)."""
        return f"http://127.0.0.1:{self.port}"

    def proxied(self, upstream_url: str) -> str:
        """``upstream_url`` (a URL on the peer) as seen through the proxy."""
        peer = httpx.URL(upstream_url)
        return f"{self.url}{peer.raw_path.decode()}"

    async def start(self) -> FaultProxy:
        self._client = httpx.AsyncClient(
            base_url=self.upstream,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextlib.contextmanager
    def in_thread(self) -> Iterator[FaultProxy]:
        """Run the proxy on its own event loop in a daemon thread for the duration of the block."""
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.start())
            started.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._loop = loop
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fault proxy did not start")
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(10)
            loop.close()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.faults.clear()
            self.forwarded = self.forwarded_writes = 0

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Requests seen with ``method`` (None = any) whose normalised path contains ``path``."""
        return sum(
            n
            for (m, p), n in self.requests.items()
            if (method is None or m == method) and (path is None or path in p)
        )

    # ------------------------------------------------------------------------------------------ faults

    def choose_fault(self, request: _Request) -> str | None:
        """The fault for this request (or None): a matching rule first, else a seeded draw."""
        path = request.target.split("?", 1)[0]
        with self._lock:
            for index, rule in enumerate(self.rules):
                if rule.matches(request.method, path) and (
                    rule.times is None or self._rule_hits[index] < rule.times
                ):
                    self._rule_hits[index] += 1
                    return rule.kind
            if self.rate <= 0:
                return None
            digest = hashlib.sha256(request.body).hexdigest()[:16]
            key = f"{request.method} {request.target} {digest}"
            self._occurrences[key] += 1
            draw = random.Random(f"{self.seed}|{key}|{self._occurrences[key]}")
        if draw.random() >= self.rate:
            return None
        return draw.choices(list(self.kinds), weights=self.weights)[0]

    # ------------------------------------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    request = await self._read_request(reader)
                except (_Closed, asyncio.IncompleteReadError, ConnectionError):
                    return
                except ValueError:
                    writer.write(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    await writer.drain()
                    return
                keep_open = await self._handle(request, reader, writer)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._connections.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _Closed from None
            raise
        except asyncio.LimitOverrunError:
            raise ValueError("header too large") from None
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise ValueError("bad request line")
        method, target, version = parts
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise ValueError("bad header line")
            headers.append((name.strip(), value.strip()))
        names = {n.lower(): v for n, v in headers}
        if "chunked" in names.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        else:
            length = int(names.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
        return _Request(method.upper(), target, version, headers, body)

    @staticmethod
    async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)

    async def _client_gone_within(self, reader: asyncio.StreamReader, seconds: float) -> bool:
        """Wait ``seconds``; True if the client closed the connection meanwhile (httpx does not pipeline, so
        nothing else may arrive on this connection before our answer)."""
        try:
            data = await asyncio.wait_for(reader.read(1), seconds)
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return data == b""

    async def _handle(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        with self._lock:
            self.requests[(request.method, normalise_path(request.target))] += 1
        fault = self.choose_fault(request)
        if fault is not None:
            with self._lock:
                self.faults[fault] += 1
        if fault == "429":
            retry_after = random.Random(f"{self.seed}|{self.faults[fault]}").randint(0, self.max_retry_after)
            await self._answer(
                writer,
                429,
                [("Retry-After", str(retry_after)), ("Content-Type", "application/json")],
                b'{"detail": "too many requests (injected)"}',
            )
            return True
        if fault == "503":
            await self._answer(
                writer,
                503,
                [("Content-Type", "application/json")],
                b'{"detail": "service unavailable (injected)"}',
            )
            return True
        if fault == "reset":
            writer.transport.abort()
            return False
        if fault == "slow" and await self._client_gone_within(reader, self.slow_seconds):
            writer.transport.abort()  # the client gave up: the request never reaches the peer
            return False
        if self.latency:
            await asyncio.sleep(self.latency)
        try:
            status, headers, body = await self._forward(request)
        except httpx.HTTPError:
            await self._answer(writer, 502, [("Content-Type", "text/plain")], b"upstream unreachable")
            return True
        if fault == "drop":
            writer.transport.abort()  # applied upstream; the client never hears back
            return False
        await self._answer(writer, status, headers, body)
        return not any(n.lower() == "connection" and v.lower() == "close" for n, v in request.headers)

    async def _forward(self, request: _Request) -> tuple[int, list[tuple[str, str]], bytes]:
        assert self._client is not None
        headers = [(n, v) for n, v in request.headers if n.lower() not in HOP_BY_HOP]
        upstream = self._client.build_request(
            request.method, request.target, headers=headers, content=request.body or None
        )
        response = await self._client.send(upstream, stream=True)
        try:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
        with self._lock:
            self.forwarded += 1
            self.forwarded_writes += request.method in WRITE_METHODS
        kept = [(n, v) for n, v in response.headers.multi_items() if n.lower() not in HOP_BY_HOP]
        return response.status_code, kept, body

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter, status: int, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        reason = httpx.codes.get_reason_phrase(status) or "Unknown"
        lines = [
            f"HTTP/1.1 {status} {reason}",
            *(f"{n}: {v}" for n, v in headers),
            f"Content-Length: {len(body)}",
            "Connection: keep-alive",
            "",
            "",
        ]
        writer.write("\r\n".join(lines).encode("latin-1") + body)
        await writer.drain()

    def describe(self) -> dict[str, Any]:
        """Counts for reports: requests by method and path, faults by kind, forwarded (writes)."""
        return {
            "requests": dict(self.requests),
            "faults": dict(self.faults),
            "forwarded": self.forwarded,
            "forwarded_writes": self.forwarded_writes,
        }
