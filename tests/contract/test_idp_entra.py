"""The IdentityProvider contract, and Graph's own behaviour (delta, ``$batch``, throttling, permissions, token),
against the stateful Graph fake of :mod:`tests.support.graph_fake` served through respx."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx
from pydantic import SecretStr

from connectors.errors import AuthenticationError, PermanentAPIError
from connectors.idp.entra import DeltaExpired, EntraIdentityProvider, MembershipChange
from models.domain import Group
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.contract.idp_suite import HOSTILE_USER_NAME, IdentityProviderContract
from tests.support.graph_fake import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeGraph


def make_entra(*, sleeps: list[float] | None = None, **overrides: Any) -> EntraIdentityProvider:
    """An Entra connector built from settings (as the CLI would), at zero wait (recording requested waits)."""

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    values: dict[str, Any] = {
        "kind": "entra",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
        "requests_per_second": 10_000,
        **overrides,
    }
    provider = build_identity_provider(IdPSettings(**values), sleep=sleep)
    assert isinstance(provider, EntraIdentityProvider)
    return provider


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """A fresh fake tenant; both Graph and the token endpoint are routed to it (nothing leaves the process)."""
    fake = FakeGraph()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="graph.microsoft.com").mock(side_effect=fake.handle)
        router.route(host="login.microsoftonline.com").mock(side_effect=fake.handle)
        yield fake


class TestEntra(IdentityProviderContract):
    """The shared IdentityProvider contract on the Graph fake."""

    graph: FakeGraph

    @pytest.fixture
    async def idp(self, graph: FakeGraph) -> AsyncIterator[EntraIdentityProvider]:
        self.graph = graph
        provider = make_entra()
        yield provider
        await provider.aclose()

    async def make_group(self, idp: EntraIdentityProvider, name: str) -> Group:
        """A security group, created by the tenant's admin (Tenure's app needs no Group.Create)."""
        return Group(id=self.graph.add_group(name)["id"], name=name)

    async def test_hostile_user_name_finds_exactly_that_user(self, idp: EntraIdentityProvider) -> None:
        """Graph-specific form of the suite's hostile-name test. A UPN allows only ``A-Z a-z 0-9 ' . - _ ! # ^ ~``
        on a verified domain (user-post-users), so the suite's ``o"brien\\x@…`` cannot exist in Entra: creating
        it fails that record clearly. The OData metacharacter a UPN *can* hold is ``'``: it must find only its
        own account, and the suite's names (and wildcards) find nobody."""
        tag = self.tag()
        with pytest.raises(PermanentAPIError, match="userPrincipalName is invalid"):
            await idp.create_user(self.attributes(tag, 9, user_name=HOSTILE_USER_NAME, email=None))
        decoys = ["obrien@example.com", "o'brien''@example.com", "o''brien@example.com", "brien@example.com"]
        decoy_accounts = [
            await idp.create_user(self.attributes(tag, n, user_name=name, email=None))
            for n, name in enumerate(decoys, start=1)
        ]
        hostile = await idp.create_user(self.attributes(tag, 0, user_name="o'brien@example.com", email=None))
        found = await idp.find_user_by_username("o'brien@example.com")
        assert found is not None and found.id == hostile.id
        for decoy in decoy_accounts:
            again = await idp.find_user_by_username(decoy.user_name)
            assert again is not None and again.id == decoy.id
        for nobody in (HOSTILE_USER_NAME, "o' or 1 eq 1@example.com", "*", "o*brien@example.com"):
            assert await idp.find_user_by_username(nobody) is None


class TestEntraExtensionAttribute(TestEntra):
    """The same contract with the employee id in a directory extension attribute."""

    ATTRIBUTE = "extension_2b7e4d1a9c3f4e5b8a6d1f3e5c7a9b2d_employeeNumber"

    @pytest.fixture
    async def idp(self, graph: FakeGraph) -> AsyncIterator[EntraIdentityProvider]:
        self.graph = graph
        graph.extension_properties.add(self.ATTRIBUTE)
        provider = make_entra(employee_id_attribute=self.ATTRIBUTE)
        yield provider
        await provider.aclose()

    async def test_the_extension_attribute_carries_the_employee_id(
        self, idp: EntraIdentityProvider, graph: FakeGraph
    ) -> None:
        account = await idp.create_user(self.attributes(self.tag()))
        stored = graph.users[account.id]
        assert stored[self.ATTRIBUTE] == account.employee_id and "employeeId" not in stored


# ------------------------------------------------------------------------------------------ Graph behaviour


@pytest.fixture
async def entra(graph: FakeGraph) -> AsyncIterator[EntraIdentityProvider]:
    provider = make_entra()
    yield provider
    await provider.aclose()


