"""The IdentityProvider contract against a real scim2-server, plus SCIM-specific behaviour.

One scim2-server process serves the module; every test gets a fresh, empty tenant (``--dynamic-tenants``).
Error-path tests that a real server cannot stage (a 200 carrying an Error body, a 429 storm, a lost race)
use respx.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    RetryableAPIError,
)
from connectors.idp.scim import SCIMIdentityProvider
from models.domain import AccountAttributes, Group
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.contract.idp_suite import HOSTILE_USER_NAME, IdentityProviderContract
from tests.support.scim_server import SCIMServer, running_scim_server

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
NO_PATCH_CONFIG = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": False},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": 1000},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": True},
    "authenticationSchemes": [],
}


async def no_wait(seconds: float) -> None:
    """Zero-wait sleep for retries."""


class StrictMembers(httpx.AsyncHTTPTransport):
    """scim2-server as a provider that checks member references: it accepts any ``members`` value, while
    RFC 7643 §4.2 makes ``value`` the id of a User or Group and providers such as Entra ID's refuse an
    unknown one (400 ``invalidValue``, RFC 7644 §3.12). Every member value a PATCH, PUT or Bulk operation adds
    to a group is looked up on the real server first; a Bulk request is judged per operation."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/Bulk"):
            return await self._bulk(request)
        if request.method in ("PATCH", "PUT") and "/Groups/" in path:
            body = json.loads(request.content)
            if await self._unknown(request, _added_members(request.method, body)):
                return httpx.Response(400, json=_invalid_value(), request=request)
        return await super().handle_async_request(request)

    async def _unknown(self, request: httpx.Request, values: list[str]) -> bool:
        root = str(request.url).split("/Groups", 1)[0].split("/Bulk", 1)[0]
        for value in values:
            probe = httpx.Request(
                "GET", f"{root}/Users/{value}", headers={"Authorization": request.headers["Authorization"]}
            )
            answer = await super().handle_async_request(probe)
            await answer.aread()
            if answer.status_code == 404:
                return True
        return False

    async def _bulk(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        refused: dict[int, dict[str, Any]] = {}
        kept = []
        for n, op in enumerate(body.get("Operations") or []):
            if "/Groups/" in op.get("path", "") and await self._unknown(
                request, _added_members(op["method"], op.get("data") or {})
            ):
                refused[n] = {
                    "method": op["method"],
                    "bulkId": op.get("bulkId"),
                    "status": "400",
                    "response": _invalid_value(),
                }
            else:
                kept.append(op)
        forwarded = httpx.Request(
            "POST",
            request.url,
            headers={k: v for k, v in request.headers.items() if k.lower() != "content-length"},
            content=json.dumps({**body, "Operations": kept}).encode(),
        )
        answer = await super().handle_async_request(forwarded)
        data = json.loads(await answer.aread())
        done = iter(data.get("Operations") or [])
        operations = [
            refused[n] if n in refused else next(done) for n in range(len(body.get("Operations") or []))
        ]
        return httpx.Response(answer.status_code, json={**data, "Operations": operations}, request=request)


def _added_members(method: str, body: dict[str, Any]) -> list[str]:
    if method == "PUT":
        return [str(m.get("value")) for m in body.get("members") or []]
    return [
        str(member.get("value"))
        for op in body.get("Operations") or []
        if str(op.get("op", "")).lower() == "add" and op.get("path") == "members"
        for member in op.get("value") or []
    ]


def _invalid_value() -> dict[str, Any]:
    return {
        "schemas": [ERROR_SCHEMA],
        "status": "400",
        "scimType": "invalidValue",
        "detail": "no such member",
    }


def make_idp(
    base_url: str,
    token: str,
    *,
    sleeps: list[float] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **tuning: Any,
) -> SCIMIdentityProvider:
    """A SCIM connector from settings, with retries at zero wait (recording what it was asked to wait)."""

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    tuning.setdefault("requests_per_second", 500.0)  # the local peer needs no client-side throttle
    settings = IdPSettings(kind="scim", base_url=base_url, token=SecretStr(token), **tuning)
    return build_identity_provider(settings, sleep=sleep, transport=transport)


@pytest.mark.slow
class TestSCIM(IdentityProviderContract):
    """The shared IdentityProvider contract on scim2-server (each test on a fresh tenant)."""

    @pytest.fixture
    async def idp(self, scim_server: SCIMServer) -> AsyncIterator[SCIMIdentityProvider]:
        provider = make_idp(scim_server.tenant_url(), scim_server.token, transport=StrictMembers())
        yield provider
        await provider.aclose()

    async def make_group(self, idp: SCIMIdentityProvider, name: str) -> Group:
        """Raw POST /Groups through the connector's own authenticated client."""
        response = await idp.api.client.post(
            "Groups", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name}
        )
        assert response.status_code == 201, response.text
        return Group(id=response.json()["id"], name=name)


