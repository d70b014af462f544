"""HiBob ("Bob") as the HRIS, over its public API v1 (https://apidocs.hibob.com).

Authentication ("API Service Users", apidocs.hibob.com/docs/api-service-users): a service user created in Bob
(Settings → Integrations → Service users) with the People permissions for the fields below; its **ID and
token as HTTP Basic** (user = service-user id, password = token). Base URL ``https://api.hibob.com/v1/``
(sandbox ``https://api.sandbox.hibob.com/v1/``).

Endpoints used, as documented:

- ``POST /people/search`` ("Search for employees", reference/post_people-search; "People read API contract",
  docs/people-read-api-contract) with ``{"fields": FIELDS, "showInactive": true, "humanReadable": "APPEND"}``.
  **No pagination**: one answer holds every employee the service user may see (``{"employees": [...]}``).
  ``showInactive`` defaults to active employees only; we ask for terminated ones too (leavers, rehires).
  ``humanReadable: "APPEND"`` keeps machine values (ids, ``YYYY-MM-DD`` dates) and adds a ``humanReadable``
  object with display values: list fields such as department, site and employment type are list-item ids in
  machine format ("Fields and lists metadata", docs/fields-metadata), so their names come from
  ``humanReadable``. Fields the service user may not read are *silently omitted*: a missing required field is
  then an invalid record naming the field. Filters: ``root.id``/``root.email`` with ``equals``, at most one.
- The same search with ``filters: [{"fieldPath": "root.id", "operator": "equals", "values": [id]}]`` for one
  employee, plus ``GET /people/{id}/lifecycle`` (lifecycle history, ``{"values": [{"effectiveDate",
  "status"}]}``) and ``GET /people/{id}/employment`` (employment history, ``{"values": [{"effectiveDate",
  "type"}]}``) for future-dated changes: the employment type *effective today* (a future-dated entry is not
  applied early), a termination scheduled in the lifecycle history but not yet in ``internal.terminationDate``,
  and rehires.
- Rate limit: about 50 requests per minute on the People API ("People API", reference/people: rate limits);
  the composition root sets the connector's default rate to 50/min; a 429 carries ``Retry-After``, which
  :class:`connectors.http.APIClient` honours.

Field mapping (HiBob field path → Employee): ``root.id`` (Bob's employee id, also the webhooks'
``employeeId``) → employee_id, ``root.firstName``, ``root.surname`` → last_name, ``root.email`` →
work_email, ``home.privateEmail`` → personal_email, ``work.department``, ``work.title``, ``work.site`` →
location, ``payroll.employment.type`` → employment_type (display names), ``work.reportsTo.id`` → manager_id,
``work.startDate`` → hire_date, ``internal.terminationDate`` → termination_date. Status: the lifecycle status
(``internal.lifecycleStatus``: hired, employed, leave, garden leave, terminated; else ``internal.status``
Active/Inactive) refined by the dates (:func:`connectors.hris.parsing.status_from`).

Rehire: Bob may keep the previous employment's termination date after a rehire. A termination date before the
start date is therefore checked against the lifecycle history: ``employed``/``hired`` entries effective both
before and after the termination prove a rehire and the old termination is dropped; otherwise the record is
invalid (``termination_date before hire_date``).

Change detection: HiBob documents no "changed since" read for people; webhooks (``deployments/hibob_webhook.py``)
are the incremental path, and :meth:`HiBobHRIS.changed_since` reports every employee (the sync then reads the
roster in one search). The service-user token never appears in a log line, exception or repr.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from connectors.errors import InvalidRecordError, NotFoundError, ResponseValidationError
from connectors.hris.parsing import (
    STATUS_WORDS,
    RecordProblem,
    build_employee,
    clean,
    parse_date,
    reject_manager_loops,
    status_from,
)
from connectors.http import APIClient, ClosesAPI
from models.domain import ChangeSet, Employee, EmployeeStatus

__all__ = ["HiBobHRIS", "FIELDS", "DEFAULT_BASE_URL", "REQUESTS_PER_MINUTE", "to_record"]

SOURCE = "hibob"
DEFAULT_BASE_URL = "https://api.hibob.com/v1/"
REQUESTS_PER_MINUTE = 50
# HiBob field path -> our field; "display" fields are read from the humanReadable part of the answer.
FIELD_MAP: dict[str, str] = {
    "root.id": "employee_id",
    "root.firstName": "first_name",
    "root.surname": "last_name",
    "root.email": "work_email",
    "home.privateEmail": "personal_email",
    "work.department": "department",
    "work.title": "title",
    "work.reportsTo.id": "manager_id",
    "work.site": "location",
    "payroll.employment.type": "employment_type",
    "work.startDate": "hire_date",
    "internal.terminationDate": "termination_date",
}
DISPLAY_FIELDS = frozenset({"work.department", "work.title", "work.site", "payroll.employment.type"})
STATUS_FIELDS = ("internal.lifecycleStatus", "internal.status")
FIELDS: tuple[str, ...] = (*FIELD_MAP, *STATUS_FIELDS)
REHIRE_WORDS = frozenset({"hired", "employed"})
LEAVING_WORDS = frozenset({"terminated", "garden leave"})


def _today() -> date:
    return datetime.now(UTC).date()


def _path(payload: Any, path: str) -> Any:
    """The value at a HiBob field path in an answer (``root.x`` is top level; ``work.x.y`` is nested)."""
    parts = path.split(".")
    node = payload
    for part in parts[1:] if parts[0] == "root" else parts:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def to_record(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A HiBob employee object renamed to our field names (display values for list fields)."""
    display = payload.get("humanReadable")
    record: dict[str, Any] = {}
    for path, ours in FIELD_MAP.items():
        value = _path(payload, path)
        if path in DISPLAY_FIELDS and isinstance(display, Mapping):
            value = _path(display, path) or value
        record[ours] = value if not isinstance(value, Mapping | list) else None
    return record


