"""Benchmark (c): HRIS webhook → account active in the IdP, through a real Prefect server and worker.

Starts, all on 127.0.0.1 on free ports (reusing :mod:`sandbox.processes` and :mod:`sandbox.demo`): a Prefect
server (SQLite, no UI), scim2-server with the policy's groups as the IdP, the RT-shaped sandbox ticketing API,
the webhook receiver (``tenure webhook serve``), deploys ``joiner/joiner`` from ``prefect.yaml``, then for each
executor (``--runners``: ``worker``, a process worker that starts a flow-run process per run, and
``in-process``, the long-lived lifecycle runner of :mod:`flows.runner`) and polling interval
(``PREFECT_WORKER_QUERY_SECONDS`` / ``--poll-seconds``, default 1 and 10) starts one executor and measures
``--hires`` sequential hires: append the employee to the CSV HRIS (active, hired yesterday), send a
signed generic webhook (``deployments.webhook.sign_generic``), poll scim2-server until the account exists and
is active. One unmeasured warm-up hire precedes each series.

Per hire it records (one wall clock; Prefect timestamps come from the server on the same machine):
webhook sent → 2xx answered, → flow run created (``flow_run.created``), → Pending (the worker picked it up),
→ Running (the flow process started), → account active (seen by polling), → Completed; per series the
process CPU (user + system, from ``/proc``) of the executor, its reaped flow-run processes included.

No assertions: figures only. Everything started is stopped by process group at the end, also on Ctrl-C or an
exception. Usage::

    .venv/bin/python bench/webhook_latency.py [--hires 10] [--poll-seconds 1,10] [--runners worker,in-process]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the project importable
    sys.path.insert(0, str(ROOT))

import sandbox.demo as demo_module  # noqa: E402
from sandbox.demo import (  # noqa: E402
    Demo,
    cli,
    make_people,
    new_hire,
    send_webhook,
    start_idp,
    start_sandbox_ticketing,
    write_hris,
)
from sandbox.processes import (  # noqa: E402
    Started,
    StateFile,
    free_port,
    prefect_env,
    prefect_executable,
    spawn,
    start_prefect_server,
    wait_for_http,
)

__all__ = ["HireTiming", "main"]

BENCH_DIR = ROOT / ".tenure" / "bench-webhook"
POOL = "tenure-process"
HIRE_TIMEOUT = 300.0
SCIM_POLL_SECONDS = 0.05
FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Barbara",
    "Edsger",
    "Frances",
    "Donald",
    "Margaret",
    "Ken",
    "Radia",
    "Dennis",
    "Hedy",
    "John",
    "Karen",
    "Leslie",
    "Mary",
    "Niklaus",
    "Shafi",
    "Tim",
    "Vint",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Liskov",
    "Dijkstra",
    "Allen",
    "Knuth",
    "Hamilton",
    "Thompson",
    "Perlman",
    "Ritchie",
    "Lamarr",
    "Backus",
    "Jones",
    "Lamport",
    "Keller",
    "Wirth",
    "Goldwasser",
    "Berners",
    "Cerf",
]
DEPARTMENTS = [
    ("Engineering", "Software Engineer"),
    ("Finance", "Accountant"),
    ("Sales", "Account Executive"),
]


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class HireTiming:
    """Wall-clock instants (``time.time()``) of one hire; ``None`` where not observed."""

    employee_id: str
    sent: float
    answered: float
    status: int
    created: float | None = None
    pending: float | None = None
    running: float | None = None
    active: float | None = None
    final: float | None = None
    final_state: str = ""

    def since_sent(self, instant: float | None) -> float | None:
        return None if instant is None else instant - self.sent


# -- the stack -----------------------------------------------------------------------------------------------


def start_stack(demo: Demo) -> None:
    """Prefect server, IdP, sandbox ticketing, HRIS, deployment and webhook receiver (no worker yet)."""
    server, demo.api_url = start_prefect_server(home=BENCH_DIR / "prefect", port=free_port(), ui=False)
    demo.keep(server)
    say(f"  Prefect    server at {demo.api_url} (SQLite under {BENCH_DIR.relative_to(ROOT)})")
    start_idp(demo)  # logs under sandbox.demo.DEMO_DIR, pointed at BENCH_DIR by main()
    start_sandbox_ticketing(demo)  # logs under sandbox.demo.DEMO_DIR, pointed at BENCH_DIR by main()
    password = demo.ticket_auth[1]
    say(f"  Tickets    sandbox ticketing API at {demo.ticket_url}")
    demo.people = make_people()
    write_hris(demo)
    demo.webhook_secret = secrets.token_urlsafe(24)
    demo.env = prefect_env(
        demo.api_url,
        home=BENCH_DIR / "prefect-client",
        TENURE_DATABASE_URL=f"sqlite:///{BENCH_DIR / 'tenure.db'}",
        TENURE_POLICY_FILE=str(ROOT / "examples/policy.yaml"),
        TENURE_IDP__KIND="scim",
        TENURE_IDP__BASE_URL=demo.idp_url,
        TENURE_IDP__TOKEN=demo.idp_token,
        TENURE_HRIS__KIND="csv",
        TENURE_HRIS__PATH=str(demo.hris_path),
        TENURE_TICKETING__KIND="rt",
        TENURE_TICKETING__BASE_URL=demo.ticket_url,
        TENURE_TICKETING__USERNAME="root",
        TENURE_TICKETING__PASSWORD=password,
        TENURE_WEBHOOK__SECRET=demo.webhook_secret,
    )
    for key in ("PREFECT_API_URL", "PREFECT_HOME", "TENURE_DATABASE_URL"):
        os.environ[key] = demo.env[key]  # this process reads flow runs from the same server
    cli(demo, "work-pool", "create", POOL, "--type", "process", "--overwrite")
    cli(demo, "--no-prompt", "deploy", "--all")
    paused = asyncio.run(_pause_all_but_joiner())
    say(
        f"  Deployed   prefect.yaml on work pool {POOL}; paused the {paused} others (their schedules would add "
        "runs)"
    )
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
            log_path=BENCH_DIR / "logs/webhook.log",
            env=demo.env,
            cwd=ROOT,
        )
    )
    demo.webhook_url = f"http://127.0.0.1:{hook_port}"
    wait_for_http(f"{demo.webhook_url}/healthz", timeout=60, started=receiver)
    say(f"  Webhooks   receiver at {demo.webhook_url}/webhooks/generic")


async def _pause_all_but_joiner() -> int:
    """Pause every deployment but ``joiner/joiner`` so no scheduled sync or review runs during the bench."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate

    async with get_client() as client:
        flows = {flow.id: flow.name for flow in await client.read_flows()}
        others = [d for d in await client.read_deployments() if flows.get(d.flow_id) != "joiner"]
        for deployment in others:
            await client.update_deployment(deployment.id, DeploymentUpdate(paused=True))
    return len(others)


