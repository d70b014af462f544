"""Pydantic domain models and the SQLModel tables (audit trail, action ledger, cursors)."""

from __future__ import annotations

from models.domain import (
    Account,
    AccountAttributes,
    ChangeSet,
    Employee,
    EmployeeStatus,
    Group,
    Ticket,
    TicketRequest,
    TicketStatus,
)

__all__ = [
    "Account",
    "AccountAttributes",
    "ChangeSet",
    "Employee",
    "EmployeeStatus",
    "Group",
    "Ticket",
    "TicketRequest",
    "TicketStatus",
]