@pytest.mark.slow
class TestSCIMWithoutPatch(IdentityProviderContract):
    """The same contract on a provider announcing no PATCH but ETags: updates go read-modify-PUT + If-Match."""

    @pytest.fixture(scope="class")
    def no_patch_server(self) -> Iterator[SCIMServer]:
        with running_scim_server(service_provider_config=NO_PATCH_CONFIG) as server:
            yield server

    @pytest.fixture
    async def idp(self, no_patch_server: SCIMServer) -> AsyncIterator[SCIMIdentityProvider]:
        provider = make_idp(no_patch_server.tenant_url(), no_patch_server.token, transport=StrictMembers())
        yield provider
        assert provider.api.calls.get("PATCH", 0) == 0  # never tried what the server said it lacks
        await provider.aclose()

    make_group = TestSCIM.make_group


# ------------------------------------------------------------------------------------------ real-server specifics


@pytest.fixture
async def scim(scim_server: SCIMServer) -> AsyncIterator[SCIMIdentityProvider]:
    provider = make_idp(scim_server.tenant_url(), scim_server.token)
    yield provider
    await provider.aclose()


async def raw_user(idp: SCIMIdentityProvider, user_name: str, external_id: str | None) -> str:
    """Create a user behind the connector's back (an admin's manual account); returns its id."""
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": user_name}
    if external_id is not None:
        body["externalId"] = external_id
    response = await idp.api.client.post("Users", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "holder_external_id", ["E-someone-else", None], ids=["other-employee", "no-externalId"]
)
async def test_409_never_adopts_someone_elses_account(
    scim: SCIMIdentityProvider, holder_external_id: str | None
) -> None:
    """A userName held by another employee's (or an unlinked) account is refused with a clear reason."""
    holder_id = await raw_user(scim, "jdoe@example.com", holder_external_id)
    reason = "of another employee" if holder_external_id else "without an externalId"
    with pytest.raises(ConflictError, match=reason):
        await scim.create_user(AccountAttributes(user_name="jdoe@example.com", employee_id="E-100"))
    holder = await scim.find_user_by_username("jdoe@example.com")
    assert holder is not None and holder.id == holder_id and holder.employee_id == (holder_external_id or "")
    assert await scim.find_user_by_employee_id("E-100") is None


@pytest.mark.slow
async def test_hostile_filter_values_cannot_widen_a_search(scim: SCIMIdentityProvider) -> None:
    """Values that try to close the quote and add clauses match nothing instead of everyone."""
    victim = await scim.create_user(AccountAttributes(user_name="victim@example.com", employee_id="E-1"))
    for probe in ['x" or userName pr or userName eq "y', '\\" or externalId pr or "', 'E-1" or "1" eq "1']:
        assert await scim.find_user_by_username(probe) is None
        assert await scim.find_user_by_employee_id(probe) is None
    hostile = await scim.create_user(AccountAttributes(user_name=HOSTILE_USER_NAME, employee_id='E-"2\\'))
    found = await scim.find_user_by_employee_id('E-"2\\')
    assert found is not None and found.id == hostile.id and found.id != victim.id