def start_worker(demo: Demo, query_seconds: float) -> Started:
    """One process worker polling every ``query_seconds``; returns once the server lists it as online."""
    name = f"bench-worker-{query_seconds:g}s"
    env = {**demo.env, "PREFECT_WORKER_QUERY_SECONDS": f"{query_seconds:g}"}
    worker = demo.keep(
        spawn(
            name,
            [prefect_executable(), "worker", "start", "--pool", POOL, "--name", name],
            log_path=BENCH_DIR / f"logs/{name}.log",
            env=env,
            cwd=ROOT,
        )
    )
    asyncio.run(_wait_worker_online(name, worker))
    return worker


async def _wait_worker_online(name: str, worker: Started, timeout: float = 90.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while True:
            if worker.process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{worker.log_tail()}")
            workers = await client.read_workers_for_work_pool(POOL)
            if any(w.name == name for w in workers):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not register within {timeout:.0f} s:\n{worker.log_tail()}")
            await asyncio.sleep(0.2)


def start_runner(demo: Demo, poll_seconds: float, timeout: float = 120.0) -> Started:
    """The long-lived lifecycle runner (``python -m flows.runner``); returns once it logs that it polls."""
    name = f"bench-runner-{poll_seconds:g}s"
    runner = demo.keep(
        spawn(
            name,
            [sys.executable, "-m", "flows.runner", "--poll-seconds", f"{poll_seconds:g}"],
            log_path=BENCH_DIR / f"logs/{name}.log",
            env=demo.env,
            cwd=ROOT,
        )
    )
    deadline = time.monotonic() + timeout
    while "lifecycle runner:" not in runner.log_tail(100_000):
        if runner.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{runner.log_tail()}")
        time.sleep(0.2)
    return runner


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(v) for v in fields[11:15])
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def stop_worker(demo: Demo, worker: Started) -> None:
    worker.stop()
    demo.state.pids.pop(worker.name, None)
    demo.state.save()


