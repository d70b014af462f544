"""The webhook receiver in process: signatures, time window, replays, size limits, mapping to deployments."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr
from typer.testing import CliRunner

from deployments import webhook_cli
from deployments.webhook import (
    PrefectRunStarter,
    ReplayGuard,
    RunRequest,
    RunStartUnavailable,
    create_app,
    parse_bamboohr,
    sign_bamboohr,
    sign_generic,
)
from tenure.settings import Settings, WebhookSettings
from tests.support.slapd import free_port

SECRET = "topsecret-webhook"
BAMBOO_KEY = "bamboo-private-key"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


class Recorder:
    """A fake run starter and event emitter that remember what they were asked."""

    def __init__(self, fail: Exception | None = None, delay: float = 0.0) -> None:
        self.requests: list[RunRequest] = []
        self.events: list[dict[str, Any]] = []
        self.fail = fail
        self.delay = delay

    async def start(self, request: RunRequest) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.requests.append(request)
        return str(uuid.uuid4())

    def emit(self, **kwargs: Any) -> None:
        self.events.append(kwargs)


def settings(**overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "secret": SecretStr(SECRET),
        "bamboohr_secret": SecretStr(BAMBOO_KEY),
        "max_body_bytes": 4096,
        **overrides,
    }
    return WebhookSettings(**values)


def client_for(
    recorder: Recorder, config: WebhookSettings | Settings | None = None, now: float = NOW
) -> httpx.AsyncClient:
    app = create_app(config or settings(), start_run=recorder.start, emit=recorder.emit, clock=lambda: now)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook.test")


def generic_body(event_id: str = "evt-1", kind: str = "employee.hired", employee_id: str = "E1") -> bytes:
    return json.dumps({"event_id": event_id, "type": kind, "employee_id": employee_id}).encode()


def generic_headers(body: bytes, *, timestamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Tenure-Timestamp": str(timestamp),
        "X-Tenure-Signature": sign_generic(secret, str(timestamp), body),
        "Content-Type": "application/json",
    }


def bamboohr_headers(body: bytes, *, timestamp: str = str(NOW), secret: str = BAMBOO_KEY) -> dict[str, str]:
    return {
        "X-BambooHR-Timestamp": timestamp,
        "X-BambooHR-Signature": sign_bamboohr(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def test_generic_signature_matches_openssl_vector() -> None:
    """sign_generic = sha256= + hex HMAC(secret, ts + "." + body), checked against `openssl dgst -hmac`."""
    body = b'{"event_id":"evt-1","type":"employee.hired","employee_id":"E1"}'
    assert sign_generic(SECRET, "1767225600", body) == (
        "sha256=68da5441873135e3a6f04e81127c507203bfb6f6abbbd0e80537aaaeeedad5d8"
    )


def test_bamboohr_signature_matches_openssl_vector() -> None:
    """sign_bamboohr = hex HMAC(private key, body + timestamp), checked against `openssl dgst -hmac`."""
    assert sign_bamboohr(BAMBOO_KEY, "1767225600", b'{"type":"employee.created"}') == (
        "60ae85a881bb0e66d1be7a3de6028d7ff1e32526779c9c682290cbed23a28141"
    )


async def test_healthz() -> None:
    """GET /healthz answers ok."""
    async with client_for(Recorder()) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("event_type", "deployment"),
    [
        ("employee.hired", "joiner/joiner"),
        ("employee.changed", "mover/mover"),
        ("employee.terminated", "leaver/leaver"),
    ],
    ids=["hired", "changed", "terminated"],
)
async def test_generic_event_starts_mapped_deployment(event_type: str, deployment: str) -> None:
    """A valid signed event starts its deployment idempotently and answers 202 with the run id."""
    recorder = Recorder()
    body = generic_body(kind=event_type, employee_id="E42")
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == 202
    [request] = recorder.requests
    assert request.deployment == deployment
    assert request.parameters == {"employee_id": "E42"}
    assert request.idempotency_key == f"hris:generic:evt-1:{hashlib.sha256(body).hexdigest()[:16]}"
    assert request.name == f"{deployment.split('/')[0]}-E42"
    assert response.json()["flow_run_id"] and response.json()["duplicate"] is False
    [event] = recorder.events
    assert event["event"] == f"hris.employee.{event_type.split('.')[1]}"
    assert event["resource"] == {"prefect.resource.id": "tenure.employee.E42"}
    assert event["related"][0]["prefect.resource.id"] == f"prefect.flow-run.{response.json()['flow_run_id']}"


async def test_deployment_mapping_is_a_setting() -> None:
    """event_deployments overrides which deployment a kind starts; full Settings are accepted too."""
    recorder = Recorder()
    config = Settings(
        webhook=settings(event_deployments={"hired": "onboard/prod", "changed": "m/x", "terminated": "l/x"})
    )
    body = generic_body()
    async with client_for(recorder, config) as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == 202
    assert recorder.requests[0].deployment == "onboard/prod"


def _bad_signature(body: bytes) -> dict[str, str]:
    headers = generic_headers(body)
    headers["X-Tenure-Signature"] = "sha256=" + "0" * 64
    return headers


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (_bad_signature, "invalid signature"),
        (lambda body: generic_headers(body, secret="another-secret"), "invalid signature"),
        (
            lambda body: {k: v for k, v in generic_headers(body).items() if k != "X-Tenure-Signature"},
            "missing signature",
        ),
        (
            lambda body: {k: v for k, v in generic_headers(body).items() if k != "X-Tenure-Timestamp"},
            "missing timestamp",
        ),
        (lambda body: generic_headers(body, timestamp=NOW - 301), "timestamp outside"),
        (lambda body: generic_headers(body, timestamp=NOW + 301), "timestamp outside"),
        (lambda body: {**generic_headers(body), "X-Tenure-Timestamp": "yesterday"}, "malformed timestamp"),
        (lambda body: generic_headers(body + b" "), "invalid signature"),  # signed another body
    ],
    ids=[
        "zeros",
        "wrong-secret",
        "no-signature",
        "no-timestamp",
        "too-old",
        "too-new",
        "bad-timestamp",
        "tampered",
    ],
)
async def test_generic_rejects_unauthenticated(make_headers: Any, reason: str) -> None:
    """Bad or missing signatures and timestamps outside the window get 401 and start nothing."""
    recorder = Recorder()
    body = generic_body()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/generic", content=body, headers=make_headers(body))
    assert response.status_code == 401
    assert reason in response.json()["error"]
    assert recorder.requests == [] and recorder.events == []


async def test_timestamp_at_the_edge_of_the_window_is_accepted() -> None:
    """A timestamp exactly max_skew_seconds old is still inside the window."""
    recorder = Recorder()
    body = generic_body()
    async with client_for(recorder) as client:
        response = await client.post(
            "/webhooks/generic", content=body, headers=generic_headers(body, timestamp=NOW - 300)
        )
    assert response.status_code == 202


async def test_replay_answers_original_run_and_starts_nothing() -> None:
    """The same event id again (even freshly signed) → 200 with the first run id, no second start."""
    recorder = Recorder()
    body = generic_body(event_id="evt-replay")
    async with client_for(recorder) as client:
        first = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
        again = await client.post(
            "/webhooks/generic", content=body, headers=generic_headers(body, timestamp=NOW - 5)
        )
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["flow_run_id"] == first.json()["flow_run_id"]
    assert again.json()["duplicate"] is True
    assert len(recorder.requests) == 1 and len(recorder.events) == 1


async def test_replay_guard_forgets_after_ttl() -> None:
    """The replay window is a TTL: within it a key is a duplicate, after it the start runs again."""
    now = [0.0]
    guard = ReplayGuard(ttl=600, clock=lambda: now[0])
    starts: list[str] = []

    async def start() -> str:
        starts.append("run")
        return f"run-{len(starts)}"

    assert await guard.run_once("generic:e1", "d1", start) == ("run-1", False)
    now[0] = 599.0
    assert await guard.run_once("generic:e1", "d1", start) == ("run-1", True)
    now[0] = 601.0
    assert await guard.run_once("generic:e1", "d2", start) == ("run-2", False)
    assert len(starts) == 2


async def test_concurrent_twins_start_one_run() -> None:
    """Two deliveries of one event in flight at once share one start."""
    recorder = Recorder(delay=0.05)
    body = generic_body(event_id="evt-twins")
    async with client_for(recorder) as client:
        first, second = await asyncio.gather(
            client.post("/webhooks/generic", content=body, headers=generic_headers(body)),
            client.post("/webhooks/generic", content=body, headers=generic_headers(body)),
        )
    assert sorted([first.status_code, second.status_code]) == [200, 202]
    assert first.json()["flow_run_id"] == second.json()["flow_run_id"]
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"employee_id=E1&type=employee.hired", 400, "not JSON"),
        (b"\xff\xfe{}", 400, "not JSON"),
        (b'["employee.hired"]', 422, "not a JSON object"),
        (generic_body(kind="employee.promoted"), 422, "unknown event type"),
        (json.dumps({"event_id": "e", "type": "employee.hired"}).encode(), 422, "employee_id"),
        (json.dumps({"type": "employee.hired", "employee_id": "E1"}).encode(), 422, "event_id"),
        (
            json.dumps({"event_id": "e", "type": "employee.hired", "employee_id": "E1\n"}).encode(),
            422,
            "employee_id",
        ),
    ],
    ids=["form", "binary", "array", "unknown-type", "no-employee", "no-event-id", "newline-id"],
)
async def test_generic_rejects_bad_payloads(body: bytes, status: int, reason: str) -> None:
    """Signed but unusable payloads get 400 (not JSON) or 422 (wrong shape) and start nothing."""
    recorder = Recorder()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == status
    assert reason in response.json()["error"]
    assert recorder.requests == []


async def test_body_over_limit_by_content_length_is_413() -> None:
    """A declared Content-Length over max_body_bytes is refused before reading."""
    recorder = Recorder()
    body = b'{"pad": "' + b"x" * 5000 + b'"}'
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == 413
    assert recorder.requests == []


async def test_body_over_limit_while_streaming_is_413() -> None:
    """A chunked body without Content-Length is counted while read and refused past the limit."""
    recorder = Recorder()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    headers = {"X-Tenure-Timestamp": str(NOW), "X-Tenure-Signature": "sha256=" + "0" * 64}
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/generic", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert response.status_code == 413
    assert recorder.requests == []


async def test_no_secret_configured_refuses_everything() -> None:
    """Without a configured secret nothing is accepted, whatever the signature."""
    recorder = Recorder()
    body = generic_body()
    async with client_for(recorder, WebhookSettings()) as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == 401
    assert recorder.requests == []


async def test_prefect_unavailable_is_503_and_not_remembered() -> None:
    """If the run cannot be created the answer is 503; the re-delivery later starts the run."""
    recorder = Recorder(fail=RunStartUnavailable("Prefect API unreachable"))
    body = generic_body(event_id="evt-503")
    app = create_app(settings(), start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        down = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
        recorder.fail = None
        up = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert down.status_code == 503 and down.headers["Retry-After"] == "30"
    assert up.status_code == 202
    assert len(recorder.requests) == 1


async def test_emit_failure_does_not_fail_the_webhook() -> None:
    """A failing Prefect event emission is logged; the run was created, so the answer stays 202."""
    recorder = Recorder()

    def broken_emit(**kwargs: Any) -> None:
        raise RuntimeError("events websocket down")

    body = generic_body()
    app = create_app(settings(), start_run=recorder.start, emit=broken_emit, clock=lambda: NOW)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/webhooks/generic", content=body, headers=generic_headers(body))
    assert response.status_code == 202


async def test_logs_carry_no_personal_data(caplog: pytest.LogCaptureFixture) -> None:
    """Rejected and accepted requests log reasons and ids, never the body's names or emails."""
    recorder = Recorder()
    pii = {
        "event_id": "evt-pii",
        "type": "employee.hired",
        "employee_id": "E7",
        "first_name": "Siobhán",
        "work_email": "siobhan@example.com",
    }
    good = json.dumps(pii).encode()
    unknown = json.dumps({**pii, "type": "employee.promoted"}).encode()
    with caplog.at_level(logging.DEBUG, logger="tenure.webhook"):
        async with client_for(recorder) as client:
            await client.post("/webhooks/generic", content=good, headers=generic_headers(good))
            await client.post("/webhooks/generic", content=unknown, headers=generic_headers(unknown))
            await client.post("/webhooks/generic", content=good, headers=_bad_signature(good))
    assert (
        "evt-pii" in caplog.text
        and "unknown event type" in caplog.text
        and "invalid signature" in caplog.text
    )
    assert "Siobhán" not in caplog.text and "siobhan@example.com" not in caplog.text


