"""Audit anchoring: signed checkpoints of the chain's end, kept outside the audit database.

The hash chain (``models.audit``) shows an edited, inserted, reordered or deleted row *inside* the chain, but not
a missing tail, an emptied table, or a chain edited and re-hashed onward with the same public hash function: each
of those is a valid chain. A checkpoint anchors the end: ``{"v": 1, "seq", "head", "at", "sig"}``, the last
event's seq and hash at a moment, signed with HMAC-SHA256 under ``TENURE_AUDIT__CHECKPOINT_KEY`` (a key the
audit database does not hold; it may name a Prefect Secret block, ``prefect-block:NAME``). Checkpoints are
appended, one JSON line each, to ``<TENURE_AUDIT__CHECKPOINT_DIR>/checkpoints.jsonl`` (opened ``O_APPEND``; Tenure
never rewrites it); the flows also publish it as the markdown artifact ``tenure-audit-checkpoint`` of their run
(Prefect's database: a second place; ``flows/anchoring.py``). :func:`write_checkpoint` is called at the end of
``tenure sync``/``apply`` and of the sync and lifecycle flows, and on demand by ``tenure audit checkpoint``.

:func:`check_anchor` (``tenure audit verify``) takes the checkpoint with the highest seq (so a replayed older
line does not lower the bar) and reports: a **wipe** (no events, the checkpoint says there were), a **truncated**
tail (the chain ends before the checkpoint's seq), a **re-hashed** chain (the event at that seq has another
hash), and any line that is not validly signed (forged, or signed with another key).

What it does not protect against: an attacker holding the key (they can sign a checkpoint for a rewritten chain);
one who can also delete or truncate the checkpoint file (rolling it back to an older checkpoint hides what was
removed after it: make the directory append-only for Tenure, e.g. ``chattr +a``, or ship the lines elsewhere);
events written after the latest checkpoint, which only the chain protects. Use one directory per audit database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, func, select

from models.audit import GENESIS, AuditEvent, VerifyResult
from models.db import session_scope
from tenure.settings import Settings, reveal

__all__ = [
    "CHECKPOINT_FILE",
    "Checkpoint",
    "CheckpointError",
    "AnchorResult",
    "write_checkpoint",
    "read_checkpoints",
    "check_anchor",
]

log = logging.getLogger("tenure.checkpoint")
CHECKPOINT_FILE = "checkpoints.jsonl"
VERSION = 1
KEY_SETTING = "TENURE_AUDIT__CHECKPOINT_KEY"


class CheckpointError(Exception):
    """A checkpoint cannot be written or checked (no key, an unwritable directory); the message says which."""


@dataclass(frozen=True)
class Checkpoint:
    """The chain's end at ``at``: its last event's ``seq`` and ``head`` hash (0 and GENESIS when empty)."""

    seq: int
    head: str
    at: str  # ISO 8601, UTC
    sig: str = ""

    def payload(self) -> bytes:
        return json.dumps(
            {"v": VERSION, "seq": self.seq, "head": self.head, "at": self.at},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()

    def signed(self, key: bytes) -> Checkpoint:
        return Checkpoint(self.seq, self.head, self.at, _mac(key, self.payload()))

    def valid(self, key: bytes) -> bool:
        return hmac.compare_digest(self.sig, _mac(key, self.payload()))

    def line(self) -> str:
        return json.dumps({"v": VERSION, "seq": self.seq, "head": self.head, "at": self.at, "sig": self.sig})

    def describe(self) -> str:
        return f"checkpoint at seq {self.seq} ({self.at}, head {self.head[:16]})"


def _mac(key: bytes, payload: bytes) -> str:
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _key(settings: Settings) -> bytes | None:
    try:
        value = reveal(settings.audit.checkpoint_key)
    except Exception as exc:  # e.g. the Prefect Secret block it names cannot be read
        raise CheckpointError(f"cannot read {KEY_SETTING}: {type(exc).__name__}") from None
    return value.encode() if value else None


def _path(settings: Settings) -> Path:
    return settings.audit.checkpoint_dir / CHECKPOINT_FILE


def _head(session: Session) -> tuple[int, str]:
    row = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
    return (row.seq, row.hash) if row else (0, GENESIS)


def write_checkpoint(
    settings: Settings, *, now: datetime | None = None, required: bool = False
) -> Checkpoint | None:
    """Sign the chain's current end and append it to the checkpoint file. Without a key, or when the file cannot
    be written, returns None (logging a warning for the latter) so that a run's end never fails for it;
    ``required=True`` raises CheckpointError instead."""
    key: bytes | None = None
    try:
        key = _key(settings)
        if key is None:
            raise CheckpointError(f"no checkpoint key: set {KEY_SETTING}")
        with session_scope(settings.database_url) as session:
            seq, head = _head(session)
        at = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        checkpoint = Checkpoint(seq, head, at).signed(key)
        _append(_path(settings), checkpoint.line())
    except CheckpointError as exc:
        if required:
            raise
        if key is not None:
            log.warning("audit checkpoint not written: %s", exc)
        return None
    return checkpoint


def _append(path: Path, line: str) -> None:
    """One line appended (``O_APPEND``: never a rewrite), flushed to disk."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise CheckpointError(f"cannot append to {path}: {exc.strerror or type(exc).__name__}") from None


