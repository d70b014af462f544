"""Identity provider over SCIM 2.0 (RFC 7643 resources, RFC 7644 protocol): scim2-server, Entra, Okta's SCIM
endpoints, or any other service provider.

Resources, PatchOp, ListResponse, Error and ServiceProviderConfig are ``scim2-models`` objects
(:mod:`connectors.idp.scim_resources`, imported on first need: a listing in the plain shape is read straight
from its JSON by :func:`quick_user`, :func:`quick_group` and :func:`quick_envelope`); the transport is
our own :class:`connectors.http.APIClient` (rate limit, retries honouring ``Retry-After``, redaction). We do not
use ``scim2-client``: its current release is built on ``httpx2``, while every other connector here shares one
``httpx`` layer, so a second HTTP stack would bring its own retry and redaction rules.

Mapping (:class:`models.domain.AccountAttributes` → SCIM):

================  ==========================================================================
employee_id       ``externalId`` and enterprise ``employeeNumber``
user_name         ``userName``
given/family      ``name.givenName`` / ``name.familyName``
display_name      ``displayName``
email             ``emails`` — one value, ``type: work``, ``primary: true``
title             ``title``
department        enterprise ``department``
manager_id        enterprise ``manager.value`` = the manager's *account id*; our ``manager_id`` is the manager's
                  employee id, so it is resolved through ``externalId`` (skipped while the manager has no
                  account) and read back the same way
active            ``active``
================  ==========================================================================

``last_sign_in``: SCIM core has no such attribute, so it is None unless the user carries one in an extension
(``lastLogin``, ``lastSignIn``, ``lastSignInDateTime`` or ``lastLoginTime`` under any extension schema URN).

Behaviour decided by the RFCs:

- filters quote values as JSON strings (RFC 7644 §3.4.2.2), see :func:`scim_filter_eq`;
- paging uses ``startIndex``/``count`` (§3.4.2.4) and stops on an empty page or past ``totalResults``;
- PATCH (§3.5.2) writes only the changed attributes; without PATCH support (ServiceProviderConfig, read once,
  RFC 7643 §5) the user is read and replaced with PUT (§3.5.1); with ETag support PUT/PATCH carry ``If-Match``
  (§3.14) and a 412 is answered by reading the user again and trying once more;
- a body whose schema is the Error message (§3.12) is an error whatever the HTTP status says.

scim2-server quirks the code tolerates: PATCH answers ``204`` without a body (so the user is read back), and a
deleted user stays listed in the groups it belonged to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import httpx

from connectors.errors import (
    ConflictError,
    ConnectorError,
    NotFoundError,
    PermanentAPIError,
    ResponseValidationError,
)
from connectors.http import (
    ERROR_DETAIL_LENGTH,
    APIClient,
    ClosesAPI,
    LoopGuard,
    create_idempotently,
    json_body,
    raise_for_status,
)
from connectors.idp.fallback import create_one_by_one, one_by_one
from connectors.redaction import cut
from models.domain import Account, AccountAttributes, Group

if TYPE_CHECKING:
    from scim2_models import ServiceProviderConfig

__all__ = [
    "SCIMIdentityProvider",
    "scim_filter_eq",
    "quick_envelope",
    "quick_group",
    "quick_user",
    "patch_operations",
    "raise_for_scim_error",
]

log = logging.getLogger("tenure.idp.scim")

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SCIM_MEDIA_TYPE = "application/scim+json"
LAST_SIGN_IN_KEYS = ("lastlogin", "lastsignin", "lastsignindatetime", "lastlogintime")
_ATTR_PATH = re.compile(r"^(?:urn:[\w.:\-]+:)?[A-Za-z][\w$\-]*(?:\.[A-Za-z][\w$\-]*)?$")
_VERSION_CACHE_SIZE = 50_000
MAX_MEMBERS_PER_PATCH = 1_000  # member values added in one PATCH of a group (kept well under body limits)
# members removed in one PATCH: the filter ``members[value eq … or …]`` is evaluated against every member, which
# a large group makes slow on some providers (scim2-server: seconds for 250 terms on 1,000 members)
MAX_REMOVALS_PER_PATCH = 50
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


# --------------------------------------------------------------------------------------------- pure helpers


def scim_filter_eq(attr: str, value: str) -> str:
    """``attr eq "value"`` with ``value`` written as a JSON string (RFC 7644 §3.4.2.2: compValue is a JSON
    string), so ``"`` and ``\\`` are escaped and a hostile value cannot close the quote and add clauses."""
    if not _ATTR_PATH.match(attr):
        raise ValueError(f"not a SCIM attribute path: {attr!r}")
    return f"{attr} eq {json.dumps(value, ensure_ascii=False)}"


def create_payload(attributes: AccountAttributes, *, manager_account_id: str | None = None) -> dict[str, Any]:
    """The POST /Users body for ``attributes``, built directly: the same JSON as
    :mod:`connectors.idp.scim_resources`' ``user_payload(user_resource(...))`` (the mapping table above) without
    building a scim2-models resource for every joiner. ``attributes`` is validated already."""
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA],
        "externalId": attributes.employee_id,
        "userName": attributes.user_name,
    }
    if attributes.given_name or attributes.family_name:
        name = {"familyName": attributes.family_name, "givenName": attributes.given_name}
        body["name"] = {k: v for k, v in name.items() if v is not None}
    for key, value in (("displayName", attributes.display_name), ("title", attributes.title)):
        if value is not None:
            body[key] = value
    body["active"] = attributes.active
    if attributes.email:
        body["emails"] = [{"value": attributes.email, "type": "work", "primary": True}]
    enterprise: dict[str, Any] = {"employeeNumber": attributes.employee_id}
    if attributes.department is not None:
        enterprise["department"] = attributes.department
    if manager_account_id:
        enterprise["manager"] = {"value": manager_account_id}
    body[ENTERPRISE_SCHEMA] = enterprise
    return body


def pick_email(emails: list[tuple[Any, Any, Any]]) -> str | None:
    """Of (value, type, primary) entries with a value: the first primary work address, else the first primary,
    else the first work one, else the first."""
    best, best_rank = None, 4
    for value, kind, primary in emails:
        if not value:
            continue
        work = str(kind or "").lower() == "work"
        rank = 0 if primary and work else 1 if primary else 2 if work else 3
        if rank < best_rank:
            best, best_rank = value, rank
    return None if best is None else str(best)


