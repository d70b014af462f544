"""Benchmark the sync engine at scale against a real scim2-server and a CSV HRIS.

    .venv/bin/python bench/sync_bench.py [N]          # N employees, 10,000 by default

1. Seeds N fake employees (``tests.support.hris_data``) into a CSV, and the accounts and group memberships the
   policy asks for into a fresh scim2-server, efficiently: users through SCIM Bulk (RFC 7644 §3.7, managers
   referenced by ``bulkId``), each group in one POST with all its members.
2. Applies 1% drift to the CSV (department and title changes, terminations, new joiners) and times a full
   sync: wall time, IdP calls made against the minimum (pages read + one write per change), peak RSS.
3. Re-runs the full sync without drift: writes must be 0 (the script exits 1 otherwise). Its Python heap peak
   is measured with tracemalloc (read + plan of every employee).

No assertion on time. Nothing outside 127.0.0.1 is contacted; the server is stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tenure.compose import build_identity_provider

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.hris.csv_export import CSVExportHRIS  # noqa: E402
from connectors.idp.scim import SCIMIdentityProvider, user_payload, user_resource  # noqa: E402
from engine.auditor import Auditor  # noqa: E402
from engine.sync import SyncEngine, SyncOptions, SyncReport  # noqa: E402
from lifecycle.actions import ActionKind  # noqa: E402
from lifecycle.policy import Policy, load_policy  # noqa: E402
from tenure.settings import IdPSettings  # noqa: E402
from tests.support.hris_data import DEPARTMENTS, fake_people, write_csv  # noqa: E402
from tests.support.scim_server import SCIMServer, running_scim_server  # noqa: E402

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def peak_rss_mib() -> float:
    """The process's resident-set high-water mark (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TimingTransport(httpx.AsyncHTTPTransport):
    """Adds up the time spent waiting for the server, per HTTP method (to tell our cost from the peer's)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = await super().handle_async_request(request)
        await response.aread()
        self.seconds[request.method] = self.seconds.get(request.method, 0.0) + time.perf_counter() - started
        return response


def make_idp(
    base_url: str, token: str, transport: httpx.AsyncBaseTransport | None = None
) -> SCIMIdentityProvider:
    return build_identity_provider(
        IdPSettings(
            base_url=base_url, token=SecretStr(token), requests_per_second=10_000, max_concurrency=16
        ),
        transport=transport,
    )


def engine(
    csv_path: Path, idp: SCIMIdentityProvider, policy: Policy, database_url: str, **options: Any
) -> SyncEngine:
    return SyncEngine(
        hris=CSVExportHRIS(csv_path),
        idp=idp,
        ticketing=None,
        policy=policy,
        auditor=Auditor(database_url, actor="bench"),
        options=SyncOptions(full=True, **options),
    )


async def seed_idp(
    server: SCIMServer, base_url: str, csv_path: Path, policy: Policy, database_url: str
) -> dict[str, int]:
    """Put the accounts and memberships the planner wants into the server: plan against the empty directory
    (a dry run, nothing written to it), then send the creates as Bulk requests and each group as one POST."""
    idp = make_idp(base_url, server.token)
    try:
        planner = engine(csv_path, idp, policy, database_url, dry_run=True)
        await planner.prepare()
    finally:
        await idp.aclose()
    works = [w for batch in planner.batches for w in batch]  # batches come wave by wave: managers first
    headers = {**server.headers(), "Content-Type": "application/scim+json"}
    ids: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=300) as client:
        config = (await client.get("ServiceProviderConfig")).json()
        bulk = config.get("bulk") or {}
        chunk = min(int(bulk.get("maxOperations") or 1000), 1000) if bulk.get("supported") else 0
        creates = [(w, a) for w in works for a in w.plan.of_kind(ActionKind.CREATE_ACCOUNT)]
        for start in range(0, len(creates), chunk or len(creates) or 1):
            part = creates[start : start + (chunk or len(creates))]
            in_part = {w.plan.employee_id for w, _ in part}
            operations = []
            for work, action in part:
                attributes = action.attributes
                manager = attributes.manager_id
                ref = ids.get(manager or "") or (f"bulkId:{manager}" if manager in in_part else None)
                data = user_payload(user_resource(attributes, manager_account_id=ref))
                operations.append(
                    {"method": "POST", "path": "/Users", "bulkId": work.plan.employee_id, "data": data}
                )
            if chunk:
                response = await client.post(
                    "Bulk", json={"schemas": [BULK_REQUEST], "Operations": operations}
                )
                response.raise_for_status()
                for outcome in response.json()["Operations"]:
                    if not str(outcome.get("status", "")).startswith("201"):
                        raise RuntimeError(f"bulk create failed: {outcome}")
                    ids[outcome["bulkId"]] = outcome["location"].rstrip("/").rsplit("/", 1)[-1]
            else:  # no Bulk: concurrent POSTs (managers first, thanks to the wave order)
                for op in operations:
                    manager = op["data"].get(ENTERPRISE_SCHEMA, {}).get("manager")
                    if manager and str(manager.get("value", "")).startswith("bulkId:"):
                        manager["value"] = ids[manager["value"].removeprefix("bulkId:")]
                    answer = (await client.post("Users", json=op["data"])).raise_for_status().json()
                    ids[op["bulkId"]] = answer["id"]
        for work in works:
            for action in work.plan.of_kind(ActionKind.ADD_MEMBERSHIP):
                members.setdefault(action.subject, []).append(ids[work.plan.employee_id])
        for group in sorted(policy.managed_groups):
            body = {
                "schemas": [GROUP_SCHEMA],
                "displayName": group,
                "members": [{"value": i} for i in members.get(group, [])],
            }
            (await client.post("Groups", json=body)).raise_for_status()
    return {"accounts": len(ids), "memberships": sum(len(m) for m in members.values()), "bulk_chunk": chunk}


def drift(rows: list[dict[str, str]], fraction: float, seed: int) -> dict[str, int]:
    """Change ``fraction`` of the employees in place: 40% change department, 30% title, 15% are terminated,
    and 15% as many new joiners are appended."""
    rng = random.Random(seed)
    today = datetime.now(UTC).date()
    count = max(1, round(len(rows) * fraction))
    active = [r for r in rows if r["status"] in ("active", "leave")]
    picked = rng.sample(active, min(count, len(active)))
    kinds = {"mover_department": 0, "mover_title": 0, "leaver": 0, "joiner": 0}
    for n, row in enumerate(picked):
        share = n / len(picked)
        if share < 0.40:
            department = rng.choice([d for d in DEPARTMENTS if d != row["department"]])
            row.update(department=department, title=rng.choice(DEPARTMENTS[department]))
            kinds["mover_department"] += 1
        elif share < 0.70:
            row["title"] = rng.choice(
                [t for t in DEPARTMENTS[row["department"]] if t != row["title"]] or ["Lead"]
            )
            kinds["mover_title"] += 1
        elif share < 0.85:
            row.update(status="terminated", termination_date=(today - timedelta(days=1)).isoformat())
            kinds["leaver"] += 1
        else:
            kinds["joiner"] += 1
    joiners = fake_people(kinds["joiner"], seed=seed + 1, today=today, id_prefix="J")
    for row in joiners:
        row.update(
            status="active",
            termination_date="",
            hire_date=(today - timedelta(days=1)).isoformat(),
            manager_id=rows[0]["employee_id"],
        )
    rows += joiners
    return kinds


def show(title: str, report: SyncReport) -> None:
    minimum = report.pages_read + report.changes
    print(f"\n== {title}")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in report.phase_seconds.items())
    print(f"   wall time           {report.duration_seconds:8.2f} s   ({phases})")
    print(f"   employees seen      {report.employees_seen:8d}   (invalid {report.invalid_records})")
    print(f"   accounts read       {report.accounts_read:8d}   in {report.pages_read} pages (users + groups)")
    print(f"   planned / changed   {report.planned:8d} / {report.changed}")
    print(f"   changes (writes)    {report.changes:8d}   IdP write calls: {report.idp_writes}")
    print(
        f"   IdP calls           {report.idp_calls!s:>8}   minimum (pages + one write per change): {minimum}"
    )
    print(
        f"   failed              {report.failed:8d}   brake: {report.brake.message if report.brake else '-'}"
    )


async def main(count: int, fraction: float, seed: int) -> int:
    # the seeded IdP stands for Tenure's own earlier work: its people are not staff to adopt (README, adoption)
    policy = load_policy(ROOT / "examples" / "policy.yaml", adopt_before=date(2000, 1, 1))
    with tempfile.TemporaryDirectory(prefix="tenure-bench-") as tmp, running_scim_server() as server:
        tmp_path = Path(tmp)
        csv_path = tmp_path / "hris.csv"
        database_url = f"sqlite:///{tmp_path / 'tenure.db'}"
        rows = fake_people(count, seed=seed, today=datetime.now(UTC).date())
        write_csv(csv_path, rows)
        base_url = server.tenant_url("bench")

        started = time.perf_counter()
        seeded = await seed_idp(server, base_url, csv_path, policy, database_url)
        print(
            f"seeded {seeded['accounts']} accounts and {seeded['memberships']} memberships in "
            f"{time.perf_counter() - started:.1f} s (bulk chunk {seeded['bulk_chunk'] or 'unsupported'}); "
            f"peak RSS so far {peak_rss_mib():.0f} MiB"
        )

        kinds = drift(rows, fraction, seed)
        write_csv(csv_path, rows)
        print(f"drift: {kinds}")

        timing = TimingTransport()
        idp = make_idp(base_url, server.token, timing)
        try:
            rss_before = peak_rss_mib()
            drifted = await engine(csv_path, idp, policy, database_url).run()
            show(f"full sync, {count} employees, {fraction:.0%} drift", drifted)
            waited = ", ".join(f"{m} {s:.1f} s" for m, s in sorted(timing.seconds.items()))
            print(
                f"   waiting on the IdP  {sum(timing.seconds.values()):8.1f} s   "
                f"({waited}; summed over concurrent calls)"
            )
            print(f"   IdP calls by method {dict(sorted(idp.api.calls.items()))}")
            timing.seconds.clear()
            calls_before = dict(idp.api.calls)
            print(f"   peak RSS            {peak_rss_mib():8.0f} MiB (before the sync: {rss_before:.0f} MiB)")

            tracemalloc.start()
            steady = await engine(csv_path, idp, policy, database_url).run()
            _, heap_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            show("full sync again, no drift (tracemalloc on: slower)", steady)
            print(f"   waiting on the IdP  {sum(timing.seconds.values()):8.1f} s")
            print(
                f"   IdP calls by method "
                f"{ {m: n - calls_before.get(m, 0) for m, n in sorted(idp.api.calls.items())} }"
            )
            print(f"   Python heap peak    {heap_peak / 2**20:8.0f} MiB")
        finally:
            await idp.aclose()
    if steady.idp_writes != 0:
        print(f"FAIL: the no-drift re-run wrote {steady.idp_writes} time(s)")
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000, help="employees (default 10,000)")
    parser.add_argument(
        "--drift", type=float, default=0.01, help="fraction of employees changed (default 0.01)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.count, args.drift, args.seed)))
