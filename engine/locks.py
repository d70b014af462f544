"""One person at a time: a lock per employee (and per whole job) across processes and workers.

Two runs must never change the same employee at once — a webhook joiner, a nightly sync batch, a scheduled
reconcile and a review remediation can all meet on one person. The lock lives with the ledger's database, so
every worker that shares the ledger shares the locks, and a crashed holder releases it by dying:

- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock(namespace, hash(employee id))``) on a
  connection of its own, polled until the timeout; the holder's run id is that connection's
  ``application_name``, so a waiter can say who holds it (``pg_locks`` ⋈ ``pg_stat_activity``).
- **SQLite** (one machine by construction): an open-file-description byte-range lock (Linux ``F_OFD_SETLK``)
  on a slot of ``<database>.locks/people.lock``: 2**18 slots of 64 bytes, the name's hash choosing the slot
  (a collision only makes two people wait for each other). The holder writes its run id into its slot. Such a
  lock belongs to the descriptor, as ``flock`` does, so two runs in one process exclude each other too, and
  one file serves a batch of hundreds: creating a file per person cost a millisecond each.

Prefect global concurrency limits were the alternative; they are not used because the CLI and tests run
without a Prefect server, a limit that does not exist is skipped silently unless ``strict``, and a crashed
holder keeps its slot until the lease expires, while these locks vanish with the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import struct
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.pool import NullPool

from models.db import get_engine, is_postgres, normalize_url

__all__ = ["LockHeld", "Locks"]

_NAMESPACE = 0x7465  # "te": the first key of every Tenure advisory lock
POLL_SECONDS = 0.05


class LockHeld(RuntimeError):
    """The lock could not be taken in time; the message names who holds it."""


_lock_engines: dict[str, Engine] = {}


def _lock_engine(database_url: str) -> Engine:
    """One engine per database for lock connections, without a pool: a held lock keeps its connection, and a
    connection closed (or lost with its process) releases the lock."""
    url = normalize_url(database_url)
    if url not in _lock_engines:
        _lock_engines[url] = create_engine(url, poolclass=NullPool)
    return _lock_engines[url]


def _key(name: str) -> int:
    """A signed 32-bit key for ``name`` (collisions only make two people wait for each other)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big", signed=True)


