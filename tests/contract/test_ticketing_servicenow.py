"""The Ticketing contract against a respx-backed stateful fake of the ServiceNow Table API.

The fake keeps ``incident`` records (all values strings, as the Table API returns them without display
values),
understands the ``correlation_id=<value>^ORDERBY...`` encoded query, appends ``work_notes`` to a journal, and
answers errors the way ServiceNow does (``{"error": {"message", "detail"}, "status": "failure"}``).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import respx

from connectors.errors import (
    InvalidRecordError,
    ResponseValidationError,
    RetryableAPIError,
)
from connectors.http import APIClient, build_client
from connectors.ticketing.servicenow import ServiceNowTicketing, map_status
from models.domain import TicketStatus
from tests.contract.ticketing_suite import Sleeps, TicketingContract, new_request

BASE = "https://tenure-test.service-now.com/"
VALID_AUTH = "Basic " + base64.b64encode(b"tenure.integration:snow-secret-pw").decode()
READ_ONLY = {"sys_id", "number", "sys_created_on"}


def _failure(status: int, message: str, detail: str = "") -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "detail": detail}, "status": "failure"})


class FakeServiceNow:
    """In-memory ``incident`` table behind respx routes; ``fail_next`` queues canned responses per route."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.work_notes: dict[str, list[str]] = {}
        self._numbers = itertools.count(10001)
        self.fail_next: dict[str, list[Callable[[httpx.Request], httpx.Response]]] = {}
        self.router = respx.MockRouter(base_url=BASE, assert_all_called=False, assert_all_mocked=True)
        r = self.router
        r.post(path="/api/now/table/incident", name="insert").mock(
            side_effect=self._guard("insert", self.insert)
        )
        r.get(path="/api/now/table/incident", name="list").mock(side_effect=self._guard("list", self.list))
        r.get(path__regex=r"^/api/now/table/incident/(?P<sys_id>\w+)$", name="get").mock(
            side_effect=self._guard("get", self.get)
        )
        r.patch(path__regex=r"^/api/now/table/incident/(?P<sys_id>\w+)$", name="patch").mock(
            side_effect=self._guard("patch", self.patch)
        )

    def _guard(self, name: str, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        def route(request: httpx.Request, **kwargs: Any) -> httpx.Response:
            queued = self.fail_next.get(name)
            if queued:
                return queued.pop(0)(request)
            if request.headers.get("Authorization") != VALID_AUTH:
                return _failure(401, "User Not Authenticated", "Required to provide Auth information")
            return handler(request, **kwargs)

        return route

    @staticmethod
    def _fields(request: httpx.Request, record: dict[str, Any]) -> dict[str, Any]:
        wanted = request.url.params.get("sysparm_fields")
        return {k: v for k, v in record.items() if not wanted or k in wanted.split(",")}

    def insert(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sys_id = uuid.uuid4().hex
        record = {
            "state": "1",
            "close_code": "",
            "close_notes": "",
            "correlation_id": "",
            "description": "",
            "short_description": "",
            "assignment_group": "",
        }
        record |= {k: str(v) for k, v in body.items() if k not in READ_ONLY and k != "work_notes"}
        record |= {
            "sys_id": sys_id,
            "number": f"INC00{next(self._numbers)}",
            "sys_created_on": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.records[sys_id] = record
        self.work_notes[sys_id] = []
        return httpx.Response(201, json={"result": self._fields(request, record)})

    def list(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params.get("sysparm_query", "")
        terms = [t for t in query.split("^") if t and not t.startswith("ORDERBY")]
        hits = list(self.records.values())
        for term in terms:
            field, _, value = term.partition("=")
            hits = [r for r in hits if r.get(field) == value]
        limit = int(request.url.params.get("sysparm_limit", "10000"))
        return httpx.Response(
            200,
            json={"result": [self._fields(request, r) for r in hits[:limit]]},
            headers={"X-Total-Count": str(len(hits))},
        )

    def get(self, request: httpx.Request, sys_id: str) -> httpx.Response:
        record = self.records.get(sys_id)
        if record is None:
            return _failure(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        return httpx.Response(200, json={"result": self._fields(request, record)})

    def patch(self, request: httpx.Request, sys_id: str) -> httpx.Response:
        record = self.records.get(sys_id)
        if record is None:
            return _failure(
                404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
            )
        body = json.loads(request.content)
        if body.get("state") == "6" and not (body.get("close_code") or record["close_code"]):
            return _failure(403, "Operation Failed", "Data Policy Exception: Resolution code is mandatory")
        if "work_notes" in body:
            self.work_notes[sys_id].append(body.pop("work_notes"))
        record |= {k: str(v) for k, v in body.items() if k not in READ_ONLY}
        return httpx.Response(200, json={"result": self._fields(request, record)})


def _connector(
    fake: FakeServiceNow, sleeps: Sleeps | None = None, *, password: str = "snow-secret-pw"
) -> ServiceNowTicketing:
    client = build_client(
        BASE, auth=("tenure.integration", password), transport=httpx.MockTransport(fake.router.handler)
    )
    api = APIClient(
        client,
        source="servicenow",
        secrets=[password],
        requests_per_second=1000,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    return ServiceNowTicketing(api, table="incident")


class ServiceNowPeer:
    def __init__(self, fake: FakeServiceNow) -> None:
        self.fake = fake

    async def count_with_reference(self, reference: str) -> int:
        return sum(r["correlation_id"] == reference for r in self.fake.records.values())

    async def comments(self, ticket_id: str) -> list[str]:
        return list(self.fake.work_notes[ticket_id])


@pytest.fixture
def fake() -> FakeServiceNow:
    return FakeServiceNow()


@pytest.fixture
async def ticketing(fake: FakeServiceNow) -> AsyncIterator[ServiceNowTicketing]:
    connector = _connector(fake)
    yield connector
    await connector.aclose()


@pytest.fixture
def ticketing_peer(fake: FakeServiceNow) -> ServiceNowPeer:
    return ServiceNowPeer(fake)


@pytest.fixture
async def wrong_secret_ticketing(fake: FakeServiceNow) -> AsyncIterator[tuple[ServiceNowTicketing, str]]:
    connector = _connector(fake, password="wrong-snow-pw")
    yield connector, "wrong-snow-pw"
    await connector.aclose()


class TestServiceNowContract(TicketingContract):
    """The shared Ticketing contract against the ServiceNow Table API fake."""


async def test_insert_sets_correlation_fields(fake: FakeServiceNow, ticketing: ServiceNowTicketing) -> None:
    """The incident carries the reference in correlation_id, the title and the assignment group."""
    request = new_request(queue="Service Desk")
    ticket = await ticketing.create_ticket(request)
    record = fake.records[ticket.id]
    assert record["correlation_id"] == request.reference
    assert record["short_description"] == request.title
    assert record["assignment_group"] == "Service Desk"
    assert ticket.url == f"{BASE}incident.do?sys_id={ticket.id}"


async def test_close_sets_resolution_fields(fake: FakeServiceNow, ticketing: ServiceNowTicketing) -> None:
    """Closing an incident sets state 6 with the resolution code its data policy requires."""
    ticket = await ticketing.create_ticket(new_request())
    await ticketing.close_ticket(ticket.id)
    assert {k: fake.records[ticket.id][k] for k in ("state", "close_code")} == {
        "state": "6",
        "close_code": "Solution provided",
    }


@pytest.mark.parametrize(
    ("table", "state", "expected"),
    [
        ("incident", "1", TicketStatus.OPEN),
        ("incident", "3", TicketStatus.OPEN),
        ("incident", "6", TicketStatus.RESOLVED),
        ("incident", "7", TicketStatus.RESOLVED),
        ("incident", "8", TicketStatus.REJECTED),
        ("sc_request", "3", TicketStatus.RESOLVED),
        ("sc_request", "4", TicketStatus.REJECTED),
        ("sc_request", "-5", TicketStatus.OPEN),
    ],
    ids=[
        "new",
        "on-hold",
        "resolved",
        "closed",
        "canceled",
        "req-closed-complete",
        "req-incomplete",
        "req-pending",
    ],
)
def test_state_mapping(table: str, state: str, expected: TicketStatus) -> None:
    """ServiceNow state values map onto open/resolved/rejected per table."""
    assert map_status(table, state) is expected


async def test_canceled_reads_as_rejected(fake: FakeServiceNow, ticketing: ServiceNowTicketing) -> None:
    """An incident canceled in ServiceNow (state 8) reads as rejected."""
    ticket = await ticketing.create_ticket(new_request())
    fake.records[ticket.id]["state"] = "8"
    assert await ticketing.get_status(ticket.id) is TicketStatus.REJECTED


async def test_429_honours_rate_limit_headers(fake: FakeServiceNow) -> None:
    """A 429 with Retry-After is retried after that many seconds; X-RateLimit-Reset is used without it."""
    sleeps = Sleeps()
    connector = _connector(fake, sleeps)
    reset = int(time.time()) + 30
    fake.fail_next["list"] = [
        lambda r: httpx.Response(
            429,
            headers={"Retry-After": "5", "X-RateLimit-Limit": "100", "X-RateLimit-Reset": str(reset)},
            json={"error": {"message": "Rate limit exceeded"}, "status": "failure"},
        ),
        lambda r: httpx.Response(
            429,
            headers={"X-RateLimit-Limit": "100", "X-RateLimit-Reset": str(reset)},
            json={"error": {"message": "Rate limit exceeded"}, "status": "failure"},
        ),
    ]
    try:
        assert await connector.find_ticket(new_request().reference) is None
    finally:
        await connector.aclose()
    assert sleeps[0] == 5.0
    assert 25.0 <= sleeps[1] <= 30.0
    assert fake.router.routes["list"].call_count == 3


async def test_persistent_429_gives_up_with_retryable_error(fake: FakeServiceNow) -> None:
    """When every attempt is rate limited the connector stops after max_attempts with RetryableAPIError."""
    connector = _connector(fake)
    fake.fail_next["list"] = [lambda r: httpx.Response(429, headers={"Retry-After": "1"}, json={})] * 10
    try:
        with pytest.raises(RetryableAPIError) as info:
            await connector.find_ticket(new_request().reference)
    finally:
        await connector.aclose()
    assert info.value.status_code == 429 and info.value.retry_after == 1.0
    assert fake.router.routes["list"].call_count == connector.api.max_attempts


async def test_hibernating_instance_html_is_response_validation_error(
    fake: FakeServiceNow, ticketing: ServiceNowTicketing
) -> None:
    """A hibernating developer instance answers 200 with HTML: ResponseValidationError, not a crash."""
    fake.fail_next["list"] = [
        lambda r: httpx.Response(
            200,
            headers={"Content-Type": "text/html;charset=UTF-8"},
            text="<html><head><title>Instance Hibernating page</title></head>"
            "<body>Your instance is hibernating"
            "</body></html>",
        )
    ]
    with pytest.raises(ResponseValidationError, match="text/html, not JSON"):
        await ticketing.find_ticket(new_request().reference)


async def test_timeout_after_insert_does_not_duplicate(fake: FakeServiceNow) -> None:
    """ServiceNow applies the insert but the answer is lost: the lookup finds it, one record exists."""
    connector = _connector(fake)

    def apply_then_time_out(request: httpx.Request) -> httpx.Response:
        fake.insert(request)
        raise httpx.ReadTimeout("lost answer", request=request)

    fake.fail_next["insert"] = [apply_then_time_out]
    request = new_request()
    try:
        ticket = await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert fake.router.routes["insert"].call_count == 1
    assert [k for k, r in fake.records.items() if r["correlation_id"] == request.reference] == [ticket.id]


async def test_work_note_is_sent_once_on_5xx(fake: FakeServiceNow, ticketing: ServiceNowTicketing) -> None:
    """A 503 on a work note is raised, not retried: a retried journal PATCH could add the note twice."""
    ticket = await ticketing.create_ticket(new_request())
    fake.fail_next["patch"] = [lambda r: _failure(503, "Service Unavailable")]
    with pytest.raises(RetryableAPIError):
        await ticketing.add_comment(ticket.id, "note")
    assert fake.router.routes["patch"].call_count == 1


async def test_caret_in_reference_is_refused(fake: FakeServiceNow, ticketing: ServiceNowTicketing) -> None:
    """A reference containing ``^`` cannot be expressed in an encoded query: refused before any write."""
    request = new_request(employee_id="E1^ORcorrelation_idISNOTEMPTY")
    with pytest.raises(InvalidRecordError, match="encoded query"):
        await ticketing.create_ticket(request)
    assert fake.records == {}


async def test_factory_builds_working_connector(fake: FakeServiceNow) -> None:
    """build_ticketing(kind=servicenow) uses the incident table by default and Basic auth."""
    from pydantic import SecretStr

    from tenure.compose import build_ticketing
    from tenure.settings import TicketingSettings

    settings = TicketingSettings(
        kind="servicenow",
        base_url=BASE,
        username="tenure.integration",
        password=SecretStr("snow-secret-pw"),
        requests_per_second=1000,
    )
    connector = build_ticketing(settings, transport=httpx.MockTransport(fake.router.handler))
    assert isinstance(connector, ServiceNowTicketing) and connector.table == "incident"
    try:
        ticket = await connector.create_ticket(new_request())
        assert await connector.get_status(ticket.id) is TicketStatus.OPEN
    finally:
        await connector.aclose()


def test_factory_none_and_missing_credentials() -> None:
    """kind=none gives None; a vendor without credentials is a clear configuration error."""
    from tenure.compose import build_ticketing
    from tenure.settings import TicketingSettings

    assert build_ticketing(TicketingSettings(kind="none")) is None
    with pytest.raises(ValueError, match="needs ticketing.username"):
        build_ticketing(TicketingSettings(kind="servicenow", base_url=BASE))
    with pytest.raises(ValueError, match="base_url is required"):
        build_ticketing(TicketingSettings(kind="servicenow"))
