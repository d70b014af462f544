"""Past one machine, by simulation: a night of 1,000,000 employees × 100 targets on N workers (docs/SCALE.md).

A model, not a measurement of that scale: it combines per-action costs measured on this machine (Tenure CPU
per applied action and per unchanged employee, audit row size) with the targets' documented rate limits and
a request latency, and prints, per number of workers, the night's wall time, where it goes, the Prefect load
and the audit database's growth. Every input is a flag, so a newer measurement replaces a default:

* ``--cpu-ms-per-action`` / ``--cpu-ms-per-unchanged``: Tenure process CPU (user + system). Defaults: the
  upper ends of bench/RESULTS.md "(n)" (0.5 ms per applied action: 0.30–0.33 ms into the fast peer, 0.55 ms
  into scim2-server; 0.3 ms per unchanged employee, whole process with its start-up); the issue's first
  figures were 11 ms and 1.2 ms.
* ``--audit-bytes-per-row``: on-disk bytes per audit row, indexes included. Default: measured here with
  ``--measure-audit 5000`` against PostgreSQL (see bench/RESULTS.md, "(h)").
* Target mix and limits (writes per second a target accepts org-wide), cited in docs/SCALE.md: Microsoft
  Graph 3,000 writes per 150 s per app and tenant, Okta 600 per minute on ``/api/v1/users`` (and 600 on
  ``/api/v1/users/{id}``), Slack SCIM 180 user writes per minute (600 writes/min org-wide).

No assertions: figures only.

    .venv/bin/python bench/scale_model.py [--employees 1000000] [--targets 100] [--workers 4,8,16,32]
    .venv/bin/python bench/scale_model.py --measure-audit 5000        # bytes per audit row, PostgreSQL
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_ADMIN_URL = os.environ.get("TENURE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")


@dataclass(frozen=True)
class TargetKind:
    """A kind of target: how many of the 100, its page size and the writes per second it accepts."""

    name: str
    share: float  # of the targets
    page_size: int  # users per read request
    writes_per_second: float  # the documented org-wide write limit
    limit_source: str


TARGETS = (
    TargetKind("Microsoft Graph (Entra ID)", 0.10, 999, 3000 / 150, "3,000 writes / 150 s per app+tenant"),
    TargetKind("Okta", 0.10, 200, 600 / 60, "600 / min on /api/v1/users and /api/v1/users/{id}"),
    TargetKind("Slack SCIM", 0.10, 1000, 180 / 60, "180 user writes / min (600 writes / min org-wide)"),
    TargetKind("other SCIM apps", 0.70, 200, 600 / 60, "assumed 600 writes / min (vendor-specific)"),
)


@dataclass(frozen=True)
class Night:
    employees: int
    targets: int
    drift: float  # share of employees with a change tonight
    writes_per_change: float  # IdP write requests per changed employee per target (bulk memberships)
    actions_per_change: float  # applied actions (ledger + audit rows) per changed employee per target
    latency: float  # seconds per request
    concurrency: int  # requests in flight per target
    cpu_ms_per_action: float
    cpu_ms_per_unchanged: float
    audit_bytes_per_row: float
    cores_per_worker: int
    runs_per_worker: int
    partitions: int
    batch_size: int


def per_target(night: Night, kind: TargetKind, full: bool) -> tuple[float, float, float]:
    """Seconds to read, seconds to write tonight's changes, and the requests, for one target. A full sync
    reads every user page in order (each partition reads them all and keeps its share); an incremental one
    looks up each changed employee (one read each, ``concurrency`` in flight)."""
    changed = night.employees * night.drift
    if full:
        pages = night.partitions * math.ceil(night.employees / kind.page_size)
        reads, read_s = pages, math.ceil(night.employees / kind.page_size) * night.latency
    else:
        reads, read_s = changed, changed * night.latency / night.concurrency
    writes = changed * night.writes_per_change
    write_s = max(writes * night.latency / night.concurrency, writes / kind.writes_per_second)
    return read_s, write_s, reads + writes


def simulate(night: Night, workers: int, full: bool) -> dict[str, float]:
    """The night on ``workers`` workers. One sync flow run per target and partition; a worker runs
    ``runs_per_worker`` of them at a time. The wall time is the largest of three bounds: Tenure's CPU spread
    over all cores, the slowest target (its rate limit holds however many partitions share it), and the
    flow-run slots (every target's time packed onto workers × runs per worker)."""
    changed = night.employees * night.drift
    actions = changed * night.actions_per_change * night.targets
    unchanged = night.employees * (1 - night.drift) * night.targets if full else 0.0
    cpu_s = (actions * night.cpu_ms_per_action + unchanged * night.cpu_ms_per_unchanged) / 1000
    target_times: list[float] = []
    requests = 0.0
    for kind in TARGETS:
        count = round(night.targets * kind.share)
        read_s, write_s, calls = per_target(night, kind, full)
        # partitions of one target run side by side: reads in parallel, writes share the target's limit
        target_times += [read_s + write_s] * count
        requests += calls * count
    cpu_wall = cpu_s / (workers * night.cores_per_worker)
    slowest = max(target_times)
    slots = sum(target_times) / (workers * night.runs_per_worker)
    return {
        "wall_s": max(cpu_wall, slowest, slots),
        "cpu_s": cpu_s,
        "cpu_wall_s": cpu_wall,
        "slowest_target_s": slowest,
        "slots_s": slots,
        "requests": requests,
        "audit_rows": actions,
        "audit_bytes": actions * night.audit_bytes_per_row,
        "flow_runs": night.targets * night.partitions,
        "task_runs": math.ceil(changed / night.batch_size) * night.targets,
    }


def measure_audit(rows: int, admin_url: str) -> float:
    """Write ``rows`` typical applied-action audit rows through models.audit into a fresh PostgreSQL database
    and return its on-disk bytes per row (table, TOAST and indexes)."""
    import psycopg

    from models.audit import AuditEventBase, Outcome, record_many
    from models.db import reset_engines, session_scope

    name = f"tenure_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{admin_url.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    try:
        run = str(uuid.uuid4())
        for start in range(0, rows, 500):
            events = [
                AuditEventBase(
                    actor=f"flow-run:{run}",
                    action="idp.membership.add",
                    target_system="scim",
                    target_id=f"{uuid.uuid4()}",
                    employee_id=f"E{i:07d}",
                    outcome=Outcome.APPLIED,
                    reason="birthright: department Engineering",
                    details={"group": "engineering", "user_name": f"user{i}"},
                    correlation_id=run,
                    idempotency_key=f"{run}:{i}",
                )
                for i in range(start, min(rows, start + 500))
            ]
            with session_scope(url) as session:
                record_many(session=session, events=events)
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as db:
            db.execute("VACUUM ANALYZE audit_event")
            size = db.execute("SELECT pg_total_relation_size('audit_event')").fetchone()
        assert size is not None
        return float(size[0]) / rows
    finally:
        reset_engines()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--workers", default="4,8,16,32", help="comma-separated worker counts")
    parser.add_argument("--cores-per-worker", type=int, default=2)
    parser.add_argument("--drift", type=float, default=0.01, help="share of employees changed per night")
    parser.add_argument(
        "--writes-per-change", type=float, default=1.5, help="IdP writes per change and target"
    )
    parser.add_argument("--actions-per-change", type=float, default=3.0, help="applied actions per change")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per request")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per target")
    parser.add_argument("--cpu-ms-per-action", type=float, default=0.5)
    parser.add_argument("--cpu-ms-per-unchanged", type=float, default=0.3)
    parser.add_argument("--audit-bytes-per-row", type=float, default=740.0)
    parser.add_argument("--runs-per-worker", type=int, default=4, help="flow runs at a time (worker --limit)")
    parser.add_argument("--partitions", type=int, default=4, help="sync partitions per target")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--measure-audit", type=int, default=0, metavar="ROWS", help="measure bytes per row")
    args = parser.parse_args()
    if args.measure_audit:
        per_row = measure_audit(args.measure_audit, PG_ADMIN_URL)
        print(
            f"audit rows on PostgreSQL: {per_row:.0f} bytes per row ({args.measure_audit} rows, indexes included)"
        )
        return
    night = Night(
        employees=args.employees,
        targets=args.targets,
        drift=args.drift,
        writes_per_change=args.writes_per_change,
        actions_per_change=args.actions_per_change,
        latency=args.latency,
        concurrency=args.concurrency,
        cpu_ms_per_action=args.cpu_ms_per_action,
        cpu_ms_per_unchanged=args.cpu_ms_per_unchanged,
        audit_bytes_per_row=args.audit_bytes_per_row,
        cores_per_worker=args.cores_per_worker,
        runs_per_worker=args.runs_per_worker,
        partitions=args.partitions,
        batch_size=args.batch_size,
    )
    print(
        f"{night.employees:,} employees × {night.targets} targets, {night.drift:.1%} changed, "
        f"{night.writes_per_change:g} writes and {night.actions_per_change:g} actions per change and target, "
        f"{night.latency * 1000:.0f} ms latency × {night.concurrency} in flight; Tenure CPU "
        f"{night.cpu_ms_per_action:g} ms per action, {night.cpu_ms_per_unchanged:g} ms per unchanged employee"
    )
    for full in (False, True):
        mode = "full sync (every user page read, every employee planned)" if full else "incremental sync"
        print(f"\n## {mode}\n")
        print("per target (one of each kind): read | write tonight's changes (rate-limited) | requests")
        for kind in TARGETS:
            read_s, write_s, calls = per_target(night, kind, full)
            print(
                f"  {kind.name:28} ×{round(night.targets * kind.share):3}: {_duration(read_s):>9} | "
                f"{_duration(write_s):>9} ({kind.limit_source}) | {calls:,.0f}"
            )
        print(
            "\n| workers | night wall | Tenure CPU (all) | CPU bound | slowest target | slots bound | requests "
            "| flow runs | task runs | audit rows | audit growth / night | / year |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for workers in (int(w) for w in args.workers.split(",")):
            r = simulate(night, workers, full)
            print(
                f"| {workers} | **{_duration(r['wall_s'])}** | {r['cpu_s'] / 3600:,.1f} h | "
                f"{_duration(r['cpu_wall_s'])} | {_duration(r['slowest_target_s'])} | {_duration(r['slots_s'])} | "
                f"{r['requests']:,.0f} | {r['flow_runs']:,.0f} | {r['task_runs']:,.0f} | {r['audit_rows']:,.0f} | "
                f"{r['audit_bytes'] / 2**30:.2f} GiB | {r['audit_bytes'] * 365 / 2**40:.2f} TiB |"
            )


if __name__ == "__main__":
    main()
