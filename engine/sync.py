"""The sync engine: reconcile every (changed) employee in one pass, with reads in bulk and writes only for diffs.

Plain async, no Prefect: the ``sync`` flow (:mod:`flows.sync`) wraps :meth:`SyncEngine.apply_batch` in a task
per batch, and ``tenure sync`` calls :meth:`SyncEngine.run` directly.

One run:

1. **Read.** The HRIS — incremental by default: ``changed_since(cursor)`` (cursor ``hris`` in
   :class:`models.ledger.SyncCursor`) and ``get_employee`` per changed id with bounded concurrency, or one
   ``iter_employees`` pass when more than :data:`FETCH_ONE_BY_ONE_LIMIT` ids changed (one read of an export
   beats thousands); ``full``: every employee. Invalid records are audited (``hris.record.invalid``, row and
   reason) and counted; the rest goes on. The IdP is read ONCE: ``iter_users`` pages give employee id →
   account and the taken userNames, one ``list_groups`` gives every membership.
2. **Plan** every employee with the pure planner, approvals from one ledger query. Actions the run cannot or
   need not repeat are dropped: SCHEDULE without a scheduler (this sync *is* the nightly re-plan), tickets,
   approval requests and schedules the ledger already holds, and a manager change to a manager who has no
   account (the IdP cannot express it yet; it is written once the manager's account exists).
3. **Brake** (:mod:`lifecycle.brake`): too many disables refuse the whole run; nothing is applied.
4. **Apply** only non-empty plans through :class:`engine.applier.Applier`, in batches of ``batch_size``
   employees with at most ``max_concurrency`` at a time. Joiners whose manager is created in the same run go
   in a later wave, so the manager reference can be resolved when they are created.
5. **Cursor**: moved (incremental runs only) once every change it covers was processed without a failure;
   a crash or a failure re-reads those changes next time rather than skipping them.

``partition``/``partitions`` split the employees by a stable hash of the employee id, so several workers
can each take a disjoint share; each share keeps its own cursor. Two shares may race for one new userName
(the loser fails with a conflict and gets the next free name on the next run), and a joiner whose manager
is created by another share afterwards gets the manager reference on the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.errors import ConnectorError, InvalidRecordError, NotFoundError
from connectors.protocols import HRIS, Connectors, IdentityProvider, Notifier, Ticketing
from engine.applier import Applier, ApplyReport, Scheduler
from engine.auditor import Auditor
from engine.directory import DirectoryRead, read_directory
from engine.locks import LockHeld
from engine.preflight import require_groups
from engine.reconcile import histories
from lifecycle.actions import ACCOUNT_KINDS, Plan
from lifecycle.brake import BrakeDecision, RosterShrinkDecision, check_brake, check_roster_shrink
from lifecycle.policy import Policy
from lifecycle.sync_plan import Snapshot, TakenNames, Work, plan_all, trim_plan
from models.audit import Outcome
from models.db import session_scope
from models.domain import Account, Employee
from models.ledger import cursor_get, open_employees, roster_count_get, sent_notices, settled_side_effects

__all__ = [
    "SYNC_CURSOR",
    "DEFAULT_BATCH_SIZE",
    "FETCH_ONE_BY_ONE_LIMIT",
    "SyncOptions",
    "SyncReport",
    "BatchResult",
    "SyncEngine",
    "partition_of",
]

log = logging.getLogger("tenure.sync")

SYNC_CURSOR = "hris"
DEFAULT_BATCH_SIZE = 250
FETCH_ONE_BY_ONE_LIMIT = 200
PAGE_SIZE = 500  # users per IdP page; providers that allow fewer send fewer (RFC 7644 §3.4.2.4)

BatchRunner = Callable[[int], Awaitable["BatchResult"]]
Progress = Callable[[int, int], Awaitable[None] | None]


def partition_of(employee_id: str, partitions: int) -> int:
    """The share (0-based) an employee belongs to: a stable hash, the same on every worker and run."""
    if partitions <= 1:
        return 0
    digest = hashlib.sha256(employee_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % partitions


@dataclass(frozen=True)
class SyncOptions:
    """What to sync and how. ``max_concurrency``: employees applied at once (the IdP client limits further)."""

    full: bool = False
    dry_run: bool = False
    override_brake: bool = False
    partition: int = 0
    partitions: int = 1
    batch_size: int = DEFAULT_BATCH_SIZE
    max_concurrency: int = 8
    reread_directory: bool = False  # read a change-tracking directory in full, not from the copy + delta

    def __post_init__(self) -> None:
        if self.partitions < 1 or not 0 <= self.partition < self.partitions:
            raise ValueError(f"partition must be in 0..{self.partitions - 1} (partitions={self.partitions})")
        if self.batch_size < 1 or self.max_concurrency < 1:
            raise ValueError("batch_size and max_concurrency must be at least 1")

    @property
    def mode(self) -> str:
        return "full" if self.full else "incremental"

    @property
    def cursor_name(self) -> str:
        """``hris`` for a single worker; each partition of a split run keeps its own cursor."""
        return SYNC_CURSOR if self.partitions == 1 else f"{SYNC_CURSOR}:{self.partition}/{self.partitions}"

    def mine(self, employee_id: str) -> bool:
        return partition_of(employee_id, self.partitions) == self.partition


@dataclass
class BatchResult:
    """What applying one batch did (counts and ids only)."""

    number: int
    employees: int = 0
    changed: int = 0  # employees with at least one applied IdP change
    changes: int = 0  # applied IdP actions (account state and memberships)
    other_applied: int = 0  # tickets, schedules, approvals applied
    failed: int = 0  # employees with a failed action
    failures: list[str] = field(default_factory=list)  # "employee_id: kind target: detail"

    def add(self, report: ApplyReport) -> None:
        self.employees += 1
        applied = [r for r in report.results if r.outcome is Outcome.APPLIED]
        changes = sum(1 for r in applied if r.action.kind in ACCOUNT_KINDS)
        self.changes += changes
        self.other_applied += len(applied) - changes
        self.changed += 1 if changes else 0
        if not report.ok:
            self.failed += 1
            self.failures += [
                f"{report.employee_id}: {r.action.kind.value} {r.action.target}: {r.detail}"
                for r in report.failed
            ] or [f"{report.employee_id}: {report.error}"]


@dataclass
class SyncReport:
    """The outcome of a run; everything in it is ids and counts (safe for artifacts and logs)."""

    mode: str
    dry_run: bool = False
    partition: int = 0
    partitions: int = 1
    employees_seen: int = 0
    invalid_records: int = 0
    accounts_read: int = 0
    active_accounts: int = 0
    pages_read: int = 0
    directory_read: str = "full"  # "full", "delta" or "full (delta link expired)" (engine.directory)
    drifted: int = 0  # delta reads: employees whose account changed in the directory since the last read
    planned: int = 0  # employees with a non-empty plan
    planned_actions: int = 0
    batches: int = 0
    changed: int = 0
    changes: int = 0
    other_applied: int = 0
    failed: int = 0  # employees that failed (action failures, unreadable records, ambiguous accounts)
    failures: list[str] = field(default_factory=list)
    idp_calls: int | None = None  # requests sent to the IdP, where its client counts them
    idp_writes: int | None = None
    duration_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # read / plan / apply wall time
    brake: BrakeDecision | None = None
    roster: RosterShrinkDecision | None = None  # full syncs: the truncated-export check, before planning
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    cursor_moved: bool = False

    @property
    def refused(self) -> bool:
        return (self.brake is not None and self.brake.refused) or (
            self.roster is not None and self.roster.refused
        )

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.refused

    def summary(self) -> str:
        head = f"sync {self.mode}{' (dry run)' if self.dry_run else ''}"
        if self.partitions > 1:
            head += f" partition {self.partition}/{self.partitions}"
        if self.roster is not None and self.roster.refused:
            return f"{head}: {self.roster.message}"
        if self.refused and self.brake is not None:
            return f"{head}: {self.brake.message}"
        return (
            f"{head}: {self.employees_seen} employees seen, {self.planned} planned, {self.changed} changed "
            f"({self.changes} changes, {self.idp_writes if self.idp_writes is not None else '?'} IdP writes), "
            f"{self.failed} failed, {self.invalid_records} invalid records in {self.duration_seconds:.1f} s"
        )

    def table(self) -> list[dict[str, Any]]:
        """Rows for a summary table (Prefect table artifact, CLI)."""
        rows: list[tuple[str, Any]] = [
            ("mode", self.mode + (" (dry run)" if self.dry_run else "")),
            ("partition", f"{self.partition}/{self.partitions}"),
            ("employees seen", self.employees_seen),
            ("invalid records", self.invalid_records),
            ("accounts read", self.accounts_read),
            ("directory read", self.directory_read),
            ("drifted in the directory", self.drifted),
            ("planned", self.planned),
            ("planned actions", self.planned_actions),
            ("batches", self.batches),
            ("changed", self.changed),
            ("changes", self.changes),
            ("writes", "n/a" if self.idp_writes is None else self.idp_writes),
            ("IdP calls", "n/a" if self.idp_calls is None else self.idp_calls),
            ("failed", self.failed),
            ("brake", self.brake.message if self.brake else "not evaluated"),
            ("cursor moved", self.cursor_moved),
            ("duration (s)", round(self.duration_seconds, 2)),
        ]
        return [{"metric": name, "value": str(value)} for name, value in rows]


class SyncEngine:
    """One sync run. ``prepare`` reads and plans; ``apply_batch`` applies one batch; ``finish`` closes the run.
    :meth:`run` does all three; the flow calls the steps itself to wrap batches in tasks."""

    def __init__(
        self,
        *,
        hris: HRIS,
        idp: IdentityProvider,
        ticketing: Ticketing | None,
        policy: Policy,
        auditor: Auditor,
        options: SyncOptions | None = None,
        scheduler: Scheduler | None = None,
        now: datetime | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.hris, self.idp, self.ticketing = hris, idp, ticketing
        self.policy = policy
        self.auditor = auditor
        self.options = options or SyncOptions()
        self.scheduler = scheduler
        self.now = now or datetime.now(UTC)
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        self.report = SyncReport(
            mode=self.options.mode,
            dry_run=self.options.dry_run,
            partition=self.options.partition,
            partitions=self.options.partitions,
        )
        self.batches: list[list[Work]] = []
        self.applier = Applier(
            idp=idp,
            ticketing=ticketing,
            auditor=auditor,
            dry_run=self.options.dry_run,
            scheduler=scheduler,
            notifier=notifier,
        )
        self._read_at = (
            self.now
        )  # when the state the plans come from was read (Applier.apply's staleness check)
        self._job_lock: contextlib.AsyncExitStack | None = None
        self._next_cursor: datetime | None = None
        self._cursor_blocked = False  # a change could not be processed: keep the cursor where it is
        self._started = time.monotonic()
        self._calls_before = self._idp_counts()
        self._prepared = False
        self._account_ids: set[str] = set()  # employee ids holding an account, in every partition
        self._directory: DirectoryRead | None = None

    # ------------------------------------------------------------------------------------------ one at a time

    @property
    def job_name(self) -> str:
        return f"job:sync {self.options.partition}/{self.options.partitions}"

    async def __aenter__(self) -> SyncEngine:
        """Hold this sync's job lock (one sync of a partition at a time; dry runs need none): a second sync
        refuses at once with :class:`engine.locks.LockHeld` naming the run that holds it."""
        if not self.options.dry_run:
            stack = contextlib.AsyncExitStack()
            await stack.enter_async_context(self.applier.locks.hold(self.job_name, wait=False))
            self._job_lock = stack
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._job_lock is not None:
            await self._job_lock.aclose()
            self._job_lock = None

    # ------------------------------------------------------------------------------------------ reading

    def _idp_counts(self) -> tuple[int, int] | None:
        api = getattr(self.idp, "api", None)
        calls = getattr(api, "calls", None)
        if not isinstance(calls, dict):
            return None
        return sum(calls.values()), int(getattr(api, "writes", 0))

    @property
    def directory_name(self) -> str:
        """The name of this share's copy of a change-tracking directory (:mod:`engine.directory`)."""
        return f"{self.idp.source} {self.options.partition}/{self.options.partitions}"

    async def _read_idp(self) -> tuple[dict[str, Account], TakenNames, set[str]]:
        """Every account and every group — read in pages, or from the share's copy and the delta — as
        employee id → account with its groups."""
        read = await read_directory(
            self.idp,
            database_url=self.auditor.database_url,
            name=self.directory_name,
            page_size=PAGE_SIZE,
            reread=self.options.reread_directory,
        )
        self._directory = read
        self.report.directory_read = read.how
        self.report.drifted = len(read.drifted)
        self.report.pages_read += read.pages
        taken = TakenNames(self.policy.naming.email_domain)
        accounts: dict[str, Account] = {}
        duplicates: set[str] = set()
        for account in read.accounts:
            self.report.accounts_read += 1
            taken.add(account.user_name)
            if account.employee_id:
                self._account_ids.add(account.employee_id)
            if not account.employee_id or not self.options.mine(account.employee_id):
                continue
            if account.employee_id in accounts:
                duplicates.add(account.employee_id)
            accounts[account.employee_id] = account
            self.report.active_accounts += 1 if account.active else 0
        member_of: dict[str, set[str]] = defaultdict(set)
        for group in read.groups:
            for member in group.member_ids:
                member_of[member].add(group.name)
        # preflight (engine.preflight): a group the policy grants but the IdP lacks refuses the whole run
        self.applier.remember_groups(require_groups(read.groups, self.policy, source=self.idp.source))
        accounts = {
            eid: a.model_copy(update={"groups": frozenset(member_of.get(a.id, ()))})
            for eid, a in accounts.items()
        }
        return accounts, taken, duplicates

    def _audit_invalid(self, invalid: list[InvalidRecordError]) -> None:
        if not invalid:
            return
        self.report.invalid_records += len(invalid)
        self.applier.note_many(
            self.auditor.event(
                action="hris.record.invalid",
                target_system=exc.source or self.hris.source,
                employee_id=exc.record_id,
                outcome=Outcome.FAILED,
                reason=exc.reason,
                details={"row": exc.row} if exc.row is not None else {},
            )
            for exc in invalid
        )

    def _keep_invalid(self, exc: InvalidRecordError) -> bool:
        """Audit an invalid record in its employee's partition; one without an id in partition 0."""
        return self.options.mine(exc.record_id) if exc.record_id else self.options.partition == 0

    async def _read_all(self, wanted: set[str] | None = None) -> list[tuple[str, Employee | None]]:
        employees: list[tuple[str, Employee | None]] = []
        invalid: list[InvalidRecordError] = []
        seen: set[str] = set()
        async for item in self.hris.iter_employees():
            if isinstance(item, InvalidRecordError):
                if (wanted is None or item.record_id in wanted) and self._keep_invalid(item):
                    invalid.append(item)
                    seen.add(item.record_id or "")
                continue
            if self.options.mine(item.employee_id) and (wanted is None or item.employee_id in wanted):
                employees.append((item.employee_id, item))
                seen.add(item.employee_id)
        # changed ids that are not in the HRIS any more: no HR record (the access review owns such accounts)
        employees += [(eid, None) for eid in sorted((wanted or set()) - seen)]
        self._audit_invalid(invalid)
        return employees

    async def _read_changed(self) -> list[tuple[str, Employee | None]]:
        with session_scope(self.auditor.database_url) as session:
            cursor = cursor_get(session=session, name=self.options.cursor_name)
        self.report.cursor_before = cursor
        changes = await self.hris.changed_since(cursor)
        self._next_cursor = changes.next_cursor
        # employees an earlier run left unsettled are re-read too, so their ledger is settled (Applier.resume)
        with session_scope(self.auditor.database_url) as session:
            unsettled = sorted(open_employees(session=session))
        ids = list(
            dict.fromkeys(eid for eid in [*changes.employee_ids, *unsettled] if self.options.mine(eid))
        )
        return await self._read_ids(ids)

    async def _read_ids(self, ids: list[str]) -> list[tuple[str, Employee | None]]:
        """These employees' HR records: one by one, or one pass over the export when there are many."""
        if len(ids) > FETCH_ONE_BY_ONE_LIMIT:
            return await self._read_all(set(ids))
        semaphore = asyncio.Semaphore(self.options.max_concurrency)
        invalid: list[InvalidRecordError] = []

        async def fetch(employee_id: str) -> tuple[str, Employee | None] | None:
            async with semaphore:
                try:
                    return employee_id, await self.hris.get_employee(employee_id)
                except NotFoundError:
                    return employee_id, None
                except InvalidRecordError as exc:
                    exc.record_id = exc.record_id or employee_id
                    invalid.append(exc)
                    return None
                except ConnectorError as exc:
                    self._fail(employee_id, f"cannot read the HR record: {exc}")
                    return None

        fetched = await asyncio.gather(*(fetch(eid) for eid in ids))
        self._audit_invalid(invalid)
        return [item for item in fetched if item is not None]

    def _fail(self, employee_id: str, detail: str) -> None:
        self.report.failed += 1
        self.report.failures.append(f"{employee_id}: {detail}")
        self._cursor_blocked = True

    # ------------------------------------------------------------------------------------------ planning

    async def prepare(self) -> None:
        """Read both sides, plan every employee (pure), check the brake and cut the work into batches."""
        started = time.monotonic()
        self._read_at = datetime.now(UTC)
        read_hris = self._read_all() if self.options.full else self._read_changed()
        employees, (accounts, taken, duplicates) = await asyncio.gather(read_hris, self._read_idp())
        if not self.options.full and self._directory is not None:
            # accounts that changed in the directory since the last read are planned too (drift repaired nightly)
            seen = {eid for eid, _ in employees}
            drifted = sorted(e for e in self._directory.drifted if e not in seen and self.options.mine(e))
            employees += await self._read_ids(drifted)
        self.report.phase_seconds["read"] = time.monotonic() - started
        started = time.monotonic()
        self.report.employees_seen = len(employees) + self.report.invalid_records
        url = self.auditor.database_url
        if self.options.full and self._roster_shrank(url):
            self._prepared = True
            return
        with session_scope(url) as session:
            settled = settled_side_effects(session=session, ticketing=self.ticketing is not None)
            unsettled = open_employees(session=session)
            sent = sent_notices(session=session, notifying=self.applier.notifier is not None)
        snapshot = Snapshot(
            employees=employees,
            accounts=accounts,
            taken=taken,
            duplicates=duplicates,
            account_holders=self._account_ids,
        )
        sync_plan = await asyncio.to_thread(
            plan_all,
            snapshot,
            self.policy,
            self.now,
            histories=histories(url),
            settled=settled,
            unsettled=unsettled,
            schedules=self.scheduler is not None,
            people=await self._people(employees, accounts),
            sent=sent,
        )
        for employee_id, why in sync_plan.failures.items():
            log.warning("employee %s: %s", employee_id, why)
            self._fail(employee_id, why)
        works = sync_plan.works
        self.report.phase_seconds["plan"] = time.monotonic() - started
        self.report.planned = len(works)
        self.report.planned_actions = sum(len(w.plan.actions) for w in works)
        self.report.brake = check_brake(
            (w.plan for w in works),
            self.report.active_accounts,
            self.policy.brake,
            override=self.options.override_brake,
        )
        self._audit_brake(self.report.brake)
        if not self.report.refused or self.options.dry_run:
            self.batches = sync_plan.batches(self.options.batch_size)
        self.report.batches = len(self.batches)
        self._prepared = True

    async def _people(
        self, employees: list[tuple[str, Employee | None]], accounts: dict[str, Account]
    ) -> dict[str, Employee] | None:
        """The employees read, and the managers of joiners and leavers this read lacks (looked up), for the
        notifications; None when the policy notifies nobody of hires and leaves."""
        if not (self.policy.notify.joiner or self.policy.notify.leaver):
            return None
        people = {eid: e for eid, e in employees if e is not None}
        told = [e for eid, e in people.items() if eid not in accounts or e.termination_date is not None]
        for manager_id in sorted({e.manager_id for e in told if e.manager_id} - set(people)):
            with contextlib.suppress(NotFoundError, InvalidRecordError):
                people[manager_id] = await self.hris.get_employee(manager_id)
        return people

    @property
    def roster_name(self) -> str:
        return f"roster {self.options.partition}/{self.options.partitions}"

    def _roster_shrank(self, url: str) -> bool:
        """The truncated-export check of a full sync (:func:`lifecycle.brake.check_roster_shrink`): a roster
        that shrank by more than the brake's share since the last full sync refuses the run before planning."""
        with session_scope(url) as session:
            previous = roster_count_get(session=session, name=self.roster_name)
        decision = check_roster_shrink(
            previous, self.report.employees_seen, self.policy.brake, override=self.options.override_brake
        )
        self.report.roster = decision
        if decision.tripped:
            self.applier.note(
                action="sync.roster",
                target_system=self.hris.source,
                outcome=Outcome.FAILED if decision.refused else Outcome.APPLIED,
                reason=decision.message,
                details={
                    "previous": decision.previous,
                    "current": decision.current,
                    "percent": round(decision.percent, 2),
                    "overridden": decision.overridden,
                },
            )
            log.warning("%s", decision.message)
        return decision.refused

    def _audit_brake(self, decision: BrakeDecision) -> None:
        if not decision.tripped:
            return
        outcome = (
            Outcome.PLANNED
            if self.options.dry_run
            else (Outcome.APPLIED if decision.overridden else Outcome.FAILED)
        )
        self.applier.note(
            action="sync.brake",
            target_system=self.idp.source,
            outcome=outcome,
            reason=decision.message,
            details={
                "disables": decision.disables,
                "active_accounts": decision.active_accounts,
                "percent": round(decision.percent, 2),
                "max_count": decision.max_count,
                "max_percent": decision.max_percent,
                "overridden": decision.overridden,
                "mode": self.options.mode,
                "partition": f"{self.options.partition}/{self.options.partitions}",
            },
        )
        log.warning("%s", decision.message)

    # ------------------------------------------------------------------------------------------ applying

    async def apply_batch(self, number: int) -> BatchResult:
        """Apply the plans of batch ``number`` (at most ``max_concurrency`` employees at once). Each employee is
        applied under their lock; one employee's failure — a connector error, a lock held elsewhere past its
        timeout, a defect — is that employee's, recorded, and the rest of the batch goes on."""
        semaphore = asyncio.Semaphore(self.options.max_concurrency)
        result = BatchResult(number=number)

        async def one(work: Work) -> ApplyReport:
            async def replan() -> tuple[Plan, Account | None]:
                return await self._replan(work.plan.employee_id)

            async with semaphore:
                try:
                    return await self.applier.apply(
                        work.plan, work.account, planned_at=self._read_at, replan=replan
                    )
                except LockHeld as exc:
                    return ApplyReport(work.plan.employee_id, work.plan.event, error=str(exc))
                except Exception as exc:  # noqa: BLE001 - one employee must not cancel the batch
                    log.exception("applying the plan of employee %s crashed", work.plan.employee_id)
                    return ApplyReport(
                        work.plan.employee_id, work.plan.event, error=f"apply crashed: {type(exc).__name__}"
                    )

        tasks = [asyncio.ensure_future(one(w)) for w in self.batches[number]]
        try:
            reports = await asyncio.gather(*tasks)
        except BaseException:  # the process is going down (a crash, a cancel): stop the others too
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        for report in reports:
            result.add(report)
        self._absorb(result)
        return result

    async def _replan(self, employee_id: str) -> tuple[Plan, Account | None]:
        """One employee planned again from fresh state (another run changed them since this run read)."""
        from engine.reconcile import plan_employee

        connectors = Connectors(
            hris=self.hris, idp=self.idp, ticketing=self.ticketing, notifier=self.applier.notifier
        )
        fresh, account = await plan_employee(
            employee_id,
            connectors=connectors,
            policy=self.policy,
            database_url=self.auditor.database_url,
            now=self.now,
        )
        with session_scope(self.auditor.database_url) as session:
            settled = settled_side_effects(session=session, ticketing=self.ticketing is not None)
        holders = self._account_ids | {employee_id}
        return trim_plan(fresh, holders, settled, schedules=self.scheduler is not None), account

    def _absorb(self, result: BatchResult) -> None:
        r = self.report
        r.changed += result.changed
        r.changes += result.changes
        r.other_applied += result.other_applied
        r.failed += result.failed
        r.failures += result.failures
        if result.failed:
            self._cursor_blocked = True

    def finish(self) -> SyncReport:
        """Move the cursor if everything it covers was processed, and close the report."""
        r = self.report
        if (
            not self.options.full
            and not self.options.dry_run
            and not r.refused
            and not self._cursor_blocked
            and self._next_cursor is not None
        ):
            self.applier.move_cursor(self.options.cursor_name, self._next_cursor)
            r.cursor_after, r.cursor_moved = self._next_cursor, True
        else:
            r.cursor_after = r.cursor_before
        if self.options.full and not self.options.dry_run and not r.refused:
            self.applier.record_roster(self.roster_name, r.employees_seen)
        self._keep_directory()
        counts = self._idp_counts()
        if counts is not None and self._calls_before is not None:
            r.idp_calls = counts[0] - self._calls_before[0]
            r.idp_writes = counts[1] - self._calls_before[1]
        r.duration_seconds = time.monotonic() - self._started
        return r

    def _keep_directory(self) -> None:
        """Store the share's copy of a change-tracking directory (not after a dry run or a refusal). After a
        failure the copy's rows are kept but not its new links, so the changes are read again next time."""
        read, r = self._directory, self.report
        if read is None or read.mirror is None or self.options.dry_run or r.refused:
            return
        if self._cursor_blocked:
            read.keep_previous_links()
        self.applier.mirror_directory(self.directory_name, read.mirror, read.changes)

    async def run(
        self, *, batch_runner: BatchRunner | None = None, on_progress: Progress | None = None
    ) -> SyncReport:
        """The whole run. ``batch_runner(number)`` applies one batch (default :meth:`apply_batch`);
        ``on_progress(done_employees, total_employees)`` is called after reading and after every batch."""
        if not self._prepared:
            await self.prepare()
        runner = batch_runner or self.apply_batch
        total = sum(len(b) for b in self.batches)
        done = 0
        started = time.monotonic()
        await _maybe_await(on_progress, done, total)
        for number, batch in enumerate(self.batches):
            await runner(number)
            done += len(batch)
            await _maybe_await(on_progress, done, total)
        self.report.phase_seconds["apply"] = time.monotonic() - started
        return self.finish()


async def _maybe_await(callback: Progress | None, done: int, total: int) -> None:
    if callback is None:
        return
    outcome = callback(done, total)
    if outcome is not None:
        await outcome
