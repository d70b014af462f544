"""Access review findings at scale: 10,000 and 50,000 accounts with 200,000 memberships, in memory.

Pure analysis (lifecycle.review.find), no API. For each size it prints the time of the analysis, the peak
memory the analysis allocated (tracemalloc, measured in a second run because tracing slows Python down),
the process's peak RSS (inputs included) and the findings by kind. No assertions: these are figures.

    .venv/bin/python bench/review_bench.py [--sizes 10000,50000] [--memberships 200000]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lifecycle.policy import Policy  # noqa: E402
from lifecycle.review import count_by_kind, find  # noqa: E402
from models.domain import Account, Employee, EmployeeStatus  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Marketing", "IT", "People")
POLICY = Policy.model_validate(
    {
        "birthright": [
            {"groups": ["all-staff"]},
            *({"match": {"department": d}, "groups": [d.lower(), f"{d.lower()}-tools"]} for d in DEPARTMENTS),
            {"match": {"location": "Berlin"}, "groups": ["office-berlin"]},
        ],
        "privileged_groups": [{"name": "prod-admin", "recertify_days": 90}, {"name": "payments-approve"}],
        "review": {"dormant_days": 90, "sod_conflicts": [["payments-approve", "payments-create"]]},
    }
)
EXTRA_GROUPS = [f"app-{i:03d}" for i in range(300)] + ["payments-create", "prod-admin", "payments-approve"]


def generate(
    accounts: int, memberships: int, seed: int = 1
) -> tuple[dict[str, Employee], list[Account], dict]:
    """Employees, accounts (memberships spread evenly) and approvals with a few % of every problem."""
    rng = random.Random(seed)
    employees: dict[str, Employee] = {}
    result: list[Account] = []
    approvals: dict[str, dict[str, datetime]] = {}
    per_account = max(1, memberships // accounts)
    managed = sorted(POLICY.managed_groups)
    for i in range(accounts):
        eid = f"E{i:06d}"
        department = DEPARTMENTS[i % len(DEPARTMENTS)]
        roll = rng.random()
        status = EmployeeStatus.TERMINATED if roll < 0.03 else EmployeeStatus.ACTIVE
        if roll > 0.02:  # 2 % orphans: no HR record
            employees[eid] = Employee(
                employee_id=eid,
                first_name="F",
                last_name="L",
                department=department,
                location="Berlin" if i % 5 == 0 else "Remote",
                status=status,
                manager_id=f"E{i // 10:06d}",
                hire_date=date(2020, 1, 1),
                termination_date=date(2026, 1, 1) if status is EmployeeStatus.TERMINATED else None,
            )
        groups = {"all-staff", department.lower(), f"{department.lower()}-tools"}
        while len(groups) < per_account:
            groups.add(rng.choice(EXTRA_GROUPS) if rng.random() < 0.97 else rng.choice(managed))
        if "prod-admin" in groups and rng.random() < 0.7:
            approvals.setdefault(eid, {})["prod-admin"] = NOW - timedelta(days=rng.randint(1, 200))
        result.append(
            Account(
                id=f"acc-{i}",
                user_name=f"user{i}",
                employee_id=eid,
                active=True,
                groups=frozenset(groups),
                last_sign_in=NOW - timedelta(days=rng.randint(0, 200)) if rng.random() < 0.5 else None,
            )
        )
    return employees, result, approvals


def measure(accounts: int, memberships: int) -> None:
    employees, account_list, approvals = generate(accounts, memberships)
    held = sum(len(a.groups) for a in account_list)
    gc.collect()
    started = time.perf_counter()
    findings = find(employees, account_list, approvals, NOW, POLICY)
    elapsed = time.perf_counter() - started
    del findings
    gc.collect()
    tracemalloc.start()
    findings = find(employees, account_list, approvals, NOW, POLICY)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    counts = ", ".join(f"{k} {v}" for k, v in count_by_kind(findings).items())
    print(
        f"{accounts:>7} accounts, {held:>7} memberships: {elapsed:6.2f} s, analysis peak "
        f"{peak / 2**20:6.1f} MiB, process peak RSS {rss_mib:6.1f} MiB | {len(findings)} findings ({counts})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000")
    parser.add_argument("--memberships", type=int, default=200_000)
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.memberships)


if __name__ == "__main__":
    main()
