"""Access review findings at scale: generated accounts (5 memberships each unless told), in memory.

Pure analysis (lifecycle.review.find), no API. For each size it prints the wall and CPU time (user + system)
of the analysis, the process's RSS once the inputs are built, its peak RSS after the analysis (inputs
included) and the findings by kind; with ``--trace-memory`` also the peak the analysis itself allocated
(tracemalloc, in a second run because tracing slows Python down and adds its own memory). Run one size per
process for a clean peak RSS. No assertions: these are figures.

    .venv/bin/python bench/review_bench.py [--sizes 1000000] [--memberships N] [--trace-memory]
    /usr/bin/time -v .venv/bin/python bench/review_bench.py --sizes 1000000    # whole-process figures
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


def _rss_mib() -> float:
    """The process's current resident set size (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(accounts: int, memberships: int, trace_memory: bool) -> None:
    employees, account_list, approvals = generate(accounts, memberships)
    held = sum(len(a.groups) for a in account_list)
    gc.collect()
    inputs_mib = _rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    findings = find(employees, account_list, approvals, NOW, POLICY)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    traced = ""
    if trace_memory:
        del findings
        gc.collect()
        tracemalloc.start()
        findings = find(employees, account_list, approvals, NOW, POLICY)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = f", analysis allocated {peak / 2**20:.1f} MiB (tracemalloc)"
    counts = ", ".join(f"{k} {v}" for k, v in count_by_kind(findings).items())
    print(
        f"{accounts:>7} accounts, {held:>7} memberships: {elapsed:6.2f} s wall, {cpu:6.2f} s CPU; RSS with "
        f"the inputs {inputs_mib:6.1f} MiB, process peak RSS {peak_mib:6.1f} MiB{traced} | "
        f"{len(findings)} findings ({counts})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated account counts")
    parser.add_argument("--memberships", type=int, default=None, help="memberships in all (5 per account)")
    parser.add_argument("--trace-memory", action="store_true", help="also trace the analysis' allocations")
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        measure(size, args.memberships or 5 * size, args.trace_memory)


if __name__ == "__main__":
    main()