@pytest.mark.slow
async def test_create_maps_every_attribute_and_resolves_the_manager(scim: SCIMIdentityProvider) -> None:
    """The SCIM resource carries externalId, enterprise employeeNumber/department and manager.value = account id."""
    boss = await scim.create_user(AccountAttributes(user_name="boss@example.com", employee_id="E-boss"))
    wanted = AccountAttributes(
        user_name="ada@example.com",
        employee_id="E-ada",
        given_name="Ada",
        family_name="Lovelace",
        display_name="Ada Lovelace",
        email="ada@example.com",
        title="Engineer",
        department="R&D",
        manager_id="E-boss",
    )
    account = await scim.create_user(wanted)
    assert wanted.differences(account) == {}
    raw = (await scim.api.client.get(f"Users/{account.id}")).json()
    enterprise = raw["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
    assert raw["externalId"] == "E-ada" and enterprise["employeeNumber"] == "E-ada"
    assert enterprise["department"] == "R&D" and enterprise["manager"]["value"] == boss.id
    assert raw["emails"] == [{"value": "ada@example.com", "type": "work", "primary": True}]


@pytest.mark.slow
async def test_unknown_manager_is_skipped_then_set_later(scim: SCIMIdentityProvider) -> None:
    """A joiner whose manager has no account yet is created without a manager; a later update sets it."""
    report = await scim.create_user(
        AccountAttributes(user_name="r@example.com", employee_id="E-r", manager_id="E-m")
    )
    assert report.manager_id is None
    manager = await scim.create_user(AccountAttributes(user_name="m@example.com", employee_id="E-m"))
    updated = await scim.update_user(report, {"manager_id": "E-m"})
    assert updated.manager_id == "E-m"
    raw = (await scim.api.client.get(f"Users/{report.id}")).json()
    assert raw["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["manager"]["value"] == manager.id


@pytest.mark.slow
async def test_update_to_none_removes_the_attribute(scim: SCIMIdentityProvider) -> None:
    """Clearing title and email removes them on the server (PATCH remove)."""
    account = await scim.create_user(
        AccountAttributes(user_name="t@example.com", employee_id="E-t", title="CTO", email="t@example.com")
    )
    updated = await scim.update_user(account, {"title": None, "email": None})
    assert updated.title is None and updated.email is None
    raw = (await scim.api.client.get(f"Users/{account.id}")).json()
    assert "title" not in raw and "emails" not in raw


@pytest.mark.slow
async def test_wrong_token_is_an_authentication_error_without_the_token(
    scim_server: SCIMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A rejected token gives AuthenticationError after one request; the token is in no log, str or repr."""
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-" + "s3cr3t" * 4
    idp = make_idp(scim_server.tenant_url(), wrong)
    try:
        with pytest.raises(AuthenticationError) as info:
            await idp.find_user_by_employee_id("E-1")
        assert idp.api.calls == {"GET": 1}
    finally:
        await idp.aclose()
    for text in (str(info.value), repr(info.value), repr(idp), repr(idp.api.client.auth), caplog.text):
        assert wrong not in text


@pytest.mark.slow
async def test_token_never_logged_during_a_full_joiner_mover_leaver(
    scim_server: SCIMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A joiner/mover/leaver round at DEBUG leaves no trace of the bearer token in any record or the server log."""
    caplog.set_level(logging.DEBUG)
    idp = make_idp(scim_server.tenant_url(), scim_server.token)
    try:
        account = await idp.create_user(AccountAttributes(user_name="j@example.com", employee_id="E-j"))
        await idp.update_user(account, {"title": "Lead"})
        await idp.deactivate_user(account.id)
        with pytest.raises(NotFoundError) as info:
            await idp.deactivate_user("no-such-id")
    finally:
        await idp.aclose()
    assert caplog.records, "expected DEBUG records from the HTTP layer"
    for record in caplog.records:
        assert scim_server.token not in record.getMessage()
    assert scim_server.token not in caplog.text
    assert scim_server.token not in str(info.value) and scim_server.token not in repr(info.value)
    assert scim_server.token not in scim_server.log_text()


# ------------------------------------------------------------------------------------------ respx: what a real server won't do

BASE = "https://scim.test/v2/"
TOKEN = "respx-token-9f8e7d6c5b4a"


def list_response(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": list(resources),
    }


def user_json(user_id: str, user_name: str, external_id: str | None) -> dict[str, Any]:
    data: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": user_id, "userName": user_name, "active": True}
    if external_id:
        data["externalId"] = external_id
    return data


@pytest.fixture
def mocked() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("ServiceProviderConfig").respond(404)
        yield router


def respx_idp(sleeps: list[float] | None = None, **tuning: Any) -> SCIMIdentityProvider:
    return make_idp(BASE, TOKEN, sleeps=sleeps, **tuning)


async def test_409_adopts_our_own_account_after_a_lost_race(mocked: respx.MockRouter) -> None:
    """When the externalId lookup misses but the 409 holder carries our employee id, that account is adopted."""
    mine = user_json("u-1", "ada@example.com", "E-7")

    def users(request: httpx.Request) -> httpx.Response:
        flt = request.url.params.get("filter", "")
        if flt.startswith("externalId"):
            return httpx.Response(200, json=list_response())  # the race: not visible yet
        return httpx.Response(200, json=list_response(mine))

    mocked.get("Users").mock(side_effect=users)
    post = mocked.post("Users").respond(
        409, json={"schemas": [ERROR_SCHEMA], "status": "409", "scimType": "uniqueness", "detail": "taken"}
    )
    idp = respx_idp()
    account = await idp.create_user(AccountAttributes(user_name="ada@example.com", employee_id="E-7"))
    assert account.id == "u-1" and account.employee_id == "E-7"
    assert post.call_count == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("404", NotFoundError),
        ("409", ConflictError),
        ("401", AuthenticationError),
        ("503", RetryableAPIError),
    ],
    ids=["404", "409", "401", "503"],
)
async def test_200_with_an_error_body_is_a_typed_error(
    mocked: respx.MockRouter, status: str, error: type
) -> None:
    """A 2xx whose body is a SCIM Error message raises the error its status names."""
    mocked.get("Users/u-1").respond(200, json={"schemas": [ERROR_SCHEMA], "status": status, "detail": "nope"})
    with pytest.raises(error, match="SCIM error in a 200 answer"):
        await respx_idp().last_sign_in("u-1")


async def test_429_storm_is_waited_out(mocked: respx.MockRouter) -> None:
    """Four 429s with Retry-After: 1 are each waited out (1 s apiece) and the fifth answer is used."""
    route = mocked.get("Users").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "1"})] * 4
        + [httpx.Response(200, json=list_response(user_json("u-1", "a@example.com", "E-1")))]
    )
    sleeps: list[float] = []
    account = await respx_idp(sleeps).find_user_by_employee_id("E-1")
    assert account is not None and account.id == "u-1"
    assert route.call_count == 5 and sleeps == [1.0] * 4


