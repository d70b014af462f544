"""Deploy and run Tenure like ops would: a PostgreSQL-backed Prefect server, ``prefect deploy --all`` from
prefect.yaml, two ``prefect worker start`` processes on the ``tenure-process`` pool, the webhook receiver as
its own process, a real scim2-server as IdP, a CSV HRIS and a fresh PostgreSQL audit database.

Everything is started by the module fixture on 127.0.0.1 and stopped by PID (process groups) at teardown.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from sqlmodel import select

from deployments.webhook import sign_generic
from engine.sync import partition_of
from models.audit import AuditEvent, verify
from models.db import session_scope
from models.domain import AccountAttributes
from sandbox.processes import Started, free_port, spawn, wait_for_http
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.support.hris_data import fake_people, write_csv
from tests.support.prefect_server import PrefectServerHandle, prefect_executable, start_prefect_server
from tests.support.scim_server import SCIMServer, create_group, start_scim_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
POOL = "tenure-process"
# One hire whose birthright names a privileged group (the module's policy adds Security → prod-admin).
APPROVAL_HIRE = {
    "employee_id": "E09001",
    "first_name": "Sam",
    "last_name": "Approver",
    "department": "Security",
    "title": "Security Engineer",
    "status": "active",
    "termination_date": "",
    "manager_id": "",
}
WEBHOOK_SECRET = "e2e-deploy-webhook-secret"
PARTITIONS = 3
PG_ADMIN_URL = os.environ.get("TENURE_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
SUBMITTING = re.compile(r"Worker '([^']+)' submitting flow run '([0-9a-f-]{36})'")


@dataclass
class Stack:
    """Everything the module fixture started, and how to reach it."""

    prefect: PrefectServerHandle
    scim: SCIMServer
    idp_url: str
    audit_url: str
    env: dict[str, str]
    webhook_url: str
    people: list[dict[str, str]]
    workers: dict[str, Started] = field(default_factory=dict)

    def worker_logs(self, chars: int = 6000) -> str:
        """The end of every worker's log, for failure messages."""
        return "\n".join(f"--- {name}\n{w.log_tail(chars)}" for name, w in self.workers.items())

    def worker_runs(self) -> dict[str, set[str]]:
        """Flow run ids each worker submitted, from the workers' own logs."""
        runs: dict[str, set[str]] = defaultdict(set)
        for started in self.workers.values():
            for name, run_id in SUBMITTING.findall(started.log_tail(1_000_000)):
                runs[name].add(run_id)
        return runs


def _pg_admin() -> psycopg.Connection[Any]:
    return psycopg.connect(PG_ADMIN_URL.replace("postgresql+psycopg", "postgresql"), autocommit=True)


def _policy_groups() -> list[str]:
    policy = yaml.safe_load((ROOT / "examples/policy.yaml").read_text())
    names = {g for rule in policy["birthright"] for g in rule["groups"]}
    names |= {group["name"] for group in policy.get("privileged_groups", [])}
    return sorted(names)