# -- BambooHR ------------------------------------------------------------------------------------------------

EVENT_BASED = {
    "type": "employee.created",
    "timestamp": "2026-01-01T00:00:00+0000",
    "data": {"companyId": "12345", "employeeId": "67890"},
}
FIELD_BASED = {
    "employees": [
        {
            "id": "101",
            "action": "Created",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "changedFields": [],
            "fields": {},
        },
        {
            "id": "102",
            "action": "Updated",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "changedFields": ["Job Title"],
            "fields": {"Job Title": {"value": "Engineer"}},
        },
        {
            "id": "103",
            "action": "Updated",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "changedFields": ["Termination Date"],
            "fields": {},
        },
        {
            "id": "104",
            "action": "Deleted",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "changedFields": [],
            "fields": {},
        },
    ]
}


async def test_bamboohr_event_based_created_starts_joiner() -> None:
    """An event-based employee.created, signed over body+timestamp, starts joiner/joiner."""
    recorder = Recorder()
    body = json.dumps(EVENT_BASED).encode()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
    assert response.status_code == 202
    [request] = recorder.requests
    assert (request.deployment, request.parameters) == ("joiner/joiner", {"employee_id": "67890"})
    assert request.event.idempotency_key.startswith("hris:bamboohr:")
    assert request.event.idempotency_key.endswith(":67890")
    assert request.idempotency_key.startswith(request.event.idempotency_key + ":")


