"""The common part of the stateful HRIS fakes: one vendor-neutral roster, rendered by each vendor's fake.

A :class:`FakeHRIS` holds :class:`Person` records and a transaction log, changed through a small HR-shaped
API (:meth:`FakeHRIS.hire`, :meth:`update`, :meth:`terminate`, :meth:`rehire`, ...). Each vendor subclass
(``bamboohr_fake``, ``hibob_fake``, ``personio_fake``, ``workday_fake``) answers that vendor's documented
endpoints from this state through ``httpx.MockTransport`` (:attr:`FakeHRIS.transport`) and enforces what its
docs say (auth, paging limits, token expiry, error bodies). Every fake also serves 429 with ``Retry-After`` on
demand (:meth:`FakeHRIS.throttle`) and logs the requests it received (:attr:`FakeHRIS.requests`).

:class:`CSVWorld` is the same roster written as a CSV export after every change, so one contract suite
(``tests/contract/hris_suite.py``) runs against the file source too.

Dates are strings as the HR system holds them (``YYYY-MM-DD``, or a deliberately broken value such as
``2026-02-30`` to test how a bad record is reported).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

__all__ = ["Person", "Transaction", "FakeHRIS", "CSVWorld", "days", "list_id"]


def days(offset: int) -> str:
    """Today (UTC) plus ``offset`` days as ``YYYY-MM-DD``."""
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def list_id(value: str) -> str:
    """A stable list-item id for a display value (HR systems keep list fields as ids)."""
    return "li-" + hashlib.sha256(value.encode()).hexdigest()[:8]


@dataclass
class Transaction:
    """One entry of the HR transaction log: what was done, when it was entered and when it takes effect."""

    description: str
    entered_at: datetime
    effective_at: datetime
    rescinded: bool = False
    corrected: bool = False


@dataclass
class Person:
    """One employee as the HR system holds them."""

    employee_id: str
    first_name: str | None = "Ada"
    last_name: str | None = "Lovelace"
    work_email: str | None = None
    personal_email: str | None = None
    department: str | None = "Engineering"
    title: str | None = "Engineer"
    manager_id: str | None = None
    location: str | None = "Berlin"
    employment_type: str | None = "Full-Time"
    hire_date: str | None = field(default_factory=lambda: days(-400))
    termination_date: str | None = None
    on_leave: bool = False
    previous_hire_date: str | None = None  # set by a rehire: the earlier employment
    previous_termination_date: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    changed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    transactions: list[Transaction] = field(default_factory=list)

    def terminated(self, today: date) -> bool:
        return _before(self.termination_date, today)

    def future_hire(self, today: date) -> bool:
        return _after(self.hire_date, today)


def _valid(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def _before(value: str | None, today: date) -> bool:
    parsed = _valid(value)
    return parsed is not None and parsed < today


def _after(value: str | None, today: date) -> bool:
    parsed = _valid(value)
    return parsed is not None and parsed > today


def _moment(value: str | None) -> datetime:
    parsed = _valid(value)
    return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC) if parsed else datetime.now(UTC)


class FakeHRIS:
    """A vendor-neutral roster plus the HTTP plumbing every vendor fake shares."""

    source = "fake"
    base_url = "https://hris.test/"

    def __init__(self, *, page_size: int = 50) -> None:
        self.people: dict[str, Person] = {}
        self.page_size = page_size
        self.requests: list[httpx.Request] = []
        self._throttled = 0
        self._retry_after = "1"
        self._last_change = datetime.now(UTC)

    # -- HR actions ---------------------------------------------------------------------------------------

    @property
    def today(self) -> date:
        return datetime.now(UTC).date()

    def _touch(self, person: Person, description: str, effective: str | None = None) -> None:
        stamp = max(datetime.now(UTC), self._last_change + timedelta(microseconds=1))
        self._last_change = stamp
        person.changed_at = stamp
        person.transactions.append(Transaction(description, stamp, _moment(effective)))

    def hire(self, person: Person) -> Person:
        """A new employee (a hire with a past date is an existing employee as far as the tests care)."""
        self.people[person.employee_id] = person
        self._touch(person, "Hire", person.hire_date)
        return person

    def update(self, employee_id: str, **changes: Any) -> Person:
        """A change of any field (a mover, a manager change, a correction of a broken value)."""
        person = self.people[employee_id]
        for name, value in changes.items():
            if not hasattr(person, name):
                raise AttributeError(name)
            setattr(person, name, value)
        self._touch(person, "Change Job")
        return person

    def terminate(self, employee_id: str, termination_date: str) -> Person:
        person = self.people[employee_id]
        person.termination_date = termination_date
        self._touch(person, "Termination", termination_date)
        return person

    def rehire(self, employee_id: str, hire_date: str) -> Person:
        """The terminated employee comes back: a new employment from ``hire_date``; vendors that keep the
        earlier employment's dates read them from ``previous_*``."""
        person = self.people[employee_id]
        person.previous_hire_date, person.previous_termination_date = (
            person.hire_date,
            person.termination_date,
        )
        person.hire_date, person.termination_date = hire_date, None
        self._touch(person, "Hire", hire_date)
        return person

    def remove(self, employee_id: str) -> None:
        del self.people[employee_id]

    # -- HTTP ---------------------------------------------------------------------------------------------

    def throttle(self, times: int, retry_after: float = 1) -> None:
        """Answer the next ``times`` data requests with 429 and ``Retry-After: retry_after``."""
        self._throttled = times
        self._retry_after = f"{retry_after:g}"

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._dispatch)

    def _dispatch(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self._throttled and not self.is_auth_request(request):
            self._throttled -= 1
            return httpx.Response(
                429, headers={"Retry-After": self._retry_after}, json={"error": "throttled"}
            )
        return self.handle(request)

    def is_auth_request(self, request: httpx.Request) -> bool:
        """Requests that obtain credentials (not throttled by :meth:`throttle`)."""
        return False

    def handle(self, request: httpx.Request) -> httpx.Response:  # pragma: no cover - subclasses answer
        raise NotImplementedError

    def roster_requests(self) -> list[httpx.Request]:
        """The requests that read the roster (one per page)."""
        raise NotImplementedError  # pragma: no cover


class CSVWorld(FakeHRIS):
    """The roster as a CSV export (our field names as columns), rewritten after every change."""

    source = "csv"
    columns = (
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

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.write()

    def _touch(self, person: Person, description: str, effective: str | None = None) -> None:
        super()._touch(person, description, effective)
        self.write()

    def remove(self, employee_id: str) -> None:
        super().remove(employee_id)
        self.write()

    def write(self) -> None:
        rows = [self.columns]
        for person in self.people.values():
            values = dataclasses.asdict(person)
            status = "leave" if person.on_leave else ""
            rows.append(
                tuple(
                    status if c == "status" else "" if values.get(c) is None else str(values.get(c))
                    for c in self.columns
                )
            )
        with self.path.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(rows)
