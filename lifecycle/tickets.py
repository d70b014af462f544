"""Render a policy :class:`~lifecycle.policy.TicketTemplate` into a :class:`~models.domain.TicketRequest`.

Pure (policy rendering, no I/O).

Only the fields in :data:`lifecycle.policy.TEMPLATE_FIELDS` reach a ticket, whatever the caller passes:
extra keys are dropped, a template naming another field is refused (:class:`TemplateError`), and placeholders
must be plain ``{field}`` (:func:`lifecycle.policy.plain_fields`): no reaching into values
(``{employee_id.__class__}``, ``{x[0]}``), no conversions (``!r``), no format specs (``:d``) or nesting.
Policy validation already rejects all of that at load; rendering checks again because a template can be
built without validation (``model_construct``) or come from elsewhere. A missing value renders as ``n/a``.

The reference ``tenure:<employee_id>:<purpose>:<occasion>`` makes ticket creation idempotent per *occasion*:
a retry or re-run of the same joiner/mover/leaver finds the ticket it opened, while a rehire or a second
move is a new occasion and opens a new ticket. The occasion (:func:`occasion_for`) is

* joiner (and rehire, which uses the joiner templates): the hire date, ISO 8601 (``2027-03-01``);
  ``hired`` without one;
* leaver: the termination date, ISO 8601; ``terminated`` without one (never "now": a re-run must
  produce the same reference);
* mover: the first 8 hex digits of SHA-256 over ``"<department>|<title>"`` of the NEW record
  (a missing value counts as empty), so moving to the same department and title again dedupes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal

from lifecycle.policy import TEMPLATE_FIELDS, TicketTemplate, plain_fields
from models.domain import Employee, TicketRequest

__all__ = [
    "MISSING",
    "TicketEvent",
    "TemplateError",
    "occasion_for",
    "reference_for",
    "template_fields",
    "render_ticket",
    "ticket_for",
]

TicketEvent = Literal["joiner", "mover", "leaver"]

MISSING = "n/a"  # what a missing (None or empty) field renders as


class TemplateError(ValueError):
    """A ticket template uses a field or syntax it may not; the message names it."""


def occasion_for(event: TicketEvent, employee: Employee) -> str:
    """The occasion part of a ticket reference for ``event`` (see the module docstring)."""
    if event == "joiner":
        return employee.hire_date.isoformat() if employee.hire_date else "hired"
    if event == "leaver":
        return employee.termination_date.isoformat() if employee.termination_date else "terminated"
    if event == "mover":
        role = f"{employee.department or ''}|{employee.title or ''}"
        return hashlib.sha256(role.encode("utf-8")).hexdigest()[:8]
    raise ValueError(f"no ticket occasion for event {event!r}")


def reference_for(employee_id: str, purpose: str, occasion: str) -> str:
    """The idempotency reference of a ticket: ``tenure:<employee_id>:<purpose>:<occasion>``."""
    return f"tenure:{employee_id}:{purpose}:{occasion}"


def template_fields(employee: Employee, *, user_name: str | None = None) -> dict[str, Any]:
    """The TEMPLATE_FIELDS values for one employee, nothing else (``purpose`` is the template's)."""
    return {
        "employee_id": employee.employee_id,
        "display_name": employee.display_name,
        "user_name": user_name,
        "department": employee.department,
        "title": employee.title,
        "location": employee.location,
        "manager_id": employee.manager_id,
        "hire_date": employee.hire_date,
        "termination_date": employee.termination_date,
    }


def _render(text: str, values: Mapping[str, Any]) -> str:
    try:
        names = plain_fields(text)
    except ValueError as exc:
        raise TemplateError(f"template {text!r}: {exc}") from None
    unknown = sorted(names - TEMPLATE_FIELDS)
    if unknown:
        raise TemplateError(
            f"template names unknown field {{{unknown[0]}}}; allowed: {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    return text.format_map(values)


def render_ticket(
    template: TicketTemplate, fields: Mapping[str, Any], *, employee_id: str, occasion: str
) -> TicketRequest:
    """The ticket ``template`` describes for ``employee_id`` on ``occasion`` (see :func:`occasion_for`).

    ``fields`` supplies TEMPLATE_FIELDS values (others are ignored). A missing, None or empty value renders
    as ``n/a``; a date renders as ISO 8601; ``{purpose}`` is the template's.
    """
    values: dict[str, Any] = dict.fromkeys(TEMPLATE_FIELDS, MISSING)
    for name, value in fields.items():
        if name in TEMPLATE_FIELDS and value is not None and value != "":
            values[name] = value
    values["purpose"] = template.purpose
    values["employee_id"] = fields.get("employee_id") or employee_id
    return TicketRequest(
        reference=reference_for(employee_id, template.purpose, occasion),
        purpose=template.purpose,
        title=_render(template.title, values).strip(),
        body=_render(template.body, values),
        queue=template.queue,
    )


def ticket_for(
    event: TicketEvent, template: TicketTemplate, employee: Employee, *, user_name: str | None
) -> TicketRequest:
    """The ``event`` ticket ``template`` describes for ``employee`` (fields and occasion from HR)."""
    return render_ticket(
        template,
        template_fields(employee, user_name=user_name),
        employee_id=employee.employee_id,
        occasion=occasion_for(event, employee),
    )
