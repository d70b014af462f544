"""Durable run state: the action ledger (what was already applied) and sync cursors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, Session, SQLModel

from models.audit import utcnow

__all__ = ["LedgerEntry", "SyncCursor", "ledger_get", "ledger_put", "cursor_get", "cursor_put"]


class LedgerEntry(SQLModel, table=True):
    """One action's outcome, keyed ``employee:kind:target`` so a retry or a re-run skips what was done."""

    __tablename__ = "action_ledger"

    key: str = Field(primary_key=True, max_length=512)
    employee_id: str = Field(index=True)
    kind: str
    target: str
    status: str  # "applied" | "failed"
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    flow_run_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class SyncCursor(SQLModel, table=True):
    """The last processed "changed since" point of an incremental job, moved only after processing."""

    __tablename__ = "sync_cursor"

    name: str = Field(primary_key=True, max_length=128)
    value: datetime
    updated_at: datetime = Field(default_factory=utcnow)


def ledger_get(*, session: Session, key: str) -> LedgerEntry | None:
    return session.get(LedgerEntry, key)


def ledger_put(*, session: Session, entry: LedgerEntry) -> LedgerEntry:
    """Insert or overwrite the entry for ``entry.key`` and commit."""
    entry.updated_at = utcnow()
    merged = session.merge(entry)
    session.commit()
    return merged


def cursor_get(*, session: Session, name: str) -> datetime | None:
    row = session.get(SyncCursor, name)
    return row.value if row else None


def cursor_put(*, session: Session, name: str, value: datetime) -> None:
    session.merge(SyncCursor(name=name, value=value))
    session.commit()
