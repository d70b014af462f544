"""Workday specifics beyond the HRIS contract: the SOAP envelope (WS-Security), the two transaction-log
windows, rescinds and corrections, Get_Workers paging, SOAP faults and hostile XML."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.errors import (
    AuthenticationError,
    NotFoundError,
    PermanentAPIError,
    ResponseValidationError,
    RetryableAPIError,
)
from connectors.hris.workday import PAGE_COUNT, WorkdayHRIS, get_workers_request, workday_fault
from models.domain import EmployeeStatus
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import Sleeps
from tests.support.hris_fake import Person, Transaction, days
from tests.support.workday_fake import NS, WorkdayFake


def connect(
    world: WorkdayFake, transport: httpx.AsyncBaseTransport | None = None, **settings: Any
) -> WorkdayHRIS:
    values: dict[str, Any] = {
        "kind": "workday",
        "base_url": world.base_url,
        "tenant": world.tenant,
        "username": world.username,
        "password": SecretStr(world.password),
        "report": world.report,
        "requests_per_second": 1000,
        **settings,
    }
    hris = build_hris(HRISSettings(**values), transport=transport or world.transport, sleep=Sleeps())
    assert isinstance(hris, WorkdayHRIS)
    return hris


def soap_requests(world: WorkdayFake) -> list[ET.Element]:
    return [ET.fromstring(r.content) for r in world.requests if r.method == "POST"]


async def test_single_read_sends_ws_security_and_asks_as_of_now() -> None:
    """Get_Workers carries a PasswordText UsernameToken for user@tenant (the password XML-escaped) and asks
    for the worker by Employee_ID as of now."""
    world = WorkdayFake()
    world.hire(Person("21001"))
    async with connect(world) as hris:
        employee = await hris.get_employee("21001")
    assert employee.employee_id == "21001"
    [envelope] = soap_requests(world)
    token = envelope.find("env:Header/wsse:Security/wsse:UsernameToken", NS)
    assert token is not None
    assert token.findtext("wsse:Username", namespaces=NS) == "ISU_Tenure@acme_impl"
    assert (
        token.findtext("wsse:Password", namespaces=NS) == world.password
    )  # escaped on the wire, intact here
    ask = envelope.find("env:Body/wd:Get_Workers_Request", NS)
    assert ask is not None
    reference = ask.find("wd:Request_References/wd:Worker_Reference/wd:ID", NS)
    assert reference is not None and reference.text == "21001"
    assert reference.get(f"{{{NS['wd']}}}type") == "Employee_ID"
    assert ask.findtext("wd:Response_Filter/wd:As_Of_Effective_Date", namespaces=NS)


async def test_changes_are_two_windows_entered_and_effective() -> None:
    """changed_since sends one query on the entry moments and one on the effective moments: a change entered
    long ago that takes effect now is found by the second, a change entered now by the first."""
    world = WorkdayFake()
    entered_now = world.hire(Person("21001"))
    future = world.hire(Person("21002"))
    long_ago = datetime.now(UTC) - timedelta(days=30)
    async with connect(world) as hris:
        cursor = (await hris.changed_since(None)).next_cursor
        world.update(entered_now.employee_id, title="Principal")
        future.transactions.append(Transaction("Change Job", long_ago, datetime.now(UTC)))
        changes = await hris.changed_since(cursor)
    assert set(changes.employee_ids) == {"21001", "21002"}
    windows = [
        e.find(
            "env:Body/wd:Get_Workers_Request/wd:Request_Criteria/wd:Transaction_Log_Criteria_Data/wd:Transaction_Date_Range_Data",
            NS,
        )
        for e in soap_requests(world)
    ]
    assert [sorted(child.tag.split("}")[1] for child in w) for w in windows if w is not None] == [
        ["Updated_From", "Updated_Through"],
        ["Effective_From", "Effective_Through"],
    ]
    for envelope in soap_requests(world):
        assert (
            envelope.find(".//wd:Transaction_Type_References", NS) is None
        )  # no type filter: rescinds count
        assert envelope.findtext(".//wd:Include_Transaction_Log_Data", namespaces=NS) == "1"


async def test_a_rescinded_termination_and_a_corrected_hire_are_read_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rescinds and corrections come back as changes (their log entries are flagged and counted), and the
    worker is re-read as it stands now: active again, the corrected hire date."""
    world = WorkdayFake()
    world.hire(Person("21001"))
    world.hire(Person("21002", hire_date=days(10)))
    world.terminate("21001", days(-1))
    async with connect(world) as hris:
        cursor = (await hris.changed_since(None)).next_cursor
        world.rescind_termination("21001")
        world.correct_hire_date("21002", days(12))
        with caplog.at_level(logging.INFO, logger="tenure.hris.workday"):
            changes = await hris.changed_since(cursor)
        rescinded = await hris.get_employee("21001")
        corrected = await hris.get_employee("21002")
    assert set(changes.employee_ids) == {"21001", "21002"}
    assert "rescinded" in caplog.text and "corrected" in caplog.text
    assert rescinded.status is EmployeeStatus.ACTIVE and rescinded.termination_date is None
    assert corrected.status is EmployeeStatus.PENDING and corrected.hire_date.isoformat() == days(12)  # type: ignore[union-attr]


