"""Domain models shared by connectors, the planner and the flows (pydantic, no I/O)."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EmployeeStatus",
    "Employee",
    "AccountAttributes",
    "Account",
    "Group",
    "ChangeSet",
    "TicketStatus",
    "TicketRequest",
    "Ticket",
    "Notice",
]


class EmployeeStatus(str, enum.Enum):
    """Where an employee is in their tenure, as the HRIS says."""

    PENDING = "pending"  # hired, not started
    ACTIVE = "active"
    LEAVE = "leave"
    TERMINATED = "terminated"


class Employee(BaseModel):
    """One person as the HRIS knows them; ``employee_id`` is the HRIS's permanent id.

    ``raw`` keeps the source record for debugging; it is excluded from repr and serialisation so it
    never reaches a log, an artifact or an audit row.
    """

    model_config = ConfigDict(frozen=True)

    employee_id: str
    first_name: str
    last_name: str
    preferred_name: str | None = None
    work_email: str | None = None
    personal_email: str | None = Field(default=None, repr=False)
    department: str | None = None
    title: str | None = None
    manager_id: str | None = None
    location: str | None = None
    employment_type: str | None = None
    status: EmployeeStatus
    hire_date: date | None = None
    termination_date: date | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)

    @property
    def given_name(self) -> str:
        """The name the person goes by (preferred over legal first name)."""
        return self.preferred_name or self.first_name

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.last_name}".strip()


class AccountAttributes(BaseModel):
    """The attributes Tenure manages on an identity-provider account."""

    user_name: str
    employee_id: str  # SCIM externalId / Okta profile.employeeNumber / LDAP employeeNumber
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    email: str | None = None
    title: str | None = None
    department: str | None = None
    manager_id: str | None = None
    active: bool = True

    def differences(self, other: AccountAttributes) -> dict[str, Any]:
        """Attributes of ``self`` that ``other`` lacks or holds differently (``active`` excluded)."""
        return {
            name: mine
            for name in _COMPARED_ATTRIBUTES
            if (mine := getattr(self, name)) != getattr(other, name, None)
        }


_COMPARED_ATTRIBUTES = tuple(name for name in AccountAttributes.model_fields if name != "active")


class Account(AccountAttributes):
    """An account as it exists in an identity provider."""

    id: str
    last_sign_in: datetime | None = None
    groups: frozenset[str] = frozenset()  # group display names the account belongs to, where known
    # set by ``create_user`` when it found the account instead of creating it (idempotent create, a 409)
    existing: bool = Field(default=False, exclude=True)

    def found(self) -> Account:
        """This account, marked as found rather than created."""
        return self.model_copy(update={"existing": True})


class Group(BaseModel):
    """A group in the identity provider; policy refers to groups by ``name``."""

    id: str
    name: str
    member_ids: frozenset[str] = frozenset()


class ChangeSet(BaseModel):
    """Employee ids the HRIS reports changed since a cursor, and the cursor to store once processed."""

    employee_ids: list[str]
    next_cursor: datetime


class TicketStatus(str, enum.Enum):
    OPEN = "open"
    RESOLVED = "resolved"
    REJECTED = "rejected"


class TicketRequest(BaseModel):
    """A ticket to open; ``reference`` makes creation idempotent per occasion.

    ``reference`` is ``tenure:<employee_id>:<purpose>:<occasion>`` (:func:`lifecycle.tickets.reference_for`):
    the occasion is the hire date (joiner/rehire), the termination date or ``terminated`` (leaver), or the
    first 8 hex digits of sha256("<department>|<title>") of the new record (mover). A retry of the same
    occasion finds the existing ticket; a rehire or a second move opens a new one.
    """

    reference: str
    purpose: str
    title: str
    body: str
    queue: str | None = None  # RT queue / JSM request type / ServiceNow table or assignment group


class Ticket(BaseModel):
    id: str
    reference: str
    title: str
    status: TicketStatus
    url: str | None = None


class Notice(BaseModel):
    """One message to one recipient; ``key`` (the ledger key of its action) identifies it to the receiver
    (an e-mail's Message-ID), so a duplicate can be recognised downstream. Body and address stay out of reprs."""

    model_config = ConfigDict(frozen=True)

    key: str
    to: str = Field(repr=False)
    subject: str = Field(repr=False)
    body: str = Field(repr=False)
