"""Identity provider over Okta's management API (Users, User Lifecycle and Groups APIs).

Okta documents (developer.okta.com, Okta management API reference):

- Users: ``GET /api/v1/users`` (``search`` with SCIM-like expressions such as
  ``profile.employeeNumber eq "E1"``, ``filter``, ``limit`` ≤ 200, ``after`` cursor), ``POST /api/v1/users?activate=``,
  ``GET /api/v1/users/{id}``, ``POST /api/v1/users/{id}`` (partial profile update), ``DELETE /api/v1/users/{id}``
  (https://developer.okta.com/docs/api/openapi/okta-management/management/tag/User/). Listing without ``search``
  or ``filter`` leaves out DEPROVISIONED users, so :meth:`OktaIdentityProvider.iter_users` lists them in a second
  pass with ``filter=status eq "DEPROVISIONED"``.
- Lifecycle: ``POST /api/v1/users/{id}/lifecycle/activate|deactivate|suspend|unsuspend``
  (https://developer.okta.com/docs/api/openapi/okta-management/management/tag/UserLifecycle/): activate works on
  STAGED or DEPROVISIONED users, deactivate on anyone not DEPROVISIONED, suspend on ACTIVE, unsuspend on SUSPENDED;
  a wrong state is ``400 E0000001``, so the connector reads the status first and is idempotent.
  Deactivation deprovisions the user from all apps; pass ``leaver_mode="suspend"`` for a reversible suspension.
- Groups: ``GET /api/v1/groups``, ``GET /api/v1/groups/{id}/users``, ``PUT|DELETE /api/v1/groups/{gid}/users/{uid}``
  (https://developer.okta.com/docs/api/openapi/okta-management/management/tag/Group/).
- Paging: follow the ``Link: <…>; rel="next"`` header (RFC 8288), never build cursors
  (https://developer.okta.com/docs/api/#pagination). Rate limits: ``X-Rate-Limit-Limit/-Remaining/-Reset``
  (UTC epoch seconds) on every answer, 429 when spent (https://developer.okta.com/docs/reference/rl-best-practices/);
  :class:`connectors.http.APIClient` waits for the reset.
- Errors: ``{"errorCode", "errorSummary", "errorCauses"}``; a duplicate login is ``400 E0000001`` with
  "An object with this field already exists" (https://developer.okta.com/docs/reference/error-codes/).
- Auth: ``Authorization: SSWS <API token>``.

Mapping: ``login`` = user_name, ``employeeNumber`` = employee id, ``firstName``/``lastName``/``displayName``/
``email``/``title``/``department``, ``managerId`` = the manager's *employee id* (Okta's ``managerId`` is a free
string in the base profile). ``lastLogin`` → ``last_sign_in``. Active means status ACTIVE, PROVISIONED,
RECOVERY, PASSWORD_EXPIRED or LOCKED_OUT (the account exists and may sign in); STAGED, SUSPENDED and
DEPROVISIONED are inactive. Okta's default profile requires firstName, lastName and email: leave them out and Okta
answers 400.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from connectors.errors import (
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
    next_link,
)
from connectors.idp.fallback import create_one_by_one, one_by_one
from models.domain import Account, AccountAttributes, Group

__all__ = ["OktaIdentityProvider", "okta_search_eq", "profile_from_attributes", "account_from_okta"]

log = logging.getLogger("tenure.idp.okta")

ACTIVE_STATUSES = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"})
PROFILE_FIELDS = {
    "user_name": "login",
    "employee_id": "employeeNumber",
    "given_name": "firstName",
    "family_name": "lastName",
    "display_name": "displayName",
    "email": "email",
    "title": "title",
    "department": "department",
    "manager_id": "managerId",
}
DUPLICATE_MARKER = "already exists"


def okta_search_eq(attr: str, value: str) -> str:
    """``attr eq "value"`` for Okta's ``search`` parameter, the value quoted as a JSON string so ``"`` and ``\\``
    cannot end it early (Okta's search follows the SCIM filter grammar, RFC 7644 §3.4.2.2)."""
    if not attr.replace(".", "").replace("_", "").isalnum():
        raise ValueError(f"not an Okta profile attribute: {attr!r}")
    return f"{attr} eq {json.dumps(value, ensure_ascii=False)}"


def profile_from_attributes(attributes: AccountAttributes) -> dict[str, Any]:
    """The Okta profile for a joiner (unset attributes left out)."""
    data = attributes.model_dump(exclude={"active"})
    return {PROFILE_FIELDS[k]: v for k, v in data.items() if k in PROFILE_FIELDS and v is not None}


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def account_from_okta(user: Any, *, source: str = "okta") -> Account:
    """Our Account for an Okta user object."""
    if (
        not isinstance(user, dict)
        or not isinstance(user.get("id"), str)
        or not isinstance(user.get("profile"), dict)
    ):
        raise ResponseValidationError("Okta user lacks id or profile", source=source)
    profile = user["profile"]

    def text(key: str) -> str | None:
        value = profile.get(key)
        return str(value) if value not in (None, "") else None

    return Account(
        id=user["id"],
        user_name=text("login") or "",
        employee_id=text("employeeNumber") or "",
        given_name=text("firstName"),
        family_name=text("lastName"),
        display_name=text("displayName"),
        email=text("email"),
        title=text("title"),
        department=text("department"),
        manager_id=text("managerId"),
        active=user.get("status") in ACTIVE_STATUSES,
        last_sign_in=_parse_time(user.get("lastLogin")),
    )


class OktaIdentityProvider(ClosesAPI):
    """:class:`connectors.protocols.IdentityProvider` over the Okta management API."""

    def __init__(
        self,
        api: APIClient,
        *,
        source: str = "okta",
        leaver_mode: Literal["deactivate", "suspend"] = "deactivate",
    ) -> None:
        self.api = api
        self.source = source
        self.leaver_mode = leaver_mode

    def __repr__(self) -> str:
        return f"OktaIdentityProvider(source={self.source!r}, api={self.api!r})"

    # ----------------------------------------------------------------------------------------- transport

    async def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.api.request(method, url, **kwargs)
        if response.status_code == 204 or not response.content.strip():
            return None
        try:
            return json_body(response, source=self.source)
        except ConnectorError as exc:
            raise self.api.scrub(exc) from exc.__cause__

    async def _pages(self, url: str, params: dict[str, Any] | None = None) -> AsyncIterator[list[Any]]:
        """Every page of a list endpoint, following ``Link: rel="next"`` with loop detection."""
        guard = LoopGuard(self.source)
        next_url: str | None = url
        while next_url:
            guard.check(next_url if params is None else f"{next_url}?{sorted(params.items())}")
            response = await self.api.request("GET", next_url, params=params)
            try:
                page = json_body(response, source=self.source)
            except ConnectorError as exc:
                raise self.api.scrub(exc) from exc.__cause__
            if not isinstance(page, list):
                raise ResponseValidationError("Okta list answer is not a JSON array", source=self.source)
            if page:
                yield page
            next_url, params = next_link(response), None
            if not page:
                return

    async def _user(self, account_id: str) -> dict[str, Any]:
        data = await self._json("GET", f"api/v1/users/{_segment(account_id)}")
        if not isinstance(data, dict):
            raise ResponseValidationError("Okta user is not a JSON object", source=self.source)
        return data

    async def _search(self, expression: str) -> list[Account]:
        found: list[Account] = []
        async for page in self._pages("api/v1/users", {"search": expression, "limit": 200}):
            found += [account_from_okta(u, source=self.source) for u in page]
        return found

    # ----------------------------------------------------------------------------------------- users

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None:
        """``search=profile.employeeNumber eq "…"`` (search also returns DEPROVISIONED users)."""
        found = [
            a
            for a in await self._search(okta_search_eq("profile.employeeNumber", employee_id))
            if a.employee_id == employee_id
        ]
        if len(found) > 1:
            raise ConflictError(
                f"{len(found)} Okta users carry one employeeNumber; link them by hand", source=self.source
            )
        return found[0] if found else None

    async def find_user_by_username(self, user_name: str) -> Account | None:
        """``search=profile.login eq "…"``; Okta logins are case-insensitive, an exact match wins."""
        found = await self._search(okta_search_eq("profile.login", user_name))
        exact = [a for a in found if a.user_name == user_name]
        loose = [a for a in found if a.user_name.casefold() == user_name.casefold()]
        picks = exact or loose
        return picks[0] if picks else None

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        """Every user, one page at a time: the default listing, then the DEPROVISIONED ones it omits."""
        limit = max(1, min(page_size, 200))
        for params in ({"limit": limit}, {"filter": 'status eq "DEPROVISIONED"', "limit": limit}):
            async for page in self._pages("api/v1/users", params):
                yield [account_from_okta(u, source=self.source) for u in page]

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """The user's ``lastLogin``."""
        return _parse_time((await self._user(account_id)).get("lastLogin"))

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """``POST /api/v1/users?activate=…``, idempotent by employee id. A duplicate login is adopted only if
        that user carries our employeeNumber; anyone else's account is refused (ConflictError)."""
        body = {"profile": profile_from_attributes(attributes)}

        async def create() -> Account:
            data = await self._json(
                "POST",
                "api/v1/users",
                params={"activate": str(attributes.active).lower()},
                json=body,
                retry=False,
            )
            return account_from_okta(data, source=self.source)

        async def lookup() -> Account | None:
            return await self.find_user_by_employee_id(attributes.employee_id)

        try:
            return await create_idempotently(
                create,
                lookup,
                sleep=self.api.sleep,
                backoff_base=self.api.backoff_base,
                existed=Account.found,
            )
        except PermanentAPIError as exc:
            if exc.status_code not in (400, 409) or DUPLICATE_MARKER not in exc.message:
                raise
            holder = await self.find_user_by_username(attributes.user_name)
            if holder is not None and holder.employee_id == attributes.employee_id:
                log.info("%s: adopting existing user %s for employee", self.source, holder.id)
                return holder.found()
            if holder is None:
                again = await lookup()
                if again is not None:
                    return again.found()
                reason = "another unique attribute (e.g. email) is taken"
            elif not holder.employee_id:
                reason = f"login is held by user {holder.id} without an employeeNumber; link it by hand"
            else:
                reason = f"login is held by user {holder.id} of another employee"
            raise ConflictError(
                f"cannot create the user: {reason}", source=self.source, status_code=exc.status_code
            ) from exc

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """Partial profile update (``POST /api/v1/users/{id}`` changes only the given properties; null clears
        one); ``active`` goes through the lifecycle operations."""
        unknown = set(changes) - set(PROFILE_FIELDS) - {"active"}
        if unknown:
            raise ValueError(f"unknown account attribute: {sorted(unknown)!r}")
        profile = {
            PROFILE_FIELDS[k]: (v if v != "" else None) for k, v in changes.items() if k in PROFILE_FIELDS
        }
        if "active" in changes:
            await (self.reactivate_user if changes["active"] else self.deactivate_user)(account.id)
        if profile:
            data = await self._json(
                "POST", f"api/v1/users/{_segment(account.id)}", json={"profile": profile}, retry=True
            )
            return account_from_okta(data, source=self.source)
        return account_from_okta(await self._user(account.id), source=self.source)

    async def _lifecycle(self, account_id: str, operation: str, **params: str) -> None:
        await self._json(
            "POST",
            f"api/v1/users/{_segment(account_id)}/lifecycle/{operation}",
            params=params or None,
            retry=False,
        )

    async def deactivate_user(self, account_id: str) -> None:
        """Deactivate (DEPROVISIONED) or, in ``suspend`` mode, suspend; nothing if already inactive."""
        status = (await self._user(account_id)).get("status")
        if status in ("DEPROVISIONED", "SUSPENDED"):
            return
        if self.leaver_mode == "suspend" and status == "ACTIVE":
            await self._lifecycle(account_id, "suspend")
        else:
            await self._lifecycle(account_id, "deactivate", sendEmail="false")

    async def reactivate_user(self, account_id: str) -> None:
        """Unsuspend a SUSPENDED user, activate a DEPROVISIONED or STAGED one; nothing if already active."""
        status = (await self._user(account_id)).get("status")
        if status == "SUSPENDED":
            await self._lifecycle(account_id, "unsuspend")
        elif status in ("DEPROVISIONED", "STAGED"):
            await self._lifecycle(account_id, "activate", sendEmail="false")

    async def delete_user(self, account_id: str) -> None:
        """Okta deletes only DEPROVISIONED users (a first DELETE deactivates): deactivate, then delete.
        An already deleted user is not an error."""
        try:
            if (await self._user(account_id)).get("status") != "DEPROVISIONED":
                await self._lifecycle(account_id, "deactivate", sendEmail="false")
            await self._json("DELETE", f"api/v1/users/{_segment(account_id)}")
        except NotFoundError:
            log.info("%s: user %s was already deleted", self.source, account_id)

    # ----------------------------------------------------------------------------------------- groups

    async def list_groups(self) -> list[Group]:
        """Every group with its member ids (one listing, then each group's users)."""
        groups: list[Group] = []
        async for page in self._pages("api/v1/groups", {"limit": 200}):
            for item in page:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise ResponseValidationError("Okta group lacks an id", source=self.source)
                name = (item.get("profile") or {}).get("name") or ""
                groups.append(
                    Group(id=item["id"], name=name, member_ids=frozenset(await self.list_members(item["id"])))
                )
        return groups

    async def list_members(self, group_id: str) -> set[str]:
        """``GET /api/v1/groups/{id}/users``, all pages."""
        members: set[str] = set()
        async for page in self._pages(f"api/v1/groups/{_segment(group_id)}/users", {"limit": 200}):
            members |= {u["id"] for u in page if isinstance(u, dict) and isinstance(u.get("id"), str)}
        return members

    async def add_member(self, group_id: str, account_id: str) -> None:
        """``PUT /api/v1/groups/{gid}/users/{uid}`` (idempotent by HTTP semantics, so retried)."""
        await self.api.request("PUT", f"api/v1/groups/{_segment(group_id)}/users/{_segment(account_id)}")

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """``DELETE /api/v1/groups/{gid}/users/{uid}``; removing a non-member is not an error."""
        await self.api.request("DELETE", f"api/v1/groups/{_segment(group_id)}/users/{_segment(account_id)}")

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """One :meth:`create_user` per account (the Users API creates one user per request)."""
        return await create_one_by_one(attributes, self.create_user)

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """One ``PUT`` per member: Okta's Groups API has no request that assigns several users to a group."""
        return await one_by_one(account_ids, lambda a: self.add_member(group_id, a))

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """One ``DELETE`` per member (no bulk form in the Groups API)."""
        return await one_by_one(account_ids, lambda a: self.remove_member(group_id, a))


def _segment(value: str) -> str:
    """An id as one URL path segment (never lets an id add a path or a query)."""
    return quote(value, safe="")
