"""BambooHR HRIS contract tests against documented payloads (respx), incl. 429 Retry-After and redaction."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, date, datetime

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.errors import (
    AuthenticationError,
    InvalidRecordError,
    NotFoundError,
    ResponseValidationError,
    RetryableAPIError,
)
from connectors.hris.bamboohr import REPORT_FIELDS, BambooHRHRIS
from connectors.hris.csv_export import CSVExportHRIS
from connectors.http import APIClient, build_client
from connectors.protocols import HRIS
from models.domain import Employee, EmployeeStatus
from tenure.compose import build_hris
from tenure.settings import HRISSettings

API_KEY = "bhr-4f1c2d9e8a7b6c5d4e3f2a1b0c9d8e7f"
BASE = "https://api.bamboohr.com/api/gateway.php/acme/v1/"
TODAY = date(2026, 1, 15)

# Shaped like BambooHR's "Request a custom report" JSON answer (title, fields, employees).
REPORT = {
    "title": "Report",
    "fields": [{"id": f, "type": "text", "name": f} for f in REPORT_FIELDS],
    "employees": [
        {
            "id": "123",
            "firstName": "Charlotte",
            "lastName": "Abbott",
            "preferredName": "Charlie",
            "workEmail": "cabbott@efficientoffice.com",
            "homeEmail": "charlotte@example.net",
            "department": "Sales",
            "jobTitle": "Sr. HR Administrator",
            "supervisorEId": "9",
            "location": "Lindon, Utah",
            "employmentHistoryStatus": "Full-Time",
            "status": "Active",
            "hireDate": "2012-01-04",
            "terminationDate": "0000-00-00",
        },
        {
            "id": "124",
            "firstName": "Ashley",
            "lastName": "Adams",
            "preferredName": None,
            "workEmail": None,
            "homeEmail": None,
            "department": "IT",
            "jobTitle": "IT Helpdesk",
            "supervisorEId": "123",
            "location": "London, UK",
            "employmentHistoryStatus": "Terminated",
            "status": "Inactive",
            "hireDate": "2015-06-01",
            "terminationDate": "2025-11-30",
        },
        {
            "id": "125",
            "firstName": "Christina",
            "lastName": "Agluinda",
            "preferredName": "",
            "workEmail": "",
            "homeEmail": "",
            "department": "Product",
            "jobTitle": "Software Engineer",
            "supervisorEId": None,
            "location": None,
            "employmentHistoryStatus": "Full-Time",
            "status": "Active",
            "hireDate": "2026-02-02",
            "terminationDate": "0000-00-00",
        },
        {"id": "126", "firstName": "Shannon", "lastName": "", "status": "Active", "hireDate": "2020-01-01"},
    ],
}

# Shaped like "Gets all updated employee IDs".
CHANGED = {
    "latest": "2026-01-14T19:26:23+00:00",
    "employees": {
        "3": {"id": "3", "action": "Inserted", "lastChanged": "2026-01-14T19:26:23+00:00"},
        "4": {"id": "4", "action": "Updated", "lastChanged": "2026-01-14T10:00:00+00:00"},
        "5": {"id": "5", "action": "Deleted", "lastChanged": "2026-01-13T22:57:10+00:00"},
    },
}


async def no_wait(seconds: float) -> None:
    """Zero-wait sleep for retries."""


def make_hris(sleeps: list[float] | None = None) -> BambooHRHRIS:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    client = build_client(BASE, auth=(API_KEY, "x"))
    api = APIClient(client, source="bamboohr", secrets=[API_KEY], sleep=sleep, requests_per_second=1000)
    return BambooHRHRIS(api, today=lambda: TODAY, now=lambda: datetime(2026, 1, 15, 9, 0, tzinfo=UTC))


def expected_auth() -> str:
    return "Basic " + base64.b64encode(f"{API_KEY}:x".encode()).decode()


def test_satisfies_hris_protocol() -> None:
    """BambooHRHRIS is structurally an HRIS."""
    assert isinstance(make_hris(), HRIS)


@respx.mock
async def test_iter_employees_uses_custom_report() -> None:
    """One POST reports/custom (JSON, onlyCurrent=false, our fields) with Basic key:x and Accept JSON."""
    route = respx.post(f"{BASE}reports/custom").mock(return_value=httpx.Response(200, json=REPORT))
    items = [item async for item in make_hris().iter_employees()]

    request = route.calls.last.request
    assert request.url.params["format"] == "JSON"
    assert request.url.params["onlyCurrent"] == "false"
    assert json.loads(request.content) == {"fields": list(REPORT_FIELDS)}
    assert request.headers["Authorization"] == expected_auth()
    assert request.headers["Accept"] == "application/json"

    charlotte, ashley, christina, shannon = items
    assert isinstance(charlotte, Employee)
    assert charlotte.model_dump() == {
        "employee_id": "123",
        "first_name": "Charlotte",
        "last_name": "Abbott",
        "preferred_name": "Charlie",
        "work_email": "cabbott@efficientoffice.com",
        "personal_email": "charlotte@example.net",
        "department": "Sales",
        "title": "Sr. HR Administrator",
        "manager_id": "9",
        "location": "Lindon, Utah",
        "employment_type": "Full-Time",
        "status": EmployeeStatus.ACTIVE,
        "hire_date": date(2012, 1, 4),
        "termination_date": None,
    }
    assert isinstance(ashley, Employee) and ashley.status is EmployeeStatus.TERMINATED
    assert ashley.termination_date == date(2025, 11, 30)
    assert isinstance(christina, Employee) and christina.status is EmployeeStatus.PENDING
    assert christina.work_email is None and christina.preferred_name is None
    assert isinstance(shannon, InvalidRecordError)
    assert (shannon.reason, shannon.record_id, shannon.source) == ("missing last_name", "126", "bamboohr")
    assert "Shannon" not in str(shannon)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"status": "Active", "hireDate": "2020-01-01"}, EmployeeStatus.ACTIVE),
        ({"status": "Active", "hireDate": "2026-01-16"}, EmployeeStatus.PENDING),
        (
            {"status": "Active", "hireDate": "2020-01-01", "terminationDate": "2026-01-14"},
            EmployeeStatus.TERMINATED,
        ),
        (
            {"status": "Active", "hireDate": "2020-01-01", "terminationDate": "2026-03-31"},
            EmployeeStatus.ACTIVE,
        ),
        (
            {"status": "Inactive", "hireDate": "2020-01-01", "terminationDate": "2025-12-01"},
            EmployeeStatus.TERMINATED,
        ),
        (
            {"status": "Inactive", "hireDate": "2020-01-01", "terminationDate": "0000-00-00"},
            EmployeeStatus.TERMINATED,
        ),
        (
            {"status": "Active", "hireDate": "2020-01-01", "employmentHistoryStatus": "Leave of Absence"},
            EmployeeStatus.LEAVE,
        ),
    ],
    ids=[
        "active",
        "future-hire",
        "past-termination",
        "future-termination",
        "inactive-terminated",
        "inactive-no-date",
        "leave",
    ],
)
def test_status_mapping(fields: dict[str, str], expected: EmployeeStatus) -> None:
    """BambooHR status + dates + employment status map to our EmployeeStatus."""
    result = make_hris().to_employee({"id": "7", "firstName": "A", "lastName": "B", **fields})
    assert isinstance(result, Employee)
    assert result.status is expected


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": "Suspended"}, "unknown status"),
        ({"status": "Active", "hireDate": "01/02/2020"}, "invalid hire_date"),
        ({"status": "Inactive", "terminationDate": "2025-02-30"}, "invalid termination_date"),
    ],
    ids=["status", "hire-date", "termination-date"],
)
def test_unusable_record_is_invalid(fields: dict[str, str], reason: str) -> None:
    """Unknown status words and malformed dates give an InvalidRecordError naming the field only."""
    result = make_hris().to_employee({"id": "7", "firstName": "Ada", "lastName": "Lovelace", **fields})
    assert isinstance(result, InvalidRecordError)
    assert result.reason.startswith(reason)
    assert result.record_id == "7"
    assert "Ada" not in str(result)


@respx.mock
async def test_get_employee_requests_fields() -> None:
    """get_employee GETs employees/{id}/ with our field list and maps the answer."""
    route = respx.get(f"{BASE}employees/123/").mock(
        return_value=httpx.Response(200, json={k: v for k, v in REPORT["employees"][0].items()})
    )
    employee = await make_hris().get_employee("123")
    assert route.calls.last.request.url.params["fields"] == ",".join(REPORT_FIELDS)
    assert employee.employee_id == "123" and employee.manager_id == "9"


@respx.mock
async def test_get_employee_not_found_and_invalid() -> None:
    """404 → NotFoundError; an unusable record → InvalidRecordError raised."""
    respx.get(f"{BASE}employees/999/").mock(return_value=httpx.Response(404))
    respx.get(f"{BASE}employees/126/").mock(return_value=httpx.Response(200, json=REPORT["employees"][3]))
    source = make_hris()
    with pytest.raises(NotFoundError):
        await source.get_employee("999")
    with pytest.raises(InvalidRecordError, match="missing last_name"):
        await source.get_employee("126")


@respx.mock
async def test_changed_since_uses_changed_endpoint() -> None:
    """changed_since sends since=…Z and returns inserted/updated/deleted ids with latest as the cursor."""
    route = respx.get(f"{BASE}employees/changed/").mock(return_value=httpx.Response(200, json=CHANGED))
    changes = await make_hris().changed_since(datetime(2026, 1, 13, 8, 30, tzinfo=UTC))
    assert route.calls.last.request.url.params["since"] == "2026-01-13T08:30:00Z"
    assert changes.employee_ids == ["3", "4", "5"]
    assert changes.next_cursor == datetime(2026, 1, 14, 19, 26, 23, tzinfo=UTC)


@respx.mock
async def test_changed_since_empty_keeps_cursor() -> None:
    """No changes (empty list, PHP style) and no latest → the same cursor comes back."""
    respx.get(f"{BASE}employees/changed/").mock(return_value=httpx.Response(200, json={"employees": []}))
    cursor = datetime(2026, 1, 13, 8, 30, tzinfo=UTC)
    changes = await make_hris().changed_since(cursor)
    assert changes.employee_ids == [] and changes.next_cursor == cursor


@respx.mock
async def test_changed_since_without_cursor_lists_everyone() -> None:
    """No cursor → every id in the custom report, cursor = the time we asked."""
    respx.post(f"{BASE}reports/custom").mock(return_value=httpx.Response(200, json=REPORT))
    changes = await make_hris().changed_since(None)
    assert changes.employee_ids == ["123", "124", "125", "126"]
    assert changes.next_cursor == datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


@respx.mock
async def test_429_honours_retry_after() -> None:
    """A 429 with Retry-After: 7 is retried after exactly 7 s, then succeeds."""
    route = respx.post(f"{BASE}reports/custom").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200, json=REPORT)]
    )
    sleeps: list[float] = []
    items = [item async for item in make_hris(sleeps).iter_employees()]
    assert route.call_count == 2
    assert sleeps == [7.0]
    assert len(items) == 4


@respx.mock
async def test_503_twice_then_ok() -> None:
    """[503, 503, 200] succeeds on the third attempt."""
    route = respx.get(f"{BASE}employees/123/").mock(
        side_effect=[
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(200, json=REPORT["employees"][0]),
        ]
    )
    assert (await make_hris([]).get_employee("123")).employee_id == "123"
    assert route.call_count == 3


@respx.mock
async def test_429_exhausted_raises_retryable() -> None:
    """Persistent 429s end in RetryableAPIError after max attempts."""
    respx.get(f"{BASE}employees/changed/").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "1"})
    )
    with pytest.raises(RetryableAPIError) as info:
        await make_hris([]).changed_since(datetime(2026, 1, 1, tzinfo=UTC))
    assert info.value.retry_after == 1.0


@respx.mock
async def test_html_answer_is_response_validation_error() -> None:
    """An HTML page instead of JSON (missing Accept handling, proxy page) → ResponseValidationError."""
    respx.post(f"{BASE}reports/custom").mock(
        return_value=httpx.Response(200, text="<html>login</html>", headers={"Content-Type": "text/html"})
    )
    with pytest.raises(ResponseValidationError, match="text/html"):
        [item async for item in make_hris().iter_employees()]


@respx.mock
async def test_report_without_employees_list_is_rejected() -> None:
    """A report answer without an employees list is a ResponseValidationError."""
    respx.post(f"{BASE}reports/custom").mock(return_value=httpx.Response(200, json={"title": "x"}))
    with pytest.raises(ResponseValidationError, match="employees"):
        [item async for item in make_hris().iter_employees()]


@respx.mock
async def test_api_key_never_in_logs_or_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    """A 401 whose body echoes the key yields an error and log lines without the key or its Basic form."""
    basic = base64.b64encode(f"{API_KEY}:x".encode()).decode()
    respx.get(f"{BASE}employees/1/").mock(
        return_value=httpx.Response(401, text=f"invalid key {API_KEY} (auth {basic})")
    )
    source = make_hris()
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationError) as info:
        await source.get_employee("1")
    texts = [str(info.value), repr(info.value), repr(source), caplog.text]
    assert "***" in str(info.value)
    for text in texts:
        assert API_KEY not in text
        assert basic.rstrip("=") not in text


def test_factory_builds_csv_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """kind=csv gives a CSVExportHRIS on the configured path with the column map."""
    source = build_hris(
        HRISSettings(kind="csv", path=tmp_path / "x.csv", column_map={"employee_id": "Emp #"})
    )
    assert isinstance(source, CSVExportHRIS)
    assert source.columns["employee_id"] == "Emp #"


def test_factory_requires_bamboohr_subdomain_and_key() -> None:
    """kind=bamboohr without a company domain or key is a configuration error."""
    with pytest.raises(ValueError, match="subdomain"):
        build_hris(HRISSettings(kind="bamboohr", api_key=SecretStr(API_KEY)))
    with pytest.raises(ValueError, match="api_key"):
        build_hris(HRISSettings(kind="bamboohr", subdomain="acme"))


async def test_factory_builds_bamboohr_client() -> None:
    """kind=bamboohr targets {base}/{company}/v1/ with Basic key:x, and the key stays out of the repr."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=REPORT["employees"][0])

    source = build_hris(
        HRISSettings(kind="bamboohr", subdomain="acme", api_key=SecretStr(API_KEY)),
        transport=httpx.MockTransport(handler),
    )
    assert isinstance(source, BambooHRHRIS)
    assert API_KEY not in repr(source)
    await source.get_employee("123")
    assert str(seen[0].url).startswith(f"{BASE}employees/123/")
    assert seen[0].headers["Authorization"] == expected_auth()