def find_last_sign_in(extra: dict[str, Any]) -> datetime | None:
    """A sign-in timestamp carried by a vendor extension (``urn:...`` objects), if any."""
    for key, value in extra.items():
        if not key.lower().startswith("urn:") or not isinstance(value, dict):
            continue
        for attr, stamp in value.items():
            if attr.lower() in LAST_SIGN_IN_KEYS and isinstance(stamp, str):
                try:
                    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                except ValueError:
                    return None
    return None


@dataclass(frozen=True)
class _QuickUser:
    """A listed user read straight from its JSON (see :func:`quick_user`)."""

    id: str
    external_id: str | None
    manager: str | None  # manager.value: the manager's account id
    version: str | None
    values: dict[str, Any]  # Account fields but manager_id


_QUICK_KEYS = frozenset(
    {"schemas", "id", "externalId", "userName", "name", "displayName", "title", "active", "emails", "meta",
     "groups", ENTERPRISE_SCHEMA}
)  # fmt: skip


def quick_user(data: Any) -> _QuickUser | None:
    """A page's user in the exact shape most providers send (canonical attribute names, plain types), read
    without building a scim2-models resource (the cost of a full listing); None for anything else — vendor
    extensions, other spellings, odd types — which :func:`parse_user` then validates in full."""
    if not isinstance(data, dict) or not _QUICK_KEYS.issuperset(data):
        return None
    user_id, user_name, external_id = data.get("id"), data.get("userName"), data.get("externalId")
    name, emails, active = data.get("name") or {}, data.get("emails") or [], data.get("active")
    enterprise, groups = data.get(ENTERPRISE_SCHEMA) or {}, data.get("groups") or []
    texts = (user_name, data.get("displayName"), data.get("title"), external_id)
    if (
        not isinstance(user_id, str)
        or not user_id
        or not all(t is None or isinstance(t, str) for t in texts)
        or not isinstance(name, dict)
        or not isinstance(emails, list)
        or not all(isinstance(e, dict) for e in emails)
        or not isinstance(enterprise, dict)
        or not isinstance(groups, list)
        or not all(isinstance(g, dict) for g in groups)
        or (active is not None and not isinstance(active, bool))
    ):
        return None
    manager = enterprise.get("manager")
    manager_id = manager.get("value") if isinstance(manager, dict) else None
    employee_number = enterprise.get("employeeNumber")
    meta = data.get("meta")
    version = meta.get("version") if isinstance(meta, dict) else None
    pieces = (name.get("givenName"), name.get("familyName"), enterprise.get("department"), employee_number)
    if not all(p is None or isinstance(p, str) for p in (*pieces, manager_id, version)):
        return None
    email = pick_email([(e.get("value"), e.get("type"), e.get("primary")) for e in emails])
    values = {
        "user_name": user_name or "",
        "employee_id": external_id or employee_number or "",
        "given_name": pieces[0],
        "family_name": pieces[1],
        "display_name": data.get("displayName"),
        "email": email,
        "title": data.get("title"),
        "department": pieces[2],
        "active": active is not False,
        "last_sign_in": None,
        "groups": frozenset(str(g["display"]) for g in groups if g.get("display")),
    }
    return _QuickUser(user_id, external_id, manager_id or None, version, values)


_QUICK_GROUP_KEYS = frozenset({"schemas", "id", "externalId", "displayName", "members", "meta"})
_QUICK_MEMBER_KEYS = frozenset({"value", "$ref", "type", "display"})


def quick_group(data: Any) -> Group | None:
    """A page's group in the plain shape (canonical attribute names, string values), read straight from its JSON
    — a large group's members would be thousands of scim2-models objects —; None for anything else, which
    :func:`parse_group` then validates in full."""
    if not isinstance(data, dict) or not _QUICK_GROUP_KEYS.issuperset(data):
        return None
    group_id, name, members = data.get("id"), data.get("displayName"), data.get("members") or []
    if (
        not isinstance(group_id, str)
        or not group_id
        or not (name is None or isinstance(name, str))
        or not isinstance(members, list)
        or not (data.get("meta") is None or isinstance(data.get("meta"), dict))
    ):
        return None
    member_ids: list[str] = []
    for member in members:
        if (
            not isinstance(member, dict)
            or not _QUICK_MEMBER_KEYS.issuperset(member)
            or not all(v is None or isinstance(v, str) for v in member.values())
        ):
            return None
        if member.get("value"):
            member_ids.append(member["value"])
    # every value is a string, checked above: validating the model would pass over a large group's members again
    return Group.model_construct(id=group_id, name=name or "", member_ids=frozenset(member_ids))


_QUICK_ENVELOPE_KEYS = frozenset({"schemas", "totalResults", "startIndex", "itemsPerPage", "Resources"})


def quick_envelope(data: dict[str, Any]) -> bool:
    """Whether a ListResponse envelope (RFC 7644 §3.4.2) has the plain shape — the ListResponse schema alone
    and non-negative integer counts —, which scim2-models accepts too; anything else it validates."""
    return (
        _QUICK_ENVELOPE_KEYS.issuperset(data)
        and data.get("schemas") == [LIST_RESPONSE_SCHEMA]
        and all(
            type(data.get(key, 0)) is int and data.get(key, 0) >= 0
            for key in ("totalResults", "startIndex", "itemsPerPage")
        )
    )


def full_group(data: Any, *, source: str) -> Group:
    """A group in any shape the RFC allows, validated by scim2-models (:func:`quick_group` takes the plain one)."""
    from connectors.idp import scim_resources

    return _group(scim_resources.parse_group(data, source=source))


def _manager_of(user: _QuickUser | tuple[Any, dict[str, Any]]) -> str | None:
    """A listed user's ``manager.value``."""
    if isinstance(user, _QuickUser):
        return user.manager
    from connectors.idp import scim_resources

    return scim_resources.manager_account_id(user[0])


_SIMPLE_PATHS = {
    "user_name": "userName",
    "given_name": "name.givenName",
    "family_name": "name.familyName",
    "display_name": "displayName",
    "title": "title",
    "active": "active",
    "department": f"{ENTERPRISE_SCHEMA}:department",
}


