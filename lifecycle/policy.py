"""The policy file (YAML), validated with pydantic. Pure: loading reads a file, nothing else.

See ``examples/policy.yaml`` for a documented example; README "Policy file" explains each section.

Everything that would fail later fails at load, with a message naming the place: templates may use only plain
``{field}`` placeholders (:func:`plain_fields`), a mapping may not name a key twice (YAML 1.2 §3.2.1.1 requires
unique keys; PyYAML would silently keep the last one), a privileged group is listed once. A file that does not
parse is reported by line and column only: its content (it may be any file, ``/etc/shadow``) is never echoed.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, Literal
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
    "NoticeTemplate",
    "NoticeRule",
    "NotifyPolicy",
    "NOTICE_FIELDS",
    "DEFAULT_NOTICE_TEMPLATES",
    "CorrelationStep",
    "TargetPolicy",
    "Policy",
    "PolicyError",
    "load_policy",
    "plain_fields",
    "hh_mm",
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
MAX_PROBLEMS = 10  # validation problems listed in one PolicyError
# A key or path part from the file is shown only if it looks like a policy name: anything else may be content.
_SHOWABLE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .\-]{0,63}$")
_QUOTED = re.compile(r"'[^']{2,}'|\"[^\"]{2,}\"")


class PolicyError(ValueError):
    """The policy file is missing or invalid; the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def plain_fields(template: str) -> set[str]:
    """The field names of a template made of text and plain ``{field}`` placeholders (``{{``/``}}`` are literal
    braces). ValueError naming the first placeholder that is anything else: a conversion (``{x!r}``), a format
    spec (``{x:d}``), nesting (``{x:{y}}``), attribute or index access (``{x.y}``, ``{x[0]}``), positional
    (``{}``, ``{0}``) or unbalanced braces."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(
            f"malformed template ({exc}); only plain {{field}} placeholders are allowed"
        ) from None
    names: set[str] = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
        if not name or name.isdigit():
            why = "is positional"
        elif any(c in name for c in ".["):
            why = "reaches into a value"
        elif not name.isidentifier():
            why = "is not a field name"
        elif conversion is not None:
            why = f"uses the conversion !{conversion}"
        elif spec:
            why = "uses a format spec" + (" with a nested field" if "{" in spec else "")
        else:
            names.add(name)
            continue
        raise ValueError(f"placeholder {shown} {why}; only plain {{field}} placeholders are allowed")
    return names


class NamingPolicy(_Strict):
    """How a userName and email are formed: ASCII-folded, lower-case, collision suffixes 2, 3, ..."""

    username: str = "{given}.{last}"
    email_domain: str = "example.com"
    max_length: int = Field(default=64, ge=8, le=256)

    @field_validator("username")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        unknown = plain_fields(value) - NAME_FIELDS
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
        return hh_mm(value)


def hh_mm(value: str) -> str:
    """``value`` if it is a wall-clock time ``HH:MM``; ValueError otherwise."""
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

    @field_validator("title", "body")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        unknown = plain_fields(value) - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(
                f"template names unknown field(s) {sorted(unknown)}; allowed: {sorted(TEMPLATE_FIELDS)}"
            )
        return value


class TicketPolicy(_Strict):
    joiner: list[TicketTemplate] = Field(default_factory=list)
    mover: list[TicketTemplate] = Field(default_factory=list)
    leaver: list[TicketTemplate] = Field(default_factory=list)


class MassChangeBrake(_Strict):
    """Refuse a run that would disable more than ``max_disable_count`` accounts, or more than
    ``max_disable_percent`` of the active ones *and* more than ``min_disable_count`` people (so one leaver in a
    small company does not trip a percentage), unless explicitly overridden (:mod:`lifecycle.brake`)."""

    max_disable_count: int = Field(default=25, ge=0)
    max_disable_percent: float = Field(default=5.0, ge=0, le=100)
    min_disable_count: int = Field(default=0, ge=0)


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
    # who a review item's holder is compared with (lifecycle/recommend.py), most specific level first
    peers: list[Literal["department", "title"]] = Field(
        default_factory=lambda: ["department", "title"],  # type: ignore[arg-type]  # a Literal list
        min_length=1,
        max_length=2,
    )


# The fields a notification template of each event may use: what the recipient needs to act, no more (a
# manager sees their report's name; anyone else sees the employee id in its place, lifecycle/notices.py).
NOTICE_FIELDS: dict[str, frozenset[str]] = {
    "joiner": frozenset(
        {"display_name", "employee_id", "user_name", "department", "title", "active_at", "groups", "tickets"}
    ),
    "leaver": frozenset({"display_name", "employee_id", "user_name", "disable_at", "removed", "delete_at"}),
    "failure": frozenset({"flow_name", "flow_run_id", "state", "message"}),
}
NOTICE_WHEN = {"joiner": ("prehire",), "leaver": ("planned",), "failure": (None,)}


class NoticeTemplate(_Strict):
    """A message: ``subject`` and ``body`` with plain ``{field}`` placeholders (:data:`NOTICE_FIELDS`)."""

    subject: str
    body: str

    @field_validator("subject", "body")
    @classmethod
    def _plain(cls, value: str) -> str:
        plain_fields(value)
        return value


DEFAULT_NOTICE_TEMPLATES = {
    "manager-new-hire": NoticeTemplate(
        subject="New hire {display_name}: account active on {active_at}",
        body="{display_name}'s account will be active on {active_at}; user name {user_name}; "
        "groups: {groups}; tickets: {tickets}.",
    ),
    "manager-leaver": NoticeTemplate(
        subject="Leaver {display_name}: access ends on {disable_at}",
        body="{display_name}'s account {user_name} will be disabled on {disable_at}; removed then: {removed}; "
        "deleted: {delete_at}.",
    ),
    "run-failed": NoticeTemplate(
        subject="Tenure run failed: {flow_name} {flow_run_id}",
        body="Flow run {flow_run_id} of {flow_name} entered {state}: {message}",
    ),
}


class NoticeRule(_Strict):
    """Tell ``to`` (``manager``, or a name in ``recipients``) with ``template``, at ``when`` (joiner: ``prehire``,
    when the account is created; leaver: ``planned``, when the leave is first planned; failure: no ``when``)."""

    to: str = Field(min_length=1)
    when: str | None = None
    template: str = Field(min_length=1)


class NotifyPolicy(_Strict):
    """Who is told what (``notify:``); ``templates`` add to or replace :data:`DEFAULT_NOTICE_TEMPLATES`."""

    joiner: list[NoticeRule] = Field(default_factory=list)
    leaver: list[NoticeRule] = Field(default_factory=list)
    failure: list[NoticeRule] = Field(default_factory=list)
    templates: dict[str, NoticeTemplate] = Field(default_factory=dict)

    def template(self, name: str) -> NoticeTemplate:
        return self.templates.get(name) or DEFAULT_NOTICE_TEMPLATES[name]

    def rules(self) -> list[tuple[str, NoticeRule]]:
        return [(event, rule) for event in NOTICE_FIELDS for rule in getattr(self, event)]


CorrelationStep = Literal["employee_id", "email", "user_name"]
_TARGET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def _default_correlation() -> list[CorrelationStep]:
    """The employee id attribute first, then the HRIS work e-mail, then the userName."""
    return ["employee_id", "email", "user_name"]


class TargetPolicy(_Strict):
    """What one more provisioning target (``TENURE_TARGETS__<NAME>__*``) gets. ``account_when``: who gets an
    account there (a birthright match; empty: everyone). ``after: directory``: created only once the directory
    account exists (later in the same run). ``birthright``: the target's own groups (the top-level
    ``birthright`` is the directory's). ``correlation``: how an account found there is matched to an employee
    (:mod:`lifecycle.correlation`), the steps in order; the first step that finds anyone decides."""

    account_when: dict[Literal["department", "title", "location", "employment_type"], str | list[str]] = (
        Field(default_factory=dict)
    )
    after: Literal["directory"] | None = None
    birthright: list[BirthrightRule] = Field(default_factory=list)
    correlation: list[CorrelationStep] = Field(default_factory=_default_correlation, min_length=1)

    @field_validator("correlation")
    @classmethod
    def _each_step_once(cls, steps: list[CorrelationStep]) -> list[CorrelationStep]:
        if len(set(steps)) != len(steps):
            raise ValueError("list each correlation step once")
        return steps

    @property
    def managed_groups(self) -> frozenset[str]:
        return frozenset(g for rule in self.birthright for g in rule.groups)


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
    notify: NotifyPolicy = Field(default_factory=NotifyPolicy)
    recipients: dict[str, str] = Field(default_factory=dict)  # name → address; "fallback" (else "ops") for
    # a manager the HRIS does not know
    # correlation of the directory's own accounts (lifecycle.correlation)
    correlation: list[CorrelationStep] = Field(default_factory=_default_correlation, min_length=1)
    targets: dict[str, TargetPolicy] = Field(default_factory=dict)

    @field_validator("targets")
    @classmethod
    def _target_names(cls, targets: dict[str, TargetPolicy]) -> dict[str, TargetPolicy]:
        for name in targets:
            if name == "directory":
                raise ValueError("'directory' is the target TENURE_IDP__* configures; name the others")
            if not _TARGET_NAME.fullmatch(name):
                raise ValueError(
                    f"target name {_shown(name)} must be lower-case letters, digits and _ "
                    "(TENURE_TARGETS__GITHUB__* is target github)"
                )
        return targets

    # Adoption of the staff a company already has: on a person's first run, someone hired before this date is
    # linked without joiner tickets (lifecycle.planner). None: the date of Tenure's first run.
    adopt_before: date | None = None
    # The local start of the working day: "time to access" counts from it on the hire day (engine.kpi).
    workday_start: str = "09:00"

    @field_validator("workday_start")
    @classmethod
    def _workday_hh_mm(cls, value: str) -> str:
        return hh_mm(value)

    @field_validator("privileged_groups")
    @classmethod
    def _each_privileged_group_once(cls, groups: list[PrivilegedGroup]) -> list[PrivilegedGroup]:
        twice = sorted(name for name, n in Counter(g.name for g in groups).items() if n > 1)
        if twice:
            raise ValueError(
                f"duplicate privileged group name(s) {', '.join(map(repr, twice))}: list each group once"
            )
        return groups

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

    @model_validator(mode="after")
    def _notices_resolve(self) -> Policy:
        for event, rule in self.notify.rules():
            where = f"notify.{event}"
            if rule.when not in NOTICE_WHEN[event]:
                allowed = " or ".join(repr(w) for w in NOTICE_WHEN[event] if w) or "no 'when'"
                raise ValueError(f"{where}: when {rule.when!r} is not known; use {allowed}")
            if rule.to == "manager" and event == "failure":
                raise ValueError(f"{where}: a failed run has no manager; name a recipient")
            if rule.to != "manager" and rule.to not in self.recipients:
                raise ValueError(
                    f"{where}: recipient {rule.to!r} is neither 'manager' nor named in recipients"
                )
            if rule.to == "manager" and self.fallback_recipient is None:
                raise ValueError(
                    f"{where}: a manager may be missing; name recipients.fallback or recipients.ops"
                )
            if rule.template not in self.notify.templates and rule.template not in DEFAULT_NOTICE_TEMPLATES:
                raise ValueError(f"{where}: unknown template {rule.template!r}")
            template = self.notify.template(rule.template)
            unknown = (plain_fields(template.subject) | plain_fields(template.body)) - NOTICE_FIELDS[event]
            if unknown:
                raise ValueError(
                    f"{where}: template {rule.template!r} names unknown field(s) {sorted(unknown)}; "
                    f"allowed: {sorted(NOTICE_FIELDS[event])}"
                )
        return self

    @property
    def fallback_recipient(self) -> str | None:
        """Who hears what a missing manager would have: ``recipients.fallback``, else ``recipients.ops``."""
        return self.recipients.get("fallback") or self.recipients.get("ops")

    @property
    def privileged_names(self) -> frozenset[str]:
        return frozenset(g.name for g in self.privileged_groups)

    @property
    def managed_groups(self) -> frozenset[str]:
        """Every group the policy grants (birthright or privileged): the groups Tenure may remove."""
        return frozenset(g for rule in self.birthright for g in rule.groups) | self.privileged_names

    def timezone_for(self, location: str | None) -> ZoneInfo:
        return ZoneInfo(self.location_timezones.get(location or "", self.default_timezone))


class _DuplicateKey(ValueError):
    """A mapping in the policy file names one key twice."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (merge keys ``<<`` still merge)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                earlier = first_line.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base constructor reports it
                break
            if earlier != key_node.start_mark.line + 1:
                raise _DuplicateKey(
                    f"duplicate key {_shown(key)} at line {earlier} and line {key_node.start_mark.line + 1}"
                )
        return super().construct_mapping(node, deep=deep)


