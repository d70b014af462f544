"""Okta connector specifics: SSWS auth, search quoting, Link paging, rate limits, lifecycle, duplicate logins."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import httpx
import pytest
import respx

from connectors.errors import AuthenticationError, ConflictError, ResponseValidationError
from connectors.idp.okta import account_from_okta, okta_search_eq, profile_from_attributes
from models.domain import AccountAttributes
from tests.contract.test_idp_okta import OKTA_BASE, OKTA_TOKEN, FakeOkta, make_okta


@pytest.fixture
def fake() -> Iterator[FakeOkta]:
    fake = FakeOkta()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="tenure-test.okta.com").mock(side_effect=fake.handle)
        yield fake


def joiner(n: int = 1, **overrides: object) -> AccountAttributes:
    values: dict[str, object] = {
        "user_name": f"u{n}@example.com",
        "employee_id": f"E-{n}",
        "given_name": "Ada",
        "family_name": "Lovelace",
        "email": f"u{n}@example.com",
    }
    return AccountAttributes(**(values | overrides))


def test_search_quotes_values_as_json_strings() -> None:
    """Hostile quotes and backslashes stay inside the search value."""
    expression = okta_search_eq("profile.login", 'o"brien\\x@example.com')
    assert expression == 'profile.login eq "o\\"brien\\\\x@example.com"'
    assert json.loads(expression.removeprefix("profile.login eq ")) == 'o"brien\\x@example.com'
    with pytest.raises(ValueError, match="not an Okta profile attribute"):
        okta_search_eq('profile.login" or "', "x")


@pytest.mark.parametrize(
    ("status", "active"),
    [
        ("ACTIVE", True),
        ("PROVISIONED", True),
        ("LOCKED_OUT", True),
        ("PASSWORD_EXPIRED", True),
        ("RECOVERY", True),
        ("STAGED", False),
        ("SUSPENDED", False),
        ("DEPROVISIONED", False),
    ],
    ids=lambda v: str(v),
)
def test_status_maps_to_active(status: str, active: bool) -> None:
    """Okta's user statuses map to our active flag (can the account sign in at all)."""
    user = {"id": "00u1", "status": status, "profile": {"login": "a@example.com", "employeeNumber": "E-1"}}
    assert account_from_okta(user).active is active


def test_profile_mapping_and_last_login() -> None:
    """Attributes map to Okta profile names; lastLogin becomes last_sign_in; missing values are left out."""
    profile = profile_from_attributes(joiner(manager_id="E-9", title=None))
    assert profile == {
        "login": "u1@example.com",
        "employeeNumber": "E-1",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "email": "u1@example.com",
        "managerId": "E-9",
    }
    account = account_from_okta(
        {"id": "00u1", "status": "ACTIVE", "lastLogin": "2024-03-01T10:00:00.000Z", "profile": profile}
    )
    assert (
        account.last_sign_in is not None and account.last_sign_in.isoformat() == "2024-03-01T10:00:00+00:00"
    )
    assert account.manager_id == "E-9" and joiner(manager_id="E-9").differences(account) == {}


def test_malformed_user_is_a_validation_error() -> None:
    """A user object without a profile is refused with ResponseValidationError."""
    with pytest.raises(ResponseValidationError, match="lacks id or profile"):
        account_from_okta({"id": "00u1", "status": "ACTIVE"})


async def test_sends_ssws_and_never_logs_the_token(fake: FakeOkta, caplog: pytest.LogCaptureFixture) -> None:
    """Every request carries ``Authorization: SSWS <token>``; the token is in no DEBUG record."""
    caplog.set_level(logging.DEBUG)
    okta = make_okta()
    await okta.create_user(joiner())
    assert fake.requests and all(r.headers["Authorization"] == f"SSWS {OKTA_TOKEN}" for r in fake.requests)
    assert caplog.records and OKTA_TOKEN not in caplog.text


async def test_wrong_token_is_not_retried_and_not_echoed(fake: FakeOkta) -> None:
    """A 401 raises AuthenticationError after one request; the token is not in str/repr."""
    wrong = "00-wrong-token-abcdef123456"
    okta = make_okta(token=wrong)
    with pytest.raises(AuthenticationError) as info:
        await okta.find_user_by_employee_id("E-1")
    assert len(fake.requests) == 1
    assert wrong not in str(info.value) and wrong not in repr(info.value) and wrong not in repr(okta)


async def test_link_paging_follows_next(fake: FakeOkta) -> None:
    """iter_users follows rel=next links (after cursor) and yields pages of at most page_size."""
    okta = make_okta()
    for n in range(7):
        await okta.create_user(joiner(n))
    fake.requests.clear()
    pages = [page async for page in okta.iter_users(page_size=3)]
    assert [len(p) for p in pages] == [3, 3, 1]
    listing = [r for r in fake.requests if r.url.path == "/api/v1/users"]
    assert "after" not in listing[0].url.params and listing[1].url.params["after"]


async def test_iter_users_includes_deprovisioned(fake: FakeOkta) -> None:
    """Leavers (DEPROVISIONED, left out of Okta's default listing) are listed in a second pass."""
    okta = make_okta()
    stayer = await okta.create_user(joiner(1))
    leaver = await okta.create_user(joiner(2))
    await okta.deactivate_user(leaver.id)
    seen = {a.id: a.active async for page in okta.iter_users() for a in page}
    assert seen == {stayer.id: True, leaver.id: False}


