"""The mass-change brake: refuse a run that would take access from too many people at once. Pure.

An HRIS outage, a truncated export or a bad column mapping can make every employee look terminated; a sync
that trusted it would offboard the company. Before anything is applied, the sync counts the employees whose
plan takes access away *now* (a DISABLE_ACCOUNT or DELETE_ACCOUNT action; a SCHEDULE is only a note to
re-plan later and disables nothing) and compares the count with ``policy.brake``:

* more than ``max_disable_count`` employees, or
* more than ``max_disable_percent`` percent of the accounts active before the run **and** more than
  ``min_disable_count`` employees (the minimum count keeps one leaver in an 11-person company from tripping a
  5% limit; 0, the default, makes the percentage alone decide)

refuses the run, unless the operator overrides the brake explicitly. A refused run applies nothing. Every
limit is "exceeds": exactly at the limit passes. With no active account the percentage is 0 when nothing
is disabled and 100 otherwise (a delete of a disabled account still counts: it is irreversible). The
decision names the employees (ids, the first :data:`SHOWN_IDS`, then a count), never their names.

A second check runs *before* planning (:func:`check_roster_shrink`): a truncated export (a partial download,
a report that timed out half-way) shows fewer records than the last run. When the roster shrank by more than
the brake's share (``max_disable_percent`` of the last run's count, and by more than ``min_disable_count``
records) the run is refused before anything is planned, unless overridden. Exactly at the share passes; a
first run (no previous count) always passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle.actions import ActionKind, Plan
from lifecycle.policy import MassChangeBrake

__all__ = [
    "BRAKE_KINDS",
    "SHOWN_IDS",
    "list_ids",
    "BrakeDecision",
    "disabling_employees",
    "check_brake",
    "RosterShrinkDecision",
    "check_roster_shrink",
]

# Action kinds that take access away now.
BRAKE_KINDS = frozenset({ActionKind.DISABLE_ACCOUNT, ActionKind.DELETE_ACCOUNT})
SHOWN_IDS = 50  # ids named in a message; the rest are counted


def list_ids(ids: Iterable[str], limit: int = SHOWN_IDS) -> str:
    """``E1, E2, E3`` — the first ``limit`` ids, then ``and N more``; ``none`` for no id."""
    ids = list(ids)
    if not ids:
        return "none"
    shown = ", ".join(ids[:limit])
    return shown + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


@dataclass(frozen=True)
class BrakeDecision:
    """The brake's verdict. ``tripped``: a limit is exceeded; ``refused``: tripped and not overridden."""

    disables: int
    active_accounts: int
    percent: float
    max_count: int
    max_percent: float
    tripped: bool
    overridden: bool
    min_count: int = 0
    employee_ids: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.tripped and not self.overridden

    @property
    def limits(self) -> str:
        share = f"{self.max_percent:g}%" + (f" and more than {self.min_count}" if self.min_count else "")
        return f"limits: more than {self.max_count}, or more than {share}"

    @property
    def message(self) -> str:
        """One line for logs, artifacts and the audit row (counts and employee ids, no names)."""
        what = (
            f"{self.disables} account(s) would be disabled or deleted ({self.percent:.1f}% of "
            f"{self.active_accounts} active; {self.limits})"
        )
        if self.employee_ids:
            what += f": {list_ids(self.employee_ids)}"
        if not self.tripped:
            return f"brake not tripped: {what}"
        if self.overridden:
            return f"brake tripped and OVERRIDDEN by the operator: {what}"
        return (
            f"mass-change brake refused the run: {what}. Nothing was applied. Check the HR data; "
            f"if the change is real, re-run with override_brake / --override-brake"
        )


def disabling_employees(plans: Iterable[Plan]) -> list[str]:
    """Ids of the employees whose plan disables or deletes their account now (each counted once)."""
    return [p.employee_id for p in plans if any(a.kind in BRAKE_KINDS for a in p.actions)]


def check_brake(
    plans: Iterable[Plan], active_accounts: int, brake: MassChangeBrake, *, override: bool = False
) -> BrakeDecision:
    """Decide whether the plans may be applied under ``brake`` (see the module docstring)."""
    if active_accounts < 0:
        raise ValueError("active_accounts must not be negative")
    ids = disabling_employees(plans)
    disables = len(ids)
    percent = 100.0 * disables / active_accounts if active_accounts else 100.0 if disables else 0.0
    tripped = disables > brake.max_disable_count or (
        percent > brake.max_disable_percent and disables > brake.min_disable_count
    )
    return BrakeDecision(
        min_count=brake.min_disable_count,
        employee_ids=tuple(ids),
        disables=disables,
        active_accounts=active_accounts,
        percent=percent,
        max_count=brake.max_disable_count,
        max_percent=brake.max_disable_percent,
        tripped=tripped,
        overridden=tripped and override,
    )


@dataclass(frozen=True)
class RosterShrinkDecision:
    """Whether the HR roster shrank too much since the last run. ``refused``: tripped and not overridden."""

    previous: int | None
    current: int
    percent: float
    max_percent: float
    tripped: bool
    overridden: bool

    @property
    def refused(self) -> bool:
        return self.tripped and not self.overridden

    @property
    def message(self) -> str:
        """One line for logs and the audit row (counts only)."""
        if self.previous is None:
            return f"roster check: {self.current} record(s), no earlier run to compare with"
        what = (
            f"{self.current} HR record(s), {self.percent:.1f}% fewer than the last run's {self.previous} "
            f"(limit {self.max_percent:g}%)"
        )
        if not self.tripped:
            return f"roster check passed: {what}"
        if self.overridden:
            return f"roster shrank and the brake was OVERRIDDEN by the operator: {what}"
        return (
            f"roster brake refused the run before planning: {what}. Is the export truncated? Nothing was "
            f"planned or applied; if the drop is real, re-run with override_brake / --override-brake"
        )


def check_roster_shrink(
    previous_count: int | None, current_count: int, brake: MassChangeBrake, *, override: bool = False
) -> RosterShrinkDecision:
    """Refuse a roster that shrank by more than ``brake.max_disable_percent`` of ``previous_count`` (see the
    module docstring). Counts are records read from the HRIS (valid and invalid alike)."""
    if current_count < 0 or (previous_count is not None and previous_count < 0):
        raise ValueError("record counts must not be negative")
    shrink = 0.0
    if previous_count and current_count < previous_count:
        shrink = 100.0 * (previous_count - current_count) / previous_count
    lost = (previous_count or 0) - current_count
    tripped = shrink > brake.max_disable_percent and lost > brake.min_disable_count
    return RosterShrinkDecision(
        previous=previous_count,
        current=current_count,
        percent=shrink,
        max_percent=brake.max_disable_percent,
        tripped=tripped,
        overridden=tripped and override,
    )
