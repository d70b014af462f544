"""The review's compact inventory (models.compact, engine.review.collect_inventory): the same findings as the
validated models, memberships from the group lists (of the groups the review judges), strings shared rather
than copied; the cycle collector paused while it is built (engine.review.collector_paused)."""

from __future__ import annotations

import gc
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

from connectors.errors import InvalidRecordError
from engine.review import collect_inventory, collector_paused
from engine.review.run import ReviewRun, _target_findings
from lifecycle.correlation import correlate
from lifecycle.policy import CorrelationStep, Policy
from lifecycle.review import count_by_kind, find, review_groups
from lifecycle.targets import target_policy
from models.compact import CompactAccount, CompactEmployee
from models.domain import Account, Employee, EmployeeStatus, Group

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEPARTMENTS = ("Engineering", "Finance", "Sales")
POLICY = Policy.model_validate(
    {
        "birthright": [
            {"groups": ["all-staff"]},
            *({"match": {"department": d}, "groups": [d.lower()]} for d in DEPARTMENTS),
            {"match": {"location": "Berlin"}, "groups": ["office-berlin"]},
        ],
        "privileged_groups": [{"name": "prod-admin", "recertify_days": 90}, {"name": "payments-approve"}],
        "review": {"dormant_days": 90, "sod_conflicts": [["payments-approve", "payments-create"]]},
    }
)
GROUPS = ("all-staff", "engineering", "finance", "sales", "office-berlin", "prod-admin", "payments-approve")
GROUPS += ("payments-create", "app-1", "app-2")


def generated(
    n: int, seed: int = 7
) -> tuple[dict[str, Employee], list[Account], dict[str, dict[str, datetime]]]:
    """Employees, accounts and approvals with every kind of finding: orphans, leavers (due and ahead),
    dormant and unknown sign-ins, disabled accounts, groups outside policy, privileged groups with old, recent
    and no approvals, separation-of-duties pairs."""
    rng = random.Random(seed)
    employees: dict[str, Employee] = {}
    accounts: list[Account] = []
    approvals: dict[str, dict[str, datetime]] = {}
    for i in range(n):
        eid = f"E{i}"
        roll = rng.random()
        if roll > 0.05:
            termination = rng.choice([None, None, None, date(2026, 1, 1), date(2026, 6, 1)])
            employees[eid] = Employee(
                employee_id=eid,
                first_name=rng.choice(["Ada", "Grace", "Alan"]),
                last_name=f"L{i}",
                department=rng.choice(DEPARTMENTS),
                location=rng.choice(["Berlin", "Remote", None]),
                status=EmployeeStatus.TERMINATED if roll < 0.1 else EmployeeStatus.ACTIVE,
                manager_id=f"E{i // 5}",
                hire_date=date(2020, 1, 1),
                termination_date=termination,
            )
        groups = frozenset(rng.sample(GROUPS, rng.randint(0, 5)))
        for group in groups & {"prod-admin", "payments-approve"}:
            if rng.random() < 0.6:
                approvals.setdefault(eid, {})[group] = NOW - timedelta(days=rng.randint(1, 200))
        accounts.append(
            Account(
                id=f"acc-{i}",
                user_name=f"user{i}",
                employee_id=eid if rng.random() > 0.02 else "",
                active=rng.random() > 0.1,
                groups=groups,
                last_sign_in=NOW - timedelta(days=rng.randint(0, 200)) if rng.random() < 0.5 else None,
            )
        )
    return employees, accounts, approvals


def test_compact_records_give_the_same_findings_as_the_models() -> None:
    employees, accounts, approvals = generated(3_000)
    full = find(employees, accounts, approvals, NOW, POLICY)
    compact = find(
        {eid: CompactEmployee.of(e) for eid, e in employees.items()},
        [CompactAccount.of(a) for a in accounts],
        approvals,
        NOW,
        POLICY,
    )
    assert compact == full
    assert all(count_by_kind(full)[kind] > 0 for kind in count_by_kind(full) if kind != "disputed")


def test_compact_records_hold_every_fact_of_the_models() -> None:
    """Read from the models' field values in one step: every field, by name, none shifted."""
    employee = Employee(
        employee_id="E1",
        first_name="Ada",
        last_name="Lovelace",
        preferred_name="Ada L.",
        work_email="ada@example.com",
        personal_email="ada@home.example",
        department="Engineering",
        title="Engineer",
        manager_id="E0",
        location="Berlin",
        employment_type="full_time",
        status=EmployeeStatus.TERMINATED,
        hire_date=date(2020, 1, 1),
        termination_date=date(2026, 1, 31),
        raw={"id": "1"},
    )
    compact = CompactEmployee.of(employee)
    assert type(compact) is CompactEmployee
    assert {f: getattr(compact, f) for f in CompactEmployee._fields} == {
        f: getattr(employee, f) for f in CompactEmployee._fields
    }
    assert compact.given_name == "Ada L."
    signed_in = NOW - timedelta(days=3)
    model = Account(
        id="a1", user_name="ada", employee_id="E1", active=False, last_sign_in=signed_in, groups={"x"}
    )
    assert CompactAccount.of(model) == ("a1", "ada", "E1", False, signed_in, ("x",))
    assert CompactAccount.of(model, ("y", "z"), "E9") == ("a1", "ada", "E9", False, signed_in, ("y", "z"))


