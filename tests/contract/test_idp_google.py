"""The IdentityProvider contract, and the Directory API's own behaviour (service-account JWT with domain-wide
delegation, paging, rate limits, leaver OU), against the stateful fake of
:mod:`tests.support.google_directory_fake` served through respx."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx

from connectors.errors import AuthenticationError, InvalidRecordError, PermanentAPIError, RetryableAPIError
from connectors.idp.google import DIRECTORY_SCOPES, GoogleWorkspaceIdentityProvider
from models.domain import Group
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.contract.idp_suite import HOSTILE_USER_NAME, IdentityProviderContract
from tests.support.google_directory_fake import (
    ADMIN,
    SERVICE_ACCOUNT,
    TOKEN_URI,
    FakeDirectory,
    ServiceAccountKey,
    make_key,
)


@pytest.fixture(scope="module")
def key() -> ServiceAccountKey:
    return make_key()


@pytest.fixture
def key_file(key: ServiceAccountKey, tmp_path: Path) -> Path:
    return key.write_json(tmp_path / "service-account.json")


@pytest.fixture
def directory(key: ServiceAccountKey) -> Iterator[FakeDirectory]:
    """A fresh fake customer; the Directory API and the token endpoint are routed to it."""
    fake = FakeDirectory(public_key_pem=key.public_pem, key_id=key.key_id)
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="admin.googleapis.com").mock(side_effect=fake.handle)
        router.route(host="oauth2.googleapis.com").mock(side_effect=fake.handle)
        yield fake


def make_google(
    key_file: Path, *, sleeps: list[float] | None = None, **overrides: Any
) -> GoogleWorkspaceIdentityProvider:
    """A Google connector built from settings (as the CLI would), at zero wait (recording requested waits)."""

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    values: dict[str, Any] = {
        "kind": "google",
        "credentials_file": key_file,
        "subject": ADMIN,
        "domain": "example.com",
        "requests_per_second": 10_000,
        **overrides,
    }
    provider = build_identity_provider(IdPSettings(**values), sleep=sleep)
    assert isinstance(provider, GoogleWorkspaceIdentityProvider)
    return provider


class TestGoogle(IdentityProviderContract):
    """The shared IdentityProvider contract on the Directory API fake."""

    directory: FakeDirectory

    @pytest.fixture
    async def idp(
        self, directory: FakeDirectory, key_file: Path
    ) -> AsyncIterator[GoogleWorkspaceIdentityProvider]:
        self.directory = directory
        provider = make_google(key_file)
        yield provider
        await provider.aclose()

    async def make_group(self, idp: GoogleWorkspaceIdentityProvider, name: str) -> Group:
        """A group created by the customer's admin (Tenure manages members, not groups)."""
        return Group(id=self.directory.add_group(name)["id"], name=name)

    async def test_hostile_user_name_finds_exactly_that_user(
        self, idp: GoogleWorkspaceIdentityProvider
    ) -> None:
        """Directory-specific form of the suite's hostile-name test: a Workspace user name allows letters,
        digits, ``- _ ' .`` only, so ``o"brien\\x@…`` fails that record clearly; ``'`` (the query syntax's quote)
        must find only its own account, and the suite's names and wildcards find nobody."""
        tag = self.tag()
        with pytest.raises(PermanentAPIError, match="primary_user_email"):
            await idp.create_user(self.attributes(tag, 9, user_name=HOSTILE_USER_NAME, email=None))
        decoys = ["obrien@example.com", "o'brien.x@example.com", "brien@example.com"]
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
        for nobody in (HOSTILE_USER_NAME, "o*brien@example.com", "*", "..", "users"):
            assert await idp.find_user_by_username(nobody) is None


# ------------------------------------------------------------------------------------------ Directory behaviour


@pytest.fixture
async def google(directory: FakeDirectory, key_file: Path) -> AsyncIterator[GoogleWorkspaceIdentityProvider]:
    provider = make_google(key_file)
    yield provider
    await provider.aclose()


