"""Identity provider over Microsoft Graph v1.0: Microsoft Entra ID users and groups.

Microsoft documents (learn.microsoft.com):

- Auth: an app registration's client-credentials token, ``scope=https://graph.microsoft.com/.default``, from
  ``https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token``
  (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow); see
  :mod:`connectors.oauth` (cached until expiry, refreshed on 401, never logged).
- List users: ``GET /users`` with ``$select``, ``$filter``, ``$expand=manager($select=…)`` and ``$top`` between 1
  and 999; further pages only through the opaque ``@odata.nextLink``
  (https://learn.microsoft.com/en-us/graph/api/user-list, https://learn.microsoft.com/en-us/graph/paging).
  ``employeeId`` supports ``$filter`` with ``eq``; so do directory extension attributes
  (``extension_{appId}_{name}``), which is what ``employee_id_attribute`` may name instead.
- Create / update / delete: ``POST /users`` (``accountEnabled``, ``displayName``, ``mailNickname``,
  ``userPrincipalName`` and ``passwordProfile`` required; a UPN allows only ``A-Z a-z 0-9 ' . - _ ! # ^ ~`` and a
  verified domain), ``PATCH /users/{id}`` (204), ``DELETE /users/{id}``
  (https://learn.microsoft.com/en-us/graph/api/user-post-users, …/user-update, …/user-delete). A leaver is
  ``accountEnabled=false`` and, by default, ``POST /users/{id}/revokeSignInSessions``
  (https://learn.microsoft.com/en-us/graph/api/user-revokesigninsessions).
- Manager: ``PUT /users/{id}/manager/$ref`` with ``{"@odata.id": …}``, ``DELETE /users/{id}/manager/$ref``
  (https://learn.microsoft.com/en-us/graph/api/user-post-manager, …/user-delete-manager).
- Groups by ``displayName``: ``GET /groups``, ``GET /groups/{id}/members``; ``POST /groups/{id}/members/$ref``
  (adding an existing member is ``400`` "One or more added object references already exist"),
  ``DELETE /groups/{id}/members/{memberId}/$ref`` (https://learn.microsoft.com/en-us/graph/api/group-post-members,
  …/group-delete-members).
- Delta: ``GET /users/delta`` and ``GET /groups/delta`` (``members@delta``); pages through ``@odata.nextLink``
  until an ``@odata.deltaLink``, the durable cursor; ``$deltatoken=latest`` gives a link without data; removed
  objects carry ``@removed``; updated objects carry *at least* the changed properties. An expired token is
  ``400 syncStateNotFound`` (directory objects keep state for 7 days) or ``410 Gone`` (a reset): either raises
  :class:`DeltaExpired`, and the caller does a full read (https://learn.microsoft.com/en-us/graph/delta-query-overview,
  https://learn.microsoft.com/en-us/graph/delta-query-users, …/api/user-delta, …/api/group-delta).
- JSON batching (``change_members``, ``add_members``, ``remove_members``, ``update_users``, ``get_users``):
  ``POST /$batch`` with at most 20 requests; each answer has its own ``status``, ``headers`` and
  ``body`` and is judged on its own; a throttled (429) sub-request is sent again alone after its ``Retry-After``
  (https://learn.microsoft.com/en-us/graph/json-batching, https://learn.microsoft.com/en-us/graph/throttling).
  429/503 on the request itself: the shared layer honours ``Retry-After``.
- Errors: ``{"error": {"code", "message", "innerError"}}``; a missing application permission is
  ``403 Authorization_RequestDenied``, which becomes an AuthenticationError naming the permission
  (https://learn.microsoft.com/en-us/graph/errors, https://learn.microsoft.com/en-us/graph/permissions-reference).

Mapping: ``userPrincipalName`` = user_name, ``employee_id_attribute`` (default ``employeeId``) = employee id,
``givenName``/``surname``/``displayName``/``mail``/``jobTitle``/``department``, ``manager`` = the manager's
*employee id*, ``accountEnabled`` = active, ``signInActivity.lastSignInDateTime`` → last_sign_in (needs
AuditLog.Read.All and Entra ID P1). A user without an employee id reads back with ``employee_id == ""``: it is never
matched by display name or UPN, so the review reports it as an orphan.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import string
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple
from urllib.parse import quote

import httpx

from connectors.delta import DeltaExpired, DeltaPage, GroupChange, GroupDeltaPage
from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermanentAPIError,
    ResponseValidationError,
)
from connectors.http import (
    APIClient,
    ClosesAPI,
    LoopGuard,
    create_idempotently,
    json_body,
    raise_for_status,
    retry_after_seconds,
)
from connectors.idp.fallback import create_one_by_one
from connectors.oauth import BearerTokenAuth
from models.domain import Account, AccountAttributes, Group

__all__ = [
    "GRAPH_SCOPE",
    "MAX_BATCH",
    "MAX_PAGE",
    "DeltaExpired",
    "DeltaPage",
    "GroupChange",
    "GroupDeltaPage",
    "MembershipChange",
    "EntraIdentityProvider",
    "odata_string",
]

log = logging.getLogger("tenure.idp.entra")

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_PAGE = 999  # $top on /users and /groups: 1..999
MAX_BATCH = 20  # requests per $batch
FIELDS = {
    "user_name": "userPrincipalName",
    "given_name": "givenName",
    "family_name": "surname",
    "display_name": "displayName",
    "email": "mail",
    "title": "jobTitle",
    "department": "department",
}
ALREADY_MEMBER = "added object references already exist"
UPN_TAKEN = "userPrincipalName already exists"
_MAIL_NICKNAME_OK = set(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~.")

# The least-privileged application permission each kind of call needs (permissions reference).
READ_USERS = "User.Read.All"
WRITE_USERS = "User.ReadWrite.All"
READ_GROUPS = "GroupMember.Read.All (or Group.Read.All)"
WRITE_MEMBERS = "GroupMember.ReadWrite.All (or Group.ReadWrite.All)"
READ_SIGN_INS = "AuditLog.Read.All"
REVOKE_SESSIONS = "User.RevokeSessions.All (or User.ReadWrite.All)"


class MembershipChange(NamedTuple):
    """One membership write for :meth:`EntraIdentityProvider.change_members`."""

    op: Literal["add", "remove"]
    group_id: str
    account_id: str


@dataclass
class _Sub:
    """One sub-request of a ``$batch`` and how to judge its answer."""

    method: str
    url: str  # relative to the version root, e.g. "/groups/{id}/members/$ref"
    permission: str
    body: Any = None
    ok_statuses: frozenset[int] = frozenset()
    ok_marker: str | None = None  # a 400 whose message contains this is success (idempotent add)
    result: ConnectorError | None = field(default=None)
    answer: Any = None


def odata_string(value: str) -> str:
    """``value`` as an OData string literal: single-quoted, an embedded ``'`` doubled (OData ABNF, §7)."""
    return "'" + value.replace("'", "''") + "'"


