"""One place that turns a source record into an :class:`~models.domain.Employee` (or says why it cannot).

Every HRIS source (the CSV export, BambooHR, HiBob, Personio, Workday) first renames its record to our field
names, then calls :func:`build_employee`. The rules, the same for every vendor:

- required: ``employee_id``, ``first_name``, ``last_name`` (blank = missing);
- dates are calendar dates (``YYYY-MM-DD``, ISO 8601 §4.1.2.2) validated for real (2026-02-30 is invalid);
  vendors whose API documents a date with a zone or a time (Workday's ``xsd:date`` ``2026-02-01-08:00``,
  Personio v1's ``2026-02-01T00:00:00+01:00``) parse with ``with_time=True``, which keeps the calendar date
  part. Blank and BambooHR's ``0000-00-00`` mean "no date";
- a termination date before the hire date makes the record invalid: a vendor that keeps the previous
  employment's termination date after a rehire must clear it first, from its own evidence (HiBob's lifecycle
  history, Workday's rehire flag, Personio's latest employment);
- status: :func:`parse_status` for a source that states a status word (:data:`STATUS_WORDS`; an unknown word
  makes the record invalid, a blank one is derived from the dates), or :func:`status_from` for a vendor whose
  status word only hints and whose dates decide (a past termination date → terminated, a future hire date →
  pending);
- :func:`manager_loops`: employees whose manager chain returns to themselves (A→B→A, A→A) — one reason per
  employee on the loop, applied to a whole roster.

A bad record becomes an :class:`~connectors.errors.InvalidRecordError` whose ``reason`` names the field and
the problem, never the value: values may be personal data (names, emails, birthdays typed into a date
column) and the reason goes to the audit trail and to logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pydantic import ValidationError

from connectors.errors import InvalidRecordError
from models.domain import Employee, EmployeeStatus

__all__ = [
    "EMPLOYEE_FIELDS",
    "REQUIRED_FIELDS",
    "STATUS_WORDS",
    "EMPTY_DATES",
    "RecordProblem",
    "clean",
    "parse_date",
    "parse_status",
    "derive_status",
    "status_from",
    "build_employee",
    "manager_loops",
    "reject_manager_loops",
]

EMPLOYEE_FIELDS: tuple[str, ...] = (
    "employee_id",
    "first_name",
    "last_name",
    "preferred_name",
    "work_email",
    "personal_email",
    "department",
    "title",
    "manager_id",
    "location",
    "employment_type",
    "status",
    "hire_date",
    "termination_date",
)
REQUIRED_FIELDS: tuple[str, ...] = ("employee_id", "first_name", "last_name")
EMPTY_DATES = frozenset({"", "0000-00-00"})  # BambooHR answers 0000-00-00 for an empty date field

# Status words, case-insensitive, as the vendors spell them: CSV exports (free text), BambooHR
# (Active/Inactive), HiBob's lifecycle statuses (hired, employed, leave, garden leave, terminated),
# Personio's employment statuses (onboarding, active, leave, inactive).
STATUS_WORDS: dict[str, EmployeeStatus] = {
    "pending": EmployeeStatus.PENDING,
    "hired": EmployeeStatus.PENDING,
    "preboarding": EmployeeStatus.PENDING,
    "onboarding": EmployeeStatus.PENDING,
    "active": EmployeeStatus.ACTIVE,
    "employed": EmployeeStatus.ACTIVE,
    "leave": EmployeeStatus.LEAVE,
    "on leave": EmployeeStatus.LEAVE,
    "on_leave": EmployeeStatus.LEAVE,
    "leave of absence": EmployeeStatus.LEAVE,
    "temporary leave": EmployeeStatus.LEAVE,
    "terminated": EmployeeStatus.TERMINATED,
    "inactive": EmployeeStatus.TERMINATED,
    "left": EmployeeStatus.TERMINATED,
    "garden leave": EmployeeStatus.TERMINATED,  # still paid, no longer working: no access
}

# After YYYY-MM-DD: a zone designator (xsd:date) or a time of day with an optional zone (ISO 8601 date-time).
_DATE_SUFFIX = re.compile(
    r"(?:Z|[+-]\d{2}:?\d{2}|T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)


class RecordProblem(ValueError):
    """A field is unusable; ``reason`` is free of personal data, ``field`` names the field."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field


def clean(value: Any) -> str | None:
    """The value as a stripped string, or None when blank/absent."""
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


def parse_date(value: Any, field: str, *, with_time: bool = False) -> date | None:
    """A calendar date ``YYYY-MM-DD`` (ISO 8601 §4.1.2.2); blank or ``0000-00-00`` → None.

    ``with_time`` also accepts the date followed by a zone (``2026-02-01Z``, ``2026-02-01-08:00``: XML Schema
    ``xsd:date``) or by a time (``2026-02-01T00:00:00+01:00``); the calendar date as written is kept."""
    text = clean(value)
    if text is None or text in EMPTY_DATES:
        return None
    head, tail = text[:10], text[10:]
    try:
        if len(head) != 10 or head[4] != "-" or head[7] != "-":
            raise ValueError
        if tail and not (with_time and _DATE_SUFFIX.fullmatch(tail)):
            raise ValueError
        return date.fromisoformat(head)
    except ValueError:
        raise RecordProblem(f"invalid {field} (expected YYYY-MM-DD)", field) from None