def _shown(part: object) -> str:
    """A key or path part from the file, quoted, if it looks like a policy name; else a placeholder."""
    if isinstance(part, int) and not isinstance(part, bool):
        return str(part)
    text = str(part)
    return repr(text) if _SHOWABLE_KEY.fullmatch(text) else "(a key that is not shown)"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's context and problem with their positions, without the snippet of the offending line it
    normally quotes (and with quoted names, such as aliases or tags, elided: they come from the file)."""
    found = []
    for what, mark in (("context", "context_mark"), ("problem", "problem_mark")):
        text, where = getattr(exc, what, None), getattr(exc, mark, None)
        if text:
            at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
            found.append(_QUOTED.sub("'…'", str(text)) + at)
    return ": ".join(found) or "unreadable YAML"


def _location(loc: tuple[int | str, ...]) -> str:
    """A validation error's path, each part from the file shown only if it looks like a policy name."""
    parts = [
        str(p) if isinstance(p, int) or _SHOWABLE_KEY.fullmatch(str(p)) else "(key not shown)" for p in loc
    ]
    return ".".join(parts) or "(top level)"


def _validation_problems(errors: list[Any]) -> str:
    """The first :data:`MAX_PROBLEMS` distinct problems, a repeated one counted (``(3 times)``)."""
    counts = Counter(f"{_location(err['loc'])}: {err['msg']}" for err in errors)
    shown = [problem + (f" ({n} times)" if n > 1 else "") for problem, n in counts.most_common()]
    more = f"; and {len(shown) - MAX_PROBLEMS} more" if len(shown) > MAX_PROBLEMS else ""
    return "; ".join(shown[:MAX_PROBLEMS]) + more


def load_policy(path: Path | str, *, adopt_before: date | None = None) -> Policy:
    """Read and validate a policy file; PolicyError names the file and the failing field (or line).
    ``adopt_before`` (``TENURE_ADOPT_BEFORE``), when given, replaces the file's ``adopt_before``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError(f"policy file {path} not found (set TENURE_POLICY_FILE)") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or type(exc).__name__}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # a SafeLoader subclass: no object tags
    except _DuplicateKey as exc:
        raise PolicyError(f"policy file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path}: top level must be a mapping")
    from pydantic import ValidationError

    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"policy file {path}: {_validation_problems(exc.errors())}") from None
    if adopt_before is not None:
        policy = policy.model_copy(update={"adopt_before": adopt_before})
    return policy
