"""The mass-change brake: refuse a run that would take access from too many people at once. Pure.

An HRIS outage, a truncated export or a bad column mapping can make every employee look terminated; a sync
that trusted it would offboard the company. Before anything is applied, the sync counts the employees whose
plan takes access away *now* (a DISABLE_ACCOUNT or DELETE_ACCOUNT action; a SCHEDULE is only a note to
re-plan later and disables nothing) and compares the count with ``policy.brake``:

* more than ``max_disable_count`` employees, or
* more than ``max_disable_percent`` percent of the accounts active before the run

refuses the run, unless the operator overrides the brake explicitly. A refused run applies nothing. Both
limits are "exceeds": exactly at the limit passes. With no active account the percentage is 0 when nothing
is disabled and 100 otherwise (a delete of a disabled account still counts: it is irreversible).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lifecycle.actions import ActionKind, Plan
from lifecycle.policy import MassChangeBrake

__all__ = ["BRAKE_KINDS", "BrakeDecision", "disabling_employees", "check_brake"]

# Action kinds that take access away now.
BRAKE_KINDS = frozenset({ActionKind.DISABLE_ACCOUNT, ActionKind.DELETE_ACCOUNT})


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

    @property
    def refused(self) -> bool:
        return self.tripped and not self.overridden

    @property
    def message(self) -> str:
        """One line for logs, artifacts and the audit row (counts only, no names)."""
        what = (
            f"{self.disables} account(s) would be disabled or deleted ({self.percent:.1f}% of "
            f"{self.active_accounts} active; limits {self.max_count} and {self.max_percent:g}%)"
        )
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
    disables = len(disabling_employees(plans))
    percent = 100.0 * disables / active_accounts if active_accounts else 100.0 if disables else 0.0
    tripped = disables > brake.max_disable_count or percent > brake.max_disable_percent
    return BrakeDecision(
        disables=disables,
        active_accounts=active_accounts,
        percent=percent,
        max_count=brake.max_disable_count,
        max_percent=brake.max_disable_percent,
        tripped=tripped,
        overridden=tripped and override,
    )