def parse_status(value: Any) -> EmployeeStatus | None:
    """A known status word (case-insensitive, see :data:`STATUS_WORDS`); blank → None (derive it)."""
    text = clean(value)
    if text is None:
        return None
    status = STATUS_WORDS.get(" ".join(text.lower().split()))
    if status is None:
        raise RecordProblem("unknown status", "status")
    return status


def derive_status(hire_date: date | None, termination_date: date | None, *, today: date) -> EmployeeStatus:
    """Status from the dates alone: a past termination date → terminated; a future hire date → pending
    (a joiner not yet started); otherwise active. The termination day itself is still a working day."""
    if termination_date is not None and termination_date < today:
        return EmployeeStatus.TERMINATED
    if hire_date is not None and hire_date > today:
        return EmployeeStatus.PENDING
    return EmployeeStatus.ACTIVE


def status_from(
    word: EmployeeStatus | None, hire_date: date | None, termination_date: date | None, *, today: date
) -> EmployeeStatus:
    """The status of a vendor record whose dates decide and whose status word refines: dates first
    (:func:`derive_status`: a past termination → terminated, a future hire → pending, e.g. a rehire not yet
    started while the vendor still says "inactive"); then the word: terminated/inactive → terminated, on leave
    → leave, pending without a hire date → pending; otherwise active."""
    derived = derive_status(hire_date, termination_date, today=today)
    if derived is not EmployeeStatus.ACTIVE:
        return derived
    if word is EmployeeStatus.PENDING and hire_date is not None:
        return EmployeeStatus.ACTIVE  # started already: the vendor's "hired" lags behind the start date
    return word or EmployeeStatus.ACTIVE


def build_employee(
    record: Mapping[str, Any],
    *,
    source: str,
    today: date,
    row: int | None = None,
    raw: Mapping[str, Any] | None = None,
    status: EmployeeStatus | None = None,
    with_time: bool = False,
) -> Employee | InvalidRecordError:
    """Validate ``record`` (keys = :data:`EMPLOYEE_FIELDS`) into an Employee, or an InvalidRecordError.

    ``status`` overrides the record's own status word (a source that decides status itself passes it);
    when neither gives one it is derived from the dates. ``with_time``: see :func:`parse_date`.
    """
    values: dict[str, Any] = {field: clean(record.get(field)) for field in EMPLOYEE_FIELDS}
    employee_id = values["employee_id"]
    try:
        for field in REQUIRED_FIELDS:
            if values[field] is None:
                raise RecordProblem(f"missing {field}", field)
        hire_date = parse_date(record.get("hire_date"), "hire_date", with_time=with_time)
        termination_date = parse_date(record.get("termination_date"), "termination_date", with_time=with_time)
        if hire_date is not None and termination_date is not None and termination_date < hire_date:
            raise RecordProblem("termination_date before hire_date", "termination_date")
        if status is None:
            status = parse_status(record.get("status"))
        if status is None:
            status = derive_status(hire_date, termination_date, today=today)
        values.update(status=status, hire_date=hire_date, termination_date=termination_date)
        return Employee(**values, raw=dict(raw if raw is not None else record))
    except RecordProblem as problem:
        return InvalidRecordError(
            problem.reason, source=source, row=row, record_id=employee_id, field=problem.field
        )
    except ValidationError as exc:  # pragma: no cover - every field is a str/date by now; kept as a backstop
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err.get("loc")})
        return InvalidRecordError(
            f"invalid {', '.join(fields) or 'record'}", source=source, row=row, record_id=employee_id
        )


def manager_loops(employees: Iterable[Employee]) -> dict[str, str]:
    """Employees on a manager loop → the reason, e.g. ``manager loop: E2 -> E1 -> E2`` (ids only, from the
    employee's own point of view).

    The manager graph has one edge per employee (to ``manager_id``), so each weakly connected part holds at
    most one cycle; every employee on a cycle is reported once, an employee whose chain merely leads into a
    cycle is not. A manager id that is not in the roster ends a chain (no loop)."""
    manager_of = {e.employee_id: e.manager_id for e in employees if e.manager_id}
    state: dict[str, int] = {}  # 1 = on the current walk, 2 = done
    loops: dict[str, str] = {}
    for start in manager_of:
        walk: list[str] = []
        node: str | None = start
        while node is not None and node in manager_of and state.get(node) is None:
            state[node] = 1
            walk.append(node)
            node = manager_of[node]
        if node is not None and state.get(node) == 1:  # came back to this walk: a cycle from node
            cycle = walk[walk.index(node) :]
            for i, member in enumerate(cycle):
                chain = [*cycle[i:], *cycle[:i], member]  # the loop as seen from this employee
                loops[member] = f"manager loop: {' -> '.join(chain)}"
        for visited in walk:
            state[visited] = 2
    return loops


def reject_manager_loops(
    items: list[Employee | InvalidRecordError], *, source: str, rows: Mapping[str, int] | None = None
) -> list[Employee | InvalidRecordError]:
    """``items`` with every employee on a manager loop replaced by one InvalidRecordError (field
    ``manager_id``) in place; ``rows`` gives a file source's line numbers by employee id."""
    loops = manager_loops(item for item in items if isinstance(item, Employee))
    if not loops:
        return items
    return [
        InvalidRecordError(
            loops[item.employee_id],
            source=source,
            row=(rows or {}).get(item.employee_id),
            record_id=item.employee_id,
            field="manager_id",
        )
        if isinstance(item, Employee) and item.employee_id in loops
        else item
        for item in items
    ]
