"""Access review at scale: a generated roster and directory (5 memberships per account unless told) streamed
through the engine's inventory, then the pure analysis.

The generated HRIS yields validated ``Employee`` models one by one and the generated directory yields pages of
200 validated ``Account`` models and, from ``list_groups``, ``Group`` models with their member ids, as
connectors do; neither keeps what it generated (every pass reads the seed's draws again). The engine's
``collect_inventory`` holds them as ``run_review`` does (compact records, :mod:`models.compact`, memberships of
``lifecycle.review.review_groups`` only, under ``engine.review.collector_paused``), then
``lifecycle.review.find`` runs on them, so the process's peak RSS is the engine's. For each size it prints the
wall and CPU time (user + system) of the inventory, split in the same run into the generated connectors' own
code (:class:`Meter`) and the engine's, of the analysis, and Tenure's own work (engine + analysis); the RSS once
the inventory is built, the process's peak RSS and the findings by kind; with ``--trace-memory`` also the peak
the analysis itself allocated (tracemalloc, in a second run). Run one size per process for a clean peak RSS.
``--generators-only`` times the generated connectors alone (read and dropped, nothing held). ``--whole-run``
times ``engine.review.run_review`` end to end instead: the same inventory and analysis, then the
auto-remediations through the applier, the recommendations, the campaign, a ticket per reviewer and an audit
row per finding, into a fresh SQLite audit database (or ``--database-url``) holding the population's approvals
as grants; with ``--deadline``, then the review-deadline job at the reminder date and past the deadline. No
assertions: these are figures.

    .venv/bin/python bench/review_bench.py [--sizes 1000000] [--memberships N] [--trace-memory]
    /usr/bin/time -v .venv/bin/python bench/review_bench.py --sizes 1000000    # whole-process figures
    .venv/bin/python bench/review_bench.py --sizes 1000000 --generators-only
    /usr/bin/time -v .venv/bin/python bench/review_bench.py --sizes 1000000 --whole-run
    .venv/bin/python bench/review_bench.py --sizes 20000 --whole-run --deadline    # then the deadline job
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import random
import resource
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlmodel import select  # noqa: E402

from connectors.errors import ConnectorError, InvalidRecordError  # noqa: E402
from engine.applier import Applier  # noqa: E402
from engine.auditor import Auditor  # noqa: E402
from engine.review import (  # noqa: E402
    Inventory,
    collect_inventory,
    collector_paused,
    process_deadlines,
    run_review,
)
from lifecycle.actions import Plan, RecordApproval  # noqa: E402
from lifecycle.policy import Policy  # noqa: E402
from lifecycle.review import count_by_kind, find, review_groups  # noqa: E402
from models.db import get_engine, session_scope  # noqa: E402
from models.domain import Account, Employee, EmployeeStatus, Group  # noqa: E402
from models.ledger import aware  # noqa: E402
from models.review import ReviewCampaign  # noqa: E402

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEPARTMENTS = ("Engineering", "Sales", "Finance", "Support", "Marketing", "IT", "People")
POLICY = Policy.model_validate(
    {
        "birthright": [
            {"groups": ["all-staff"]},
            *({"match": {"department": d}, "groups": [d.lower(), f"{d.lower()}-tools"]} for d in DEPARTMENTS),
            {"match": {"location": "Berlin"}, "groups": ["office-berlin"]},
        ],
        "privileged_groups": [{"name": "prod-admin", "recertify_days": 90}, {"name": "payments-approve"}],
        "review": {"dormant_days": 90, "sod_conflicts": [["payments-approve", "payments-create"]]},
    }
)
EXTRA_GROUPS = [f"app-{i:03d}" for i in range(300)] + ["payments-create", "prod-admin", "payments-approve"]


Drawn = tuple["array[float]", list[tuple[str, ...]], list[int | None], list[int | None]]
Draw = tuple[int, float, tuple[str, ...], int | None, int | None]


@dataclass(frozen=True)
class Population:
    """A generated population: 2 % orphans, 3 % terminated, half the accounts with a sign-in date, 300 app
    groups, privileged groups with and without approvals. Every pass over it draws the same values."""

    accounts: int
    memberships: int
    seed: int = 1

    def draws(self) -> Iterator[Draw]:
        """Every account's draw — ``(i, status roll, groups, approval age, sign-in age)`` — the same on every
        pass: the values are drawn once (:func:`drawn`, before anything is timed) and each pass reads them as
        plain tuples, so the figures hold the connectors' work and not the bench's bookkeeping."""
        rolls, groups, approved, signed_in = drawn(self)
        return zip(range(self.accounts), rolls, groups, approved, signed_in, strict=True)

    def approvals(self) -> dict[str, dict[str, datetime]]:
        """What the ledger's grants would say (``engine.review.load_approvals``)."""
        return {
            f"E{i:06d}": {"prod-admin": NOW - timedelta(days=approved)}
            for i, _, _, approved, _ in self.draws()
            if approved is not None
        }


