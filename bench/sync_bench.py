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

``--scenario initial|drift`` measures the figures of issue #19 instead, with the real CLI (``tenure sync
--full``) as a child process, so its CPU (user + system, from ``wait4``) is Tenure's alone; the peer —
``--peer fast`` (``bench/fast_scim.py``, its own process) or ``--peer scim2-server`` — sits behind the proxy
of ``tests/support/fault_proxy.py`` (a thread of this process) adding ``--latency`` to every request:

- ``initial``: N employees into an empty directory holding the policy's groups. Prints calls by endpoint, the
  membership writes against groups × batches, wall time against the bound ``pages × latency + writes ×
  latency ÷ concurrency`` and Tenure's CPU per applied action.
- ``drift``: the directory seeded as the policy wants (``seed_idp``), a first sync that adopts the staff (not
  counted: a first run adopts, issue #18), ``--drift`` applied, then a full sync:
  calls against the minimum (pages + one write per account change + one write per group touched per batch),
  then the naive sequential script (one GET and one PUT per employee) over ``--naive-sample`` employees,
  extrapolated to N, and a no-drift re-run: CPU per unchanged employee.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from tenure.compose import build_identity_provider

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from fast_scim import running_fast_scim  # noqa: E402
from sqlmodel import select  # noqa: E402

from connectors.hris.csv_export import CSVExportHRIS  # noqa: E402
from connectors.idp.scim import SCIMIdentityProvider  # noqa: E402
from connectors.idp.scim_resources import user_payload, user_resource  # noqa: E402
from engine.auditor import Auditor  # noqa: E402
from engine.sync import DEFAULT_BATCH_SIZE, SyncEngine, SyncOptions, SyncReport  # noqa: E402
from lifecycle.actions import ActionKind  # noqa: E402
from lifecycle.policy import Policy, load_policy  # noqa: E402
from models.audit import verify  # noqa: E402
from models.db import session_scope  # noqa: E402
from models.ledger import LedgerEntry  # noqa: E402
from tenure.settings import IdPSettings  # noqa: E402
from tests.support.fault_proxy import FaultProxy  # noqa: E402
from tests.support.hris_data import DEPARTMENTS, fake_people, write_csv  # noqa: E402
from tests.support.scim_server import SCIMServer, create_group, running_scim_server  # noqa: E402

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
    (a dry run, nothing written to it; the policy's groups are created empty first, as the preflight wants),
    then send the creates as Bulk requests and each group's members as one PATCH."""
    group_ids = {
        g: str((await create_group(base_url, server.token, g))["id"]) for g in sorted(policy.managed_groups)
    }
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
        for group, group_id in group_ids.items():
            if not members.get(group):
                continue
            add = [{"op": "add", "path": "members", "value": [{"value": i} for i in members[group]]}]
            body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": add}
            (await client.patch(f"Groups/{group_id}", json=body)).raise_for_status()
    return {"accounts": len(ids), "memberships": sum(len(m) for m in members.values()), "bulk_chunk": chunk}


# ------------------------------------------------------------------------------------------ issue #19 scenarios

CONCURRENCY = 16
SUMMARY = re.compile(
    r"(\d+) employees seen, (\d+) planned, (\d+) changed \((\d+) changes, (\S+) IdP writes\)"
)


PROFILE: str | None = None  # --profile: run the CLI under pyinstrument, its text report written there


def run_cli(env: dict[str, str]) -> tuple[float, float, str]:
    """``tenure sync --full`` as a child process: (wall seconds, CPU seconds user + system, stdout)."""
    started = time.perf_counter()
    profiler = ["-m", "pyinstrument", "-r", "text", "-o", PROFILE] if PROFILE else []
    child = subprocess.Popen(
        [sys.executable, *profiler, "-m", "tenure.cli", "sync", "--full"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # reaps the child with its resource usage
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, out


def cli_env(database_url: str, csv_path: Path, base_url: str, token: str) -> dict[str, str]:
    """The CLI's environment. It writes and reads the project's bytecode as an installed package has it: with
    ``PYTHONDONTWRITEBYTECODE`` (set in some sandboxes) every run compiled Tenure's own modules again, ~0.2 s."""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **inherited,
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "TENURE_DATABASE_URL": database_url,
        "TENURE_POLICY_FILE": str(ROOT / "examples" / "policy.yaml"),
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": base_url,
        "TENURE_IDP__TOKEN": token,
        "TENURE_IDP__REQUESTS_PER_SECOND": "100000",
        "TENURE_IDP__MAX_CONCURRENCY": str(CONCURRENCY),
        "TENURE_IDP__TIMEOUT_SECONDS": "120",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(csv_path),
        "TENURE_TICKETING__KIND": "none",
        "COLUMNS": "200",
    }


async def expected_writes(
    csv_path: Path, base_url: str, token: str, policy: Policy, database_url: str
) -> tuple[int, int, int, int, int]:
    """(account writes, group writes, batches, planned actions, pages) a full sync should make: one write per account
    action, one per group touched per batch (a dry-run plan of the directory as it is; no write)."""
    idp = make_idp(base_url, token)
    try:
        planner = engine(csv_path, idp, policy, database_url, dry_run=True)
        await planner.prepare()
    finally:
        await idp.aclose()
    account_kinds = {
        ActionKind.CREATE_ACCOUNT,
        ActionKind.UPDATE_ACCOUNT,
        ActionKind.ENABLE_ACCOUNT,
        ActionKind.DISABLE_ACCOUNT,
        ActionKind.DELETE_ACCOUNT,
    }
    memberships = {ActionKind.ADD_MEMBERSHIP, ActionKind.REMOVE_MEMBERSHIP}
    accounts = groups = actions = 0
    for batch in planner.batches:
        touched: set[str] = set()
        for work in batch:
            actions += len(work.plan.actions)
            accounts += sum(1 for a in work.plan.actions if a.kind in account_kinds)
            touched |= {a.subject for a in work.plan.actions if a.kind in memberships}
        groups += len(touched)
    return accounts, groups, len(planner.batches), actions, planner.report.pages_read


def applied_actions(database_url: str) -> dict[str, int]:
    with session_scope(database_url) as session:
        rows = session.exec(select(LedgerEntry.kind, LedgerEntry.status)).all()
    counts: dict[str, int] = {}
    for kind, status in rows:
        counts[f"{kind}:{status}"] = counts.get(f"{kind}:{status}", 0) + 1
    return counts


@contextlib.contextmanager
def peer(kind: str) -> Iterator[tuple[str, str, str]]:
    """(base URL, token, upstream root) of a fresh directory on the chosen peer."""
    if kind == "fast":
        with running_fast_scim() as fast:
            yield fast.base_url, fast.token, fast.base_url.rstrip("/")
    else:
        with running_scim_server() as server:
            yield server.tenant_url("bench"), server.token, f"http://127.0.0.1:{server.port}"


async def naive_script(base_url: str, token: str, employee_ids: list[str]) -> float:
    """One GET by externalId and one PUT of the same user per employee, sequentially; seconds taken."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        for employee_id in employee_ids:
            found = (
                await client.get(f"{base_url}Users", params={"filter": f'externalId eq "{employee_id}"'})
            ).json()
            for user in found.get("Resources", [])[:1]:
                user.pop("meta", None)
                await client.put(f"{base_url}Users/{user['id']}", json=user)
    return time.perf_counter() - started


def print_run(
    title: str, wall: float, cpu: float, out: str, calls: Counter[tuple[str, str]]
) -> tuple[int, int]:
    summary = SUMMARY.search(" ".join(out.split()))
    changes = int(summary.group(4)) if summary else -1
    print(f"\n== {title}")
    print(f"   wall time            {wall:8.2f} s   (the tenure process, start-up included)")
    print(f"   Tenure CPU           {cpu:8.2f} s   (user + system of the tenure process, from wait4)")
    print(f"   CLI summary          {summary.group(0) if summary else out[-400:]}")
    print(f"   calls                {sum(calls.values()):8d}   {dict(sorted(calls.items()))}")
    return changes, sum(calls.values())


async def scenario(
    kind: str, count: int, peer_kind: str, latency: float, fraction: float, sample: int, seed: int
) -> int:
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    print(
        f"machine: {os.cpu_count()} CPUs; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; scenario {kind}, N={count}, "
        f"peer {peer_kind}, latency {latency * 1000:.0f} ms, concurrency {CONCURRENCY}, batch {DEFAULT_BATCH_SIZE}"
    )
    with (
        tempfile.TemporaryDirectory(prefix="tenure-bench-") as tmp,
        peer(peer_kind) as (base_url, token, root),
    ):
        tmp_path = Path(tmp)
        csv_path, database_url = tmp_path / "hris.csv", f"sqlite:///{tmp_path / 'tenure.db'}"
        plan_db, before = tmp_path / "plan.db", Counter[str]()
        rows = fake_people(count, seed=seed, today=datetime.now(UTC).date())
        write_csv(csv_path, rows)
        if kind == "initial":
            for group in sorted(policy.managed_groups):
                await create_group(base_url, token, group)
        else:
            started = time.perf_counter()
            seeded = await seed_direct(base_url, token, csv_path, policy, tmp_path / "seed.db")
            print(
                f"seeded {seeded['accounts']} accounts, {seeded['memberships']} memberships in {time.perf_counter() - started:.1f} s"
            )
            # Tenure's first run on a directory it did not build adopts the staff (one `adopt` each); the
            # night measured is a later one, after it
            wall, cpu, _ = run_cli(cli_env(database_url, csv_path, base_url, token))
            print(f"first run (adoption, not counted): {wall:.1f} s wall, {cpu:.1f} s CPU")
            print(f"drift: {drift(rows, fraction, seed)}")
            write_csv(csv_path, rows)
            before = Counter(applied_actions(database_url))
            # the minimum is planned with the ledger's history, as the run will plan
            with sqlite3.connect(tmp_path / "tenure.db") as source, sqlite3.connect(plan_db) as copy:
                source.backup(copy)
        accounts, groups, batches, planned, pages = await expected_writes(
            csv_path, base_url, token, policy, f"sqlite:///{plan_db}"
        )
        proxy = FaultProxy(upstream=root, latency=latency)
        with proxy.in_thread():
            proxied = proxy.proxied(base_url)
            wall, cpu, out = run_cli(cli_env(database_url, csv_path, proxied, token))
            calls = Counter(proxy.requests)
            changes, total = print_run(
                f"tenure sync --full ({kind}), {count} employees", wall, cpu, out, calls
            )
            group_writes = sum(
                n for (m, path), n in calls.items() if m in ("PATCH", "PUT") and "Groups" in path
            )
            bulk = sum(n for (m, path), n in calls.items() if path.endswith("Bulk"))
            reads = sum(n for (m, _), n in calls.items() if m == "GET")
            writes = total - reads
            minimum = pages + accounts + groups
            bound = pages * latency + (accounts + groups) * latency / CONCURRENCY
            applied = dict(Counter(applied_actions(database_url)) - before)  # this run's entries
            applied_total = sum(n for k, n in applied.items() if k.endswith(":applied"))
            print(
                f"   planned actions      {planned:8d}   applied {applied_total}; ledger {dict(sorted(applied.items()))}"
            )
            print(
                f"   account actions      {accounts:8d}   written in {writes - group_writes} requests ({bulk} of them /Bulk)"
            )
            print(
                f"   group writes         {group_writes:8d}   ≤ groups touched per batch = {groups} ({batches} batches)"
            )
            print(
                f"   calls vs minimum     {total:8d}   minimum pages {pages} + account writes {accounts} + group writes {groups} = {minimum}  → {total / minimum:.3f}×"
            )
            print(f"   writes               {writes:8d}   reads {reads}")
            print(
                f"   bound                {bound:8.2f} s   pages × latency + writes × latency ÷ {CONCURRENCY}; wall / bound = {wall / bound:.2f}"
            )
            print(
                f"   CPU per applied      {cpu / max(1, applied_total) * 1000:8.3f} ms   ({applied_total} applied actions)"
            )
            with session_scope(database_url) as session:
                print(f"   audit chain          {verify(session=session).describe()}")
            if kind == "drift":
                ids = [r["employee_id"] for r in rows[:sample]]
                naive = await naive_script(proxied, token, ids)
                extrapolated = naive / max(1, len(ids)) * len(rows)
                print(f"\n== naive sequential script (GET + PUT per employee), {len(ids)} employees")
                print(
                    f"   wall time            {naive:8.2f} s   → {naive / len(ids) * 1000:.1f} ms per employee, {extrapolated:.0f} s for {len(rows)}"
                )
                print(
                    f"   the sync is          {extrapolated / wall:8.1f}×   faster (whole process wall time)"
                )
                proxy.reset_counts()
                wall, cpu, out = run_cli(cli_env(database_url, csv_path, proxied, token))
                again = Counter(proxy.requests)
                print_run(f"tenure sync --full again, no drift, {count} employees", wall, cpu, out, again)
                rewrites = sum(n for (method, _), n in again.items() if method != "GET")
                print(
                    f"   CPU per employee     {cpu / len(rows) * 1000:8.3f} ms   (whole process, start-up included)"
                )
                idle = await startup_cpu(tmp_path, policy)
                print(
                    f"   start-up             {idle:8.2f} s   (CPU of the same command for 1 employee, empty "
                    f"directory) → {(cpu - idle) / len(rows) * 1000:.3f} ms per unchanged employee after it"
                )
                if rewrites:
                    print(f"FAIL: the no-drift re-run wrote {rewrites} time(s)")
                    return 1
    return 0


async def startup_cpu(tmp_path: Path, policy: Policy) -> float:
    """Tenure CPU of ``tenure sync --full`` with one employee against an empty fast peer: start-up and
    the fixed costs, to tell them from the per-employee cost."""
    csv_path = tmp_path / "one.csv"
    write_csv(csv_path, fake_people(1, seed=1, today=datetime.now(UTC).date()))
    with running_fast_scim() as fast:
        for group in sorted(policy.managed_groups):
            await create_group(fast.base_url, fast.token, group)
        _, cpu, _ = run_cli(cli_env(f"sqlite:///{tmp_path / 'one.db'}", csv_path, fast.base_url, fast.token))
    return cpu


async def seed_direct(
    base_url: str, token: str, csv_path: Path, policy: Policy, seed_db: Path
) -> dict[str, int]:
    """``seed_idp`` for any peer reachable at ``base_url`` (no proxy)."""

    @dataclass
    class Peer:
        token: str

        def headers(self) -> dict[str, str]:
            return {"Authorization": f"Bearer {self.token}"}

    return await seed_idp(Peer(token), base_url, csv_path, policy, f"sqlite:///{seed_db}")  # type: ignore[arg-type]


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
    parser.add_argument("--scenario", choices=["classic", "initial", "drift"], default="classic")
    parser.add_argument("--peer", choices=["fast", "scim2-server"], default="fast")
    parser.add_argument("--latency", type=float, default=0.02, help="added per request by the proxy")
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument("--profile", help="write a pyinstrument text report of the (first) sync there")
    args = parser.parse_args()
    PROFILE = args.profile
    if args.scenario == "classic":
        sys.exit(asyncio.run(main(args.count, args.drift, args.seed)))
    sys.exit(
        asyncio.run(
            scenario(
                args.scenario, args.count, args.peer, args.latency, args.drift, args.naive_sample, args.seed
            )
        )
    )