def _cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [prefect_executable(), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"prefect {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PG-backed Prefect server + deployments + two workers + webhook receiver + scim2-server + CSV HRIS."""
    tmp = tmp_path_factory.mktemp("deploy-e2e")
    suffix = uuid.uuid4().hex[:10]
    prefect_db, audit_db = f"tenure_e2e_prefect_{suffix}", f"tenure_e2e_audit_{suffix}"
    server_url = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1]
    with _pg_admin() as admin:
        admin.execute(f'CREATE DATABASE "{prefect_db}"')
        admin.execute(f'CREATE DATABASE "{audit_db}"')
    started: list[Started] = []
    prefect: PrefectServerHandle | None = None
    scim: SCIMServer | None = None
    try:
        prefect = start_prefect_server(
            tmp / "prefect", database_url=f"postgresql+asyncpg://{server_url}/{prefect_db}"
        )
        scim = start_scim_server()
        idp_url = scim.tenant_url()

        async def make_groups() -> None:
            for name in _policy_groups():
                await create_group(idp_url, scim.token, name)

        asyncio.run(make_groups())
        people = [p for p in fake_people(36, seed=2) if p["status"] != "terminated"]
        people.insert(0, {**people[0], **APPROVAL_HIRE})
        write_csv(tmp / "hris.csv", people)
        policy = yaml.safe_load((ROOT / "examples/policy.yaml").read_text(encoding="utf-8"))
        policy["birthright"].append({"match": {"department": "Security"}, "groups": ["prod-admin"]})
        (tmp / "policy.yaml").write_text(yaml.safe_dump(policy), encoding="utf-8")
        audit_url = f"postgresql+psycopg://{server_url}/{audit_db}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TENURE_"))}
        env.update(prefect.env)
        env.update(
            {
                "DO_NOT_TRACK": "1",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
                "PREFECT_LOGGING_LEVEL": "INFO",
                "TENURE_DATABASE_URL": audit_url,
                "TENURE_POLICY_FILE": str(tmp / "policy.yaml"),
                "TENURE_IDP__KIND": "scim",
                "TENURE_IDP__BASE_URL": idp_url,
                "TENURE_IDP__TOKEN": scim.token,
                "TENURE_HRIS__KIND": "csv",
                "TENURE_HRIS__PATH": str(tmp / "hris.csv"),
                "TENURE_TICKETING__KIND": "none",
                "TENURE_WEBHOOK__SECRET": WEBHOOK_SECRET,
            }
        )
        _cli(env, "work-pool", "create", POOL, "--type", "process")
        _cli(env, "--no-prompt", "deploy", "--all")
        workers = {}
        for name in ("worker-a", "worker-b"):
            workers[name] = spawn(
                name,
                [prefect_executable(), "worker", "start", "--pool", POOL, "--name", name, "--limit", "1"],
                log_path=tmp / f"{name}.log",
                env=env,
                cwd=ROOT,
            )
            started.append(workers[name])
        port = free_port()
        receiver = spawn(
            "webhook",
            [
                sys.executable,
                "-c",
                "from deployments.webhook_cli import app; app()",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            log_path=tmp / "webhook.log",
            env=env,
            cwd=ROOT,
        )
        started.append(receiver)
        wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=60, started=receiver)
        yield Stack(
            prefect=prefect,
            scim=scim,
            idp_url=idp_url,
            audit_url=audit_url,
            env=env,
            webhook_url=f"http://127.0.0.1:{port}",
            people=people,
            workers=workers,
        )
    finally:
        for process in reversed(started):
            process.stop(timeout=15)
        if scim is not None:
            scim.stop()
        if prefect is not None:
            prefect.stop()
        from models.db import reset_engines

        reset_engines()
        with _pg_admin() as admin:
            for name in (prefect_db, audit_db):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def prefect_client(stack: Stack) -> AsyncIterator[Any]:
    """A Prefect client for this module's server (whatever PREFECT_API_URL the session set)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: stack.prefect.api_url}):
        async with get_client() as client:
            yield client


async def wait_final(client: Any, run_id: uuid.UUID | str, timeout: float = 180) -> Any:
    """Poll the flow run until its state is final."""
    deadline = time.monotonic() + timeout
    while True:
        run = await client.read_flow_run(uuid.UUID(str(run_id)))
        if run.state is not None and run.state.is_final():
            return run
        assert time.monotonic() < deadline, f"flow run {run_id} still {run.state.name if run.state else None}"
        await asyncio.sleep(1)


def audit_rows(stack: Stack, **where: Any) -> list[AuditEvent]:
    with session_scope(stack.audit_url) as session:
        query = select(AuditEvent)
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        return list(session.exec(query.order_by(AuditEvent.seq)).all())


def scim_idp(stack: Stack) -> Any:
    from pydantic import SecretStr

    return build_identity_provider(
        IdPSettings(kind="scim", base_url=stack.idp_url, token=SecretStr(stack.scim.token))
    )


async def test_prefect_yaml_deployed_every_flow(stack: Stack) -> None:
    """`prefect deploy --all` created every deployment of prefect.yaml on the pool, with cron schedules in an
    explicit timezone and the HRIS event triggers present but disabled."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    async with prefect_client(stack) as client:
        for entry in spec["deployments"]:
            flow_name = _flow_name(entry["entrypoint"])
            deployment = await client.read_deployment_by_name(f"{flow_name}/{entry['name']}")
            assert deployment.work_pool_name == POOL
            assert set(entry["tags"]) <= set(deployment.tags)
            assert [s.schedule.cron for s in deployment.schedules] == [
                s["cron"] for s in entry.get("schedules", [])
            ]
            assert all(s.schedule.timezone == "Europe/Berlin" for s in deployment.schedules)
            automations = await client.read_resource_related_automations(
                f"prefect.deployment.{deployment.id}"
            )
            assert len(automations) == len(entry.get("triggers", []))
            assert not any(a.enabled for a in automations)
        full = await client.read_deployment_by_name("sync/weekly-full-sync")
        assert full.parameters == {"full": True}


def _flow_name(entrypoint: str) -> str:
    """flows.lifecycle.reconcile_employee -> the @flow's name ("reconcile-employee"), read from the module."""
    import importlib

    module, attribute = entrypoint.rsplit(".", 1)
    return str(getattr(importlib.import_module(module), attribute).name)


