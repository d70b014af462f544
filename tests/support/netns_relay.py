"""A tiny TCP relay from listening sockets made outside a network namespace to ports inside it.

The test process binds ``127.0.0.1:<free port>`` in its own namespace and starts this script with
``ip netns exec <ns> python netns_relay.py FD:HOST:PORT ...`` passing the listening sockets' file
descriptors: a socket keeps the namespace it was made in, so the relay accepts on the host's loopback and
connects to ``HOST:PORT`` in the namespace (where Samba holds its fixed ports 389/636).

Standard library only (it runs as a plain script). It stops on SIGTERM and when its standard input
closes, so it cannot outlive the test process that holds the other end of that pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _relay(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, host: str, port: int
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer), return_exceptions=True
    )


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(CHUNK):
        pass


async def main(specs: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    servers = []
    for spec in specs:
        fd, host, port = spec.split(":")
        listener = socket.socket(fileno=int(fd))

        def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter, h: str = host, p: int = int(port)):  # type: ignore[no-untyped-def]
            return _relay(r, w, h, p)

        servers.append(await asyncio.start_server(handler, sock=listener))
    watcher = asyncio.ensure_future(_stdin_closed())
    watcher.add_done_callback(lambda _: stop.set())
    await stop.wait()
    for server in servers:
        server.close()
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
