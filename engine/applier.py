"""The one door: every side effect goes through :class:`Applier`, the only writer of ledger and audit rows.

Modelled on midPoint's clockwork — load the context, compute, then execute and audit — in three steps:

1. **Lock** the employee (:mod:`engine.locks`): no two runs change one person at once. A plan computed from
   state read before another run changed this person (the ledger says so) is stale: it is computed again
   (``replan``) under the lock before anything is sent.
2. **Ledger**: every action of the plan enters the ledger as ``pending``, becomes ``started`` before its call
   and ``applied`` (with its audit row, in one transaction) after it. A crash between the call and that commit
   leaves ``started``; a request that went unanswered leaves ``uncertain``. The next run either plans the
   action again (it had not taken effect) or not (it had; its missing audit row is written then,
   :meth:`Applier.resume`), so every applied change has exactly one audit row. Tickets still owed by an
   interrupted or failed run are carried into the next run, since no account state shows them.
3. **Execute**: one ``match`` on the action's type, one connector call — to the connector of the action's
   target (``directory``: the identity provider; the others: ``targets``). A failed step fails that step
   only: it is audited with the connector's message; the steps that need its result (everything after a
   failed create *in that target*, and a creation ``after`` it) are skipped with that reason; the rest of the
   plan, the other targets, and the batch go on. An account the identity provider already had (a 409, or
   found by its employee id) is a look-up, recorded as skipped, not as a creation. A ``link`` adopts an
   account the target already had by writing the employee id onto it.

Decisions are actions too (:class:`~lifecycle.actions.RecordApproval`,
:class:`~lifecycle.actions.RecordReviewDecision`): a grant, a reviewer's keep or revoke is a ledger row
(:class:`models.ledger.Grant`) committed with its audit row. Evidence that changes nothing (a finding, an
invalid HR record, a brake refusal, a run summary) is written with :meth:`Applier.note`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from connectors.errors import ConnectorError
from connectors.protocols import BatchWriter, IdentityProvider, Notifier, Ticketing
from engine.auditor import Auditor
from engine.locks import Locks
from engine.memberships import MembershipWrite, write_memberships
from lifecycle.actions import (
    ACCOUNT_KINDS,
    ACTION_ADAPTER,
    DIRECTORY,
    Action,
    ActionKind,
    AddMembership,
    AdoptEmployee,
    CloseTicket,
    CommentTicket,
    CreateAccount,
    DeleteAccount,
    DisableAccount,
    EnableAccount,
    LinkAccount,
    Notify,
    OpenTicket,
    Plan,
    RecordApproval,
    RecordReviewDecision,
    RemoveMembership,
    RequestApproval,
    Schedule,
    UpdateAccount,
)
from lifecycle.notices import with_ticket_ids
from models.audit import AuditEventBase, Outcome, append_events, utcnow
from models.db import session_scope
from models.directory import Mirror, MirrorChanges, mirror_put
from models.domain import Account, Notice
from models.ledger import (
    OPEN_STATUSES,
    EntryRow,
    Grant,
    GrantStatus,
    LedgerEntry,
    LedgerStatus,
    applied_since,
    changed_since_by_others,
    cursor_put,
    entries_for,
    open_entries_of,
    roster_count_put,
    upsert_entries,
    upsert_grants,
)
from models.review import Decision, DecisionRow, record_decisions

__all__ = [
    "AUDIT_ACTIONS",
    "ActionResult",
    "ApplyReport",
    "Applier",
    "Scheduler",
    "Approver",
    "Step",
    "Replan",
]

log = logging.getLogger("tenure.apply")

# Why a change is audited as applied by a later run (Applier.resume), by the ledger status it was left in.
RECOVERED = {
    LedgerStatus.STARTED: "completed before an interruption; confirmed by re-planning",
    LedgerStatus.UNCERTAIN: "took effect although its request went unanswered; confirmed by re-planning",
}

# Audit action names by plan action kind.
AUDIT_ACTIONS: dict[ActionKind, str] = {
    ActionKind.CREATE_ACCOUNT: "idp.user.create",
    ActionKind.UPDATE_ACCOUNT: "idp.user.update",
    ActionKind.ENABLE_ACCOUNT: "idp.user.enable",
    ActionKind.DISABLE_ACCOUNT: "idp.user.disable",
    ActionKind.DELETE_ACCOUNT: "idp.user.delete",
    ActionKind.LINK_ACCOUNT: "idp.user.link",
    ActionKind.ADD_MEMBERSHIP: "idp.membership.add",
    ActionKind.REMOVE_MEMBERSHIP: "idp.membership.remove",
    ActionKind.OPEN_TICKET: "ticket.create",
    ActionKind.COMMENT_TICKET: "ticket.comment",
    ActionKind.CLOSE_TICKET: "ticket.close",
    ActionKind.REQUEST_APPROVAL: "approval.request",
    ActionKind.SCHEDULE: "lifecycle.schedule",
    ActionKind.RECORD_APPROVAL: "approval.record",
    ActionKind.RECORD_REVIEW_DECISION: "review.decision",
    ActionKind.NOTIFY: "notify.send",
    ActionKind.ADOPT: "lifecycle.adopt",
}
# Kinds that act on an existing account (skipped when there is none).
_NEEDS_ACCOUNT = ACCOUNT_KINDS - {ActionKind.CREATE_ACCOUNT, ActionKind.LINK_ACCOUNT}
_MEMBERSHIP_KINDS = frozenset({ActionKind.ADD_MEMBERSHIP, ActionKind.REMOVE_MEMBERSHIP})
_TICKET_KINDS = frozenset({ActionKind.OPEN_TICKET, ActionKind.COMMENT_TICKET, ActionKind.CLOSE_TICKET})
# Owed until done, whatever the new plan says: no account state shows a ticket opened or a message sent.
_CARRIED_KINDS = frozenset({ActionKind.OPEN_TICKET, ActionKind.NOTIFY})
# Records only: their effect is their finished entry's transaction, so there is no "started" to recover from.
_RECORD_KINDS = frozenset({ActionKind.ADOPT, ActionKind.RECORD_APPROVAL, ActionKind.RECORD_REVIEW_DECISION})

# async (schedule) -> the scheduled flow run id
Scheduler = Callable[[Schedule], Awaitable[str]]
# async (request) -> (approved, approver, reason)
Approver = Callable[[RequestApproval], Awaitable[tuple[bool, str, str]]]
# async (action, account) -> (result, account): how one step runs (flows wrap apply_action in a Prefect task)
Step = Callable[[Action, "Account | None"], Awaitable[tuple["ActionResult", "Account | None"]]]
# async () -> (plan, account, the other targets' accounts): the employee's plan computed again from fresh
# state (see Applier.apply)
Replan = Callable[[], Awaitable[tuple[Plan, "Account | None", "Mapping[str, Account | None]"]]]
# async (employee id) -> (plan, account): the same for one employee of a batch on the directory alone
# (see Applier.apply_many)
ReplanOne = Callable[[str], Awaitable[tuple[Plan, "Account | None"]]]


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    detail: str = ""
    target_id: str | None = None  # the account, ticket or flow run the step acted on or made


@dataclass(frozen=True, slots=True)
class _Made:
    """What an action's ledger entries repeat: its key, kind and subject, and its JSON text."""

    action: Action
    key: str
    kind: str
    subject: str
    text: str


