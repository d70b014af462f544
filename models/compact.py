"""Compact records for holding a whole directory at once (the access review's inventory), and the facts that
decisions read of a person or an account, which both the validated models and the compact records provide.

A validated :class:`~models.domain.Employee` or :class:`~models.domain.Account` costs ~2 KiB in memory (its
``__dict__``, its set of fields set, a frozenset of groups); at a million accounts that is gigabytes before any
analysis starts. :class:`CompactEmployee` and :class:`CompactAccount` hold only what the review reads, made from
records the connectors already validated (validation stays at the edge). They are named tuples: immutable, ~100
bytes plus their strings, and quick to make. A compact account's ``groups`` is a tuple of group names that the
engine shares between accounts holding the same groups.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime
from operator import itemgetter
from typing import NamedTuple, Protocol

from models.domain import Account, Employee, EmployeeStatus

__all__ = ["EmployeeFacts", "AccountFacts", "CompactEmployee", "CompactAccount"]


class EmployeeFacts(Protocol):
    """What decisions read of a person: an :class:`Employee` or a :class:`CompactEmployee`."""

    @property
    def employee_id(self) -> str: ...
    @property
    def first_name(self) -> str: ...
    @property
    def last_name(self) -> str: ...
    @property
    def preferred_name(self) -> str | None: ...
    @property
    def given_name(self) -> str: ...
    @property
    def work_email(self) -> str | None: ...
    @property
    def department(self) -> str | None: ...
    @property
    def title(self) -> str | None: ...
    @property
    def manager_id(self) -> str | None: ...
    @property
    def location(self) -> str | None: ...
    @property
    def employment_type(self) -> str | None: ...
    @property
    def status(self) -> EmployeeStatus: ...
    @property
    def hire_date(self) -> date | None: ...
    @property
    def termination_date(self) -> date | None: ...


class AccountFacts(Protocol):
    """What the access review reads of an account: an :class:`Account` or a :class:`CompactAccount`."""

    @property
    def id(self) -> str: ...
    @property
    def user_name(self) -> str: ...
    @property
    def employee_id(self) -> str: ...
    @property
    def active(self) -> bool: ...
    @property
    def last_sign_in(self) -> datetime | None: ...
    @property
    def groups(self) -> Collection[str]: ...


class CompactEmployee(NamedTuple):
    """An employee's HR facts without the validated model's overhead (no personal e-mail, no raw record).
    The names and work e-mail are kept for correlating other targets' accounts (:mod:`lifecycle.correlation`)."""

    employee_id: str
    first_name: str
    last_name: str
    status: EmployeeStatus
    preferred_name: str | None = None
    work_email: str | None = None
    department: str | None = None
    title: str | None = None
    manager_id: str | None = None
    location: str | None = None
    employment_type: str | None = None
    hire_date: date | None = None
    termination_date: date | None = None

    @property
    def given_name(self) -> str:
        """The name the person goes by (preferred over legal first name), as :attr:`Employee.given_name`."""
        return self.preferred_name or self.first_name

    @classmethod
    def of(cls, employee: Employee) -> CompactEmployee:
        """``employee``'s facts, read in one step from the model's field values (pydantic keeps them in the
        instance's ``__dict__``), without the named tuple's generated ``__new__``: a million of them a review."""
        return _new(cls, _EMPLOYEE_FACTS(vars(employee)))


class CompactAccount(NamedTuple):
    """An account as the review reads it: ids, whether enabled, last sign-in and the names of its groups."""

    id: str
    user_name: str
    employee_id: str
    active: bool
    last_sign_in: datetime | None
    groups: tuple[str, ...]

    @classmethod
    def of(
        cls, account: Account, groups: tuple[str, ...] | None = None, employee_id: str | None = None
    ) -> CompactAccount:
        """``account`` held compactly; ``groups`` (default: the account's own) and ``employee_id`` (default:
        the account's) let the caller share strings it already holds."""
        a = vars(account)  # the model's field values, as in CompactEmployee.of
        return _new(
            cls,
            (
                a["id"],
                a["user_name"],
                a["employee_id"] if employee_id is None else employee_id,
                a["active"],
                a["last_sign_in"],
                tuple(a["groups"]) if groups is None else groups,
            ),
        )


_new = tuple.__new__
_EMPLOYEE_FACTS = itemgetter(*CompactEmployee._fields)