class Locks:
    """Locks named by employee id (or ``job:<name>``) for the database at ``database_url``.

    ``holder`` is the run that takes them (its correlation id); ``timeout`` how long :meth:`hold` waits.
    """

    def __init__(self, database_url: str, *, holder: str, timeout: float = 60.0) -> None:
        self.holder = holder
        self.timeout = timeout
        self._postgres = is_postgres(get_engine(database_url))  # migrated, and tells the dialect
        if self._postgres:
            self._pg = _lock_engine(database_url)
        else:
            database = database_url.removeprefix("sqlite:///")
            if not database or database in (":memory:", "sqlite://"):
                database = f"/tmp/tenure-memory-{os.getpid()}.db"
            folder = Path(f"{database}.locks")
            folder.mkdir(parents=True, exist_ok=True)
            self._file = folder / "people.lock"

    @contextlib.asynccontextmanager
    async def hold(self, name: str, *, wait: bool = True) -> AsyncIterator[None]:
        """Hold the lock ``name`` for the block; without ``wait`` only one try. Raises :class:`LockHeld`."""
        deadline = time.monotonic() + (self.timeout if wait else 0.0)
        if self._postgres:
            async with self._hold_pg(name, deadline):
                yield
        else:
            async with self._hold_slots([name], deadline) as refused:
                if name in refused:
                    raise refused[name]
                yield

    @contextlib.asynccontextmanager
    async def hold_many(self, names: Iterable[str]) -> AsyncIterator[dict[str, LockHeld]]:
        """Hold the locks ``names`` for the block, as a batch of the sync needs (one connection on PostgreSQL,
        one file each on SQLite). They are taken in sorted order, so two batches never wait on each other in a
        cycle; the timeout is shared. Yields the names *not* obtained in time, each with its LockHeld: the
        caller leaves those alone."""
        ordered = sorted(set(names))
        deadline = time.monotonic() + self.timeout
        if self._postgres:
            async with self._hold_many_pg(ordered, deadline) as refused:
                yield refused
        else:
            async with self._hold_slots(ordered, deadline) as refused:
                yield refused

    @contextlib.asynccontextmanager
    async def _hold_many_pg(self, names: list[str], deadline: float) -> AsyncIterator[dict[str, LockHeld]]:
        connection = self._pg.connect()
        held: list[int] = []
        refused: dict[str, LockHeld] = {}
        try:
            connection.execute(
                text("SELECT set_config('application_name', :h, false)"), {"h": f"tenure:{self.holder}"[:63]}
            )
            for name in names:
                key = _key(name)
                while not connection.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :k)"), {"ns": _NAMESPACE, "k": key}
                ).scalar():
                    if time.monotonic() >= deadline:
                        refused[name] = self._refused(name, self._pg_holder(connection, key))
                        break
                    await asyncio.sleep(POLL_SECONDS)
                else:
                    held.append(key)
            yield refused
        finally:
            try:
                for key in held:
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:ns, :k)"), {"ns": _NAMESPACE, "k": key}
                    )
            finally:
                connection.close()

    def _refused(self, name: str, holder: str | None) -> LockHeld:
        who = f"run {holder}" if holder else "another run"
        what = name.removeprefix("job:") if name.startswith("job:") else f"employee {name}"
        return LockHeld(f"{what} is locked by {who} (waited {self.timeout:g} s); nothing was changed")

    @contextlib.asynccontextmanager
    async def _hold_pg(self, name: str, deadline: float) -> AsyncIterator[None]:
        # Each call is a local round trip of about a millisecond: made on the event loop's thread, not in a
        # thread pool (CPython 3.11 may raise a spurious SystemError when another thread compiles code then).
        key = _key(name)
        connection = self._pg.connect()
        try:
            connection.execute(
                text("SELECT set_config('application_name', :h, false)"), {"h": f"tenure:{self.holder}"[:63]}
            )
            while not connection.execute(
                text("SELECT pg_try_advisory_lock(:ns, :k)"), {"ns": _NAMESPACE, "k": key}
            ).scalar():
                if time.monotonic() >= deadline:
                    raise self._refused(name, self._pg_holder(connection, key))
                await asyncio.sleep(POLL_SECONDS)
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:ns, :k)"), {"ns": _NAMESPACE, "k": key})
        finally:
            connection.close()

    @staticmethod
    def _pg_holder(connection: Connection, key: int) -> str | None:
        row = connection.execute(
            text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.classid = :ns AND l.objid = :k AND l.granted"
            ),
            {"ns": _NAMESPACE, "k": key & 0xFFFFFFFF},
        ).first()
        return str(row[0]).removeprefix("tenure:") if row and row[0] else None

    @contextlib.asynccontextmanager
    async def _hold_slots(self, names: list[str], deadline: float) -> AsyncIterator[dict[str, LockHeld]]:
        """The slots of ``names`` locked through one descriptor (closing it releases them all, as does the
        process's death); yields the names not obtained by ``deadline``."""
        fd = os.open(self._file, os.O_RDWR | os.O_CREAT, 0o644)
        refused: dict[str, LockHeld] = {}
        holder = self.holder.encode("utf-8")[: _SLOT_BYTES - 1].ljust(_SLOT_BYTES, b"\0")
        try:
            for name in names:
                start = _slot(name) * _SLOT_BYTES
                while not _try_lock(fd, start):
                    if time.monotonic() >= deadline:
                        who = os.pread(fd, _SLOT_BYTES, start).rstrip(b"\0").decode("utf-8", "replace")
                        refused[name] = self._refused(name, who or None)
                        break
                    await asyncio.sleep(POLL_SECONDS)
                else:
                    os.pwrite(fd, holder, start)
            yield refused
        finally:
            os.close(fd)


_SLOTS, _SLOT_BYTES = 1 << 18, 64  # at most 16 MiB of lock file


def _slot(name: str) -> int:
    return _key(name) % _SLOTS


def _try_lock(fd: int, start: int) -> bool:
    """One try at a write lock on ``[start, start + _SLOT_BYTES)`` owned by ``fd``'s open file description."""
    request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, start, _SLOT_BYTES, 0)  # struct flock
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, request)
    except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: another description holds it
        return False
    return True