async def test_changed_workers_are_read_page_by_page() -> None:
    """More changed workers than one page (Count 100): every page of both windows, each worker once."""
    world = WorkdayFake()
    async with connect(world) as hris:
        cursor = (await hris.changed_since(None)).next_cursor
        for n in range(PAGE_COUNT * 2 + 5):
            world.hire(Person(str(30000 + n)))
        changes = await hris.changed_since(cursor)
    assert len(changes.employee_ids) == len(set(changes.employee_ids)) == PAGE_COUNT * 2 + 5
    pages = [e.findtext(".//wd:Response_Filter/wd:Page", namespaces=NS) for e in soap_requests(world)]
    assert pages == ["1", "2", "3", "1"]  # entered now: three pages; effective 400 days ago: none


def _fault(code: str, text: str) -> httpx.Response:
    body = (
        '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"><SOAP-ENV:Body>'
        f"<SOAP-ENV:Fault><faultcode>{code}</faultcode><faultstring>{text}</faultstring></SOAP-ENV:Fault>"
        "</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )
    return httpx.Response(
        500,
        content=body.encode(),
        request=httpx.Request("POST", "https://wd.test/ccx/service/t/Human_Resources/v41.0"),
    )


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        ("SOAP-ENV:Client.authenticationError", "invalid username or password", AuthenticationError),
        ("SOAP-ENV:Client.validationError", "Invalid ID value. '9' is not a valid ID value", NotFoundError),
        ("SOAP-ENV:Client.validationError", "Count must be between 1 and 999", PermanentAPIError),
        ("SOAP-ENV:Server.processingError", "try again later", RetryableAPIError),
    ],
    ids=["auth", "unknown-id", "validation", "server"],
)
def test_soap_faults_are_classified(code: str, text: str, kind: type[Exception]) -> None:
    """A fault is HTTP 500 whatever its cause; the faultcode says what it is."""
    problem = workday_fault(_fault(code, text))
    assert type(problem) is kind


def test_non_fault_answers_are_left_to_the_status_code() -> None:
    """A 429 or a plain 503 is not a SOAP fault: raise_for_status decides."""
    request = httpx.Request("GET", "https://wd.test/")
    assert workday_fault(httpx.Response(429, text="slow down", request=request)) is None
    assert workday_fault(httpx.Response(200, text="<Fault>", request=request)) is None


async def test_xml_with_a_dtd_is_refused() -> None:
    """A response carrying a DTD (entity expansion) is not parsed: ResponseValidationError."""
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        '<env:Envelope xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"><env:Body>&b;</env:Body></env:Envelope>'
    )
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=bomb.encode()))
    async with connect(WorkdayFake(), transport=transport) as hris:
        with pytest.raises(ResponseValidationError, match="refuse to parse"):
            await hris.get_employee("1")


def test_a_request_needs_a_window_or_a_worker() -> None:
    """get_workers_request refuses to ask for everything by accident."""
    with pytest.raises(ValueError, match="window"):
        get_workers_request(as_of=datetime.now(UTC))


def test_missing_settings_are_named() -> None:
    """kind=workday without host, tenant, user or report names every missing setting."""
    with pytest.raises(ValueError, match="TENURE_HRIS__BASE_URL, TENURE_HRIS__TENANT, TENURE_HRIS__USERNAME"):
        build_hris(HRISSettings(kind="workday", password=SecretStr("pw-123456"), report="o/r"))
    with pytest.raises(ValueError, match="TENURE_HRIS__PASSWORD"):
        build_hris(
            HRISSettings(
                kind="workday",
                base_url="https://wd.test/ccx/service/",
                tenant="t",
                username="u",
                report="o/r",
            )
        )
