"""Personio as the HRIS: the Persons & Employments API v2, with the v1 employees list as the fallback.

Authentication (developer.personio.de, "Authentication" v2, reference/post_v2-auth-token): API credentials
(Settings → Integrations → API credentials) with the scope ``personio:persons:read``; the client id and
secret are exchanged at ``POST /v2/auth/token`` (form-encoded ``grant_type=client_credentials``, ``client_id``,
``client_secret``; OAuth 2.0 client credentials, RFC 6749 §4.4) for ``{"access_token", "token_type":
"Bearer", "expires_in"}``. The token is cached until ``expires_in`` (minus a minute) and then renewed; a 401
on a data request with a cached token (revoked early) renews it once. A refused exchange (401, or 400
``invalid_client``) is an AuthenticationError naming the settings. The auth endpoint allows 60 requests per
minute ("Authentication": rate limit), which one token per day stays far below.

Reads, v2 (reference/get_v2-persons, reference/get_v2-persons-person-id-employments; "Person & Employment v2
APIs - GA"):

- ``GET /v2/persons?limit=50`` with **cursor paging**: ``limit`` is 1..50 (a larger one is answered 400),
  the answer is ``{"_data": [...], "_meta": {"links": {"next": {"href": ...}}}}`` and the next page is the
  ``next`` link (absolute; followed only on the API's own host, each cursor once: :class:`LoopGuard`). A
  person carries ``id``, ``first_name``, ``last_name``, ``preferred_name``, ``email`` and the ids of its
  employments.
- ``GET /v2/persons/{id}/employments`` per person (concurrently, within the client's limits), most recent first: the latest employment is the person's
  current one (a rehire is a new employment, so an earlier employment's termination does not leak into it).
  Read from it: ``status`` (``ONBOARDING``, ``ACTIVE``, ``LEAVE``, ``INACTIVE``), ``employment_start_date``
  (``start_date`` also accepted) → hire_date, ``termination.termination_date`` (``terminated_at`` also
  accepted) → termination_date, ``supervisor.id`` → manager_id, ``position.title``, ``type`` →
  employment_type, and the ``org_units`` entry of type ``DEPARTMENT`` → department (its ``name`` when the
  employment carries it, else ``GET /v2/org-units/{id}``, cached per read). These employment field names are
  the ones the v2 reference names; where the stored reference did not show a field in full, the name read is
  the one the fake (tests/support/personio_fake.py) serves, and the v1 fallback covers the same data.
- Changed since: ``GET /v2/persons?updated_at.gt=<cursor>`` (the list's ``updated_at`` filter). An
  employment change is assumed to update its person's ``updated_at``; the nightly full sync catches what an
  incremental read misses.

Fallback, v1 (api-docs personio-personnel-data-api-oa3.yaml, "Pagination adoption guide for V1 GET
employees"): when ``/v2/persons`` answers 404 (not available) or 403 (the credentials lack the v2 scope),
``GET /v1/company/employees?limit=100&offset=N`` (``limit`` at most 100, ``offset`` = index of the first
employee; ``{"success", "metadata": {"total_elements"}, "data": [{"type": "Employee", "attributes": {name:
{"label", "value"}}}]}``), ``GET /v1/company/employees/{id}``, and ``updated_since`` for changes. v1 dates
are date-times with an offset (``2014-11-09T00:00:00+01:00``); the calendar date is kept. ``api_version``
pins ``v2`` or ``v1`` instead of ``auto``. v1 keeps no employment history: a termination before the (re)hire
date there is an invalid record.

Status: the employment status refined by the dates (:func:`connectors.hris.parsing.status_from`). Neither
the client secret nor the access token appears in a log line, exception or repr.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from connectors.errors import (
    AuthenticationError,
    ConnectorError,
    InvalidRecordError,
    NotFoundError,
    ResponseValidationError,
)
from connectors.hris.parsing import (
    STATUS_WORDS,
    RecordProblem,
    build_employee,
    clean,
    parse_date,
    reject_manager_loops,
    status_from,
)
from connectors.http import APIClient, ClosesAPI, LoopGuard
from models.domain import ChangeSet, Employee, EmployeeStatus

__all__ = ["PersonioHRIS", "DEFAULT_BASE_URL", "V2_PAGE_LIMIT", "V1_PAGE_LIMIT"]

SOURCE = "personio"
DEFAULT_BASE_URL = "https://api.personio.de/"
V2_PAGE_LIMIT = 50
V1_PAGE_LIMIT = 100
TOKEN_MARGIN_SECONDS = 60.0
log = logging.getLogger("tenure.hris.personio")
ApiVersion = Literal["auto", "v2", "v1"]


def _today() -> date:
    return datetime.now(UTC).date()


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _word(value: Any) -> EmployeeStatus | None:
    text = clean(value)
    if text is None:
        return None
    status = STATUS_WORDS.get(text.lower())
    if status is None:
        raise RecordProblem("unknown status", "status")
    return status


def _ref(value: Any, key: str) -> Any:
    return value.get(key) if isinstance(value, Mapping) else None


def _attr(attributes: Mapping[str, Any], name: str) -> Any:
    """A v1 attribute's ``value`` (attributes are ``{"label", "value"}`` objects)."""
    return _ref(attributes.get(name), "value")


