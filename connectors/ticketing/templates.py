"""Render a policy :class:`~lifecycle.policy.TicketTemplate` into a :class:`~models.domain.TicketRequest`.

Only the fields in :data:`lifecycle.policy.TEMPLATE_FIELDS` reach a ticket, whatever the caller passes:
extra keys are dropped, a template naming another field is refused (:class:`TemplateError`), and placeholders
may not reach into values (``{employee_id.__class__}``, ``{x[0]}``) or use ``!r``/``!a`` conversions.
Policy validation already rejects unknown fields at load; rendering checks again because a template can be
built without validation (``model_construct``) or come from elsewhere.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from lifecycle.policy import TEMPLATE_FIELDS, TicketTemplate
from models.domain import Employee, TicketRequest

__all__ = ["TemplateError", "reference_for", "template_fields", "render_ticket"]


class TemplateError(ValueError):
    """A ticket template uses a field or syntax it may not; the message names it."""


class _OnlyAllowedFields(string.Formatter):
    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if field_name not in TEMPLATE_FIELDS:
            if any(c in field_name for c in ".["):
                raise TemplateError(
                    f"template field {{{field_name}}} reaches into a value; use a plain field name"
                )
            raise TemplateError(
                f"template names unknown field {{{field_name}}};"
                f" allowed: {', '.join(sorted(TEMPLATE_FIELDS))}"
            )
        return kwargs[field_name], field_name

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion not in (None, "s"):
            raise TemplateError(f"template conversion !{conversion} is not allowed")
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        if value == "":  # a missing value stays empty whatever its spec (e.g. {termination_date:%d.%m.%Y})
            return ""
        return super().format_field(value, format_spec)


_FORMATTER = _OnlyAllowedFields()


def reference_for(employee_id: str, purpose: str) -> str:
    """The idempotency reference of a ticket: ``tenure:<employee_id>:<purpose>``."""
    return f"tenure:{employee_id}:{purpose}"


def template_fields(employee: Employee, *, user_name: str | None = None) -> dict[str, Any]:
    """The TEMPLATE_FIELDS values for one employee (nothing else about them)."""
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
        return _FORMATTER.vformat(text, (), values)
    except TemplateError:
        raise
    except (ValueError, IndexError, KeyError) as exc:  # bad braces, positional {} or {0}
        raise TemplateError(f"template {text!r} is malformed: {exc}") from None


def render_ticket(template: TicketTemplate, fields: Mapping[str, Any], *, employee_id: str) -> TicketRequest:
    """The ticket ``template`` describes for ``employee_id``.

    ``fields`` supplies TEMPLATE_FIELDS values (others are ignored). A missing or None value renders empty;
    a date renders as ISO 8601 unless the template gives a spec (``{hire_date:%d.%m.%Y}``); ``{purpose}`` is
    the template's.
    """
    values: dict[str, Any] = {name: "" for name in TEMPLATE_FIELDS}
    for name, value in fields.items():
        if name in TEMPLATE_FIELDS and value is not None:
            values[name] = value
    values["purpose"] = template.purpose
    values["employee_id"] = values["employee_id"] or employee_id
    return TicketRequest(
        reference=reference_for(employee_id, template.purpose),
        purpose=template.purpose,
        title=_render(template.title, values).strip(),
        body=_render(template.body, values),
        queue=template.queue,
    )