def seed(graph: FakeGraph, n: int, tag: str = "s") -> list[dict[str, Any]]:
    return [
        graph.add_user(
            userPrincipalName=f"u{i}.{tag}@example.com", employeeId=f"E-{tag}-{i}", displayName=f"User {i}"
        )
        for i in range(n)
    ]


async def test_reads_page_with_top_999_and_follow_the_opaque_next_link(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    seed(graph, 2100)
    pages = [page async for page in entra.iter_users()]
    assert [len(p) for p in pages] == [999, 999, 102]
    assert graph.count("GET", "users") == 3
    assert len({a.id for p in pages for a in p}) == 2100


async def test_the_fake_refuses_a_page_size_over_999(graph: FakeGraph, entra: EntraIdentityProvider) -> None:
    response = await entra.api.client.get("users", params={"$top": 1000})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "Request_UnsupportedQuery"
    pages = [page async for page in entra.iter_users(page_size=5000)]  # the connector caps at 999
    assert pages == []


async def test_a_next_link_elsewhere_is_refused(graph: FakeGraph, entra: EntraIdentityProvider) -> None:
    """The bearer token is never sent to a host that is not our Graph base URL."""
    from connectors.errors import ResponseValidationError

    with pytest.raises(ResponseValidationError, match="outside its base URL"):
        entra._own_link("https://evil.example/v1.0/users?$skiptoken=x")


async def test_user_without_employee_id_is_never_matched_by_name(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    """A directory user lacking employeeId reads back with employee_id "" (an orphan for the review); a lookup by
    employee id never falls back on display name or UPN."""
    graph.add_user(userPrincipalName="ada@example.com", displayName="Ada Lovelace")
    assert await entra.find_user_by_employee_id("") is None
    assert await entra.find_user_by_employee_id("E-ada") is None
    listed = [a async for page in entra.iter_users() for a in page]
    assert [(a.user_name, a.employee_id) for a in listed] == [("ada@example.com", "")]


async def test_a_missing_permission_is_named_not_retried(graph: FakeGraph) -> None:
    """403 Authorization_RequestDenied → AuthenticationError naming the application permission, sent once."""
    graph.granted = {"User.Read.All"}
    sleeps: list[float] = []
    entra = make_entra(sleeps=sleeps)
    try:
        before = len(graph.http_calls)
        with pytest.raises(AuthenticationError, match=r"User\.ReadWrite\.All") as caught:
            await entra.create_user(TestEntra.attributes("perm"))
        assert caught.value.status_code == 403 and caught.value.code == "Authorization_RequestDenied"
        assert sleeps == []
        assert [c for c in graph.http_calls[before:] if c[0] == "POST"] == [("POST", "users")]
        with pytest.raises(AuthenticationError, match=r"GroupMember\.Read\.All"):
            await entra.list_groups()
    finally:
        await entra.aclose()


async def test_the_token_is_cached_refreshed_on_expiry_and_never_shown(graph: FakeGraph) -> None:
    entra = make_entra()
    try:
        seed(graph, 3)
        for _ in range(5):
            await entra.find_user_by_employee_id("E-s-1")
        assert graph.token_requests == 1
        graph.advance(3600)  # the fake's token expired early (the connector's clock still thinks it is valid)
        assert (await entra.find_user_by_employee_id("E-s-2")) is not None
        assert graph.token_requests == 2
        assert "eyJ" not in repr(entra) + repr(entra.auth) + repr(entra.api)
    finally:
        await entra.aclose()


async def test_a_wrong_client_secret_says_what_to_check(graph: FakeGraph) -> None:
    entra = make_entra(client_secret=SecretStr("wrong-secret-value"))
    try:
        with pytest.raises(AuthenticationError, match="client secret") as caught:
            await entra.find_user_by_employee_id("E1")
        assert caught.value.code == "invalid_client"
        assert "wrong-secret-value" not in str(caught.value)
    finally:
        await entra.aclose()


@pytest.mark.parametrize(
    ("missing", "setting"),
    [
        ("tenant_id", "TENURE_IDP__TENANT_ID"),
        ("client_id", "TENURE_IDP__CLIENT_ID"),
        ("client_secret", "SECRET"),
    ],
)
def test_missing_settings_are_named(missing: str, setting: str) -> None:
    values: dict[str, Any] = {
        "kind": "entra",
        "tenant_id": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET),
    }
    values.pop(missing)
    with pytest.raises(ValueError, match=setting):
        build_identity_provider(IdPSettings(**values))


async def test_throttled_requests_wait_for_retry_after(graph: FakeGraph) -> None:
    sleeps: list[float] = []
    entra = make_entra(sleeps=sleeps)
    try:
        seed(graph, 2)
        graph.throttle(2, retry_after=7, when=lambda m, p: p == "users")
        assert len([a async for page in entra.iter_users() for a in page]) == 2
        assert sleeps == [7.0, 7.0]
    finally:
        await entra.aclose()


async def test_batched_membership_changes_cost_one_call_per_20(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    users = seed(graph, 45)
    group = graph.add_group("engineering")
    before = graph.count("POST", "$batch")
    failed = await entra.add_members(group["id"], [u["id"] for u in users])
    assert failed == {}
    assert graph.count("POST", "$batch") - before == 3  # ⌈45/20⌉
    assert set(graph.members[group["id"]]) == {u["id"] for u in users}
    # again: every add is "already exist", which is success; removals of non-members are success too
    assert await entra.add_members(group["id"], [u["id"] for u in users[:5]]) == {}
    assert await entra.remove_members(group["id"], [u["id"] for u in users[:21]] + ["not-a-member"]) == {}
    assert set(graph.members[group["id"]]) == {u["id"] for u in users[21:]}


async def test_each_sub_response_is_judged_alone_and_a_throttled_one_retried_alone(
    graph: FakeGraph,
) -> None:
    sleeps: list[float] = []
    entra = make_entra(sleeps=sleeps)
    try:
        users = seed(graph, 4)
        group = graph.add_group("sales")
        graph.throttle(1, retry_after=3, when=lambda m, p: p.endswith("/members/$ref") and m == "POST")
        changes = [MembershipChange("add", group["id"], u["id"]) for u in users]
        changes.append(MembershipChange("add", group["id"], "00000000-0000-0000-0000-000000000000"))
        failed = await entra.change_members(changes)
        assert list(failed) == [changes[-1]]  # the unknown object fails alone, clearly
        assert failed[changes[-1]].status_code == 404
        assert set(graph.members[group["id"]]) == {u["id"] for u in users}
        assert 3.0 in sleeps  # the throttled sub-request waited for its own Retry-After
        assert graph.count("POST", "$batch") == 1
        assert graph.count("POST", f"groups/{group['id']}/members/$ref") == 1  # the one retried alone
    finally:
        await entra.aclose()


async def test_the_fake_refuses_a_batch_of_21(graph: FakeGraph, entra: EntraIdentityProvider) -> None:
    requests = [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]
    response = await entra.api.client.post("$batch", json={"requests": requests})
    assert response.status_code == 400
    dependent = [
        {"id": "1", "method": "GET", "url": "/users/nope"},
        {"id": "2", "method": "GET", "url": "/users", "dependsOn": ["1"]},
    ]
    answers = (await entra.api.client.post("$batch", json={"requests": dependent})).json()["responses"]
    assert {a["id"]: a["status"] for a in answers} == {"1": 404, "2": 424}


async def test_user_delta_reads_only_the_changes(graph: FakeGraph, entra: EntraIdentityProvider) -> None:
    users = seed(graph, 250)
    link = None
    first = [page async for page in entra.iter_user_changes(None)]
    assert sum(len(p.changed_ids) for p in first) == 250 and first[-1].delta_link
    link = first[-1].delta_link
    assert all(p.delta_link is None for p in first[:-1])
    account = (await entra.get_users([users[3]["id"]]))[users[3]["id"]]
    await entra.update_user(account, {"department": "Research"})
    await entra.delete_user(users[7]["id"])
    pages = [page async for page in entra.iter_user_changes(link)]
    assert [p.changed_ids for p in pages] == [(users[3]["id"],)]
    assert [p.removed_ids for p in pages] == [(users[7]["id"],)]
    changed = await entra.get_users(pages[0].changed_ids)
    assert changed[users[3]["id"]].department == "Research"
    again = [page async for page in entra.iter_user_changes(pages[-1].delta_link)]
    assert [(p.changed_ids, p.removed_ids) for p in again] == [((), ())]


async def test_latest_delta_link_and_group_members_delta(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    users = seed(graph, 3)
    group = graph.add_group("all-staff")
    user_link = await entra.latest_user_delta_link()
    group_link = await entra.latest_group_delta_link()
    await entra.add_member(group["id"], users[0]["id"])
    await entra.add_member(group["id"], users[1]["id"])
    await entra.remove_member(group["id"], users[1]["id"])
    pages = [page async for page in entra.iter_group_changes(group_link)]
    changes = [g for p in pages for g in p.groups]
    assert [(g.id, g.added_member_ids, g.removed_member_ids) for g in changes] == [
        (group["id"], frozenset({users[0]["id"]}), frozenset({users[1]["id"]}))
    ]
    assert [p async for p in entra.iter_user_changes(user_link)][-1].changed_ids == ()


@pytest.mark.parametrize("how", ["expired", "reset"])
async def test_an_expired_delta_link_asks_for_a_full_read(
    graph: FakeGraph, entra: EntraIdentityProvider, how: str
) -> None:
    seed(graph, 2)
    link = await entra.latest_user_delta_link()
    if how == "expired":
        graph.advance(8 * 24 * 3600)  # directory delta state lives 7 days
    else:
        graph.reset_delta()
    with pytest.raises(DeltaExpired, match="full read") as caught:
        [page async for page in entra.iter_user_changes(link)]
    assert caught.value.status_code == (400 if how == "expired" else 410)


async def test_a_leaver_is_disabled_and_signed_out(graph: FakeGraph, entra: EntraIdentityProvider) -> None:
    account = await entra.create_user(TestEntra.attributes("leaver"))
    await entra.deactivate_user(account.id)
    assert graph.users[account.id]["accountEnabled"] is False
    assert ("POST", f"users/{account.id}/revokeSignInSessions") in graph.requests


async def test_bulk_user_updates_are_batched_and_judged_one_by_one(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    users = seed(graph, 30)
    updates = [(u["id"], {"title": "Staff Engineer"}) for u in users[:25]]
    updates += [(users[25]["id"], {"active": False}), ("no-such-user", {"department": "X"})]
    failed = await entra.update_users(updates)
    assert list(failed) == ["no-such-user"] and failed["no-such-user"].status_code == 404
    assert all(graph.users[u["id"]].get("jobTitle") == "Staff Engineer" for u in users[:25])
    assert graph.users[users[25]["id"]]["accountEnabled"] is False
    assert ("POST", f"users/{users[25]['id']}/revokeSignInSessions") in graph.requests
    assert graph.count("POST", "$batch") == 2  # 28 sub-requests (27 PATCH + 1 revoke): ⌈28/20⌉


@pytest.mark.slow
async def test_a_full_read_of_5000_users_and_the_nightly_delta_cost_what_graph_promises(
    graph: FakeGraph, entra: EntraIdentityProvider
) -> None:
    """The call budget of issue 13 at connector level: a full read of 5,000 users is ⌈5000/999⌉ = 6 user pages
    plus the group pages; 1% drift written as N membership changes and user updates costs ⌈N/20⌉ ``$batch``
    calls; the next night reads only the delta."""
    users = seed(graph, 5000, tag="big")
    groups = [graph.add_group(f"team-{n}") for n in range(5)]
    for n, user in enumerate(users):
        graph.members[groups[n % 5]["id"]].append(user["id"])
    link = await entra.latest_user_delta_link()
    before = len(graph.http_calls)
    accounts = [a async for page in entra.iter_users() for a in page]
    listed = await entra.list_groups()
    assert len(accounts) == 5000 and sum(len(g.member_ids) for g in listed) == 5000
    read = graph.http_calls[before:]
    assert sum(1 for m, p in read if (m, p) == ("GET", "users")) == 6  # ⌈5000/999⌉
    assert len(read) == 6 + 1 + 5 * 2  # + one groups page + 1,000 members per group → 2 member pages each
    movers = users[:50]  # 1% drift: 50 movers change team and title
    changes = [MembershipChange("remove", groups[n % 5]["id"], u["id"]) for n, u in enumerate(movers)]
    changes += [MembershipChange("add", groups[(n + 1) % 5]["id"], u["id"]) for n, u in enumerate(movers)]
    batches = graph.count("POST", "$batch")
    assert await entra.change_members(changes) == {}
    assert await entra.update_users([(u["id"], {"title": "Moved"}) for u in movers]) == {}
    assert graph.count("POST", "$batch") - batches == -(-len(changes) // 20) + -(-len(movers) // 20)
    calls = len(graph.http_calls)
    pages = [page async for page in entra.iter_user_changes(link)]
    assert len(graph.http_calls) - calls == 1  # 50 changed users fit one delta page
    assert sorted(i for p in pages for i in p.changed_ids) == sorted(u["id"] for u in movers)


async def test_secret_and_tokens_never_in_logs_or_errors(
    graph: FakeGraph, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    entra = make_entra()
    errors: list[str] = []
    try:
        account = await entra.create_user(TestEntra.attributes("secret"))
        await entra.add_members(graph.add_group("g")["id"], [account.id, "missing-id"])
        graph.revoke_tokens()
        graph.granted = set()
        try:
            await entra.delete_user(account.id)
        except AuthenticationError as exc:
            errors += [str(exc), repr(exc)]
    finally:
        await entra.aclose()
    assert errors and graph.tokens
    text = caplog.text + "".join(errors)
    for secret in (CLIENT_SECRET, *graph.tokens):
        assert secret not in text
