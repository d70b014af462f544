"""The shared contract suite for :class:`connectors.protocols.HRIS`.

Every HRIS connector (the CSV export, BambooHR, HiBob, Personio, Workday) runs these same tests against a
stateful fake of its vendor built from the vendor's documentation (``tests/support/*_fake.py``; the CSV
export against a file rewritten after every change), so the sync and the flows can rely on one behaviour
whatever the HR system.

How to subclass (see ``tests/contract/test_hris_hibob.py``)::

    class TestHiBob(HRISContract):
        SETTINGS_NAMED = ("TENURE_HRIS__SERVICE_USER_ID", "TENURE_HRIS__TOKEN")

        @pytest.fixture
        def world(self) -> HiBobFake:              # a fresh fake per test
            return HiBobFake()

        def connect(self, world, *, sleep, wrong_secret=False) -> HRIS:
            return build_hris(HRISSettings(kind="hibob", ...), transport=world.transport, sleep=sleep)

Class attributes a subclass may set: ``HTTP`` (False for a file: the 429 and credential tests do not apply),
``SETTINGS_NAMED`` (the settings an authentication error must name), ``ROSTER_PAGES`` (roster requests for
:data:`PAGE_FILL` employees: 1 for a vendor without paging), ``UNMAPPED`` (Employee fields the vendor's read
does not carry). The class name does not start with ``Test`` and this module is not a ``test_*.py`` file, so
pytest collects the tests only through subclasses.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest

from connectors.errors import AuthenticationError, InvalidRecordError, NotFoundError
from connectors.protocols import HRIS
from models.domain import Employee, EmployeeStatus
from tests.support.hris_fake import FakeHRIS, Person, days

__all__ = ["HRISContract", "Sleeps", "PAGE_FILL"]

PAGE_FILL = 120  # employees for the paging test: more than two pages of 50, more than one of 100
COMPARED = (
    "first_name",
    "last_name",
    "work_email",
    "personal_email",
    "department",
    "title",
    "manager_id",
    "location",
    "employment_type",
    "hire_date",
    "termination_date",
    "status",
)


class Sleeps(list[float]):
    """A zero-wait ``sleep`` for the HTTP layer that records each wait it was asked for."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _date(value: str) -> date:
    return date.fromisoformat(value)


def _person(employee_id: str, **fields: Any) -> Person:
    values: dict[str, Any] = {
        "first_name": "Grace",
        "last_name": f"Hopper{employee_id}",
        "work_email": f"grace.{employee_id}@example.com",
        "personal_email": f"grace.{employee_id}@home.example",
        "department": "Engineering",
        "title": "Staff Engineer",
        "location": "Berlin",
        "employment_type": "Full-Time",
        "hire_date": days(-400),
    }
    values.update(fields)
    return Person(employee_id, **values)


