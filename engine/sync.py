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

**Targets** (policy ``targets:``, :mod:`lifecycle.targets`): every target is read once like the directory
(pages, then one ``list_groups``), and every account found in any target is classified
(:mod:`lifecycle.correlation`) against **all** employees: in a full run the roster just read, in an incremental
run the whole roster is read once more only when some account carries no employee id (else an account carrying
one is linked to it). Unlinked accounts are adopted (``link`` actions), disputed accounts are never touched and
fail the run (exit 1, naming the account and the employees), orphans are counted per target. A target that
cannot be read fails the run (audited ``sync.target.read``) and nothing is planned there; the others go on.
The brake counts per target (that target's disables against its active accounts) and overall.

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
from collections.abc import Awaitable, Callable, Mapping
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
from engine.reconcile import adoption_date, histories
from lifecycle.actions import ACCOUNT_KINDS, DIRECTORY, ActionKind, Plan
from lifecycle.brake import (
    SHOWN_IDS,
    BrakeDecision,
    RosterShrinkDecision,
    check_brake,
    check_roster_shrink,
    list_ids,
)
from lifecycle.correlation import Correlation, Situation, correlate
from lifecycle.policy import CorrelationStep, Policy
from lifecycle.sync_plan import Snapshot, TakenNames, TargetView, Work, plan_all, trim_plan
from models.audit import Outcome
from models.db import session_scope
from models.domain import Account, Employee, Group
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
# Batches applied at once: one computes and commits while the other waits on the provider. A batch never runs
# beside a batch that creates the account of one of its employees' managers (it waits for that one).
BATCHES_IN_FLIGHT = 2
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
    failures: list[str] = field(default_factory=list)  # "kind-employee_id[-subject][@target]: detail"
    by_target: dict[str, dict[str, int]] = field(default_factory=dict)  # target → applied / failed actions
    changed_ids: list[str] = field(default_factory=list)

    def add(self, report: ApplyReport) -> None:
        self.employees += 1
        applied = [r for r in report.results if r.outcome is Outcome.APPLIED]
        changes = sum(1 for r in applied if r.action.kind in ACCOUNT_KINDS)
        self.changes += changes
        self.other_applied += len(applied) - changes
        self.changed += 1 if changes else 0
        for r in report.results:
            if r.outcome in (Outcome.APPLIED, Outcome.FAILED) and r.action.kind in ACCOUNT_KINDS:
                counts = self.by_target.setdefault(r.action.target, {"applied": 0, "failed": 0})
                counts[r.outcome.value] += 1
        if changes:
            self.changed_ids.append(report.employee_id)
        if not report.ok:
            self.failed += 1
            self.failures += [
                f"{r.action.step_name}: {r.detail}"  # ids, not the user name a subject may be
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
    changed_ids: list[str] = field(default_factory=list)  # employees with an applied IdP change
    planned_ids: list[str] = field(default_factory=list)  # employees with a non-empty plan
    # the first SHOWN_IDS plans, one line each: "<event> <employee id>: <action kinds>" (ids, no names)
    plan_lines: list[str] = field(default_factory=list)
    idp_calls: int | None = None  # requests sent to the IdP, where its client counts them
    idp_writes: int | None = None
    duration_seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)  # read / plan / apply wall time
    brake: BrakeDecision | None = None
    roster: RosterShrinkDecision | None = None  # full syncs: the truncated-export check, before planning
    cursor_before: datetime | None = None
    cursor_after: datetime | None = None
    cursor_moved: bool = False
    target_brakes: dict[str, BrakeDecision] = field(default_factory=dict)  # per target (the directory too)
    situations: dict[str, dict[str, int]] = field(default_factory=dict)  # target → situation → accounts
    disputes: list[str] = field(default_factory=list)  # "target: account <id> matches employees <ids>"
    by_target: dict[str, dict[str, int]] = field(default_factory=dict)  # target → applied / failed actions

    @property
    def refused(self) -> bool:
        return (
            (self.brake is not None and self.brake.refused)
            or (self.roster is not None and self.roster.refused)
            or any(b.refused for b in self.target_brakes.values())
        )

    @property
    def refusal(self) -> str:
        """Why the run was refused (the first brake that refused it)."""
        if self.roster is not None and self.roster.refused:
            return self.roster.message
        for where, brake in [("overall", self.brake), *self.target_brakes.items()]:
            if brake is not None and brake.refused:
                return brake.message if where == "overall" else f"target {where}: {brake.message}"
        return ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.refused and not self.disputes

    def summary(self, *, ids: bool = True) -> str:
        """One line: counts, and (``ids``) the employees changed — or, in a dry run, that would change."""
        head = f"sync {self.mode}{' (dry run)' if self.dry_run else ''}"
        if self.partitions > 1:
            head += f" partition {self.partition}/{self.partitions}"
        if self.refused:
            return f"{head}: {self.refusal}"
        line = (
            f"{head}: {self.employees_seen} employees seen, {self.planned} planned, {self.changed} changed "
            f"({self.changes} changes, {self.idp_writes if self.idp_writes is not None else '?'} IdP writes), "
            f"{self.failed} failed, {self.invalid_records} invalid records in {self.duration_seconds:.1f} s"
        )
        if not ids:
            return line
        if self.dry_run:
            return f"{line}; would change: {list_ids(sorted(self.planned_ids))}"
        return f"{line}; changed: {list_ids(sorted(self.changed_ids))}"

    @property
    def brake_state(self) -> str:
        """A short word for the table; the brake's full message is said once, in the summary."""
        if self.brake is None:
            return "not evaluated"
        if not self.brake.tripped:
            return f"not tripped ({self.brake.disables} disable(s))"
        return "tripped, overridden" if self.brake.overridden else "REFUSED the run"

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
            ("brake", self.brake_state),
            ("cursor moved", self.cursor_moved),
            ("duration (s)", round(self.duration_seconds, 2)),
        ]
        for target in sorted(set(self.situations) | set(self.by_target)):
            seen = self.situations.get(target, {})
            done = self.by_target.get(target, {})
            rows.append(
                (
                    f"target {target}",
                    ", ".join(f"{n} {what}" for what, n in sorted(seen.items()))
                    + f"; {done.get('applied', 0)} applied, {done.get('failed', 0)} failed",
                )
            )
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
        targets: Mapping[str, IdentityProvider] | None = None,
    ) -> None:
        self.hris, self.idp, self.ticketing = hris, idp, ticketing
        # the policy's targets, by name (a target without a connector is a configuration error: tenure.compose)
        self.targets = {name: t for name, t in (targets or {}).items() if name in policy.targets}
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
            targets=self.targets,
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
        self._roster: list[Employee] | None = None  # every valid HR record (all partitions), when read

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

    async def _read_idp(self) -> tuple[list[Account], TakenNames, set[str]]:
        """Every directory account with its groups — read in pages, or from the share's copy and the delta —,
        the names taken and the employee ids several accounts carry."""
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
        claimed: set[str] = set()
        duplicates: set[str] = set()
        for account in read.accounts:
            self.report.accounts_read += 1
            taken.add(account.user_name)
            if account.employee_id:
                self._account_ids.add(account.employee_id)
                if account.employee_id in claimed and self.options.mine(account.employee_id):
                    duplicates.add(account.employee_id)
                claimed.add(account.employee_id)
        # preflight (engine.preflight): a group the policy grants but the IdP lacks refuses the whole run
        self.applier.remember_groups(require_groups(read.groups, self.policy, source=self.idp.source))
        return _with_groups(read.accounts, read.groups), taken, duplicates

    async def _read_accounts(self, target: str, idp: IdentityProvider) -> list[Account]:
        """Every account of one target other than the directory (pages) with its groups (one list)."""
        accounts: list[Account] = []
        async for page in idp.iter_users(page_size=PAGE_SIZE):
            self.report.pages_read += 1
            accounts += page
        groups = await idp.list_groups()
        self.report.pages_read += 1
        self.applier.remember_groups({g.name: g.id for g in groups}, target)
        return _with_groups(accounts, groups)

    async def _read_targets(self) -> dict[str, list[Account] | None]:
        """Every other target's accounts; ``None`` for a target that could not be read (audited, failed)."""
        found: dict[str, list[Account] | None] = {}
        for name, idp in self.targets.items():
            try:
                found[name] = await self._read_accounts(name, idp)
            except ConnectorError as exc:
                found[name] = None
                self._fail(f"target {name}", f"cannot read the accounts: {exc}")
                self.applier.note(
                    action="sync.target.read",
                    target_system=idp.source,
                    outcome=Outcome.FAILED,
                    reason=f"target {name} could not be read; nothing is planned there this run: {exc}",
                    details={"provisioning_target": name},
                )
        return found

    async def _correlation_roster(self, accounts: list[Account]) -> list[Employee] | None:
        """All employees to correlate against: the roster a full run read; in an incremental run the whole
        roster, read once more, only when some account carries no employee id (else None)."""
        if self._roster is not None:
            return self._roster
        if all(a.employee_id for a in accounts):
            return None
        roster: list[Employee] = []
        async for item in self.hris.iter_employees():
            if not isinstance(item, InvalidRecordError):
                roster.append(item)
        self._roster = roster
        return roster

    def _correlate(
        self,
        target: str,
        accounts: list[Account],
        roster: list[Employee] | None,
        steps: list[CorrelationStep],
    ) -> Correlation:
        """Classify one target's accounts; count the situations, report and audit the disputes."""
        correlation = correlate(accounts, roster, steps, self.policy.naming)
        counts = {s.value: len(correlation.of(s)) for s in Situation}
        self.report.situations[target] = counts
        disputed = [
            c for c in correlation.of(Situation.DISPUTED) if any(self.options.mine(e) for e in c.employee_ids)
        ]
        for c in disputed:
            line = f"{target}: account {c.account.id} is disputed: {c.why}; not touched"
            self.report.disputes.append(line)
            log.warning("%s", line)
        if disputed:
            self.applier.note_many(
                self.auditor.event(
                    action="correlation.disputed",
                    target_system=(self.idp if target == DIRECTORY else self.targets[target]).source,
                    target_id=c.account.id,
                    employee_id=None,
                    outcome=Outcome.SKIPPED,
                    reason=f"disputed account in {target}: {c.why}; never linked, left to a review decision",
                    details={"provisioning_target": target, "employee_ids": list(c.employee_ids)},
                )
                for c in disputed
            )
        return correlation

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
        roster: list[Employee] = []  # every valid record, all partitions (correlation runs against all)
        async for item in self.hris.iter_employees():
            if isinstance(item, InvalidRecordError):
                if (wanted is None or item.record_id in wanted) and self._keep_invalid(item):
                    invalid.append(item)
                    seen.add(item.record_id or "")
                continue
            roster.append(item)
            if self.options.mine(item.employee_id) and (wanted is None or item.employee_id in wanted):
                employees.append((item.employee_id, item))
                seen.add(item.employee_id)
        # changed ids that are not in the HRIS any more: no HR record (the access review owns such accounts)
        employees += [(eid, None) for eid in sorted((wanted or set()) - seen)]
        self._audit_invalid(invalid)
        self._roster = roster
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
        employees, (all_accounts, taken, duplicates), target_accounts = await asyncio.gather(
            read_hris, self._read_idp(), self._read_targets()
        )
        if not self.options.full and self._directory is not None:
            # accounts that changed in the directory since the last read are planned too (drift repaired nightly)
            seen = {eid for eid, _ in employees}
            drifted = sorted(e for e in self._directory.drifted if e not in seen and self.options.mine(e))
            employees += await self._read_ids(drifted)
        roster = await self._correlation_roster(
            [*all_accounts, *(a for found in target_accounts.values() for a in found or ())]
        )
        directory = self._correlate(DIRECTORY, all_accounts, roster, self.policy.correlation)
        accounts = self._owned(directory, linked=True)
        self.report.active_accounts = sum(1 for a in accounts.values() if a.active)
        targets: dict[str, TargetView] = {}
        for name, found in target_accounts.items():
            if found is None:
                targets[name] = TargetView()
                continue
            correlation = self._correlate(name, found, roster, self.policy.targets[name].correlation)
            targets[name] = TargetView(
                accounts=self._owned(correlation, linked=True),
                correlation=correlation,
                histories=histories(self.auditor.database_url, target=name),
            )
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
            links={eid: c for eid, c in directory.owner.items() if c.situation is Situation.UNLINKED},
            disputed=directory.disputed_employees,
            targets=targets,
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
            adopt_before=adoption_date(url, self.policy, self.now),
        )
        for employee_id, why in sync_plan.failures.items():
            log.warning("employee %s: %s", employee_id, why)
            self._fail(employee_id, why)
        works = sync_plan.works
        self.report.phase_seconds["plan"] = time.monotonic() - started
        self.report.planned = len(works)
        self.report.planned_actions = sum(len(w.plan.actions) for w in works)
        self.report.planned_ids = [w.plan.employee_id for w in works]
        self.report.plan_lines = [_plan_line(w.plan) for w in works[:SHOWN_IDS]]
        self.report.brake = check_brake(
            (w.plan for w in works),
            self.report.active_accounts,
            self.policy.brake,
            override=self.options.override_brake,
        )
        self._audit_brake(self.report.brake)
        if self.targets:
            self._target_brakes(works, accounts, targets)
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

    def _owned(self, correlation: Correlation, *, linked: bool) -> dict[str, Account]:
        """Employee id → the account that is theirs (linked ones; this partition's employees only)."""
        return {
            eid: c.account
            for eid, c in correlation.owner.items()
            if self.options.mine(eid) and (c.situation is Situation.LINKED or not linked)
        }

    def _target_brakes(
        self, works: list[Work], directory: Mapping[str, Account], targets: Mapping[str, TargetView]
    ) -> None:
        """The brake per target: that target's disables and deletes against its active accounts."""
        active = {DIRECTORY: sum(1 for a in directory.values() if a.active)} | {
            name: sum(1 for a in view.accounts.values() if a.active) for name, view in targets.items()
        }
        for name, count in active.items():
            plans = (
                w.plan.model_copy(update={"actions": w.plan.for_target(name)})
                for w in works
                if w.plan.for_target(name)
            )
            decision = check_brake(plans, count, self.policy.brake, override=self.options.override_brake)
            self.report.target_brakes[name] = decision
            self._audit_brake(decision, target=name)

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

    def _audit_brake(self, decision: BrakeDecision, *, target: str | None = None) -> None:
        if not decision.tripped:
            return
        outcome = (
            Outcome.PLANNED
            if self.options.dry_run
            else (Outcome.APPLIED if decision.overridden else Outcome.FAILED)
        )
        connector = self.targets.get(target, self.idp) if target else self.idp
        self.applier.note(
            action="sync.brake",
            target_system=connector.source,
            outcome=outcome,
            reason=decision.message if target is None else f"target {target}: {decision.message}",
            details={
                "provisioning_target": target or "overall",
                "disables": decision.disables,
                "active_accounts": decision.active_accounts,
                "percent": round(decision.percent, 2),
                "max_count": decision.max_count,
                "max_percent": decision.max_percent,
                "overridden": decision.overridden,
                "mode": self.options.mode,
                "partition": f"{self.options.partition}/{self.options.partitions}",
                "employees": list(decision.employee_ids),
            },
        )
        log.info("%s", decision.message)  # the caller says it once (CLI error, flow summary)

    # ------------------------------------------------------------------------------------------ applying

    async def apply_batch(
        self, number: int, on_report: Callable[[ApplyReport], None] | None = None
    ) -> BatchResult:
        """Apply the plans of batch ``number``. Plans on the directory alone are applied together
        (:meth:`engine.applier.Applier.apply_many`: every such employee locked for the batch, at most
        ``max_concurrency`` account writes in flight, the batch's memberships one request per group); a plan
        that also acts on another provisioning target, links or notifies goes one employee at a time
        (:meth:`engine.applier.Applier.apply`). One employee's failure — a connector error, a lock held
        elsewhere past its timeout, a defect — is that employee's, recorded, and the rest of the batch goes on.
        ``on_report`` sees each employee's report (the flow logs one line per step)."""
        result = BatchResult(number=number)
        works = self.batches[number]
        together = [w for w in works if _directory_only(w)]
        alone = [w for w in works if not _directory_only(w)]
        reports = [*await self._apply_together(number, together), *await self._apply_alone(alone)]
        for report in reports:
            result.add(report)
            if on_report is not None:
                on_report(report)
        self._absorb(result)
        return result

    async def _apply_together(self, number: int, works: list[Work]) -> list[ApplyReport]:
        if not works:
            return []

        async def replan(employee_id: str) -> tuple[Plan, Account | None]:
            plan, account, accounts = await self._replan(employee_id)
            fresh = Work(plan, account, accounts=dict(accounts))
            if not _directory_only(fresh):  # now acts on other targets: left to the next run, whole
                raise RuntimeError("the fresh plan acts on other targets too")
            return plan, account

        try:
            return await self.applier.apply_many(
                [(w.plan, w.account) for w in works],
                planned_at=self._read_at,
                replan=replan,
                concurrency=self.options.max_concurrency,
                waves=[w.wave for w in works],
            )
        except Exception as exc:  # noqa: BLE001 - a defect in the batch fails its employees, not the run
            log.exception("applying batch %d crashed", number)
            return [
                ApplyReport(w.plan.employee_id, w.plan.event, error=f"apply crashed: {type(exc).__name__}")
                for w in works
            ]

    async def _apply_alone(self, works: list[Work]) -> list[ApplyReport]:
        semaphore = asyncio.Semaphore(self.options.max_concurrency)

        async def one(work: Work) -> ApplyReport:
            async def replan() -> tuple[Plan, Account | None, dict[str, Account | None]]:
                return await self._replan(work.plan.employee_id)

            async with semaphore:
                try:
                    return await self.applier.apply(
                        work.plan,
                        work.account,
                        accounts=work.accounts,
                        planned_at=self._read_at,
                        replan=replan,
                    )
                except LockHeld as exc:
                    return ApplyReport(work.plan.employee_id, work.plan.event, error=str(exc))
                except Exception as exc:  # noqa: BLE001 - one employee must not cancel the batch
                    log.exception("applying the plan of employee %s crashed", work.plan.employee_id)
                    return ApplyReport(
                        work.plan.employee_id, work.plan.event, error=f"apply crashed: {type(exc).__name__}"
                    )

        tasks = [asyncio.ensure_future(one(w)) for w in works]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # the process is going down (a crash, a cancel): stop the others too
            for pending in tasks:
                pending.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _replan(self, employee_id: str) -> tuple[Plan, Account | None, dict[str, Account | None]]:
        """One employee planned again from fresh state (another run changed them since this run read)."""
        from engine.reconcile import plan_person

        connectors = Connectors(
            hris=self.hris,
            idp=self.idp,
            ticketing=self.ticketing,
            notifier=self.applier.notifier,
            targets=dict(self.targets),
        )
        fresh, account, accounts = await plan_person(
            employee_id,
            connectors=connectors,
            policy=self.policy,
            database_url=self.auditor.database_url,
            now=self.now,
        )
        with session_scope(self.auditor.database_url) as session:
            settled = settled_side_effects(session=session, ticketing=self.ticketing is not None)
        holders = self._account_ids | {employee_id}
        return trim_plan(fresh, holders, settled, schedules=self.scheduler is not None), account, accounts

    def _absorb(self, result: BatchResult) -> None:
        r = self.report
        r.changed += result.changed
        r.changes += result.changes
        r.other_applied += result.other_applied
        r.failed += result.failed
        r.failures += result.failures
        for target, counts in result.by_target.items():
            mine = r.by_target.setdefault(target, {"applied": 0, "failed": 0})
            for what, n in counts.items():
                mine[what] += n
        r.changed_ids += result.changed_ids
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
            and not r.disputes
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
        """The whole run. ``batch_runner(number)`` applies one batch (default :meth:`apply_batch`), up to
        :data:`BATCHES_IN_FLIGHT` at once (their employees are locked apart; a batch with someone whose manager's
        account a batch in flight creates waits for that batch: the manager reference needs the account);
        ``on_progress(done_employees, total_employees)`` is called after reading and after every batch, in
        batch order."""
        if not self._prepared:
            await self.prepare()
        runner = batch_runner or self.apply_batch
        total = sum(len(b) for b in self.batches)
        done = 0
        started = time.monotonic()
        await _maybe_await(on_progress, done, total)
        # (the batch, its employees, its size), oldest first
        in_flight: list[tuple[asyncio.Task[BatchResult], frozenset[str], int]] = []

        async def settle(count: int) -> None:
            nonlocal done
            while len(in_flight) > count:
                task, _, size = in_flight.pop(0)
                await task
                done += size
                await _maybe_await(on_progress, done, total)

        try:
            for number, batch in enumerate(self.batches):
                managers = {w.awaits for w in batch if w.awaits}
                while managers and any(managers & people for _, people, _ in in_flight):
                    await settle(len(in_flight) - 1)  # oldest first, so progress stays in batch order
                await settle(BATCHES_IN_FLIGHT - 1)
                task = asyncio.ensure_future(runner(number))
                in_flight.append((task, frozenset(w.plan.employee_id for w in batch), len(batch)))
            await settle(0)
        finally:
            for task, _, _ in in_flight:
                task.cancel()
            await asyncio.gather(*(task for task, _, _ in in_flight), return_exceptions=True)
        self.report.phase_seconds["apply"] = time.monotonic() - started
        return self.finish()


