"""`make demo`: a day in the life of Tenure on one machine, deployed the way ops would deploy it.

Starts (all on 127.0.0.1, PIDs in ``.tenure/demo/state.json``): a Prefect server with its UI (SQLite, port 4200
unless taken), a scim2-server as the IdP with the policy's groups, Request Tracker 5 when installed (else the
RT-shaped :mod:`sandbox.ticketing`), the HRIS webhook receiver and one worker on the ``tenure-process`` pool;
writes a CSV HRIS of generated people, then ``prefect deploy --all`` and plays the day:
baseline full sync, a hire by signed webhook, a hire started from its deployment, a move, a leave, a planted
orphan account and an unapproved privileged membership, and the nightly access review that finds them.
Prints what happened, the audit chain verification, the UI URL and — last — the path of the ``tenure report``
page (``.tenure/demo/report.html``), and leaves everything running until
``python -m sandbox.demo --stop`` (``make demo-stop``). ``--once`` stops at the end; Ctrl-C cleans up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from sandbox.processes import (
    Started,
    StateFile,
    free_port,
    port_is_free,
    prefect_env,
    prefect_executable,
    spawn,
    start_prefect_server,
    wait_for_http,
)

__all__ = ["main", "stop"]

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".tenure" / "demo"
STATE_PATH = DEMO_DIR / "state.json"
POLICY_PATH = DEMO_DIR / "policy.yaml"
FACILITIES_QUEUE = "Facilities"  # not created in RT: the leave's equipment-return ticket fails on purpose
POOL = "tenure-process"
UI_PORT = 4200
PEOPLE = 24
RUN_TIMEOUT = 240.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Demo:
    """What the demo started and the settings its worker runs with."""

    state: StateFile
    env: dict[str, str] = field(default_factory=dict)
    api_url: str = ""
    ui_url: str = ""
    idp_url: str = ""
    idp_token: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""
    ticketing: str = ""
    ticket_auth: tuple[str, str] = ("", "")
    ticket_url: str = ""
    hris_path: Path = DEMO_DIR / "hris.csv"
    people: list[dict[str, str]] = field(default_factory=list)
    processes: list[Started] = field(default_factory=list)
    runs: list[tuple[str, str, str]] = field(default_factory=list)  # (what, run name, final state)

    def keep(self, started: Started) -> Started:
        self.processes.append(started)
        self.state.add(started)
        return started


# -- peers ---------------------------------------------------------------------------------------------------


def write_policy() -> Path:
    """examples/policy.yaml, except that equipment returns go to an RT queue that does not exist: the leave's
    ticket step fails, so the UI shows what a failed step looks like (a Failed task run, its message)."""
    policy = yaml.safe_load((ROOT / "examples/policy.yaml").read_text())
    for template in policy["tickets"]["leaver"]:
        template["queue"] = FACILITIES_QUEUE
    POLICY_PATH.parent.mkdir(parents=True, exist_ok=True)
    POLICY_PATH.write_text(yaml.safe_dump(policy, sort_keys=False))
    return POLICY_PATH


def policy_groups() -> list[str]:
    policy = yaml.safe_load((ROOT / "examples/policy.yaml").read_text())
    names = {g for rule in policy["birthright"] for g in rule["groups"]}
    names |= {group["name"] for group in policy.get("privileged_groups", [])}
    return sorted(names)


def start_idp(demo: Demo) -> None:
    """scim2-server with a static bearer token, and every group the policy names."""
    demo.idp_token = f"scim-{secrets.token_urlsafe(16)}"
    port = free_port()
    executable = Path(sys.executable).parent / "scim2-server"
    started = demo.keep(
        spawn(
            "scim2-server",
            [
                str(executable if executable.exists() else "scim2-server"),
                "--hostname",
                "127.0.0.1",
                "--port",
                str(port),
                "--bearer-token",
                demo.idp_token,
            ],
            log_path=DEMO_DIR / "logs/scim2-server.log",
        )
    )
    demo.idp_url = f"http://127.0.0.1:{port}/"
    headers = {"Authorization": f"Bearer {demo.idp_token}"}
    wait_for_http(f"{demo.idp_url}ServiceProviderConfig", timeout=30, started=started, headers=headers)
    for name in policy_groups():
        response = httpx.post(
            f"{demo.idp_url}Groups",
            headers={**headers, "Content-Type": "application/scim+json"},
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name},
        )
        response.raise_for_status()
    say(f"  IdP        scim2-server at {demo.idp_url} with groups {', '.join(policy_groups())}")


def start_ticketing(demo: Demo) -> None:
    """Request Tracker 5 when installed (its own SQLite database under .tenure/demo/rt), else the sandbox."""
    from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER, RT_SERVER, RTStartError, start_rt

    if RT_SERVER.exists():
        try:
            rt = start_rt(DEMO_DIR / "rt")
        except RTStartError as exc:
            say(f"  (Request Tracker did not start, using the sandbox ticketing API: {str(exc)[:200]})")
        else:
            demo.keep(Started("request-tracker", rt.process, DEMO_DIR / "rt" / "rt-server.stderr"))
            demo.ticketing, demo.ticket_url = "Request Tracker 5", rt.base_url
            demo.ticket_auth = (RT_ROOT_USER, RT_ROOT_PASSWORD)
            say(f"  Tickets    Request Tracker 5 at {rt.base_url} (user {RT_ROOT_USER})")
            return
    start_sandbox_ticketing(demo)
    say(f"  Tickets    sandbox ticketing API at {demo.ticket_url} (Request Tracker is not installed)")


def start_sandbox_ticketing(demo: Demo) -> None:
    """The RT-shaped sandbox ticketing API (logs under DEMO_DIR), with a fresh root password."""
    password = secrets.token_urlsafe(12)
    port = free_port()
    started = demo.keep(
        spawn(
            "sandbox-ticketing",
            [
                sys.executable,
                "-m",
                "sandbox.ticketing",
                "--port",
                str(port),
                "--user",
                "root",
                "--password",
                password,
            ],
            log_path=DEMO_DIR / "logs/ticketing.log",
            cwd=ROOT,
        )
    )
    demo.ticket_url = f"http://127.0.0.1:{port}/rt/"
    wait_for_http(f"{demo.ticket_url}REST/2.0/queue/General", timeout=30, started=started, ok=(200, 401))
    demo.ticketing, demo.ticket_auth = "sandbox ticketing (RT-shaped)", ("root", password)


def write_hris(demo: Demo) -> None:
    from tests.support.hris_data import write_csv

    write_csv(demo.hris_path, demo.people)


def make_people() -> list[dict[str, str]]:
    """Generated, realistic people; everyone is current (leavers come later in the day)."""
    from tests.support.hris_data import fake_people

    today = date.today()
    people = [p for p in fake_people(PEOPLE + 12, seed=7, today=today) if p["status"] in ("active", "leave")]
    return people[:PEOPLE]


# -- Prefect -------------------------------------------------------------------------------------------------


def cli(demo: Demo, *args: str) -> None:
    import subprocess

    result = subprocess.run(
        [prefect_executable(), *args],
        cwd=ROOT,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"prefect {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )


async def run_deployment(demo: Demo, what: str, name: str, parameters: dict[str, Any] | None = None) -> Any:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        deployment = await client.read_deployment_by_name(name)
        run = await client.create_flow_run_from_deployment(deployment.id, parameters=parameters or {})
    return await wait_for(demo, what, str(run.id))


async def wait_for(demo: Demo, what: str, run_id: str) -> Any:
    """Wait until the flow run is final; record and print its outcome."""
    import uuid

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + RUN_TIMEOUT
    async with get_client() as client:
        while True:
            run = await client.read_flow_run(uuid.UUID(run_id))
            if run.state is not None and run.state.is_final():
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: flow run {run_id} not finished after {RUN_TIMEOUT:.0f} s")
            await asyncio.sleep(1)
    message = (run.state.message or "").strip()
    demo.runs.append((what, run.name, run.state.name))
    say(f"     -> {run.name}: {run.state.name}{' — ' + message[:160] if message else ''}")
    return run


def send_webhook(demo: Demo, kind: str, employee_id: str) -> str:
    """A signed generic HRIS webhook, as an HRIS would send it; returns the flow run id it started."""
    from deployments.webhook import sign_generic

    body = json.dumps(
        {
            "event_id": f"demo-{kind}-{employee_id}-{int(time.time())}",
            "type": f"employee.{kind}",
            "employee_id": employee_id,
        }
    ).encode()
    timestamp = str(int(time.time()))
    response = httpx.post(
        f"{demo.webhook_url}/webhooks/generic",
        content=body,
        timeout=30,
        headers={
            "Content-Type": "application/json",
            "X-Tenure-Timestamp": timestamp,
            "X-Tenure-Signature": sign_generic(demo.webhook_secret, timestamp, body),
        },
    )
    if response.status_code != 202:
        raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["flow_run_id"])


# -- the day -------------------------------------------------------------------------------------------------


def new_hire(demo: Demo, first: str, last: str, department: str, title: str, days: int) -> dict[str, str]:
    employee_id = f"E{90000 + len(demo.people):05d}"
    local = f"{first}.{last}".lower()
    person = {
        "employee_id": employee_id,
        "first_name": first,
        "last_name": last,
        "preferred_name": "",
        "work_email": f"{local}@example.com",
        "personal_email": "",
        "department": department,
        "title": title,
        "manager_id": demo.people[0]["employee_id"],
        "location": "Berlin",
        "employment_type": "Full-Time",
        "status": "active" if days <= 0 else "pending",
        "hire_date": (date.today() + timedelta(days=days)).isoformat(),
        "termination_date": "",
    }
    demo.people.append(person)
    write_hris(demo)
    return person


async def plant_findings(demo: Demo, mover_id: str) -> None:
    """What the nightly review should catch: an account nobody in HR owns, and a privileged membership
    granted by hand in the IdP without an approval."""
    from pydantic import SecretStr

    from models.domain import AccountAttributes
    from tenure.compose import build_identity_provider
    from tenure.settings import IdPSettings

    async with build_identity_provider(
        IdPSettings(kind="scim", base_url=demo.idp_url, token=SecretStr(demo.idp_token))
    ) as idp:
        await idp.create_user(
            AccountAttributes(
                user_name="old.contractor", employee_id="C00042", given_name="Old", family_name="Contractor"
            )
        )
        account = await idp.find_user_by_employee_id(mover_id)
        groups = {g.name: g.id for g in await idp.list_groups()}
        if account is not None:
            await idp.add_member(groups["prod-admin"], account.id)


async def play_the_day(demo: Demo) -> None:
    say(
        "\n== 06:00  Baseline: Tenure's first full sync (sync/weekly-full-sync). Everyone hired before today "
        "(the first run's date, policy adopt_before) is *adopted*: linked, attributes and groups reconciled, "
        "no joiner tickets"
    )
    await run_deployment(demo, "baseline", "sync/weekly-full-sync", {"full": True})

    say("\n== 06:30  A broken HR export marks half of the company terminated (sync/weekly-full-sync)")
    await broken_export(demo)

    say("\n== 09:00  Hire #1 arrives by HRIS webhook (signed, POST /webhooks/generic)")
    ada = new_hire(demo, "Ada", "Lovelace", "Engineering", "Staff Engineer", days=3)
    say(
        f"     {ada['employee_id']} Ada Lovelace, Engineering, starts {ada['hire_date']} (account prepared disabled)"
    )
    await wait_for(demo, "hire by webhook", send_webhook(demo, "hired", ada["employee_id"]))

    say("\n== 10:30  Hire #2 entered by HR, started from its deployment (joiner/joiner)")
    grace = new_hire(demo, "Grace", "Hopper", "Finance", "Controller", days=0)
    say(f"     {grace['employee_id']} Grace Hopper, Finance, starts today")
    await run_deployment(demo, "hire", "joiner/joiner", {"employee_id": grace["employee_id"]})

    mover = next(p for p in demo.people if p["department"] == "Sales" and p["status"] == "active")
    say(
        f"\n== 13:00  Move: {mover['employee_id']} {mover['first_name']} {mover['last_name']} "
        "leaves Sales for Engineering (mover/mover)"
    )
    mover.update(department="Engineering", title="Software Engineer")
    write_hris(demo)
    await run_deployment(demo, "move", "mover/mover", {"employee_id": mover["employee_id"]})

    leaver = next(
        p
        for p in demo.people
        if p["status"] == "active"
        and p is not mover
        and p["employee_id"] not in (ada["employee_id"], grace["employee_id"])
    )
    say(
        f"\n== 16:00  Leave: {leaver['employee_id']} {leaver['first_name']} {leaver['last_name']} "
        "was terminated yesterday (leaver/leaver). The demo policy sends equipment returns to the RT queue "
        f"'{FACILITIES_QUEUE}', which nobody created yet: that step fails and shows red in the UI"
    )
    leaver.update(status="terminated", termination_date=(date.today() - timedelta(days=1)).isoformat())
    write_hris(demo)
    await run_deployment(demo, "leave", "leaver/leaver", {"employee_id": leaver["employee_id"]})

    say("\n== 20:00  Someone grants prod-admin by hand in the IdP; a contractor's account was never removed")
    await plant_findings(demo, mover["employee_id"])

    say("\n== 02:00  Nightly access review (access-review/nightly-access-review)")
    await run_deployment(demo, "review", "access-review/nightly-access-review")
    await decide_one(demo)


async def broken_export(demo: Demo) -> None:
    """An HR export that marks half of the company terminated: the sync's brake (more than 5% and more than 10
    people) refuses it (and the run fails, which ops are told about); the good export is written back."""
    good = [dict(p) for p in demo.people]
    for person in [p for p in demo.people if p["status"] == "active"][: len(demo.people) // 2]:
        person.update(status="terminated", termination_date=(date.today() - timedelta(days=1)).isoformat())
    write_hris(demo)
    await run_deployment(demo, "broken export", "sync/weekly-full-sync", {"full": True})
    demo.people = good
    write_hris(demo)


async def decide_one(demo: Demo) -> None:
    """The security lead revokes the hand-granted prod-admin membership (review-decide/review-decide, the UI form's
    flow); the rest of the campaign waits for its reviewers."""
    from sqlmodel import select

    from models.db import session_scope
    from models.review import ReviewItem

    with session_scope(demo.env["TENURE_DATABASE_URL"]) as session:
        items = session.exec(select(ReviewItem).where(ReviewItem.auto == False)).all()  # noqa: E712
        item = next((i for i in items if i.group == "prod-admin"), items[0] if items else None)
    if item is None:
        return
    say(f"\n== 09:00  The security lead decides review item {item.id}: revoke (review-decide/review-decide)")
    parameters = {
        "campaign_id": item.campaign_id,
        "item_id": item.id,
        "decision": "revoke",
        "by": "security-lead",
        "reason": "granted by hand, no approval on record",
    }
    await run_deployment(demo, "decide", "review-decide/review-decide", parameters)


def write_report(demo: Demo) -> Path:
    """``tenure report`` over the demo's audit trail: the page HR and IT read together."""
    import subprocess

    path = DEMO_DIR / "report.html"
    since = (date.today() - timedelta(weeks=4)).isoformat()
    result = subprocess.run(
        [sys.executable, "-m", "tenure.cli", "report", "--since", since, "--out", str(path)],
        cwd=ROOT,
        env=demo.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"tenure report failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return path


async def report(demo: Demo) -> bool:
    """Print accounts, tickets, review findings and the audit chain check; True when the chain verifies."""
    from sqlmodel import select

    from models.audit import AuditEvent, verify
    from models.db import session_scope

    database_url = demo.env["TENURE_DATABASE_URL"]
    headers = {"Authorization": f"Bearer {demo.idp_token}"}
    users = httpx.get(f"{demo.idp_url}Users", params={"count": 500}, headers=headers, timeout=30).json()
    resources = users.get("Resources", [])
    active = sum(1 for u in resources if u.get("active", True))
    say(f"\nIdP accounts: {len(resources)} ({active} active, {len(resources) - active} disabled)")
    with session_scope(database_url) as session:
        events = list(session.exec(select(AuditEvent).order_by(AuditEvent.seq)).all())
        result = verify(session=session)
    by_action: dict[str, int] = {}
    for event in events:
        if event.outcome == "applied":
            by_action[event.action] = by_action.get(event.action, 0) + 1
    say("Applied changes: " + ", ".join(f"{action} ×{n}" for action, n in sorted(by_action.items())))
    findings = [e for e in events if e.action == "review.finding"]
    if findings:
        say(f"Review findings ({len(findings)}):")
        for event in findings[:12]:
            kind = event.details.get("kind") or event.reason
            say(
                f"  - {kind}: {event.employee_id or event.target_id} {event.reason if kind != event.reason else ''}"
            )
    tickets = [e for e in events if e.action == "ticket.create" and e.outcome == "applied"]
    say(f"Tickets opened in {demo.ticketing}: {len(tickets)} (see {demo.ticket_url})")
    adopted = sorted({e.employee_id for e in events if e.action == "lifecycle.adopt" and e.employee_id})
    joiners = sorted(
        {
            e.employee_id
            for e in tickets
            if ":laptop:" in str((e.details or {}).get("reference")) and e.employee_id
        }
    )
    say(
        f"Adopted on the first sync, without joiner tickets: {len(adopted)} employees; "
        f"laptop tickets only for the new hires: {', '.join(joiners) or 'none'}"
    )
    say(f"Audit chain: {len(events)} events — {result.describe()}")
    say("\nFlow runs:")
    for what, name, state in demo.runs:
        say(f"  {state:<10} {name:<36} ({what})")
    return bool(result.ok)


def closing_summary(demo: Demo, *, once: bool) -> None:
    """Where to look, repeated at the end (where a reader's eyes are)."""
    user, password = demo.ticket_auth
    rel = STATE_PATH.relative_to(ROOT)
    say("\nWhere to look" + (" (until the stop below)" if once else "") + ":")
    say(
        f"  Prefect UI     {demo.ui_url}/runs  (runs, logs, artifacts; the leave's red task run is the failed step)"
    )
    say(f"  Accounts       GET {demo.idp_url}Users  (bearer token: info.idp_token in {rel})")
    say(f"  Tickets        {demo.ticket_url}  (user {user}, password {password}; also in {rel})")
    say(f"  Webhooks       POST {demo.webhook_url}/webhooks/generic")
    say(
        f"  Audit trail    TENURE_DATABASE_URL=sqlite:///{(DEMO_DIR / 'tenure.db').relative_to(ROOT)} "
        ".venv/bin/tenure audit verify"
    )
    say("  UI check       make ui-check  (headless Chromium: the runs, artifacts and the Failed task run)")


# -- lifecycle -----------------------------------------------------------------------------------------------


def start(demo: Demo) -> None:
    say("Starting the demo stack (logs in .tenure/demo/logs/):")
    port = UI_PORT if port_is_free(UI_PORT) else free_port()
    server, demo.api_url = start_prefect_server(home=DEMO_DIR / "prefect", port=port, ui=True)
    server.name = "prefect-server"
    demo.keep(server)
    demo.ui_url = demo.api_url.removesuffix("/api")
    demo.state.info.update(ui_url=demo.ui_url, api_url=demo.api_url)
    say(f"  Prefect    server and UI at {demo.ui_url} (SQLite in .tenure/demo/prefect)")
    start_idp(demo)
    start_ticketing(demo)
    demo.people = make_people()
    write_hris(demo)
    say(f"  HRIS       {len(demo.people)} generated people in {demo.hris_path.relative_to(ROOT)}")
    demo.webhook_secret = secrets.token_urlsafe(24)
    user, password = demo.ticket_auth
    demo.env = prefect_env(
        demo.api_url,
        home=DEMO_DIR / "prefect-client",
        PREFECT_WORKER_QUERY_SECONDS="1",
        PREFECT_WORKER_PREFETCH_SECONDS="2",
        TENURE_DATABASE_URL=f"sqlite:///{DEMO_DIR / 'tenure.db'}",
        TENURE_POLICY_FILE=str(write_policy()),
        TENURE_IDP__KIND="scim",
        TENURE_IDP__BASE_URL=demo.idp_url,
        TENURE_IDP__TOKEN=demo.idp_token,
        TENURE_HRIS__KIND="csv",
        TENURE_HRIS__PATH=str(demo.hris_path),
        TENURE_TICKETING__KIND="rt",
        TENURE_TICKETING__BASE_URL=demo.ticket_url,
        TENURE_TICKETING__USERNAME=user,
        TENURE_TICKETING__PASSWORD=password,
        TENURE_WEBHOOK__SECRET=demo.webhook_secret,
    )
    # This process is a Prefect client too (it starts and watches runs).
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "TENURE_DATABASE_URL"):
        os.environ[key] = demo.env[key]
    say("  Deploying  work pool tenure-process, then `prefect deploy --all` from prefect.yaml")
    cli(demo, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    cli(demo, "--no-prompt", "deploy", "--all")
    worker = demo.keep(
        spawn(
            "prefect-worker",
            [prefect_executable(), "worker", "start", "--pool", POOL, "--name", "demo-worker"],
            log_path=DEMO_DIR / "logs/worker.log",
            env=demo.env,
            cwd=ROOT,
        )
    )
    say(f"  Worker     demo-worker on {POOL} (pid {worker.pid})")
    hook_port = free_port()
    receiver = demo.keep(
        spawn(
            "webhook-receiver",
            [
                sys.executable,
                "-c",
                "from deployments.webhook_cli import app; app()",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(hook_port),
            ],
            log_path=DEMO_DIR / "logs/webhook.log",
            env=demo.env,
            cwd=ROOT,
        )
    )
    demo.webhook_url = f"http://127.0.0.1:{hook_port}"
    wait_for_http(f"{demo.webhook_url}/healthz", timeout=60, started=receiver)
    demo.state.info.update(
        webhook_url=demo.webhook_url,
        idp_url=demo.idp_url,
        idp_token=demo.idp_token,  # a throwaway demo token: `GET <idp_url>Users` with it as the bearer token
        ticket_url=demo.ticket_url,
        ticket_user=user,
        ticket_password=password,
    )
    demo.state.save()
    say(f"  Webhooks   receiver at {demo.webhook_url}/webhooks/generic")


def stop() -> int:
    """Stop what a previous demo left running (by the PIDs in the state file)."""
    state = StateFile.load(STATE_PATH)
    if not state.pids:
        say("No demo is running.")
        return 0
    stopped = state.stop_all()
    say(f"Stopped: {', '.join(stopped) if stopped else 'nothing was still running'}.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description="Tenure: a day in the life.")
    parser.add_argument("--stop", action="store_true", help="stop a running demo and exit")
    parser.add_argument(
        "--once", action="store_true", help="stop everything at the end instead of leaving it up"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.stop:
        return stop()
    if StateFile.load(STATE_PATH).pids:
        say("A previous demo is still running; stopping it first.")
        stop()
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    demo = Demo(state=StateFile(STATE_PATH))
    began = time.monotonic()
    ok = False
    try:
        start(demo)
        asyncio.run(play_the_day(demo))
        ok = asyncio.run(report(demo))
        report_path = write_report(demo)
    except KeyboardInterrupt:
        say("\nInterrupted: stopping the demo stack.")
        demo.state.stop_all()
        return 130
    except BaseException:
        say("\nThe demo failed; stopping the demo stack (logs stay in .tenure/demo/logs/).")
        demo.state.stop_all()
        raise
    say(f"\nDone in {time.monotonic() - began:.0f} s.")
    closing_summary(demo, once=args.once)
    if args.once:
        demo.state.stop_all()
        say("Stopped everything (--once): the URLs above are gone; run `make demo` to keep them up.")
    else:
        say("Everything is still running; stop it with `make demo-stop`.")
    say(f"Report for HR and IT: {report_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