async def test_signed_webhook_runs_joiner_on_a_worker(stack: Stack) -> None:
    """A signed HRIS "hired" webhook starts joiner/joiner; a worker runs it; the account exists in
    scim2-server and the audit chain holds its rows, correlated to that flow run."""
    employee = next(p for p in stack.people if p["status"] == "active" and p["department"] == "Engineering")
    body = json.dumps(
        {
            "event_id": f"evt-{uuid.uuid4().hex[:8]}",
            "type": "employee.hired",
            "employee_id": employee["employee_id"],
        }
    ).encode()
    timestamp = str(int(time.time()))
    answer = httpx.post(
        f"{stack.webhook_url}/webhooks/generic",
        content=body,
        timeout=30,
        headers={
            "Content-Type": "application/json",
            "X-Tenure-Timestamp": timestamp,
            "X-Tenure-Signature": sign_generic(WEBHOOK_SECRET, timestamp, body),
        },
    )
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["flow_run_id"]

    async with prefect_client(stack) as client:
        run = await wait_final(client, run_id)
        assert run.state.is_completed(), f"{run.state.message}\n{stack.worker_logs()}"
        assert run.work_pool_name == POOL
        assert run.name == f"joiner-{employee['employee_id']}"
        artifacts = await client.read_artifacts(
            flow_run_filter=_run_filter([run_id]),
        )
        assert any(a.key and a.key.startswith("lifecycle-") for a in artifacts)

    assert any(run_id in runs for runs in stack.worker_runs().values())
    idp = scim_idp(stack)
    try:
        account = await idp.find_user_by_employee_id(employee["employee_id"])
        assert account is not None
        member_of = {g.name for g in await idp.list_groups() if account.id in await idp.list_members(g.id)}
    finally:
        await idp.aclose()
    assert {"all-staff", "engineering", "github-users"} <= member_of

    rows = audit_rows(stack, employee_id=employee["employee_id"])
    applied = Counter(r.action for r in rows if r.outcome == "applied")
    assert applied["idp.user.create"] == 1
    assert applied["idp.membership.add"] >= 3
    assert {r.correlation_id for r in rows if r.outcome == "applied"} == {run_id}
    with session_scope(stack.audit_url) as session:
        assert verify(session=session).ok


