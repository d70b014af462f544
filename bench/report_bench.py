"""``tenure report``'s cost on a large audit trail: N employees hired and N/5 leavers over the last 12 weeks, each
with its enable/disable audit row (written through the one door in batches, on a clock moved by hand), then
:func:`engine.report.build_report` for 12 weeks and the HTML page; prints wall and CPU (user+sys) per phase.

    .venv/bin/python bench/report_bench.py [--people 20000] [--database sqlite:////tmp/report-bench.db]
    /usr/bin/time -v .venv/bin/python bench/report_bench.py             # whole-process figures
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models.audit  # noqa: E402
from engine.applier import Applier  # noqa: E402
from engine.auditor import Auditor  # noqa: E402
from engine.report import build_report  # noqa: E402
from lifecycle.policy import Policy  # noqa: E402
from models.audit import Outcome  # noqa: E402
from models.domain import Employee, EmployeeStatus  # noqa: E402
from tenure.report import render_html  # noqa: E402

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
POLICY = Policy.model_validate({"default_timezone": "UTC"})


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--database", default="sqlite:////tmp/report-bench.db")
    args = parser.parse_args()
    if args.database.startswith("sqlite:////"):
        Path(args.database.removeprefix("sqlite:///")).unlink(missing_ok=True)
    rng = random.Random(5)
    moment = [NOW]

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return moment[0]

    models.audit.datetime = Clock  # type: ignore[misc]  # audit rows stamped at the moment they stand for
    applier = Applier(auditor=Auditor(args.database, actor="bench"))
    employees: dict[str, Employee] = {}
    wall, cpu = time.perf_counter(), _cpu()
    for n in range(args.people):
        hired = (NOW - timedelta(days=rng.randrange(84))).date()
        leaves = n % 5 == 0
        employee = Employee(
            employee_id=f"E{n:06d}",
            first_name="B",
            last_name=str(n),
            status=EmployeeStatus.TERMINATED if leaves else EmployeeStatus.ACTIVE,
            hire_date=hired if not leaves else hired - timedelta(days=400),
            termination_date=hired if leaves else None,
        )
        employees[employee.employee_id] = employee
        start = datetime.combine(hired, clock_time(18 if leaves else 0), tzinfo=UTC)
        moment[0] = start + timedelta(hours=rng.uniform(-24, 12))
        applier.note(
            action="idp.user.disable" if leaves else "idp.user.enable",
            target_system="scim",
            employee_id=employee.employee_id,
            outcome=Outcome.APPLIED,
        )
    print(
        f"seeded {args.people} audit rows: wall {time.perf_counter() - wall:.1f} s, CPU {_cpu() - cpu:.1f} s"
    )
    models.audit.datetime = datetime  # type: ignore[misc]
    wall, cpu = time.perf_counter(), _cpu()
    report = build_report(
        database_url=args.database,
        policy=POLICY,
        employees=employees,
        since=NOW - timedelta(weeks=12),
        now=NOW,
    )
    page = render_html(report)
    print(
        f"build_report (12 weeks) + page ({len(page)} bytes): wall {time.perf_counter() - wall:.2f} s, "
        f"CPU {_cpu() - cpu:.2f} s; hires measured {sum(w.access.count for w in report.weeks)}, "
        f"leavers {sum(w.revoke.count for w in report.weeks)}"
    )


if __name__ == "__main__":
    main()
