"""A stateful fake of Microsoft Graph v1.0 (users, groups, manager, delta, ``$batch``) and of the Microsoft
identity platform's token endpoint, built from Microsoft's documentation and enforcing what it says:

- Token endpoint (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow):
  ``grant_type=client_credentials``, the registered ``client_id``/``client_secret``, ``scope`` =
  ``https://graph.microsoft.com/.default``; errors ``{"error": "invalid_client", "error_description": "AADSTS…"}``.
  Tokens expire (``token_lifetime``) and can be revoked; Graph answers a missing, unknown or expired token with
  ``401 InvalidAuthenticationToken``.
- Permissions (https://learn.microsoft.com/en-us/graph/permissions-reference): each call needs an application
  permission from :attr:`FakeGraph.granted`, else ``403 Authorization_RequestDenied``.
- Paging (https://learn.microsoft.com/en-us/graph/paging, …/api/user-list): ``$top`` must be 1..999 (else ``400
  Request_UnsupportedQuery``); ``@odata.nextLink`` carries an opaque server-side ``$skiptoken`` (an unknown one is
  refused); ``$select`` returns only the named properties (plus ``id``), none → the default property set; an
  unknown property is ``400``. ``$filter`` supports ``<property> eq '<literal>'`` (OData quoting) on the
  properties the docs list for ``eq``. ``$expand=manager($select=…)``.
- Users (…/api/user-post-users): the required properties, a UPN of ``A-Z a-z 0-9 ' . - _ ! # ^ ~`` on a verified
  domain, a duplicate UPN is ``400`` "Another object with the same value for property userPrincipalName already
  exists."; the ``201`` answer holds only the default properties. ``PATCH`` → ``204``; ``null`` clears.
- Membership (…/api/group-post-members): an existing member added is ``400`` "One or more added object references
  already exist …"; ``@odata.id`` must name a directory object of this service.
- Delta (https://learn.microsoft.com/en-us/graph/delta-query-overview, …/delta-query-users, …/api/group-delta):
  initial round → every object, then ``@odata.deltaLink``; later rounds → changed objects with only the changed
  properties (plus ``id``), removed ones with ``@removed``, groups with ``members@delta``; ``$deltatoken=latest``;
  a token older than :attr:`FakeGraph.delta_lifetime` is ``400 syncStateNotFound``, and after :meth:`reset_delta`
  every old token is ``410 Gone``.
- ``$batch`` (https://learn.microsoft.com/en-us/graph/json-batching): at most 20 requests, unique ids, relative
  URLs, ``Content-Type`` with a body, ``dependsOn`` on earlier ids (a failed dependency is ``424``); every
  sub-request gets its own ``{id, status, headers, body}``, answered in reverse order (the docs promise no order).
- Throttling (https://learn.microsoft.com/en-us/graph/throttling): :meth:`throttle` makes the next requests (or
  sub-requests) answer ``429 TooManyRequests`` with ``Retry-After``.

Errors use the OData shape ``{"error": {"code", "message", "innerError": {"date", "request-id"}}}``.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

__all__ = [
    "ALL_PERMISSIONS",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "GRAPH_BASE",
    "TENANT_ID",
    "TOKEN_URL",
    "FakeGraph",
]

TENANT_ID = "8f5c2a4e-1b3d-4c6e-9a7b-2d4f6e8a0c1e"
CLIENT_ID = "2b7e4d1a-9c3f-4e5b-8a6d-1f3e5c7a9b2d"
CLIENT_SECRET = "fake~Graph.Secret_9xQ2vL7pR4tW"
GRAPH_BASE = "https://graph.microsoft.com/v1.0/"
TOKEN_URL = f"https://login.microsoftonline.com/{TENANT_ID}/oauth2/v2.0/token"
ALL_PERMISSIONS = frozenset(
    {"User.ReadWrite.All", "GroupMember.ReadWrite.All", "AuditLog.Read.All", "User.RevokeSessions.All"}
)
# The permissions that satisfy each kind of call (a higher one satisfies a lower one).
NEEDS = {
    "read_users": {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"},
    "write_users": {"User.ReadWrite.All", "Directory.ReadWrite.All"},
    "read_groups": {
        "GroupMember.Read.All",
        "Group.Read.All",
        "GroupMember.ReadWrite.All",
        "Group.ReadWrite.All",
        "Directory.Read.All",
    },
    "write_groups": {"Group.ReadWrite.All", "Directory.ReadWrite.All", "Group.Create"},
    "write_members": {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"},
    "sign_ins": {"AuditLog.Read.All"},
    "revoke": {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"},
}
MAX_TOP = 999
MAX_BATCH = 20
DEFAULT_PAGE = 100
UPN_LOCAL = re.compile(r"^[A-Za-z0-9'.\-_!#^~]+$")
DEFAULT_USER_PROPS = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
USER_PROPS = frozenset(
    {
        *DEFAULT_USER_PROPS,
        "id",
        "accountEnabled",
        "department",
        "employeeId",
        "employeeHireDate",
        "employeeLeaveDateTime",
        "mailNickname",
        "signInActivity",
        "createdDateTime",
    }
)
WRITABLE_USER_PROPS = USER_PROPS - {"id", "signInActivity", "createdDateTime"} | {"passwordProfile"}
FILTERABLE_EQ = frozenset({"employeeId", "userPrincipalName", "mail", "displayName", "id", "mailNickname"})
_EQ_FILTER = re.compile(r"^\s*([A-Za-z_][\w]*)\s+eq\s+'((?:[^']|'')*)'\s*$")
_SUB_FILTER = re.compile(r"^([A-Za-z_]\w*)\(\$select=([\w,]+)\)$")


def odata_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
        }
    }
    return httpx.Response(status, json=body, headers=headers)


class _Fail(Exception):
    """An error answer raised from deep inside a handler."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