@functools.cache
def drawn(population: Population) -> Drawn:
    """The seed's values for every account, compactly (~220 MiB at 1,000,000 accounts, held by the bench):
    status roll, groups, approval age, sign-in age."""
    rng = random.Random(population.seed)
    per_account = max(1, population.memberships // population.accounts)
    managed = sorted(POLICY.managed_groups)
    rolls: array[float] = array("d")
    groups: list[tuple[str, ...]] = []
    approved: list[int | None] = []
    signed_in: list[int | None] = []
    for i in range(population.accounts):
        department = DEPARTMENTS[i % len(DEPARTMENTS)].lower()
        rolls.append(rng.random())
        chosen = {"all-staff", department, f"{department}-tools"}
        while len(chosen) < per_account:
            chosen.add(rng.choice(EXTRA_GROUPS) if rng.random() < 0.97 else rng.choice(managed))
        approved.append(rng.randint(1, 200) if "prod-admin" in chosen and rng.random() < 0.7 else None)
        signed_in.append(rng.randint(0, 200) if rng.random() < 0.5 else None)
        groups.append(tuple(sorted(chosen)))
    return rolls, groups, approved, signed_in


class Meter:
    """Seconds spent in the generated connectors' own code (wall, ``perf_counter``: they never wait), summed
    between each resumption and the record it yields, so one run splits its inventory into the connectors'
    share and the engine's."""

    def __init__(self) -> None:
        self.seconds = 0.0


class GeneratedHRIS:
    """The roster as an HRIS connector streams it: one validated ``Employee`` at a time."""

    def __init__(self, population: Population, meter: Meter) -> None:
        self.population, self.meter = population, meter

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        started = time.perf_counter()
        for i, roll, _, _, _ in self.population.draws():
            if roll <= 0.02:  # 2 % orphans: no HR record
                continue
            terminated = roll < 0.03
            employee = Employee(
                employee_id=f"E{i:06d}",
                first_name="F",
                last_name="L",
                department=DEPARTMENTS[i % len(DEPARTMENTS)],
                location="Berlin" if i % 5 == 0 else "Remote",
                status=EmployeeStatus.TERMINATED if terminated else EmployeeStatus.ACTIVE,
                manager_id=f"E{i // 10:06d}",
                hire_date=date(2020, 1, 1),
                termination_date=date(2026, 1, 1) if terminated else None,
            )
            self.meter.seconds += time.perf_counter() - started
            yield employee
            started = time.perf_counter()
        self.meter.seconds += time.perf_counter() - started


class GeneratedDirectory:
    """The directory as an identity-provider connector reads it: pages of validated ``Account`` models (no
    groups on the user pages) and every ``Group`` with its member ids. Its writes (a whole run's
    auto-remediations) are accepted and change nothing: the generated directory keeps no state."""

    source = "generated"

    def __init__(self, population: Population, meter: Meter) -> None:
        self.population, self.meter = population, meter

    async def deactivate_user(self, account_id: str) -> None:
        return None

    async def remove_members(self, group_id: str, account_ids: Sequence[str]) -> dict[str, ConnectorError]:
        return {}

    async def iter_users(self, *, page_size: int = 200) -> AsyncIterator[list[Account]]:
        started = time.perf_counter()
        page: list[Account] = []
        for i, _, _, _, signed_in in self.population.draws():
            page.append(
                Account(
                    id=f"acc-{i}",
                    user_name=f"user{i}",
                    employee_id=f"E{i:06d}",
                    active=True,
                    last_sign_in=None if signed_in is None else NOW - timedelta(days=signed_in),
                )
            )
            if len(page) == page_size:
                self.meter.seconds += time.perf_counter() - started
                yield page
                started, page = time.perf_counter(), []
        self.meter.seconds += time.perf_counter() - started
        if page:
            yield page

    async def list_groups(self) -> list[Group]:
        started = time.perf_counter()
        members: dict[str, list[str]] = defaultdict(list)
        for i, _, names, _, _ in self.population.draws():
            for name in names:
                members[name].append(f"acc-{i}")
        groups: list[Group] = []
        while members:
            name, ids = members.popitem()
            groups.append(Group(id=f"group-{name}", name=name, member_ids=frozenset(ids)))
        self.meter.seconds += time.perf_counter() - started
        return groups


def _rss_mib() -> float:
    """The process's current resident set size (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


async def _drain(population: Population) -> int:
    """Read every record the generated connectors yield and drop it; the number of records."""
    meter = Meter()
    count = sum([len(g.member_ids) for g in await GeneratedDirectory(population, meter).list_groups()])
    async for _ in GeneratedHRIS(population, meter).iter_employees():
        count += 1
    async for page in GeneratedDirectory(population, meter).iter_users():
        count += len(page)
    return count


def _draw(population: Population) -> None:
    started = _clock()
    drawn(population)
    done = _clock()
    print(
        f"{population.accounts:>7} accounts drawn (not counted below): {done[0] - started[0]:6.2f} s wall, "
        f"{done[1] - started[1]:6.2f} s CPU",
        flush=True,
    )


def measure_generators(accounts: int, memberships: int) -> None:
    population = Population(accounts, memberships)
    _draw(population)
    started = _clock()
    with collector_paused():  # as the connectors run in run_review
        records = asyncio.run(_drain(population))
        done = _clock()
    print(
        f"{accounts:>7} accounts: the generated connectors alone ({records} records and memberships) "
        f"{done[0] - started[0]:6.2f} s wall, {done[1] - started[1]:6.2f} s CPU",
        flush=True,
    )


async def _inventory(population: Population, meter: Meter, into: list[Inventory]) -> None:
    """The engine's inventory, put in ``into`` rather than returned: Python 3.11's ``asyncio.run`` formats the
    repr of the task it ran, result included (a main-branch inventory's repr was the whole roster)."""
    hris, directory = GeneratedHRIS(population, meter), GeneratedDirectory(population, meter)
    into.append(await collect_inventory(hris, directory, judged=review_groups(POLICY)))  # type: ignore[arg-type]


def measure(accounts: int, memberships: int, trace_memory: bool) -> None:
    population = Population(accounts, memberships)
    _draw(population)
    approvals = population.approvals()
    meter = Meter()
    started = _clock()
    held: list[Inventory] = []
    with collector_paused():  # as run_review builds and analyses the inventory
        asyncio.run(_inventory(population, meter, held))
        inventory = held.pop()
        read = _clock()
        inventory_mib = _rss_mib()
        analysis = _clock()
        findings = find(inventory.employees, inventory.accounts, approvals, NOW, POLICY)
        done = _clock()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    traced = ""
    if trace_memory:
        del findings
        gc.collect()
        tracemalloc.start()
        findings = find(inventory.employees, inventory.accounts, approvals, NOW, POLICY)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = f", analysis allocated {peak / 2**20:.1f} MiB (tracemalloc)"
    counts = ", ".join(f"{k} {v}" for k, v in count_by_kind(findings).items())
    engine = read[0] - started[0] - meter.seconds
    print(
        f"{accounts:>7} accounts, {inventory.memberships:>7} memberships, {len(inventory.employees)} employees: "
        f"inventory {read[0] - started[0]:6.2f} s wall, {read[1] - started[1]:6.2f} s CPU "
        f"(the generated connectors {meter.seconds:6.2f} s, the engine {engine:6.2f} s); "
        f"analysis {done[0] - analysis[0]:6.2f} s wall, {done[1] - analysis[1]:6.2f} s CPU; "
        f"Tenure's own work (engine + analysis) {engine + done[0] - analysis[0]:6.2f} s; "
        f"RSS with the inventory {inventory_mib:6.1f} MiB, process peak RSS {peak_mib:6.1f} MiB{traced} | "
        f"{len(findings)} findings ({counts})",
        flush=True,
    )


async def _record_approvals(database_url: str, approvals: dict[str, dict[str, datetime]]) -> None:
    """The population's approvals as the ledger's grants, recorded through the one door as ``tenure approve``
    records them (in batches: this is set-up, not timed)."""
    applier = Applier(auditor=Auditor(database_url, actor="bench"))
    plans = [
        (
            Plan(
                employee_id=employee_id,
                event="none",
                actions=[
                    RecordApproval(
                        employee_id=employee_id, group=g, decided_by="lead", decided_at=at, reason="bench"
                    )
                    for g, at in groups.items()
                ],
            ),
            None,
        )
        for employee_id, groups in approvals.items()
    ]
    for start in range(0, len(plans), 250):
        await applier.apply_many(plans[start : start + 250])


def measure_whole_run(accounts: int, memberships: int, database_url: str | None, deadline: bool) -> None:
    """``engine.review.run_review`` end to end as a review flow runs it, less Prefect: the inventory, the
    analysis, then what follows it — the auto-remediations through the applier (ledger entries and audit rows;
    the generated directory accepts the writes), the recommendations, the campaign's items and assignments,
    one ticket per reviewer (no ticketing system: each recorded skipped) and a ``review.finding`` audit row per
    finding — into a fresh SQLite audit database (or ``database_url``). With ``deadline``, then the review-
    deadline job twice, as its schedule runs it: at the reminder date (a reminder per reviewer) and past the
    deadline (the policy's ``on_deadline`` rule settles every undecided item; no reviewer decided any)."""
    population = Population(accounts, memberships)
    _draw(population)
    with tempfile.TemporaryDirectory() as folder:
        url = database_url or f"sqlite:///{folder}/audit.db"
        get_engine(url)  # the schema, before the clock starts
        asyncio.run(_record_approvals(url, population.approvals()))
        meter = Meter()
        started = _clock()
        review = asyncio.run(
            run_review(
                hris=GeneratedHRIS(population, meter),  # type: ignore[arg-type]
                idp=GeneratedDirectory(population, meter),  # type: ignore[arg-type]
                ticketing=None,
                policy=POLICY,
                auditor=Auditor(url, actor="bench"),
                now=NOW,
            )
        )
        done = _clock()
        if deadline:
            _deadlines(url, population)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    counts = ", ".join(f"{k} {v}" for k, v in review.counts.items())
    print(
        f"{accounts:>7} accounts, whole run_review: {done[0] - started[0]:6.2f} s wall, "
        f"{done[1] - started[1]:6.2f} s CPU (the generated connectors {meter.seconds:6.2f} s; Tenure's own work "
        f"{done[0] - started[0] - meter.seconds:6.2f} s); {len(review.auto)} auto-remediated, "
        f"{len(review.tickets)} reviewers' tickets; process peak RSS {peak_mib:6.1f} MiB | "
        f"{len(review.findings)} findings ({counts})",
        flush=True,
    )


def _deadlines(url: str, population: Population) -> None:
    with session_scope(url) as session:
        campaign = session.exec(select(ReviewCampaign)).one()
        remind_at, deadline_at = aware(campaign.remind_at), aware(campaign.deadline_at)
    for label, moment in (("reminders", remind_at), ("deadline", deadline_at)):
        meter = Meter()
        started = _clock()
        report = asyncio.run(
            process_deadlines(
                database_url=url,
                idp=GeneratedDirectory(population, meter),  # type: ignore[arg-type]
                ticketing=None,
                policy=POLICY,
                auditor=Auditor(url, actor="bench"),
                now=moment + timedelta(minutes=1),
            )
        )
        done = _clock()
        print(
            f"  review deadlines, {label}: {done[0] - started[0]:6.2f} s wall, {done[1] - started[1]:6.2f} s CPU "
            f"(the generated connectors {meter.seconds:6.2f} s); {len(report.reminded)} reminded, "
            f"{len(report.escalated)} escalated, {len(report.deadline_items)} items settled",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,50000", help="comma-separated account counts")
    parser.add_argument("--memberships", type=int, default=None, help="memberships in all (5 per account)")
    parser.add_argument("--trace-memory", action="store_true", help="also trace the analysis' allocations")
    parser.add_argument("--generators-only", action="store_true", help="time the generated connectors alone")
    parser.add_argument(
        "--whole-run", action="store_true", help="time run_review end to end (audit database)"
    )
    parser.add_argument("--database-url", default=None, help="with --whole-run: the audit database (fresh)")
    parser.add_argument(
        "--deadline", action="store_true", help="with --whole-run: then the reminders and the deadline"
    )
    args = parser.parse_args()
    for size in (int(s) for s in args.sizes.split(",")):
        if args.whole_run:
            measure_whole_run(size, args.memberships or 5 * size, args.database_url, args.deadline)
        elif args.generators_only:
            measure_generators(size, args.memberships or 5 * size)
        else:
            measure(size, args.memberships or 5 * size, args.trace_memory)


if __name__ == "__main__":
    main()
