"""The ledger: the one store of state every part reads — action outcomes, grants and decisions, sync cursors.

- :class:`LedgerEntry` — one planned action's outcome, keyed by the action's stable key
  (``employee:kind:target[:occasion]``), so a retry or a re-run skips what was done.
- :class:`Grant` — one employee's recorded right to one group: an approval, or a reviewer's keep
  (re-certified until ``recertify_until``), or a reviewer's revoke (the group is not granted again until a
  new approval is recorded). Read by the planner, the sync, the review and the KPIs alike.
- :class:`SyncCursor` — the last processed "changed since" point of an incremental job.

Reads are plain functions here. Writes are keyword-only functions called by one caller only, the applier
(:mod:`engine.applier`), which commits them in the same transaction as their audit row. Upserts use the
database's ``INSERT … ON CONFLICT`` so that two runs writing the same key never race (SQLite and PostgreSQL).
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, Session, SQLModel, col, select

from models.audit import utcnow
from models.rows import dialect_of, insert_records, insert_rows, update_rows

__all__ = [
    "LedgerStatus",
    "OPEN_STATUSES",
    "sent_notices",
    "applied_targets",
    "LedgerEntry",
    "GrantStatus",
    "Grant",
    "GrantView",
    "SyncCursor",
    "aware",
    "entries_for",
    "open_entries_of",
    "changed_since_by_others",
    "open_employees",
    "settled_side_effects",
    "applied_since",
    "last_applied",
    "grants_by_employee",
    "ledger_employees",
    "first_run_at",
    "upsert_entry",
    "upsert_entries",
    "EntryRow",
    "upsert_grants",
    "cursor_get",
    "cursor_put",
    "RosterCount",
    "roster_count_get",
    "roster_count_put",
]


class LedgerStatus(str, enum.Enum):
    PENDING = "pending"  # planned in a run that has not reached it yet
    STARTED = "started"  # its call was sent; a crash here leaves it so
    APPLIED = "applied"
    UNCERTAIN = "uncertain"  # the request went unanswered (timeout, 5xx): it may have taken effect
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to do (no ticketing configured, denied, already there)
    SUPERSEDED = "superseded"  # a later plan no longer needs it


# Not settled yet: the next run of the employee settles them (engine.applier.Applier.resume).
OPEN_STATUSES = frozenset(
    {LedgerStatus.PENDING, LedgerStatus.STARTED, LedgerStatus.UNCERTAIN, LedgerStatus.FAILED}
)


def aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every instant Tenure stores is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class LedgerEntry(SQLModel, table=True):
    """One action's outcome; ``action`` is the typed action as JSON (:data:`lifecycle.actions.ACTION_ADAPTER`)."""

    __tablename__ = "action_ledger"

    key: str = Field(primary_key=True, max_length=512)
    employee_id: str = Field(index=True)
    kind: str
    target: str
    status: LedgerStatus = Field(sa_column=Column(String(16), nullable=False))
    action: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    detail: str = ""
    flow_run_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class GrantStatus(str, enum.Enum):
    GRANTED = "granted"  # approved, or kept in a review
    REVOKED = "revoked"  # revoked in a review: not granted again without a new approval


class Grant(SQLModel, table=True):
    """The current decision on one employee's membership of one group; the audit trail keeps the history."""

    __tablename__ = "entitlement_grant"

    employee_id: str = Field(primary_key=True, max_length=256)
    group_name: str = Field(primary_key=True, max_length=256)
    status: GrantStatus = Field(sa_column=Column(String(16), nullable=False))
    source: str = Field(max_length=32)  # "approval" | "review"
    decided_by: str
    decided_at: datetime
    recertify_until: datetime | None = None
    campaign_id: str | None = None
    item_id: str | None = None
    correlation_id: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class GrantView:
    """One employee's grants as the planner and the review read them."""

    granted: dict[str, datetime]  # group → when it was approved or last re-certified
    revoked: frozenset[str]


class SyncCursor(SQLModel, table=True):
    """The last processed "changed since" point of an incremental job, moved only after processing."""

    __tablename__ = "sync_cursor"

    name: str = Field(primary_key=True, max_length=128)
    value: datetime
    updated_at: datetime = Field(default_factory=utcnow)


