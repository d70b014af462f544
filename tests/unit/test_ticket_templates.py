"""Rendering policy ticket templates: only TEMPLATE_FIELDS, clear errors, no reaching into values."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from connectors.ticketing.templates import TemplateError, reference_for, render_ticket, template_fields
from lifecycle.policy import TicketTemplate
from models.domain import Employee, EmployeeStatus

ADA = Employee(
    employee_id="E1001",
    first_name="Ada",
    last_name="Lovelace",
    preferred_name="Addie",
    department="Engineering",
    title="Engineer",
    location="London",
    manager_id="E0001",
    status=EmployeeStatus.PENDING,
    hire_date=date(2026, 12, 1),
    personal_email="ada@home.example",
    work_email="ada@example.com",
)


def _unchecked(title: str, body: str = "", purpose: str = "laptop") -> TicketTemplate:
    """A template built without validation, as a caller bypassing the policy loader could."""
    return TicketTemplate.model_construct(purpose=purpose, title=title, body=body, queue=None)


def test_renders_allowed_fields() -> None:
    """Title and body are filled from the supplied TEMPLATE_FIELDS; reference, purpose and queue are set."""
    template = TicketTemplate(
        purpose="laptop",
        title="Laptop for {display_name} ({employee_id})",
        body="Dept {department}, starts {hire_date}, user {user_name}, for {purpose}",
        queue="Hardware",
    )
    request = render_ticket(
        template, template_fields(ADA, user_name="addie.lovelace"), employee_id=ADA.employee_id
    )
    assert request.reference == "tenure:E1001:laptop" == reference_for("E1001", "laptop")
    assert request.purpose == "laptop"
    assert request.title == "Laptop for Addie Lovelace (E1001)"
    assert request.body == "Dept Engineering, starts 2026-12-01, user addie.lovelace, for laptop"
    assert request.queue == "Hardware"


def test_date_format_spec() -> None:
    """A date field honours a strftime spec; a missing date with a spec renders empty instead of failing."""
    template = TicketTemplate(
        purpose="badge", title="Badge from {hire_date:%d.%m.%Y} until {termination_date:%Y}"
    )
    request = render_ticket(template, template_fields(ADA), employee_id="E1001")
    assert request.title == "Badge from 01.12.2026 until"


def test_missing_and_none_render_empty() -> None:
    """Allowed fields the caller did not supply (or supplied as None) render as empty text."""
    template = TicketTemplate(purpose="desk", title="Desk in {location}", body="[{department}] [{title}]")
    request = render_ticket(template, {"department": None}, employee_id="E7")
    assert request.title == "Desk in"
    assert request.body == "[] []"


def test_extra_fields_never_reach_the_ticket() -> None:
    """Keys outside TEMPLATE_FIELDS in the supplied dict are ignored, even if a template names them."""
    fields = template_fields(ADA) | {"personal_email": "ada@home.example"}
    with pytest.raises(TemplateError, match=r"unknown field \{personal_email\}"):
        render_ticket(_unchecked("Mail {personal_email}"), fields, employee_id="E1001")
    request = render_ticket(TicketTemplate(purpose="x", title="{display_name}"), fields, employee_id="E1001")
    assert "ada@home.example" not in request.model_dump_json()


def test_policy_rejects_unknown_field_at_load() -> None:
    """The policy model itself refuses a template naming an unknown field."""
    with pytest.raises(ValidationError, match="unknown field"):
        TicketTemplate(purpose="laptop", title="For {salary}")


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("{salary}", r"unknown field \{salary\}; allowed: .*employee_id"),
        ("{employee_id.__class__}", "reaches into a value"),
        ("{employee_id[0]}", "reaches into a value"),
        ("{display_name!r}", "conversion !r is not allowed"),
        ("{}", "unknown field|malformed"),
        ("{0}", "unknown field|malformed"),
        ("{display_name", "malformed"),
    ],
    ids=["unknown", "attribute", "index", "repr", "positional-empty", "positional-number", "unbalanced"],
)
def test_render_rejects_bad_templates(title: str, message: str) -> None:
    """render_ticket raises a TemplateError naming the problem in a template validation would refuse."""
    with pytest.raises(TemplateError, match=message):
        render_ticket(_unchecked(title), template_fields(ADA), employee_id="E1001")


def test_template_error_is_value_error() -> None:
    """TemplateError is a ValueError, so callers treating bad config as ValueError catch it."""
    assert issubclass(TemplateError, ValueError)


def test_template_fields_carry_no_personal_contact_data() -> None:
    """template_fields exposes exactly the allowed names, without personal e-mail."""
    from lifecycle.policy import TEMPLATE_FIELDS

    fields = template_fields(ADA, user_name="addie.lovelace")
    assert set(fields) | {"purpose"} == TEMPLATE_FIELDS
    assert "ada@home.example" not in map(str, fields.values())