def patch_operations(
    changes: dict[str, Any], *, manager_account_id: str | None = None
) -> list[dict[str, Any]]:
    """PATCH operations (RFC 7644 §3.5.2) writing exactly ``changes``: ``replace`` for a value, ``remove`` for
    None. ``manager_id`` needs the manager's account id, resolved by the caller (skipped when unknown)."""
    ops: list[dict[str, Any]] = []

    def put(path: str, value: Any) -> None:
        if value is None or value == "":
            ops.append({"op": "remove", "path": path})
        else:
            ops.append({"op": "replace", "path": path, "value": value})

    for key, value in changes.items():
        if key in _SIMPLE_PATHS:
            if key == "active":
                ops.append({"op": "replace", "path": "active", "value": bool(value)})
            else:
                put(_SIMPLE_PATHS[key], value)
        elif key == "employee_id":
            put("externalId", value)
            put(f"{ENTERPRISE_SCHEMA}:employeeNumber", value)
        elif key == "email":
            put("emails", [{"value": value, "type": "work", "primary": True}] if value else None)
        elif key == "manager_id":
            if value is None:
                put(f"{ENTERPRISE_SCHEMA}:manager", None)
            elif manager_account_id:
                put(f"{ENTERPRISE_SCHEMA}:manager", {"value": manager_account_id})
        else:
            raise ValueError(f"unknown account attribute: {key!r}")
    return ops


def raise_for_scim_error(response: httpx.Response, body: Any, *, source: str) -> None:
    """Raise the typed error for a body that is a SCIM Error message (RFC 7644 §3.12), even under a 2xx."""
    if not isinstance(body, dict) or ERROR_SCHEMA not in (body.get("schemas") or []):
        return
    from connectors.idp import scim_resources

    status, detail = scim_resources.scim_error(body)
    status = status if 400 <= status <= 599 else 400
    fake = httpx.Response(status, headers=response.headers, request=response.request)
    raise_for_status(
        fake,
        source=source,
        detail=cut(f"SCIM error in a {response.status_code} answer: {detail}", ERROR_DETAIL_LENGTH),
    )
    raise PermanentAPIError(detail or "SCIM error", source=source, status_code=status)  # pragma: no cover


def _scim_type(exc: ConnectorError) -> str | None:
    """The scimType keyword a SCIM error message carried (it is in the message detail), if any."""
    match = re.search(r'"scimType"\s*:\s*"(\w+)"', exc.message)
    return match.group(1) if match else None


# --------------------------------------------------------------------------------------------- the connector


