"""``tenure apply`` killed at seeded random points (``os._exit(137)``: no cleanup, no flush) across joiner, mover and
leaver runs against scim2-server and Request Tracker 5; a re-run without the crash must converge with zero
duplicate users, memberships or tickets and exactly one applied audit row per change.

The crash is injected in the HTTP transport, at a random request number, either before the request is sent or
after its answer arrived (the write took effect, nothing was ledgered or audited yet).

Sizes: CI 12 crashed runs (4 employees × joiner, mover, leaver); ``TENURE_STRESS=1``: 99 (33 employees).
"""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors.ticketing.rt import reference_matches, reference_query
from lifecycle.policy import load_policy
from tests.reliability.conftest import size
from tests.reliability.helpers import REPO, applied_changes, audit_verify_cli, snapshot
from tests.support.hris_data import COLUMNS
from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER, RTServer
from tests.support.scim_server import SCIMServer, create_group

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

RUNS = size(12, 99)
SEED = int(os.environ.get("TENURE_SEED", "20270301"))
TODAY = datetime.now(UTC).date()
STAGES = ("joiner", "mover", "leaver")
GROUPS = {
    "joiner": {"all-staff", "engineering", "github-users", "office-berlin"},
    "mover": {"all-staff", "sales", "crm-users", "office-berlin"},
    "leaver": set(),
}
TICKETS = {"joiner": ("laptop", "badge"), "mover": (), "leaver": ("equipment-return",)}
HIRE, LAST_DAY = TODAY - timedelta(days=200), TODAY - timedelta(days=2)
OCCASION = {"joiner": HIRE.isoformat(), "leaver": LAST_DAY.isoformat()}  # tenure:<id>:<purpose>:<occasion>

CRASHING_APPLY = textwrap.dedent(
    """
    import os, sys
    import httpx
    original = httpx.AsyncHTTPTransport.handle_async_request
    crash_at, phase = int(os.environ["CRASH_AT"]), os.environ["CRASH_PHASE"]
    calls = {"n": 0}
    async def crashing(self, request):
        calls["n"] += 1
        if calls["n"] == crash_at and phase == "before":
            os._exit(137)
        response = await original(self, request)
        if calls["n"] == crash_at:
            await response.aread()
            os._exit(137)  # the request was answered (a write took effect); nothing recorded it
        return response
    httpx.AsyncHTTPTransport.handle_async_request = crashing
    from tenure.cli import main
    sys.argv = ["tenure", "apply", sys.argv[1]]
    main()
    """
)


def _row(employee_id: str, stage: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        employee_id=employee_id,
        first_name="Crash",
        last_name=f"Test{employee_id[1:]}",
        department="Engineering",
        title="Engineer",
        location="Berlin",
        employment_type="employee",
        status="active",
        hire_date=HIRE.isoformat(),
    )
    if stage in ("mover", "leaver"):
        row.update(department="Sales", title="Account Executive")
    if stage == "leaver":
        row.update(status="terminated", termination_date=LAST_DAY.isoformat())
    return row