def test_compact_roster_correlates_as_the_models() -> None:
    """Another target's accounts are matched to the compact roster as to the validated one (names, e-mail)."""
    employees, accounts, _ = generated(300)
    strays = [Account(id=f"t-{i}", user_name=f"ada.l{i}", employee_id="") for i in range(0, 300, 7)]
    steps: list[CorrelationStep] = ["employee_id", "email", "user_name"]
    full = correlate(accounts + strays, employees.values(), steps, POLICY.naming)
    compact = correlate(
        accounts + strays,
        [CompactEmployee.of(e) for e in employees.values()],
        steps,
        POLICY.naming,
    )
    assert compact == full
    assert {c.situation.value for c in full.accounts} >= {"linked", "unlinked", "unmatched"}


class Roster:
    def __init__(self, employees: list[Employee]) -> None:
        self.employees = employees

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        for employee in self.employees:
            yield employee
        yield InvalidRecordError("bad row", source="roster")


class Directory:
    def __init__(self, accounts: list[Account], groups: dict[str, list[str]]) -> None:
        self.accounts = accounts
        self.groups = groups

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        for start in range(0, len(self.accounts), 2):
            page = self.accounts[start : start + 2]  # fresh strings, as a connector's
            yield [a.model_copy(update={"employee_id": "".join(list(a.employee_id))}) for a in page]

    async def list_groups(self) -> list[Group]:
        return [Group(id=f"g-{n}", name=n, member_ids=frozenset(m)) for n, m in self.groups.items()]


def account(eid: str, *groups: str) -> Account:
    return Account(id=f"acc-{eid}", user_name=f"u.{eid}", employee_id=eid, groups=frozenset(groups))


async def test_inventory_holds_compact_records_with_the_group_lists_memberships() -> None:
    staff = [
        Employee(employee_id=e, first_name="A", last_name="B", status=EmployeeStatus.ACTIVE)
        for e in ("E1", "E2", "E3")
    ]
    accounts = [account("E1", "stale"), account("E2"), account("E3"), account("X9", "stale")]
    groups = {"all-staff": ["acc-E1", "acc-E2", "acc-X9", "acc-gone"], "sales": ["acc-E1", "acc-E2"]}
    inventory = await collect_inventory(Roster(staff), Directory(accounts, groups))

    assert inventory.invalid_records == 1
    assert inventory.memberships == 6  # every member the group lists name, as before
    assert all(isinstance(e, CompactEmployee) for e in inventory.employees.values())
    held = {a.id: a for a in inventory.accounts}
    assert all(isinstance(a, CompactAccount) for a in inventory.accounts)
    # the group lists replace what the user pages carried; an account in no group holds none
    assert {a: set(h.groups) for a, h in held.items()} == {
        "acc-E1": {"all-staff", "sales"},
        "acc-E2": {"all-staff", "sales"},
        "acc-E3": set(),
        "acc-X9": {"all-staff"},
    }
    # shared, not copied: one tuple for the same groups, the roster's employee id string
    assert held["acc-E1"].groups is held["acc-E2"].groups
    assert held["acc-E1"].employee_id is inventory.employees["E1"].employee_id
    assert held["acc-X9"].employee_id == "X9"
    # its repr is counts (never the roster: names, and gigabytes at scale)
    assert repr(inventory) == "Inventory(3 employees, 4 accounts, 6 memberships, 1 invalid records)"


async def test_inventory_keeps_the_pages_groups_without_group_lists() -> None:
    accounts = [account("E1", "sales", "all-staff"), account("E2")]
    inventory = await collect_inventory(Roster([]), Directory(accounts, {}))
    assert inventory.memberships == 2
    assert {a.id: set(a.groups) for a in inventory.accounts} == {
        "acc-E1": {"sales", "all-staff"},
        "acc-E2": set(),
    }


def test_review_groups_are_the_managed_groups_and_both_sides_of_each_conflict() -> None:
    assert review_groups(POLICY) == POLICY.managed_groups | {"payments-create"}
    assert "payments-create" not in POLICY.managed_groups
    assert review_groups(Policy()) == frozenset()


