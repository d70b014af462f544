"""HiBob webhooks in process: Bob-Signature (base64 HMAC-SHA512 of the body), the v2 payloads mapped to the
joiner/mover/leaver deployments, the connection ping, replays and bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deployments.hibob_webhook import parse_hibob, sign_hibob
from deployments.webhook import WebhookRejected, create_app
from tenure.settings import WebhookSettings
from tests.unit.test_webhook_signature import NOW, Recorder

BOB_KEY = "bob-webhook-secret-key"
EMPLOYEE = "3332883884017713238"


def payload(kind: str = "employee.created", employee_id: Any = EMPLOYEE, **data: Any) -> bytes:
    """A v2 event shaped like Bob's ("Getting started with Webhooks": companyId, type, triggeredBy,
    triggeredAt, version, data.employeeId)."""
    body = {
        "companyId": 636192,
        "type": kind,
        "triggeredBy": "3332883804594373380",
        "triggeredAt": "2026-01-08T13:06:26.915906",
        "version": "v2",
        "data": {"employeeId": employee_id, **data},
    }
    return json.dumps(body).encode()


def headers(body: bytes, secret: str = BOB_KEY) -> dict[str, str]:
    return {"Bob-Signature": sign_hibob(secret, body), "Content-Type": "application/json"}


def client_for(recorder: Recorder, **settings: Any) -> httpx.AsyncClient:
    config = WebhookSettings(**{"hibob_secret": SecretStr(BOB_KEY), "max_body_bytes": 4096, **settings})
    app = create_app(config, start_run=recorder.start, emit=recorder.emit, clock=lambda: NOW)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhook.test")


def test_signature_matches_openssl_vector() -> None:
    """sign_hibob = base64(HMAC-SHA512(key, body)), checked against `openssl dgst -sha512 -hmac -binary | base64`."""
    body = b'{"companyId":636192,"type":"employee.created","data":{"employeeId":"3332883884017713238"}}'
    assert sign_hibob(BOB_KEY, body) == (
        "hhk8Zw8bsvGnaKB6DveDlwen95+uBEK6vKE1vdXFGUX9GOFRN3ikKqf0RaYgZwGuKA5D14H/LjubFfWWCbO1FQ=="
    )


@pytest.mark.parametrize(
    ("kind", "deployment"),
    [
        ("employee.created", "joiner/joiner"),
        ("employee.joined", "joiner/joiner"),
        ("employee.updated", "mover/mover"),
        ("table.entry.updated", "mover/mover"),
        ("employee.inactivated", "mover/mover"),
        ("employee.left", "leaver/leaver"),
        ("employee.deleted", "leaver/leaver"),
    ],
)
async def test_event_starts_the_mapped_deployment(kind: str, deployment: str) -> None:
    """A signed v2 event → 202 and one run of the mapped deployment for data.employeeId."""
    recorder = Recorder()
    body = payload(kind)
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/hibob", content=body, headers=headers(body))
    assert response.status_code == 202, response.text
    [request] = recorder.requests
    assert (request.deployment, request.parameters) == (deployment, {"employee_id": EMPLOYEE})
    # hris:hibob:<event id>:<employee id>, then the body's hash (a re-delivery of another body is not a replay)
    assert request.idempotency_key.startswith("hris:hibob:") and f":{EMPLOYEE}:" in request.idempotency_key
    assert recorder.events[0]["event"].startswith("hris.employee.")


async def test_the_generic_secret_is_the_fallback() -> None:
    """Without TENURE_WEBHOOK__HIBOB_SECRET the receiver's secret verifies Bob's signature."""
    recorder = Recorder()
    body = payload()
    async with client_for(recorder, hibob_secret=None, secret=SecretStr("shared-secret")) as client:
        response = await client.post("/webhooks/hibob", content=body, headers=headers(body, "shared-secret"))
    assert response.status_code == 202 and len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (lambda body: {}, "missing signature"),
        (lambda body: headers(body, "another-key"), "invalid signature"),
        (lambda body: headers(body + b" "), "invalid signature"),
        (lambda body: {"Bob-Signature": sign_hibob(BOB_KEY, body).lower()}, "invalid signature"),
    ],
    ids=["none", "wrong-key", "other-body", "mangled"],
)
async def test_unsigned_or_badly_signed_is_401_and_starts_nothing(make_headers: Any, reason: str) -> None:
    """No signature, another key, a signature of another body: 401, no run."""
    recorder = Recorder()
    body = payload()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/hibob", content=body, headers=make_headers(body))
    assert (response.status_code, response.json()["error"]) == (401, reason)
    assert recorder.requests == []


@pytest.mark.parametrize("body", [b"Ping test", b'{"text":"Ping test"}'], ids=["text", "json"])
async def test_connection_ping_is_200_and_starts_nothing(body: bytes) -> None:
    """Bob's connection check posts 'Ping test' and wants a 2xx."""
    recorder = Recorder()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/hibob", content=body)
    assert response.status_code == 200 and response.json() == {"accepted": []}
    assert recorder.requests == []


async def test_redelivery_is_a_replay_with_the_original_run() -> None:
    """Bob re-delivers the same body: 200, duplicate, the first run's id, nothing new started."""
    recorder = Recorder()
    body = payload()
    async with client_for(recorder) as client:
        first = await client.post("/webhooks/hibob", content=body, headers=headers(body))
        again = await client.post("/webhooks/hibob", content=body, headers=headers(body))
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["accepted"][0]["duplicate"] is True
    assert again.json()["accepted"][0]["flow_run_id"] == first.json()["accepted"][0]["flow_run_id"]
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "body is not JSON"),
        (b"[1, 2]", 422, "payload is not a JSON object"),
        (payload("timeoff.request.created"), 422, "unknown event type"),
        (json.dumps({"type": "employee.created"}).encode(), 422, "event has no data object"),
        (payload(employee_id="../../etc"), 422, "missing or malformed employeeId"),
        (payload(employee_id=None), 422, "missing or malformed employeeId"),
    ],
    ids=["not-json", "array", "unknown-type", "no-data", "hostile-id", "no-id"],
)
async def test_bad_payloads_are_refused(body: bytes, status: int, reason: str) -> None:
    """Signed but unusable: 400/422 with the reason, no run."""
    recorder = Recorder()
    async with client_for(recorder) as client:
        response = await client.post("/webhooks/hibob", content=body, headers=headers(body))
    assert (response.status_code, response.json()["error"]) == (status, reason)
    assert recorder.requests == []


def test_event_id_is_stable_per_body() -> None:
    """The same body gives the same event id; another body another one."""
    [first] = parse_hibob(payload())
    [again] = parse_hibob(payload())
    [other] = parse_hibob(payload("employee.updated"))
    assert first.event_id == again.event_id != other.event_id
    with pytest.raises(WebhookRejected):
        parse_hibob(b"")
