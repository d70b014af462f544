"""The audit chain proves its own end (issue 16, item 5): a signed checkpoint (seq, head hash, time) kept outside
the audit database lets ``tenure audit verify`` report a truncated tail, a wiped table and a chain edited and
re-hashed onward with the project's own hash function, all of which verify OK on the chain alone."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

from models.audit import AuditEvent, AuditEventBase, Outcome, record_many, verify
from models.db import session_scope
from tenure.checkpoint import CHECKPOINT_FILE, CheckpointError, write_checkpoint
from tenure.cli import app
from tenure.settings import load_settings

KEY = "checkpoint-key-Rt5Yh8Uj2Ik9Ol"
runner = CliRunner()


@pytest.fixture
def anchored(fresh_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """An audit database of 6 events and a checkpoint directory, with the key configured."""
    directory = tmp_path / "checkpoints"
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_AUDIT__CHECKPOINT_KEY", KEY)
    monkeypatch.setenv("TENURE_AUDIT__CHECKPOINT_DIR", str(directory))
    _append(fresh_sqlite_url, 6)
    return fresh_sqlite_url, directory


def _append(url: str, n: int) -> None:
    with session_scope(url) as session:
        record_many(
            session=session,
            events=[
                AuditEventBase(
                    actor="cli:t",
                    action="idp.user.disable",
                    target_system="scim",
                    employee_id=f"E{i}",
                    outcome=Outcome.APPLIED,
                    reason="leaver: termination time reached",
                )
                for i in range(n)
            ],
        )


def _sql(url: str, statement: str) -> None:
    with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
        connection.execute(statement)


def _verify() -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify"])
    return result.exit_code, result.output


def test_checkpoint_then_verify_is_anchored(anchored: tuple[str, Path]) -> None:
    """``audit checkpoint`` appends one signed line; ``verify`` checks the chain against it."""
    url, directory = anchored
    written = runner.invoke(app, ["audit", "checkpoint"])
    assert written.exit_code == 0, written.output
    assert "seq 6" in written.output
    [line] = (directory / CHECKPOINT_FILE).read_text().splitlines()
    data = json.loads(line)
    assert data["seq"] == 6 and len(data["head"]) == 64 and len(data["sig"]) == 64
    assert KEY not in line
    code, output = _verify()
    assert code == 0, output
    assert "audit chain OK" in output and "anchored" in output and "seq 6" in output


def test_events_after_the_checkpoint_still_verify(anchored: tuple[str, Path]) -> None:
    """Events appended after the latest checkpoint are fine (the chain covers them)."""
    url, _ = anchored
    assert write_checkpoint(load_settings()) is not None
    _append(url, 2)
    code, output = _verify()
    assert code == 0 and "2 event(s) after it" in output, output


def test_tail_truncation_is_reported(anchored: tuple[str, Path]) -> None:
    """Deleting the last rows leaves a valid chain; the checkpoint shows it ends too early."""
    url, _ = anchored
    write_checkpoint(load_settings())
    _sql(url, "DELETE FROM audit_event WHERE seq > 3")
    with session_scope(url) as session:
        assert verify(session=session).ok  # the chain alone cannot tell
    code, output = _verify()
    assert code == 1 and "truncated" in output and "seq 3" in output and "seq 6" in output, output


def test_a_wipe_is_reported(anchored: tuple[str, Path]) -> None:
    """An emptied audit table verifies on its own; not against the checkpoint."""
    url, _ = anchored
    write_checkpoint(load_settings())
    _sql(url, "DELETE FROM audit_event")
    code, output = _verify()
    assert code == 1 and "wiped" in output, output


def test_a_rehashed_chain_is_reported(anchored: tuple[str, Path]) -> None:
    """Edit one row and recompute every hash from there with the project's own function: the chain verifies,
    the checkpoint does not match."""
    url, _ = anchored
    write_checkpoint(load_settings())
    with session_scope(url) as session:
        rows = session.exec(select(AuditEvent).order_by(col(AuditEvent.seq))).all()
        rows[1].reason = "nothing happened here"
        prev = rows[0].hash
        for row in rows[1:]:
            row.prev_hash = prev
            row.hash = row.compute_hash(prev)
            prev = row.hash
            session.add(row)
        session.commit()
        assert verify(session=session).ok  # the rewritten chain is self-consistent
    code, output = _verify()
    assert code == 1 and "re-hashed" in output and "seq 6" in output, output


def test_replaying_an_older_checkpoint_does_not_hide_a_truncation(anchored: tuple[str, Path]) -> None:
    """An attacker appending a copy of an older (validly signed) checkpoint after truncating: the newest
    checkpoint by seq still counts."""
    url, directory = anchored
    settings = load_settings()
    write_checkpoint(settings)  # seq 6
    old_line = (directory / CHECKPOINT_FILE).read_text()
    _append(url, 3)
    write_checkpoint(settings)  # seq 9
    _sql(url, "DELETE FROM audit_event WHERE seq > 6")
    with (directory / CHECKPOINT_FILE).open("a") as handle:
        handle.write(old_line)
    code, output = _verify()
    assert code == 1 and "truncated" in output and "seq 9" in output, output


def test_a_forged_checkpoint_line_is_reported(anchored: tuple[str, Path]) -> None:
    """A line not signed with the key (forged, or another key) is named; it anchors nothing."""
    _, directory = anchored
    write_checkpoint(load_settings())
    forged = {"v": 1, "seq": 2, "head": "0" * 64, "at": datetime.now(UTC).isoformat(), "sig": "f" * 64}
    with (directory / CHECKPOINT_FILE).open("a") as handle:
        handle.write(json.dumps(forged) + "\n")
        handle.write("not json at all\n")
    code, output = _verify()
    assert code == 1 and "line 2" in output and "line 3" in output and "signature" in output, output


def test_without_a_key_verify_says_the_end_is_not_anchored(
    fresh_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No key: the chain is checked as before (exit 0), with a note; ``audit checkpoint`` is a usage error."""
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_AUDIT__CHECKPOINT_DIR", str(tmp_path / "cp"))
    _append(fresh_sqlite_url, 2)
    code, output = _verify()
    assert code == 0 and "not anchored" in output and "TENURE_AUDIT__CHECKPOINT_KEY" in output
    refused = runner.invoke(app, ["audit", "checkpoint"])
    assert refused.exit_code == 2 and "TENURE_AUDIT__CHECKPOINT_KEY" in refused.output
    assert write_checkpoint(load_settings()) is None  # the end-of-run hook is a no-op without a key
    assert not (tmp_path / "cp").exists()