def _write(path: Path, rows: dict[str, dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows.values())


def _tickets(rt: RTServer, reference: str) -> int:
    """Tickets carrying ``reference`` (all of them, not just the first)."""
    response = httpx.get(
        f"{rt.base_url}REST/2.0/tickets",
        auth=(RT_ROOT_USER, RT_ROOT_PASSWORD),
        timeout=30,
        params={"query": reference_query(reference), "fields": "Subject", "per_page": "100"},
    )
    response.raise_for_status()
    return sum(
        1
        for item in response.json().get("items", [])
        if reference_matches(item.get("Subject", ""), reference)
    )


async def test_killed_runs_converge_without_duplicates(
    scim_server: SCIMServer, rt: RTServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seeded crashes before and after HTTP calls in joiner, mover and leaver runs; each re-run converges:
    one account per employee with the stage's groups and state, one ticket per reference, one applied audit
    row per change, and the audit chain verifies."""
    base_url = scim_server.tenant_url()
    for group in sorted(
        load_policy(REPO / "examples/policy.yaml").managed_groups
    ):  # the preflight wants them all
        await create_group(base_url, scim_server.token, group)
    hris_csv, database_url = tmp_path / "hris.csv", f"sqlite:///{tmp_path / 'audit.db'}"
    env = {
        **os.environ,
        "TENURE_DATABASE_URL": database_url,
        "TENURE_POLICY_FILE": str(REPO / "examples/policy.yaml"),
        "TENURE_ADOPT_BEFORE": "2000-01-01",  # hires of 200 days ago are joiners here (their tickets counted)
        "TENURE_IDP__KIND": "scim",
        "TENURE_IDP__BASE_URL": base_url,
        "TENURE_IDP__TOKEN": scim_server.token,
        "TENURE_IDP__MAX_ATTEMPTS": "2",
        "TENURE_HRIS__KIND": "csv",
        "TENURE_HRIS__PATH": str(hris_csv),
        "TENURE_TICKETING__KIND": "rt",
        "TENURE_TICKETING__BASE_URL": rt.base_url,
        "TENURE_TICKETING__USERNAME": RT_ROOT_USER,
        "TENURE_TICKETING__PASSWORD": RT_ROOT_PASSWORD,
    }
    rng = random.Random(SEED)
    rows: dict[str, dict[str, str]] = {}
    crashed = Counter[str]()
    for run in range(RUNS):
        employee_id, stage = f"C{run // 3 + 1:04d}", STAGES[run % 3]
        rows[employee_id] = _row(employee_id, stage)
        _write(hris_csv, rows)
        crash_at, phase = rng.randint(1, 14), rng.choice(("before", "after"))
        killed = subprocess.run(
            [sys.executable, "-c", CRASHING_APPLY, employee_id],
            cwd=REPO,
            timeout=180,
            env={**env, "CRASH_AT": str(crash_at), "CRASH_PHASE": phase},
            capture_output=True,
            text=True,
        )
        assert killed.returncode in (0, 137), killed.stdout + killed.stderr[-3000:]
        crashed[f"{stage}:{'crashed' if killed.returncode == 137 else 'finished'}"] += 1
        rerun = subprocess.run(
            [sys.executable, "-m", "tenure.cli", "apply", employee_id],
            cwd=REPO,
            timeout=180,
            env=env,
            capture_output=True,
            text=True,
        )
        assert rerun.returncode == 0, (
            f"run {run} ({stage}, crash {phase} call {crash_at}): {rerun.stdout}{rerun.stderr}"
        )

        state = snapshot(base_url, scim_server.token)
        assert state.duplicates() == {"users": {}, "members": {}, "groups": {}}, (run, stage, crash_at, phase)
        assert state.users[employee_id][1] is (stage != "leaver"), (run, stage)
        holds = {name for name, members in state.members.items() if employee_id in members}
        assert holds == GROUPS[stage], (run, stage, crash_at, phase)
        for done in STAGES[: STAGES.index(stage) + 1]:
            for purpose in TICKETS[done]:
                reference = f"tenure:{employee_id}:{purpose}:{OCCASION[done]}"
                assert _tickets(rt, reference) == 1, (run, done, purpose, crash_at, phase)

    audited = applied_changes(database_url, prefix="")
    assert {k: n for k, n in audited.items() if n > 1} == {}, "a change audited twice"
    employees = {f"C{n // 3 + 1:04d}" for n in range(RUNS)}
    creates = {k[0] for k in audited if k[1] == "idp.user.create"}
    assert creates == employees
    reached = {
        f"C{n // 3 + 1:04d}": STAGES[n % 3] for n in range(RUNS)
    }  # the last stage each employee got to
    for employee_id, last in reached.items():
        expected: set[tuple[str, str]] = {("idp.membership.add", g) for g in GROUPS["joiner"]}
        if last in ("mover", "leaver"):
            expected |= {("idp.membership.add", g) for g in GROUPS["mover"] - GROUPS["joiner"]}
            expected |= {("idp.membership.remove", g) for g in GROUPS["joiner"] - GROUPS["mover"]}
        if last == "leaver":
            expected |= {("idp.membership.remove", g) for g in GROUPS["mover"]}
        got = {(k[1], k[2]) for k in audited if k[0] == employee_id and k[1].startswith("idp.membership.")}
        assert got == expected, (employee_id, last, got ^ expected)
        disables = sum(n for k, n in audited.items() if k[0] == employee_id and k[1] == "idp.user.disable")
        assert disables == (last == "leaver"), employee_id
    verified = audit_verify_cli(database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert crashed.total() and sum(n for k, n in crashed.items() if k.endswith("crashed")) >= RUNS // 2, (
        crashed
    )
    with capsys.disabled():
        print(f"\n[crash lifecycle] {RUNS} runs, seed {SEED}: {dict(crashed)}")