def read_checkpoints(path: Path, key: bytes) -> tuple[list[Checkpoint], list[str]]:
    """The validly signed checkpoints in ``path`` and a problem line for every other line."""
    found: list[Checkpoint] = []
    problems: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or type(exc).__name__}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data: Any = json.loads(line)
            checkpoint = Checkpoint(int(data["seq"]), str(data["head"]), str(data["at"]), str(data["sig"]))
        except (ValueError, TypeError, KeyError):
            problems.append(f"checkpoint line {number} is not a checkpoint: bad signature or format")
            continue
        if data.get("v") != VERSION or not checkpoint.valid(key):
            problems.append(f"checkpoint line {number}: bad signature (forged, or signed with another key)")
            continue
        found.append(checkpoint)
    return found, problems


@dataclass(frozen=True)
class AnchorResult:
    """What the checkpoints say about the chain's end: ``ok`` False for tampering, ``notes`` for the rest."""

    ok: bool
    lines: tuple[str, ...]


def check_anchor(session: Session, chain: VerifyResult, settings: Settings) -> AnchorResult:
    """Check an intact chain's end against the newest valid checkpoint (module docstring)."""
    path = _path(settings)
    key = _key(settings)
    if key is None:
        if path.exists() and path.stat().st_size:
            raise CheckpointError(
                f"{path} holds checkpoints, but {KEY_SETTING} is not set: cannot check them"
            )
        return AnchorResult(
            True, (f"chain end not anchored: no {KEY_SETTING}, so a truncation would not show",)
        )
    checkpoints, problems = read_checkpoints(path, key)
    if not checkpoints:
        return AnchorResult(
            not problems,
            (*problems, f"chain end not anchored yet: no checkpoint in {path} (tenure audit checkpoint)"),
        )
    latest = max(checkpoints, key=lambda c: (c.seq, c.at))
    count = session.exec(select(func.count()).select_from(AuditEvent)).one()
    last_seq, _ = _head(session)
    at_seq = (
        session.exec(select(AuditEvent).where(AuditEvent.seq == latest.seq)).first() if latest.seq else None
    )
    if latest.seq and not count:
        finding = (
            f"wiped: the audit table is empty, but the {latest.describe()} says it held {latest.seq} events"
        )
    elif last_seq < latest.seq:
        finding = (
            f"truncated: the chain ends at seq {last_seq}, before the {latest.describe()}: "
            f"events {last_seq + 1}..{latest.seq} were deleted"
        )
    elif latest.seq and (at_seq is None or at_seq.hash != latest.head):
        finding = (
            f"re-hashed: the event at seq {latest.seq} no longer has the hash of the {latest.describe()}: "
            "the chain was rewritten"
        )
    else:
        return AnchorResult(
            not problems,
            (*problems, f"anchored: {latest.describe()} matches; {last_seq - latest.seq} event(s) after it"),
        )
    return AnchorResult(False, (*problems, f"audit chain end BROKEN: {finding}"))
