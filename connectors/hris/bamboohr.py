"""BambooHR as the HRIS, over its REST API v1 (https://documentation.bamboohr.com/reference).

Base URL ``https://api.bamboohr.com/api/gateway.php/{companyDomain}/v1/``; HTTP Basic auth with the API key as
the user name and any string (we send ``x``) as the password; ``Accept: application/json`` (the API answers XML
otherwise). Endpoints used, as documented by BambooHR:

- ``POST /v1/reports/custom?format=JSON&onlyCurrent=false`` with ``{"fields": [...]}`` ("Request a custom
  report") → ``{"title", "fields", "employees": [{"id": "123", "firstName": ...}]}``: every employee with the
  fields we need in one request. ``onlyCurrent=false`` keeps future-dated hires (our pending joiners) and
  terminated employees in the report. (``GET /v1/employees/directory`` is not used for the listing: it holds
  only current employees and no status or dates.)
- ``GET /v1/employees/{id}/?fields=a,b,c`` ("Get Employee") → ``{"id": "123", "firstName": ...}``; 404 if
  unknown.
- ``GET /v1/employees/changed/?since=2026-01-01T00:00:00Z`` ("Gets all updated employee IDs", optional
  ``type=inserted|updated|deleted``) → ``{"latest": ts, "employees": {"3": {"id": "3", "action":
  "Inserted|Updated|Deleted", "lastChanged": ts}}}``. ``latest`` becomes our next cursor.
- 429 (and 503) come with ``Retry-After``; :class:`connectors.http.APIClient` honours it.

Field mapping (BambooHR field alias → Employee): ``firstName``, ``lastName``, ``preferredName``, ``workEmail``,
``homeEmail`` → personal_email, ``department``, ``jobTitle`` → title, ``supervisorEId`` (the supervisor's
employee id) → manager_id, ``location``, ``employmentHistoryStatus`` → employment_type, ``hireDate``,
``terminationDate`` (``0000-00-00`` = empty). Status (:func:`bamboohr_status`): ``Inactive`` → terminated
(with or without a termination date: an inactive person keeps no access) unless a future hire date says a
rehire is coming (→ pending); a termination date in the past → terminated; a future hire date → pending;
``Active`` with an employment status mentioning leave → leave; else active. Any other status word makes the
record invalid. Employees on a manager loop (A→B→A) are invalid records (``manager_id``).

The API key never appears in a log line, exception or repr: the APIClient redacts it (and its Basic encoding).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from connectors.errors import InvalidRecordError, ResponseValidationError
from connectors.hris.parsing import (
    RecordProblem,
    build_employee,
    clean,
    parse_date,
    reject_manager_loops,
    status_from,
)
from connectors.http import APIClient, ClosesAPI
from models.domain import ChangeSet, Employee, EmployeeStatus

__all__ = [
    "BambooHRHRIS",
    "DEFAULT_BASE_URL",
    "bamboohr_base_url",
    "FIELD_MAP",
    "REPORT_FIELDS",
    "bamboohr_status",
    "to_record",
]

SOURCE = "bamboohr"
DEFAULT_BASE_URL = "https://api.bamboohr.com/api/gateway.php/"

FIELD_MAP: dict[str, str] = {  # BambooHR alias -> our field
    "id": "employee_id",
    "firstName": "first_name",
    "lastName": "last_name",
    "preferredName": "preferred_name",
    "workEmail": "work_email",
    "homeEmail": "personal_email",
    "department": "department",
    "jobTitle": "title",
    "supervisorEId": "manager_id",
    "location": "location",
    "employmentHistoryStatus": "employment_type",
    "hireDate": "hire_date",
    "terminationDate": "termination_date",
}
REPORT_FIELDS: tuple[str, ...] = (*FIELD_MAP, "status")


def _today() -> date:
    return datetime.now(UTC).date()


def to_record(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A BambooHR employee object renamed to our field names (status handled by :func:`bamboohr_status`)."""
    return {ours: payload.get(theirs) for theirs, ours in FIELD_MAP.items()}


def bamboohr_status(payload: Mapping[str, Any], *, today: date) -> EmployeeStatus:
    """Our status from BambooHR's ``status`` (Active/Inactive), dates and employment status, by the shared
    rule :func:`connectors.hris.parsing.status_from` (the dates decide, the word refines)."""
    word = (clean(payload.get("status")) or "").lower()
    if word not in ("active", "inactive"):
        raise RecordProblem("unknown status", "status")
    hire_date = parse_date(payload.get("hireDate"), "hire_date")
    termination_date = parse_date(payload.get("terminationDate"), "termination_date")
    hint = EmployeeStatus.TERMINATED if word == "inactive" else EmployeeStatus.ACTIVE
    employment = (clean(payload.get("employmentHistoryStatus")) or "").lower()
    if hint is EmployeeStatus.ACTIVE and "leave" in employment:
        hint = EmployeeStatus.LEAVE
    return status_from(hint, hire_date, termination_date, today=today)