def _seg(value: str) -> str:
    """An id as one URL path segment (never lets an id add a path or a query)."""
    return quote(value, safe="")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def mail_nickname(user_name: str) -> str:
    """A ``mailNickname`` from the UPN's local part (Graph forbids ``@ ( ) \\ [ ] " ; : < > ,`` and spaces)."""
    local = user_name.split("@", 1)[0]
    cleaned = "".join(c for c in local if c in _MAIL_NICKNAME_OK).strip(".")
    return cleaned[:64] or f"user{secrets.token_hex(4)}"


def initial_password() -> str:
    """A random 24-character password meeting Entra's complexity rule (never stored, never logged): the joiner
    sets their own through the helpdesk/SSPR (``forceChangePasswordNextSignIn``)."""
    alphabet = string.ascii_letters + string.digits + "!#%+-=?_~"
    core = "".join(secrets.choice(alphabet) for _ in range(20))
    return core + secrets.choice(string.ascii_uppercase) + secrets.choice(string.ascii_lowercase) + "7!"


class EntraIdentityProvider(ClosesAPI):
    """:class:`connectors.protocols.IdentityProvider` over Microsoft Graph, plus delta reads and batched
    membership writes (``change_members`` / ``add_members`` / ``remove_members``)."""

    def __init__(
        self,
        api: APIClient,
        *,
        auth: BearerTokenAuth | None = None,
        source: str = "entra",
        employee_id_attribute: str = "employeeId",
        revoke_sessions_on_leave: bool = True,
        page_size: int = MAX_PAGE,
    ) -> None:
        if not employee_id_attribute.replace("_", "").isalnum():
            raise ValueError(f"not a Graph user property: {employee_id_attribute!r}")
        self.api = api
        self.auth = auth
        self.source = source
        self.employee_id_attribute = employee_id_attribute
        self.revoke_sessions_on_leave = revoke_sessions_on_leave
        self.page_size = max(1, min(page_size, MAX_PAGE))
        self._select = ",".join(
            ["id", "accountEnabled", *FIELDS.values(), employee_id_attribute, "employeeHireDate"]
        )
        self._expand = f"manager($select=id,{employee_id_attribute})"

    def __repr__(self) -> str:
        return f"EntraIdentityProvider(source={self.source!r}, api={self.api!r})"

    async def aclose(self) -> None:
        await self.api.aclose()
        if self.auth is not None:
            await self.auth.aclose()

    # ----------------------------------------------------------------------------------------- transport

    def _denied(self, exc: ConnectorError, permission: str) -> ConnectorError:
        """A 403 Authorization_RequestDenied as an AuthenticationError that names the missing permission."""
        if exc.status_code == 403 and exc.code == "Authorization_RequestDenied":
            return self.api.scrub(
                AuthenticationError(
                    f"Microsoft Graph refused the call: the app registration lacks the application permission "
                    f"{permission} (add it and grant admin consent)",
                    source=self.source,
                    status_code=403,
                    code=exc.code,
                )
            )
        return exc

    async def _send(self, method: str, url: str, *, permission: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self.api.request(method, url, **kwargs)
        except AuthenticationError as exc:
            raise self._denied(exc, permission) from None

    async def _json(self, method: str, url: str, *, permission: str, **kwargs: Any) -> Any:
        response = await self._send(method, url, permission=permission, **kwargs)
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return json_body(response, source=self.source)
        except ConnectorError as exc:
            raise self.api.scrub(exc) from exc.__cause__

    def _own_link(self, link: Any) -> str:
        """A nextLink/deltaLink, refused unless it points at our Graph base URL (the bearer token goes with it)."""
        base = str(self.api.client.base_url)
        if not isinstance(link, str) or not link.startswith(base):
            raise ResponseValidationError(
                "Graph answered a paging link outside its base URL", source=self.source
            )
        return link

    async def _pages(
        self, url: str, params: dict[str, Any] | None, *, permission: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a collection, following the opaque ``@odata.nextLink`` with loop detection; the last
        page's ``@odata.deltaLink`` (delta queries) stays in the page for the caller."""
        guard = LoopGuard(self.source)
        next_url: str | None = url
        while next_url:
            guard.check(next_url if params is None else f"{next_url}?{sorted(params.items())}")
            page = await self._json("GET", next_url, permission=permission, params=params)
            if not isinstance(page, dict) or not isinstance(page.get("value"), list):
                raise ResponseValidationError("Graph collection answer lacks 'value'", source=self.source)
            yield page
            link = page.get("@odata.nextLink")
            next_url, params = (self._own_link(link) if link is not None else None), None

    # ----------------------------------------------------------------------------------------- mapping

    def account(self, user: Any) -> Account:
        """Our Account for a Graph user object (read with our ``$select`` and ``$expand=manager``)."""
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            raise ResponseValidationError("Graph user lacks an id", source=self.source)

        def text(key: str) -> str | None:
            value = user.get(key)
            return str(value) if value not in (None, "") else None

        manager = user.get("manager")
        manager_id = None
        if isinstance(manager, dict):
            value = manager.get(self.employee_id_attribute)
            manager_id = str(value) if value not in (None, "") else None
        sign_in = user.get("signInActivity")
        return Account(
            id=user["id"],
            user_name=text("userPrincipalName") or "",
            employee_id=text(self.employee_id_attribute) or "",
            given_name=text("givenName"),
            family_name=text("surname"),
            display_name=text("displayName"),
            email=text("mail"),
            title=text("jobTitle"),
            department=text("department"),
            manager_id=manager_id,
            active=user.get("accountEnabled") is True,
            last_sign_in=_parse_time(sign_in.get("lastSignInDateTime"))
            if isinstance(sign_in, dict)
            else None,
        )

    def _read_params(self, **extra: Any) -> dict[str, Any]:
        return {"$select": self._select, "$expand": self._expand, **extra}

    # ----------------------------------------------------------------------------------------- users

    async def _filter_users(self, expression: str) -> list[Account]:
        found: list[Account] = []
        params = self._read_params(**{"$filter": expression, "$top": self.page_size})
        async for page in self._pages("users", params, permission=READ_USERS):
            found += [self.account(u) for u in page["value"]]
        return found

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None:
        """``$filter={attribute} eq '…'`` (never a fallback on names: no employee id, no match)."""
        if not employee_id:
            return None
        found = [
            a
            for a in await self._filter_users(f"{self.employee_id_attribute} eq {odata_string(employee_id)}")
            if a.employee_id == employee_id
        ]
        if len(found) > 1:
            raise ConflictError(
                f"{len(found)} Entra users carry one {self.employee_id_attribute}; link them by hand",
                source=self.source,
            )
        return found[0] if found else None

    async def find_user_by_username(self, user_name: str) -> Account | None:
        """``$filter=userPrincipalName eq '…'``; UPNs compare case-insensitively, an exact match wins."""
        found = await self._filter_users(f"userPrincipalName eq {odata_string(user_name)}")
        exact = [a for a in found if a.user_name == user_name]
        loose = [a for a in found if a.user_name.casefold() == user_name.casefold()]
        return (exact or loose)[0] if exact or loose else None

    async def iter_users(self, *, page_size: int = MAX_PAGE) -> AsyncIterator[list[Account]]:
        """Every user (enabled or not), ``$top`` ≤ 999 per page."""
        params = self._read_params(**{"$top": max(1, min(page_size, MAX_PAGE))})
        async for page in self._pages("users", params, permission=READ_USERS):
            if page["value"]:
                yield [self.account(u) for u in page["value"]]

    async def _user(self, account_id: str, select: str | None = None) -> dict[str, Any]:
        params = {"$select": select} if select else self._read_params()
        data = await self._json("GET", f"users/{_seg(account_id)}", permission=READ_USERS, params=params)
        if not isinstance(data, dict):
            raise ResponseValidationError("Graph user is not a JSON object", source=self.source)
        return data

    async def get_users(self, account_ids: Sequence[str]) -> dict[str, Account]:
        """The accounts with these ids (e.g. the ``changed_ids`` of a delta page), 20 per ``$batch``; ids that no
        longer exist are left out."""
        query = f"$select={self._select}&$expand={self._expand}"
        subs = [
            _Sub("GET", f"/users/{_seg(i)}?{query}", READ_USERS, ok_statuses=frozenset({404}))
            for i in account_ids
        ]
        await self._run_batches(subs)
        found: dict[str, Account] = {}
        for account_id, sub in zip(account_ids, subs, strict=True):
            if sub.result is not None:
                raise sub.result
            if isinstance(sub.answer, dict) and "id" in sub.answer:
                found[account_id] = self.account(sub.answer)
        return found

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """``signInActivity.lastSignInDateTime`` (AuditLog.Read.All; Entra ID P1 or P2)."""
        data = await self._json(
            "GET",
            f"users/{_seg(account_id)}",
            permission=READ_SIGN_INS,
            params={"$select": "id,signInActivity"},
        )
        activity = data.get("signInActivity") if isinstance(data, dict) else None
        return _parse_time(activity.get("lastSignInDateTime")) if isinstance(activity, dict) else None

    def _user_body(self, attributes: AccountAttributes) -> dict[str, Any]:
        data = attributes.model_dump(exclude={"active", "employee_id", "manager_id"})
        body = {FIELDS[k]: v for k, v in data.items() if k in FIELDS and v is not None}
        display = (
            attributes.display_name
            or " ".join(p for p in (attributes.given_name, attributes.family_name) if p)
            or attributes.user_name
        )
        body.update(
            {
                "accountEnabled": attributes.active,
                "displayName": display,
                "mailNickname": mail_nickname(attributes.user_name),
                self.employee_id_attribute: attributes.employee_id,
                "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": initial_password()},
            }
        )
        return body

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """``POST /users``, idempotent by employee id; then the manager. A taken UPN is adopted only if that user
        carries our employee id; anyone else's account is refused (ConflictError)."""

        async def create() -> Account:
            data = await self._json(
                "POST", "users", permission=WRITE_USERS, json=self._user_body(attributes), retry=False
            )
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                raise ResponseValidationError(
                    "Graph answered a created user without an id", source=self.source
                )
            # The 201 body holds only the default properties (no employeeId, no accountEnabled): read it back.
            return self.account(await self._user(data["id"]))

        async def lookup() -> Account | None:
            return await self.find_user_by_employee_id(attributes.employee_id)

        try:
            account = await create_idempotently(
                create,
                lookup,
                sleep=self.api.sleep,
                backoff_base=self.api.backoff_base,
                existed=Account.found,  # a look-up, not a creation (the protocol's contract)
            )
        except PermanentAPIError as exc:
            if exc.status_code != 400 or UPN_TAKEN not in exc.message:
                raise
            holder = await self.find_user_by_username(attributes.user_name)
            if holder is None or holder.employee_id != attributes.employee_id:
                whose = (
                    "a user without an employee id" if holder and not holder.employee_id else "another user"
                )
                raise ConflictError(
                    f"cannot create the user: the userPrincipalName is held by {whose}; link it by hand",
                    source=self.source,
                    status_code=400,
                ) from exc
            log.info("%s: adopting existing user %s for employee", self.source, holder.id)
            account = holder.found()
        if attributes.manager_id and account.manager_id != attributes.manager_id:
            updated = await self.update_user(account, {"manager_id": attributes.manager_id})
            return updated.found() if account.existing else updated
        return account

    async def _set_manager(self, account_id: str, manager_employee_id: str | None) -> None:
        url = f"users/{_seg(account_id)}/manager/$ref"
        if not manager_employee_id:
            with contextlib.suppress(NotFoundError):  # no manager: nothing to remove
                await self._send("DELETE", url, permission=WRITE_USERS)
            return
        manager = await self.find_user_by_employee_id(manager_employee_id)
        if manager is None:
            raise NotFoundError(
                "the manager's employee id matches no Entra user", source=self.source, status_code=404
            )
        await self._send("PUT", url, permission=WRITE_USERS, json={"@odata.id": self._object_url(manager.id)})

    def _object_url(self, object_id: str) -> str:
        return str(self.api.client.base_url.join(f"directoryObjects/{_seg(object_id)}"))

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """``PATCH /users/{id}`` with only ``changes`` (``""`` clears a property); ``active`` is
        ``accountEnabled``; ``manager_id`` goes through ``manager/$ref``. Reads the user back."""
        unknown = set(changes) - set(FIELDS) - {"active", "manager_id"}
        if unknown:
            raise ValueError(f"unknown account attribute: {sorted(unknown)!r}")
        body = {FIELDS[k]: (v if v != "" else None) for k, v in changes.items() if k in FIELDS}
        if "active" in changes:
            body["accountEnabled"] = bool(changes["active"])
        if body:
            await self._send("PATCH", f"users/{_seg(account.id)}", permission=WRITE_USERS, json=body)
        if "active" in changes and not changes["active"] and self.revoke_sessions_on_leave:
            await self._revoke(account.id)
        if "manager_id" in changes:
            await self._set_manager(account.id, changes["manager_id"])
        return self.account(await self._user(account.id))

    async def _revoke(self, account_id: str) -> None:
        await self._send(
            "POST", f"users/{_seg(account_id)}/revokeSignInSessions", permission=REVOKE_SESSIONS, retry=True
        )

    async def deactivate_user(self, account_id: str) -> None:
        """``accountEnabled=false`` (idempotent), then revoke the refresh tokens and session cookies."""
        await self._send(
            "PATCH", f"users/{_seg(account_id)}", permission=WRITE_USERS, json={"accountEnabled": False}
        )
        if self.revoke_sessions_on_leave:
            await self._revoke(account_id)

    async def reactivate_user(self, account_id: str) -> None:
        """``accountEnabled=true`` (idempotent)."""
        await self._send(
            "PATCH", f"users/{_seg(account_id)}", permission=WRITE_USERS, json={"accountEnabled": True}
        )

    async def delete_user(self, account_id: str) -> None:
        """``DELETE /users/{id}`` (to the recycle bin for 30 days); an already deleted user is not an error."""
        try:
            await self._send("DELETE", f"users/{_seg(account_id)}", permission=WRITE_USERS)
        except NotFoundError:
            log.info("%s: user %s was already deleted", self.source, account_id)

    # ----------------------------------------------------------------------------------------- groups

    async def list_groups(self) -> list[Group]:
        """Every group (``displayName`` is the name policy uses) with its member ids."""
        groups: list[Group] = []
        params = {"$select": "id,displayName", "$top": MAX_PAGE}
        async for page in self._pages("groups", params, permission=READ_GROUPS):
            for item in page["value"]:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise ResponseValidationError("Graph group lacks an id", source=self.source)
                members = frozenset(await self.list_members(item["id"]))
                groups.append(Group(id=item["id"], name=item.get("displayName") or "", member_ids=members))
        return groups

    async def list_members(self, group_id: str) -> set[str]:
        """``GET /groups/{id}/members?$select=id``, all pages."""
        members: set[str] = set()
        params = {"$select": "id", "$top": MAX_PAGE}
        async for page in self._pages(f"groups/{_seg(group_id)}/members", params, permission=READ_GROUPS):
            members |= {
                m["id"] for m in page["value"] if isinstance(m, dict) and isinstance(m.get("id"), str)
            }
        return members

    async def add_member(self, group_id: str, account_id: str) -> None:
        """``POST /groups/{id}/members/$ref``; an existing membership is not an error."""
        try:
            await self._send(
                "POST",
                f"groups/{_seg(group_id)}/members/$ref",
                permission=WRITE_MEMBERS,
                json={"@odata.id": self._object_url(account_id)},
                retry=True,  # idempotent: a repeat is answered "already exist", which is success
            )
        except PermanentAPIError as exc:
            if exc.status_code != 400 or ALREADY_MEMBER not in exc.message:
                raise

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """``DELETE /groups/{id}/members/{memberId}/$ref``; removing a non-member is not an error."""
        with contextlib.suppress(NotFoundError):
            await self._send(
                "DELETE", f"groups/{_seg(group_id)}/members/{_seg(account_id)}/$ref", permission=WRITE_MEMBERS
            )

    # ----------------------------------------------------------------------------------------- bulk writes

    def _membership_sub(self, change: MembershipChange) -> _Sub:
        if change.op == "add":
            return _Sub(
                "POST",
                f"/groups/{_seg(change.group_id)}/members/$ref",
                WRITE_MEMBERS,
                body={"@odata.id": self._object_url(change.account_id)},
                ok_marker=ALREADY_MEMBER,
            )
        return _Sub(
            "DELETE",
            f"/groups/{_seg(change.group_id)}/members/{_seg(change.account_id)}/$ref",
            WRITE_MEMBERS,
            ok_statuses=frozenset({404}),
        )

    async def change_members(
        self, changes: Iterable[MembershipChange]
    ) -> dict[MembershipChange, ConnectorError]:
        """Apply membership changes (any groups) through ``$batch``, 20 per call. Each change is judged on its
        own; returns the ones that failed with their error (empty: all applied). Idempotent like the single
        methods: an existing membership added or a missing one removed counts as applied."""
        ordered = list(dict.fromkeys(changes))
        subs = [self._membership_sub(c) for c in ordered]
        await self._run_batches(subs)
        return {c: s.result for c, s in zip(ordered, subs, strict=True) if s.result is not None}

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """One :meth:`create_user` per account (each needs its own look-up by employee id first; a ``$batch`` of creates is not used)."""
        return await create_one_by_one(attributes, self.create_user)

    async def add_members(self, group_id: str, account_ids: Iterable[str]) -> dict[str, ConnectorError]:
        """Add many members to one group (``$batch``, 20 per call); returns the failed account ids."""
        failed = await self.change_members(MembershipChange("add", group_id, a) for a in account_ids)
        return {c.account_id: e for c, e in failed.items()}

    async def remove_members(self, group_id: str, account_ids: Iterable[str]) -> dict[str, ConnectorError]:
        """Remove many members from one group (``$batch``, 20 per call); returns the failed account ids."""
        failed = await self.change_members(MembershipChange("remove", group_id, a) for a in account_ids)
        return {c.account_id: e for c, e in failed.items()}

    async def write_memberships(
        self, changes: Sequence[tuple[str, str, bool]]
    ) -> dict[tuple[str, str, bool], ConnectorError]:
        """Membership changes of any groups — (group id, account id, add?) — in ``$batch`` calls of 20."""
        failed = await self.change_members(
            MembershipChange("add" if add else "remove", group, account) for group, account, add in changes
        )
        return {(c.group_id, c.account_id, c.op == "add"): e for c, e in failed.items()}

    async def update_users(self, updates: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, ConnectorError]:
        """Many ``PATCH /users/{id}`` through ``$batch`` (20 per call), each judged on its own: ``changes`` as for
        :meth:`update_user` without ``manager_id`` (that needs a look-up: use ``update_user``). A disabled user is
        also signed out (``revokeSignInSessions``, in the same batches). Returns the failed account ids."""
        subs: list[tuple[str, _Sub]] = []
        for account_id, changes in updates:
            unknown = set(changes) - set(FIELDS) - {"active"}
            if unknown:
                raise ValueError(f"update_users cannot write {sorted(unknown)!r}; use update_user")
            body = {FIELDS[k]: (v if v != "" else None) for k, v in changes.items() if k in FIELDS}
            if "active" in changes:
                body["accountEnabled"] = bool(changes["active"])
            subs.append((account_id, _Sub("PATCH", f"/users/{_seg(account_id)}", WRITE_USERS, body=body)))
            if "active" in changes and not changes["active"] and self.revoke_sessions_on_leave:
                revoke = _Sub(
                    "POST", f"/users/{_seg(account_id)}/revokeSignInSessions", REVOKE_SESSIONS, body={}
                )
                subs.append((account_id, revoke))
        await self._run_batches([sub for _, sub in subs])
        failed: dict[str, ConnectorError] = {}
        for account_id, sub in subs:
            if sub.result is not None:
                failed.setdefault(account_id, sub.result)
        return failed

    async def _run_batches(self, subs: list[_Sub]) -> None:
        for start in range(0, len(subs), MAX_BATCH):
            await self._batch(subs[start : start + MAX_BATCH])

    async def _batch(self, subs: list[_Sub]) -> None:
        """One ``POST /$batch`` (≤ 20 requests, independent, no dependsOn); every answer judged on its own. The
        batch is retried as a whole on 429/5xx (its requests are idempotent); a throttled sub-request is sent
        again alone after its own Retry-After."""
        requests = []
        for n, sub in enumerate(subs):
            item: dict[str, Any] = {"id": str(n), "method": sub.method, "url": sub.url}
            if sub.body is not None:
                item["body"] = sub.body
                item["headers"] = {"Content-Type": "application/json"}
            requests.append(item)
        data = await self._json(
            "POST", "$batch", permission=subs[0].permission, json={"requests": requests}, retry=True
        )
        answers = data.get("responses") if isinstance(data, dict) else None
        if not isinstance(answers, list):
            raise ResponseValidationError("Graph $batch answer lacks 'responses'", source=self.source)
        by_id = {str(a.get("id")): a for a in answers if isinstance(a, dict)}
        for n, sub in enumerate(subs):
            answer = by_id.get(str(n))
            if answer is None:
                sub.result = ResponseValidationError(
                    "Graph $batch left a request unanswered", source=self.source
                )
                continue
            await self._judge(sub, answer)

    async def _judge(self, sub: _Sub, answer: dict[str, Any]) -> None:
        status = answer.get("status")
        if not isinstance(status, int):
            sub.result = ResponseValidationError("Graph $batch answer lacks a status", source=self.source)
            return
        raw_headers = answer.get("headers")
        headers: dict[str, Any] = raw_headers if isinstance(raw_headers, dict) else {}
        body = answer.get("body")
        request = httpx.Request(sub.method, self.api.client.base_url.join(sub.url.lstrip("/")))
        response = httpx.Response(
            status, headers={str(k): str(v) for k, v in headers.items()}, json=body, request=request
        )
        if status == 429:
            wait = retry_after_seconds(response)
            await self.api.sleep(wait if wait is not None else self.api.backoff_base)
            await self._alone(sub)
            return
        sub.answer = body
        if status < 400 or status in sub.ok_statuses:
            return
        detail = self.api.redact(json.dumps(body)[:300]) if body is not None else ""
        try:
            raise_for_status(response, source=self.source, detail=detail)
        except ConnectorError as exc:
            if sub.ok_marker and status == 400 and sub.ok_marker in exc.message:
                return
            sub.result = self._denied(self.api.scrub(exc), sub.permission)

    async def _alone(self, sub: _Sub) -> None:
        """A throttled sub-request, sent again by itself (the shared layer retries it, honouring Retry-After)."""
        path, _, query = sub.url.lstrip("/").partition("?")
        kwargs: dict[str, Any] = {"json": sub.body} if sub.body is not None else {}
        if query:
            kwargs["params"] = httpx.QueryParams(query)
        try:
            response = await self._send(sub.method, path, permission=sub.permission, retry=True, **kwargs)
            sub.answer = response.json() if response.content.strip() else None
        except ConnectorError as exc:
            if exc.status_code in sub.ok_statuses or (
                sub.ok_marker and exc.status_code == 400 and sub.ok_marker in exc.message
            ):
                return
            sub.result = exc

    # ----------------------------------------------------------------------------------------- delta

    def _delta_failure(self, exc: ConnectorError) -> ConnectorError:
        if exc.status_code == 410 or exc.code in ("syncStateNotFound", "SyncStateNotFound"):
            return DeltaExpired(
                "the delta link has expired (or the service reset it): do a full read and keep the new link",
                source=self.source,
                status_code=exc.status_code,
                code=exc.code,
            )
        return exc

    async def _delta_pages(
        self, url: str, params: dict[str, Any] | None, permission: str
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async for page in self._pages(url, params, permission=permission):
                yield page
        except ConnectorError as exc:
            raise self._delta_failure(exc) from None

    async def iter_user_changes(self, delta_link: str | None = None) -> AsyncIterator[DeltaPage]:
        """``/users/delta`` from ``delta_link`` (None: the initial round, every user counts as changed). The
        last page carries the new delta link. Raises :class:`DeltaExpired` when the link has expired."""
        url, params = (
            (self._own_link(delta_link), None)
            if delta_link
            else ("users/delta", {"$select": self._select, "$expand": self._expand})
        )
        async for page in self._delta_pages(url, params, READ_USERS):
            changed: list[str] = []
            removed: list[str] = []
            for item in page["value"]:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise ResponseValidationError("Graph delta item lacks an id", source=self.source)
                (removed if "@removed" in item else changed).append(item["id"])
            link = page.get("@odata.deltaLink")
            yield DeltaPage(
                tuple(changed), tuple(removed), self._own_link(link) if link is not None else None
            )

    async def latest_user_delta_link(self) -> str:
        """A delta link for "from now on" without reading any user (``$deltatoken=latest``): take it *before* a
        full read, so nothing changed during the read is missed."""
        return await self._latest(
            "users/delta", {"$select": self._select, "$deltatoken": "latest"}, READ_USERS
        )

    async def latest_group_delta_link(self) -> str:
        """As :meth:`latest_user_delta_link`, for ``/groups/delta`` with members."""
        return await self._latest(
            "groups/delta", {"$select": "displayName,members", "$deltatoken": "latest"}, READ_GROUPS
        )

    async def _latest(self, url: str, params: dict[str, Any], permission: str) -> str:
        async for page in self._delta_pages(url, params, permission):
            if page.get("@odata.deltaLink") is not None:
                return self._own_link(page["@odata.deltaLink"])
        raise ResponseValidationError("Graph delta answer carried no deltaLink", source=self.source)

    async def iter_group_changes(self, delta_link: str | None = None) -> AsyncIterator[GroupDeltaPage]:
        """``/groups/delta`` with ``members@delta`` from ``delta_link``; last page carries the new link."""
        url, params = (
            (self._own_link(delta_link), None)
            if delta_link
            else ("groups/delta", {"$select": "displayName,members"})
        )
        async for page in self._delta_pages(url, params, READ_GROUPS):
            groups = []
            for item in page["value"]:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise ResponseValidationError("Graph delta item lacks an id", source=self.source)
                members = [m for m in item.get("members@delta") or [] if isinstance(m, dict) and "id" in m]
                groups.append(
                    GroupChange(
                        id=item["id"],
                        name=item.get("displayName"),
                        added_member_ids=frozenset(m["id"] for m in members if "@removed" not in m),
                        removed_member_ids=frozenset(m["id"] for m in members if "@removed" in m),
                        removed="@removed" in item,
                    )
                )
            link = page.get("@odata.deltaLink")
            yield GroupDeltaPage(tuple(groups), self._own_link(link) if link is not None else None)
