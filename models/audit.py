"""The append-only, hash-chained audit trail.

Every row stores ``hash = sha256(prev_hash + canonical JSON of its content)``. Rows are ordered by ``seq``,
assigned under a lock (PostgreSQL advisory transaction lock / SQLite ``BEGIN IMMEDIATE``) and unique, so two
writers never fork the chain. :func:`verify` recomputes the chain and names the first row that was edited,
deleted, inserted or reordered. An optional ``idempotency_key`` makes a retried write return the first row.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, String, text
from sqlmodel import Field, Session, SQLModel, col, select

from models.rows import dialect_of, insert_rows, json_text

__all__ = [
    "Outcome",
    "AuditEventBase",
    "AuditEvent",
    "GENESIS",
    "record",
    "record_many",
    "append_events",
    "verify",
    "VerifyResult",
    "iter_events",
]

GENESIS = "0" * 64
_APPEND_LOCK_ID = 72_617_202


class Outcome(str, enum.Enum):
    APPLIED = "applied"
    SKIPPED = "skipped"
    FAILED = "failed"
    PLANNED = "planned"  # dry runs


def utcnow() -> datetime:
    return datetime.now(UTC)


class AuditEventBase(SQLModel):
    """What happened: who (actor), what (action on a target), for whom (employee), with what outcome and why."""

    actor: str  # "flow-run:<id>", "deployment:<name>", "cli:<user>", "webhook"
    action: str  # e.g. "idp.user.create", "ticket.create", "hris.record.invalid"
    target_system: str  # e.g. "scim", "rt", "csv"
    target_id: str | None = None
    employee_id: str | None = Field(default=None, index=True)
    outcome: Outcome = Field(sa_column=Column(String(16), nullable=False))
    reason: str = ""
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    correlation_id: str | None = Field(default=None, index=True)  # the Prefect flow run id
    idempotency_key: str | None = Field(
        default=None, sa_column=Column(String(512), unique=True, nullable=True)
    )


class AuditEvent(AuditEventBase, table=True):
    __tablename__ = "audit_event"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    seq: int = Field(unique=True, index=True)
    occurred_at: datetime = Field(default_factory=utcnow)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)

    def content(self) -> dict[str, Any]:
        """The hashed content: everything but seq (position) and the hashes themselves."""
        return {
            "id": str(self.id),
            "occurred_at": _iso(self.occurred_at),
            "actor": self.actor,
            "action": self.action,
            "target_system": self.target_system,
            "target_id": self.target_id,
            "employee_id": self.employee_id,
            "outcome": Outcome(self.outcome).value,
            "reason": self.reason,
            "details": self.details,
            "correlation_id": self.correlation_id,
            "idempotency_key": self.idempotency_key,
        }

    def compute_hash(self, prev_hash: str) -> str:
        payload = json.dumps(self.content(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256((prev_hash + payload).encode()).hexdigest()

    def export(self) -> dict[str, Any]:
        return {"seq": self.seq, **self.content(), "prev_hash": self.prev_hash, "hash": self.hash}


def _iso(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds; naive values (SQLite drops tzinfo) are UTC by construction."""
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_APPEND_LOCK_ID))  # type: ignore[call-overload]
    # SQLite: the engine begins every transaction with BEGIN IMMEDIATE (models.db), which is the lock.


def _append(session: Session, event: AuditEventBase, head: AuditEvent | None) -> AuditEvent:
    prev_hash = head.hash if head else GENESIS
    row = AuditEvent.model_validate(
        {**event.model_dump(), "seq": (head.seq + 1) if head else 1, "prev_hash": prev_hash, "hash": ""}
    )
    row.hash = row.compute_hash(prev_hash)
    session.add(row)
    return row


def record_many(*, session: Session, events: Iterable[AuditEventBase]) -> list[AuditEvent]:
    """Append events in one transaction; an event whose idempotency_key exists returns the earlier row."""
    events = list(events)
    if not events:
        return []
    try:
        _lock_chain(session)
        head = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq).desc()).limit(1)).first()
        keys = [e.idempotency_key for e in events if e.idempotency_key]
        existing: dict[str, AuditEvent] = {}
        if keys:
            rows = session.exec(select(AuditEvent).where(col(AuditEvent.idempotency_key).in_(keys))).all()
            existing = {r.idempotency_key: r for r in rows if r.idempotency_key}
        written: list[AuditEvent] = []
        for event in events:
            if event.idempotency_key and event.idempotency_key in existing:
                written.append(existing[event.idempotency_key])
                continue
            head = _append(session, event, head)
            if event.idempotency_key:
                existing[event.idempotency_key] = head
            written.append(head)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return written