class PersonioHRIS(ClosesAPI):
    """Employees from Personio; satisfies :class:`connectors.protocols.HRIS`.

    ``api`` is an :class:`~connectors.http.APIClient` on ``https://api.personio.de/`` without auth: the
    connector exchanges ``client_id``/``client_secret`` for a bearer token itself."""

    source = SOURCE

    def __init__(
        self,
        api: APIClient,
        *,
        client_id: str,
        client_secret: str,
        api_version: ApiVersion = "auto",
        today: Callable[[], date] = _today,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self._client_id = client_id
        self._client_secret = client_secret
        self.api_version: ApiVersion = api_version
        self._today = today
        self._now = now
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self._org_units: dict[str, str | None] = {}
        self._org_unit_lock = asyncio.Lock()  # concurrent reads of one person each: one read per org unit
        self._token_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PersonioHRIS(api={self.api!r}, api_version={self.api_version!r})"

    # -- token --------------------------------------------------------------------------------------------

    async def _access_token(self) -> str:
        async with self._token_lock:  # concurrent requests share one exchange
            return await self._exchange_if_needed()

    async def _exchange_if_needed(self) -> str:
        if self._token is not None and self._clock() < self._token_expires:
            return self._token
        form = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        try:
            answer = await self.api.request_json("POST", "v2/auth/token", data=form, retry=True)
        except ConnectorError as exc:
            if exc.status_code == 400 and "invalid_client" in exc.message:
                raise self.api.scrub(
                    AuthenticationError(exc.message, source=SOURCE, status_code=400)
                ) from None
            raise
        token = answer.get("access_token") if isinstance(answer, Mapping) else None
        if not isinstance(token, str) or not token:
            raise ResponseValidationError("the token answer has no access_token", source=SOURCE)
        expires_in = answer.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 86_400.0
        self.api.add_secrets(token)
        self._token = token
        self._token_expires = self._clock() + max(0.0, lifetime - TOKEN_MARGIN_SECONDS)
        return token

    async def _get(self, url: str, **params: Any) -> Any:
        """GET with the bearer token; a 401 on a cached token renews it once (revoked or expired early)."""
        for attempt in (1, 2):
            token = await self._access_token()
            try:
                return await self.api.request_json(
                    "GET", url, params=params or None, headers={"Authorization": f"Bearer {token}"}
                )
            except AuthenticationError as exc:
                if attempt == 2 or exc.status_code != 401:
                    raise
                self._token = None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- v2 -----------------------------------------------------------------------------------------------

    def _same_host(self, href: str) -> str:
        if urlsplit(href).netloc not in ("", self.api.client.base_url.netloc.decode()):
            raise ResponseValidationError("a next link points to another host", source=SOURCE)
        return href

    async def _v2_persons(self, **filters: Any) -> list[Mapping[str, Any]]:
        persons: list[Mapping[str, Any]] = []
        guard = LoopGuard(SOURCE)
        url: str | None = "v2/persons"
        params: dict[str, Any] = {"limit": V2_PAGE_LIMIT, **filters}
        while url is not None:
            body = await self._get(url, **params)
            data = body.get("_data") if isinstance(body, Mapping) else None
            if not isinstance(data, list):
                raise ResponseValidationError("persons answer has no '_data' list", source=SOURCE)
            persons += [p for p in data if isinstance(p, Mapping)]
            href = _ref(_ref(_ref(_ref(body, "_meta"), "links"), "next"), "href")
            url, params = (self._same_host(href), {}) if isinstance(href, str) and href else (None, {})
            if url is not None:
                guard.check(url)
        return persons

    async def _v2_employment(self, person_id: str) -> Mapping[str, Any] | None:
        body = await self._get(f"v2/persons/{person_id}/employments", limit=V2_PAGE_LIMIT)
        data = body.get("_data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise ResponseValidationError("employments answer has no '_data' list", source=SOURCE)
        employments = [e for e in data if isinstance(e, Mapping)]
        return employments[0] if employments else None  # most recent first (reference)

    async def _department(self, employment: Mapping[str, Any]) -> str | None:
        units = employment.get("org_units")
        for unit in units if isinstance(units, list) else []:
            if not isinstance(unit, Mapping) or str(unit.get("type") or "").upper() != "DEPARTMENT":
                continue
            if clean(unit.get("name")):
                return clean(unit.get("name"))
            unit_id = clean(unit.get("id"))
            if unit_id is None:
                return None
            async with self._org_unit_lock:
                if unit_id not in self._org_units:
                    body = await self._get(f"v2/org-units/{unit_id}")
                    self._org_units[unit_id] = clean(_ref(body, "name"))
            return self._org_units[unit_id]
        return None

    async def _v2_employee(self, person: Mapping[str, Any], today: date) -> Employee | InvalidRecordError:
        person_id = clean(person.get("id"))
        employment = await self._v2_employment(person_id) if person_id else None
        employment = employment or {}
        termination = employment.get("termination")
        record = {
            "employee_id": person_id,
            "first_name": person.get("first_name"),
            "last_name": person.get("last_name"),
            "preferred_name": person.get("preferred_name"),
            "work_email": person.get("email"),
            "department": await self._department(employment),
            "title": _ref(employment.get("position"), "title"),
            "manager_id": _ref(employment.get("supervisor"), "id"),
            "employment_type": employment.get("type"),
            "hire_date": employment.get("employment_start_date") or employment.get("start_date"),
            "termination_date": _ref(termination, "termination_date") or _ref(termination, "terminated_at"),
        }
        return self._employee(record, employment.get("status"), today=today, raw=person)

    # -- v1 -----------------------------------------------------------------------------------------------

    async def _v1_page(self, offset: int, **filters: Any) -> tuple[list[Mapping[str, Any]], int | None]:
        body = await self._get("v1/company/employees", limit=V1_PAGE_LIMIT, offset=offset, **filters)
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, list):
            raise ResponseValidationError("employees answer has no 'data' list", source=SOURCE)
        total = _ref(body.get("metadata"), "total_elements")
        return [e for e in data if isinstance(e, Mapping)], total if isinstance(total, int) else None

    async def _v1_employees(self, **filters: Any) -> list[Mapping[str, Any]]:
        found: list[Mapping[str, Any]] = []
        guard = LoopGuard(SOURCE)
        offset = 0
        while True:
            guard.check(offset)
            page, total = await self._v1_page(offset, **filters)
            found += page
            offset += len(page)
            if not page or len(page) < V1_PAGE_LIMIT or (total is not None and offset >= total):
                return found

    def _v1_employee(self, entry: Mapping[str, Any], today: date) -> Employee | InvalidRecordError:
        attributes = entry.get("attributes")
        if not isinstance(attributes, Mapping):
            return InvalidRecordError("employee entry is not an object", source=SOURCE)
        supervisor = _ref(_attr(attributes, "supervisor"), "attributes")
        record = {
            "employee_id": _attr(attributes, "id"),
            "first_name": _attr(attributes, "first_name"),
            "last_name": _attr(attributes, "last_name"),
            "preferred_name": _attr(attributes, "preferred_name"),
            "work_email": _attr(attributes, "email"),
            "department": _ref(_ref(_attr(attributes, "department"), "attributes"), "name"),
            "location": _ref(_ref(_attr(attributes, "office"), "attributes"), "name"),
            "title": _attr(attributes, "position"),
            "manager_id": _ref(supervisor.get("id"), "value") if isinstance(supervisor, Mapping) else None,
            "employment_type": _attr(attributes, "employment_type"),
            "hire_date": _attr(attributes, "hire_date"),
            "termination_date": _attr(attributes, "termination_date"),
        }
        return self._employee(record, _attr(attributes, "status"), today=today, raw=dict(attributes))

    # -- shared -------------------------------------------------------------------------------------------

    def _employee(
        self, record: dict[str, Any], status_word: Any, *, today: date, raw: Mapping[str, Any]
    ) -> Employee | InvalidRecordError:
        record = {
            k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in record.items()
        }
        employee_id = clean(record.get("employee_id"))
        try:
            hire = parse_date(record["hire_date"], "hire_date", with_time=True)
            termination = parse_date(record["termination_date"], "termination_date", with_time=True)
            status = status_from(_word(status_word), hire, termination, today=today)
        except RecordProblem as problem:
            return InvalidRecordError(
                problem.reason, source=SOURCE, record_id=employee_id, field=problem.field
            )
        return build_employee(
            record, source=SOURCE, today=today, raw=dict(raw), status=status, with_time=True
        )

    async def _use_v2(self) -> bool:
        """v2 unless pinned to v1, or unless ``auto`` finds ``/v2/persons`` unavailable (404) or out of the
        credentials' scope (403): then v1 from now on."""
        if self.api_version != "auto":
            return self.api_version == "v2"
        try:
            await self._get("v2/persons", limit=1)
        except (NotFoundError, AuthenticationError) as exc:
            if isinstance(exc, AuthenticationError) and exc.status_code != 403:
                raise
            log.warning(
                "Personio v2 persons unavailable (HTTP %s): using the v1 employees list", exc.status_code
            )
            self.api_version = "v1"
            return False
        self.api_version = "v2"
        return True

    # -- HRIS protocol ------------------------------------------------------------------------------------

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Every person with their latest employment (v2), or every employee (v1), paged."""
        today = self._today()
        if await self._use_v2():
            persons = await self._v2_persons()
            # one employments read per person, concurrently (the APIClient bounds concurrency and rate)
            items = list(await asyncio.gather(*(self._v2_employee(person, today) for person in persons)))
        else:
            items = [self._v1_employee(entry, today) for entry in await self._v1_employees()]
        for item in reject_manager_loops(items, source=SOURCE):
            yield item

    async def get_employee(self, employee_id: str) -> Employee:
        """One person (v2: the person and its employments; v1: the employee); NotFoundError if unknown."""
        today = self._today()
        if await self._use_v2():
            persons = await self._v2_persons(id=employee_id)
            matches = [p for p in persons if clean(p.get("id")) == employee_id]
            if not matches:
                raise NotFoundError(f"person {employee_id} is not in Personio", source=SOURCE)
            result = await self._v2_employee(matches[0], today)
        else:
            body = await self._get(f"v1/company/employees/{employee_id}")
            data = body.get("data") if isinstance(body, Mapping) else None
            if not isinstance(data, Mapping):
                raise ResponseValidationError("employee answer has no 'data' object", source=SOURCE)
            result = self._v1_employee(data, today)
        if isinstance(result, InvalidRecordError):
            raise result
        return result

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """Ids updated after ``cursor`` (v2 ``updated_at.gt``, v1 ``updated_since``); None → every id.
        next_cursor = the time the read started, so nothing between two reads is lost."""
        asked_at = self._now()
        use_v2 = await self._use_v2()
        if use_v2:
            filters = {"updated_at.gt": _iso(cursor)} if cursor is not None else {}
            ids = [clean(p.get("id")) for p in await self._v2_persons(**filters)]
        else:
            filters = {"updated_since": _iso(cursor)} if cursor is not None else {}
            entries = await self._v1_employees(**filters)
            ids = [clean(_attr(e.get("attributes") or {}, "id")) for e in entries]
        unique = list(dict.fromkeys(str(i) for i in ids if i))
        return ChangeSet(employee_ids=unique, next_cursor=asked_at)
