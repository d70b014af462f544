"""A stateful fake of the Google Workspace Admin SDK Directory API (users, groups, members) and of Google's OAuth
token endpoint for service accounts, built from Google's documentation and enforcing what it says:

- Token endpoint (https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests):
  ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``; the ``assertion`` is verified with the service
  account's *public* key (RS256 signature, ``kid``), and its claims: ``iss`` = the service account, ``aud`` = the
  token URI, ``exp`` ≤ ``iat`` + 1 h and not past, ``sub`` an admin of the domain, ``scope`` within what the admin
  delegated to the client id (domain-wide delegation,
  https://developers.google.com/workspace/admin/directory/v1/guides/delegation); else ``invalid_grant`` /
  ``unauthorized_client``. Tokens expire (``token_lifetime``); a missing or expired one is ``401``. Each call needs
  its OAuth scope (users → ``admin.directory.user``, groups → ``admin.directory.group``, member writes →
  ``…group`` or ``…group.member``), else ``403 insufficientPermissions``.
- Users (https://developers.google.com/workspace/admin/directory/reference/rest/v1/users): ``list`` needs
  ``customer`` or ``domain``, ``maxResults`` 1..500, an opaque server-side ``pageToken``, ``query`` clauses
  ``field=value`` / ``field:value`` (``externalId``, ``email``, ``isSuspended``; quoted values, ``\\`` escapes), an
  empty page leaves the ``users`` key out; ``insert`` needs ``primaryEmail`` (letters, digits, ``- _ ' .``, on the
  customer's domain), ``name.givenName``, ``name.familyName``, ``password`` (8..100), a taken address is ``409``
  "Entity already exists."; ``patch`` replaces lists whole; ``get`` by id, primary email or alias;
  ``orgUnitPath`` must name an existing org unit; ``lastLoginTime`` is the epoch for a user who never signed in.
- Groups and members (…/rest/v1/groups/list, …/members/list, …/members/insert, …/members/delete):
  ``maxResults`` 1..200; inserting a member twice is ``409`` "Member already exists."; deleting a non-member is
  ``404``.
- Limits (https://developers.google.com/workspace/admin/directory/v1/limits): :meth:`FakeDirectory.limit` makes
  the next requests answer ``403 userRateLimitExceeded`` (or ``quotaExceeded``, ``429``, ``503``), never with
  Retry-After.

Errors use Google's shape ``{"error": {"code", "message", "errors": [{"message", "domain", "reason"}], "status"}}``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import google.auth.exceptions
import google.auth.jwt
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["ADMIN", "SERVICE_ACCOUNT", "TOKEN_URI", "FakeDirectory", "ServiceAccountKey", "make_key"]

TOKEN_URI = "https://oauth2.googleapis.com/token"
SERVICE_ACCOUNT = "tenure-sync@tenure-test.iam.gserviceaccount.com"
CLIENT_ID = "104857364019283746501"
ADMIN = "admin@example.com"
SCOPE_USER = "https://www.googleapis.com/auth/admin.directory.user"
SCOPE_GROUP = "https://www.googleapis.com/auth/admin.directory.group"
SCOPE_MEMBER = "https://www.googleapis.com/auth/admin.directory.group.member"
ALL_SCOPES = frozenset({SCOPE_USER, SCOPE_GROUP, SCOPE_MEMBER})
EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9_'\-]+(\.[A-Za-z0-9_'\-]+)*$")
_CLAUSE = re.compile(r"""(\w+)([=:])('(?:[^'\\]|\\.)*'|\S+)""")
EPOCH = "1970-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class ServiceAccountKey:
    """A throwaway RSA key pair: the private half goes in the JSON key file, the public half to the fake."""

    key_id: str
    private_pem: str
    public_pem: str

    def write_json(
        self, path: Path, *, client_email: str = SERVICE_ACCOUNT, token_uri: str = TOKEN_URI
    ) -> Path:
        """A service account key file in the format the Cloud console downloads."""
        info = {
            "type": "service_account",
            "project_id": "tenure-test",
            "private_key_id": self.key_id,
            "private_key": self.private_pem,
            "client_email": client_email,
            "client_id": CLIENT_ID,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }
        path.write_text(json.dumps(info), encoding="utf-8")
        path.chmod(0o600)
        return path


