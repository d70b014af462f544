"""One place that turns a source record into an :class:`~models.domain.Employee` (or says why it cannot).

Both HRIS sources (the CSV export and BambooHR) first rename their record to our field names, then call
:func:`build_employee`. The rules:

- required: ``employee_id``, ``first_name``, ``last_name`` (blank = missing);
- dates are ISO 8601 calendar dates (``YYYY-MM-DD``); blank and BambooHR's ``0000-00-00`` mean "no date";
- status: a known word (:data:`STATUS_WORDS`); a blank status is derived from the dates
  (:func:`derive_status`), an unknown word makes the record invalid.

A bad record becomes an :class:`~connectors.errors.InvalidRecordError` whose ``reason`` names the field and
the problem, never the value: values may be personal data (names, emails, birthdays typed into a date
column) and the reason goes to the audit trail and to logs.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    "build_employee",
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

STATUS_WORDS: dict[str, EmployeeStatus] = {
    "pending": EmployeeStatus.PENDING,
    "hired": EmployeeStatus.PENDING,
    "preboarding": EmployeeStatus.PENDING,
    "active": EmployeeStatus.ACTIVE,
    "employed": EmployeeStatus.ACTIVE,
    "leave": EmployeeStatus.LEAVE,
    "on leave": EmployeeStatus.LEAVE,
    "on_leave": EmployeeStatus.LEAVE,
    "leave of absence": EmployeeStatus.LEAVE,
    "terminated": EmployeeStatus.TERMINATED,
    "inactive": EmployeeStatus.TERMINATED,
    "left": EmployeeStatus.TERMINATED,
}


class RecordProblem(ValueError):
    """A field is unusable; ``reason`` is free of personal data."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def clean(value: Any) -> str | None:
    """The value as a stripped string, or None when blank/absent."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def parse_date(value: Any, field: str) -> date | None:
    """An ISO 8601 calendar date (``YYYY-MM-DD``, ISO 8601 §4.1.2.2); blank or ``0000-00-00`` → None."""
    text = clean(value)
    if text is None or text in EMPTY_DATES:
        return None
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise RecordProblem(f"invalid {field} (expected YYYY-MM-DD)") from None


def parse_status(value: Any) -> EmployeeStatus | None:
    """A known status word (case-insensitive, see :data:`STATUS_WORDS`); blank → None (derive it)."""
    text = clean(value)
    if text is None:
        return None
    status = STATUS_WORDS.get(text.lower())
    if status is None:
        raise RecordProblem("unknown status")
    return status


def derive_status(hire_date: date | None, termination_date: date | None, *, today: date) -> EmployeeStatus:
    """Status from the dates alone: a past termination date → terminated; a future hire date → pending
    (a joiner not yet started); otherwise active. The termination day itself is still a working day."""
    if termination_date is not None and termination_date < today:
        return EmployeeStatus.TERMINATED
    if hire_date is not None and hire_date > today:
        return EmployeeStatus.PENDING
    return EmployeeStatus.ACTIVE


def build_employee(
    record: Mapping[str, Any],
    *,
    source: str,
    today: date,
    row: int | None = None,
    raw: Mapping[str, Any] | None = None,
    status: EmployeeStatus | None = None,
) -> Employee | InvalidRecordError:
    """Validate ``record`` (keys = :data:`EMPLOYEE_FIELDS`) into an Employee, or an InvalidRecordError.

    ``status`` overrides the record's own status word (a source that decides status itself passes it);
    when neither gives one it is derived from the dates.
    """
    employee_id = clean(record.get("employee_id"))
    try:
        for field in REQUIRED_FIELDS:
            if clean(record.get(field)) is None:
                raise RecordProblem(f"missing {field}")
        hire_date = parse_date(record.get("hire_date"), "hire_date")
        termination_date = parse_date(record.get("termination_date"), "termination_date")
        if status is None:
            status = parse_status(record.get("status"))
        if status is None:
            status = derive_status(hire_date, termination_date, today=today)
        values = {field: clean(record.get(field)) for field in EMPLOYEE_FIELDS}
        values.update(status=status, hire_date=hire_date, termination_date=termination_date)
        return Employee(**values, raw=dict(raw if raw is not None else record))
    except RecordProblem as problem:
        return InvalidRecordError(problem.reason, source=source, row=row, record_id=employee_id)
    except ValidationError as exc:  # pragma: no cover - every field is a str/date by now; kept as a backstop
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err.get("loc")})
        return InvalidRecordError(
            f"invalid {', '.join(fields) or 'record'}", source=source, row=row, record_id=employee_id
        )