async def test_bamboohr_field_based_maps_each_employee() -> None:
    """Created → joiner, Updated → mover, Updated(termination date) and Deleted → leaver."""
    recorder = Recorder()
    body = json.dumps(FIELD_BASED).encode()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
    assert response.status_code == 202
    assert [(r.parameters["employee_id"], r.deployment) for r in recorder.requests] == [
        ("101", "joiner/joiner"),
        ("102", "mover/mover"),
        ("103", "leaver/leaver"),
        ("104", "leaver/leaver"),
    ]
    assert [a["kind"] for a in response.json()["accepted"]] == [
        "hired",
        "changed",
        "terminated",
        "terminated",
    ]


async def test_bamboohr_delivery_is_refused_whole_when_a_kind_has_no_deployment() -> None:
    """If one employee's event maps to no deployment, the delivery is 422 and no run starts."""
    recorder = Recorder()
    config = settings(event_deployments={"hired": "joiner/joiner", "changed": "mover/mover"})
    body = json.dumps(FIELD_BASED).encode()
    async with client_for(recorder, config) as client:
        response = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
    assert response.status_code == 422
    assert "terminated" in response.json()["error"]
    assert recorder.requests == []


async def test_bamboohr_redelivery_with_new_timestamp_is_a_replay() -> None:
    """BambooHR's retry (same body, new timestamp and signature) starts nothing new."""
    recorder = Recorder()
    body = json.dumps(EVENT_BASED).encode()
    async with client_for(recorder) as client:
        first = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
        retry = await client.post(
            "/webhooks/bamboohr", content=body, headers=bamboohr_headers(body, timestamp=str(NOW + 60))
        )
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["accepted"][0]["flow_run_id"] == first.json()["accepted"][0]["flow_run_id"]
    assert len(recorder.requests) == 1


