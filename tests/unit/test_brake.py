"""The mass-change brake (lifecycle.brake): counts, percentages, limits and the override."""

from __future__ import annotations

import pytest

from lifecycle.actions import ActionKind, Plan
from lifecycle.brake import check_brake, check_roster_shrink, disabling_employees
from lifecycle.policy import MassChangeBrake
from tests.support.actions import make_action

BRAKE = MassChangeBrake(max_disable_count=25, max_disable_percent=5.0)


def leaver(n: int, *kinds: ActionKind) -> Plan:
    kinds = kinds or (ActionKind.DISABLE_ACCOUNT, ActionKind.REMOVE_MEMBERSHIP)
    return Plan(
        employee_id=f"E{n}",
        event="leaver",
        actions=[make_action(k, f"E{n}", "g", "test") for k in kinds],
    )


def mover(n: int) -> Plan:
    return Plan(
        employee_id=f"E{n}",
        event="mover",
        actions=[
            make_action(ActionKind.UPDATE_ACCOUNT, f"E{n}", "u", "test"),
            make_action(ActionKind.REMOVE_MEMBERSHIP, f"E{n}", "sales", "test"),
        ],
    )


def test_counts_each_employee_once_for_disable_and_delete() -> None:
    """An employee with both a disable and a delete counts once; movers and schedules do not count."""
    plans = [
        leaver(1, ActionKind.DISABLE_ACCOUNT, ActionKind.DELETE_ACCOUNT),
        leaver(2, ActionKind.DELETE_ACCOUNT),
        mover(3),
        leaver(4, ActionKind.SCHEDULE),
        Plan(employee_id="E5", event="none"),
    ]
    assert disabling_employees(plans) == ["E1", "E2"]


@pytest.mark.parametrize(
    ("disables", "active", "tripped"),
    [(0, 1000, False), (25, 1000, False), (26, 1000, True), (5, 100, False), (6, 100, True), (1, 10, True)],
    ids=["none", "count-at-limit", "count-over", "percent-at-limit", "percent-over", "small-company"],
)
def test_limits_are_exceeded_not_reached(disables: int, active: int, tripped: bool) -> None:
    """Exactly at either limit passes; one more than the count or the percentage trips."""
    decision = check_brake([leaver(i) for i in range(disables)] + [mover(9999)], active, BRAKE)
    assert decision.tripped is tripped and decision.refused is tripped
    assert decision.disables == disables and decision.percent == pytest.approx(100 * disables / active)


def test_override_lets_a_tripped_brake_through_and_says_so() -> None:
    """With the override the run is not refused, but the decision still records that the brake tripped."""
    plans = [leaver(i) for i in range(80)]
    refused = check_brake(plans, 100, BRAKE)
    overridden = check_brake(plans, 100, BRAKE, override=True)
    assert refused.refused and "refused" in refused.message and "80 account(s)" in refused.message
    assert overridden.tripped and overridden.overridden and not overridden.refused
    assert "OVERRIDDEN" in overridden.message


def test_override_of_an_untripped_brake_is_not_recorded_as_overridden() -> None:
    """Passing the override when nothing trips changes nothing."""
    decision = check_brake([leaver(1)], 1000, BRAKE, override=True)
    assert not decision.tripped and not decision.overridden and "not tripped" in decision.message


def test_no_active_accounts() -> None:
    """With no active account, nothing to disable is 0%, and any delete is 100% (it is irreversible)."""
    assert check_brake([], 0, BRAKE).percent == 0.0 and not check_brake([], 0, BRAKE).tripped
    decision = check_brake([leaver(1, ActionKind.DELETE_ACCOUNT)], 0, BRAKE)
    assert decision.percent == 100.0 and decision.refused


def test_zero_limits_refuse_any_disable() -> None:
    """A policy of zero tolerance refuses the first disable."""
    strict = MassChangeBrake(max_disable_count=0, max_disable_percent=0)
    assert check_brake([leaver(1)], 10_000, strict).refused
    assert not check_brake([mover(1)], 10_000, strict).tripped


def test_negative_active_count_is_a_programming_error() -> None:
    """A negative account count is rejected rather than producing a nonsense percentage."""
    with pytest.raises(ValueError, match="must not be negative"):
        check_brake([], -1, BRAKE)


@pytest.mark.parametrize(
    ("previous", "current", "tripped"),
    [
        (None, 10, False),
        (0, 0, False),
        (1000, 1000, False),
        (1000, 1200, False),
        (1000, 950, False),
        (1000, 949, True),
        (1000, 0, True),
        (20, 18, True),
    ],
    ids=[
        "first-run",
        "empty-before",
        "same",
        "grew",
        "at-share",
        "over-share",
        "empty-export",
        "small-company",
    ],
)
def test_roster_shrink_over_the_brake_share_is_refused(
    previous: int | None, current: int, tripped: bool
) -> None:
    """A roster that lost more than max_disable_percent (5%) of the last run's records trips; at the share
    passes; a first run or a grown roster never trips."""
    decision = check_roster_shrink(previous, current, BRAKE)
    assert decision.tripped is tripped and decision.refused is tripped
    if previous:
        assert decision.percent == pytest.approx(max(0.0, 100 * (previous - current) / previous))


def test_roster_shrink_message_and_override() -> None:
    """The refusal names the counts and the way out; the override lets it through and says so."""
    refused = check_roster_shrink(1000, 500, BRAKE)
    assert refused.refused and "refused the run before planning" in refused.message
    assert "500 HR record(s), 50.0% fewer than the last run's 1000 (limit 5%)" in refused.message
    overridden = check_roster_shrink(1000, 500, BRAKE, override=True)
    assert overridden.tripped and not overridden.refused and "OVERRIDDEN" in overridden.message
    assert "no earlier run" in check_roster_shrink(None, 3, BRAKE).message


def test_roster_shrink_rejects_negative_counts() -> None:
    """Negative counts are a programming error."""
    with pytest.raises(ValueError, match="must not be negative"):
        check_roster_shrink(-1, 3, BRAKE)


EXAMPLE = MassChangeBrake(max_disable_count=25, max_disable_percent=5.0, min_disable_count=10)


@pytest.mark.parametrize(
    ("disables", "active", "tripped"),
    [(1, 11, False), (10, 11, False), (11, 100, True), (11, 1000, False), (26, 10000, True)],
    ids=["one-in-eleven", "ten-people", "eleven-over-5pct", "eleven-under-5pct", "count-over"],
)
def test_percentage_trips_only_past_the_minimum_count(disables: int, active: int, tripped: bool) -> None:
    """The example policy's rule: past 5% *and* more than 10 people, or more than 25 in any case."""
    decision = check_brake([leaver(n) for n in range(disables)], active, EXAMPLE)
    assert decision.tripped is tripped
    assert "more than 5% and more than 10" in decision.message


def test_roster_shrink_also_needs_the_minimum_count() -> None:
    """One record fewer in an 11-person export is 9% but one person: passes; 11 of 100 gone trips."""
    assert not check_roster_shrink(11, 10, EXAMPLE).tripped
    assert check_roster_shrink(100, 89, EXAMPLE).tripped


def test_the_message_names_the_employees_by_id_first_50_then_a_count() -> None:
    """The brake says which employees (ids only), the first 50, then how many more."""
    decision = check_brake([leaver(n) for n in range(60)], 100, BRAKE)
    assert decision.refused
    message = decision.message
    assert "E0, E1, E2" in message and "E49" in message and "E50," not in message
    assert "E49 and 10 more" in message
    assert message.count("E49") == 1