class SCIMIdentityProvider(ClosesAPI):
    """:class:`connectors.protocols.IdentityProvider` over SCIM 2.0."""

    def __init__(self, api: APIClient, *, source: str = "scim") -> None:
        self.api = api
        self.source = source
        self._config: ServiceProviderConfig | None = None
        self._config_lock = asyncio.Lock()
        self._versions: OrderedDict[str, str] = OrderedDict()
        self._employee_ids: dict[str, str | None] = {}  # account id -> employee id (manager resolution)
        self._account_ids: dict[str, str] = {}  # employee id -> account id (managers, from pages read)
        self._listed = False  # a whole iter_users pass finished: _account_ids knows every account
        self._known: OrderedDict[str, Account] = OrderedDict()  # account id -> the account as last read
        self._doubtful: set[str] = set()  # employee ids a failed Bulk request may have created

    def __repr__(self) -> str:
        return f"SCIMIdentityProvider(source={self.source!r}, api={self.api!r})"

    # ----------------------------------------------------------------------------------------- transport

    async def _call(
        self, method: str, path: str, *, body: Any = None, **kwargs: Any
    ) -> tuple[httpx.Response, Any]:
        """Send, then check the body: JSON or nothing (204); a SCIM Error body raises even under 2xx."""
        if body is not None:
            kwargs["content"] = json.dumps(body).encode()
            kwargs.setdefault("headers", {})["Content-Type"] = SCIM_MEDIA_TYPE
        response = await self.api.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content.strip():
            return response, None
        try:
            data = json_body(response, source=self.source)
            raise_for_scim_error(response, data, source=self.source)
        except ConnectorError as exc:
            raise self.api.scrub(exc) from exc.__cause__
        return response, data

    async def service_provider_config(self) -> ServiceProviderConfig:
        """``/ServiceProviderConfig`` (RFC 7644 §4), read once. A provider without it is assumed to support
        PATCH (mandatory in practice) and not ETags."""
        from connectors.idp import scim_resources

        async with self._config_lock:
            if self._config is None:
                try:
                    _, data = await self._call("GET", "ServiceProviderConfig")
                    self._config = scim_resources.read_config(data)
                except NotFoundError:
                    pass
                if self._config is None:
                    log.info(
                        "%s: no usable /ServiceProviderConfig; assuming PATCH without ETags", self.source
                    )
                    self._config = scim_resources.assumed_config()
            return self._config

    async def _patch_supported(self) -> bool:
        config = await self.service_provider_config()
        return bool(config.patch and config.patch.supported)

    async def _etag_supported(self) -> bool:
        config = await self.service_provider_config()
        return bool(config.etag and config.etag.supported)

    def _remember_version(
        self, resource_id: str | None, response: httpx.Response | None, resource: Any
    ) -> None:
        version = (response.headers.get("ETag") if response is not None else None) or (
            resource.meta.version if resource is not None and resource.meta else None
        )
        if resource_id and version:
            self._versions[resource_id] = version
            self._versions.move_to_end(resource_id)
            while len(self._versions) > _VERSION_CACHE_SIZE:
                self._versions.popitem(last=False)

    async def _if_match(self, resource_id: str) -> dict[str, str]:
        if await self._etag_supported() and resource_id in self._versions:
            return {"If-Match": self._versions[resource_id]}
        return {}

    # ----------------------------------------------------------------------------------------- reading users

    async def _get_user(self, account_id: str) -> tuple[Any, dict[str, Any]]:
        from connectors.idp import scim_resources

        response, data = await self._call("GET", f"Users/{_segment(account_id)}")
        user, extra = scim_resources.parse_user(data, source=self.source)
        self._remember_version(user.id, response, user)
        return user, extra

    async def _search_users(self, filter_: str, count: int = 10) -> list[tuple[Any, dict[str, Any]]]:
        _, data = await self._call(
            "GET", "Users", params={"filter": filter_, "startIndex": 1, "count": count}
        )
        return self._page_users(data)

    def _page_users(self, data: Any) -> list[tuple[Any, dict[str, Any]]]:
        from connectors.idp import scim_resources

        page = self._list_response(data)
        users = [scim_resources.parse_user(item, source=self.source) for item in page.get("Resources") or []]
        for user, _ in users:
            self._remember_version(user.id, None, user)
            if user.id:
                self._employee_ids[user.id] = user.external_id
                if user.external_id:
                    self._account_ids[user.external_id] = str(user.id)
        return users

    def _list_response(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ResponseValidationError("list response is not a JSON object", source=self.source)
        if not quick_envelope(data):  # only the envelope; resources are checked one by one (extensions)
            from connectors.idp import scim_resources

            scim_resources.check_list_envelope(data, source=self.source)
        resources = data.get("Resources")
        if resources is not None and not isinstance(resources, list):
            raise ResponseValidationError("ListResponse.Resources is not a list", source=self.source)
        return data

    async def _manager_employee_id(self, manager_account_id: str | None) -> str | None:
        """The employee id of the account ``manager.value`` points at (cached), None if it is gone."""
        if not manager_account_id:
            return None
        if manager_account_id not in self._employee_ids:
            try:
                user, _ = await self._get_user(manager_account_id)
                self._employee_ids[manager_account_id] = user.external_id
            except NotFoundError:
                self._employee_ids[manager_account_id] = None
        return self._employee_ids[manager_account_id]

    async def _account(self, user: Any, extra: dict[str, Any]) -> Account:
        from connectors.idp import scim_resources

        if user.id:
            self._employee_ids[user.id] = user.external_id
            if user.external_id:
                self._account_ids[user.external_id] = str(user.id)
        manager = await self._manager_employee_id(scim_resources.manager_account_id(user))
        return self._remember(scim_resources.account_from_user(user, manager_id=manager, extra=extra))

    def _remember(self, account: Account) -> Account:
        """Keep ``account`` as the server last showed it (an update of exactly it needs no read-back)."""
        self._known[account.id] = account
        self._known.move_to_end(account.id)
        while len(self._known) > _VERSION_CACHE_SIZE:
            self._known.popitem(last=False)
        return account

    def _known_after(self, account: Account, changes: dict[str, Any]) -> Account | None:
        """The account after a PATCH of ``changes`` answered 204, when that follows from what we know: the
        caller's account is the one the server last showed us (else None: read it back)."""
        known = self._known.get(account.id)
        if known is None or known.model_copy(update={"groups": account.groups}) != account:
            return None
        values = {k: (None if v == "" else v) for k, v in changes.items()}
        return self._remember(account.model_copy(update=values))

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None:
        """The account whose ``externalId`` is ``employee_id``; ConflictError if several claim it."""
        found = [
            (u, x)
            for u, x in await self._search_users(scim_filter_eq("externalId", employee_id))
            if u.external_id == employee_id
        ]
        if len(found) > 1:
            raise ConflictError(
                f"{len(found)} accounts carry externalId for one employee; link them by hand",
                source=self.source,
            )
        return await self._account(*found[0]) if found else None

    async def find_user_by_username(self, user_name: str) -> Account | None:
        """The account named ``user_name`` (exact match preferred; userName is case-insensitive,
        RFC 7643 §4.1.1)."""
        found = await self._search_users(scim_filter_eq("userName", user_name))
        exact = [p for p in found if p[0].user_name == user_name]
        loose = [p for p in found if (p[0].user_name or "").casefold() == user_name.casefold()]
        picks = exact or loose
        return await self._account(*picks[0]) if picks else None

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        """Every user exactly once, page by page (RFC 7644 §3.4.2.4). A user whose manager was not seen yet is
        held back and yielded in a last page, when every account id is known: resolving ``manager.value``
        then costs no extra GET per manager who happens to sit on a later page."""
        guard = LoopGuard(self.source)
        seen: set[str] = set()
        held_back: list[_QuickUser | tuple[Any, dict[str, Any]]] = []
        start = 1
        while True:
            guard.check(start)
            _, data = await self._call("GET", "Users", params={"startIndex": start, "count": page_size})
            users = self._listed_users(data)
            if not users:
                break
            ids = {u.id if isinstance(u, _QuickUser) else str(u[0].id) for u in users}
            if ids <= seen:  # a provider ignoring startIndex would hand the same page back for ever
                raise ResponseValidationError(
                    f"pagination loop: startIndex={start} returned only users already seen",
                    source=self.source,
                )
            seen |= ids
            ready: list[_QuickUser | tuple[Any, dict[str, Any]]] = []
            for user in users:
                manager = _manager_of(user)
                (held_back if manager and manager not in self._employee_ids else ready).append(user)
            if ready:
                yield [await self._listed_account(u) for u in ready]
            start += len(users)
            total = data.get("totalResults")
            if isinstance(total, int) and start > total:
                break
        if held_back:
            yield [await self._listed_account(u) for u in held_back]
        self._listed = True

    def _listed_users(self, data: Any) -> list[_QuickUser | tuple[Any, dict[str, Any]]]:
        """A page's users: read straight from JSON where they have the plain shape (:func:`quick_user`), else
        validated by scim2-models; every id, employee id and version remembered."""
        users: list[_QuickUser | tuple[Any, dict[str, Any]]] = []
        for item in self._list_response(data).get("Resources") or []:
            quick = quick_user(item)
            if quick is None:
                from connectors.idp import scim_resources

                user, extra = scim_resources.parse_user(item, source=self.source)
                self._remember_version(user.id, None, user)
                if user.id:
                    self._employee_ids[user.id] = user.external_id
                    if user.external_id:
                        self._account_ids[user.external_id] = str(user.id)
                users.append((user, extra))
                continue
            if quick.version:
                self._versions[quick.id] = quick.version
            self._employee_ids[quick.id] = quick.external_id
            if quick.external_id:
                self._account_ids[quick.external_id] = quick.id
            users.append(quick)
        return users

    async def _listed_account(self, user: _QuickUser | tuple[Any, dict[str, Any]]) -> Account:
        if not isinstance(user, _QuickUser):
            return await self._account(*user)
        manager = await self._manager_employee_id(user.manager)  # validated: quicker than model_construct
        return self._remember(Account(id=user.id, manager_id=manager, existing=False, **user.values))

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """None unless a vendor extension carries a sign-in time (SCIM core has none)."""
        _, extra = await self._get_user(account_id)
        return find_last_sign_in(extra)

    # ----------------------------------------------------------------------------------------- writing users

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """Create the account (POST /Users, RFC 7644 §3.3), safely: an account with this employee id is
        returned instead, including one a timed-out earlier attempt created. On 409 uniqueness the account
        holding the userName is adopted only if it carries our employee id; anyone else's is never taken."""
        manager = await self._resolve_manager(attributes.manager_id)
        body = create_payload(attributes, manager_account_id=manager)

        async def create() -> Account:
            response, data = await self._call("POST", "Users", body=body, retry=False)
            if data is None:  # a 201 without a body: read it back
                found = await self.find_user_by_employee_id(attributes.employee_id)
                if found is None:
                    raise ResponseValidationError("created user is not readable", source=self.source)
                return found
            return self._created(attributes, response, data, with_manager=manager is not None)

        async def lookup() -> Account | None:
            return await self.find_user_by_employee_id(attributes.employee_id)

        try:
            return await create_idempotently(
                create,
                lookup,
                sleep=self.api.sleep,
                backoff_base=self.api.backoff_base,
                existed=Account.found,
                # a whole listing just showed no account for this employee: no look-up before the POST
                known_absent=self._listed
                and attributes.employee_id not in self._account_ids
                and attributes.employee_id not in self._doubtful,
            )
        except ConflictError as exc:
            holder = await self.find_user_by_username(attributes.user_name)
            if holder is not None and holder.employee_id == attributes.employee_id:
                log.info("%s: adopting existing account %s for employee", self.source, holder.id)
                return holder.found()
            if holder is None:
                again = await lookup()  # a concurrent create for this employee may have won the race
                if again is not None:
                    return again.found()
                reason = "a uniqueness conflict on another attribute (e.g. email)"
            elif not holder.employee_id:
                reason = f"userName is held by account {holder.id} without an externalId; link it by hand"
            else:
                reason = f"userName is held by account {holder.id} of another employee"
            raise ConflictError(
                f"cannot create the account: {reason}", source=self.source, status_code=exc.status_code
            ) from exc

    def _created(
        self, attributes: AccountAttributes, response: httpx.Response | None, data: Any, *, with_manager: bool
    ) -> Account:
        """The account a 201 answered: what we sent, under the id the provider gave (the effect is known; the
        answer is not validated as a whole resource again)."""
        user_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise ResponseValidationError("created user has no id", source=self.source)
        meta = data.get("meta")
        header = response.headers.get("ETag") if response is not None else None
        version = header or (meta.get("version") if isinstance(meta, dict) else None)
        if version:
            self._versions[user_id] = version
        self._employee_ids[user_id] = attributes.employee_id
        self._account_ids[attributes.employee_id] = user_id
        values = attributes.model_dump()
        if not with_manager:  # the manager had no account: none was written
            values["manager_id"] = None
        return self._remember(Account.model_construct(id=user_id, **values))

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """Joiners a whole listing just showed without an account go in ``/Bulk`` requests (RFC 7644 §3.7: one
        ``POST /Users`` operation each, within ``maxOperations`` and ``maxPayloadSize``), each judged on its own
        answer; the others — and any a refused or unanswered Bulk request carried — through :meth:`create_user`
        (its look-ups make that safe)."""
        items = list(attributes)
        results: list[Account | ConnectorError | None] = [None] * len(items)
        bulk = (await self.service_provider_config()).bulk
        fresh = [
            n
            for n, a in enumerate(items)
            if self._listed and a.employee_id not in self._account_ids and a.employee_id not in self._doubtful
        ]
        if bulk and bulk.supported and len(fresh) > 1:
            operations = [
                {
                    "method": "POST",
                    "path": "/Users",
                    "bulkId": str(n),
                    "data": create_payload(
                        items[n], manager_account_id=await self._resolve_manager(items[n].manager_id)
                    ),
                }
                for n in fresh
            ]
            unanswered: list[int] = []
            for part in _bulk_parts(operations, bulk.max_operations, bulk.max_payload_size):
                unanswered += await self._bulk_create(items, part, results)
            await self._settle_unanswered(items, unanswered, results)
        rest = [n for n, r in enumerate(results) if r is None]
        made = await create_one_by_one([items[n] for n in rest], self.create_user)
        for n, result in zip(rest, made, strict=True):
            results[n] = result
        return [r for r in results if r is not None]

    async def _settle_unanswered(
        self,
        items: list[AccountAttributes],
        unanswered: list[int],
        results: list[Account | ConnectorError | None],
    ) -> None:
        """Creations a Bulk request carried without an answer may have taken effect: an account found now by
        its employee id (absent from the listing just before) is the one that request made — created, not
        found — as after any ambiguous POST (:func:`connectors.http.create_idempotently`)."""
        semaphore = asyncio.Semaphore(8)

        async def one(n: int) -> None:
            async with semaphore:
                try:
                    results[n] = await self.find_user_by_employee_id(items[n].employee_id)
                except ConnectorError as exc:
                    results[n] = exc

        await asyncio.gather(*(one(n) for n in unanswered))

    async def _bulk_create(
        self,
        items: list[AccountAttributes],
        part: list[dict[str, Any]],
        results: list[Account | ConnectorError | None],
    ) -> list[int]:
        """One Bulk request of creations; returns the items it carried that got no answer (to look up)."""
        try:
            _, data = await self._call(
                "POST", "Bulk", body={"schemas": [BULK_REQUEST], "Operations": part}, retry=False
            )
        except ConnectorError as exc:
            log.info(
                "%s: a Bulk create of %d users failed (%s); looking them up, creating the rest one by one",
                self.source,
                len(part),
                exc,
            )
            self._doubtful |= {items[int(op["bulkId"])].employee_id for op in part}
            return [int(op["bulkId"]) for op in part]
        answers = data.get("Operations") if isinstance(data, dict) else None
        if not isinstance(answers, list):
            self._doubtful |= {items[int(op["bulkId"])].employee_id for op in part}
            return [int(op["bulkId"]) for op in part]
        by_id = {str(a.get("bulkId")): a for a in answers if isinstance(a, dict)}
        unanswered: list[int] = []
        for op in part:
            n = int(op["bulkId"])
            answer = by_id.get(op["bulkId"]) or {}
            status = str(answer.get("status", ""))
            location = str(answer.get("location") or "")
            if status.startswith("201") and location:
                user_id = unquote(location.rstrip("/").rsplit("/", 1)[-1])
                sent_manager = "manager" in op["data"][ENTERPRISE_SCHEMA]
                results[n] = self._created(
                    items[n],
                    None,
                    {"id": user_id, "meta": {"version": answer.get("version")}},
                    with_manager=sent_manager,
                )
            elif status.startswith("409"):
                self._doubtful.add(items[n].employee_id)  # create_user sorts it out (a look-up, the 409 path)
            elif not status.startswith(("4", "5")):  # no (usable) answer: it may have been created
                self._doubtful.add(items[n].employee_id)
                unanswered.append(n)
            else:
                results[n] = self._bulk_error(answer, removing=False)
        return unanswered

    async def _resolve_manager(self, manager_employee_id: str | None) -> str | None:
        """The manager's account id for their employee id, or None while they have no account."""
        if not manager_employee_id:
            return None
        if manager_employee_id in self._account_ids:  # seen in a page read (or created) by this connector
            return self._account_ids[manager_employee_id]
        if self._listed:  # a whole listing showed no account for the manager (nor did we create one since)
            log.info("%s: manager has no account yet; manager attribute skipped", self.source)
            return None
        manager = await self.find_user_by_employee_id(manager_employee_id)
        if manager is None:
            log.info("%s: manager has no account yet; manager attribute skipped", self.source)
        return manager.id if manager else None

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """Write only ``changes``: PATCH replace/remove (RFC 7644 §3.5.2), or read-modify-PUT (§3.5.1) when
        the provider lacks PATCH. With ETags, If-Match guards the write; one 412 re-reads and retries."""
        if not changes:
            user, extra = await self._get_user(account.id)
            return await self._account(user, extra)
        manager = await self._resolve_manager(changes["manager_id"]) if changes.get("manager_id") else None
        if await self._patch_supported():
            ops = patch_operations(changes, manager_account_id=manager)
            if not ops:
                user, extra = await self._get_user(account.id)
                return await self._account(user, extra)
            patched = await self._patch_user(account.id, ops, read_back=False)
            if patched is None:  # 204: the effect is known when the caller's account is current
                patched = self._known_after(account, changes)
            if patched is None:
                user, extra = await self._get_user(account.id)
                patched = await self._account(user, extra)
            return patched
        return await self._replace_user(account.id, changes, manager)

    async def _patch_user(
        self, account_id: str, operations: list[dict[str, Any]], *, read_back: bool
    ) -> Account | None:
        """PATCH the user and return the account as the server now holds it. A 204 without a body (RFC 7644
        §3.5.2 allows it) is read back only when ``read_back``: enabling or disabling needs no answer, which
        saves one call per leaver and joiner."""
        from connectors.idp import scim_resources

        body = scim_resources.patch_body(operations)
        for attempt in (1, 2):
            try:
                response, data = await self._call(
                    "PATCH",
                    f"Users/{_segment(account_id)}",
                    body=body,
                    headers=await self._if_match(account_id),
                )
                break
            except PermanentAPIError as exc:
                if exc.status_code != 412 or attempt == 2:
                    raise
                await self._get_user(account_id)  # refresh the version, then try once more
        if data is None:  # 204 No Content (scim2-server)
            if not read_back:
                self._versions.pop(account_id, None)  # the version we knew is stale now
                return None
            user, extra = await self._get_user(account_id)
            return await self._account(user, extra)
        user, extra = scim_resources.parse_user(data, source=self.source)
        self._remember_version(user.id, response, user)
        return await self._account(user, extra)

    async def _replace_user(self, account_id: str, changes: dict[str, Any], manager: str | None) -> Account:
        from connectors.idp import scim_resources

        for attempt in (1, 2):
            user, extra = await self._get_user(account_id)
            current = await self._account(user, extra)
            desired = AccountAttributes.model_validate(
                current.model_dump(include=set(AccountAttributes.model_fields)) | changes
            )
            replacement = scim_resources.user_resource(
                desired, manager_account_id=manager or scim_resources.manager_account_id(user)
            )
            if "manager_id" in changes and not changes["manager_id"]:
                replacement[scim_resources.EnterpriseUser].manager = None
            replacement.id = user.id
            payload = scim_resources.user_payload(
                replacement, scim_resources.Context.RESOURCE_REPLACEMENT_REQUEST
            )
            payload["id"] = user.id
            try:
                response, data = await self._call(
                    "PUT",
                    f"Users/{_segment(account_id)}",
                    body=payload,
                    headers=await self._if_match(account_id),
                )
            except PermanentAPIError as exc:
                if exc.status_code != 412 or attempt == 2:
                    raise
                continue
            if data is None:
                user, extra = await self._get_user(account_id)
            else:
                user, extra = scim_resources.parse_user(data, source=self.source)
                self._remember_version(user.id, response, user)
            return await self._account(user, extra)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _set_active(self, account_id: str, active: bool) -> None:
        if await self._patch_supported():
            operation = {"op": "replace", "path": "active", "value": active}
            await self._patch_user(account_id, [operation], read_back=False)
            if (known := self._known.get(account_id)) is not None:
                self._remember(known.model_copy(update={"active": active}))
        else:
            await self._replace_user(account_id, {"active": active}, None)

    async def deactivate_user(self, account_id: str) -> None:
        """``active: false`` (RFC 7643 §4.1.1); idempotent."""
        await self._set_active(account_id, False)

    async def reactivate_user(self, account_id: str) -> None:
        """``active: true``; idempotent."""
        await self._set_active(account_id, True)

    async def delete_user(self, account_id: str) -> None:
        """DELETE /Users/{id} (RFC 7644 §3.6); an already deleted account is not an error."""
        try:
            await self._call("DELETE", f"Users/{_segment(account_id)}")
        except NotFoundError:
            log.info("%s: account %s was already deleted", self.source, account_id)
        self._versions.pop(account_id, None)
        self._known.pop(account_id, None)
        if (employee_id := self._employee_ids.pop(account_id, None)) is not None:
            self._account_ids.pop(employee_id, None)

    # ----------------------------------------------------------------------------------------- groups

    async def list_groups(self) -> list[Group]:
        """Every group with its member ids (paged like users)."""
        groups: list[Group] = []
        guard = LoopGuard(self.source)
        start, page_size = 1, 200
        while True:
            guard.check(start)
            _, data = await self._call("GET", "Groups", params={"startIndex": start, "count": page_size})
            page = [
                quick_group(item) or full_group(item, source=self.source)
                for item in self._list_response(data).get("Resources") or []
            ]
            if not page:
                break
            groups.extend(page)
            start += len(page)
            total = data.get("totalResults")
            if isinstance(total, int) and start > total:
                break
        return groups

    async def list_members(self, group_id: str) -> set[str]:
        """Member ids of one group (NotFoundError if the group does not exist)."""
        _, data = await self._call("GET", f"Groups/{_segment(group_id)}")
        return set(full_group(data, source=self.source).member_ids)

    async def add_member(self, group_id: str, account_id: str) -> None:
        """PATCH ``add`` to ``members`` (RFC 7644 §3.5.2.1: adding an existing value changes nothing)."""
        from connectors.idp import scim_resources

        if not await self._patch_supported():
            return await self._replace_members(group_id, add=account_id)
        ops = [{"op": "add", "path": "members", "value": [{"value": account_id}]}]
        await self._call(
            "PATCH",
            f"Groups/{_segment(group_id)}",
            body=scim_resources.group_patch_body(ops),
        )

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """PATCH ``remove`` of ``members[value eq "id"]`` (RFC 7644 §3.5.2.2); a non-member (``noTarget``)
        is not an error."""
        from connectors.idp import scim_resources

        if not await self._patch_supported():
            return await self._replace_members(group_id, remove=account_id)
        path = f"members[{scim_filter_eq('value', account_id)}]"
        try:
            await self._call(
                "PATCH",
                f"Groups/{_segment(group_id)}",
                body=scim_resources.group_patch_body([{"op": "remove", "path": path}]),
            )
        except PermanentAPIError as exc:
            if exc.status_code == 400 and _scim_type(exc) == "noTarget":
                return
            raise

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """One PATCH ``add`` of every value to ``members`` (RFC 7644 §3.5.2.1), up to
        :data:`MAX_MEMBERS_PER_PATCH` values a request; see :meth:`_change_members`."""
        return await self._change_members(group_id, account_ids, add=True)

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """PATCH ``remove`` of ``members[value eq "a" or value eq "b" …]`` (RFC 7644 §3.5.2.2, a filter with
        ``or``, §3.4.2.2), :data:`MAX_REMOVALS_PER_PATCH` a request; none of them being a member (``noTarget``)
        is not an error."""
        return await self._change_members(group_id, account_ids, add=False)

    async def change_group_members(
        self, group_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> dict[str, ConnectorError]:
        """One PATCH with an ``add`` of ``members`` values and a ``remove`` of ``members[value eq … or …]``
        (both in one PatchOp, RFC 7644 §3.5.2, applied together or not at all). If it is refused, each
        direction is written on its own (:meth:`add_members`, :meth:`remove_members`), judged per member."""
        from connectors.idp import scim_resources

        adds, removes = list(dict.fromkeys(add)), list(dict.fromkeys(remove))
        if (
            not adds
            or not removes
            or len(adds) > MAX_MEMBERS_PER_PATCH
            or len(removes) > MAX_REMOVALS_PER_PATCH
        ):
            return await self.add_members(group_id, adds) | await self.remove_members(group_id, removes)
        if not await self._patch_supported():
            return await self.add_members(group_id, adds) | await self.remove_members(group_id, removes)
        terms = " or ".join(scim_filter_eq("value", a) for a in removes)
        ops: list[dict[str, Any]] = [
            {"op": "add", "path": "members", "value": [{"value": a} for a in adds]},
            {"op": "remove", "path": f"members[{terms}]"},
        ]
        try:
            await self._call(
                "PATCH",
                f"Groups/{_segment(group_id)}",
                body=scim_resources.group_patch_body(ops),
            )
            return {}
        except PermanentAPIError as exc:
            if exc.status_code in (401, 403, 404):
                raise
        return await self.add_members(group_id, adds) | await self.remove_members(group_id, removes)

    async def _change_members(
        self, group_id: str, account_ids: Sequence[str], *, add: bool
    ) -> dict[str, ConnectorError]:
        """Many members in one request per chunk. A PATCH is atomic (RFC 7644 §3.5.2: one failed operation
        fails it all), so a refused chunk is judged member by member: through ``/Bulk`` (§3.7, one operation
        per member, within ``maxOperations`` and ``maxPayloadSize``) when ``/ServiceProviderConfig`` offers it,
        else one PATCH per member. Without PATCH the group is read and PUT back once with every change."""
        ids = list(dict.fromkeys(account_ids))
        if not ids:
            return {}
        if not await self._patch_supported():
            return await self._replace_many(group_id, ids, add=add)
        failed: dict[str, ConnectorError] = {}
        size = MAX_MEMBERS_PER_PATCH if add else MAX_REMOVALS_PER_PATCH
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            try:
                await self._patch_members(group_id, chunk, add=add)
            except PermanentAPIError as exc:
                if exc.status_code in (401, 403, 404):
                    raise  # the group or the credentials, not a member: nothing to judge one by one
                failed |= await self._judge_members(group_id, chunk, add=add)
        return failed

    async def _patch_members(self, group_id: str, ids: list[str], *, add: bool) -> None:
        from connectors.idp import scim_resources

        if add:
            ops = [{"op": "add", "path": "members", "value": [{"value": a} for a in ids]}]
        else:
            terms = " or ".join(scim_filter_eq("value", a) for a in ids)
            ops = [{"op": "remove", "path": f"members[{terms}]"}]
        try:
            await self._call(
                "PATCH",
                f"Groups/{_segment(group_id)}",
                body=scim_resources.group_patch_body(ops),
            )
        except PermanentAPIError as exc:
            if add or not (exc.status_code == 400 and _scim_type(exc) == "noTarget"):
                raise

    async def _judge_members(self, group_id: str, ids: list[str], *, add: bool) -> dict[str, ConnectorError]:
        config = await self.service_provider_config()
        bulk = config.bulk
        if not (bulk and bulk.supported):
            return await self._one_by_one(group_id, ids, add=add)
        operations = []
        for account_id in ids:
            if add:
                op = {"op": "add", "path": "members", "value": [{"value": account_id}]}
            else:
                op = {"op": "remove", "path": f"members[{scim_filter_eq('value', account_id)}]"}
            operations.append(
                {
                    "method": "PATCH",
                    "path": f"/Groups/{_segment(group_id)}",
                    "bulkId": account_id,
                    "data": {"schemas": [PATCH_SCHEMA], "Operations": [op]},
                }
            )
        failed: dict[str, ConnectorError] = {}
        for part in _bulk_parts(operations, bulk.max_operations, bulk.max_payload_size):
            _, data = await self._call("POST", "Bulk", body={"schemas": [BULK_REQUEST], "Operations": part})
            answers = (data or {}).get("Operations") if isinstance(data, dict) else None
            if not isinstance(answers, list) or len(answers) != len(part):
                raise ResponseValidationError(
                    "BulkResponse does not answer every operation", source=self.source
                )
            for sent, answer in zip(part, answers, strict=True):
                error = self._bulk_error(answer, removing=not add)
                if error is not None:
                    failed[sent["bulkId"]] = error
        return failed

    def _bulk_error(self, answer: Any, *, removing: bool) -> ConnectorError | None:
        """The error of one BulkResponse operation (RFC 7644 §3.7.3: ``status`` and, on failure, an Error
        ``response``), None when it succeeded (or removed a non-member)."""
        status_text = str(answer.get("status", "")) if isinstance(answer, dict) else ""
        status = int(status_text[:3]) if status_text[:3].isdigit() else 0
        if 200 <= status < 300:
            return None
        response = answer.get("response") if isinstance(answer, dict) else None
        scim_type = response.get("scimType") if isinstance(response, dict) else None
        if removing and status == 400 and scim_type == "noTarget":
            return None
        detail = response.get("detail") if isinstance(response, dict) else None
        message = cut(" ".join(str(p) for p in (scim_type, detail) if p) or "bulk operation failed", 300)
        error: ConnectorError = PermanentAPIError(
            f"HTTP {status or '?'}: {message}", source=self.source, status_code=status or None
        )
        return self.api.scrub(error)

    async def _one_by_one(self, group_id: str, ids: list[str], *, add: bool) -> dict[str, ConnectorError]:
        write = self.add_member if add else self.remove_member
        return await one_by_one(ids, lambda a: write(group_id, a))

    async def _replace_many(self, group_id: str, ids: list[str], *, add: bool) -> dict[str, ConnectorError]:
        """Without PATCH: read the group, PUT it back with every change (If-Match, three tries); a refused PUT
        is judged member by member."""
        from connectors.idp import scim_resources

        wanted = set(ids)
        for attempt in (1, 2, 3):
            group, members, values = await self._read_members(group_id)
            if (add and wanted <= values) or (not add and not wanted & values):
                return {}
            if add:
                members += [scim_resources.GroupMember(value=a) for a in ids if a not in values]
            else:
                members = [m for m in members if str(m.value) not in wanted]
            try:
                await self._put_group(group, members, group_id)
                return {}
            except PermanentAPIError as exc:
                if exc.status_code == 412 and attempt < 3:
                    continue
                if exc.status_code in (401, 403, 404, 412):
                    raise
                return await self._one_by_one(group_id, ids, add=add)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read_members(self, group_id: str) -> tuple[Any, list[Any], set[str]]:
        """The group as the provider holds it (its version remembered for If-Match), its members with a value,
        and their values."""
        from connectors.idp import scim_resources

        response, data = await self._call("GET", f"Groups/{_segment(group_id)}")
        group = scim_resources.parse_group(data, source=self.source)
        self._remember_version(group.id, response, group)
        members = [m for m in group.members or [] if m.value]
        return group, members, {str(m.value) for m in members}

    async def _put_group(self, group: Any, members: list[Any], group_id: str) -> None:
        """PUT ``group`` back with exactly ``members`` (If-Match when the provider has ETags)."""
        from connectors.idp import scim_resources

        payload = scim_resources.group_payload(group, members)
        await self._call(
            "PUT", f"Groups/{_segment(group_id)}", body=payload, headers=await self._if_match(group_id)
        )

    async def _replace_members(
        self, group_id: str, *, add: str | None = None, remove: str | None = None
    ) -> None:
        """Membership without PATCH: read the group, PUT it back (RFC 7644 §3.5.1) with If-Match when the
        provider has ETags; a 412 (someone else changed the group) re-reads, up to three times."""
        from connectors.idp import scim_resources

        for attempt in (1, 2, 3):
            group, members, values = await self._read_members(group_id)
            if (add is not None and add in values) or (remove is not None and remove not in values):
                return  # already as wanted
            if add is not None:
                members.append(scim_resources.GroupMember(value=add))
            try:
                await self._put_group(group, [m for m in members if str(m.value) != remove], group_id)
                return
            except PermanentAPIError as exc:
                if exc.status_code != 412 or attempt == 3:
                    raise

    async def create_group(self, name: str) -> Group:
        """POST /Groups. Not part of the protocol (groups are managed by IT); used by tests and the sandbox."""
        from connectors.idp import scim_resources

        body = scim_resources.new_group_payload(name)
        _, data = await self._call("POST", "Groups", body=body, retry=False)
        return full_group(data, source=self.source)


def _group(group: Any) -> Group:
    return Group(
        id=str(group.id),
        name=group.display_name or "",
        member_ids=frozenset(str(m.value) for m in group.members or [] if m.value),
    )


def _bulk_parts(
    operations: list[dict[str, Any]], max_operations: int | None, max_payload: int | None
) -> list[list[dict[str, Any]]]:
    """Operations cut into Bulk requests of at most ``maxOperations`` operations and ``maxPayloadSize`` bytes
    (RFC 7644 §3.7.4; the envelope's size is allowed for)."""
    limit_ops = max(1, max_operations or len(operations))
    limit_bytes = (max_payload or 1 << 62) - 200
    parts: list[list[dict[str, Any]]] = [[]]
    size = 0
    for operation in operations:
        length = len(json.dumps(operation)) + 1
        if parts[-1] and (len(parts[-1]) >= limit_ops or size + length > limit_bytes):
            parts.append([])
            size = 0
        parts[-1].append(operation)
        size += length
    return parts


def _segment(resource_id: str) -> str:
    """A resource id as one URL path segment (ids are opaque, RFC 7643 §3.1: never let one add a path)."""
    return quote(resource_id, safe="")
