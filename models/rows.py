"""Many rows in one driver call: the batch writers of the ledger and the audit chain.

A sync batch writes thousands of ledger entries and audit rows. Through SQLAlchemy's executemany each row's
values pass the column types' bind processors (JSON text, datetime text, UUID) and the statement's parameter
set-up, about 40 µs a row. Here the caller puts them in the form the column stores (:class:`Dialect`), and they
go to the DB-API cursor's ``executemany`` in the session's transaction (about 5 µs a row on SQLite; psycopg
pipelines it on PostgreSQL). The stored forms are SQLAlchemy's own, so rows written either way read back alike:
on SQLite a UUID is its 32 hex digits and a datetime ``YYYY-MM-DD HH:MM:SS.ffffff``; JSON is text (cast to
``json`` on PostgreSQL).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlmodel import Session, SQLModel

__all__ = ["Dialect", "dialect_of", "insert_records", "insert_rows", "update_rows", "json_text"]


class Dialect:
    """How values are stored and parameters written for one database kind."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres

    def time(self, moment: datetime) -> Any:
        if self.postgres:
            return moment
        return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def uuid(self, value: uuid.UUID) -> Any:
        return value if self.postgres else value.hex

    def parameter(self, json_column: bool) -> str:
        if self.postgres:
            return "CAST(%s AS JSON)" if json_column else "%s"
        return "?"


def dialect_of(session: Session) -> Dialect:
    return Dialect(session.get_bind().dialect.name == "postgresql")


def json_text(value: Any) -> str:
    """A JSON column's stored text (orjson: several times faster than ``json.dumps``; non-string keys become
    strings as there; a reader's ``json.loads`` gives the same value back)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def insert_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    json_columns: frozenset[str] = frozenset(),
    upsert_on: str | Sequence[str] | None = None,
) -> None:
    """``INSERT`` every row (values in stored form, JSON columns as text) in the session's transaction; with
    ``upsert_on``, ``ON CONFLICT (that column, or those) DO UPDATE`` every other column (the last row of a key
    wins)."""
    if not rows:
        return
    dialect = dialect_of(session)
    values = ", ".join(dialect.parameter(c in json_columns) for c in columns)
    sql = f"INSERT INTO {table} ({', '.join(_quoted(c) for c in columns)}) VALUES ({values})"
    if upsert_on is not None:
        keys = (upsert_on,) if isinstance(upsert_on, str) else tuple(upsert_on)
        updates = ", ".join(f"{_quoted(c)} = excluded.{_quoted(c)}" for c in columns if c not in keys)
        sql += f" ON CONFLICT ({', '.join(map(_quoted, keys))}) DO UPDATE SET {updates}"
    session.connection().exec_driver_sql(sql, [tuple(row) for row in rows])


def insert_records(
    session: Session,
    model: type[SQLModel],
    records: Iterable[Mapping[str, Any]],
    *,
    upsert_on: str | Sequence[str] | None = None,
) -> None:
    """``INSERT`` one row of ``model``'s table per record (field name → value; a field left out takes its
    default, a datetime is stored as :class:`Dialect` stores it) in the session's transaction: for tables of
    plain columns that take hundreds of thousands of rows at once, where an ORM object costs ~250 µs a row.
    ``upsert_on`` as for :func:`insert_rows`."""
    dialect = dialect_of(session)
    defaults = {
        name: field.get_default(call_default_factory=True) for name, field in model.model_fields.items()
    }
    columns = tuple(defaults)

    def stored(record: Mapping[str, Any]) -> tuple[Any, ...]:
        values = defaults | dict(record)
        return tuple(
            dialect.time(v) if isinstance(v, datetime) else v for v in map(values.__getitem__, columns)
        )

    insert_rows(
        session,
        str(model.__tablename__),
        columns,
        [stored(record) for record in records],
        upsert_on=upsert_on,
    )


def update_rows(
    session: Session,
    table: str,
    columns: Sequence[str],
    key: str | Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """``UPDATE`` ``columns`` of the row whose ``key`` column (or columns) equal each row's last value (or
    values; the others in ``columns`` order, stored form) in the session's transaction; returns how many rows
    were found."""
    if not rows:
        return 0
    mark = dialect_of(session).parameter(json_column=False)
    sets = ", ".join(f"{_quoted(c)} = {mark}" for c in columns)
    keys = (key,) if isinstance(key, str) else key
    sql = f"UPDATE {table} SET {sets} WHERE " + " AND ".join(f"{_quoted(k)} = {mark}" for k in keys)
    return int(session.connection().exec_driver_sql(sql, [tuple(row) for row in rows]).rowcount)


def _quoted(column: str) -> str:
    return f'"{column}"'
