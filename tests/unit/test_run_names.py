"""Run and step names as the Prefect UI lists them (issue #18): review runs carry their day, steps carry the
employee id and never the user name built from a person's name."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from flows.review import access_review, review_deadline
from lifecycle.actions import ActionKind
from tests.support.actions import make_action


@pytest.mark.parametrize(
    ("flow", "prefix"), [(access_review, "access-review"), (review_deadline, "review-deadline")]
)
def test_review_runs_are_named_with_their_scheduled_day(
    flow, prefix, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """`access-review-2026-03-04`, not `access-review` every night (the day in UTC of the scheduled start)."""
    from prefect.runtime import flow_run

    scheduled = datetime(2026, 3, 4, 2, 30, tzinfo=ZoneInfo("Europe/Berlin"))  # 01:30 UTC
    monkeypatch.setitem(flow_run.FIELDS, "scheduled_start_time", lambda: scheduled)
    assert callable(flow.flow_run_name)
    assert flow.flow_run_name() == f"{prefix}-2026-03-04"


def test_step_names_carry_ids_not_user_names() -> None:
    """`create_account-E2` for the person's account, `add_membership-E2-sales` for a group; no user name."""
    create = make_action(ActionKind.CREATE_ACCOUNT, "E2", "grace.hopper", "joiner")
    add = make_action(ActionKind.ADD_MEMBERSHIP, "E2", "sales", "entitled")
    disable = make_action(ActionKind.DISABLE_ACCOUNT, "E2", "grace.hopper", "leaver")
    assert create.subject == "grace.hopper"  # the IdP still gets the user name ...
    assert [create.step_name, add.step_name, disable.step_name] == [  # ... the UI does not
        "create_account-E2",
        "add_membership-E2-sales",
        "disable_account-E2",
    ]