class HRISContract:
    """Tests every HRIS must pass. Subclasses supply the ``world`` fixture and :meth:`connect`."""

    HTTP = True
    SETTINGS_NAMED: tuple[str, ...] = ()
    ROSTER_PAGES = 1
    UNMAPPED: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ hooks and fixtures

    def connect(self, world: Any, *, sleep: Sleeps, wrong_secret: bool = False) -> HRIS:
        """A connector on ``world`` (with a wrong secret if asked). Subclasses must override."""
        raise NotImplementedError(f"{type(self).__name__} must implement connect()")

    def secrets(self, world: Any) -> list[str]:
        """The credentials that must never show (the fake's secret values)."""
        return []

    @pytest.fixture
    def sleeps(self) -> Sleeps:
        return Sleeps()

    @pytest.fixture
    async def hris(self, world: FakeHRIS, sleeps: Sleeps) -> AsyncIterator[HRIS]:
        async with self.connect(world, sleep=sleeps) as connector:
            yield connector

    @staticmethod
    async def roster(hris: HRIS) -> dict[str, Employee | InvalidRecordError]:
        items: dict[str, Employee | InvalidRecordError] = {}
        async for item in hris.iter_employees():
            key = item.employee_id if isinstance(item, Employee) else item.record_id or f"#{len(items)}"
            assert key not in items, f"{key} read twice"
            items[key] = item
        return items

    def expect(self, employee: Employee | InvalidRecordError, person: Person, **overrides: Any) -> None:
        """``employee`` is ``person`` as an Employee (fields the vendor does not carry are not compared)."""
        assert isinstance(employee, Employee), employee
        wanted: dict[str, Any] = {
            name: getattr(person, name) for name in COMPARED if hasattr(person, name) and name != "status"
        }
        for name in ("hire_date", "termination_date"):
            wanted[name] = _date(wanted[name]) if wanted[name] else None
        wanted["status"] = EmployeeStatus.ACTIVE
        wanted.update(overrides)
        actual = employee.model_dump()
        for name in COMPARED:
            if name not in self.UNMAPPED:
                assert actual[name] == wanted[name], (name, actual[name], wanted[name])

    # ------------------------------------------------------------------ shape

    async def test_satisfies_protocol(self, hris: HRIS) -> None:
        """The connector structurally satisfies the HRIS protocol and names its source."""
        assert isinstance(hris, HRIS)
        assert isinstance(hris.source, str) and hris.source

    # ------------------------------------------------------------------ reads

    async def test_roster_maps_every_field(self, world: FakeHRIS, hris: HRIS) -> None:
        """Every employee comes once, with our field names filled from the vendor's."""
        boss = world.hire(_person("1001"))
        report = world.hire(_person("1002", first_name="Alan", manager_id="1001", title="Engineer"))
        roster = await self.roster(hris)
        assert set(roster) == {"1001", "1002"}
        self.expect(roster["1001"], boss)
        self.expect(roster["1002"], report)

    async def test_one_employee_and_an_unknown_one(self, world: FakeHRIS, hris: HRIS) -> None:
        """get_employee returns what the roster says; an unknown id is NotFoundError."""
        world.hire(_person("1001"))
        world.hire(_person("1002", manager_id="1001"))
        roster = await self.roster(hris)
        one = await hris.get_employee("1002")
        assert one.model_dump() == roster["1002"].model_dump()  # type: ignore[union-attr]
        with pytest.raises(NotFoundError):
            await hris.get_employee("9999")

    async def test_changed_since_reports_what_changed_after_the_cursor(
        self, world: FakeHRIS, hris: HRIS
    ) -> None:
        """No cursor: every id. With the cursor the first read returned: at least the changed and the new."""
        for n in (1001, 1002, 1003):
            world.hire(_person(str(n)))
        first = await hris.changed_since(None)
        assert {"1001", "1002", "1003"} <= set(first.employee_ids)
        world.update("1002", title="Principal Engineer")
        world.hire(_person("1004"))
        later = await hris.changed_since(first.next_cursor)
        assert {"1002", "1004"} <= set(later.employee_ids)
        assert later.next_cursor >= first.next_cursor

    # ------------------------------------------------------------------ lifecycle dates

    async def test_future_dated_hire_is_pending(self, world: FakeHRIS, hris: HRIS) -> None:
        """A hire starting in ten days is a pending joiner with that hire date, in the roster and alone."""
        joiner = world.hire(_person("1001", hire_date=days(10)))
        roster = await self.roster(hris)
        self.expect(roster["1001"], joiner, status=EmployeeStatus.PENDING)
        self.expect(await hris.get_employee("1001"), joiner, status=EmployeeStatus.PENDING)

    async def test_future_dated_termination_is_active_until_the_date(
        self, world: FakeHRIS, hris: HRIS
    ) -> None:
        """A termination in five days: still active, with the date; one two days ago: terminated."""
        world.hire(_person("1001"))
        world.hire(_person("1002"))
        leaving = world.terminate("1001", days(5))
        gone = world.terminate("1002", days(-2))
        roster = await self.roster(hris)
        self.expect(roster["1001"], leaving)
        self.expect(roster["1002"], gone, status=EmployeeStatus.TERMINATED)
        self.expect(await hris.get_employee("1001"), leaving)
        self.expect(await hris.get_employee("1002"), gone, status=EmployeeStatus.TERMINATED)

    async def test_rehire_starts_a_new_employment(self, world: FakeHRIS, hris: HRIS) -> None:
        """A leaver rehired: the new hire date, no termination date, pending before the start and active
        after it."""
        for n, start in (("1001", 7), ("1002", -3)):
            world.hire(_person(n, hire_date=days(-900)))
            world.terminate(n, days(-300))
            world.rehire(n, days(start))
        roster = await self.roster(hris)
        for n, status in (("1001", EmployeeStatus.PENDING), ("1002", EmployeeStatus.ACTIVE)):
            person = world.people[n]
            self.expect(roster[n], person, status=status, termination_date=None)
            self.expect(await hris.get_employee(n), person, status=status, termination_date=None)

    async def test_manager_change(self, world: FakeHRIS, hris: HRIS) -> None:
        """A new manager shows in the roster, in the single read and in the changes."""
        for n in ("1001", "1003"):
            world.hire(_person(n))
        world.hire(_person("1002", manager_id="1001"))
        cursor = (await hris.changed_since(None)).next_cursor
        world.update("1002", manager_id="1003")
        roster = await self.roster(hris)
        assert isinstance(roster["1002"], Employee) and roster["1002"].manager_id == "1003"
        assert (await hris.get_employee("1002")).manager_id == "1003"
        assert "1002" in (await hris.changed_since(cursor)).employee_ids

    # ------------------------------------------------------------------ bad input

    async def test_invalid_records_are_yielded_with_field_and_reason(
        self, world: FakeHRIS, hris: HRIS
    ) -> None:
        """A missing last name, 2026-02-30, a termination before the hire date and a manager loop are each an
        InvalidRecordError naming the field; the good records around them come through."""
        world.hire(_person("1001"))
        world.hire(_person("1002", last_name=None))
        world.hire(_person("1003", hire_date="2026-02-30"))
        world.hire(_person("1004", hire_date=days(-100), termination_date=days(-200)))
        world.hire(_person("1005", manager_id="1006"))
        world.hire(_person("1006", manager_id="1005"))
        world.hire(_person("1007", manager_id="1001"))
        roster = await self.roster(hris)
        assert isinstance(roster["1001"], Employee) and isinstance(roster["1007"], Employee)
        found = {
            key: (item.field, item.reason)
            for key, item in roster.items()
            if isinstance(item, InvalidRecordError)
        }
        assert found == {
            "1002": ("last_name", "missing last_name"),
            "1003": ("hire_date", "invalid hire_date (expected YYYY-MM-DD)"),
            "1004": ("termination_date", "termination_date before hire_date"),
            "1005": ("manager_id", "manager loop: 1005 -> 1006 -> 1005"),
            "1006": ("manager_id", "manager loop: 1006 -> 1005 -> 1006"),
        }
        for item in roster.values():
            if isinstance(item, InvalidRecordError):
                assert item.source == hris.source and "Hopper" not in str(item) and "Grace" not in str(item)
        with pytest.raises(InvalidRecordError) as single:
            await hris.get_employee("1002")
        assert single.value.field == "last_name"

    # ------------------------------------------------------------------ volume and limits

    async def test_paging_reads_every_employee_once(self, world: FakeHRIS, hris: HRIS) -> None:
        """PAGE_FILL employees: all of them, each once, in ROSTER_PAGES roster requests."""
        for n in range(PAGE_FILL):
            world.hire(_person(str(2000 + n)))
        roster = await self.roster(hris)
        assert len(roster) == PAGE_FILL and all(isinstance(i, Employee) for i in roster.values())
        if self.HTTP:
            assert len(world.roster_requests()) == self.ROSTER_PAGES

    async def test_429_waits_for_retry_after(self, world: FakeHRIS, hris: HRIS, sleeps: Sleeps) -> None:
        """Two 429s with Retry-After: 3 → the client waits 3 s twice, then the roster is complete."""
        if not self.HTTP:
            pytest.skip("a file source has no HTTP layer")
        for n in ("1001", "1002"):
            world.hire(_person(n))
        world.throttle(2, retry_after=3)
        roster = await self.roster(hris)
        assert set(roster) == {"1001", "1002"}
        assert sleeps.count(3.0) == 2

    async def test_wrong_credential_names_the_setting(self, world: FakeHRIS) -> None:
        """A wrong secret is an AuthenticationError whose message names the settings to check and holds no
        secret."""
        if not self.HTTP:
            pytest.skip("a file source has no credentials")
        world.hire(_person("1001"))
        async with self.connect(world, sleep=Sleeps(), wrong_secret=True) as refused:
            with pytest.raises(AuthenticationError) as info:
                await self.roster(refused)
        for name in self.SETTINGS_NAMED:
            assert name in str(info.value)
        for secret in self.secrets(world):
            assert secret not in str(info.value) + repr(info.value)

    async def test_secrets_stay_out_of_errors_reprs_and_logs(
        self, world: FakeHRIS, hris: HRIS, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Through reads, a 429, a not-found and a refused credential: no secret in any log line (DEBUG),
        error, or repr, in plain, percent-encoded or base64 form."""
        if not self.HTTP:
            pytest.skip("a file source has no credentials")
        world.hire(_person("1001"))
        texts = [repr(hris)]
        with caplog.at_level(logging.DEBUG):
            world.throttle(1, retry_after=1)
            await self.roster(hris)
            await hris.get_employee("1001")
            with pytest.raises(NotFoundError) as missing:
                await hris.get_employee("9999")
            async with self.connect(world, sleep=Sleeps(), wrong_secret=True) as refused:
                with pytest.raises(AuthenticationError) as info:
                    await self.roster(refused)
                texts.append(repr(refused))
        texts += [caplog.text, str(missing.value), repr(missing.value), str(info.value), repr(info.value)]
        hay = "\n".join(texts)
        for secret in self.secrets(world):
            for form in (
                secret,
                quote(secret, safe=""),
                base64.b64encode(secret.encode()).decode().rstrip("="),
            ):
                assert form not in hay