def _payload(assertion: str) -> dict[str, Any]:
    part = assertion.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def test_the_assertion_is_signed_and_carries_the_delegation_claims(
    directory: FakeDirectory, google: GoogleWorkspaceIdentityProvider
) -> None:
    """The fake verified the RS256 signature with the public key; the claims are the documented ones."""
    assert await google.find_user_by_username("nobody@example.com") is None
    [claims] = directory.assertions
    assert claims["iss"] == SERVICE_ACCOUNT and claims["sub"] == ADMIN and claims["aud"] == TOKEN_URI
    assert claims["scope"].split() == list(DIRECTORY_SCOPES)
    assert 0 < claims["exp"] - claims["iat"] <= 3600
    for _ in range(3):
        await google.find_user_by_username("nobody@example.com")
    assert directory.token_requests == 1  # cached until expiry


async def test_a_key_the_customer_does_not_know_is_refused(directory: FakeDirectory, tmp_path: Path) -> None:
    """Signed with another private key, the assertion fails the fake's signature check."""
    stranger = make_google(make_key().write_json(tmp_path / "other.json"))
    try:
        with pytest.raises(PermanentAPIError, match="invalid_grant"):
            await stranger.find_user_by_username("a@example.com")
    finally:
        await stranger.aclose()


async def test_missing_delegation_names_what_to_grant(directory: FakeDirectory, key_file: Path) -> None:
    directory.delegated_scopes.discard("https://www.googleapis.com/auth/admin.directory.group.member")
    google = make_google(key_file)
    try:
        with pytest.raises(AuthenticationError, match="domain-wide delegation") as caught:
            await google.find_user_by_username("a@example.com")
        assert caught.value.code == "unauthorized_client"
    finally:
        await google.aclose()


def test_missing_settings_are_named(tmp_path: Path, key_file: Path) -> None:
    with pytest.raises(ValueError, match="TENURE_IDP__CREDENTIALS_FILE"):
        build_identity_provider(IdPSettings(kind="google", subject=ADMIN))
    with pytest.raises(ValueError, match="TENURE_IDP__CREDENTIALS_FILE cannot be read"):
        build_identity_provider(
            IdPSettings(kind="google", subject=ADMIN, credentials_file=tmp_path / "nope.json")
        )
    (tmp_path / "bad.json").write_text('{"type": "authorized_user", "private_key": "-----BEGIN"}')
    with pytest.raises(ValueError, match="not a service account key") as caught:
        build_identity_provider(
            IdPSettings(kind="google", subject=ADMIN, credentials_file=tmp_path / "bad.json")
        )
    assert "BEGIN" not in str(caught.value)
    with pytest.raises(ValueError, match="TENURE_IDP__SUBJECT"):
        build_identity_provider(IdPSettings(kind="google", credentials_file=key_file))


async def test_rate_limits_are_retried_with_backoff(directory: FakeDirectory, key_file: Path) -> None:
    """403 userRateLimitExceeded / quotaExceeded, 429 and 503 carry no Retry-After: exponential backoff."""
    sleeps: list[float] = []
    google = make_google(key_file, sleeps=sleeps)
    try:
        directory.add_user("ada@example.com", externalIds=[{"type": "organization", "value": "E1"}])
        directory.limit(1, reason="userRateLimitExceeded")
        directory.limit(1, reason="quotaExceeded")
        directory.limit(1, status=429, reason="rateLimitExceeded")
        directory.limit(1, status=503, reason="backendError")
        found = await google.find_user_by_employee_id("E1")
        assert found is not None and found.user_name == "ada@example.com"
        assert len(sleeps) == 4
        directory.limit(5, reason="userRateLimitExceeded")  # as many as the attempts (5)
        with pytest.raises(RetryableAPIError) as caught:
            await google.find_user_by_employee_id("E1")
        assert caught.value.code == "userRateLimitExceeded"
        directory.limit(1, reason="dailyLimitExceeded")
        with pytest.raises(AuthenticationError):  # not a backoff matter: the quota comes back tomorrow
            await google.find_user_by_employee_id("E1")
    finally:
        await google.aclose()