def test_checkpoints_without_the_key_are_a_configuration_error(
    anchored: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints exist but the key is gone: verify cannot vouch for the end, exit 2."""
    write_checkpoint(load_settings())
    monkeypatch.delenv("TENURE_AUDIT__CHECKPOINT_KEY")
    code, output = _verify()
    assert code == 2 and "TENURE_AUDIT__CHECKPOINT_KEY" in output, output


def test_an_unwritable_directory_is_a_clear_error(anchored: tuple[str, Path]) -> None:
    """The on-demand command fails with exit 2 naming the place; the end-of-run hook only warns."""
    _, directory = anchored
    directory.parent.joinpath("checkpoints").write_text("a file where the directory should be")
    refused = runner.invoke(app, ["audit", "checkpoint"])
    assert refused.exit_code == 2 and "checkpoint" in refused.output
    with pytest.raises(CheckpointError):
        write_checkpoint(load_settings(), required=True)
    assert write_checkpoint(load_settings()) is None


def test_the_key_is_a_registered_secret(anchored: tuple[str, Path]) -> None:
    """The checkpoint key is a SecretStr like every other: registered with the scrubber with the settings."""
    from connectors.redaction import scrub
    from tenure.compose import register_settings_secrets

    held = register_settings_secrets(load_settings())
    assert scrub(f"key={KEY}") == "key=***"
    del held
