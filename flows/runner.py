"""A long-lived runner for the lifecycle deployments: their flow runs execute inside this process.

A process worker (and Prefect's own ``serve()``, which spawns a ``multiprocessing`` child per run) starts a
fresh interpreter for every flow run: Python, Prefect, the connectors and the flows are imported again, about
3 s on a 2-core box before a joiner's first request. This runner imports them once and runs each flow run in
a thread of its own (its own event loop, so a blocking call in one run never stalls another):

1. every ``poll_seconds`` it asks the Prefect API for scheduled runs of the deployments of the lifecycle flows
   (``joiner``, ``mover``, ``leaver``, ``reconcile-employee``, found by *flow* name, whatever the deployments
   are called; the list is re-read every ``refresh_seconds`` and while it is empty) that are due;
2. it claims a run by proposing ``Pending``: the server refuses a second claim (Prefect's
   ``PreventPendingTransitions`` rule), so a process worker polling the same deployments never runs it twice;
3. it runs the flow with Prefect's engine (``prefect.flow_engine.run_flow``) in this process, at most ``limit``
   at a time.

The trade-off (deployments/DEPLOY.md, "A long-lived lifecycle runner"): no process isolation — a crash or a
leak of one run takes the others with it, cancelling a run from the UI only marks it (the code is not killed),
and new code needs a restart of the runner.

    python -m flows.runner [--poll-seconds 1] [--limit 4]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow
from prefect.states import Pending
from prefect.utilities.engine import propose_state

from flows.lifecycle import joiner, leaver, mover, reconcile_employee

__all__ = ["LIFECYCLE_FLOWS", "LifecycleRunner", "main"]

LIFECYCLE_FLOWS: Mapping[str, Flow[..., Any]] = {
    f.name: f for f in (joiner, mover, leaver, reconcile_employee)
}
logger = logging.getLogger("tenure.runner")


class LifecycleRunner:
    """Claims due runs of the lifecycle deployments and runs them in this process (see the module docstring)."""

    def __init__(self, *, poll_seconds: float = 1.0, limit: int = 4, refresh_seconds: float = 30.0) -> None:
        self.poll_seconds = poll_seconds
        self.limit = limit
        self.refresh_seconds = refresh_seconds  # how long the list of watched deployments is reused
        self._watched: dict[UUID, Flow[..., Any]] = {}
        self._watched_at = -math.inf
        self.stopping = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="tenure-run")
        self._running: dict[UUID, Future[None]] = {}

    async def deployments(self, client: PrefectClient) -> dict[UUID, Flow[..., Any]]:
        """Deployment id → flow object for every deployment of a lifecycle flow."""
        lifecycle = FlowFilter(name=FlowFilterName(any_=list(LIFECYCLE_FLOWS)))
        names = {f.id: f.name for f in await client.read_flows(flow_filter=lifecycle)}
        found = await client.read_deployments(flow_filter=lifecycle)
        return {d.id: LIFECYCLE_FLOWS[names[d.flow_id]] for d in found if d.flow_id in names}

    async def poll_once(self, client: PrefectClient) -> int:
        """Claim and start every due run there is room for; returns how many were started."""
        self._running = {k: f for k, f in self._running.items() if not f.done()}
        room = self.limit - len(self._running)
        if room <= 0:
            return 0
        if not self._watched or time.monotonic() - self._watched_at > self.refresh_seconds:
            self._watched, self._watched_at = await self.deployments(client), time.monotonic()
        watched = self._watched
        if not watched:
            return 0
        due = await client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=list(watched), scheduled_before=datetime.now(UTC)
        )
        started = 0
        for flow_run in due:
            if started >= room or self.stopping.is_set():
                break
            if flow_run.id in self._running or flow_run.deployment_id not in watched:
                continue
            if not await self.claim(client, flow_run):
                continue
            flow = watched[flow_run.deployment_id]
            self._running[flow_run.id] = self._pool.submit(self._execute, flow, flow_run)
            started += 1
        return started

    @staticmethod
    async def claim(client: PrefectClient, flow_run: FlowRun) -> bool:
        """Move the run to ``Pending``; False when another runner or worker claimed it first."""
        try:
            state = await propose_state(client, Pending(), flow_run_id=flow_run.id)
        except Abort:
            return False
        return state.is_pending()

    @staticmethod
    def _execute(flow: Flow[..., Any], flow_run: FlowRun) -> None:
        """One flow run on this thread's own event loop; its states and logs go to the Prefect API."""
        logger.info("running %s (%s)", flow_run.name, flow_run.id)
        try:
            outcome = run_flow(flow, flow_run=flow_run, return_type="state")
            if asyncio.iscoroutine(outcome):
                asyncio.run(outcome)
        except BaseException:  # the engine records the run's final state; keep the runner alive
            logger.exception("flow run %s ended with an error", flow_run.id)

    async def run(self) -> None:
        """Poll until :meth:`stop`; then wait for the runs in progress."""
        async with get_client() as client:
            while not self.stopping.is_set():
                try:
                    await self.poll_once(client)
                except Exception:  # the API being briefly away must not end the runner
                    logger.exception("polling the Prefect API failed; retrying")
                await asyncio.sleep(self.poll_seconds)
        self._pool.shutdown(wait=True)

    def stop(self, *_: Any) -> None:
        self.stopping.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for due runs (1)")
    parser.add_argument("--limit", type=int, default=4, help="flow runs at a time (4)")
    args = parser.parse_args(argv)
    handler = logging.StreamHandler()  # Prefect configures the root logger; this one reports on its own
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    runner = LifecycleRunner(poll_seconds=args.poll_seconds, limit=args.limit)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    logger.info(
        "lifecycle runner: flows %s, polling every %g s", ", ".join(LIFECYCLE_FLOWS), args.poll_seconds
    )
    asyncio.run(runner.run())


if __name__ == "__main__":
    main()