# -- one hire ------------------------------------------------------------------------------------------------


def account_active(demo: Demo, client: httpx.Client, employee_id: str) -> bool:
    """True when scim2-server has a User with ``externalId`` = ``employee_id`` and ``active`` true."""
    response = client.get(f"{demo.idp_url}Users", params={"filter": f'externalId eq "{employee_id}"'})
    response.raise_for_status()
    return any(user.get("active") is True for user in response.json().get("Resources", []))


def hire(demo: Demo, index: int) -> HireTiming:
    """Append one active joiner to the HRIS, send the signed webhook, wait for the account, then the run."""
    department, title = DEPARTMENTS[index % len(DEPARTMENTS)]
    first, last = FIRST[index % len(FIRST)], LAST[(index + index // len(FIRST)) % len(LAST)]
    person = new_hire(demo, first, last, department, title, days=-1)  # active, hired yesterday
    employee_id = person["employee_id"]
    sent = time.time()
    run_id = send_webhook(demo, "hired", employee_id)  # raises unless 202
    timing = HireTiming(employee_id=employee_id, sent=sent, answered=time.time(), status=202)
    deadline = time.monotonic() + HIRE_TIMEOUT
    with httpx.Client(headers={"Authorization": f"Bearer {demo.idp_token}"}, timeout=10) as client:
        while not account_active(demo, client, employee_id):
            if time.monotonic() > deadline:
                break
            time.sleep(SCIM_POLL_SECONDS)
        else:
            timing.active = time.time()
    asyncio.run(_read_run(timing, run_id, deadline))
    return timing


async def _read_run(timing: HireTiming, run_id: str, deadline: float) -> None:
    """Wait for the flow run to be final, then read created/Pending/Running/final from its state history."""
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        while True:
            run = await client.read_flow_run(uuid.UUID(run_id))
            if (run.state is not None and run.state.is_final()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        states = await client.read_flow_run_states(uuid.UUID(run_id))
    timing.created = run.created.timestamp() if run.created else None
    timing.final_state = run.state.name if run.state else "?"
    for state in sorted(states, key=lambda s: s.timestamp):
        instant = state.timestamp.timestamp()
        if state.type.value == "PENDING" and timing.pending is None:
            timing.pending = instant
        elif state.type.value == "RUNNING" and timing.running is None:
            timing.running = instant
        elif state.is_final():
            timing.final = instant


# -- the report ----------------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:,.0f}"


def _between(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


COLUMNS: list[tuple[str, Any]] = [
    ("webhook → 2xx", lambda t: t.answered - t.sent),
    ("webhook → run created", lambda t: t.since_sent(t.created)),
    ("created → Pending (worker poll)", lambda t: _between(t.created, t.pending)),
    ("Pending → Running (process start)", lambda t: _between(t.pending, t.running)),
    ("Running → account active", lambda t: _between(t.running, t.active)),
    ("webhook → account active", lambda t: t.since_sent(t.active)),
    ("Running → Completed", lambda t: _between(t.running, t.final)),
]


def nearest_rank(values: list[float], q: float) -> float:
    """The nearest-rank percentile (with 10 values, p95 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def report(executor: str, query_seconds: float, timings: list[HireTiming], cpu_seconds: float) -> str:
    """Markdown: one row per hire, then min/median/p95/max per column (milliseconds)."""
    header = "| hire | " + " | ".join(name for name, _ in COLUMNS) + " | final |"
    lines = [
        f"### {executor} polling every {query_seconds:g} s, {len(timings)} sequential hires, milliseconds",
        "",
        f"Process CPU of the {executor} (user + system, flow-run processes included): {cpu_seconds:.1f} s, "
        f"{cpu_seconds / max(1, len(timings)):.2f} s per hire.",
        "",
        header,
        "|" + "---|" * (len(COLUMNS) + 2),
    ]
    for timing in timings:
        cells = " | ".join(_ms(get(timing)) for _, get in COLUMNS)
        lines.append(f"| {timing.employee_id} | {cells} | {timing.final_state} |")
    for label, stat in (
        ("min", min),
        ("median", statistics.median),
        ("p95", lambda v: nearest_rank(v, 0.95)),
        ("max", max),
    ):
        cells = []
        for _, get in COLUMNS:
            values = [v for v in (get(t) for t in timings) if v is not None]
            cells.append(f"**{_ms(stat(values))}**" if values else "—")
        lines.append(f"| {label} | " + " | ".join(cells) + " | |")
    return "\n".join(lines)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs (`nproc` = {len(os.sched_getaffinity(0))}), {memory:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"
    )


# -- main ----------------------------------------------------------------------------------------------------


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # run the clean-up in main() on SIGTERM too


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/webhook_latency.py", description=__doc__.split("\n")[0])
    parser.add_argument("--hires", type=int, default=10, help="sequential hires per polling interval (10)")
    parser.add_argument(
        "--poll-seconds",
        default="1,10",
        help="comma-separated PREFECT_WORKER_QUERY_SECONDS values, one series each (1,10)",
    )
    parser.add_argument(
        "--runners",
        default="worker,in-process",
        help="comma-separated executors, one series per polling interval each: worker, in-process",
    )
    args = parser.parse_args(argv)
    runners = [v.strip() for v in args.runners.split(",") if v.strip()]
    unknown = set(runners) - {"worker", "in-process"}
    if unknown:
        parser.error(f"unknown runner(s): {', '.join(sorted(unknown))}")
    intervals = [float(v) for v in args.poll_seconds.split(",") if v.strip()]
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    signal.signal(signal.SIGTERM, _terminate)
    shutil.rmtree(BENCH_DIR, ignore_errors=True)
    demo_module.DEMO_DIR = BENCH_DIR  # start_idp() writes its log under DEMO_DIR
    demo = Demo(state=StateFile(BENCH_DIR / "state.json"), hris_path=BENCH_DIR / "hris.csv")
    say(f"Machine: {machine()}")
    say("Starting the stack (logs in .tenure/bench-webhook/logs/):")
    reports: list[str] = []
    try:
        start_stack(demo)
        index = 0
        for executor in runners:
            for query_seconds in intervals:
                if executor == "worker":
                    worker = start_worker(demo, query_seconds)
                else:
                    worker = start_runner(demo, query_seconds)
                say(f"\n{executor} {worker.name} online; warm-up hire (not counted)")
                warm = hire(demo, index)
                index += 1
                say(
                    f"  warm-up {warm.employee_id}: account active after {_ms(warm.since_sent(warm.active))} ms"
                )
                cpu_before = process_cpu(worker.pid)
                timings = []
                for _ in range(args.hires):
                    timing = hire(demo, index)
                    index += 1
                    timings.append(timing)
                    say(
                        f"  {timing.employee_id}: 2xx {_ms(timing.answered - timing.sent)} ms, account active "
                        f"{_ms(timing.since_sent(timing.active))} ms, run {timing.final_state}"
                    )
                cpu = process_cpu(worker.pid) - cpu_before
                stop_worker(demo, worker)
                reports.append(report(executor, query_seconds, timings, cpu))
                say("\n" + reports[-1])
    except KeyboardInterrupt:
        say("\nInterrupted: stopping everything.")
        return 130
    finally:
        demo.state.stop_all()
    say("\nStopped everything.\n")
    say("\n\n".join(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
