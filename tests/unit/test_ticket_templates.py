"""Rendering policy ticket templates (lifecycle.tickets): only TEMPLATE_FIELDS, clear errors, no reaching into
values, and references that tell occasions apart."""

from __future__ import annotations

from datetime import date

import pytest
from pydantic import ValidationError

from lifecycle.policy import TicketTemplate
from lifecycle.tickets import (
    TemplateError,
    occasion_for,
    reference_for,
    render_ticket,
    template_fields,
    ticket_for,
)
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
        template,
        template_fields(ADA, user_name="addie.lovelace"),
        employee_id=ADA.employee_id,
        occasion="2026-12-01",
    )
    assert request.reference == "tenure:E1001:laptop:2026-12-01"
    assert request.reference == reference_for("E1001", "laptop", "2026-12-01")
    assert request.purpose == "laptop"
    assert request.title == "Laptop for Addie Lovelace (E1001)"
    assert request.body == "Dept Engineering, starts 2026-12-01, user addie.lovelace, for laptop"
    assert request.queue == "Hardware"


def test_dates_render_iso_and_format_specs_are_refused() -> None:
    """A date renders as ISO 8601; a format spec (``{hire_date:%d.%m.%Y}``) is refused like any other
    non-plain placeholder (issue 16: only plain ``{field}``)."""
    template = TicketTemplate(purpose="badge", title="Badge from {hire_date} until {termination_date}")
    request = render_ticket(template, template_fields(ADA), employee_id="E1001", occasion="2026-12-01")
    assert request.title == "Badge from 2026-12-01 until n/a"
    with pytest.raises(TemplateError, match="format spec"):
        render_ticket(
            _unchecked("Badge from {hire_date:%d.%m.%Y}"),
            template_fields(ADA),
            employee_id="E1",
            occasion="o",
        )


def test_missing_none_and_empty_render_na() -> None:
    """Allowed fields the caller did not supply (or supplied as None or "") render as n/a; employee_id falls
    back to the one the ticket is for."""
    template = TicketTemplate(
        purpose="desk", title="Desk in {location}", body="[{department}] [{title}] [{employee_id}]"
    )
    request = render_ticket(template, {"department": None, "title": ""}, employee_id="E7", occasion="hired")
    assert request.title == "Desk in n/a"
    assert request.body == "[n/a] [n/a] [E7]"


def test_extra_fields_never_reach_the_ticket() -> None:
    """Keys outside TEMPLATE_FIELDS in the supplied dict are ignored, even if a template names them."""
    fields = template_fields(ADA) | {"personal_email": "ada@home.example"}
    with pytest.raises(TemplateError, match=r"unknown field \{personal_email\}"):
        render_ticket(_unchecked("Mail {personal_email}"), fields, employee_id="E1001", occasion="o")
    request = render_ticket(
        TicketTemplate(purpose="x", title="{display_name}"), fields, employee_id="E1001", occasion="o"
    )
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
        ("{display_name!r}", "conversion !r"),
        ("{}", "positional"),
        ("{0}", "positional"),
        ("{display_name", "malformed"),
        ("{display_name:%d}", "format spec"),
    ],
    ids=[
        "unknown",
        "attribute",
        "index",
        "repr",
        "positional-empty",
        "positional-number",
        "unbalanced",
        "bad-spec",
    ],
)
def test_render_rejects_bad_templates(title: str, message: str) -> None:
    """render_ticket raises a TemplateError naming the problem in a template validation would refuse."""
    with pytest.raises(TemplateError, match=message):
        render_ticket(_unchecked(title), template_fields(ADA), employee_id="E1001", occasion="o")


def test_template_error_is_value_error() -> None:
    """TemplateError is a ValueError, so callers treating bad config as ValueError catch it."""
    assert issubclass(TemplateError, ValueError)


def test_template_fields_carry_no_personal_contact_data() -> None:
    """template_fields exposes exactly the allowed names, without personal e-mail."""
    from lifecycle.policy import TEMPLATE_FIELDS

    fields = template_fields(ADA, user_name="addie.lovelace")
    assert set(fields) | {"purpose"} == TEMPLATE_FIELDS
    assert "ada@home.example" not in map(str, fields.values())


def test_occasions() -> None:
    """Joiner: hire date; leaver: termination date or "terminated"; mover: sha256 of new department|title."""
    import hashlib

    left = ADA.model_copy(update={"termination_date": date(2027, 6, 30)})
    assert occasion_for("joiner", ADA) == "2026-12-01"
    assert occasion_for("joiner", ADA.model_copy(update={"hire_date": None})) == "hired"
    assert occasion_for("leaver", left) == "2027-06-30"
    assert occasion_for("leaver", ADA) == "terminated"
    assert occasion_for("mover", ADA) == hashlib.sha256(b"Engineering|Engineer").hexdigest()[:8]
    assert len(occasion_for("mover", ADA)) == 8


def test_references_tell_occasions_apart() -> None:
    """A rehire and a second move get new references; the same occasion rendered twice gets the same one."""
    laptop = TicketTemplate(purpose="laptop", title="Laptop for {display_name}")
    rehired = ADA.model_copy(update={"hire_date": date(2027, 9, 1)})
    first, again = (ticket_for("joiner", laptop, ADA, user_name="a") for _ in range(2))
    assert first.reference == again.reference == "tenure:E1001:laptop:2026-12-01"
    assert ticket_for("joiner", laptop, rehired, user_name="a").reference == "tenure:E1001:laptop:2027-09-01"
    review = TicketTemplate(purpose="access-review", title="Moved {employee_id}")
    to_sales = ADA.model_copy(update={"department": "Sales", "title": "Account Executive"})
    to_ops = ADA.model_copy(update={"department": "Ops", "title": "Account Executive"})
    moves = (ADA, to_sales, to_ops, to_sales)
    refs = {ticket_for("mover", review, e, user_name=None).reference for e in moves}
    assert len(refs) == 3
    assert all(r.startswith("tenure:E1001:access-review:") for r in refs)


def test_leaver_reference_never_uses_now() -> None:
    """A leaver without a termination date gets the fixed occasion "terminated", identical on every run."""
    ret = TicketTemplate(purpose="equipment-return", title="Return {employee_id} on {termination_date}")
    request = ticket_for("leaver", ret, ADA, user_name=None)
    assert request.reference == "tenure:E1001:equipment-return:terminated"
    assert request.title == "Return E1001 on n/a"