def make_key() -> ServiceAccountKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ServiceAccountKey(secrets.token_hex(20), private_pem, public_pem)


def google_error(status: int, reason: str, message: str, domain: str = "global") -> httpx.Response:
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": names.get(status, "UNKNOWN"),
        }
    }
    return httpx.Response(status, json=body)


class _Fail(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _fail(status: int, reason: str, message: str) -> _Fail:
    return _Fail(google_error(status, reason, message))


@dataclass
class FakeDirectory:
    """One Workspace customer. ``handle`` answers the token endpoint and the Directory API."""

    public_key_pem: str
    key_id: str
    domain: str = "example.com"
    service_account: str = SERVICE_ACCOUNT
    admins: set[str] = field(default_factory=lambda: {ADMIN})
    delegated_scopes: set[str] = field(default_factory=lambda: set(ALL_SCOPES))
    org_units: set[str] = field(default_factory=lambda: {"/", "/Leavers", "/Staff"})
    token_lifetime: float = 3599.0

    def __post_init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.tokens: dict[str, tuple[float, frozenset[str]]] = {}  # token -> (expires at, scopes)
        self.token_requests = 0
        self.assertions: list[dict[str, Any]] = []  # verified claims of every assertion exchanged
        self.calls: list[tuple[str, str]] = []  # (method, path after /admin/directory/v1/)
        self.skew = 0.0
        self._cursors: dict[str, tuple[list[dict[str, Any]], int, int, str]] = {}
        self._limits: list[tuple[int, int, str, Callable[[str, str], bool]]] = []

    # -------------------------------------------------------------------------------- test controls

    def now(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        self.skew += seconds

    def limit(
        self,
        count: int = 1,
        *,
        status: int = 403,
        reason: str = "userRateLimitExceeded",
        when: Callable[[str, str], bool] | None = None,
    ) -> None:
        """The next ``count`` matching requests answer a rate-limit error (no Retry-After, as Google sends)."""
        self._limits.append((count, status, reason, when or (lambda _m, _p: True)))

    def add_user(self, primary_email: str, **fields: Any) -> dict[str, Any]:
        user = {
            "kind": "admin#directory#user",
            "id": str(100000000000000000000 + len(self.users) * 7919 + secrets.randbelow(7000)),
            "primaryEmail": primary_email,
            "name": {"givenName": "Given", "familyName": "Family"},
            "suspended": False,
            "archived": False,
            "orgUnitPath": "/",
            "lastLoginTime": EPOCH,
            "isAdmin": False,
            **fields,
        }
        self._full_name(user)
        self.users[user["id"]] = user
        return user

    def add_group(self, name: str) -> dict[str, Any]:
        group_id = secrets.token_hex(8)
        group = {
            "kind": "admin#directory#group",
            "id": group_id,
            "email": f"{name}@{self.domain}",
            "name": name,
        }
        self.groups[group_id] = group
        self.members[group_id] = []
        return group

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.calls if m == method and p.startswith(path_prefix))

    # -------------------------------------------------------------------------------- dispatch

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth2.googleapis.com":
            return self._token(request)
        prefix = "/admin/directory/v1/"
        if request.url.host != "admin.googleapis.com" or not request.url.path.startswith(prefix):
            return google_error(404, "notFound", "Not Found")
        path = request.url.path.removeprefix(prefix)
        self.calls.append((request.method, path))
        for n, (count, status, reason, when) in enumerate(self._limits):
            if when(request.method, path):
                self._limits[n] = (count - 1, status, reason, when)
                if count <= 1:
                    del self._limits[n]
                domain = "usageLimits" if status == 403 else "global"
                return google_error(status, reason, "Rate Limit Exceeded", domain)
        header = request.headers.get("Authorization", "")
        grant = (
            self.tokens.get(header.removeprefix("Bearer ").strip()) if header.startswith("Bearer ") else None
        )
        if grant is None or self.now() >= grant[0]:
            return google_error(401, "authError", "Request had invalid authentication credentials.")
        params = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        body = json.loads(request.content) if request.content else None
        parts = [
            unquote(p) for p in request.url.raw_path.decode().split("?")[0].removeprefix(prefix).split("/")
        ]
        try:
            return self._route(request.method, parts, params, body, grant[1])
        except _Fail as failure:
            return failure.response

    # -------------------------------------------------------------------------------- token endpoint

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests += 1

        def oauth_error(status: int, error: str, description: str) -> httpx.Response:
            return httpx.Response(status, json={"error": error, "error_description": description})

        form = dict(parse_qsl(request.content.decode()))
        if (
            request.url.path != "/token"
            or form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ):
            return oauth_error(400, "unsupported_grant_type", "Invalid grant_type.")
        assertion = form.get("assertion", "")
        try:
            header = google.auth.jwt.decode_header(assertion)
            claims = google.auth.jwt.decode(
                assertion, certs={self.key_id: self.public_key_pem}, audience=TOKEN_URI
            )
        except (ValueError, google.auth.exceptions.GoogleAuthError) as exc:
            text = str(exc)
            if "expired" in text.lower() or "too early" in text.lower():
                return oauth_error(
                    400,
                    "invalid_grant",
                    "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe.",
                )
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        if header.get("alg") != "RS256":
            return oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        if claims.get("iss") != self.service_account:
            return oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        if int(claims.get("exp", 0)) - int(claims.get("iat", 0)) > 3600:
            return oauth_error(
                400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)."
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes or not scopes <= self.delegated_scopes or claims.get("sub") not in self.admins:
            return oauth_error(
                401,
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client not authorized "
                "for any of the scopes requested.",
            )
        self.assertions.append(claims)
        token = "ya29.fake-" + secrets.token_urlsafe(40)
        self.tokens[token] = (self.now() + self.token_lifetime, scopes)
        return httpx.Response(
            200, json={"access_token": token, "expires_in": int(self.token_lifetime), "token_type": "Bearer"}
        )

    # -------------------------------------------------------------------------------- routing

    def _need(self, scopes: frozenset[str], *any_of: str) -> None:
        if not scopes & set(any_of):
            raise _fail(403, "insufficientPermissions", "Request had insufficient authentication scopes.")

    def _route(
        self, method: str, parts: list[str], params: dict[str, str], body: Any, scopes: frozenset[str]
    ) -> httpx.Response:
        if parts[0] == "users":
            self._need(scopes, SCOPE_USER)
            if len(parts) == 1:
                if method == "GET":
                    return self._list_users(params)
                if method == "POST":
                    return self._insert_user(body)
            if len(parts) == 2:
                user = self._user(parts[1])
                if method == "GET":
                    return httpx.Response(200, json=self._view(user))
                if method in ("PATCH", "PUT"):
                    return self._patch_user(user, body)
                if method == "DELETE":
                    del self.users[user["id"]]
                    for members in self.members.values():
                        if user["id"] in members:
                            members.remove(user["id"])
                    return httpx.Response(204)
        if parts[0] == "groups":
            if len(parts) == 1 and method == "GET":
                self._need(scopes, SCOPE_GROUP)
                self._customer(params)
                return self._page(list(self.groups.values()), params, "groups", 200, "admin#directory#groups")
            group = self.groups.get(parts[1]) if len(parts) > 1 else None
            if group is None:
                raise _fail(404, "notFound", "Resource Not Found: groupKey")
            if parts[2:] == ["members"] and method == "GET":
                self._need(scopes, SCOPE_GROUP, SCOPE_MEMBER)
                items = [
                    {
                        "kind": "admin#directory#member",
                        "id": m,
                        "email": self.users[m]["primaryEmail"],
                        "role": "MEMBER",
                        "type": "USER",
                        "status": "ACTIVE",
                    }
                    for m in self.members[group["id"]]
                    if m in self.users
                ]
                return self._page(items, params, "members", 200, "admin#directory#members")
            if parts[2:] == ["members"] and method == "POST":
                self._need(scopes, SCOPE_GROUP, SCOPE_MEMBER)
                return self._insert_member(group, body)
            if len(parts) == 4 and parts[2] == "members" and method == "DELETE":
                self._need(scopes, SCOPE_GROUP, SCOPE_MEMBER)
                member = self._find(parts[3])
                if member is None or member["id"] not in self.members[group["id"]]:
                    raise _fail(404, "notFound", "Resource Not Found: memberKey")
                self.members[group["id"]].remove(member["id"])
                return httpx.Response(204)
        raise _fail(404, "notFound", "Not Found")

    # -------------------------------------------------------------------------------- users

    def _find(self, key: str) -> dict[str, Any] | None:
        if key in self.users:
            return self.users[key]
        folded = key.casefold()
        for user in self.users.values():
            addresses = [user["primaryEmail"], *user.get("aliases", [])]
            if folded in (a.casefold() for a in addresses):
                return user
        return None

    def _user(self, key: str) -> dict[str, Any]:
        user = self._find(key)
        if user is None:
            raise _fail(404, "notFound", "Resource Not Found: userKey")
        return user

    def _view(self, user: dict[str, Any]) -> dict[str, Any]:
        view = json.loads(json.dumps({k: v for k, v in user.items() if k != "password"}))
        view["emails"] = [{"address": user["primaryEmail"], "primary": True}, *user.get("emails", [])]
        return view

    def _customer(self, params: dict[str, str]) -> None:
        if params.get("customer") not in ("my_customer", "C0fake01") and params.get("domain") != self.domain:
            raise _fail(400, "badRequest", "Bad Request")

    def _list_users(self, params: dict[str, str]) -> httpx.Response:
        self._customer(params)
        users = [self._view(u) for u in self.users.values()]
        query = params.get("query", "").strip()
        if query:
            for fld, op, raw in _CLAUSE.findall(query):
                value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith("'") else raw
                users = [u for u in users if self._matches(u, fld, op, value)]
            if "".join(m.group(0) for m in _CLAUSE.finditer(query)).replace(" ", "") != query.replace(
                " ", ""
            ):
                raise _fail(400, "invalid", "Invalid Input")
        return self._page(users, params, "users", 500, "admin#directory#users")

    def _matches(self, user: dict[str, Any], fld: str, op: str, value: str) -> bool:
        def test(candidate: Any) -> bool:
            text = str(candidate or "")
            return text.casefold() == value.casefold() if op == "=" else value.casefold() in text.casefold()

        if fld == "externalId":
            return any(test(e.get("value")) for e in user.get("externalIds") or [])
        if fld == "email":
            return any(test(e.get("address")) for e in user["emails"])
        if fld == "isSuspended":
            return str(bool(user.get("suspended"))).lower() == value.lower()
        raise _fail(400, "invalid", "Invalid Input")

    def _page(
        self, items: list[dict[str, Any]], params: dict[str, str], key: str, cap: int, kind: str
    ) -> httpx.Response:
        if "pageToken" in params:
            state = self._cursors.pop(params["pageToken"], None)
            if state is None or state[3] != key:
                raise _fail(400, "invalid", "Invalid Input: pageToken")
            items, start, size, _ = state
        else:
            raw = params.get("maxResults", "100" if key == "users" else "200")
            if not raw.isdigit() or not 1 <= int(raw) <= cap:
                raise _fail(400, "invalid", f"Invalid Input: maxResults must be between 1 and {cap}")
            start, size = 0, int(raw)
        chunk = items[start : start + size]
        body: dict[str, Any] = {"kind": kind, "etag": '"fake"'}
        if chunk:
            body[key] = chunk
        if start + size < len(items):
            token = secrets.token_urlsafe(18)
            self._cursors[token] = (items, start + size, size, key)
            body["nextPageToken"] = token
        return httpx.Response(200, json=body)

    def _check_email(self, address: Any) -> None:
        if not isinstance(address, str) or address.count("@") != 1:
            raise _fail(400, "invalid", "Invalid Input: primary_user_email")
        local, domain = address.split("@")
        if not EMAIL_LOCAL.match(local):
            raise _fail(400, "invalid", "Invalid Input: primary_user_email")
        if domain.casefold() != self.domain.casefold():
            raise _fail(403, "forbidden", "Not Authorized to access this resource/api")

    def _taken(self, address: str, except_id: str | None = None) -> None:
        other = self._find(address)
        if other is not None and other["id"] != except_id:
            raise _fail(409, "duplicate", "Entity already exists.")

    def _check_ou(self, body: dict[str, Any]) -> None:
        if "orgUnitPath" in body and body["orgUnitPath"] not in self.org_units:
            raise _fail(400, "invalid", "Invalid Input: INVALID_OU_ID")

    def _full_name(self, user: dict[str, Any]) -> None:
        name = user.setdefault("name", {})
        name["fullName"] = f"{name.get('givenName', '')} {name.get('familyName', '')}".strip()

    def _insert_user(self, body: Any) -> httpx.Response:
        if not isinstance(body, dict):
            raise _fail(400, "required", "Missing required field: resource")
        name = body.get("name") if isinstance(body.get("name"), dict) else {}
        for required, value in (
            ("primaryEmail", body.get("primaryEmail")),
            ("name.givenName", name.get("givenName")),
            ("name.familyName", name.get("familyName")),
            ("password", body.get("password")),
        ):
            if not value:
                raise _fail(400, "required", f"Missing required field: {required}")
        if not 8 <= len(body["password"]) <= 100:
            raise _fail(400, "invalid", "Invalid Password")
        self._check_email(body["primaryEmail"])
        self._taken(body["primaryEmail"])
        self._check_ou(body)
        fields = {
            k: v
            for k, v in body.items()
            if k not in ("primaryEmail", "password", "changePasswordAtNextLogin")
        }
        user = self.add_user(body["primaryEmail"], **fields)
        user["password"] = body["password"]
        return httpx.Response(200, json=self._view(user))

    def _patch_user(self, user: dict[str, Any], body: Any) -> httpx.Response:
        if not isinstance(body, dict):
            raise _fail(400, "required", "Missing required field: resource")
        if "primaryEmail" in body:
            self._check_email(body["primaryEmail"])
            self._taken(body["primaryEmail"], except_id=user["id"])
        self._check_ou(body)
        for key, value in body.items():
            if key == "name" and isinstance(value, dict):
                user["name"] = {**user.get("name", {}), **value}  # an object is merged, a list replaced
            elif key not in ("id", "kind", "password"):
                user[key] = value
        self._full_name(user)
        return httpx.Response(200, json=self._view(user))

    # -------------------------------------------------------------------------------- members

    def _insert_member(self, group: dict[str, Any], body: Any) -> httpx.Response:
        if not isinstance(body, dict) or not (body.get("id") or body.get("email")):
            raise _fail(400, "required", "Missing required field: memberKey")
        member = self._find(str(body.get("id") or body.get("email")))
        if member is None:
            raise _fail(404, "notFound", "Resource Not Found: memberKey")
        if member["id"] in self.members[group["id"]]:
            raise _fail(409, "duplicate", "Member already exists.")
        self.members[group["id"]].append(member["id"])
        return httpx.Response(
            200,
            json={
                "kind": "admin#directory#member",
                "id": member["id"],
                "email": member["primaryEmail"],
                "role": "MEMBER",
                "type": "USER",
            },
        )
