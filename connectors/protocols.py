"""One Protocol per kind of system. Vendors satisfy them structurally; a fake can stand in anywhere.

All methods are async. Errors come from :mod:`connectors.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Self, runtime_checkable

from connectors.errors import ConnectorError, InvalidRecordError
from models.domain import (
    Account,
    AccountAttributes,
    ChangeSet,
    Employee,
    Group,
    Notice,
    Ticket,
    TicketRequest,
    TicketStatus,
)

__all__ = [
    "HRIS",
    "IdentityProvider",
    "GroupMembersWriter",
    "BatchWriter",
    "Ticketing",
    "Notifier",
    "Connectors",
]


@runtime_checkable
class HRIS(Protocol):
    """A source of employee records (BambooHR, a CSV export, ...)."""

    source: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection(s); connectors are used as ``async with build_...(...) as connector:``."""
        ...

    def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Stream every employee. A bad record is *yielded* as an InvalidRecordError, never raised,
        so the caller can audit it and go on with the rest."""
        ...

    async def get_employee(self, employee_id: str) -> Employee:
        """One employee; NotFoundError if unknown, InvalidRecordError if the record is unusable."""
        ...

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """Ids of employees inserted, updated or deleted since ``cursor`` (None = all)."""
        ...


@runtime_checkable
class IdentityProvider(Protocol):
    """An identity provider / directory: SCIM 2.0 service, Okta, LDAP."""

    source: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection(s); connectors are used as ``async with build_...(...) as connector:``."""
        ...

    async def find_user_by_employee_id(self, employee_id: str) -> Account | None: ...

    async def find_user_by_username(self, user_name: str) -> Account | None: ...

    def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        """Every account, one page at a time."""
        ...

    async def create_user(self, attributes: AccountAttributes) -> Account:
        """Create the account; safe to retry: if one with this employee id exists it is returned, marked
        ``existing`` (:meth:`models.domain.Account.found`) so the caller records a look-up, not a creation."""
        ...

    async def create_users(self, attributes: Sequence[AccountAttributes]) -> list[Account | ConnectorError]:
        """Create many accounts, each as :meth:`create_user` would (idempotent by employee id; one found is
        marked ``existing``), in as few requests as the vendor allows: one result per item, in order — the
        account, or the error that failed that one."""
        ...

    async def update_user(self, account: Account, changes: dict[str, Any]) -> Account:
        """Write only ``changes`` (attribute name → new value, names as in AccountAttributes)."""
        ...

    async def deactivate_user(self, account_id: str) -> None: ...

    async def reactivate_user(self, account_id: str) -> None: ...

    async def delete_user(self, account_id: str) -> None: ...

    async def list_groups(self) -> list[Group]:
        """Every group with its member ids."""
        ...

    async def list_members(self, group_id: str) -> set[str]: ...

    async def add_member(self, group_id: str, account_id: str) -> None:
        """Idempotent: adding an existing member is not an error."""
        ...

    async def remove_member(self, group_id: str, account_id: str) -> None:
        """Idempotent: removing a non-member is not an error."""
        ...

    async def add_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """Add many members to one group in as few requests as the vendor allows, judged per member: returns
        the account ids that failed, with their error (empty: every one is a member now). Idempotent like
        :meth:`add_member`. Raises ConnectorError only when nothing could be judged (every member failed)."""
        ...

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        """Remove many members from one group, as :meth:`add_members` (a non-member is not an error)."""
        ...

    async def last_sign_in(self, account_id: str) -> datetime | None:
        """When the account last signed in, where the vendor records it (else None)."""
        ...


@runtime_checkable
class GroupMembersWriter(Protocol):
    """An optional capability of an IdentityProvider: one group's additions and removals in one request
    (SCIM: one PATCH with an ``add`` and a ``remove`` operation). Without it they are two requests."""

    async def change_group_members(
        self, group_id: str, add: Sequence[str], remove: Sequence[str]
    ) -> dict[str, ConnectorError]:
        """As :meth:`IdentityProvider.add_members` and ``remove_members`` together; the failed account ids."""
        ...


@runtime_checkable
class BatchWriter(Protocol):
    """An optional capability of an IdentityProvider that batches independent writes of *any* users and
    groups together (Microsoft Graph ``$batch``, 20 requests a call), each judged on its own."""

    async def update_users(self, updates: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, ConnectorError]:
        """Attribute changes (not ``manager_id``; ``active`` enables or disables) of many accounts; the
        failed account ids."""
        ...

    async def write_memberships(
        self, changes: Sequence[tuple[str, str, bool]]
    ) -> dict[tuple[str, str, bool], ConnectorError]:
        """(group id, account id, add?) for many groups at once; the failed ones."""
        ...


@runtime_checkable
class Ticketing(Protocol):
    """A ticketing system for the manual parts: Request Tracker, Jira Service Management, ServiceNow."""

    source: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None:
        """Close the connection(s); connectors are used as ``async with build_...(...) as connector:``."""
        ...

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        """Idempotent by ``request.reference``: an existing ticket with that reference is returned."""
        ...

    async def find_ticket(self, reference: str) -> Ticket | None: ...

    async def check_queue(self) -> None:
        """One read of the default queue (RT queue, JSM request type, ServiceNow table): NotFoundError when it
        does not exist, AuthenticationError when the credentials may not read it (``config check --online``)."""
        ...

    async def add_comment(self, ticket_id: str, text: str) -> None: ...

    async def get_status(self, ticket_id: str) -> TicketStatus: ...

    async def close_ticket(self, ticket_id: str) -> None: ...


@runtime_checkable
class Notifier(Protocol):
    """Tells people what happens: e-mail over SMTP, a Slack/Teams-style incoming webhook."""

    source: str

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def send(self, notice: Notice) -> str:
        """Deliver ``notice``; the receiver's id for it (Message-ID, or the webhook's answer). A refusal or
        timeout raises a ConnectorError: the caller records it and tries again on its next run."""
        ...


@dataclass
class Connectors:
    """The connectors one run talks through (built by the composition root, :mod:`tenure.compose`). ``idp`` is
    the target ``directory``; ``targets`` are the other provisioning targets, by name."""

    hris: HRIS
    idp: IdentityProvider
    ticketing: Ticketing | None
    notifier: Notifier | None = None
    targets: dict[str, IdentityProvider] = field(default_factory=dict)