async def test_bamboohr_accepts_iso_timestamp_header() -> None:
    """An ISO 8601 X-BambooHR-Timestamp inside the window is accepted too."""
    recorder = Recorder()
    body = json.dumps(EVENT_BASED).encode()
    async with client_for(recorder) as client:
        response = await client.post(
            "/webhooks/bamboohr",
            content=body,
            headers=bamboohr_headers(body, timestamp="2026-01-01T00:01:00+00:00"),
        )
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"type": "employee.promoted", "data": {"employeeId": "1"}}, 422),
        ({"type": "timeoff.requested", "data": {"employeeId": "1"}}, 422),
        ({"employees": [{"id": "1", "action": "Archived"}]}, 422),
        ({"employees": [{"action": "Created"}]}, 422),
        ({"something": "else"}, 422),
    ],
    ids=["unknown-employee-event", "other-event", "unknown-action", "no-id", "unknown-shape"],
)
async def test_bamboohr_rejects_unknown_events(payload: dict[str, Any], status: int) -> None:
    """Unknown event types, actions and shapes → 422 and no run."""
    recorder = Recorder()
    body = json.dumps(payload).encode()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/bamboohr", content=body, headers=bamboohr_headers(body))
    assert response.status_code == status
    assert recorder.requests == []


async def test_bamboohr_rejects_generic_style_signature() -> None:
    """A BambooHR request signed with our generic scheme (or the wrong key) is 401."""
    recorder = Recorder()
    body = json.dumps(EVENT_BASED).encode()
    wrong = {
        "X-BambooHR-Timestamp": str(NOW),
        "X-BambooHR-Signature": sign_generic(BAMBOO_KEY, str(NOW), body).removeprefix("sha256="),
    }
    async with client_for(recorder) as client:
        scheme = await client.post("/webhooks/bamboohr", content=body, headers=wrong)
        key = await client.post(
            "/webhooks/bamboohr", content=body, headers=bamboohr_headers(body, secret=SECRET)
        )
    assert (scheme.status_code, key.status_code) == (401, 401)
    assert recorder.requests == []


