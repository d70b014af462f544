"""The webhook receiver under uvicorn against a real Prefect server: runs are created once, bad input none."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterIdempotencyKey,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from pydantic import SecretStr

from deployments.hibob_webhook import sign_hibob
from deployments.webhook import create_app, sign_bamboohr, sign_generic
from tenure.settings import WebhookSettings
from tests.support.prefect_server import PrefectServerHandle
from tests.support.slapd import free_port

pytestmark = pytest.mark.slow

SECRET = "e2e-generic-secret"
BAMBOO_KEY = "e2e-bamboo-private-key"
BOB_KEY = "e2e-hibob-secret-key"


@flow(name="joiner")
async def joiner(employee_id: str) -> str:
    """Stand-in joiner flow (never executed: no worker)."""
    return employee_id


@flow(name="mover")
async def mover(employee_id: str) -> str:
    """Stand-in mover flow."""
    return employee_id


@flow(name="leaver")
async def leaver(employee_id: str) -> str:
    """Stand-in leaver flow."""
    return employee_id


@dataclass
class Receiver:
    url: str
    deployments: dict[str, uuid.UUID]  # "joiner/joiner" -> id


def _serve(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1:<free port> in a thread; stop it on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("webhook receiver did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


async def _register_deployments() -> dict[str, uuid.UUID]:
    """joiner/joiner, mover/mover, leaver/leaver — deployments without a work pool or worker."""
    ids: dict[str, uuid.UUID] = {}
    async with get_client() as client:
        for stand_in in (joiner, mover, leaver):
            flow_id = await client.create_flow(stand_in)
            ids[f"{stand_in.name}/{stand_in.name}"] = await client.create_deployment(
                flow_id=flow_id,
                name=stand_in.name,
                entrypoint=f"tests/e2e/test_webhook_prefect.py:{stand_in.fn.__name__}",
                parameter_openapi_schema={
                    "type": "object",
                    "properties": {"employee_id": {"type": "string"}},
                    "required": ["employee_id"],
                },
            )
    return ids


@pytest.fixture(scope="module")
def receiver(prefect_server: PrefectServerHandle) -> Iterator[Receiver]:
    """The receiver (real PrefectRunStarter and emit_event) serving over HTTP, with the deployments registered."""
    deployments = asyncio.run(_register_deployments())
    config = WebhookSettings(
        secret=SecretStr(SECRET),
        bamboohr_secret=SecretStr(BAMBOO_KEY),
        hibob_secret=SecretStr(BOB_KEY),
        start_backoff_seconds=0.1,
    )
    yield from (Receiver(url, deployments) for url in _serve(create_app(config)))


@pytest.fixture
async def http(receiver: Receiver) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=receiver.url, timeout=60) as client:
        yield client


def signed(
    event_id: str, employee_id: str, kind: str = "employee.hired", *, age: int = 0, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"event_id": event_id, "type": kind, "employee_id": employee_id}).encode()
    timestamp = str(int(time.time()) - age)
    return body, {
        "X-Tenure-Timestamp": timestamp,
        "X-Tenure-Signature": sign_generic(secret, timestamp, body),
        "Content-Type": "application/json",
    }


async def runs_for(employee_id: str, deployment_id: uuid.UUID | None = None) -> list[Any]:
    """Flow runs (of any of our deployments, or one) whose employee_id parameter is ``employee_id``."""
    async with get_client() as client:
        runs = await client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            if deployment_id
            else None,
            sort=FlowRunSort.ID_DESC,  # the 3.8.8 client sends sort/limit=null, which its server rejects
            limit=200,
        )
    return [run for run in runs if run.parameters.get("employee_id") == employee_id]


async def total_runs() -> int:
    async with get_client() as client:
        return await client.count_flow_runs()


async def test_hire_creates_exactly_one_joiner_run(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """A valid hire event → 202 and one Scheduled joiner run with {"employee_id"} and our idempotency key."""
    employee_id, event_id = f"E-{uuid.uuid4().hex[:8]}", f"evt-{uuid.uuid4()}"
    body, headers = signed(event_id, employee_id)
    response = await http.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == 202, response.text
    run_id = response.json()["flow_run_id"]

    [run] = await runs_for(employee_id, receiver.deployments["joiner/joiner"])
    assert str(run.id) == run_id
    assert run.parameters == {"employee_id": employee_id}
    assert run.idempotency_key == f"hris:generic:{event_id}:{hashlib.sha256(body).hexdigest()[:16]}"
    assert run.name == f"joiner-{employee_id}"
    assert run.state is not None and run.state.is_scheduled()


async def test_hire_emits_prefect_event(http: httpx.AsyncClient) -> None:
    """An accepted hire emits hris.employee.hired about tenure.employee.<id>, related to the flow run."""
    employee_id, event_id = f"E-{uuid.uuid4().hex[:8]}", f"evt-{uuid.uuid4()}"
    body, headers = signed(event_id, employee_id)
    response = await http.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == 202, response.text
    wanted = EventFilter(
        event=EventNameFilter(name=["hris.employee.hired"]),
        resource=EventResourceFilter(id=[f"tenure.employee.{employee_id}"]),
    )
    events: list[Any] = []
    deadline = time.monotonic() + 30
    async with get_client() as client:
        while not events and time.monotonic() < deadline:
            events = (await client.read_events(filter=wanted, limit=5)).events
            if not events:
                await asyncio.sleep(0.5)
    assert len(events) == 1
    [event] = events
    assert event.payload == {"source": "generic", "event_id": event_id}
    assert [r.id for r in event.related] == [f"prefect.flow-run.{response.json()['flow_run_id']}"]


async def test_redelivery_creates_no_second_run(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """The same event again → 200 with the original run id; a fresh receiver (restart) → same run via Prefect."""
    employee_id, event_id = f"E-{uuid.uuid4().hex[:8]}", f"evt-{uuid.uuid4()}"
    body, headers = signed(event_id, employee_id, "employee.terminated")
    first = await http.post("/webhooks/generic", content=body, headers=headers)
    body, headers = signed(event_id, employee_id, "employee.terminated")
    again = await http.post("/webhooks/generic", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["flow_run_id"] == first.json()["flow_run_id"]

    restarted = create_app(WebhookSettings(secret=SecretStr(SECRET), bamboohr_secret=SecretStr(BAMBOO_KEY)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=restarted), base_url="http://restarted"
    ) as fresh:
        body, headers = signed(event_id, employee_id, "employee.terminated")
        after_restart = await fresh.post("/webhooks/generic", content=body, headers=headers)
    assert after_restart.status_code == 202
    assert after_restart.json()["flow_run_id"] == first.json()["flow_run_id"]

    runs = await runs_for(employee_id)
    assert len(runs) == 1
    assert runs[0].deployment_id == receiver.deployments["leaver/leaver"]


async def test_bamboohr_created_starts_joiner(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """A signed BambooHR event-based employee.created starts one joiner run for that employee."""
    employee_id = str(uuid.uuid4().int % 10**8)
    body = json.dumps(
        {
            "type": "employee.created",
            "timestamp": "2026-01-01T00:00:00+0000",
            "data": {"companyId": "1", "employeeId": employee_id},
        }
    ).encode()
    timestamp = str(int(time.time()))
    headers = {
        "X-BambooHR-Timestamp": timestamp,
        "X-BambooHR-Signature": sign_bamboohr(BAMBOO_KEY, timestamp, body),
        "Content-Type": "application/json",
    }
    response = await http.post("/webhooks/bamboohr", content=body, headers=headers)
    assert response.status_code == 202, response.text
    [run] = await runs_for(employee_id, receiver.deployments["joiner/joiner"])
    assert str(run.id) == response.json()["accepted"][0]["flow_run_id"]


async def test_hibob_created_starts_joiner(http: httpx.AsyncClient, receiver: Receiver) -> None:
    """A HiBob v2 employee.created signed with Bob-Signature starts one joiner run for that employee, and the
    re-delivered body starts no second one."""
    employee_id = str(uuid.uuid4().int % 10**18)
    body = json.dumps(
        {
            "companyId": 636192,
            "type": "employee.created",
            "triggeredBy": "3332883804594373380",
            "triggeredAt": "2026-01-08T13:06:26.915906",
            "version": "v2",
            "data": {"employeeId": employee_id},
        }
    ).encode()
    headers = {"Bob-Signature": sign_hibob(BOB_KEY, body), "Content-Type": "application/json"}
    response = await http.post("/webhooks/hibob", content=body, headers=headers)
    assert response.status_code == 202, response.text
    [run] = await runs_for(employee_id, receiver.deployments["joiner/joiner"])
    assert str(run.id) == response.json()["accepted"][0]["flow_run_id"]
    assert run.parameters == {"employee_id": employee_id}
    again = await http.post("/webhooks/hibob", content=body, headers=headers)
    assert again.status_code == 200 and again.json()["accepted"][0]["flow_run_id"] == str(run.id)
    assert len(await runs_for(employee_id)) == 1


def _bad_signature(event_id: str, employee_id: str) -> tuple[bytes, dict[str, str]]:
    body, headers = signed(event_id, employee_id)
    return body, {**headers, "X-Tenure-Signature": "sha256=" + "f" * 64}


def _old(event_id: str, employee_id: str) -> tuple[bytes, dict[str, str]]:
    return signed(event_id, employee_id, age=3600)


def _not_json(event_id: str, employee_id: str) -> tuple[bytes, dict[str, str]]:
    body = f"event_id={event_id}&employee_id={employee_id}".encode()
    timestamp = str(int(time.time()))
    return body, {
        "X-Tenure-Timestamp": timestamp,
        "X-Tenure-Signature": sign_generic(SECRET, timestamp, body),
    }


def _huge(event_id: str, employee_id: str) -> tuple[bytes, dict[str, str]]:
    pad = "x" * (10 * 1024 * 1024)
    body = json.dumps(
        {"event_id": event_id, "type": "employee.hired", "employee_id": employee_id, "pad": pad}
    ).encode()
    timestamp = str(int(time.time()))
    return body, {
        "X-Tenure-Timestamp": timestamp,
        "X-Tenure-Signature": sign_generic(SECRET, timestamp, body),
    }


def _unknown_type(event_id: str, employee_id: str) -> tuple[bytes, dict[str, str]]:
    return signed(event_id, employee_id, "employee.promoted")


@pytest.mark.parametrize(
    ("make", "status"),
    [(_bad_signature, 401), (_old, 401), (_not_json, 400), (_huge, 413), (_unknown_type, 422)],
    ids=["bad-signature", "old-timestamp", "not-json", "10MB-body", "unknown-type"],
)
async def test_bad_input_creates_no_run(http: httpx.AsyncClient, make: Any, status: int) -> None:
    """Each bad input gets its status and the server holds no new flow run."""
    employee_id, event_id = f"E-{uuid.uuid4().hex[:8]}", f"evt-{uuid.uuid4()}"
    before = await total_runs()
    body, headers = make(event_id, employee_id)
    response = await http.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert await runs_for(employee_id) == []
    assert await total_runs() == before


async def test_replay_of_accepted_event_creates_no_run(http: httpx.AsyncClient) -> None:
    """A replay of an accepted event (same event id, fresh signature) adds no flow run."""
    employee_id, event_id = f"E-{uuid.uuid4().hex[:8]}", f"evt-{uuid.uuid4()}"
    body, headers = signed(event_id, employee_id, "employee.changed")
    assert (await http.post("/webhooks/generic", content=body, headers=headers)).status_code == 202
    before = await total_runs()
    body, headers = signed(event_id, employee_id, "employee.changed")
    replay = await http.post("/webhooks/generic", content=body, headers=headers)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert await total_runs() == before
    async with get_client() as client:
        keyed = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                idempotency_key=FlowRunFilterIdempotencyKey(
                    any_=[f"hris:generic:{event_id}:{hashlib.sha256(body).hexdigest()[:16]}"]
                )
            ),
            sort=FlowRunSort.ID_DESC,
            limit=10,
        )
    assert len(keyed) == 1
