"""Benchmark: `tenure sync --full --dry-run` on a CSV export with planted defects, against a real scim2-server.

    .venv/bin/python bench/csv_defects_bench.py [N] [--share 0.05] [--seed 7]    # N = 50,000 by default

1. Generates N fake active employees (``tests.support.hris_data``) and breaks ``share`` of the rows
   (``plant_defects``): one row written in Latin-1 inside the UTF-8 file, one 10 MB title, and the rest cycling
   through missing ids and names, dates that are not dates (2026-02-30 among them), unknown status words,
   duplicate ids, terminations before the hire date and manager loops.
2. Runs the real CLI (``python -m tenure.cli sync --full --dry-run``) as a child process against a tenant of a
   local scim2-server (127.0.0.1) holding the policy's groups and no user, with a fresh SQLite audit database.
3. Prints wall time, the child's CPU time (user + system), the exit code (must be 1: invalid rows were
   skipped), the good employees planned (must be N - defects) and the ``hris.record.invalid`` audit rows
   (each broken line exactly once, with its line number). Exits 1 if any of those checks fails.

No assertion on time. The server is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from connectors.errors import InvalidRecordError  # noqa: E402
from connectors.hris.csv_export import CSVExportHRIS  # noqa: E402
from lifecycle.policy import load_policy  # noqa: E402
from models.audit import AuditEvent  # noqa: E402
from models.db import session_scope  # noqa: E402
from tests.support.hris_data import all_active, fake_people, plant_defects, write_csv  # noqa: E402
from tests.support.scim_server import create_group, running_scim_server  # noqa: E402

SUMMARY = re.compile(r"(\d+) employees seen, (\d+) planned")
DURATION = re.compile(r"duration \(s\)\s*│\s*([\d.]+)")


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(count: int, share: float, seed: int) -> int:
    today = datetime.now(UTC).date()
    with tempfile.TemporaryDirectory(prefix="tenure-defects-") as tmp, running_scim_server() as server:
        tmp_path = Path(tmp)
        started = time.perf_counter()
        rows = fake_people(count, seed=seed, today=today)
        all_active(rows, today=today)
        defects = plant_defects(rows, count=round(count * share), seed=seed)
        latin1 = [line for line, kind in defects.items() if kind == "latin1"]
        csv_path = write_csv(tmp_path / "hris.csv", rows, latin1_lines=latin1)
        print(
            f"generated {count} rows, {len(defects)} broken ({dict(sorted(Counter(defects.values()).items()))}), "
            f"{csv_path.stat().st_size / 2**20:.1f} MiB, in {time.perf_counter() - started:.1f} s"
        )
        parse_started = time.perf_counter()
        items = CSVExportHRIS(csv_path).read()
        parsed = time.perf_counter() - parse_started
        invalid_read = sum(isinstance(i, InvalidRecordError) for i in items)
        print(f"CSV connector alone: {len(items)} records ({invalid_read} invalid) read in {parsed:.1f} s")
        database_url = f"sqlite:///{tmp_path / 'audit.db'}"
        tenant = server.tenant_url("defects")
        policy_file = ROOT / "examples" / "policy.yaml"
        for group in sorted(
            load_policy(policy_file).managed_groups
        ):  # the preflight wants every policy group
            asyncio.run(create_group(tenant, server.token, group))
        env = {
            **os.environ,
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TENURE_DATABASE_URL": database_url,
            "TENURE_POLICY_FILE": str(policy_file),
            "TENURE_IDP__KIND": "scim",
            "TENURE_IDP__BASE_URL": tenant,
            "TENURE_IDP__TOKEN": server.token,
            "TENURE_IDP__REQUESTS_PER_SECOND": "10000",
            "TENURE_HRIS__KIND": "csv",
            "TENURE_HRIS__PATH": str(csv_path),
            "TENURE_TICKETING__KIND": "none",
            "COLUMNS": "200",
        }
        cpu_before, wall_before = child_cpu_seconds(), time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "tenure.cli", "sync", "--full", "--dry-run"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall, cpu = time.perf_counter() - wall_before, child_cpu_seconds() - cpu_before
        summary = SUMMARY.search(" ".join(result.stdout.split()))
        with session_scope(database_url) as session:
            audited = session.exec(select(AuditEvent).where(AuditEvent.action == "hris.record.invalid")).all()
    lines = Counter(event.details.get("row") for event in audited)
    good = count - len(defects)
    seen, planned = (int(summary.group(1)), int(summary.group(2))) if summary else (-1, -1)
    once = lines == Counter(set(defects))
    print(f"\n== tenure sync --full --dry-run, {count} rows, {share:.0%} defects")
    print(f"   wall time            {wall:8.1f} s")
    print(f"   CPU time (child)     {cpu:8.1f} s   (user + system of the tenure process)")
    engine = DURATION.search(result.stdout)
    print(
        f"   engine run           {float(engine.group(1)) if engine else -1:8.1f} s   (the report's duration)"
    )
    print(f"   exit code            {result.returncode:8d}   (expected 1: invalid rows were skipped)")
    print(f"   employees seen       {seen:8d}")
    print(f"   good planned         {planned:8d}   (expected {good})")
    print(
        f"   hris.record.invalid  {len(audited):8d}   (expected {len(defects)}; each broken line once: {once})"
    )
    for event in sorted(audited, key=lambda e: e.details.get("row") or 0)[:3]:
        print(f"      row {event.details.get('row')}: {event.reason[:90]}")
    checks = result.returncode == 1 and planned == good and len(audited) == len(defects) and once
    if not checks:
        print("FAIL\n" + result.stdout[-3000:] + result.stderr[-3000:])
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=50_000, help="rows (default 50,000)")
    parser.add_argument("--share", type=float, default=0.05, help="share of broken rows (default 0.05)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.exit(main(args.count, args.share, args.seed))
