"""Personio specifics beyond the HRIS contract: the token (exchanged once, cached, renewed when it expires),
the page limits, the v1 fallback, the next-link host check, and the configuration errors."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from connectors.errors import AuthenticationError, ResponseValidationError
from connectors.hris.personio import PersonioHRIS
from tenure.compose import build_hris
from tenure.settings import HRISSettings
from tests.contract.hris_suite import Sleeps
from tests.support.hris_fake import Person
from tests.support.personio_fake import PersonioFake


def connect(
    world: PersonioFake, transport: httpx.AsyncBaseTransport | None = None, **settings: Any
) -> PersonioHRIS:
    values: dict[str, Any] = {
        "kind": "personio",
        "client_id": world.client_id,
        "client_secret": SecretStr(world.client_secret),
        "requests_per_second": 1000,
        **settings,
    }
    hris = build_hris(HRISSettings(**values), transport=transport or world.transport, sleep=Sleeps())
    assert isinstance(hris, PersonioHRIS)
    return hris


def token_requests(world: PersonioFake) -> list[httpx.Request]:
    return [r for r in world.requests if r.url.path == "/v2/auth/token"]


async def test_token_is_exchanged_once_as_client_credentials_and_reused() -> None:
    """One form-encoded client-credentials exchange serves every following read."""
    world = PersonioFake()
    for n in range(3):
        world.hire(Person(str(1001 + n)))
    async with connect(world) as hris:
        [item async for item in hris.iter_employees()]
        await hris.get_employee("1002")
        await hris.changed_since(None)
    [exchange] = token_requests(world)
    assert exchange.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(exchange.content.decode()) == {
        "grant_type": ["client_credentials"],
        "client_id": [world.client_id],
        "client_secret": [world.client_secret],
    }
    data = [r for r in world.requests if r.url.path != "/v2/auth/token"]
    assert {r.headers["Authorization"] for r in data} == {f"Bearer {next(iter(world.tokens))}"}


async def test_an_expired_token_is_renewed_once() -> None:
    """A token Personio no longer accepts (401) is exchanged again and the read goes on."""
    world = PersonioFake()
    world.hire(Person("1001"))
    async with connect(world) as hris:
        await hris.get_employee("1001")
        world.expire_tokens()
        employee = await hris.get_employee("1001")
    assert employee.employee_id == "1001"
    assert len(token_requests(world)) == 2


async def test_a_token_near_its_expires_in_is_renewed_before_use() -> None:
    """expires_in is honoured: the token is reused until a minute before its end, then exchanged anew before
    a request would be refused."""
    world = PersonioFake()
    world.hire(Person("1001"))
    now = [0.0]
    base = connect(world)
    hris = PersonioHRIS(
        base.api, client_id=world.client_id, client_secret=world.client_secret, clock=lambda: now[0]
    )
    async with hris:
        await hris.get_employee("1001")
        now[0] = world.expires_in - 61
        await hris.get_employee("1001")
        assert len(token_requests(world)) == 1
        now[0] = world.expires_in - 59
        world.expire_tokens()  # Personio would refuse the old one from now on
        await hris.get_employee("1001")
    assert len(token_requests(world)) == 2
    persons = [r for r in world.requests if r.url.path == "/v2/persons"]
    assert len(persons) == 4  # the v2 probe and one read per get_employee: none refused and sent again


async def test_refused_exchange_names_the_settings_and_hides_the_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """400 invalid_client from the token endpoint is an AuthenticationError naming the settings; the secret
    shows nowhere."""
    transport = httpx.MockTransport(lambda request: httpx.Response(400, json={"error": "invalid_client"}))
    world = PersonioFake()
    with caplog.at_level(logging.DEBUG):
        async with connect(world, transport=transport) as hris:
            with pytest.raises(AuthenticationError) as info:
                await hris.get_employee("1")
    assert "TENURE_HRIS__CLIENT_ID" in str(info.value) and "TENURE_HRIS__CLIENT_SECRET" in str(info.value)
    assert world.client_secret not in str(info.value) + repr(info.value) + caplog.text


async def test_pages_ask_for_the_documented_limits() -> None:
    """v2 asks for 50 per page (its maximum) and follows the next link; v1 asks for 100 per page."""
    world = PersonioFake()
    for n in range(60):
        world.hire(Person(str(3000 + n)))
    async with connect(world, api_version="v2") as hris:
        assert len([i async for i in hris.iter_employees()]) == 60
    pages = [r for r in world.requests if r.url.path == "/v2/persons"]
    assert [r.url.params["limit"] for r in pages] == ["50", "50"] and "cursor" in pages[1].url.params
    world.requests.clear()
    async with connect(world, api_version="v1") as hris:
        assert len([i async for i in hris.iter_employees()]) == 60
    [page] = [r for r in world.requests if r.url.path == "/v1/company/employees"]
    assert (page.url.params["limit"], page.url.params["offset"]) == ("100", "0")


async def test_auto_falls_back_to_v1_when_v2_is_unavailable(caplog: pytest.LogCaptureFixture) -> None:
    """/v2/persons answering 404: v1 from then on, said once in the log."""
    world = PersonioFake()
    world.v2_available = False
    world.hire(Person("1001", department="Sales", location="Munich"))
    with caplog.at_level(logging.WARNING, logger="tenure.hris.personio"):
        async with connect(world) as hris:
            [employee] = [i async for i in hris.iter_employees()]
            await hris.get_employee("1001")
    assert hris.api_version == "v1"
    assert (employee.department, employee.location) == ("Sales", "Munich")  # type: ignore[union-attr]
    assert caplog.text.count("using the v1 employees list") == 1


async def test_department_name_is_read_once_per_org_unit() -> None:
    """The employment names its department by org-unit id: one /v2/org-units read per unit."""
    world = PersonioFake()
    for n in range(4):
        world.hire(Person(str(1001 + n), department="Support"))
    async with connect(world) as hris:
        items = [i async for i in hris.iter_employees()]
    assert {i.department for i in items} == {"Support"}  # type: ignore[union-attr]
    assert len([r for r in world.requests if r.url.path.startswith("/v2/org-units/")]) == 1


async def test_a_next_link_to_another_host_is_refused() -> None:
    """The bearer token is sent only to Personio: a next link elsewhere is a ResponseValidationError."""
    world = PersonioFake()
    world.hire(Person("1001"))

    def handler(request: httpx.Request) -> httpx.Response:
        answer = world._dispatch(request)
        if request.url.path == "/v2/persons" and request.url.params.get("limit") != "1":
            body = answer.json()
            body["_meta"]["links"]["next"] = {"href": "https://evil.example/v2/persons?cursor=x"}
            return httpx.Response(200, json=body)
        return answer

    async with connect(world, transport=httpx.MockTransport(handler)) as hris:
        with pytest.raises(ResponseValidationError, match="another host"):
            [i async for i in hris.iter_employees()]


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"client_secret": SecretStr("s3cret-1234")}, "TENURE_HRIS__CLIENT_ID"),
        ({"client_id": "c1"}, "TENURE_HRIS__CLIENT_SECRET"),
    ],
    ids=["no-id", "no-secret"],
)
def test_missing_credentials_are_a_configuration_error_naming_the_setting(
    settings: dict[str, Any], named: str
) -> None:
    """kind=personio without the client id or secret: ValueError naming the setting (the CLI exits 2)."""
    with pytest.raises(ValueError, match=named):
        build_hris(HRISSettings(kind="personio", **settings))
