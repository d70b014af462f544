"""HiBob specifics beyond the HRIS contract: the request shapes, the documented rate, the lifecycle and
employment histories, and the configuration errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.errors import ResponseValidationError
from connectors.hris.hibob import FIELDS, REQUESTS_PER_MINUTE, HiBobHRIS
from models.domain import EmployeeStatus
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import Sleeps
from tests.support.hibob_fake import HiBobFake
from tests.support.hris_fake import Person, days


def connect(world: HiBobFake, **settings: Any) -> HiBobHRIS:
    values: dict[str, Any] = {
        "kind": "hibob",
        "service_user_id": world.service_user_id,
        "token": SecretStr(world.token),
        "requests_per_second": 1000,
        **settings,
    }
    hris = build_hris(HRISSettings(**values), transport=world.transport, sleep=Sleeps())
    assert isinstance(hris, HiBobHRIS)
    return hris


async def test_roster_is_one_search_with_the_fields_inactive_and_display_values() -> None:
    """One POST /v1/people/search: our field paths, showInactive true, humanReadable APPEND, no filter."""
    world = HiBobFake()
    world.hire(Person("1001"))
    world.hire(Person("1002", termination_date=days(-30)))
    async with connect(world) as hris:
        items = [item async for item in hris.iter_employees()]
    [request] = world.requests
    assert (request.method, request.url.path) == ("POST", "/v1/people/search")
    assert json.loads(request.content) == {
        "fields": list(FIELDS),
        "showInactive": True,
        "humanReadable": "APPEND",
    }
    assert [i.status for i in items] == [EmployeeStatus.ACTIVE, EmployeeStatus.TERMINATED]  # type: ignore[union-attr]
    assert items[0].department == "Engineering"  # the display name, not the list-item id  # type: ignore[union-attr]


async def test_default_rate_is_fifty_a_minute_unless_set() -> None:
    """Without TENURE_HRIS__REQUESTS_PER_SECOND the client starts at most 50 requests a minute."""
    world = HiBobFake()
    default = build_hris(
        HRISSettings(kind="hibob", service_user_id="S1", token=SecretStr("t0ken-1234")),
        transport=world.transport,
    )
    explicit = build_hris(
        HRISSettings(
            kind="hibob", service_user_id="S1", token=SecretStr("t0ken-1234"), requests_per_second=2
        ),
        transport=world.transport,
    )
    assert default.api.limiter.interval == pytest.approx(60 / REQUESTS_PER_MINUTE)  # type: ignore[attr-defined]
    assert explicit.api.limiter.interval == pytest.approx(0.5)  # type: ignore[attr-defined]
    await default.aclose()  # type: ignore[attr-defined]
    await explicit.aclose()  # type: ignore[attr-defined]


async def test_the_fake_answers_the_fifty_first_request_in_a_minute_with_429() -> None:
    """The documented ~50/min: request 51 within the minute is 429 with Retry-After."""
    world = HiBobFake()
    auth = httpx.BasicAuth(world.service_user_id, world.token)
    async with httpx.AsyncClient(transport=world.transport, base_url=world.base_url, auth=auth) as client:
        answers = [await client.get("people/1/employment") for _ in range(51)]
    assert {a.status_code for a in answers[:50]} == {404}
    assert answers[50].status_code == 429 and int(answers[50].headers["Retry-After"]) >= 1


async def test_single_read_filters_by_id_and_reads_both_histories() -> None:
    """get_employee: a search filtered on root.id, then the lifecycle and the employment history."""
    world = HiBobFake()
    world.hire(Person("1001"))
    async with connect(world) as hris:
        await hris.get_employee("1001")
    search, lifecycle, employment = world.requests
    assert json.loads(search.content)["filters"] == [
        {"fieldPath": "root.id", "operator": "equals", "values": ["1001"]}
    ]
    assert (lifecycle.url.path, employment.url.path) == (
        "/v1/people/1001/lifecycle",
        "/v1/people/1001/employment",
    )


async def test_scheduled_termination_from_the_lifecycle_and_employment_type_effective_today() -> None:
    """A termination only in the lifecycle history (Bob has not filled the field) is the termination date;
    the employment entry effective today wins over a future-dated one."""
    world = HiBobFake()
    world.hire(Person("1001", employment_type="Full-Time"))
    lifecycle = [
        {"effectiveDate": days(-400), "status": "employed"},
        {"effectiveDate": days(20), "status": "terminated"},
    ]
    employment = [
        {"effectiveDate": days(-400), "type": "Full-Time"},
        {"effectiveDate": days(10), "type": "Contractor"},
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/lifecycle"):
            return httpx.Response(200, json={"values": lifecycle})
        if request.url.path.endswith("/employment"):
            return httpx.Response(200, json={"values": employment})
        return world.handle(request)

    hris = build_hris(
        HRISSettings(
            kind="hibob",
            service_user_id=world.service_user_id,
            token=SecretStr(world.token),
            requests_per_second=1000,
        ),
        transport=httpx.MockTransport(handler),
    )
    async with hris:
        employee = await hris.get_employee("1001")
    assert employee.termination_date is not None and employee.termination_date.isoformat() == days(20)
    assert employee.status is EmployeeStatus.ACTIVE and employee.employment_type == "Full-Time"


async def test_answer_without_employees_list_is_a_response_error() -> None:
    """An answer of the wrong shape is a ResponseValidationError, not a crash."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"people": []}))
    hris = build_hris(
        HRISSettings(
            kind="hibob", service_user_id="S1", token=SecretStr("t0ken-1234"), requests_per_second=1000
        ),
        transport=transport,
    )
    async with hris:
        with pytest.raises(ResponseValidationError, match="no 'employees' list"):
            [item async for item in hris.iter_employees()]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"token": SecretStr("t0ken-1234")}, "TENURE_HRIS__SERVICE_USER_ID"),
        ({"service_user_id": "S1"}, "TENURE_HRIS__TOKEN"),
    ],
    ids=["no-user", "no-token"],
)
def test_missing_credentials_are_a_configuration_error_naming_the_setting(
    settings: dict[str, Any], named: str
) -> None:
    """kind=hibob without the service user's id or token: ValueError naming the setting (the CLI exits 2)."""
    with pytest.raises(ValueError, match=named):
        build_hris(HRISSettings(kind="hibob", **settings))
