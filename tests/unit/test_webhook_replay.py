"""Replay identity is the event id AND the body (issue 16, item 4): the same id with another signed body is a
409 with an audit row, never a silent "duplicate"; the same id and body stays the 200 duplicate. And a validly
signed body that can never be processed (50,000-deep JSON, a 5,000-digit number) is a 4xx, never a 5xx."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
import pytest

from deployments.webhook import (
    ReplayConflict,
    ReplayGuard,
    create_app,
)
from models.audit import iter_events
from models.db import session_scope
from tenure.settings import Settings
from tests.unit.test_webhook_signature import (
    NOW,
    Recorder,
    bamboohr_headers,
    generic_body,
    generic_headers,
    settings,
)


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook.test")


async def _post(client: httpx.AsyncClient, body: bytes, *, timestamp: int = NOW) -> httpx.Response:
    return await client.post(
        "/webhooks/generic", content=body, headers=generic_headers(body, timestamp=timestamp)
    )


async def test_same_id_other_body_is_409_with_an_audit_row(fresh_sqlite_url: str) -> None:
    """A second body under an accepted event id (another employee terminated) is refused and audited; the
    first run stands and nothing else starts."""
    recorder = Recorder()
    config = Settings(database_url=fresh_sqlite_url, webhook=settings())
    app = create_app(config, start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    first_body = generic_body(event_id="evt-7", kind="employee.terminated", employee_id="E1")
    other_body = generic_body(event_id="evt-7", kind="employee.terminated", employee_id="E2")
    async with _client(app) as client:
        first = await _post(client, first_body)
        conflict = await _post(client, other_body, timestamp=NOW - 3)
        again = await _post(client, first_body, timestamp=NOW - 5)
    assert first.status_code == 202
    assert conflict.status_code == 409
    assert "evt-7" in conflict.json()["error"] and "different body" in conflict.json()["error"]
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert [r.parameters for r in recorder.requests] == [{"employee_id": "E1"}]
    with session_scope(fresh_sqlite_url) as session:
        [row] = list(iter_events(session=session))
    assert row.action == "webhook.replay.conflict" and row.outcome == "failed"
    assert row.actor == "webhook" and row.target_system == "generic" and row.employee_id == "E2"
    assert row.details == {
        "event_id": "evt-7",
        "body_sha256": hashlib.sha256(other_body).hexdigest(),
        "first_body_sha256": hashlib.sha256(first_body).hexdigest(),
        "flow_run_id": first.json()["flow_run_id"],
    }


async def test_concurrent_same_id_other_body_is_409() -> None:
    """Two bodies under one event id in flight at once: one starts, the other is 409."""
    recorder = Recorder(delay=0.05)
    app = create_app(settings(), start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    async with _client(app) as client:
        one, two = await asyncio.gather(
            _post(client, generic_body(event_id="evt-c", employee_id="E1")),
            _post(client, generic_body(event_id="evt-c", employee_id="E2")),
        )
    assert sorted([one.status_code, two.status_code]) == [202, 409]
    assert len(recorder.requests) == 1


async def test_replay_guard_keys_on_id_and_body() -> None:
    """The guard remembers (id, body digest): same digest → duplicate; another → ReplayConflict."""
    guard = ReplayGuard(ttl=600)

    async def start() -> str:
        return "run-1"

    assert await guard.run_once("generic:e1", "aa" * 32, start) == ("run-1", False)
    assert await guard.run_once("generic:e1", "aa" * 32, start) == ("run-1", True)
    with pytest.raises(ReplayConflict) as conflict:
        await guard.run_once("generic:e1", "bb" * 32, start)
    assert conflict.value.first_digest == "aa" * 32 and conflict.value.run_id == "run-1"


async def test_the_flow_run_is_keyed_by_id_and_body() -> None:
    """The run's idempotency key carries the body digest, so after a restart (the window is in memory) another
    body under the same id is not folded into the first run by Prefect: it starts its own."""
    recorder = Recorder()
    app = create_app(settings(), start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    body = generic_body(event_id="evt-k")
    async with _client(app) as client:
        assert (await _post(client, body)).status_code == 202
    [request] = recorder.requests
    digest = hashlib.sha256(body).hexdigest()
    assert request.body_sha256 == digest
    assert request.idempotency_key == f"hris:generic:evt-k:{digest[:16]}"


def _deep(depth: int) -> bytes:
    return (
        b'{"event_id": "e", "type": "employee.hired", "employee_id": "E1", "x": '
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )


HOPELESS = {
    "deep-50000": _deep(50_000),
    "deep-100": _deep(100),
    "int-5000-digits": b'{"event_id": "e", "type": "employee.hired", "employee_id": ' + b"9" * 5000 + b"}",
    "float-5000-digits": b'{"event_id": "e", "type": "employee.hired", "employee_id": "E1", "n": 0.'
    + b"1" * 5000
    + b"}",
    "nan": b'{"event_id": "e", "type": "employee.hired", "employee_id": "E1", "n": NaN}',
}


@pytest.mark.parametrize("body", HOPELESS.values(), ids=HOPELESS.keys())
async def test_signed_hopeless_json_is_400_not_5xx(body: bytes) -> None:
    """Signed bodies that can never succeed get a 4xx (so the HRIS stops retrying) and start nothing."""
    recorder = Recorder()
    app = create_app(
        settings(max_body_bytes=1_048_576), start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW
    )
    async with _client(app) as client:
        generic = await _post(client, body)
        bamboo = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
    for response in (generic, bamboo):
        assert response.status_code == 400, response.text
        assert "JSON" in response.json()["error"]
    assert recorder.requests == []


async def test_reasonable_depth_and_numbers_still_parse() -> None:
    """A nested object a few levels deep and an ordinary integer id are fine."""
    recorder = Recorder()
    app = create_app(settings(), start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    body = json.dumps(
        {"event_id": "e-ok", "type": "employee.hired", "employee_id": 12345, "meta": {"a": [{"b": [1.5]}]}}
    ).encode()
    async with _client(app) as client:
        response = await _post(client, body)
    assert response.status_code == 202 and recorder.requests[0].parameters == {"employee_id": "12345"}