def _fail(status: int, code: str, message: str) -> _Fail:
    return _Fail(odata_error(status, code, message))


@dataclass
class _Cursor:
    """Server-side paging state behind an opaque ``$skiptoken``."""

    items: list[dict[str, Any]]
    position: int
    size: int
    path: str
    delta_seq: int | None = None  # delta rounds: the deltaLink's sequence once the last page is served
    delta_kind: str | None = None
    select: str | None = None


@dataclass
class _DeltaState:
    kind: str  # "users" | "groups"
    seq: int
    issued_at: float
    select: str | None
    generation: int


@dataclass
class FakeGraph:
    """One tenant. ``handle`` answers both the token endpoint and Graph (route both hosts to it)."""

    tenant_id: str = TENANT_ID
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    verified_domains: set[str] = field(default_factory=lambda: {"example.com"})
    extension_properties: set[str] = field(default_factory=set)
    granted: set[str] = field(default_factory=lambda: set(ALL_PERMISSIONS))
    token_lifetime: float = 3599.0
    delta_lifetime: float = 7 * 24 * 3600.0
    delta_page_size: int = 200

    def __post_init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.managers: dict[str, str] = {}  # user id -> manager id
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.tokens: dict[str, float] = {}  # access token -> expires at (fake clock)
        self.skew = 0.0
        self.token_requests = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of every Graph request, sub-requests too
        self.http_calls: list[tuple[str, str]] = []  # (method, path) of the HTTP requests that reached Graph
        self._cursors: dict[str, _Cursor] = {}
        self._deltas: dict[str, _DeltaState] = {}
        self._log: list[tuple[int, str, str, Any]] = []  # (seq, kind, object id, what changed)
        self._seq = itertools.count(1)
        self._generation = 0
        self._throttles: list[tuple[int, float, Callable[[str, str], bool]]] = []

    # -------------------------------------------------------------------------------- test controls

    def now(self) -> float:
        return time.time() + self.skew

    def advance(self, seconds: float) -> None:
        """Move the fake's clock on (tokens and delta links age; the connector's clock is not touched)."""
        self.skew += seconds

    def revoke_tokens(self) -> None:
        self.tokens.clear()

    def reset_delta(self) -> None:
        """A service-side reset: every delta link handed out so far answers 410 Gone."""
        self._generation += 1

    def throttle(
        self, count: int = 1, retry_after: float = 2.0, when: Callable[[str, str], bool] | None = None
    ) -> None:
        """The next ``count`` requests (method, path) matching ``when`` answer 429 with ``Retry-After``."""
        self._throttles.append((count, retry_after, when or (lambda _m, _p: True)))

    def add_user(self, **properties: Any) -> dict[str, Any]:
        """Seed a user directly (no permission check); returns the stored object."""
        user = {"id": str(uuid.uuid4()), "accountEnabled": True, "signInActivity": None, **properties}
        user.setdefault("displayName", user.get("userPrincipalName", "user"))
        user.setdefault("mailNickname", str(user.get("userPrincipalName", "user")).split("@")[0])
        self.users[user["id"]] = user
        self._changed("users", user["id"], set(user))
        return user

    def add_group(self, name: str) -> dict[str, Any]:
        group = {"id": str(uuid.uuid4()), "displayName": name, "securityEnabled": True, "mailEnabled": False}
        self.groups[group["id"]] = group
        self.members[group["id"]] = []
        self._changed("groups", group["id"], {"displayName"})
        return group

    def count(self, method: str, path_prefix: str) -> int:
        """HTTP requests that reached Graph with this method and path prefix (after ``/v1.0/``)."""
        return sum(1 for m, p in self.http_calls if m == method and p.startswith(path_prefix))

    # -------------------------------------------------------------------------------- dispatch

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "login.microsoftonline.com":
            return self._token(request)
        if request.url.host != "graph.microsoft.com" or not request.url.path.startswith("/v1.0/"):
            return odata_error(404, "UnknownError", "not a Graph v1.0 URL")
        path = request.url.path.removeprefix("/v1.0/")
        self.http_calls.append((request.method, path))
        denied = self._check_token(request.headers.get("Authorization", ""))
        if denied is not None:
            return denied
        body = json.loads(request.content) if request.content else None
        params = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
        if path == "$batch" and request.method == "POST":
            throttled = self._throttled(request.method, path)
            return throttled or self._batch(body)
        return self.dispatch(request.method, path, params, body, request.headers)

    def dispatch(
        self, method: str, path: str, params: dict[str, str], body: Any, headers: Any
    ) -> httpx.Response:
        self.requests.append((method, path))
        throttled = self._throttled(method, path)
        if throttled is not None:
            return throttled
        try:
            return self._route(method, [p for p in path.split("/") if p], params, body, headers)
        except _Fail as failure:
            return failure.response

    def _throttled(self, method: str, path: str) -> httpx.Response | None:
        for n, (count, retry_after, when) in enumerate(self._throttles):
            if when(method, path):
                if count <= 1:
                    del self._throttles[n]
                else:
                    self._throttles[n] = (count - 1, retry_after, when)
                return odata_error(
                    429,
                    "TooManyRequests",
                    "Please retry again later.",
                    headers={"Retry-After": str(int(retry_after))},
                )
        return None

    def _check_token(self, header: str) -> httpx.Response | None:
        if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
            return odata_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        expires = self.tokens.get(header.removeprefix("Bearer ").strip())
        if expires is None or self.now() >= expires:
            return odata_error(
                401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid."
            )
        return None

    def _need(self, kind: str) -> None:
        if not (NEEDS[kind] & self.granted):
            raise _fail(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )

    # -------------------------------------------------------------------------------- token endpoint

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests += 1

        def oauth_error(status: int, error: str, description: str) -> httpx.Response:
            return httpx.Response(
                status,
                json={
                    "error": error,
                    "error_description": description,
                    "error_codes": [int(description[6:].split(":")[0])],
                    "trace_id": str(uuid.uuid4()),
                },
            )

        if request.method != "POST" or request.url.path != f"/{self.tenant_id}/oauth2/v2.0/token":
            return oauth_error(400, "invalid_request", "AADSTS9000211: The tenant or endpoint is not known.")
        form = dict(parse_qsl(request.content.decode()))
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "AADSTS7000218: grant_type must be given.")
        if form.get("client_id") != self.client_id:
            return oauth_error(
                400, "unauthorized_client", "AADSTS7000700: Application was not found in the directory."
            )
        if form.get("client_secret") != self.client_secret:
            return oauth_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        if form.get("scope") != "https://graph.microsoft.com/.default":
            return oauth_error(
                400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid."
            )
        token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
        self.tokens[token] = self.now() + self.token_lifetime
        lifetime = int(self.token_lifetime)
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    # -------------------------------------------------------------------------------- routing

    def _route(
        self, method: str, parts: list[str], params: dict[str, str], body: Any, headers: Any
    ) -> httpx.Response:
        if "$skiptoken" in params:
            return self._next_page(params["$skiptoken"], "/".join(parts))
        if parts[:1] == ["users"]:
            if parts == ["users", "delta"] and method == "GET":
                self._need("read_users")
                return self._delta("users", params)
            if len(parts) == 1:
                if method == "GET":
                    self._need("read_users")
                    return self._list_users(params)
                if method == "POST":
                    self._need("write_users")
                    return self._create_user(body)
            user = self._get(self.users, parts[1], "user")
            if len(parts) == 2:
                if method == "GET":
                    self._need("read_users")
                    return httpx.Response(200, json=self._user_view(user, params))
                if method == "PATCH":
                    self._need("write_users")
                    return self._update_user(user, body)
                if method == "DELETE":
                    self._need("write_users")
                    return self._delete_user(user)
            if parts[2:] == ["manager", "$ref"]:
                self._need("write_users")
                return self._manager_ref(user, method, body)
            if parts[2:] == ["revokeSignInSessions"] and method == "POST":
                self._need("revoke")
                return httpx.Response(200, json={"value": True})
        if parts[:1] == ["groups"]:
            if parts == ["groups", "delta"] and method == "GET":
                self._need("read_groups")
                return self._delta("groups", params)
            if len(parts) == 1 and method == "GET":
                self._need("read_groups")
                items = [
                    self._project(g, params.get("$select"), {"id", "displayName"})
                    for g in self.groups.values()
                ]
                return self._page(items, params, "groups")
            if len(parts) == 1 and method == "POST":
                self._need("write_groups")
                return self._create_group(body)
            group = self._get(self.groups, parts[1], "group")
            if parts[2:] == ["members"] and method == "GET":
                self._need("read_groups")
                items = [
                    {
                        "@odata.type": "#microsoft.graph.user",
                        **self._project(self.users[m], params.get("$select"), {"id"}),
                    }
                    for m in self.members[group["id"]]
                    if m in self.users
                ]
                return self._page(items, params, f"groups/{group['id']}/members")
            if parts[2:] == ["members", "$ref"] and method == "POST":
                self._need("write_members")
                return self._add_member(group, body)
            if len(parts) == 5 and parts[2] == "members" and parts[4] == "$ref" and method == "DELETE":
                self._need("write_members")
                return self._remove_member(group, parts[3])
        return odata_error(400, "BadRequest", f"Resource not found for the segment '{'/'.join(parts)}'.")

    def _get(self, table: dict[str, dict[str, Any]], object_id: str, kind: str) -> dict[str, Any]:
        found = table.get(object_id)
        if found is None:
            raise _fail(
                404,
                "Request_ResourceNotFound",
                f"Resource '{object_id}' does not exist or one of its queried reference-property objects "
                "are not present.",
            )
        return found

    # -------------------------------------------------------------------------------- reading

    def _select(self, params: dict[str, str]) -> set[str] | None:
        raw = params.get("$select")
        if raw is None:
            return None
        wanted = {p.strip() for p in raw.split(",") if p.strip()}
        for prop in wanted:
            if prop not in USER_PROPS and prop not in self.extension_properties:
                raise _fail(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{prop}' on type 'microsoft.graph.user'.",
                )
        if "signInActivity" in wanted:
            self._need("sign_ins")
        return wanted

    def _project(self, obj: dict[str, Any], select: str | None, default: set[str]) -> dict[str, Any]:
        wanted = {p.strip() for p in select.split(",")} if select else default
        return {k: obj.get(k) for k in sorted(wanted | {"id"})}

    def _user_view(self, user: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        wanted = self._select(params)
        props = (wanted if wanted is not None else set(DEFAULT_USER_PROPS)) | {"id"}
        view = {k: user.get(k) for k in sorted(props)}
        expand = params.get("$expand")
        if expand:
            match = _SUB_FILTER.match(expand.replace(" ", ""))
            if expand != "manager" and not (match and match.group(1) == "manager"):
                raise _fail(400, "Request_BadRequest", f"Expanding '{expand}' is not supported.")
            manager = self.users.get(self.managers.get(user["id"], ""))
            if manager is not None:
                view["manager"] = self._user_view(manager, {"$select": match.group(2)} if match else {})
        return view

    def _top(self, params: dict[str, str]) -> int:
        raw = params.get("$top")
        if raw is None:
            return DEFAULT_PAGE
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
            raise _fail(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{raw}'. Must be between 1 and 999 inclusive.",
            )
        return int(raw)

    def _list_users(self, params: dict[str, str]) -> httpx.Response:
        users = list(self.users.values())
        if "$filter" in params:
            match = _EQ_FILTER.match(params["$filter"])
            if not match:
                raise _fail(400, "Request_UnsupportedQuery", "Unsupported query.")
            prop, literal = match.group(1), match.group(2).replace("''", "'")
            if prop not in FILTERABLE_EQ and prop not in self.extension_properties:
                raise _fail(
                    400,
                    "Request_UnsupportedQuery",
                    f"Unsupported or invalid query filter clause specified for property '{prop}' of resource 'User'.",
                )
            if prop in ("userPrincipalName", "mail"):
                users = [u for u in users if str(u.get(prop) or "").casefold() == literal.casefold()]
            else:
                users = [u for u in users if u.get(prop) == literal]
        views = [self._user_view(u, params) for u in users]
        return self._page(views, params, "users")

    def _page(self, items: list[dict[str, Any]], params: dict[str, str], path: str) -> httpx.Response:
        size = self._top(params)
        return self._serve(_Cursor(items, 0, size, path))

    def _serve(self, cursor: _Cursor) -> httpx.Response:
        chunk = cursor.items[cursor.position : cursor.position + cursor.size]
        cursor.position += len(chunk)
        body: dict[str, Any] = {"@odata.context": f"{GRAPH_BASE}$metadata#{cursor.path}", "value": chunk}
        if cursor.position < len(cursor.items):
            token = secrets.token_urlsafe(24)
            self._cursors[token] = cursor
            body["@odata.nextLink"] = f"{GRAPH_BASE}{cursor.path}?$skiptoken={token}"
        elif cursor.delta_kind is not None:
            body["@odata.deltaLink"] = self._delta_link(
                cursor.delta_kind, cursor.delta_seq or 0, cursor.select
            )
        return httpx.Response(200, json=body)

    def _next_page(self, token: str, path: str) -> httpx.Response:
        cursor = self._cursors.pop(token, None)
        if cursor is None or cursor.path != path:
            raise _fail(
                400, "Request_BadRequest", "The specified page token value has expired or is invalid."
            )
        return self._serve(cursor)

    # -------------------------------------------------------------------------------- writing users

    def _check_upn(self, upn: Any) -> None:
        if not isinstance(upn, str) or upn.count("@") != 1:
            raise _fail(400, "Request_BadRequest", "Property userPrincipalName is invalid.")
        local, domain = upn.split("@")
        if not local or not UPN_LOCAL.match(local) or local.startswith(".") or local.endswith("."):
            raise _fail(400, "Request_BadRequest", "Property userPrincipalName is invalid.")
        if domain.casefold() not in {d.casefold() for d in self.verified_domains}:
            raise _fail(
                400,
                "Request_BadRequest",
                "The domain portion of the userPrincipalName property is invalid. You must use one of the "
                "verified domain names in your organization.",
            )

    def _upn_taken(self, upn: str, except_id: str | None = None) -> None:
        for other in self.users.values():
            if (
                other["id"] != except_id
                and str(other.get("userPrincipalName", "")).casefold() == upn.casefold()
            ):
                raise _fail(
                    400,
                    "Request_BadRequest",
                    "Another object with the same value for property userPrincipalName already exists.",
                )

    def _check_props(self, body: dict[str, Any]) -> None:
        for key in body:
            if key not in WRITABLE_USER_PROPS and key not in self.extension_properties:
                raise _fail(
                    400,
                    "Request_BadRequest",
                    f"Property '{key}' does not exist as a declared property or extension property.",
                )

    def _create_user(self, body: Any) -> httpx.Response:
        if not isinstance(body, dict):
            raise _fail(400, "BadRequest", "Empty Payload. JSON content expected.")
        for required in ("accountEnabled", "displayName", "mailNickname", "userPrincipalName"):
            if body.get(required) in (None, ""):
                raise _fail(
                    400,
                    "Request_BadRequest",
                    f"Invalid value specified for property '{required}' of resource 'User'.",
                )
        password = (body.get("passwordProfile") or {}).get("password")
        if not isinstance(password, str) or len(password) < 8:
            raise _fail(
                400,
                "Request_BadRequest",
                "Invalid value specified for property 'passwordProfile' of resource 'User'.",
            )
        self._check_props(body)
        self._check_upn(body["userPrincipalName"])
        self._upn_taken(body["userPrincipalName"])
        user = {k: v for k, v in body.items() if k != "passwordProfile"}
        user |= {
            "id": str(uuid.uuid4()),
            "signInActivity": None,
            "createdDateTime": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.users[user["id"]] = user
        self._changed("users", user["id"], set(user))
        return httpx.Response(201, json={k: user.get(k) for k in ("id", *DEFAULT_USER_PROPS)})

    def _update_user(self, user: dict[str, Any], body: Any) -> httpx.Response:
        if not isinstance(body, dict):
            raise _fail(400, "BadRequest", "Empty Payload. JSON content expected.")
        self._check_props(body)
        if "userPrincipalName" in body:
            self._check_upn(body["userPrincipalName"])
            self._upn_taken(body["userPrincipalName"], except_id=user["id"])
        changed = {k for k, v in body.items() if k != "passwordProfile" and user.get(k) != v}
        for key, value in body.items():
            if key == "passwordProfile":
                continue
            if value is None:
                user.pop(key, None)
            else:
                user[key] = value
        if changed:
            self._changed("users", user["id"], changed)
        return httpx.Response(204)

    def _delete_user(self, user: dict[str, Any]) -> httpx.Response:
        del self.users[user["id"]]
        self.managers.pop(user["id"], None)
        for group_id, members in self.members.items():
            if user["id"] in members:
                members.remove(user["id"])
                self._changed("groups", group_id, ("member", user["id"]))
        self._changed("users", user["id"], "removed")
        return httpx.Response(204)

    def _referenced(self, body: Any) -> str:
        ref = body.get("@odata.id") if isinstance(body, dict) else None
        prefixes = (f"{GRAPH_BASE}directoryObjects/", f"{GRAPH_BASE}users/")
        if not isinstance(ref, str) or not ref.startswith(prefixes):
            raise _fail(400, "Request_BadRequest", "Invalid object identifier in '@odata.id'.")
        object_id = ref.rsplit("/", 1)[1]
        if object_id not in self.users:
            raise _fail(
                404,
                "Request_ResourceNotFound",
                f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
            )
        return object_id

    def _manager_ref(self, user: dict[str, Any], method: str, body: Any) -> httpx.Response:
        if method == "PUT":
            manager_id = self._referenced(body)
            if manager_id == user["id"]:
                raise _fail(400, "Request_BadRequest", "A user cannot be their own manager.")
            if self.managers.get(user["id"]) != manager_id:
                self.managers[user["id"]] = manager_id
                self._changed("users", user["id"], {"manager"})
            return httpx.Response(204)
        if method == "DELETE":
            if user["id"] not in self.managers:
                raise _fail(404, "Request_ResourceNotFound", "Resource 'manager' does not exist.")
            del self.managers[user["id"]]
            self._changed("users", user["id"], {"manager"})
            return httpx.Response(204)
        return odata_error(405, "Request_BadRequest", "Method not allowed.")

    # -------------------------------------------------------------------------------- groups

    def _create_group(self, body: Any) -> httpx.Response:
        if not isinstance(body, dict):
            raise _fail(400, "BadRequest", "Empty Payload. JSON content expected.")
        for required in ("displayName", "mailEnabled", "mailNickname", "securityEnabled"):
            if body.get(required) is None:
                raise _fail(
                    400,
                    "Request_BadRequest",
                    f"Invalid value specified for property '{required}' of resource 'Group'.",
                )
        group = self.add_group(body["displayName"])
        return httpx.Response(201, json=group)

    def _add_member(self, group: dict[str, Any], body: Any) -> httpx.Response:
        member = self._referenced(body)
        members = self.members[group["id"]]
        if member in members:
            raise _fail(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            )
        members.append(member)
        self._changed("groups", group["id"], ("member", member))
        return httpx.Response(204)

    def _remove_member(self, group: dict[str, Any], member: str) -> httpx.Response:
        members = self.members[group["id"]]
        if member not in members:
            raise _fail(
                404,
                "Request_ResourceNotFound",
                f"Resource '{member}' does not exist or one of its queried reference-property objects are not present.",
            )
        members.remove(member)
        self._changed("groups", group["id"], ("member", member))
        return httpx.Response(204)

    # -------------------------------------------------------------------------------- delta

    def _changed(self, kind: str, object_id: str, what: Any) -> None:
        self._log.append((next(self._seq), kind, object_id, what))

    def _current_seq(self) -> int:
        return self._log[-1][0] if self._log else 0

    def _delta_link(self, kind: str, seq: int, select: str | None) -> str:
        token = secrets.token_urlsafe(24)
        self._deltas[token] = _DeltaState(kind, seq, self.now(), select, self._generation)
        return f"{GRAPH_BASE}{kind}/delta?$deltatoken={token}"

    def _delta(self, kind: str, params: dict[str, str]) -> httpx.Response:
        token = params.get("$deltatoken")
        if token == "latest":
            body = {
                "value": [],
                "@odata.deltaLink": self._delta_link(kind, self._current_seq(), params.get("$select")),
            }
            return httpx.Response(200, json=body)
        if token is None:
            if kind == "users" and params.get("$select"):
                self._select(params)
            items = [
                self._delta_object(kind, oid, None, params.get("$select"), initial=True)
                for oid in self._table(kind)
            ]
            cursor = _Cursor(
                items,
                0,
                self.delta_page_size,
                f"{kind}/delta",
                self._current_seq(),
                kind,
                params.get("$select"),
            )
            return self._serve(cursor)
        state = self._deltas.get(token)
        if state is None or state.kind != kind:
            raise _fail(400, "Request_BadRequest", "The delta token is invalid.")
        if state.generation != self._generation:
            return httpx.Response(
                410,
                headers={"Location": f"{GRAPH_BASE}{kind}/delta"},
                json={
                    "error": {"code": "resyncRequired", "message": "Resync required. Replace any local data."}
                },
            )
        if self.now() - state.issued_at > self.delta_lifetime:
            raise _fail(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
            )
        touched: dict[str, Any] = {}  # object id -> "removed" or the set of changed properties / (member, id)
        for seq, log_kind, object_id, what in self._log:
            if seq <= state.seq or log_kind != kind:
                continue
            if what == "removed":
                touched[object_id] = "removed"
                continue
            bucket = touched.setdefault(object_id, set())
            if isinstance(bucket, set):
                bucket.update(what if isinstance(what, set) else {what})
        items = [
            self._delta_object(kind, oid, what, state.select, initial=False) for oid, what in touched.items()
        ]
        cursor = _Cursor(
            items, 0, self.delta_page_size, f"{kind}/delta", self._current_seq(), kind, state.select
        )
        return self._serve(cursor)

    def _table(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.users if kind == "users" else self.groups

    def _delta_object(
        self, kind: str, object_id: str, what: Any, select: str | None, *, initial: bool
    ) -> dict[str, Any]:
        obj = self._table(kind).get(object_id)
        if what == "removed" or obj is None:
            return {"id": object_id, "@removed": {"reason": "changed"}}
        wanted = {p.strip() for p in select.split(",")} if select else None
        if kind == "users":
            props = (wanted or set(DEFAULT_USER_PROPS)) - {"manager"}
            if not initial:
                props &= {p for p in what if isinstance(p, str)}
            view = {"id": object_id, **{k: obj.get(k) for k in sorted(props)}}
            if initial or "manager" in what:
                manager = self.managers.get(object_id)
                if manager:
                    view["manager@delta"] = [{"@odata.type": "#microsoft.graph.user", "id": manager}]
            return view
        view = {"id": object_id}
        if initial or "displayName" in what:
            view["displayName"] = obj["displayName"]
        if wanted is None or "members" in wanted:
            if initial:
                ids = self.members[object_id]
                view["members@delta"] = [{"@odata.type": "#microsoft.graph.user", "id": m} for m in ids]
            else:
                touched = [p[1] for p in what if isinstance(p, tuple)]
                view["members@delta"] = [
                    {"@odata.type": "#microsoft.graph.user", "id": m}
                    if m in self.members[object_id]
                    else {"@odata.type": "#microsoft.graph.user", "id": m, "@removed": {"reason": "deleted"}}
                    for m in dict.fromkeys(touched)
                ]
        return view

    # -------------------------------------------------------------------------------- $batch

    def _batch(self, body: Any) -> httpx.Response:
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            return odata_error(400, "BadRequest", "Invalid batch payload format.")
        if len(requests) > MAX_BATCH:
            return odata_error(
                400, "BadRequest", f"Batch request exceeds the maximum of {MAX_BATCH} requests."
            )
        ids = [r.get("id") if isinstance(r, dict) else None for r in requests]
        if any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            return odata_error(400, "BadRequest", "Each batch request needs a unique, non-empty id.")
        seen: set[str] = set()
        for item in requests:
            for dep in item.get("dependsOn") or []:
                if dep not in seen:
                    return odata_error(
                        400, "BadRequest", f"Request '{item['id']}' depends on an unknown or later id."
                    )
            seen.add(item["id"])
        answers: dict[str, dict[str, Any]] = {}
        for item in requests:
            answers[item["id"]] = self._sub(item, answers)
        return httpx.Response(200, json={"responses": list(reversed(list(answers.values())))})

    def _sub(self, item: dict[str, Any], answers: dict[str, dict[str, Any]]) -> dict[str, Any]:
        def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
            out: dict[str, Any] = {"id": item["id"], "status": status, "headers": headers or {}}
            if body is not None:
                out["body"] = body
            return out

        if any(answers[d]["status"] >= 400 for d in item.get("dependsOn") or []):
            return answer(424, {"error": {"code": "FailedDependency", "message": "Failed dependency."}})
        method, url = str(item.get("method", "")).upper(), item.get("url")
        if not isinstance(url, str) or urlsplit(url).scheme:
            return answer(400, {"error": {"code": "BadRequest", "message": "Batch URLs must be relative."}})
        if "body" in item and "content-type" not in {k.lower() for k in (item.get("headers") or {})}:
            return answer(
                400,
                {
                    "error": {
                        "code": "BadRequest",
                        "message": f"Write request id : {item['id']} does not contain Content-Type header or body.",
                    }
                },
            )
        parts = urlsplit(url.lstrip("/"))
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        response = self.dispatch(method, parts.path, params, item.get("body"), item.get("headers") or {})
        body = response.json() if response.content else None
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() in ("retry-after", "location", "content-type")
        }
        return answer(response.status_code, body, headers)