class RosterCount(SQLModel, table=True):
    """How many HR records the last full sync of a share read (valid and invalid): a truncated export shows
    fewer (:func:`lifecycle.brake.check_roster_shrink`)."""

    __tablename__ = "roster_count"

    name: str = Field(primary_key=True, max_length=128)
    count: int
    updated_at: datetime = Field(default_factory=utcnow)


# ------------------------------------------------------------------------------------------------ reads


def entries_for(
    *, session: Session, employee_id: str, statuses: Iterable[LedgerStatus] | None = None
) -> list[LedgerEntry]:
    query = select(LedgerEntry).where(LedgerEntry.employee_id == employee_id)
    if statuses is not None:
        query = query.where(col(LedgerEntry.status).in_([s.value for s in statuses]))
    return list(session.exec(query).all())


def open_entries_of(*, session: Session, employee_ids: Iterable[str]) -> dict[str, list[LedgerEntry]]:
    """Every open entry (:data:`OPEN_STATUSES`) of these employees, by employee, in one query per 500 ids."""
    ids = list(dict.fromkeys(employee_ids))
    found: dict[str, list[LedgerEntry]] = defaultdict(list)
    for start in range(0, len(ids), 500):
        query = select(LedgerEntry).where(
            col(LedgerEntry.employee_id).in_(ids[start : start + 500]),
            col(LedgerEntry.status).in_([s.value for s in OPEN_STATUSES]),
        )
        for entry in session.exec(query).all():
            found[entry.employee_id].append(entry)
    return dict(found)


def changed_since_by_others(
    *, session: Session, employee_ids: Iterable[str], since: datetime, other_than: str | None
) -> set[str]:
    """Of these employees, those a run other than ``other_than`` settled an entry of at or after ``since``
    (:func:`applied_since` for many employees, one query per 500 ids)."""
    ids = list(dict.fromkeys(employee_ids))
    found: set[str] = set()
    for start in range(0, len(ids), 500):
        query = select(LedgerEntry.employee_id).where(
            col(LedgerEntry.employee_id).in_(ids[start : start + 500]),
            col(LedgerEntry.status).in_([LedgerStatus.APPLIED.value, LedgerStatus.UNCERTAIN.value]),
            col(LedgerEntry.updated_at) >= since,
        )
        if other_than is not None:
            query = query.where(col(LedgerEntry.flow_run_id).is_distinct_from(other_than))
        found.update(session.exec(query.distinct()).all())
    return found


def open_employees(*, session: Session) -> set[str]:
    """Employees whose ledger holds entries an earlier run left open."""
    rows = session.exec(
        select(LedgerEntry.employee_id).where(col(LedgerEntry.status).in_([s.value for s in OPEN_STATUSES]))
    ).all()
    return set(rows)


def settled_side_effects(*, session: Session, ticketing: bool) -> set[str]:
    """Ledger keys of tickets, approval requests and schedules that need not be attempted again: applied
    ones, approval requests awaiting a decision (or denied), and tickets skipped for want of a ticketing system
    (while there still is none)."""
    kinds = ("open_ticket", "request_approval", "schedule")
    rows = session.exec(
        select(LedgerEntry.key, LedgerEntry.kind, LedgerEntry.status).where(col(LedgerEntry.kind).in_(kinds))
    ).all()
    settled: set[str] = set()
    for key, kind, status in rows:
        if (
            status == LedgerStatus.APPLIED.value
            or status == LedgerStatus.SKIPPED.value
            and (kind == "request_approval" or (kind == "open_ticket" and not ticketing))
        ):
            settled.add(key)
    return settled


def sent_notices(*, session: Session, notifying: bool, employee_id: str | None = None) -> frozenset[str]:
    """Ledger keys of notifications not to plan again: sent ones, and those skipped for want of a notifier
    (while there still is none)."""
    done = [LedgerStatus.APPLIED.value] + ([] if notifying else [LedgerStatus.SKIPPED.value])
    query = select(LedgerEntry.key).where(LedgerEntry.kind == "notify", col(LedgerEntry.status).in_(done))
    if employee_id is not None:
        query = query.where(LedgerEntry.employee_id == employee_id)
    return frozenset(session.exec(query).all())


