"""Opening the audit database: Alembic upgrades an empty or older schema, and a schema already at head is opened
without loading Alembic at all (the start-up of every command pays for it otherwise)."""

from __future__ import annotations

import subprocess
import sys

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from models.db import MIGRATIONS, get_engine, head_revisions, reset_engines

OPEN_AND_REPORT = """
import sys
from models.db import get_engine
get_engine(sys.argv[1])
print("alembic loaded" if "alembic" in sys.modules else "alembic not loaded")
"""


def _open_in_child(url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", OPEN_AND_REPORT, url], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def _version(url: str) -> set[str]:
    with get_engine(url).connect() as connection:
        return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}


def test_heads_are_alembics() -> None:
    """The heads read from the scripts' revision lines are the ones Alembic computes from the same scripts."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert head_revisions() == frozenset(ScriptDirectory.from_config(config).get_heads())


def test_new_database_is_migrated_then_opened_without_alembic(database_url: str) -> None:
    """An empty database runs the migrations (Alembic loads); once at head, the next process opens it without."""
    assert _open_in_child(database_url) == "alembic loaded"
    assert _version(database_url) == set(head_revisions())
    assert _open_in_child(database_url) == "alembic not loaded"


def test_older_schema_is_still_upgraded(fresh_sqlite_url: str) -> None:
    """A database whose version row is behind the scripts' head is upgraded by Alembic on open."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with get_engine(fresh_sqlite_url).connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
        connection.commit()
    assert _version(fresh_sqlite_url) == {"0004"}
    reset_engines()
    assert _open_in_child(fresh_sqlite_url) == "alembic loaded"
    assert _version(fresh_sqlite_url) == set(head_revisions())
    with get_engine(fresh_sqlite_url).connect() as connection:
        connection.execute(text("SELECT count(*) FROM directory_account")).one()