async def test_users_page_at_500(directory: FakeDirectory, google: GoogleWorkspaceIdentityProvider) -> None:
    for n in range(1201):
        directory.add_user(f"u{n}@example.com", externalIds=[{"type": "organization", "value": f"E{n}"}])
    pages = [page async for page in google.iter_users(page_size=2000)]
    assert [len(p) for p in pages] == [500, 500, 201]
    assert directory.count("GET", "users") == 3


async def test_employee_id_is_the_organization_external_id_and_never_a_name(
    directory: FakeDirectory, google: GoogleWorkspaceIdentityProvider
) -> None:
    directory.add_user("orphan@example.com", name={"givenName": "Ada", "familyName": "Lovelace"})
    directory.add_user(
        "other@example.com", externalIds=[{"type": "custom", "customType": "badge", "value": "E7"}]
    )
    assert await google.find_user_by_employee_id("E7") is None  # another type of external id
    listed = [a async for page in google.iter_users() for a in page]
    assert sorted((a.user_name, a.employee_id) for a in listed) == [
        ("orphan@example.com", ""),
        ("other@example.com", ""),
    ]


async def test_leavers_are_suspended_into_the_leaver_ou_and_back(
    directory: FakeDirectory, key_file: Path
) -> None:
    google = make_google(key_file, leaver_ou="/Leavers")
    try:
        account = await google.create_user(IdentityProviderContract.attributes("leaver"))
        await google.deactivate_user(account.id)
        stored = directory.users[account.id]
        assert stored["suspended"] is True and stored["orgUnitPath"] == "/Leavers"
        before = directory.count("PATCH", "users")
        await google.deactivate_user(account.id)
        assert directory.count("PATCH", "users") == before  # idempotent: nothing written
        await google.reactivate_user(account.id)
        assert stored["suspended"] is False and stored["orgUnitPath"] == "/"
    finally:
        await google.aclose()


async def test_update_keeps_other_list_entries(
    directory: FakeDirectory, google: GoogleWorkspaceIdentityProvider
) -> None:
    """PATCH replaces a list whole: the connector merges, so a second organization entry survives."""
    account = await google.create_user(IdentityProviderContract.attributes("orgs"))
    directory.users[account.id]["organizations"].append({"name": "Volunteer corps", "title": "Lead"})
    updated = await google.update_user(account, {"department": "Research"})
    assert updated.department == "Research" and updated.title == "Engineer"
    assert {"name": "Volunteer corps", "title": "Lead"} in directory.users[account.id]["organizations"]


async def test_a_joiner_without_names_fails_clearly(google: GoogleWorkspaceIdentityProvider) -> None:
    with pytest.raises(InvalidRecordError, match="given name and a family name"):
        await google.create_user(IdentityProviderContract.attributes("noname", given_name=None))


async def test_key_and_tokens_never_in_logs_or_errors(
    directory: FakeDirectory, key: ServiceAccountKey, key_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    google = make_google(key_file)
    errors: list[str] = []
    try:
        await google.create_user(IdentityProviderContract.attributes("secret"))
        directory.tokens.clear()
        directory.admins.clear()  # the next token request is refused
        try:
            await google.find_user_by_employee_id("E-secret-0")
        except AuthenticationError as exc:
            errors += [str(exc), repr(exc)]
    finally:
        await google.aclose()
    assert errors
    text = caplog.text + "".join(errors) + repr(google) + repr(google.auth)
    key_body = "".join(key.private_pem.splitlines()[1:-1])
    for line in key.private_pem.splitlines()[1:-1]:
        assert line not in text
    assert key_body[:40] not in text and key.key_id not in text
