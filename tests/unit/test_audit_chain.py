"""The hash-chained audit trail: append, idempotency, and tamper detection on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from sqlalchemy import text

from models.audit import AuditEvent, AuditEventBase, Outcome, iter_events, record, record_many, verify
from models.db import get_engine, session_scope

pytestmark = pytest.mark.postgres


def _event(i: int, **extra: object) -> AuditEventBase:
    return AuditEventBase(
        actor="cli:test",
        action="idp.user.create",
        target_system="scim",
        target_id=f"u{i}",
        employee_id=f"E{i}",
        outcome=Outcome.APPLIED,
        reason="joiner",
        details={"i": i},
        **extra,  # type: ignore[arg-type]
    )


def _seed(url: str, n: int = 5) -> None:
    with session_scope(url) as session:
        record_many(session=session, events=[_event(i) for i in range(1, n + 1)])


def _verify(url: str):  # type: ignore[no-untyped-def]
    with session_scope(url) as session:
        return verify(session=session)


def _sql(url: str, statement: str, **params: object) -> None:
    with get_engine(url).begin() as conn:
        conn.execute(text(statement), params)


def test_untouched_log_verifies(database_url: str) -> None:
    """An untouched chain of five events passes, and seq runs 1..5."""
    _seed(database_url)
    result = _verify(database_url)
    assert result.ok, result.describe()
    assert result.checked == 5
    with session_scope(database_url) as session:
        assert [e.seq for e in iter_events(session=session)] == [1, 2, 3, 4, 5]


def test_changed_field_is_detected(database_url: str) -> None:
    """Editing one field of row 3 is reported at row 3 as edited."""
    _seed(database_url)
    _sql(database_url, "UPDATE audit_event SET reason = 'nothing to see' WHERE seq = 3")
    result = _verify(database_url)
    assert not result.ok
    assert (result.seq, result.problem.split(":")[0]) == (3, "edited")


def test_changed_details_json_is_detected(database_url: str) -> None:
    """Editing the JSON details of row 2 is reported at row 2."""
    _seed(database_url)
    with session_scope(database_url) as session:
        row = session.exec(__import__("sqlmodel").select(AuditEvent).where(AuditEvent.seq == 2)).one()
        row.details = {"i": 99}
        session.add(row)
        session.commit()
    result = _verify(database_url)
    assert not result.ok and result.seq == 2


def test_deleted_row_is_detected(database_url: str) -> None:
    """Deleting row 3 is reported at row 4 as a deletion."""
    _seed(database_url)
    _sql(database_url, "DELETE FROM audit_event WHERE seq = 3")
    result = _verify(database_url)
    assert not result.ok
    assert result.seq == 4 and result.problem.startswith("deleted")


def test_inserted_row_is_detected(database_url: str) -> None:
    """A forged row squeezed in at position 3 (later rows renumbered) is named as inserted."""
    _seed(database_url)
    _sql(database_url, "UPDATE audit_event SET seq = seq + 100 WHERE seq >= 3")
    _sql(database_url, "UPDATE audit_event SET seq = seq - 99 WHERE seq >= 100")
    with session_scope(database_url) as session:
        prev = session.exec(__import__("sqlmodel").select(AuditEvent).where(AuditEvent.seq == 2)).one()
        forged = AuditEvent.model_validate(
            {**_event(42).model_dump(), "seq": 3, "prev_hash": prev.hash, "hash": ""}
        )
        forged.hash = forged.compute_hash(prev.hash)  # a well-formed row: only the chain gives it away
        session.add(forged)
        session.commit()
    result = _verify(database_url)
    assert not result.ok
    assert result.seq == 3 and result.problem.startswith("inserted")


def test_swapped_rows_are_detected(database_url: str) -> None:
    """Swapping the positions of rows 2 and 3 is reported as reordered at row 2."""
    _seed(database_url)
    _sql(database_url, "UPDATE audit_event SET seq = 1000 WHERE seq = 2")
    _sql(database_url, "UPDATE audit_event SET seq = 2 WHERE seq = 3")
    _sql(database_url, "UPDATE audit_event SET seq = 3 WHERE seq = 1000")
    result = _verify(database_url)
    assert not result.ok
    assert result.seq == 2 and result.problem.startswith("reordered")


def test_idempotency_key_returns_first_row(database_url: str) -> None:
    """Recording the same idempotency key twice writes one row and returns it both times."""
    with session_scope(database_url) as session:
        first = record(session=session, event=_event(1, idempotency_key="E1:create"))
        second = record(session=session, event=_event(1, idempotency_key="E1:create"))
        assert first.id == second.id
        assert len(list(iter_events(session=session))) == 1


def test_filters_by_employee(database_url: str) -> None:
    """iter_events filters by employee id."""
    _seed(database_url)
    with session_scope(database_url) as session:
        assert [e.employee_id for e in iter_events(session=session, employee_id="E2")] == ["E2"]


WRITER = textwrap.dedent(
    """
    import sys
    from models.audit import AuditEventBase, Outcome, record
    from models.db import session_scope
    url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with session_scope(url) as session:
        for i in range(n):
            record(session=session, event=AuditEventBase(
                actor=f"worker:{name}", action="test.append", target_system="test",
                outcome=Outcome.APPLIED, details={"i": i}))
    """
)


@pytest.mark.parametrize("per_writer", [1000])
def test_two_processes_append_one_chain_postgres(fresh_pg_url: str, per_writer: int) -> None:
    """Two processes appending 1,000 events each at once leave one valid chain of 2,000 on PostgreSQL."""
    get_engine(fresh_pg_url)  # migrate first so both writers start appending at once
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, fresh_pg_url, name, str(per_writer)])
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    result = _verify(fresh_pg_url)
    assert result.ok, result.describe()
    assert result.checked == 2 * per_writer
    with session_scope(fresh_pg_url) as session:
        actors = {e.actor for e in iter_events(session=session)}
    assert actors == {"worker:a", "worker:b"}


def test_two_processes_append_one_chain_sqlite(fresh_sqlite_url: str) -> None:
    """Two processes appending 300 events each at once leave one valid chain of 600 on SQLite (WAL)."""
    get_engine(fresh_sqlite_url)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, fresh_sqlite_url, n, "300"]) for n in ("a", "b")]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    result = _verify(fresh_sqlite_url)
    assert result.ok and result.checked == 600