def test_parse_bamboohr_event_id_is_stable_per_body() -> None:
    """The same body yields the same event ids; a different body different ones."""
    body = json.dumps(FIELD_BASED).encode()
    assert [e.event_id for e in parse_bamboohr(body)] == [e.event_id for e in parse_bamboohr(body)]
    other = json.dumps({**FIELD_BASED, "x": 1}).encode()
    assert parse_bamboohr(body)[0].event_id != parse_bamboohr(other)[0].event_id


# -- the Prefect starter and the CLI -------------------------------------------------------------------------


async def test_prefect_starter_retries_then_gives_up() -> None:
    """With the Prefect API down, the starter tries `attempts` times with exponential backoff, then raises."""
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    starter = PrefectRunStarter(attempts=2, backoff_seconds=0.25, sleep=sleep)
    from deployments.webhook import HRISEvent

    event = HRISEvent("generic", "evt-down", "hired", "E1")
    request = RunRequest("joiner/joiner", {"employee_id": "E1"}, event.idempotency_key, "joiner-E1", event)
    with (
        temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}),
        pytest.raises(RunStartUnavailable, match="after 2 attempts"),
    ):
        await starter(request)
    assert sleeps == [0.25]


def test_cli_serve_runs_the_guarded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`webhook serve --host --port` hands the app to the guarded uvicorn server with those values."""
    calls: list[dict[str, Any]] = []
    from deployments import webhook_server

    monkeypatch.setattr(webhook_server, "serve", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setenv("TENURE_WEBHOOK__SECRET", SECRET)
    result = CliRunner().invoke(webhook_cli.app, ["serve", "--host", "127.0.0.1", "--port", "18042"])
    assert result.exit_code == 0, result.output
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 18042
    assert hasattr(calls[0]["app"], "router") and calls[0]["settings"].header_timeout_seconds == 10
