"""Hypothesis fuzzing of the webhook receiver, in process (``httpx.ASGITransport``, a recording ``start_run``).

Properties: never a 5xx or an unhandled exception; an unsigned or wrongly signed request is a 401 and starts
nothing; a correctly signed one is 2xx exactly when it parses as events (and then starts one run per event) and
otherwise a 4xx that starts nothing. Sizes: CI ~400 examples; ``TENURE_STRESS=1``: 10×.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from deployments.webhook import (
    RunRequest,
    WebhookRejected,
    create_app,
    parse_bamboohr,
    parse_generic,
    sign_bamboohr,
    sign_generic,
)
from tenure.settings import WebhookSettings
from tests.reliability.conftest import size

SECRET = "fuzz-webhook-secret-0x5eed"
NOW = 1_767_225_600
FUZZ = settings(max_examples=size(100, 1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])

identifier = st.one_of(
    st.text(max_size=12),
    st.integers(),
    st.from_regex(r"[A-Za-z0-9._:@-]{1,12}", fullmatch=True),
    st.none(),
    st.booleans(),
)
generic_payload = st.fixed_dictionaries(
    {},
    optional={
        "event_id": identifier,
        "employee_id": identifier,
        "type": st.sampled_from(["employee.hired", "employee.changed", "employee.terminated", "x", ""]),
    },
)
bamboo_entry = st.fixed_dictionaries(
    {},
    optional={
        "id": identifier,
        "action": st.sampled_from(["Created", "Updated", "Deleted", "Moved", ""]),
        "changedFields": st.lists(st.sampled_from(["Termination Date", "terminationDate", "Job Title"])),
    },
)
bamboo_payload = st.one_of(
    st.fixed_dictionaries({"employees": st.one_of(st.lists(bamboo_entry, max_size=3), st.text(max_size=5))}),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "employee.created",
                    "employee.updated",
                    "employee.deleted",
                    "employee_with_fields.updated",
                    "other.thing",
                ]
            ),
            "data": st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {}, optional={"employeeId": identifier, "changedFields": st.lists(st.text(max_size=8))}
                ),
            ),
        }
    ),
)
junk = st.one_of(st.binary(max_size=200), st.text(max_size=50).map(str.encode))


class Recorder:
    def __init__(self) -> None:
        self.requests: list[RunRequest] = []

    async def start(self, request: RunRequest) -> str:
        self.requests.append(request)
        return str(uuid.uuid4())


def _post(path: str, body: bytes, headers: dict[str, str]) -> tuple[httpx.Response, Recorder]:
    recorder = Recorder()
    app = create_app(
        WebhookSettings(secret=SecretStr(SECRET), max_body_bytes=4096),
        start_run=recorder.start,
        emit=lambda **_: None,
        clock=lambda: NOW,
    )

    async def send() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://webhook.test"
        ) as client:
            return await client.post(path, content=body, headers=headers)

    return asyncio.run(send()), recorder


def _expected_events(parse: Any, body: bytes) -> int | None:
    """How many events the body holds, or None if the parser refuses it."""
    try:
        parsed = parse(body)
    except WebhookRejected:
        return None
    return len(parsed) if isinstance(parsed, list) else 1


def _check(response: httpx.Response, recorder: Recorder, expected: int | None) -> None:
    assert response.status_code < 500, response.text
    if expected is None or expected == 0:
        assert 400 <= response.status_code < 500 or (expected == 0 and response.status_code < 300), (
            response.text
        )
        assert recorder.requests == []
    else:
        assert response.status_code in (200, 202), response.text
        assert len(recorder.requests) <= expected  # twins in one delivery share one run
        assert recorder.requests


@FUZZ
@given(payload=st.one_of(generic_payload.map(lambda p: json.dumps(p).encode()), junk))
def test_signed_generic_requests(payload: bytes) -> None:
    """A correctly signed generic request: 2xx and a run iff it parses, else a 4xx and nothing started."""
    headers = {"X-Tenure-Timestamp": str(NOW), "X-Tenure-Signature": sign_generic(SECRET, str(NOW), payload)}
    response, recorder = _post("/webhooks/generic", payload, headers)
    _check(response, recorder, _expected_events(parse_generic, payload))


@FUZZ
@given(payload=st.one_of(bamboo_payload.map(lambda p: json.dumps(p).encode()), junk))
def test_signed_bamboohr_requests(payload: bytes) -> None:
    """A correctly signed BambooHR request: 2xx and runs iff it parses, else a 4xx and nothing started."""
    headers = {
        "X-BambooHR-Timestamp": str(NOW),
        "X-BambooHR-Signature": sign_bamboohr(SECRET, str(NOW), payload),
    }
    response, recorder = _post("/webhooks/bamboohr", payload, headers)
    _check(response, recorder, _expected_events(parse_bamboohr, payload))


@FUZZ
@given(
    path=st.sampled_from(["/webhooks/generic", "/webhooks/bamboohr"]),
    payload=st.one_of(generic_payload.map(lambda p: json.dumps(p).encode()), junk),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-Tenure-Timestamp",
                "X-Tenure-Signature",
                "X-BambooHR-Timestamp",
                "X-BambooHR-Signature",
                "Content-Length",
            ]
        ),
        st.one_of(
            st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=70),
            st.just(str(NOW)),
            st.just("sha256=" + "0" * 64),
        ),
        max_size=5,
    ),
)
def test_unsigned_or_forged_requests_start_nothing(
    path: str, payload: bytes, headers: dict[str, str]
) -> None:
    """Random or forged signature headers never start a run and never answer 2xx or 5xx."""
    response, recorder = _post(path, payload, headers)
    assert 400 <= response.status_code < 500, response.text
    assert recorder.requests == []


@FUZZ
@given(
    skew=st.integers(min_value=-(10**6), max_value=10**6),
    payload=generic_payload.map(lambda p: json.dumps(p).encode()),
)
def test_stale_or_future_timestamps_are_refused(skew: int, payload: bytes) -> None:
    """A validly signed request outside the 300 s window is a 401 and starts nothing."""
    stamp = str(NOW + skew)
    headers = {"X-Tenure-Timestamp": stamp, "X-Tenure-Signature": sign_generic(SECRET, stamp, payload)}
    response, recorder = _post("/webhooks/generic", payload, headers)
    if abs(skew) > 300:
        assert response.status_code == 401 and recorder.requests == []
    else:
        assert response.status_code < 500
