"""Property-based tests of the planner's invariants, with lifecycle.simulate.apply_plan as the model of apply.

Idempotence, precisely: after applying a plan, re-planning in the same situation yields no account or
membership action (``ACCOUNT_KINDS``), and every other action it yields (tickets, approval requests,
schedules) has a ledger key the first plan already had, so the apply step's ledger dedupes it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lifecycle.actions import ACCOUNT_KINDS, ActionKind, Plan
from lifecycle.birthright import matching_rules
from lifecycle.planner import History, plan, timeline
from lifecycle.policy import (
    BirthrightRule,
    LeaverPolicy,
    Policy,
    PrivilegedGroup,
    TicketPolicy,
    TicketTemplate,
)
from lifecycle.simulate import apply_plan
from models.domain import Account, Employee, EmployeeStatus

K = ActionKind
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)
DEPARTMENTS = ["Engineering", "Sales", "Ops", "Astrology"]
LOCATIONS = ["Berlin", "New York", "Atlantis"]
GROUPS = ["all-staff", "engineering", "sales", "ops", "crm-users", "prod-admin", "payments-approve"]
PRIVILEGED = ["prod-admin", "payments-approve"]
MANUAL = ["book-club", "lunch"]
TICKETS = TicketPolicy(
    joiner=[TicketTemplate(purpose="laptop", title="Laptop {user_name}")],
    mover=[TicketTemplate(purpose="move", title="Move {employee_id}")],
    leaver=[TicketTemplate(purpose="return", title="Return {employee_id}")],
)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    match_values = st.one_of(
        st.sampled_from(DEPARTMENTS + ["engineering"]),
        st.lists(st.sampled_from(DEPARTMENTS), min_size=1, max_size=2),
    )
    rules = draw(
        st.lists(
            st.builds(
                BirthrightRule,
                match=st.one_of(
                    st.just({}),
                    st.fixed_dictionaries({"department": match_values}),
                    st.fixed_dictionaries({"location": st.sampled_from(LOCATIONS)}),
                ),
                groups=st.lists(st.sampled_from(GROUPS), min_size=1, max_size=3, unique=True),
            ),
            max_size=5,
        )
    )
    leaver = LeaverPolicy(
        timing=draw(st.sampled_from(["at_termination", "immediate"])),
        termination_time=draw(st.sampled_from(["00:00", "09:30", "18:00", "23:59"])),
        delete_after_days=draw(st.one_of(st.none(), st.integers(0, 60))),
        remove_groups=draw(st.booleans()),
    )
    privileged = draw(st.lists(st.sampled_from(PRIVILEGED), unique=True))
    return Policy(
        birthright=rules,
        privileged_groups=[PrivilegedGroup(name=n) for n in privileged],
        prehire_days=draw(st.integers(0, 14)),
        location_timezones={"Berlin": "Europe/Berlin", "New York": "America/New_York"},
        leaver=leaver,
        tickets=TICKETS,
    )


names = st.one_of(
    st.sampled_from(["John", "Zoë", "Łukasz", "O'Brien", "李", "", "Mary Ann"]), st.text(max_size=12)
)
days = st.integers(min_value=-400, max_value=90).map(lambda n: NOW.date() + timedelta(days=n))


@st.composite
def employees(draw: st.DrawFn, status: EmployeeStatus | None = None) -> Employee:
    hire = draw(st.one_of(st.none(), days))
    termination = draw(st.one_of(st.none(), days))
    return Employee(
        employee_id="E1",
        first_name=draw(names),
        last_name=draw(names),
        preferred_name=draw(st.one_of(st.none(), names)),
        department=draw(st.one_of(st.none(), st.sampled_from(DEPARTMENTS))),
        title=draw(st.one_of(st.none(), st.sampled_from(["Engineer", "Manager"]))),
        manager_id=draw(st.one_of(st.none(), st.sampled_from(["M1", "M2"]))),
        location=draw(st.one_of(st.none(), st.sampled_from(LOCATIONS))),
        status=status or draw(st.sampled_from(list(EmployeeStatus))),
        hire_date=hire,
        termination_date=termination,
    )


@st.composite
def accounts(draw: st.DrawFn) -> Account:
    return Account(
        id="A1",
        user_name=draw(st.sampled_from(["john.smith", "j.smith"])),
        employee_id="E1",
        given_name=draw(st.one_of(st.none(), names)),
        family_name=draw(st.one_of(st.none(), names)),
        email=draw(st.one_of(st.none(), st.just("john.smith@example.com"))),
        title=draw(st.one_of(st.none(), st.sampled_from(["Engineer", "Manager"]))),
        department=draw(st.one_of(st.none(), st.sampled_from(DEPARTMENTS))),
        manager_id=draw(st.one_of(st.none(), st.just("M1"))),
        active=draw(st.booleans()),
        last_sign_in=draw(st.one_of(st.none(), st.just(NOW - timedelta(days=200)))),
        groups=frozenset(draw(st.sets(st.sampled_from(GROUPS + MANUAL)))),
    )


nows = st.integers(min_value=0, max_value=3 * 24 * 60).map(lambda m: NOW + timedelta(minutes=m - 36 * 60))
approvals_st = st.frozensets(st.sampled_from(PRIVILEGED + ["all-staff"]))
taken_st = st.frozensets(st.sampled_from(["john.smith", "john.smith2", "zoe.john", "e1"]))


def remembered(history: History, applied: Plan, now: datetime) -> History:
    """What the ledger remembers after ``applied`` was applied at ``now`` (the disable Tenure recorded)."""
    if applied.of_kind(ActionKind.DISABLE_ACCOUNT):
        return replace(history, left_before=True, disabled_at=now)
    return history


def non_account_keys(p: Plan) -> set[str]:
    return {a.key for a in p.actions if a.kind not in ACCOUNT_KINDS}


@PROPS
@given(
    employee=employees(),
    account=st.one_of(st.none(), accounts()),
    policy=policies(),
    now=nows,
    approvals=approvals_st,
    taken=taken_st,
)
def test_apply_then_replan_converges(
    employee: Employee,
    account: Account | None,
    policy: Policy,
    now: datetime,
    approvals: frozenset[str],
    taken: frozenset[str],
) -> None:
    """(1) After apply, a re-plan has no account/membership actions and only keys the first plan had."""
    history = History(granted=approvals)
    first = plan(employee, account, policy, now, taken_user_names=taken, history=history)
    applied = apply_plan(account, first)
    history = remembered(history, first, now)
    second = plan(employee, applied, policy, now, taken_user_names=taken, history=history)
    assert [a for a in second.actions if a.kind in ACCOUNT_KINDS] == []
    assert non_account_keys(second) <= non_account_keys(first)
    again = apply_plan(applied, second)
    third = plan(
        employee, again, policy, now, taken_user_names=taken, history=remembered(history, second, now)
    )
    assert third.keys == second.keys


@PROPS
@given(
    employee=employees(status=EmployeeStatus.ACTIVE),
    account=accounts(),
    policy=policies(),
    now=nows,
    approvals=approvals_st,
)
def test_active_employee_never_loses_a_policy_granted_group(
    employee: Employee, account: Account, policy: Policy, now: datetime, approvals: frozenset[str]
) -> None:
    """(2) For an active employee (termination instant not passed), no group policy grants is removed."""
    tl = timeline(employee, policy)
    started_earlier_tenure = (
        employee.termination_date is not None
        and employee.hire_date is not None
        and employee.termination_date < employee.hire_date
    )
    if tl.disable_at is not None and now >= tl.disable_at and not started_earlier_tenure:
        return  # past the termination instant: a leaver by date, covered by test (3)
    granted = {g for _, rule in matching_rules(employee, policy) for g in rule.groups}
    granted |= approvals & policy.privileged_names
    p = plan(employee, account, policy, now, history=History(granted=approvals))
    removed = {a.subject for a in p.of_kind(K.REMOVE_MEMBERSHIP)}
    assert not removed & granted
    assert K.DISABLE_ACCOUNT not in {a.kind for a in p.actions}


@PROPS
@given(
    employee=employees(),
    account=st.one_of(st.none(), accounts()),
    policy=policies(),
    now=nows,
    approvals=approvals_st,
)
def test_only_managed_groups_are_ever_removed(
    employee: Employee, account: Account | None, policy: Policy, now: datetime, approvals: frozenset[str]
) -> None:
    """Groups outside policy (granted by hand) are never removed, for any employee state."""
    p = plan(employee, account, policy, now, history=History(granted=approvals))
    assert {a.subject for a in p.of_kind(K.REMOVE_MEMBERSHIP)} <= policy.managed_groups


@PROPS
@given(employee=employees(), account=accounts(), policy=policies(), now=nows)
def test_past_termination_time_ends_disabled(
    employee: Employee, account: Account, policy: Policy, now: datetime
) -> None:
    """(3) Past the termination instant (terminated with timing immediate or no date, or any status once
    the termination instant of this tenure has passed): after apply the account is disabled or deleted."""
    tl = timeline(employee, policy)
    terminated = employee.status is EmployeeStatus.TERMINATED
    past = tl.disable_at is not None and now >= tl.disable_at
    earlier_tenure = (
        employee.termination_date is not None
        and employee.hire_date is not None
        and employee.termination_date < employee.hire_date
    )
    due = (terminated and (policy.leaver.timing == "immediate" or tl.disable_at is None or past)) or (
        past and not earlier_tenure
    )
    after = apply_plan(account, plan(employee, account, policy, now))
    if due:
        assert after is None or not after.active
        if after is not None and policy.leaver.remove_groups:
            assert not after.groups & policy.managed_groups
    elif terminated:
        assert after is not None and after.active == account.active  # only scheduled


@PROPS
@given(
    employee=employees(),
    account=accounts(),
    policy=policies(),
    now=nows,
    approvals=approvals_st,
    taken=taken_st,
)
def test_existing_account_is_never_created_again(
    employee: Employee,
    account: Account,
    policy: Policy,
    now: datetime,
    approvals: frozenset[str],
    taken: frozenset[str],
) -> None:
    """(4) With an account present (e.g. a rehire's disabled one) the plan never creates another."""
    p = plan(employee, account, policy, now, taken_user_names=taken, history=History(granted=approvals))
    assert p.of_kind(K.CREATE_ACCOUNT) == []
    if employee.status in {EmployeeStatus.ACTIVE, EmployeeStatus.PENDING} and not account.active:
        assert p.event in {"rehire", "joiner", "leaver"}


@PROPS
@given(
    policy=policies(),
    first=names,
    last=names,
    gap=st.integers(1, 400),
    delete_after_days=st.sampled_from([None, 10_000]),
)
def test_full_tenure_and_rehire_use_one_account(
    policy: Policy, first: str, last: str, gap: int, delete_after_days: int | None
) -> None:
    """(4) Walk hire → leave → rehire through the model: one account, created once, enabled again."""
    policy = policy.model_copy(
        update={"leaver": policy.leaver.model_copy(update={"delete_after_days": delete_after_days})}
    )  # the account survives until the rehire
    hire, end = date(2024, 1, 8), date(2024, 6, 28)
    rehire = end + timedelta(days=gap)
    story = [
        (EmployeeStatus.PENDING, hire, None, datetime(2024, 1, 5, tzinfo=UTC)),
        (EmployeeStatus.ACTIVE, hire, None, datetime(2024, 1, 9, tzinfo=UTC)),
        (EmployeeStatus.TERMINATED, hire, end, datetime(2024, 6, 30, tzinfo=UTC)),
        (
            EmployeeStatus.ACTIVE,
            rehire,
            end,
            datetime.combine(rehire, datetime.min.time(), UTC) + timedelta(days=2),
        ),
    ]
    account: Account | None = None
    creates = 0
    for status, hire_date, termination_date, now in story:
        employee = Employee(
            employee_id="E1",
            first_name=first,
            last_name=last,
            status=status,
            hire_date=hire_date,
            termination_date=termination_date,
        )
        p = plan(employee, account, policy, now)
        creates += len(p.of_kind(K.CREATE_ACCOUNT))
        account = apply_plan(account, p)
    if account is None:  # the name yields no userName: skipped throughout
        assert creates == 0
        return
    assert creates == 1
    assert account.active


@PROPS
@given(
    employee=employees(),
    account=st.one_of(st.none(), accounts()),
    policy=policies(),
    now=nows,
    approvals=approvals_st,
)
def test_plan_order_and_unique_keys(
    employee: Employee, account: Account | None, policy: Policy, now: datetime, approvals: frozenset[str]
) -> None:
    """Actions follow the documented order, keys are unique, and every action has a reason."""
    p = plan(employee, account, policy, now, history=History(granted=approvals))
    assert len(set(p.keys)) == len(p.keys)
    assert all(a.reason for a in p.actions)
    if p.event == "leaver":
        rank = {K.DISABLE_ACCOUNT: 0, K.REMOVE_MEMBERSHIP: 1, K.OPEN_TICKET: 2, K.DELETE_ACCOUNT: 3}
        schedule = {"disable": 0, "delete": 3}
    else:
        rank = {
            K.CREATE_ACCOUNT: 0,
            K.UPDATE_ACCOUNT: 1,
            K.ENABLE_ACCOUNT: 2,
            K.ADD_MEMBERSHIP: 3,
            K.REMOVE_MEMBERSHIP: 4,
            K.REQUEST_APPROVAL: 5,
            K.OPEN_TICKET: 6,
        }
        schedule = {"enable": 2, "create": 7, "disable": 7}
    ranks = [schedule[a.subject] if a.kind is K.SCHEDULE else rank[a.kind] for a in p.actions]
    assert ranks == sorted(ranks)