async def test_429_storm_beyond_max_attempts_fails_retryable(mocked: respx.MockRouter) -> None:
    """An endless 429 storm gives RetryableAPIError carrying retry_after after max_attempts requests."""
    route = mocked.get("Users").respond(429, headers={"Retry-After": "7"})
    with pytest.raises(RetryableAPIError) as info:
        await respx_idp(max_attempts=3).find_user_by_employee_id("E-1")
    assert route.call_count == 3 and info.value.retry_after == 7.0 and info.value.status_code == 429


async def test_garbage_resource_is_a_validation_error(mocked: respx.MockRouter) -> None:
    """A user payload that is not a SCIM resource raises ResponseValidationError, not a pydantic error."""
    mocked.get("Users/u-1").respond(200, json={"schemas": [USER_SCHEMA], "id": "u-1", "active": "maybe"})
    with pytest.raises(ConnectorError, match="not a valid SCIM resource"):
        await respx_idp().last_sign_in("u-1")


async def test_vendor_extension_last_sign_in_is_read(mocked: respx.MockRouter) -> None:
    """last_sign_in comes from a vendor extension when the provider carries one; unknown keys are tolerated."""
    data = user_json("u-1", "a@example.com", "E-1") | {
        "schemas": [USER_SCHEMA, "urn:example:params:scim:schemas:extension:activity:2.0:User"],
        "urn:example:params:scim:schemas:extension:activity:2.0:User": {"lastLogin": "2024-05-01T08:30:00Z"},
        "x-vendor-flag": True,
    }
    mocked.get("Users/u-1").respond(200, json=data)
    stamp = await respx_idp().last_sign_in("u-1")
    assert stamp is not None and stamp.isoformat() == "2024-05-01T08:30:00+00:00"


async def test_paging_stops_on_a_repeated_page(mocked: respx.MockRouter) -> None:
    """A server that ignores startIndex and keeps answering does not loop forever: totalResults stops it."""
    page = list_response(user_json("u-1", "a@example.com", "E-1"))
    page["totalResults"] = 10**9  # lies about the total and always returns the same page
    route = mocked.get("Users").respond(200, json=page)
    seen = 0
    with pytest.raises(ConnectorError, match="duplicate|loop"):
        async for users in respx_idp().iter_users(page_size=1):
            seen += len(users)
            if seen > 5:
                break
    assert route.call_count <= 3


@pytest.mark.slow
async def test_one_patch_adds_and_removes_members_of_a_group(scim_server: SCIMServer) -> None:
    """change_group_members writes a group's additions and removals in one PATCH; a refused one (an unknown
    member, on a provider that checks references) falls back to judging each direction and member."""
    idp = make_idp(scim_server.tenant_url(), scim_server.token, transport=StrictMembers())
    try:
        group = await TestSCIM().make_group(idp, "bulk")
        a, b, c = [
            await idp.create_user(AccountAttributes(user_name=f"{n}@example.com", employee_id=f"E-{n}"))
            for n in "abc"
        ]
        assert await idp.add_members(group.id, [a.id, b.id]) == {}
        before = idp.api.calls.get("PATCH", 0)
        assert await idp.change_group_members(group.id, add=[c.id], remove=[a.id]) == {}
        assert idp.api.calls.get("PATCH", 0) - before == 1
        assert await idp.list_members(group.id) == {b.id, c.id}
        failed = await idp.change_group_members(group.id, add=[a.id, "no-such-user"], remove=[b.id])
        assert set(failed) == {"no-such-user"}
        assert await idp.list_members(group.id) == {a.id, c.id}
    finally:
        await idp.aclose()