async def test_an_inventory_of_the_judged_groups_gives_the_same_findings() -> None:
    """Memberships of groups no finding reads (granted by hand) are counted, not held; the findings are those
    of the whole inventory, with the group lists and with the user pages' groups alike."""
    employees, accounts, approvals = generated(3_000)
    expected = find(employees, accounts, approvals, NOW, POLICY)
    lists: dict[str, list[str]] = {}
    for a in accounts:
        for group in a.groups:
            lists.setdefault(group, []).append(a.id)
    judged = review_groups(POLICY)
    staff = list(employees.values())
    for directory in (Directory(accounts, lists), Directory(accounts, {})):
        inventory = await collect_inventory(Roster(staff), directory, judged=judged)
        assert find(inventory.employees, inventory.accounts, approvals, NOW, POLICY) == expected
        assert inventory.memberships == sum(len(a.groups) for a in accounts)
        assert {a.id: set(a.groups) for a in inventory.accounts} == {
            a.id: a.groups & judged for a in accounts
        }
        assert any(set(a.groups) - judged for a in accounts)  # app-1, app-2: there were some to leave out


def test_collector_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with collector_paused():
            raise RuntimeError("connector failed")
    except RuntimeError:
        pass
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # paused by someone else: left paused
    finally:
        gc.enable()


def test_what_is_made_while_paused_joins_the_oldest_generation() -> None:
    """So the first allocations afterwards do not set off a collection that traverses it all at once, as
    they would if it had stayed in the youngest generation (counted there past the threshold)."""
    collections: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    many = 3 * gc.get_threshold()[0] + 1_000
    gc.callbacks.append(record)
    try:
        with collector_paused():
            made = [[i] for i in range(many)]
        after = [[i] for i in range(100)]
    finally:
        gc.callbacks.remove(record)
    assert collections == []
    assert len(made) == many and len(after) == 100


def test_the_pause_leaves_what_another_froze_frozen() -> None:
    kept = [[1], [2]]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with collector_paused():
            made = [[i] for i in range(1_000)]
        # still frozen (unfreeze would leave none), and nothing of ours added; frozen objects freed meanwhile
        # leave the count, so it may fall
        assert 0 < gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
    assert kept and made


async def test_another_targets_findings_from_the_compact_roster_are_the_models() -> None:
    """A target's accounts are correlated with the compact roster and judged as with the validated models;
    they join the inventory compactly."""
    policy = Policy.model_validate(
        {
            "birthright": [{"groups": ["all-staff"]}],
            "targets": {
                "github": {
                    "birthright": [{"match": {"department": "Engineering"}, "groups": ["eng-repos"]}],
                    "correlation": ["employee_id", "email"],
                }
            },
        }
    )
    staff = [
        Employee(
            employee_id=eid,
            first_name="A",
            last_name=eid,
            department=dept,
            work_email=email,
            status=EmployeeStatus.ACTIVE,
        )
        for eid, dept, email in [
            ("E1", "Engineering", "e1@example.com"),
            ("E2", "Sales", "shared@example.com"),
            ("E3", "Sales", "shared@example.com"),
        ]
    ]
    theirs = [
        Account(id="g1", user_name="gh-e1", employee_id="E1"),
        Account(id="g2", user_name="gh-e2", employee_id="E2"),  # a Sales employee in eng-repos
        Account(id="g3", user_name="gh-shared", employee_id="", email="shared@example.com"),  # disputed
        Account(id="g4", user_name="gh-nobody", employee_id=""),  # orphan
    ]
    groups = {"eng-repos": ["g1", "g2", "g4"]}
    inventory = await collect_inventory(Roster(staff), Directory([], {}))

    found = await _target_findings("github", Directory(theirs, groups), inventory, {}, NOW, policy)

    with_groups = [
        a.model_copy(update={"groups": frozenset(n for n, m in groups.items() if a.id in m)}) for a in theirs
    ]
    target = policy.targets["github"]
    correlation = correlate(with_groups, staff, target.correlation, policy.naming)
    view = target_policy(policy, target)
    expected = find(
        {e.employee_id: e for e in staff}, [], {}, NOW, view, target="github", correlation=correlation
    )
    assert found == expected
    assert {(f.kind.value, f.account_id) for f in found} == {
        ("outside_policy", "g2"),
        ("disputed", "g3"),
        ("orphan", "g4"),
    }
    assert all(f.target == "github" for f in found)
    assert [a.id for a in inventory.accounts] == ["g1", "g2", "g3", "g4"]
    assert all(isinstance(a, CompactAccount) for a in inventory.accounts)
    assert inventory.memberships == 3


def test_a_review_runs_repr_is_counts() -> None:
    """``tenure review run`` returns its run from ``asyncio.run``, which formats the repr: counts, not findings."""
    employees, accounts, approvals = generated(200)
    run = ReviewRun(findings=find(employees, accounts, approvals, NOW, POLICY), accounts=len(accounts))
    assert repr(run) == (
        f"ReviewRun(campaign None, 200 accounts, {len(run.findings)} findings, 0 auto-remediated, "
        "0 for review, dry run False)"
    )