@dataclass(slots=True)
class _Finish:
    """How one action ended, for its ledger entry and audit row (committed in batches, :meth:`Applier._commit`)."""

    action: Action
    outcome: Outcome
    detail: str
    target_id: str | None
    status: LedgerStatus


@dataclass
class ApplyReport:
    """What happened to one employee's plan."""

    employee_id: str
    event: str
    results: list[ActionResult] = field(default_factory=list)
    skipped_reason: str | None = None
    error: str | None = None  # the employee could not be planned at all (e.g. an invalid HR record)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def failed(self) -> list[ActionResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def ok(self) -> bool:
        return not self.failed and self.error is None

    def markdown(self) -> str:
        lines = [f"### {self.event} `{self.employee_id}`", ""]
        if self.error:
            lines.append(f"Failed: {self.error}")
        if self.skipped_reason:
            lines.append(f"Skipped: {self.skipped_reason}")
        if not self.results:
            lines.append("Nothing to change.")
            return "\n".join(lines)
        lines += ["| target | action | on | outcome | detail |", "|---|---|---|---|---|"]
        for r in self.results:
            detail = (r.detail or r.action.reason).replace("|", "/")
            lines.append(
                f"| {r.action.target} | {r.action.kind.value} | {r.action.shown_subject} | {r.outcome.value} "
                f"| {detail} |"
            )
        return "\n".join(lines)


@dataclass
class _Run:
    """One employee's plan being applied within a batch: the actions, how far it got, the account so far."""

    actions: list[Action]
    account: Account | None
    report: ApplyReport
    wave: int = 0  # accounts are created wave by wave: a manager's before their reports'
    index: int = 0
    blocked: str | None = None  # why the remaining steps cannot run (a failed create)

    def creates_ahead(self) -> bool:
        return any(a.kind is ActionKind.CREATE_ACCOUNT for a in self.actions[self.index :])

    @property
    def done(self) -> bool:
        return self.index >= len(self.actions)

    def next_is_membership(self) -> bool:
        return self.actions[self.index].kind in _MEMBERSHIP_KINDS

    def why_not(self, action: Action) -> str | None:
        """Why ``action`` is skipped instead of run, if it is."""
        if self.blocked is not None:
            return self.blocked
        if action.kind in _NEEDS_ACCOUNT and self.account is None:
            return "no account to act on (creation pending)"
        return None


