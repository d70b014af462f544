"""The IdentityProvider contract against an in-memory fake Okta served through respx.

:class:`FakeOkta` keeps state and answers with the shapes Okta documents (user objects with ``status`` and
``profile``, lifecycle state rules, ``400 E0000001`` on a duplicate login, ``Link: rel="next"`` paging with an
opaque ``after`` cursor, ``X-Rate-Limit-*`` headers, the default listing leaving out DEPROVISIONED users).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import respx
from pydantic import SecretStr

from connectors.idp.okta import OktaIdentityProvider
from models.domain import Group
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.contract.idp_suite import IdentityProviderContract

__all__ = ["FakeOkta", "OKTA_BASE", "OKTA_TOKEN", "make_okta"]

OKTA_BASE = "https://tenure-test.okta.com/"
OKTA_TOKEN = "00-okta-api-token-Zx9Yw8Vu7T"
_SEARCH = re.compile(r'^(profile\.\w+|status|id) eq ("(?:[^"\\]|\\.)*")$')


def _error(status: int, code: str, summary: str, causes: list[str] | None = None) -> httpx.Response:
    body = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae-fake",
        "errorCauses": [{"errorSummary": c} for c in causes or []],
    }
    return httpx.Response(status, json=body)


class FakeOkta:
    """A stateful Okta org behind respx: users, lifecycle, groups, paging and rate-limit headers."""

    def __init__(self, base_url: str = OKTA_BASE, token: str = OKTA_TOKEN) -> None:
        self.base_url = base_url
        self.token = token
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self.requests: list[httpx.Request] = []

    # -------------------------------------------------------------- helpers

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):017d}"

    def add_group(self, name: str) -> dict[str, Any]:
        group = {
            "id": self.new_id("00g"),
            "type": "OKTA_GROUP",
            "profile": {"name": name, "description": None},
        }
        self.groups[group["id"]] = group
        self.members[group["id"]] = []
        return group

    def now(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def page(self, request: httpx.Request, items: list[dict[str, Any]]) -> httpx.Response:
        """One page from ``after`` (an opaque id cursor here) with a ``Link: rel="next"`` when more remain."""
        params = request.url.params
        limit = min(int(params.get("limit", "200")), 200)
        after = params.get("after")
        start = next((i + 1 for i, item in enumerate(items) if item["id"] == after), 0) if after else 0
        chunk = items[start : start + limit]
        links = [f'<{request.url}>; rel="self"']
        if start + limit < len(items) and chunk:
            query = {k: v for k, v in params.items() if k != "after"} | {"after": chunk[-1]["id"]}
            links.append(f'<{request.url.copy_with(query=urlencode(query).encode())}>; rel="next"')
        return httpx.Response(200, json=chunk, headers=[("Link", link) for link in links])

    def matches(self, user: dict[str, Any], expression: str) -> bool:
        match = _SEARCH.match(expression.strip())
        if not match:
            raise ValueError(expression)
        attr, value = match.group(1), json.loads(match.group(2))
        if attr.startswith("profile."):
            actual = user["profile"].get(attr.removeprefix("profile."))
            if attr == "profile.login" and isinstance(actual, str):
                return actual.casefold() == str(value).casefold()  # logins are case-insensitive
            return actual == value
        return user.get(attr) == value

    # -------------------------------------------------------------- dispatch

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.headers.get("Authorization") != f"SSWS {self.token}":
            return _error(401, "E0000011", "Invalid token provided")
        response = self.route(request)
        response.headers["X-Rate-Limit-Limit"] = "600"
        response.headers["X-Rate-Limit-Remaining"] = "599"
        response.headers["X-Rate-Limit-Reset"] = str(int(time.time()) + 60)
        return response

    def route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1/")
        parts = [p for p in path.split("/") if p]
        method = request.method
        if parts[:1] == ["users"]:
            if len(parts) == 1:
                return self.list_users(request) if method == "GET" else self.create_user(request)
            user = self.users.get(parts[1])
            if user is None:
                return _error(404, "E0000007", f"Not found: Resource not found: {parts[1]} (User)")
            if len(parts) == 2:
                if method == "GET":
                    return httpx.Response(200, json=user)
                if method == "POST":
                    return self.update_user(request, user)
                if method == "DELETE":
                    return self.delete_user(user)
            if len(parts) == 4 and parts[2] == "lifecycle" and method == "POST":
                return self.lifecycle(user, parts[3])
        if parts[:1] == ["groups"]:
            if len(parts) == 1 and method == "GET":
                return self.page(request, list(self.groups.values()))
            if len(parts) == 1 and method == "POST":
                return httpx.Response(
                    200, json=self.add_group(json.loads(request.content)["profile"]["name"])
                )
            if len(parts) >= 2 and parts[1] not in self.groups:
                return _error(404, "E0000007", f"Not found: Resource not found: {parts[1]} (UserGroup)")
            if len(parts) == 3 and parts[2] == "users" and method == "GET":
                return self.page(request, [self.users[u] for u in self.members[parts[1]] if u in self.users])
            if len(parts) == 4 and parts[2] == "users":
                if parts[3] not in self.users:
                    return _error(404, "E0000007", f"Not found: Resource not found: {parts[3]} (User)")
                members = self.members[parts[1]]
                if method == "PUT" and parts[3] not in members:
                    members.append(parts[3])
                if method == "DELETE" and parts[3] in members:
                    members.remove(parts[3])
                return httpx.Response(204)
        return _error(404, "E0000022", "The endpoint does not support the provided HTTP method")

    # -------------------------------------------------------------- users

    def list_users(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        users = list(self.users.values())
        if "search" in params:
            try:
                users = [u for u in users if self.matches(u, params["search"])]
            except ValueError:
                return _error(400, "E0000031", "Invalid search criteria.")
        elif "filter" in params:
            try:
                users = [u for u in users if self.matches(u, params["filter"])]
            except ValueError:
                return _error(400, "E0000031", "Invalid filter criteria.")
        else:
            users = [u for u in users if u["status"] != "DEPROVISIONED"]  # the default listing omits them
        return self.page(request, users)

    def create_user(self, request: httpx.Request) -> httpx.Response:
        profile = json.loads(request.content)["profile"]
        login = str(profile.get("login", ""))
        if not login:
            return _error(
                400, "E0000001", "Api validation failed: login", ["login: The field cannot be left blank"]
            )
        if any(u["profile"]["login"].casefold() == login.casefold() for u in self.users.values()):
            return _error(
                400,
                "E0000001",
                "Api validation failed: login",
                ["login: An object with this field already exists in the current organization"],
            )
        activate = request.url.params.get("activate", "true") == "true"
        stamp = self.now()
        user = {
            "id": self.new_id("00u"),
            "status": "ACTIVE" if activate else "STAGED",
            "created": stamp,
            "activated": stamp if activate else None,
            "statusChanged": stamp,
            "lastLogin": None,
            "lastUpdated": stamp,
            "passwordChanged": None,
            "type": {"id": "oty-default"},
            "profile": {k: v for k, v in profile.items() if v is not None},
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": f"{self.base_url}api/v1/users/pending"}},
        }
        user["_links"]["self"]["href"] = f"{self.base_url}api/v1/users/{user['id']}"
        self.users[user["id"]] = user
        return httpx.Response(200, json=user)

    def update_user(self, request: httpx.Request, user: dict[str, Any]) -> httpx.Response:
        for key, value in json.loads(request.content).get("profile", {}).items():
            if value is None:
                user["profile"].pop(key, None)
            else:
                user["profile"][key] = value
        user["lastUpdated"] = self.now()
        return httpx.Response(200, json=user)

    def delete_user(self, user: dict[str, Any]) -> httpx.Response:
        if user["status"] != "DEPROVISIONED":
            user["status"] = "DEPROVISIONED"  # Okta: the first DELETE deactivates
        else:
            del self.users[user["id"]]
            for members in self.members.values():
                if user["id"] in members:
                    members.remove(user["id"])
        return httpx.Response(204)

    def lifecycle(self, user: dict[str, Any], operation: str) -> httpx.Response:
        allowed = {
            "activate": ({"STAGED", "DEPROVISIONED"}, "ACTIVE"),
            "deactivate": (
                {
                    "STAGED",
                    "PROVISIONED",
                    "ACTIVE",
                    "RECOVERY",
                    "PASSWORD_EXPIRED",
                    "LOCKED_OUT",
                    "SUSPENDED",
                },
                "DEPROVISIONED",
            ),
            "suspend": ({"ACTIVE"}, "SUSPENDED"),
            "unsuspend": ({"SUSPENDED"}, "ACTIVE"),
        }
        if operation not in allowed:
            return _error(404, "E0000022", "The endpoint does not support the provided HTTP method")
        sources, target = allowed[operation]
        if user["status"] not in sources:
            return _error(
                400, "E0000001", f"Api validation failed: cannot {operation} a {user['status']} user"
            )
        user["status"], user["statusChanged"] = target, self.now()
        return httpx.Response(200, json={}) if operation == "activate" else httpx.Response(200, json={})


def make_okta(
    *, sleeps: list[float] | None = None, token: str = OKTA_TOKEN, **options: Any
) -> OktaIdentityProvider:
    """An Okta connector from settings at zero wait (recording requested waits)."""

    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    settings = IdPSettings(
        kind="okta", base_url=OKTA_BASE, token=SecretStr(token), requests_per_second=10_000
    )
    provider = build_identity_provider(settings, sleep=sleep)
    for key, value in options.items():
        setattr(provider, key, value)
    return provider


@pytest.fixture
def fake_okta() -> Iterator[FakeOkta]:
    """A fresh fake org routed through respx (nothing leaves the process)."""
    fake = FakeOkta()
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.route(host="tenure-test.okta.com").mock(side_effect=fake.handle)
        yield fake


class TestOkta(IdentityProviderContract):
    """The shared IdentityProvider contract on the fake Okta org."""

    @pytest.fixture
    async def idp(self, fake_okta: FakeOkta) -> AsyncIterator[OktaIdentityProvider]:
        provider = make_okta()
        yield provider
        await provider.aclose()

    async def make_group(self, idp: OktaIdentityProvider, name: str) -> Group:
        """``POST /api/v1/groups`` with the connector's own authenticated client."""
        response = await idp.api.client.post("api/v1/groups", json={"profile": {"name": name}})
        assert response.status_code == 200, response.text
        return Group(id=response.json()["id"], name=name)


class TestOktaSuspendMode(TestOkta):
    """The same contract when leavers are suspended rather than deprovisioned."""

    @pytest.fixture
    async def idp(self, fake_okta: FakeOkta) -> AsyncIterator[OktaIdentityProvider]:
        provider = make_okta(leaver_mode="suspend")
        yield provider
        await provider.aclose()