def _plan_line(plan: Plan) -> str:
    """``adopt E00001: update_account, add_membership ×2`` — one employee's plan, ids and kinds only."""
    kinds: dict[str, int] = {}
    for action in plan.actions:
        kinds[action.kind.value] = kinds.get(action.kind.value, 0) + 1
    shown = ", ".join(f"{kind} ×{n}" if n > 1 else kind for kind, n in kinds.items())
    return f"{plan.event} {plan.employee_id}: {shown or 'settle earlier runs'}"


async def _maybe_await(callback: Progress | None, done: int, total: int) -> None:
    if callback is None:
        return
    outcome = callback(done, total)
    if outcome is not None:
        await outcome


def _with_groups(accounts: list[Account], groups: list[Group]) -> list[Account]:
    """The accounts with their group names, from the groups' member lists."""
    member_of: dict[str, set[str]] = defaultdict(set)
    for group in groups:
        for member in group.member_ids:
            member_of[member].add(group.name)
    return [a.model_copy(update={"groups": frozenset(member_of.get(a.id, ()))}) for a in accounts]


def _directory_only(work: Work) -> bool:
    """Whether a plan acts on the directory alone, with kinds the batch path applies (not links or notices)."""
    return not work.accounts and all(
        a.target == DIRECTORY and a.kind not in (ActionKind.LINK_ACCOUNT, ActionKind.NOTIFY)
        for a in work.plan.actions
    )