async def test_enabled_hris_trigger_passes_employee_id_from_the_event(stack: Stack) -> None:
    """Once enabled, the joiner trigger from prefect.yaml turns an `hris.employee.hired` event about
    `tenure.employee.<id>` into a joiner/joiner run whose employee_id is rendered from the event."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    employee_id = next(p["employee_id"] for p in reversed(stack.people) if p["status"] == "active")
    async with prefect_client(stack) as client:
        deployment = await client.read_deployment_by_name("joiner/joiner")
        (automation,) = await client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
        await client.resume_automation(automation.id)
        try:
            await asyncio.sleep(2)  # let the triggers service load the enabled automation
            _cli(
                stack.env,
                "event",
                "emit",
                "hris.employee.hired",
                "--resource-id",
                f"tenure.employee.{employee_id}",
            )
            deadline = time.monotonic() + 60
            while True:
                runs = await client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
                triggered = [r for r in runs if r.parameters.get("employee_id") == employee_id]
                if triggered:
                    break
                assert time.monotonic() < deadline, "the enabled trigger started no joiner run"
                await asyncio.sleep(1)
        finally:
            await client.pause_automation(automation.id)
        run = await wait_final(client, triggered[0].id)
    assert run.parameters == {"employee_id": employee_id}
    assert run.state.is_completed(), f"{run.state.message}\n{stack.worker_logs()}"


def _run_filter(ids: list[str]) -> Any:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(i) for i in ids]))


async def test_access_review_deployment_publishes_findings(stack: Stack) -> None:
    """access-review/nightly-access-review, run by a worker, finds an orphan account planted in the IdP and publishes
    its findings as artifacts of the run."""
    idp = scim_idp(stack)
    try:
        await idp.create_user(
            AccountAttributes(
                user_name="ghost.account", employee_id="X99999", given_name="Ghost", family_name="Account"
            )
        )
    finally:
        await idp.aclose()
    async with prefect_client(stack) as client:
        deployment = await client.read_deployment_by_name(f"{_review_flow_name()}/nightly-access-review")
        run = await client.create_flow_run_from_deployment(deployment.id)
        run = await wait_final(client, run.id)
        assert run.state.is_completed(), f"{run.state.message}\n{stack.worker_logs()}"
        artifacts = await client.read_artifacts(flow_run_filter=_run_filter([str(run.id)]))
    assert artifacts, "the review run published no artifact"
    text = "\n".join(json.dumps(a.data) if not isinstance(a.data, str) else a.data for a in artifacts)
    assert "X99999" in text or "ghost.account" in text or "orphan" in text.lower()
    weekly = next(a for a in artifacts if a.key == "tenure-report")  # tenure report's figures, as a table
    assert "| week from | access p50 |" in str(weekly.data)
    findings = audit_rows(stack, action="review.finding")
    assert any(r.correlation_id == str(run.id) for r in findings)


def _review_flow_name() -> str:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    entry = next(
        d
        for d in spec["deployments"]
        if d["entrypoint"].startswith("flows.review.") and d["entrypoint"].endswith(".access_review")
    )
    return _flow_name(entry["entrypoint"])


async def test_partitioned_full_sync_spreads_over_two_workers(stack: Stack) -> None:
    """A full sync split into partitions runs on both workers; every employee is provisioned exactly once,
    by the run of the partition it hashes to."""
    async with prefect_client(stack) as client:
        deployment = await client.read_deployment_by_name("sync/weekly-full-sync")
        runs = [
            await client.create_flow_run_from_deployment(
                deployment.id, parameters={"full": True, "partition": n, "partitions": PARTITIONS}
            )
            for n in range(PARTITIONS)
        ]
        finished = [await wait_final(client, run.id, timeout=300) for run in runs]
    for run in finished:
        assert run.state.is_completed(), f"{run.name}: {run.state.message}\n{stack.worker_logs()}"
    run_partition = {str(run.id): n for n, run in enumerate(runs)}

    by_worker = stack.worker_runs()
    ran_sync = {name: ids & set(run_partition) for name, ids in by_worker.items()}
    assert set(run_partition) == set().union(*ran_sync.values())
    assert all(ran_sync.get(name) for name in stack.workers), f"not every worker ran a partition: {ran_sync}"

    creates = [r for r in audit_rows(stack, action="idp.user.create") if r.outcome == "applied"]
    per_employee = Counter(r.employee_id for r in creates)
    assert per_employee and max(per_employee.values()) == 1, per_employee.most_common(3)
    for row in creates:
        if row.correlation_id in run_partition:
            assert partition_of(row.employee_id, PARTITIONS) == run_partition[row.correlation_id]
    active = {p["employee_id"] for p in stack.people if p["status"] == "active"}
    idp = scim_idp(stack)
    try:
        present = {
            p["employee_id"]
            for p in stack.people
            if await idp.find_user_by_employee_id(p["employee_id"]) is not None
        }
    finally:
        await idp.aclose()
    assert active <= present
    assert present == set(per_employee)  # every account was created once, through the audited path


async def test_approval_suspends_the_deployed_run_and_the_resumed_run_repeats_nothing(stack: Stack) -> None:
    """A privileged group in a deployed run suspends it (the worker's process exits); answering the form resumes
    it; the re-run plans only what was left: one account, the membership, one approval row, the grant."""
    from models.ledger import Grant, GrantStatus

    employee_id = APPROVAL_HIRE["employee_id"]
    async with prefect_client(stack) as client:
        deployment = await client.read_deployment_by_name("reconcile-employee/reconcile-employee")
        run = await client.create_flow_run_from_deployment(
            deployment.id, parameters={"employee_id": employee_id}
        )
        deadline = time.monotonic() + 180
        while True:
            current = await client.read_flow_run(run.id)
            if current.state is not None and current.state.name == "Suspended":
                break
            assert current.state is None or not current.state.is_final(), (
                f"{current.state.name}: {current.state.message}\n{stack.worker_logs()}"
            )
            assert time.monotonic() < deadline, f"never suspended\n{stack.worker_logs()}"
            await asyncio.sleep(1)
        before = audit_rows(stack, employee_id=employee_id)
        assert not [r for r in before if r.action == "approval.request" and r.outcome == "applied"]
        await client.resume_flow_run(
            run.id, run_input={"approve": True, "approver": "security-lead", "reason": "on-call rota"}
        )
        final = await wait_final(client, run.id)
        assert final.state.is_completed(), f"{final.state.message}\n{stack.worker_logs()}"

    rows = audit_rows(stack, employee_id=employee_id)
    applied = Counter(r.action for r in rows if r.outcome == "applied")
    assert applied["approval.request"] == 1
    assert applied["idp.user.create"] <= 1
    added = Counter(
        r.details["target"] for r in rows if r.action == "idp.membership.add" and r.outcome == "applied"
    )
    assert set(added.values()) <= {1}
    idp = scim_idp(stack)
    try:
        account = await idp.find_user_by_employee_id(employee_id)
        assert account is not None
        member_of = {g.name for g in await idp.list_groups() if account.id in await idp.list_members(g.id)}
    finally:
        await idp.aclose()
    assert "prod-admin" in member_of
    with session_scope(stack.audit_url) as session:
        grant = session.get(Grant, (employee_id, "prod-admin"))
    assert (
        grant is not None
        and grant.status == GrantStatus.GRANTED.value
        and grant.decided_by == "security-lead"
    )