def _iso_utc(moment: datetime) -> str:
    """``yyyy-mm-ddThh:mm:ssZ``, one of the formats BambooHR documents for ``since`` (no '+' to escape)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(value: Any) -> datetime | None:
    """BambooHR timestamps: ISO 8601 with ``+00:00``, ``+0000`` or ``Z``."""
    text = clean(value)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bamboohr_base_url(base_url: str, subdomain: str) -> str:
    """``{base_url}{subdomain}/v1/`` — BambooHR's API root for one company (the "companyDomain")."""
    return f"{base_url.rstrip('/')}/{subdomain.strip('/')}/v1/"


class BambooHRHRIS(ClosesAPI):
    """Employees from BambooHR; satisfies :class:`connectors.protocols.HRIS`.

    ``api`` is an :class:`~connectors.http.APIClient` whose client's base URL ends in ``/{company}/v1/`` and
    which authenticates with the API key (see :func:`connectors.hris.factory.build_hris`).
    """

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
        return f"BambooHRHRIS(api={self.api!r})"

    # -- check (pure) ---------------------------------------------------------------------------------------

    def to_employee(self, payload: Any, *, today: date | None = None) -> Employee | InvalidRecordError:
        """One BambooHR employee object → Employee, or InvalidRecordError (reason without personal data)."""
        if not isinstance(payload, Mapping):
            return InvalidRecordError("employee entry is not an object", source=SOURCE)
        today = today or self._today()
        record = to_record(payload)
        if record["employee_id"] is not None:
            record["employee_id"] = str(record["employee_id"])
        try:
            status = bamboohr_status(payload, today=today)
        except RecordProblem as problem:
            return InvalidRecordError(
                problem.reason, source=SOURCE, record_id=clean(record["employee_id"]), field=problem.field
            )
        return build_employee(record, source=SOURCE, today=today, raw=dict(payload), status=status)

    @staticmethod
    def _report_employees(body: Any) -> list[Any]:
        employees = body.get("employees") if isinstance(body, Mapping) else None
        if not isinstance(employees, list):
            raise ResponseValidationError("custom report answer has no 'employees' list", source=SOURCE)
        return employees

    @staticmethod
    def _changed_entries(body: Any) -> Mapping[str, Any]:
        employees = body.get("employees") if isinstance(body, Mapping) else None
        if employees is None or employees == []:  # PHP-style empty object
            return {}
        if not isinstance(employees, Mapping):
            raise ResponseValidationError("changed-employees answer has no 'employees' object", source=SOURCE)
        return employees

    # -- HRIS protocol ------------------------------------------------------------------------------------

    async def _report(self) -> list[Any]:
        body = await self.api.request_json(
            "POST",
            "reports/custom",
            params={"format": "JSON", "onlyCurrent": "false"},
            json={"fields": list(REPORT_FIELDS)},
            retry=True,  # a report is a read expressed as POST: safe to repeat
        )
        return self._report_employees(body)

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Every employee (current, future-dated and terminated) from one custom report."""
        today = self._today()
        items = [self.to_employee(payload, today=today) for payload in await self._report()]
        for item in reject_manager_loops(items, source=SOURCE):
            yield item

    async def get_employee(self, employee_id: str) -> Employee:
        """``GET employees/{id}/?fields=...``; NotFoundError (404) if unknown, InvalidRecordError if
        unusable."""
        body = await self.api.request_json(
            "GET", f"employees/{employee_id}/", params={"fields": ",".join(REPORT_FIELDS)}
        )
        if isinstance(body, Mapping) and not body.get("id"):
            body = {**body, "id": employee_id}
        result = self.to_employee(body)
        if isinstance(result, InvalidRecordError):
            raise result
        return result

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """Ids inserted, updated or deleted since ``cursor`` (``employees/changed``); None → every id in the
        custom report. ``next_cursor`` is BambooHR's ``latest`` (else the newest ``lastChanged``, else the
        cursor), never earlier than the cursor, so no change between two polls is lost."""
        asked_at = self._now()
        if cursor is None:
            report = await self._report()
            every = [str(p["id"]) for p in report if isinstance(p, Mapping) and clean(p.get("id"))]
            return ChangeSet(employee_ids=every, next_cursor=asked_at)
        body = await self.api.request_json("GET", "employees/changed/", params={"since": _iso_utc(cursor)})
        entries = self._changed_entries(body)
        ids: list[str] = []
        newest: datetime | None = None
        for key, entry in entries.items():
            entry_id = clean(entry.get("id")) if isinstance(entry, Mapping) else None
            ids.append(entry_id or str(key))
            changed = _parse_timestamp(entry.get("lastChanged")) if isinstance(entry, Mapping) else None
            if changed and (newest is None or changed > newest):
                newest = changed
        latest = _parse_timestamp(body.get("latest")) if isinstance(body, Mapping) else None
        cursor = cursor if cursor.tzinfo else cursor.replace(tzinfo=UTC)
        # never backwards: BambooHR's ``latest`` has whole seconds, our cursor may not
        return ChangeSet(employee_ids=ids, next_cursor=max(latest or newest or cursor, cursor))