class Applier:
    """Applies plans through the connectors, with the ledger and the audit trail (module docstring).

    ``dry_run`` writes ``planned`` audit rows and touches nothing else. ``scheduler`` books SCHEDULE actions
    (a Prefect flow run at ``at``); ``approver`` decides REQUEST_APPROVAL actions (a Prefect form). Without
    them those actions are recorded as skipped with the reason. ``locks`` defaults to the ledger database's.
    ``targets``: the connectors of the provisioning targets other than the directory, by name.
    """

    def __init__(
        self,
        *,
        auditor: Auditor,
        idp: IdentityProvider | None = None,
        targets: Mapping[str, IdentityProvider] | None = None,
        ticketing: Ticketing | None = None,
        dry_run: bool = False,
        scheduler: Scheduler | None = None,
        approver: Approver | None = None,
        step: Step | None = None,
        locks: Locks | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.idp = idp
        self.targets = dict(targets or {})
        self.ticketing = ticketing
        self.notifier = notifier
        self.auditor = auditor
        self.dry_run = dry_run
        self.scheduler = scheduler
        self.approver = approver
        self.step: Step = step or self.apply_action
        self._locks = locks
        self._group_ids: dict[str, dict[str, str]] = {}  # target → group name → id
        self._approved_by: dict[str, str] = {}  # request key → who approved it (for the grant)
        self._dumps: dict[int, _Made] = {}  # id(action) → what its ledger entries need

    @property
    def locks(self) -> Locks:
        if self._locks is None:
            self._locks = Locks(self.auditor.database_url, holder=self.auditor.correlation_id)
        return self._locks

    @property
    def database_url(self) -> str:
        return self.auditor.database_url

    # ------------------------------------------------------------------------------------------ evidence

    def note(self, **fields: Any) -> None:
        """Audit evidence that changes nothing (fields of :meth:`engine.auditor.Auditor.event`)."""
        self.note_many([self.auditor.event(**fields)])

    def note_many(self, events: Iterable[AuditEventBase]) -> None:
        with session_scope(self.database_url) as session:
            append_events(session=session, events=events)

    def record_roster(self, name: str, count: int) -> None:
        """Remember how many HR records a full sync read (the next full sync's truncated-export check)."""
        with session_scope(self.database_url) as session:
            roster_count_put(session=session, name=name, count=count)
            session.commit()

    def move_cursor(self, name: str, value: datetime) -> None:
        """Store an incremental job's cursor (only once everything it covers was processed)."""
        with session_scope(self.database_url) as session:
            cursor_put(session=session, name=name, value=value)
            session.commit()

    def mirror_directory(self, name: str, mirror: Mirror, changes: MirrorChanges | None = None) -> None:
        """Store the sync's copy of a change-tracking directory with its delta links (:mod:`models.directory`):
        every row after a full read, the changed rows after a delta read."""
        with session_scope(self.database_url) as session:
            mirror_put(session=session, name=name, mirror=mirror, changes=changes)
            session.commit()

    # ------------------------------------------------------------------------------------------ plans

    async def apply(
        self,
        plan: Plan,
        account: Account | None,
        *,
        accounts: Mapping[str, Account | None] | None = None,
        planned_at: datetime | None = None,
        replan: Replan | None = None,
    ) -> ApplyReport:
        """Apply every action in order under the employee's lock (module docstring). ``account``: the
        directory account; ``accounts``: the other targets' accounts by target name. ``planned_at``: when the
        state the plan was computed from was read; with ``replan``, a plan gone stale since is recomputed."""
        if self.dry_run:
            self.note_many(self._audit(a, Outcome.PLANNED, a.reason) for a in plan.actions)
            return ApplyReport(
                plan.employee_id,
                plan.event,
                [ActionResult(a, Outcome.PLANNED) for a in plan.actions],
                skipped_reason=plan.skipped_reason,
            )
        async with self.locks.hold(plan.employee_id):
            if (
                planned_at is not None
                and replan is not None
                and self._changed_since(plan.employee_id, planned_at)
            ):
                log.info(
                    "employee %s changed by another run since it was read; planning again", plan.employee_id
                )
                plan, account, accounts = await replan()
            return await self._apply_locked(plan, {**(accounts or {}), DIRECTORY: account})

    async def _apply_locked(self, plan: Plan, accounts: dict[str, Account | None]) -> ApplyReport:
        report = ApplyReport(plan.employee_id, plan.event, skipped_reason=plan.skipped_reason)
        actions = [*plan.actions, *self.resume(plan)]
        self._mark_pending(actions)
        blocked: dict[str, str] = {}  # target → why its remaining steps cannot run (a failed create or link)
        opened: dict[str, str] = {}  # ticket purpose → id, for the notifications that name them
        for action in actions:
            if isinstance(action, Notify) and opened:
                action = with_ticket_ids(action, opened)
            where, account = action.target, accounts.get(action.target)
            after = action.after if isinstance(action, CreateAccount) else None
            if where in blocked:
                result = self._skip(action, blocked[where])
            elif after is not None and after in blocked:
                result = self._skip(action, f"skipped: the {after} account is missing ({blocked[after]})")
            elif action.kind in _NEEDS_ACCOUNT and account is None:
                result = self._skip(action, "no account to act on (creation pending)")
            else:
                result, accounts[where] = await self.step(action, account)
                if isinstance(action, CreateAccount | LinkAccount) and result.outcome is Outcome.FAILED:
                    blocked[where] = f"skipped: the account could not be created or adopted ({result.detail})"
                if isinstance(action, OpenTicket) and result.target_id:
                    opened[action.request.purpose] = result.target_id
            report.results.append(result)
        return report

    # ------------------------------------------------------------------------------------------ batches

    async def apply_many(
        self,
        items: Sequence[tuple[Plan, Account | None]],
        *,
        planned_at: datetime | None = None,
        replan: ReplanOne | None = None,
        concurrency: int = 8,
        waves: Sequence[int] | None = None,
    ) -> list[ApplyReport]:
        """Apply many employees' plans together (a sync batch), with the guarantees of :meth:`apply`.

        Every employee's lock is held for the whole batch (:meth:`engine.locks.Locks.hold_many`; one not
        obtained in time fails that employee, nothing of theirs is changed), plans gone stale are computed
        again, and each employee's actions still run in plan order. The batch advances in levels: every
        employee's next non-membership action runs (``concurrency`` at a time), and when only membership
        actions are next they are written together, one request per group (:mod:`engine.memberships`). Each
        level's ledger entries and audit rows are one transaction, still one entry and one row per action.
        ``waves`` (one per item): an employee of a later wave waits until no earlier one has an account still
        to create (a joiner's manager reference needs the manager's account).
        """
        if self.dry_run:
            self.note_many(
                self._audit(a, Outcome.PLANNED, a.reason) for plan, _ in items for a in plan.actions
            )
            return [
                ApplyReport(
                    plan.employee_id,
                    plan.event,
                    [ActionResult(a, Outcome.PLANNED) for a in plan.actions],
                    skipped_reason=plan.skipped_reason,
                )
                for plan, _ in items
            ]
        reports: dict[str, ApplyReport] = {}
        async with self.locks.hold_many(plan.employee_id for plan, _ in items) as refused:
            held: list[tuple[Plan, Account | None]] = []
            for plan, account in items:
                if plan.employee_id in refused:
                    error = str(refused[plan.employee_id])
                    reports[plan.employee_id] = ApplyReport(plan.employee_id, plan.event, error=error)
                else:
                    held.append((plan, account))
            held = await self._fresh(held, planned_at, replan, reports)
            wave_of = {p.employee_id: w for (p, _), w in zip(items, waves or [0] * len(items), strict=True)}
            runs = self._begin(held, wave_of)
            await self._advance(runs, concurrency)
            reports |= {run.report.employee_id: run.report for run in runs}
        return [reports[plan.employee_id] for plan, _ in items]

    async def _fresh(
        self,
        held: list[tuple[Plan, Account | None]],
        planned_at: datetime | None,
        replan: ReplanOne | None,
        reports: dict[str, ApplyReport],
    ) -> list[tuple[Plan, Account | None]]:
        """The plans, those another run made stale since ``planned_at`` computed again (one ledger query)."""
        if planned_at is None or replan is None or not held:
            return held
        with session_scope(self.database_url) as session:
            stale = changed_since_by_others(
                session=session,
                employee_ids=[plan.employee_id for plan, _ in held],
                since=planned_at,
                other_than=self.auditor.correlation_id,
            )
        fresh: list[tuple[Plan, Account | None]] = []
        for plan, account in held:
            if plan.employee_id in stale:
                log.info(
                    "employee %s changed by another run since it was read; planning again", plan.employee_id
                )
                try:
                    plan, account = await replan(plan.employee_id)
                except Exception as exc:  # noqa: BLE001 - one employee's re-plan must not stop the batch
                    log.warning("planning employee %s again failed: %s", plan.employee_id, exc)
                    reports[plan.employee_id] = ApplyReport(
                        plan.employee_id, plan.event, error=f"planning again failed: {type(exc).__name__}"
                    )
                    continue
            fresh.append((plan, account))
        return fresh

    def _begin(self, held: list[tuple[Plan, Account | None]], wave_of: dict[str, int]) -> list[_Run]:
        """Settle what earlier runs left open (:meth:`resume`) and enter every action as pending: one query
        and one transaction for the batch."""
        with session_scope(self.database_url) as session:
            open_by = open_entries_of(session=session, employee_ids=[plan.employee_id for plan, _ in held])
        runs: list[_Run] = []
        finishes: list[_Finish] = []
        entries: list[EntryRow] = []
        for plan, account in held:
            carried, recovered, superseded = self._settle(plan, open_by.get(plan.employee_id, []))
            actions = [*plan.actions, *carried]
            finishes += recovered
            entries += superseded
            entries += [self._entry(a, LedgerStatus.PENDING) for a in actions]
            report = ApplyReport(plan.employee_id, plan.event, skipped_reason=plan.skipped_reason)
            runs.append(_Run(actions, account, report, wave_of.get(plan.employee_id, 0)))
        self._commit(finishes, entries=entries)
        return runs

    async def _advance(self, runs: list[_Run], concurrency: int) -> None:
        """Level after level until every run is done. A level's finished actions are committed with the next
        level's started entries, before any request of it (nothing happens between the two), and the last
        level's on the way out, whatever happened."""
        owed: list[_Finish] = []
        try:
            while live := [run for run in runs if not run.done]:
                creating = [run.wave for run in live if run.creates_ahead()]
                ready = [run for run in live if run.wave <= min(creating)] if creating else live
                steps = [run for run in ready if not run.next_is_membership()]
                if steps:
                    owed = await self._step_level(steps, concurrency, owed)
                else:
                    owed = await self._membership_level(live, owed)
        finally:
            self._commit(owed)

    async def _step_level(self, runs: list[_Run], concurrency: int, owed: list[_Finish]) -> list[_Finish]:
        """Each run's next action (not a membership), ``concurrency`` at a time; ``owed`` (the last level's
        finished actions) is committed with this level's started entries. Returns this level's finished ones."""
        finishes: list[_Finish] = []
        todo: list[tuple[_Run, Action]] = []
        for run in runs:
            action = run.actions[run.index]
            run.index += 1
            why = run.why_not(action)
            if why is None:
                todo.append((run, action))
                continue
            run.report.results.append(ActionResult(action, Outcome.SKIPPED, why))
            finishes.append(_Finish(action, Outcome.SKIPPED, why, None, LedgerStatus.PENDING))
        self._commit(
            owed,
            entries=[self._entry(a, LedgerStatus.STARTED) for _, a in todo if a.kind not in _RECORD_KINDS],
        )
        owed.clear()
        creates = [(run, a) for run, a in todo if isinstance(a, CreateAccount)]
        if len(creates) > 1:  # joiners together: the connector creates them in as few requests as it can
            todo = [(run, a) for run, a in todo if not isinstance(a, CreateAccount)]
            finishes += await self._create_many(creates)
        idp = self.idp
        batched: list[tuple[_Run, Action]] = (
            [(run, a) for run, a in todo if _batchable(a)] if isinstance(idp, BatchWriter) else []
        )
        if len(batched) > 1:  # a connector that batches any users' writes (Graph $batch)
            todo = [(run, a) for run, a in todo if not _batchable(a)]
            finishes += await self._update_many(batched)
        semaphore = asyncio.Semaphore(concurrency)

        async def one(run: _Run, action: Action) -> None:
            async with semaphore:
                result, run.account, finish = await self._attempt(action, run.account)
            run.report.results.append(result)
            finishes.append(finish)
            if isinstance(action, CreateAccount) and result.outcome is Outcome.FAILED:
                run.blocked = f"skipped: the account could not be created ({result.detail})"

        try:
            await _all_or_cancel([one(run, action) for run, action in todo])
        except BaseException:
            self._commit(finishes)
            raise
        return finishes

    async def _create_many(self, creates: list[tuple[_Run, CreateAccount]]) -> list[_Finish]:
        """Several runs' account creations through one :meth:`IdentityProvider.create_users` call."""
        try:
            made: list[Account | ConnectorError] = await self._idp().create_users(
                [action.attributes for _, action in creates]
            )
            if len(made) != len(creates):
                raise ConnectorError("create_users did not answer every account", source=self._idp().source)
        except ConnectorError as exc:
            made = [exc] * len(creates)
        except Exception as exc:  # noqa: BLE001 - a defect fails these creations, not the batch
            log.exception("creating %d accounts crashed", len(creates))
            made = [ConnectorError(f"internal error: {type(exc).__name__}", source="tenure")] * len(creates)
        finishes: list[_Finish] = []
        for (run, action), outcome in zip(creates, made, strict=True):
            if isinstance(outcome, ConnectorError):
                log.warning("%s failed: %s", action.step_name, outcome)
                result, finish = self._failed(action, outcome)
                run.blocked = f"skipped: the account could not be created ({result.detail})"
            else:
                status, detail, run.account, target_id = _creation(outcome)
                ledger = LedgerStatus.APPLIED if status is Outcome.APPLIED else LedgerStatus.SKIPPED
                result = ActionResult(action, status, detail, target_id)
                finish = _Finish(action, status, detail, target_id, ledger)
            run.report.results.append(result)
            finishes.append(finish)
        return finishes

    async def _update_many(self, updates: list[tuple[_Run, Action]]) -> list[_Finish]:
        """Several runs' attribute changes, enables and disables through one ``BatchWriter.update_users``."""
        idp = self.idp
        assert isinstance(idp, BatchWriter)
        wanted = [(run, action, _changes(action)) for run, action in updates]
        try:
            failed = await idp.update_users([(run.account.id, c) for run, _, c in wanted if run.account])
        except ConnectorError as exc:
            failed = {run.account.id: exc for run, _, _ in wanted if run.account}
        finishes: list[_Finish] = []
        for run, action, changes in wanted:
            assert run.account is not None
            error = failed.get(run.account.id)
            if error is not None:
                log.warning("%s failed: %s", action.step_name, error)
                result, finish = self._failed(action, error)
            else:
                values = {k: (None if v == "" else v) for k, v in changes.items()}
                run.account = run.account.model_copy(update=values)
                result = ActionResult(action, Outcome.APPLIED, "", run.account.id)
                finish = _Finish(action, Outcome.APPLIED, "", run.account.id, LedgerStatus.APPLIED)
            run.report.results.append(result)
            finishes.append(finish)
        return finishes

    async def _membership_level(self, runs: list[_Run], owed: list[_Finish]) -> list[_Finish]:
        """Every run's next memberships, written together: one request per group (:mod:`engine.memberships`);
        ``owed`` as for :meth:`_step_level`."""
        order: list[tuple[_Run, Action, str | None]] = []
        writes: list[MembershipWrite] = []
        for run in runs:
            while not run.done and run.next_is_membership():
                action = run.actions[run.index]
                run.index += 1
                why = run.why_not(action)
                order.append((run, action, why))
                if why is None:
                    assert run.account is not None and isinstance(action, AddMembership | RemoveMembership)
                    writes.append(MembershipWrite(action, run.account.id))
        self._commit(owed, entries=[self._entry(w.action, LedgerStatus.STARTED) for w in writes])
        owed.clear()
        outcome = await write_memberships(self._idp(), writes, self.group_id) if writes else {}
        finishes: list[_Finish] = []
        groups_of: dict[int, tuple[_Run, set[str]]] = {}  # a run's account gets its new groups once
        for run, action, why in order:
            key = action.key
            if why is not None:
                result = ActionResult(action, Outcome.SKIPPED, why)
                finish = _Finish(action, Outcome.SKIPPED, why, None, LedgerStatus.PENDING)
            elif key not in outcome:
                unanswered = ConnectorError(
                    "the membership write was not answered", source=self._idp().source
                )
                result, finish = self._failed(action, unanswered)
            elif (error := outcome[key]) is not None:
                log.warning("%s failed: %s", action.step_name, error)
                result, finish = self._failed(action, error)
            else:
                assert run.account is not None
                _, groups = groups_of.setdefault(id(run), (run, set(run.account.groups)))
                if isinstance(action, AddMembership):
                    groups.add(action.subject)
                else:
                    groups.discard(action.subject)
                result = ActionResult(action, Outcome.APPLIED, "", run.account.id)
                finish = _Finish(action, Outcome.APPLIED, "", run.account.id, LedgerStatus.APPLIED)
            run.report.results.append(result)
            finishes.append(finish)
        for run, groups in groups_of.values():
            assert run.account is not None
            run.account = run.account.model_copy(update={"groups": frozenset(groups)})
        return finishes

    def _changed_since(self, employee_id: str, since: datetime) -> bool:
        with session_scope(self.database_url) as session:
            return applied_since(
                session=session,
                employee_id=employee_id,
                since=since,
                other_than=self.auditor.correlation_id,
            )

    def _skip(self, action: Action, why: str) -> ActionResult:
        self._finish(action, Outcome.SKIPPED, why, None, status=LedgerStatus.PENDING)
        return ActionResult(action, Outcome.SKIPPED, why)

    async def apply_action(
        self, action: Action, account: Account | None
    ) -> tuple[ActionResult, Account | None]:
        """One step: ledger ``started`` → connector call → ledger ``applied`` + audit row, atomically."""
        self._commit([], entries=[self._entry(action, LedgerStatus.STARTED)])
        result, account, finish = await self._attempt(action, account)
        self._commit([finish])
        return result, account

    async def _attempt(
        self, action: Action, account: Account | None
    ) -> tuple[ActionResult, Account | None, _Finish]:
        """The connector call of one step and how it finished (the caller commits the finish)."""
        try:
            outcome, detail, account, target_id = await self._execute(action, account)
        except ConnectorError as exc:
            log.warning("%s failed: %s", action.step_name, exc)  # ids, not the user name a subject may be
            result, finish = self._failed(action, exc)
            return result, account, finish
        except Exception as exc:  # noqa: BLE001 - a defect in one step fails that step, not the batch
            log.exception("%s crashed", action.step_name)
            detail = f"internal error: {type(exc).__name__}"
            finish = _Finish(action, Outcome.FAILED, detail, None, LedgerStatus.FAILED)
            return ActionResult(action, Outcome.FAILED, detail), account, finish
        status = LedgerStatus.APPLIED if outcome is Outcome.APPLIED else LedgerStatus.SKIPPED
        finish = _Finish(action, outcome, detail, target_id, status)
        return ActionResult(action, outcome, detail, target_id), account, finish

    @staticmethod
    def _failed(action: Action, exc: ConnectorError) -> tuple[ActionResult, _Finish]:
        # a retryable failure (timeout, 5xx, 429) may still have taken effect: "uncertain", settled by resume()
        status = LedgerStatus.UNCERTAIN if exc.retryable else LedgerStatus.FAILED
        return (
            ActionResult(action, Outcome.FAILED, str(exc)),
            _Finish(action, Outcome.FAILED, str(exc), None, status),
        )

    def resume(self, plan: Plan) -> list[Action]:
        """Settle what an earlier, interrupted or failed run of this employee left open in the ledger.

        - a ticket or notification still owed (pending, started or failed) is carried into this run: tickets are
          idempotent by reference, and the account state cannot show whether one was opened or a message sent;
        - an account change left ``started`` (interrupted) or ``uncertain`` (its request went unanswered) that
          the new plan no longer contains took effect after all (the IdP state shows it): its missing audit row
          is written now;
        - anything else the new plan no longer contains is superseded by the current state.
        """
        with session_scope(self.database_url) as session:
            open_entries = entries_for(session=session, employee_id=plan.employee_id, statuses=OPEN_STATUSES)
        carried, finishes, superseded = self._settle(plan, open_entries)
        self._commit(finishes, entries=superseded)
        return carried

    def _settle(
        self, plan: Plan, open_entries: Iterable[LedgerEntry]
    ) -> tuple[list[Action], list[_Finish], list[EntryRow]]:
        """:meth:`resume`'s decisions for ``open_entries``: (actions carried into this run, recovered changes
        to audit as applied, superseded entries), written by the caller in one transaction."""
        planned = {a.key for a in plan.actions}
        carried: list[Action] = []
        finishes: list[_Finish] = []
        superseded: list[EntryRow] = []
        for entry in open_entries:
            if entry.key in planned:
                continue
            action = ACTION_ADAPTER.validate_python(entry.action)
            status = LedgerStatus(entry.status)
            if action.kind in _CARRIED_KINDS:
                carried.append(action)
            elif status in RECOVERED and action.kind in ACCOUNT_KINDS:
                finishes.append(
                    _Finish(action, Outcome.APPLIED, RECOVERED[status], None, LedgerStatus.APPLIED)
                )
            else:
                superseded.append(self._entry(action, LedgerStatus.SUPERSEDED))
        return carried, finishes, superseded

    def _mark_pending(self, actions: list[Action]) -> None:
        self._commit([], entries=[self._entry(a, LedgerStatus.PENDING) for a in actions])

    def _entry(self, action: Action, status: LedgerStatus, detail: str = "") -> EntryRow:
        made = self._made(action)
        return EntryRow(
            key=made.key,
            employee_id=action.employee_id,
            kind=made.kind,
            target=made.subject,
            status=status,
            action=made.text,
            detail=detail,
            flow_run_id=self.auditor.correlation_id,
        )

    def _made(self, action: Action) -> _Made:
        """The action's key, kind, subject and JSON text, made once per action (an entry is written pending,
        started and finished). Held by identity: the cache keeps the action, so its id is not reused."""
        cached = self._dumps.get(id(action))
        if cached is not None and cached.action is action:
            return cached
        text = ACTION_ADAPTER.dump_json(action).decode()
        made = _Made(action, action.key, action.kind.value, action.subject, text)
        if len(self._dumps) >= 20_000:
            self._dumps.clear()
        self._dumps[id(action)] = made
        return made

    def _commit(self, finishes: Sequence[_Finish], *, entries: Sequence[EntryRow] = ()) -> None:
        """Ledger entries, the finished actions' entries, the grants and decisions they make and their audit
        rows: one transaction (the audit chain is appended under its lock, :func:`models.audit.append_events`)."""
        if not finishes and not entries:
            return
        events = [self._audit(f.action, f.outcome, f.detail, target_id=f.target_id) for f in finishes]
        with session_scope(self.database_url) as session:
            upsert_entries(
                session=session,
                entries=[*entries, *(self._entry(f.action, f.status, f.detail) for f in finishes)],
            )
            self._record_decisions(session, (f.action for f in finishes if f.outcome is Outcome.APPLIED))
            if events:
                append_events(
                    session=session, events=events
                )  # commits the ledger entries with the audit rows
            else:
                session.commit()

    def _finish(
        self,
        action: Action,
        outcome: Outcome,
        detail: str,
        target_id: str | None,
        *,
        status: LedgerStatus,
    ) -> None:
        """The ledger entry, any grant or decision it makes, and its audit row: one transaction."""
        self._commit([_Finish(action, outcome, detail, target_id, status)])

    def _audit(
        self, action: Action, outcome: Outcome, detail: str, *, target_id: str | None = None
    ) -> AuditEventBase:
        details: dict[str, Any] = {"target": action.subject, "provisioning_target": action.target}
        match action:
            case UpdateAccount(changes=changes, previous=previous):
                details["changed"] = sorted(changes)
                details["previous"] = {k: previous.get(k) for k in sorted(changes) if k in previous}
            case Schedule(event=event, at=at):
                details.update(event=event, at=at.isoformat())
            case OpenTicket(request=request):
                details["reference"] = request.reference
            case RecordReviewDecision():
                details.update(
                    campaign=action.campaign_id,
                    item=action.item_id,
                    decision=action.decision,
                    by=action.decided_by,
                    group=action.group,
                    flagged=action.flagged,
                    recommended=action.recommended,
                    followed=None
                    if action.recommended in (None, "none")
                    else action.recommended == action.decision,
                )
            case RecordApproval(decided_by=by):
                details["by"] = by
            case Notify():  # ids only: no address, no text
                details.update(
                    template=action.template,
                    audience=action.audience,
                    recipient=action.recipient_id,
                    fallback=action.fallback,
                    occasion=action.occasion,
                )
            case LinkAccount(matched_by=matched_by, user_name=user_name):
                details.update(matched_by=matched_by, user_name=user_name)
            case AdoptEmployee(adopt_before=before):
                details["adopt_before"] = before.isoformat()
            case _:
                pass
        if action.kind in _TICKET_KINDS:
            system = self.ticketing.source if self.ticketing else "tenure"
        elif action.kind is ActionKind.NOTIFY:
            system = self.notifier.source if self.notifier else "tenure"
        elif action.kind in ACCOUNT_KINDS:
            connector = self.idp if action.target == DIRECTORY else self.targets.get(action.target)
            system = connector.source if connector else "tenure"
        else:
            system = (
                "prefect" if action.kind in (ActionKind.SCHEDULE, ActionKind.REQUEST_APPROVAL) else "tenure"
            )
        done = outcome in (Outcome.APPLIED, Outcome.PLANNED)
        return self.auditor.event(
            action=AUDIT_ACTIONS[action.kind],
            target_system=system,
            target_id=target_id or action.subject,
            employee_id=action.employee_id,
            outcome=outcome,
            reason=action.reason if done else f"{action.reason}: {detail}",
            details=details,
            # one audit row per applied change and run, however often its step is retried; two runs never
            # both apply one change (the employee's lock, and a found account is a look-up, not a creation)
            idempotency_key=f"{action.key}:{self.auditor.correlation_id}:applied"
            if outcome is Outcome.APPLIED
            else None,
        )

    # ------------------------------------------------------------------------------------------ decisions

    def _record_decisions(self, session: Session, actions: Iterable[Action]) -> None:
        """The grants and item decisions the applied decisions make, in the transaction of their ledger entries
        and audit rows (one executemany each, in the actions' order)."""
        grants: list[Grant] = []
        decisions: list[DecisionRow] = []
        for action in actions:
            match action:
                case RequestApproval() | RecordApproval():
                    grants.append(
                        Grant(
                            employee_id=action.employee_id,
                            group_name=action.group,
                            status=GrantStatus.GRANTED,
                            source="approval",
                            decided_by=self._approved_by.pop(action.key, "approver")
                            if isinstance(action, RequestApproval)
                            else action.decided_by,
                            decided_at=action.decided_at if isinstance(action, RecordApproval) else utcnow(),
                            correlation_id=self.auditor.correlation_id,
                        )
                    )
                case RecordReviewDecision():
                    keep = action.decision == "keep"
                    decisions.append(
                        DecisionRow(
                            campaign_id=action.campaign_id,
                            item_id=action.item_id,
                            decision=Decision.KEEP if keep else Decision.REVOKE,
                            decided_by=action.decided_by,
                            decided_at=action.decided_at,
                            reason=action.reason,
                            flagged=action.flagged,
                        )
                    )
                    if action.group and action.employee_id and not action.employee_id.startswith("account:"):
                        grants.append(
                            Grant(
                                employee_id=action.employee_id,
                                group_name=action.group,
                                status=GrantStatus.GRANTED if keep else GrantStatus.REVOKED,
                                source="review",
                                decided_by=action.decided_by,
                                decided_at=action.decided_at,
                                recertify_until=action.recertify_until if keep else None,
                                campaign_id=action.campaign_id,
                                item_id=action.item_id,
                                correlation_id=self.auditor.correlation_id,
                            )
                        )
                case _:
                    pass
        record_decisions(session, decisions)
        upsert_grants(session=session, grants=grants)

    # ------------------------------------------------------------------------------------------ execute

    async def group_id(self, name: str, target: str = DIRECTORY) -> str:
        idp = self._idp(target)
        known = self._group_ids.get(target)
        if known is None or name not in known:
            known = self._group_ids[target] = {g.name: g.id for g in await idp.list_groups()}
        if name not in known:
            where = "the identity provider" if target == DIRECTORY else f"target {target}"
            raise ConnectorError(f"group {name!r} does not exist in {where}", source=idp.source)
        return known[name]

    def remember_groups(self, group_ids: dict[str, str], target: str = DIRECTORY) -> None:
        """Group name → id, as a caller that already listed the groups read them (saves a list call)."""
        self._group_ids[target] = dict(group_ids)

    def _idp(self, target: str = DIRECTORY) -> IdentityProvider:
        idp = self.idp if target == DIRECTORY else self.targets.get(target)
        if idp is None:
            where = "identity provider" if target == DIRECTORY else f"connector for target {target}"
            raise ConnectorError(f"no {where} in this context", source="tenure")
        return idp

    async def _execute(
        self, action: Action, account: Account | None
    ) -> tuple[Outcome, str, Account | None, str | None]:
        if action.kind not in ACCOUNT_KINDS:
            outcome, detail, target_id, account = await self._side_effect(action, account)
            return outcome, detail, account, target_id
        idp, where = self._idp(action.target), action.target
        match action:
            case LinkAccount(account_id=account_id):
                assert account is not None and account.id == account_id
                linked = await idp.update_user(account, {"employee_id": action.employee_id})
                account = linked.model_copy(update={"groups": account.groups})
                return (
                    Outcome.APPLIED,
                    f"account {account_id} adopted (by {action.matched_by})",
                    account,
                    account_id,
                )
            case CreateAccount(attributes=attributes):
                return _creation(await idp.create_user(attributes))
            case UpdateAccount(changes=changes):
                assert account is not None
                account = await idp.update_user(account, dict(changes))
            case EnableAccount():
                assert account is not None
                await idp.reactivate_user(account.id)
                account = account.model_copy(update={"active": True})
            case DisableAccount():
                assert account is not None
                await idp.deactivate_user(account.id)
                account = account.model_copy(update={"active": False})
            case DeleteAccount():
                assert account is not None
                await idp.delete_user(account.id)
                return Outcome.APPLIED, "deleted", None, account.id
            case AddMembership(group=group):
                assert account is not None
                await idp.add_member(await self.group_id(group, where), account.id)
                account = account.model_copy(update={"groups": account.groups | {group}})
            case RemoveMembership(group=group):
                assert account is not None
                await idp.remove_member(await self.group_id(group, where), account.id)
                account = account.model_copy(update={"groups": account.groups - {group}})
            case _:  # pragma: no cover - every account kind is matched above
                raise ConnectorError(f"unknown account action kind {action.kind}", source="tenure")
        return Outcome.APPLIED, "", account, account.id

    async def _side_effect(
        self, action: Action, account: Account | None
    ) -> tuple[Outcome, str, str | None, Account | None]:
        match action:
            case OpenTicket(request=request):
                if self.ticketing is None:
                    return Outcome.SKIPPED, "no ticketing system configured", None, account
                ticket = await self.ticketing.create_ticket(request)
                return Outcome.APPLIED, f"ticket {ticket.id}", ticket.id, account
            case CommentTicket(ticket_id=ticket_id, text=text):
                if self.ticketing is None:
                    return Outcome.SKIPPED, "no ticketing system configured", None, account
                await self.ticketing.add_comment(ticket_id, text)
                return Outcome.APPLIED, text, ticket_id, account
            case CloseTicket(ticket_id=ticket_id):
                if self.ticketing is None:
                    return Outcome.SKIPPED, "no ticketing system configured", None, account
                await self.ticketing.close_ticket(ticket_id)
                return Outcome.APPLIED, "closed", ticket_id, account
            case Schedule(at=at):
                if self.scheduler is None:
                    return (
                        Outcome.SKIPPED,
                        "no scheduler here; the nightly sync re-plans this employee",
                        None,
                        account,
                    )
                run = await self.scheduler(action)
                return Outcome.APPLIED, f"flow run {run} at {at.isoformat()}", run, account
            case RequestApproval(group=group):
                if self.approver is None:
                    return Outcome.SKIPPED, "awaiting approval (no approver in this context)", None, account
                approved, approver, why = await self.approver(action)
                if not approved:
                    return Outcome.SKIPPED, f"denied by {approver}: {why}", None, account
                if account is not None:
                    await self._idp().add_member(await self.group_id(group), account.id)
                    account = account.model_copy(update={"groups": account.groups | {group}})
                self._approved_by[action.key] = approver
                return (
                    Outcome.APPLIED,
                    f"approved by {approver}: {why}",
                    account.id if account else None,
                    account,
                )
            case Notify():
                if self.notifier is None:
                    return Outcome.SKIPPED, "no notifier configured", None, account
                notice = Notice(key=action.key, to=action.to, subject=action.headline, body=action.body)
                sent = await self.notifier.send(notice)
                return Outcome.APPLIED, f"sent to the {action.audience}", sent, account
            case RecordApproval(decided_by=by) | RecordReviewDecision(decided_by=by):
                return Outcome.APPLIED, f"recorded for {by}", None, account
            case AdoptEmployee():
                linked = f"account {account.id}" if account is not None else "the account created next"
                return Outcome.APPLIED, f"adopted: linked to {linked}", None, account
        raise ConnectorError(f"unknown action kind {action.kind}", source="tenure")  # pragma: no cover


def _batchable(action: Action) -> bool:
    """An account write a BatchWriter can send in a batch (a manager change needs a look-up: alone)."""
    if isinstance(action, UpdateAccount):
        return "manager_id" not in action.changes
    return isinstance(action, EnableAccount | DisableAccount)


def _changes(action: Action) -> dict[str, Any]:
    if isinstance(action, UpdateAccount):
        return dict(action.changes)
    return {"active": isinstance(action, EnableAccount)}


def _creation(made: Account) -> tuple[Outcome, str, Account, str]:
    """How a create ended: applied, or a look-up when the identity provider already had the account."""
    if made.existing:
        return Outcome.SKIPPED, f"account {made.id} already exists (found, not created)", made, made.id
    return Outcome.APPLIED, f"account {made.id}", made, made.id


async def _all_or_cancel(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    """Run them together; if one raises (a crash, a cancel), stop the others before passing it on."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