@respx.mock
async def test_link_loop_is_detected() -> None:
    """A next link pointing back at a page already read raises instead of looping."""
    loop = f'<{OKTA_BASE}api/v1/groups?after=00g1&limit=200>; rel="next"'
    respx.get(url__startswith=f"{OKTA_BASE}api/v1/groups").respond(
        200, json=[{"id": "00g1", "profile": {"name": "x"}}], headers={"Link": loop}
    )
    respx.get(url__startswith=f"{OKTA_BASE}api/v1/groups/00g1/users").respond(200, json=[])
    with pytest.raises(ResponseValidationError, match="pagination loop"):
        await make_okta().list_members("00g0")


@respx.mock
async def test_429_waits_for_x_rate_limit_reset() -> None:
    """A 429 carrying X-Rate-Limit-Reset (epoch seconds) is waited out, then the answer is used."""
    reset = int(time.time()) + 4
    respx.get(url__startswith=f"{OKTA_BASE}api/v1/users/00u1").mock(
        side_effect=[
            httpx.Response(
                429,
                json={"errorCode": "E0000047"},
                headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(reset)},
            ),
            httpx.Response(
                200, json={"id": "00u1", "status": "ACTIVE", "lastLogin": None, "profile": {"login": "a"}}
            ),
        ]
    )
    sleeps: list[float] = []
    assert await make_okta(sleeps=sleeps).last_sign_in("00u1") is None
    assert len(sleeps) == 1 and 2.0 <= sleeps[0] <= 4.0


async def test_duplicate_login_of_our_employee_is_adopted(fake: FakeOkta) -> None:
    """A 400 'already exists' whose holder carries our employeeNumber is adopted (lost race)."""
    okta = make_okta()
    mine = await okta.create_user(joiner(1))
    calls = 0
    real_find = okta.find_user_by_employee_id

    async def miss_once(employee_id: str):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return None if calls == 1 else await real_find(employee_id)

    okta.find_user_by_employee_id = miss_once  # type: ignore[method-assign]
    adopted = await okta.create_user(joiner(1))
    assert adopted.id == mine.id and len(fake.users) == 1


async def test_duplicate_login_of_someone_else_is_refused(fake: FakeOkta) -> None:
    """A login held by another employee's user is a ConflictError naming the reason; nothing is changed."""
    okta = make_okta()
    other = await okta.create_user(joiner(1, employee_id="E-other"))
    with pytest.raises(ConflictError, match="of another employee"):
        await okta.create_user(joiner(1, employee_id="E-mine"))
    assert fake.users[other.id]["profile"]["employeeNumber"] == "E-other" and len(fake.users) == 1


async def test_lifecycle_is_idempotent_and_state_aware(fake: FakeOkta) -> None:
    """Deactivating twice sends one lifecycle call; reactivation activates a DEPROVISIONED user."""
    okta = make_okta()
    account = await okta.create_user(joiner())
    await okta.deactivate_user(account.id)
    await okta.deactivate_user(account.id)
    lifecycle = [r.url.path for r in fake.requests if "/lifecycle/" in r.url.path]
    assert lifecycle == [f"/api/v1/users/{account.id}/lifecycle/deactivate"]
    await okta.reactivate_user(account.id)
    assert fake.users[account.id]["status"] == "ACTIVE"


async def test_suspend_mode_suspends_and_unsuspends(fake: FakeOkta) -> None:
    """In suspend mode a leaver is SUSPENDED (apps kept) and comes back with unsuspend."""
    okta = make_okta(leaver_mode="suspend")
    account = await okta.create_user(joiner())
    await okta.deactivate_user(account.id)
    assert fake.users[account.id]["status"] == "SUSPENDED"
    await okta.reactivate_user(account.id)
    assert fake.users[account.id]["status"] == "ACTIVE"


async def test_delete_deactivates_first(fake: FakeOkta) -> None:
    """delete_user deprovisions an active user before the DELETE that removes it; a second delete is fine."""
    okta = make_okta()
    account = await okta.create_user(joiner())
    await okta.delete_user(account.id)
    assert account.id not in fake.users
    await okta.delete_user(account.id)


async def test_update_sends_only_changed_profile_properties(fake: FakeOkta) -> None:
    """update_user POSTs only the changed properties (null clears one) and leaves the rest alone."""
    okta = make_okta()
    account = await okta.create_user(joiner(title="Engineer"))
    updated = await okta.update_user(account, {"department": "R&D", "title": None})
    body = json.loads([r for r in fake.requests if r.method == "POST"][-1].content)
    assert body == {"profile": {"department": "R&D", "title": None}}
    assert updated.department == "R&D" and updated.title is None and updated.given_name == "Ada"


@pytest.mark.parametrize("kind", ["scim", "okta"], ids=["scim", "okta"])
def test_factory_builds_the_configured_http_connector(kind: str) -> None:
    """build_identity_provider returns the vendor's connector, satisfying the protocol, token kept secret."""
    from pydantic import SecretStr

    from connectors.protocols import IdentityProvider
    from tenure.compose import build_identity_provider
    from tenure.settings import IdPSettings

    provider = build_identity_provider(IdPSettings(kind=kind, token=SecretStr("factory-token-123456")))
    assert isinstance(provider, IdentityProvider) and provider.source == kind
    assert "factory-token-123456" not in repr(provider) and "factory-token-123456" not in repr(
        provider.api.client.auth
    )