def _status_word(payload: Mapping[str, Any]) -> EmployeeStatus | None:
    lifecycle = clean(_path(payload, "internal.lifecycleStatus"))
    active = clean(_path(payload, "internal.status"))
    word = lifecycle or active
    if word is None:
        return None
    status = STATUS_WORDS.get(" ".join(word.lower().split()))
    if status is None:
        raise RecordProblem("unknown status", "status")
    return status


def _entries(body: Any, what: str) -> list[Mapping[str, Any]]:
    values = body.get("values") if isinstance(body, Mapping) else None
    if not isinstance(values, list):
        raise ResponseValidationError(f"{what} answer has no 'values' list", source=SOURCE)
    return [v for v in values if isinstance(v, Mapping)]


def _dated(entries: list[Mapping[str, Any]]) -> list[tuple[date, Mapping[str, Any]]]:
    dated: list[tuple[date, Mapping[str, Any]]] = []
    for entry in entries:
        try:
            when = parse_date(entry.get("effectiveDate"), "effectiveDate")
        except RecordProblem:
            continue
        if when is not None:
            dated.append((when, entry))
    return sorted(dated, key=lambda pair: pair[0])


class HiBobHRIS(ClosesAPI):
    """Employees from HiBob; satisfies :class:`connectors.protocols.HRIS`.

    ``api`` is an :class:`~connectors.http.APIClient` whose base URL ends in ``/v1/`` and which authenticates
    with the service user's id and token (see :func:`tenure.compose.build_hris`)."""

    source = SOURCE

    def __init__(
        self,
        api: APIClient,
        *,
        today: Callable[[], date] = _today,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self._today = today
        self._now = now

    def __repr__(self) -> str:
        return f"HiBobHRIS(api={self.api!r})"

    # -- reads --------------------------------------------------------------------------------------------

    async def _search(self, employee_id: str | None = None) -> list[Any]:
        body: dict[str, Any] = {"fields": list(FIELDS), "showInactive": True, "humanReadable": "APPEND"}
        if employee_id is not None:
            body["filters"] = [{"fieldPath": "root.id", "operator": "equals", "values": [employee_id]}]
        answer = await self.api.request_json("POST", "people/search", json=body, retry=True)
        employees = answer.get("employees") if isinstance(answer, Mapping) else None
        if not isinstance(employees, list):
            raise ResponseValidationError("people search answer has no 'employees' list", source=SOURCE)
        return employees

    async def _history(self, employee_id: str, table: str) -> list[tuple[date, Mapping[str, Any]]]:
        body = await self.api.request_json("GET", f"people/{employee_id}/{table}")
        return _dated(_entries(body, f"{table} history"))

    # -- check --------------------------------------------------------------------------------------------

    def to_employee(
        self,
        payload: Any,
        *,
        today: date,
        lifecycle: list[tuple[date, Mapping[str, Any]]] | None = None,
        employment: list[tuple[date, Mapping[str, Any]]] | None = None,
    ) -> Employee | InvalidRecordError:
        """One HiBob employee object (and, where read, its lifecycle and employment history) → Employee, or
        an InvalidRecordError whose reason names the field."""
        if not isinstance(payload, Mapping):
            return InvalidRecordError("employee entry is not an object", source=SOURCE)
        record = to_record(payload)
        if record["employee_id"] is not None:
            record["employee_id"] = str(record["employee_id"])
        employee_id = clean(record["employee_id"])
        try:
            hire = parse_date(record["hire_date"], "hire_date")
            termination = parse_date(record["termination_date"], "termination_date")
            if lifecycle is not None:
                termination = self._lifecycle_termination(lifecycle, hire, termination, today=today)
            if employment is not None:
                current = [entry for when, entry in employment if when <= today]
                if current and clean(current[-1].get("type")):
                    record["employment_type"] = clean(current[-1].get("type"))
            record["termination_date"] = termination.isoformat() if termination else None
            word = _status_word(payload)
            status = status_from(word, hire, termination, today=today)
        except RecordProblem as problem:
            return InvalidRecordError(
                problem.reason, source=SOURCE, record_id=employee_id, field=problem.field
            )
        return build_employee(record, source=SOURCE, today=today, raw=dict(payload), status=status)

    @staticmethod
    def _lifecycle_termination(
        lifecycle: list[tuple[date, Mapping[str, Any]]],
        hire: date | None,
        termination: date | None,
        *,
        today: date,
    ) -> date | None:
        """The termination date the lifecycle history supports: None after a rehire (employed before the
        termination and employed again after it), a scheduled termination when Bob has not filled the field
        yet."""
        words = [(when, " ".join(str(e.get("status") or "").lower().split())) for when, e in lifecycle]
        if termination is not None and hire is not None and termination < hire:
            employed = [when for when, word in words if word in REHIRE_WORDS]
            if any(when < termination for when in employed) and any(when > termination for when in employed):
                return None  # employed, terminated, employed again: the termination ended the earlier job
            return termination
        if termination is None:
            start = hire or date.min
            scheduled = [when for when, word in words if word in LEAVING_WORDS and when > max(start, today)]
            if scheduled:
                return scheduled[0]
        return termination

    # -- HRIS protocol ------------------------------------------------------------------------------------

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Every employee (active, future-dated and terminated) from one search; the lifecycle history is
        read only for employees whose termination date precedes their start date (a possible rehire)."""
        today = self._today()
        items: list[Employee | InvalidRecordError] = []
        for payload in await self._search():
            item = self.to_employee(payload, today=today)
            if isinstance(item, InvalidRecordError) and item.reason == "termination_date before hire_date":
                assert item.record_id is not None
                item = self.to_employee(
                    payload, today=today, lifecycle=await self._history(item.record_id, "lifecycle")
                )
            items.append(item)
        for item in reject_manager_loops(items, source=SOURCE):
            yield item

    async def get_employee(self, employee_id: str) -> Employee:
        """One employee by Bob id, with its lifecycle and employment history; NotFoundError if unknown."""
        found = await self._search(employee_id)
        matches = [p for p in found if isinstance(p, Mapping) and str(p.get("id")) == employee_id]
        if not matches:
            raise NotFoundError(f"employee {employee_id} is not in HiBob", source=SOURCE)
        lifecycle = await self._history(employee_id, "lifecycle")
        employment = await self._history(employee_id, "employment")
        result = self.to_employee(matches[0], today=self._today(), lifecycle=lifecycle, employment=employment)
        if isinstance(result, InvalidRecordError):
            raise result
        return result

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """Every employee id (HiBob has no changed-since read for people; webhooks carry the changes);
        next_cursor = the time of the read."""
        asked_at = self._now()
        ids = [str(p["id"]) for p in await self._search() if isinstance(p, Mapping) and clean(p.get("id"))]
        return ChangeSet(employee_ids=ids, next_cursor=asked_at)
