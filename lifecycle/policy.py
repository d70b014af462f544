"""The policy file (YAML), validated with pydantic. Pure: loading reads a file, nothing else.

See ``examples/policy.yaml`` for a documented example; README "Policy file" explains each section.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "NamingPolicy",
    "BirthrightRule",
    "PrivilegedGroup",
    "LeaverPolicy",
    "TicketTemplate",
    "TicketPolicy",
    "MassChangeBrake",
    "ReviewPolicy",
    "Policy",
    "PolicyError",
    "load_policy",
    "TEMPLATE_FIELDS",
]

# The only employee fields a ticket template may use: enough for IT to act, no personal data beyond it.
TEMPLATE_FIELDS = frozenset(
    {
        "employee_id",
        "display_name",
        "user_name",
        "department",
        "title",
        "location",
        "manager_id",
        "hire_date",
        "termination_date",
        "purpose",
    }
)
NAME_FIELDS = frozenset({"first", "last", "preferred", "given", "first_initial", "employee_id"})
MATCH_FIELDS = ("department", "title", "location", "employment_type")


class PolicyError(ValueError):
    """The policy file is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


class NamingPolicy(_Strict):
    """How a userName and email are formed: ASCII-folded, lower-case, collision suffixes 2, 3, ..."""

    username: str = "{given}.{last}"
    email_domain: str = "example.com"
    max_length: int = Field(default=64, ge=8, le=256)

    @field_validator("username")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        unknown = _template_fields(value) - NAME_FIELDS
        if unknown:
            raise ValueError(f"unknown name field(s) {sorted(unknown)}; use {sorted(NAME_FIELDS)}")
        return value


class BirthrightRule(_Strict):
    """Groups everyone matching ``match`` gets. All keys must match; a list means any of its values.
    An empty match applies to everyone. Rules combine: an employee gets the union of all matches."""

    match: dict[Literal["department", "title", "location", "employment_type"], str | list[str]] = Field(
        default_factory=dict
    )
    groups: list[str] = Field(min_length=1)


class PrivilegedGroup(_Strict):
    """A group granted only with a recorded approval, re-certified every ``recertify_days``."""

    name: str
    approvers: list[str] = Field(default_factory=list)
    approval_timeout_hours: float = Field(default=72, gt=0)
    recertify_days: int = Field(default=90, ge=1)


class LeaverPolicy(_Strict):
    timing: Literal["at_termination", "immediate"] = "at_termination"
    termination_time: str = "18:00"  # local time on the termination date, in the employee's time zone
    delete_after_days: int | None = Field(default=None, ge=0)  # None: never delete, keep disabled
    remove_groups: bool = True

    @field_validator("termination_time")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        hh, _, mm = value.partition(":")
        if not (hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
            raise ValueError("must be HH:MM")
        return value


class TicketTemplate(_Strict):
    """One ticket to open for an event. ``title``/``body`` use ``{field}`` from TEMPLATE_FIELDS."""

    purpose: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    title: str
    body: str = ""
    queue: str | None = None

    @model_validator(mode="after")
    def _known_fields(self) -> TicketTemplate:
        unknown = (_template_fields(self.title) | _template_fields(self.body)) - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"template names unknown field(s) {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}"
            )
        return self


class TicketPolicy(_Strict):
    joiner: list[TicketTemplate] = Field(default_factory=list)
    mover: list[TicketTemplate] = Field(default_factory=list)
    leaver: list[TicketTemplate] = Field(default_factory=list)


class MassChangeBrake(_Strict):
    """Refuse a run that would disable more than this many accounts, unless explicitly overridden."""

    max_disable_count: int = Field(default=25, ge=0)
    max_disable_percent: float = Field(default=5.0, ge=0, le=100)


class ReviewPolicy(_Strict):
    dormant_days: int = Field(default=90, ge=1)
    sod_conflicts: list[tuple[str, str]] = Field(default_factory=list)
    auto_remediate: list[
        Literal["terminated_active", "orphan", "dormant", "outside_policy", "sod_conflict", "recertification"]
    ] = Field(default_factory=lambda: ["terminated_active"])  # type: ignore[arg-type]  # a Literal list
    fallback_reviewer: str = "it-security"
    deadline_days: int = Field(default=14, ge=1)
    remind_after_days: int = Field(default=3, ge=1)
    escalate_after_days: int = Field(default=7, ge=1)
    on_deadline: Literal["revoke", "keep_and_flag"] = "revoke"


class Policy(_Strict):
    """The whole policy file."""

    naming: NamingPolicy = Field(default_factory=NamingPolicy)
    birthright: list[BirthrightRule] = Field(default_factory=list)
    privileged_groups: list[PrivilegedGroup] = Field(default_factory=list)
    prehire_days: int = Field(default=7, ge=0)
    default_timezone: str = "UTC"
    location_timezones: dict[str, str] = Field(default_factory=dict)
    leaver: LeaverPolicy = Field(default_factory=LeaverPolicy)
    tickets: TicketPolicy = Field(default_factory=TicketPolicy)
    brake: MassChangeBrake = Field(default_factory=MassChangeBrake)
    review: ReviewPolicy = Field(default_factory=ReviewPolicy)

    @model_validator(mode="after")
    def _valid_timezones(self) -> Policy:
        for where, tz in [
            ("default_timezone", self.default_timezone),
            *((f"location_timezones.{k}", v) for k, v in self.location_timezones.items()),
        ]:
            try:
                ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"{where}: unknown time zone {tz!r}") from None
        return self

    @property
    def privileged_names(self) -> frozenset[str]:
        return frozenset(g.name for g in self.privileged_groups)

    @property
    def managed_groups(self) -> frozenset[str]:
        """Every group the policy grants (birthright or privileged): the groups Tenure may remove."""
        return frozenset(g for rule in self.birthright for g in rule.groups) | self.privileged_names

    def timezone_for(self, location: str | None) -> ZoneInfo:
        return ZoneInfo(self.location_timezones.get(location or "", self.default_timezone))


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file; PolicyError names the file and the failing field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} not found (set TENURE_POLICY_FILE)") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path}: top level must be a mapping")
    from pydantic import ValidationError

    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise PolicyError(f"policy file {path}: {problems}") from None
