"""End-to-end fixtures: one real Prefect server per test session, shared by every e2e test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.prefect_server import PrefectServerHandle, start_prefect_server


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServerHandle]:
    """A real Prefect server on 127.0.0.1 (own PREFECT_HOME, SQLite unless TENURE_TEST_PREFECT_DATABASE_URL
    names another database); PREFECT_API_URL points this process's Prefect clients at it for the session."""
    from prefect.context import refresh_global_settings_context

    server = start_prefect_server(
        tmp_path_factory.mktemp("prefect"),
        database_url=os.environ.get("TENURE_TEST_PREFECT_DATABASE_URL") or None,
    )
    saved = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    refresh_global_settings_context()  # Prefect reads its settings once at import; re-read them now
    try:
        yield server
    finally:
        _drain_prefect_workers()  # send buffered logs and events while the server still answers
        if saved is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = saved
        refresh_global_settings_context()
        server.stop()


def _drain_prefect_workers() -> None:
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=10)
