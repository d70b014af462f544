"""Microsoft Graph call budget of whole syncs (the sync engine, not the connector alone), against the Graph fake.

A roster of N employees (default 5,000) in a CSV export; the fake tenant holds every account in line with the
policy (the planner's own creates and birthright groups); then 1% of the employees move department in the HRIS:

1. ``full`` sync, first run (no copy of the directory yet): user pages (bound ⌈N/999⌉), group pages, the delta
   link, and the writes — counted by HTTP call: ``$batch`` calls vs the bound ⌈changes/20⌉, and other writes;
2. the next night, an incremental sync with a hand edit in the directory: only ``/users/delta``,
   ``/groups/delta`` and the ``$batch`` re-reads of changed users;
3. a quiet night: the delta pages only.

Prints the figures and the process CPU (user + sys) and wall time of each run; no assertions
(tests/contract/test_sync_entra.py asserts the budget at 1,100). The fake runs in-process behind respx, so the
CPU figure is Tenure and the fake together.

    .venv/bin/python bench/graph_sync_bench.py [--employees 5000] [--drift 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import respx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.hris.csv_export import CSVExportHRIS  # noqa: E402
from connectors.idp.entra import EntraIdentityProvider  # noqa: E402
from engine.auditor import Auditor  # noqa: E402
from engine.sync import SyncEngine, SyncOptions, SyncReport  # noqa: E402
from lifecycle.policy import Policy  # noqa: E402
from tenure.compose import build_identity_provider  # noqa: E402
from tenure.settings import IdPSettings  # noqa: E402
from tests.support.graph_fake import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeGraph  # noqa: E402
from tests.support.graph_seed import seed_in_line  # noqa: E402
from tests.support.hris_data import DEPARTMENTS, staff_in_three_departments, write_csv  # noqa: E402

GROUPS = ("all-staff", "engineering", "sales")
POLICY = Policy.model_validate(
    {
        "naming": {"username": "{given}.{last}", "email_domain": "example.com"},
        "birthright": [
            {"groups": ["all-staff"]},
            {"match": {"department": "Engineering"}, "groups": ["engineering"]},
            {"match": {"department": "Sales"}, "groups": ["sales"]},
        ],
        "leaver": {"timing": "at_termination", "remove_groups": True},
        "brake": {"max_disable_percent": 100},
        "adopt_before": "2000-01-01",  # the seeded directory is Tenure's own earlier work, not staff to adopt
    }
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def roster(count: int) -> list[dict[str, str]]:
    today = datetime.now(UTC).date()
    return staff_in_three_departments(count, seed=13, today=today)


async def one_sync(
    graph: FakeGraph, idp: EntraIdentityProvider, csv_path: Path, url: str, label: str, **options: bool
) -> SyncReport:
    mark, wall, used = len(graph.http_calls), time.perf_counter(), cpu()
    async with SyncEngine(
        hris=CSVExportHRIS(csv_path),
        idp=idp,
        ticketing=None,
        policy=POLICY,
        auditor=Auditor(url, actor="bench"),
        options=SyncOptions(**options),
    ) as engine:
        report = await engine.run()
    wall, used = time.perf_counter() - wall, cpu() - used
    calls = [c for c in graph.http_calls[mark:] if c[1] != "token"]
    kinds = Counter(
        "GET users (pages)"
        if c == ("GET", "users")
        else "GET users/delta"
        if c == ("GET", "users/delta")
        else "GET groups/delta"
        if c == ("GET", "groups/delta")
        else "POST $batch"
        if c == ("POST", "$batch")
        else f"{c[0]} other"
        for c in calls
    )
    print(
        f"{label}: {report.directory_read} read, {report.employees_seen} employees, {report.planned} planned, "
        f"{report.changes} changes, {report.drifted} drifted, ok={report.ok}; {len(calls)} Graph calls: "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + f"; bound for the writes ⌈{report.changes}/20⌉ = {math.ceil(report.changes / 20)} $batch; "
        f"wall {wall:.2f} s, CPU {used:.2f} s"
    )
    return report


async def run(employees: int, drift: float) -> None:
    graph = FakeGraph()
    with tempfile.TemporaryDirectory() as tmp, respx.mock(assert_all_called=False) as router:
        router.route(host="graph.microsoft.com").mock(side_effect=graph.handle)
        router.route(host="login.microsoftonline.com").mock(side_effect=graph.handle)
        csv_path, url = Path(tmp) / "hris.csv", f"sqlite:///{tmp}/tenure.db"
        rows = roster(employees)
        write_csv(csv_path, rows)
        idp = build_identity_provider(
            IdPSettings(
                kind="entra",
                tenant_id=TENANT_ID,
                client_id=CLIENT_ID,
                client_secret=SecretStr(CLIENT_SECRET),
                requests_per_second=10_000,
            )
        )
        assert isinstance(idp, EntraIdentityProvider)
        async with idp:
            _, user_ids = await seed_in_line(graph, idp, csv_path, POLICY, GROUPS)
            movers = [r for r in rows if r["department"] == "Engineering"][: max(1, int(employees * drift))]
            for row in movers:
                row.update(department="Sales", title=DEPARTMENTS["Sales"][0])
            write_csv(csv_path, rows)
            stamp = os.stat(csv_path).st_mtime + 5
            os.utime(csv_path, (stamp, stamp))
            print(
                f"roster {employees}, {len(movers)} movers in the HRIS; user pages bound ⌈{employees}/999⌉ = "
                f"{math.ceil(employees / 999)}"
            )
            await one_sync(graph, idp, csv_path, url, "full sync (first run)", full=True)
            edited = user_ids[rows[2]["employee_id"]]
            graph.users[edited]["jobTitle"] = "Hand-edited"
            graph._changed("users", edited, {"jobTitle"})
            await one_sync(graph, idp, csv_path, url, "next night (incremental)")
            await one_sync(graph, idp, csv_path, url, "night after")
            await one_sync(graph, idp, csv_path, url, "quiet night")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--employees", type=int, default=5000)
    parser.add_argument("--drift", type=float, default=0.01)
    args = parser.parse_args()
    asyncio.run(run(args.employees, args.drift))


if __name__ == "__main__":
    main()
