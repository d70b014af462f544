"""Shared fixtures: throwaway audit databases on SQLite and on the real local PostgreSQL, and the real peers
(scim2-server, slapd, a Samba AD domain controller, Request Tracker 5).

Each peer fixture is module-scoped: every test module that asks for one gets its own fresh process on
127.0.0.1 (a free port), stopped by PID (terminate, then kill) when the module is done. A module that needs
the peer set up differently overrides the fixture under the same name (pytest passes the parent fixture in
when the override asks for its own name).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.rt_server import RTServer
    from tests.support.samba_dc import SambaDC
    from tests.support.scim_server import SCIMServer
    from tests.support.slapd import SlapdHandle

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PG_ADMIN_URL = os.environ.get("TENURE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True)
    except psycopg.OperationalError as exc:  # fail, never skip: CI must have PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL} (run scripts/ensure-postgres.sh): {exc}")


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The PostgreSQL server URL without a database name (for fixtures that create their own database)."""
    return PG_ADMIN_URL.rsplit("/", 1)[0]


@pytest.fixture
def fresh_pg_url(pg_server_url: str) -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    name = f"tenure_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin()
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{pg_server_url.split('://', 1)[1]}/{name}"
    finally:
        from models.db import reset_engines

        reset_engines()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def fresh_sqlite_url(tmp_path: Path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'tenure.db'}"
    from models.db import reset_engines

    reset_engines()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty audit database, once on SQLite and once on PostgreSQL."""
    fixture = "fresh_sqlite_url" if request.param == "sqlite" else "fresh_pg_url"
    return request.getfixturevalue(fixture)


@pytest.fixture(scope="module")
def scim_server() -> Iterator[SCIMServer]:
    """One real scim2-server for the module (each test takes its own tenant), stopped by PID at teardown."""
    from tests.support.scim_server import running_scim_server

    with running_scim_server() as server:
        yield server


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdHandle]:
    """One real slapd on 127.0.0.1 for the module, stopped by PID at teardown."""
    from tests.support.slapd import start_slapd

    handle = start_slapd(tmp_path_factory.mktemp("slapd"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """One real Samba AD DC for the session (provisioned and started once, ~6 s, in a network namespace of
    its own), stopped by PID and its namespace removed at teardown. Users clear their OUs themselves.

    A machine that cannot run it (not root, no network namespaces, Samba missing) skips, except in CI
    (``CI=true``), where that is a failure."""
    from tests.support.samba_dc import SambaDCUnavailable, skip_or_fail, start_samba_dc

    try:
        dc = start_samba_dc(tmp_path_factory.mktemp("samba-dc"))
    except SambaDCUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        yield dc
    finally:
        dc.stop()


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RTServer]:
    """One real Request Tracker 5 (fresh SQLite database, free port) for the module, stopped by PID at
    teardown."""
    from tests.support.rt_server import start_rt

    server = start_rt(tmp_path_factory.mktemp("rt"))
    try:
        yield server
    finally:
        server.stop()