def applied_targets(*, session: Session, kind: str) -> set[tuple[str, str]]:
    """(employee id, target) of every applied action of ``kind`` (e.g. the memberships Tenure added)."""
    rows = session.exec(
        select(LedgerEntry.employee_id, LedgerEntry.target).where(
            LedgerEntry.kind == kind, LedgerEntry.status == LedgerStatus.APPLIED.value
        )
    ).all()
    return {(employee_id, target) for employee_id, target in rows}


def applied_since(*, session: Session, employee_id: str, since: datetime, other_than: str | None) -> bool:
    """Whether a run other than ``other_than`` settled (applied or uncertain) an entry of this employee at or
    after ``since``: a plan made from state read before then may be stale."""
    query = select(LedgerEntry.key).where(
        LedgerEntry.employee_id == employee_id,
        col(LedgerEntry.status).in_([LedgerStatus.APPLIED.value, LedgerStatus.UNCERTAIN.value]),
        col(LedgerEntry.updated_at) >= since,
    )
    if other_than is not None:
        query = query.where(col(LedgerEntry.flow_run_id).is_distinct_from(other_than))
    return session.exec(query.limit(1)).first() is not None


def last_applied(
    *, session: Session, kind: str, employee_id: str | None = None, target: str = "directory"
) -> dict[str, datetime]:
    """Employee id → when an action of ``kind`` was last applied for them in provisioning ``target`` (e.g.
    the last disable of their directory account; an entry's action without a target is the directory's)."""
    query = select(LedgerEntry.employee_id, LedgerEntry.updated_at, LedgerEntry.action).where(
        LedgerEntry.kind == kind, LedgerEntry.status == LedgerStatus.APPLIED.value
    )
    if employee_id is not None:
        query = query.where(LedgerEntry.employee_id == employee_id)
    found: dict[str, datetime] = {}
    for owner, at, action in session.exec(query).all():
        if (action or {}).get("target", "directory") != target:
            continue
        moment = aware(at)
        assert moment is not None
        if owner not in found or found[owner] < moment:
            found[owner] = moment
    return found


def grants_by_employee(*, session: Session, employee_id: str | None = None) -> dict[str, GrantView]:
    """Every employee's (or just ``employee_id``'s) granted and revoked groups, in one query."""
    query = select(Grant)
    if employee_id is not None:
        query = query.where(Grant.employee_id == employee_id)
    granted: dict[str, dict[str, datetime]] = defaultdict(dict)
    revoked: dict[str, set[str]] = defaultdict(set)
    for grant in session.exec(query).all():
        if GrantStatus(grant.status) is GrantStatus.REVOKED:
            revoked[grant.employee_id].add(grant.group_name)
        else:
            moment = aware(grant.decided_at)
            assert moment is not None
            granted[grant.employee_id][grant.group_name] = moment
    return {
        owner: GrantView(granted=dict(granted.get(owner, {})), revoked=frozenset(revoked.get(owner, ())))
        for owner in set(granted) | set(revoked)
    }


def ledger_employees(*, session: Session, employee_id: str | None = None) -> dict[str, bool]:
    """Employee id → whether they were adopted, for every employee (or just ``employee_id``) the ledger holds
    an entry of (the planner's ``History.seen`` and ``History.adopted``)."""
    owners = select(LedgerEntry.employee_id).distinct()
    if employee_id is not None:
        owners = owners.where(LedgerEntry.employee_id == employee_id)
    adopted = owners.where(LedgerEntry.kind == "adopt", LedgerEntry.status == LedgerStatus.APPLIED.value)
    done = set(session.exec(adopted).all())
    return {owner: owner in done for owner in session.exec(owners).all()}


def first_run_at(*, session: Session) -> datetime | None:
    """When Tenure first recorded anything but a dry run's plan (the oldest such audit event), or None."""
    from models.audit import AuditEvent, Outcome

    row = session.exec(
        select(AuditEvent.occurred_at)
        .where(AuditEvent.outcome != Outcome.PLANNED.value)
        .order_by(col(AuditEvent.seq))
        .limit(1)
    ).first()
    return aware(row)


