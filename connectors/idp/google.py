"""Identity provider over the Google Workspace Admin SDK Directory API (users, groups, members).

Google documents (developers.google.com):

- Auth: a service account with domain-wide delegation acts for an admin (``sub``): its JWT (``iss`` = the service
  account, ``sub``, ``scope``, ``aud`` = the token URI, ``iat``, ``exp`` ≤ 1 h later) is signed with its private key
  (google-auth's service account signer) and exchanged at ``token_uri`` for a bearer token
  (https://developers.google.com/identity/protocols/oauth2/service-account#delegatingauthority,
  https://developers.google.com/workspace/admin/directory/v1/guides/delegation). The admin grants the service
  account's client id the scopes :data:`DIRECTORY_SCOPES` under *Security → API controls → Domain-wide delegation*.
- Users: ``GET /admin/directory/v1/users?customer=my_customer`` (or ``domain=``), ``maxResults`` ≤ 500,
  ``pageToken``/``nextPageToken``, ``query`` (``externalId='…'``; search results can lag new data)
  (https://developers.google.com/workspace/admin/directory/reference/rest/v1/users/list,
  https://developers.google.com/workspace/admin/directory/v1/guides/search-users); ``GET /users/{userKey}`` (id,
  primary email or alias); ``POST /users`` (``primaryEmail``, ``name.givenName``, ``name.familyName``, ``password``
  required; a taken address is ``409``); ``PATCH /users/{userKey}`` (a list such as ``organizations`` is replaced
  whole, so the connector merges into what it read); ``DELETE /users/{userKey}``
  (…/reference/rest/v1/users). ``suspended`` disables an account; leavers may also move to ``leaver_ou``
  (``orgUnitPath``).
- Groups: ``GET /groups?customer=…`` (``maxResults`` ≤ 200), ``GET /groups/{groupKey}/members`` (``maxResults`` ≤ 200),
  ``POST /groups/{groupKey}/members`` (``409`` "Member already exists"), ``DELETE /groups/{groupKey}/members/{memberKey}``
  (https://developers.google.com/workspace/admin/directory/reference/rest/v1/members/list, …/members/insert,
  …/members/delete).
- Limits: ``403`` with reason ``userRateLimitExceeded``/``rateLimitExceeded``/``quotaExceeded``, ``429`` and ``503`` come
  without Retry-After: retried with exponential backoff by the shared layer (``connectors.http``)
  (https://developers.google.com/workspace/admin/directory/v1/limits).
- Errors: ``{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}``.

Mapping: ``primaryEmail`` = user_name; the employee id is ``externalIds[type=organization]`` (the Admin console's
"Employee ID"; the User resource has no ``organizations[].employeeId``); ``name.givenName``/``familyName``/
``displayName``; the primary ``organizations`` entry's ``title``/``department``; ``relations[type=manager]`` holds
the manager's *email*, mapped to and from the manager's employee id; ``email`` is a ``work`` address in ``emails``
when it differs from the primary one; ``suspended`` = not active; ``lastLoginTime`` → last_sign_in (the epoch
means never). A user without an employee id reads back with ``employee_id == ""`` and is never matched by name.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import google.auth.jwt
from google.oauth2 import service_account

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    InvalidRecordError,
    NotFoundError,
    ResponseValidationError,
)
from connectors.http import APIClient, ClosesAPI, LoopGuard, create_idempotently, json_body
from connectors.idp.fallback import create_one_by_one, one_by_one
from connectors.oauth import BearerTokenAuth
from models.domain import Account, AccountAttributes, Group

__all__ = [
    "DIRECTORY_SCOPES",
    "GoogleWorkspaceIdentityProvider",
    "ServiceAccountAssertion",
    "query_value",
]

log = logging.getLogger("tenure.idp.google")

DIRECTORY_SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user",
    "https://www.googleapis.com/auth/admin.directory.group",
    "https://www.googleapis.com/auth/admin.directory.group.member",
)
API = "admin/directory/v1"
MAX_USERS_PAGE = 500
MAX_GROUPS_PAGE = 200
EMPLOYEE_ID_TYPE = "organization"
NEVER = "1970-01-01T00:00:00"
ASSERTION_LIFETIME = 3600


class ServiceAccountAssertion:
    """Signs the JWT bearer assertion for a service account acting as ``subject`` (google-auth's signer)."""

    def __init__(
        self,
        credentials: service_account.Credentials,
        *,
        subject: str,
        scopes: tuple[str, ...],
        token_uri: str,
        secrets: list[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credentials = credentials
        self.subject = subject
        self.scopes = scopes
        self.token_uri = token_uri
        self.secrets = secrets
        self._clock = clock

    def __repr__(self) -> str:
        return f"ServiceAccountAssertion(subject={self.subject!r}, key=***)"

    @classmethod
    def from_file(cls, path: Path, *, subject: str, scopes: tuple[str, ...]) -> Self:
        """Read a service account JSON key; a bad file is a ValueError naming the setting, never its content."""
        setting = "TENURE_IDP__CREDENTIALS_FILE"
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{setting} cannot be read ({type(exc).__name__}): {path}") from None
        except ValueError:
            raise ValueError(f"{setting} is not a JSON service account key: {path}") from None
        if not isinstance(info, dict) or info.get("type") != "service_account":
            raise ValueError(f'{setting} is not a service account key ("type": "service_account"): {path}')
        try:
            credentials = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(scopes)
            )
        except (ValueError, KeyError, TypeError):
            raise ValueError(
                f"{setting} lacks a usable client_email, token_uri or private_key: {path}"
            ) from None
        found = [str(info.get("private_key") or ""), str(info.get("private_key_id") or "")]
        return cls(
            credentials,
            subject=subject,
            scopes=scopes,
            token_uri=str(info["token_uri"]),
            secrets=[s for s in found if s],
        )

    def sign(self) -> str:
        """A fresh assertion: ``iss``, ``sub``, ``scope``, ``aud``, ``iat``, ``exp`` (one hour), RS256 with ``kid``."""
        now = int(self._clock())
        payload = {
            "iss": self._credentials.service_account_email,
            "sub": self.subject,
            "scope": " ".join(self.scopes),
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        }
        signed: bytes = google.auth.jwt.encode(self._credentials.signer, payload)  # type: ignore[no-untyped-call]
        return signed.decode("ascii")


def query_value(value: str) -> str:
    """A value for the ``query`` search syntax: single-quoted, ``\\`` and ``'`` escaped with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _seg(value: str) -> str:
    return quote(value, safe="")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith(NEVER):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _initial_password() -> str:
    """A random password (8..100 characters per users.insert), never stored; changed at first sign-in."""
    return "".join(secrets.choice(string.ascii_letters + string.digits + "!#%+-=?_~") for _ in range(24))


def _employee_id(user: dict[str, Any]) -> str:
    for item in user.get("externalIds") or []:
        if isinstance(item, dict) and item.get("type") == EMPLOYEE_ID_TYPE and item.get("value"):
            return str(item["value"])
    return ""


def _organization(user: dict[str, Any]) -> dict[str, Any]:
    orgs = [o for o in user.get("organizations") or [] if isinstance(o, dict)]
    return next((o for o in orgs if o.get("primary")), orgs[0] if orgs else {})


def _manager_email(user: dict[str, Any]) -> str | None:
    for item in user.get("relations") or []:
        if isinstance(item, dict) and item.get("type") == "manager" and item.get("value"):
            return str(item["value"])
    return None


class GoogleWorkspaceIdentityProvider(ClosesAPI):
    """:class:`connectors.protocols.IdentityProvider` over the Admin SDK Directory API."""

    def __init__(
        self,
        api: APIClient,
        *,
        auth: BearerTokenAuth | None = None,
        source: str = "google",
        customer: str = "my_customer",
        domain: str | None = None,
        leaver_ou: str | None = None,
    ) -> None:
        self.api = api
        self.auth = auth
        self.source = source
        self.customer = customer
        self.domain = domain
        self.leaver_ou = leaver_ou
        self._emails: dict[str, str] = {}  # manager email -> employee id, filled while reading

    def __repr__(self) -> str:
        return f"GoogleWorkspaceIdentityProvider(source={self.source!r}, api={self.api!r})"

    async def aclose(self) -> None:
        await self.api.aclose()
        if self.auth is not None:
            await self.auth.aclose()

    # ----------------------------------------------------------------------------------------- transport

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self.api.request(method, f"{API}/{url}", **kwargs)
        except AuthenticationError as exc:
            if exc.status_code == 403 and exc.code in ("forbidden", "insufficientPermissions"):
                raise self.api.scrub(
                    AuthenticationError(
                        "Google refused the call: grant the service account's client id domain-wide delegation "
                        f"for {', '.join(DIRECTORY_SCOPES)}, and make the subject an admin who may manage "
                        "users and groups",
                        source=self.source,
                        status_code=403,
                        code=exc.code,
                    )
                ) from None
            raise
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return json_body(response, source=self.source)
        except ConnectorError as exc:
            raise self.api.scrub(exc) from exc.__cause__

    def _scope(self) -> dict[str, str]:
        return (
            {"domain": self.domain}
            if self.domain and self.customer == "my_customer"
            else {"customer": self.customer}
        )

    async def _pages(self, url: str, key: str, params: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        """Every page of a list, following ``nextPageToken`` with loop detection."""
        guard = LoopGuard(self.source)
        token: str | None = None
        while True:
            page = await self._json("GET", url, params={**params, **({"pageToken": token} if token else {})})
            if not isinstance(page, dict):
                raise ResponseValidationError(
                    "Directory API list answer is not an object", source=self.source
                )
            items = page.get(key) or []  # an empty list leaves the key out
            if not isinstance(items, list):
                raise ResponseValidationError(f"Directory API '{key}' is not a list", source=self.source)
            if items:
                yield [i for i in items if isinstance(i, dict)]
            token = page.get("nextPageToken")
            if not token:
                return
            guard.check(token)

    # ----------------------------------------------------------------------------------------- mapping

    def _remember(self, user: dict[str, Any]) -> None:
        if isinstance(user.get("primaryEmail"), str):
            self._emails[user["primaryEmail"].casefold()] = _employee_id(user)

    async def _manager_employee_id(self, email: str | None) -> str | None:
        if not email:
            return None
        key = email.casefold()
        if key not in self._emails:
            try:
                self._remember(await self._user(email))
            except NotFoundError:
                self._emails[key] = ""
        return self._emails[key] or None

    def _account(self, user: dict[str, Any], manager_id: str | None) -> Account:
        if not isinstance(user.get("id"), str):
            raise ResponseValidationError("Directory API user lacks an id", source=self.source)
        raw_name = user.get("name")
        name: dict[str, Any] = raw_name if isinstance(raw_name, dict) else {}
        org = _organization(user)
        primary = str(user.get("primaryEmail") or "")
        work = next(
            (
                e.get("address")
                for e in user.get("emails") or []
                if isinstance(e, dict)
                and e.get("type") == "work"
                and not e.get("primary")
                and e.get("address")
            ),
            None,
        )

        def text(value: Any) -> str | None:
            return str(value) if value not in (None, "") else None

        return Account(
            id=user["id"],
            user_name=primary,
            employee_id=_employee_id(user),
            given_name=text(name.get("givenName")),
            family_name=text(name.get("familyName")),
            display_name=text(name.get("displayName")),
            email=work or text(primary),
            title=text(org.get("title")),
            department=text(org.get("department")),
            manager_id=manager_id,
            active=not user.get("suspended") and not user.get("archived"),
            last_sign_in=_parse_time(user.get("lastLoginTime")),
        )

    async def account(self, user: dict[str, Any]) -> Account:
        """Our Account for a Directory API user (the manager's email resolved to their employee id)."""
        self._remember(user)
        return self._account(user, await self._manager_employee_id(_manager_email(user)))

    # ----------------------------------------------------------------------------------------- users

    async def _user(self, user_key: str) -> dict[str, Any]:
        data = await self._json("GET", f"users/{_seg(user_key)}", params={"projection": "full"})
        if not isinstance(data, dict):
            raise ResponseValidationError("Directory API user is not an object", source=self.source)
        return data

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None:
        """``query=externalId='…'``, then only users whose ``organization`` external id equals it exactly."""
        if not employee_id:
            return None
        params = {
            **self._scope(),
            "query": f"externalId={query_value(employee_id)}",
            "maxResults": MAX_USERS_PAGE,
        }
        found = [
            u
            async for page in self._pages("users", "users", {**params, "projection": "full"})
            for u in page
            if _employee_id(u) == employee_id
        ]
        if len(found) > 1:
            raise ConflictError(
                f"{len(found)} Google users carry one employee id; link them by hand", source=self.source
            )
        return await self.account(found[0]) if found else None

    async def find_user_by_username(self, user_name: str) -> Account | None:
        """``GET /users/{primaryEmail}``; an alias answering for another primary address is not a match."""
        if "@" not in user_name or user_name.strip(".") in ("", "@"):
            return None
        try:
            user = await self._user(user_name)
        except NotFoundError:
            return None
        if str(user.get("primaryEmail", "")).casefold() != user_name.casefold():
            return None
        return await self.account(user)

    async def iter_users(self, *, page_size: int = MAX_USERS_PAGE) -> AsyncIterator[list[Account]]:
        """Every user, ``maxResults`` ≤ 500. All pages are read first, so each manager's email resolves to an
        employee id without a look-up per user; managers outside the listing are looked up once each."""
        params = {**self._scope(), "maxResults": max(1, min(page_size, MAX_USERS_PAGE)), "projection": "full"}
        pages = [page async for page in self._pages("users", "users", params)]
        for page in pages:
            for user in page:
                self._remember(user)
        for page in pages:
            yield [await self.account(u) for u in page]

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """``lastLoginTime`` (the epoch means never)."""
        return _parse_time((await self._user(account_id)).get("lastLoginTime"))

    async def _manager_relations(self, manager_employee_id: str | None) -> list[dict[str, str]]:
        if not manager_employee_id:
            return []
        manager = await self.find_user_by_employee_id(manager_employee_id)
        if manager is None:
            raise NotFoundError(
                "the manager's employee id matches no Google user", source=self.source, status_code=404
            )
        return [{"type": "manager", "value": manager.user_name}]

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """``POST /users``, idempotent by employee id; a taken primary address is adopted only if it carries our
        employee id. Google requires a given and a family name: without them the record fails, clearly."""
        if not attributes.given_name or not attributes.family_name:
            raise InvalidRecordError(
                "Google Workspace requires a given name and a family name",
                source=self.source,
                record_id=attributes.employee_id,
            )
        body: dict[str, Any] = {
            "primaryEmail": attributes.user_name,
            "name": {"givenName": attributes.given_name, "familyName": attributes.family_name},
            "password": _initial_password(),
            "changePasswordAtNextLogin": True,
            "suspended": not attributes.active,
            "externalIds": [{"type": EMPLOYEE_ID_TYPE, "value": attributes.employee_id}],
            "organizations": [
                {k: v for k, v in (("title", attributes.title), ("department", attributes.department)) if v}
                | {"primary": True}
            ],
            "relations": await self._manager_relations(attributes.manager_id),
        }
        if attributes.display_name:
            body["name"]["displayName"] = attributes.display_name
        if attributes.email and attributes.email.casefold() != attributes.user_name.casefold():
            body["emails"] = [{"address": attributes.email, "type": "work"}]

        async def create() -> Account:
            data = await self._json("POST", "users", json=body, retry=False)
            if not isinstance(data, dict):
                raise ResponseValidationError("Directory API answered no user", source=self.source)
            return await self.account(data)

        async def lookup() -> Account | None:
            return await self.find_user_by_employee_id(attributes.employee_id)

        try:
            return await create_idempotently(
                create,
                lookup,
                sleep=self.api.sleep,
                backoff_base=self.api.backoff_base,
                existed=Account.found,  # a look-up, not a creation (the protocol's contract)
            )
        except ConflictError as exc:  # 409: the primary address exists (search may not show a new user yet)
            holder = await self._user(attributes.user_name)
            if _employee_id(holder) != attributes.employee_id:
                whose = "a user without an employee id" if not _employee_id(holder) else "another user"
                raise ConflictError(
                    f"cannot create the user: the address is held by {whose}; link it by hand",
                    source=self.source,
                    status_code=409,
                ) from exc
            log.info("%s: adopting existing user %s for employee", self.source, holder.get("id"))
            return (await self.account(holder)).found()

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """``PATCH /users/{id}`` with only ``changes``; lists (organizations, emails, relations) are merged into
        the user as read just before, because a PATCH replaces a list whole."""
        known = {"user_name", "given_name", "family_name", "display_name", "email", "title", "department"}
        unknown = set(changes) - known - {"manager_id", "active"}
        if unknown:
            raise ValueError(f"unknown account attribute: {sorted(unknown)!r}")
        current = await self._user(account.id)
        body: dict[str, Any] = {}
        names = {"given_name": "givenName", "family_name": "familyName", "display_name": "displayName"}
        if names.keys() & changes.keys():
            body["name"] = {
                **{k: v for k, v in (current.get("name") or {}).items() if k in names.values()},
                **{names[k]: (changes[k] or "") for k in names if k in changes},
            }
        if "user_name" in changes:
            body["primaryEmail"] = changes["user_name"]
        if {"title", "department"} & changes.keys():
            orgs = [dict(o) for o in current.get("organizations") or [] if isinstance(o, dict)] or [
                {"primary": True}
            ]
            primary = next((o for o in orgs if o.get("primary")), orgs[0])
            for key in ("title", "department"):
                if key in changes:
                    primary[key] = changes[key] or ""
            body["organizations"] = orgs
        if "email" in changes:
            others = [
                e
                for e in current.get("emails") or []
                if isinstance(e, dict) and e.get("type") != "work" and not e.get("primary")
            ]
            email = changes["email"]
            extra = (
                [{"address": email, "type": "work"}] if email and email != current.get("primaryEmail") else []
            )
            body["emails"] = others + extra
        if "manager_id" in changes:
            others = [
                r
                for r in current.get("relations") or []
                if isinstance(r, dict) and r.get("type") != "manager"
            ]
            body["relations"] = others + await self._manager_relations(changes["manager_id"])
        if "active" in changes:
            body.update(self._leaving(current) if not changes["active"] else self._returning(current))
        if not body:
            return await self.account(current)
        data = await self._json("PATCH", f"users/{_seg(account.id)}", json=body, retry=True)
        return await self.account(data if isinstance(data, dict) else await self._user(account.id))

    def _leaving(self, current: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"suspended": True}
        if self.leaver_ou and current.get("orgUnitPath") != self.leaver_ou:
            body["orgUnitPath"] = self.leaver_ou
        return body

    def _returning(self, current: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"suspended": False}
        if self.leaver_ou and current.get("orgUnitPath") == self.leaver_ou:
            body["orgUnitPath"] = "/"  # back to the root org unit; policy places the rehire from there
        return body

    async def deactivate_user(self, account_id: str) -> None:
        """``suspended=true`` and, when ``leaver_ou`` is set, the move there; nothing if already done."""
        current = await self._user(account_id)
        body = self._leaving(current)
        if current.get("suspended") and len(body) == 1:
            return
        await self._json("PATCH", f"users/{_seg(account_id)}", json=body, retry=True)

    async def reactivate_user(self, account_id: str) -> None:
        """``suspended=false`` (out of ``leaver_ou``, to ``/``); nothing if already active."""
        current = await self._user(account_id)
        body = self._returning(current)
        if not current.get("suspended") and len(body) == 1:
            return
        await self._json("PATCH", f"users/{_seg(account_id)}", json=body, retry=True)

    async def delete_user(self, account_id: str) -> None:
        """``DELETE /users/{id}`` (restorable for 20 days); an already deleted user is not an error."""
        try:
            await self._json("DELETE", f"users/{_seg(account_id)}")
        except NotFoundError:
            log.info("%s: user %s was already deleted", self.source, account_id)

    # ----------------------------------------------------------------------------------------- groups

    async def list_groups(self) -> list[Group]:
        """Every group (its ``name`` is what policy uses) with its member ids."""
        groups: list[Group] = []
        async for page in self._pages("groups", "groups", {**self._scope(), "maxResults": MAX_GROUPS_PAGE}):
            for item in page:
                if not isinstance(item.get("id"), str):
                    raise ResponseValidationError("Directory API group lacks an id", source=self.source)
                members = frozenset(await self.list_members(item["id"]))
                groups.append(Group(id=item["id"], name=str(item.get("name") or ""), member_ids=members))
        return groups

    async def list_members(self, group_id: str) -> set[str]:
        """``GET /groups/{groupKey}/members``, all pages (``maxResults`` ≤ 200)."""
        members: set[str] = set()
        url = f"groups/{_seg(group_id)}/members"
        async for page in self._pages(url, "members", {"maxResults": MAX_GROUPS_PAGE}):
            members |= {m["id"] for m in page if isinstance(m.get("id"), str)}
        return members

    async def add_member(self, group_id: str, account_id: str) -> None:
        """``POST /groups/{groupKey}/members`` as MEMBER; "Member already exists" (409) is not an error."""
        with contextlib.suppress(ConflictError):
            await self._json(
                "POST",
                f"groups/{_seg(group_id)}/members",
                json={"id": account_id, "role": "MEMBER"},
                retry=True,  # idempotent: a repeat is the 409 above
            )

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """``DELETE /groups/{groupKey}/members/{memberKey}``; removing a non-member is not an error."""
        with contextlib.suppress(NotFoundError):
            await self._json("DELETE", f"groups/{_seg(group_id)}/members/{_seg(account_id)}")

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """One :meth:`create_user` per account (``users.insert`` creates one user per request)."""
        return await create_one_by_one(attributes, self.create_user)

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """One ``members.insert`` per member. The Directory API's only multi-write form is the multipart
        batch endpoint (``/batch/admin/directory_v1``), which this connector does not speak yet."""
        return await one_by_one(account_ids, lambda a: self.add_member(group_id, a))

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """One ``members.delete`` per member (see :meth:`add_members`)."""
        return await one_by_one(account_ids, lambda a: self.remove_member(group_id, a))