def append_events(*, session: Session, events: Iterable[AuditEventBase]) -> int:
    """:func:`record_many` for a batch writer that needs no rows back: the same chain — one lock, one head,
    ``hash = sha256(prev_hash + canonical content)`` row after row, idempotency keys honoured — written as one
    driver executemany ``INSERT`` (:func:`models.rows.insert_rows`) without building an ORM object per row.
    Commits; returns how many were appended."""
    events = list(events)
    if not events:
        return 0
    try:
        _lock_chain(session)
        head = session.exec(
            select(AuditEvent.seq, AuditEvent.hash).order_by(col(AuditEvent.seq).desc()).limit(1)
        ).first()
        seq, prev_hash = (head[0], head[1]) if head else (0, GENESIS)
        keys = [e.idempotency_key for e in events if e.idempotency_key]
        existing: set[str] = set()
        if keys:
            found = session.exec(
                select(AuditEvent.idempotency_key).where(col(AuditEvent.idempotency_key).in_(keys))
            ).all()
            existing = {k for k in found if k}
        dialect = dialect_of(session)
        rows: list[tuple[Any, ...]] = []
        for event in events:
            key = event.idempotency_key
            if key is not None and key in existing:
                continue
            if key is not None:
                existing.add(key)
            row_id, occurred_at = uuid.uuid4(), utcnow()
            content = {
                "id": str(row_id),
                "occurred_at": _iso(occurred_at),
                "actor": event.actor,
                "action": event.action,
                "target_system": event.target_system,
                "target_id": event.target_id,
                "employee_id": event.employee_id,
                "outcome": Outcome(event.outcome).value,
                "reason": event.reason,
                "details": event.details,
                "correlation_id": event.correlation_id,
                "idempotency_key": key,
            }
            payload = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
            digest = hashlib.sha256((prev_hash + payload).encode()).hexdigest()
            seq += 1
            rows.append(
                (
                    dialect.uuid(row_id),
                    seq,
                    dialect.time(occurred_at),
                    event.actor,
                    event.action,
                    event.target_system,
                    event.target_id,
                    event.employee_id,
                    content["outcome"],
                    event.reason,
                    json_text(event.details),
                    event.correlation_id,
                    key,
                    prev_hash,
                    digest,
                )
            )
            prev_hash = digest
        insert_rows(
            session, AuditEvent.__tablename__, _EVENT_COLUMNS, rows, json_columns=frozenset({"details"})
        )
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return len(rows)


_EVENT_COLUMNS = (
    "id",
    "seq",
    "occurred_at",
    "actor",
    "action",
    "target_system",
    "target_id",
    "employee_id",
    "outcome",
    "reason",
    "details",
    "correlation_id",
    "idempotency_key",
    "prev_hash",
    "hash",
)


def record(*, session: Session, event: AuditEventBase) -> AuditEvent:
    """Append one event to the chain (idempotent by ``idempotency_key``)."""
    return record_many(session=session, events=[event])[0]


def iter_events(
    *, session: Session, since: datetime | None = None, employee_id: str | None = None, batch: int = 1000
) -> Iterator[AuditEvent]:
    """Events in chain order, optionally filtered, streamed in batches."""
    last = 0
    while True:
        query = select(AuditEvent).where(AuditEvent.seq > last)
        if since is not None:
            query = query.where(AuditEvent.occurred_at >= since)
        if employee_id is not None:
            query = query.where(AuditEvent.employee_id == employee_id)
        rows = session.exec(query.order_by(col(AuditEvent.seq)).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    problem: str = ""
    seq: int | None = None
    event_id: str | None = None
    head_hash: str = GENESIS

    def describe(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked} events, head {self.head_hash[:16]}"
        return f"audit chain BROKEN at seq {self.seq} (event {self.event_id}): {self.problem}"


def verify(*, session: Session) -> VerifyResult:
    """Recompute the chain; report the first row that was edited, deleted, inserted or reordered.

    Classification of a link break at row i (its ``prev_hash`` is not the hash of row i-1):
    - it links to row i+1 → rows i and i+1 were swapped (reordered);
    - it links to row i-2 → row i-1 was inserted;
    - otherwise → one or more rows before it were deleted.
    A row whose own hash does not match its content was edited.
    """
    window: list[AuditEvent] = []  # the last two verified rows
    prev_hash = GENESIS
    count = 0
    pending: AuditEvent | None = None
    rows = iter_events(session=session)
    for row in _with_lookahead(rows):
        current, following = row
        count += 1
        if current.compute_hash(current.prev_hash) != current.hash:
            return _broken(count, current, "edited: its content does not match its hash")
        if current.prev_hash != prev_hash:
            if following is not None and current.prev_hash == following.hash:
                problem = f"reordered: swapped with seq {following.seq}"
            elif len(window) == 2 and current.prev_hash == window[0].hash:
                problem = f"inserted: seq {window[1].seq} (event {window[1].id}) is not part of the chain"
                return VerifyResult(False, count, problem, window[1].seq, str(window[1].id))
            else:
                problem = "deleted: one or more events before this one are missing"
            return _broken(count, current, problem)
        prev_hash = current.hash
        window = [*window[-1:], current]
        pending = current
    return VerifyResult(True, count, head_hash=pending.hash if pending else GENESIS)


def _broken(count: int, row: AuditEvent, problem: str) -> VerifyResult:
    return VerifyResult(False, count, problem, row.seq, str(row.id))


def _with_lookahead(rows: Iterator[AuditEvent]) -> Iterator[tuple[AuditEvent, AuditEvent | None]]:
    previous: AuditEvent | None = None
    for row in rows:
        if previous is not None:
            yield previous, row
        previous = row
    if previous is not None:
        yield previous, None