def cursor_get(*, session: Session, name: str) -> datetime | None:
    row = session.get(SyncCursor, name)
    return row.value if row else None


def roster_count_get(*, session: Session, name: str) -> int | None:
    row = session.get(RosterCount, name)
    return row.count if row else None


# ----------------------------------------------------------------------------------- writes (the applier's)


def _upsert(session: Session, model: type[SQLModel], values: dict[str, Any], keys: list[str]) -> None:
    """``INSERT … ON CONFLICT (keys) DO UPDATE`` in the session's transaction (not committed here)."""
    table = model.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={k: v for k, v in values.items() if k not in keys}
    )
    session.execute(statement)


def upsert_entry(*, session: Session, entry: LedgerEntry) -> None:
    entry.updated_at = utcnow()
    values = entry.model_dump()
    values["status"] = LedgerStatus(entry.status).value
    _upsert(session, LedgerEntry, values, ["key"])


@dataclass(slots=True)
class EntryRow:
    """The values of one :class:`LedgerEntry` to upsert (plain values: no model to validate per write);
    ``action`` is the typed action's JSON text (made once by the caller: an entry is written pending, started
    and finished)."""

    key: str
    employee_id: str
    kind: str
    target: str
    status: LedgerStatus
    action: str
    detail: str = ""
    flow_run_id: str | None = None


_ENTRY_COLUMNS = (
    "key",
    "employee_id",
    "kind",
    "target",
    "status",
    "action",
    "detail",
    "flow_run_id",
    "updated_at",
)


def upsert_entries(*, session: Session, entries: Iterable[EntryRow]) -> None:
    """Many :func:`upsert_entry` in the driver's executemany (:func:`models.rows.insert_rows`; the last row of a
    key wins, as with one upsert after another). A pending entry is upserted whole; any later status is an
    ``UPDATE`` of the status columns of the entry its pending row made (the action's JSON is not written
    again), falling back to the whole upsert should a row be missing."""
    now = dialect_of(session).time(utcnow())
    rows: dict[str, tuple[Any, ...]] = {}
    for entry in entries:
        rows[entry.key] = (
            entry.key,
            entry.employee_id,
            entry.kind,
            entry.target,
            LedgerStatus(entry.status).value,
            entry.action,
            entry.detail,
            entry.flow_run_id,
            now,
        )
    pending = LedgerStatus.PENDING.value
    later = [row for row in rows.values() if row[4] != pending]
    whole = [row for row in rows.values() if row[4] == pending]
    if later and not _update_statuses(session, later):
        whole += later
    insert_rows(
        session,
        LedgerEntry.__tablename__,
        _ENTRY_COLUMNS,
        whole,
        json_columns=frozenset({"action"}),
        upsert_on="key",
    )


def _update_statuses(session: Session, rows: list[tuple[Any, ...]]) -> bool:
    """The status, detail, run and time of existing entries (rows in :data:`_ENTRY_COLUMNS` order); False when
    fewer rows than given were found (the caller then upserts them whole)."""
    found = update_rows(
        session,
        LedgerEntry.__tablename__,
        ("status", "detail", "flow_run_id", "updated_at"),
        "key",
        [(r[4], r[6], r[7], r[8], r[0]) for r in rows],
    )
    return found == len(rows)


def upsert_grants(*, session: Session, grants: Iterable[Grant]) -> None:
    """Each grant, inserted or replacing the one on its employee and group (the last of a pair wins), in the
    session's transaction: one executemany for a deadline's thousands of decisions."""
    now = utcnow()
    insert_records(
        session,
        Grant,
        (g.model_dump() | {"status": GrantStatus(g.status).value, "updated_at": now} for g in grants),
        upsert_on=("employee_id", "group_name"),
    )


def cursor_put(*, session: Session, name: str, value: datetime) -> None:
    _upsert(session, SyncCursor, {"name": name, "value": value, "updated_at": utcnow()}, ["name"])


def roster_count_put(*, session: Session, name: str, count: int) -> None:
    _upsert(session, RosterCount, {"name": name, "count": count, "updated_at": utcnow()}, ["name"])
