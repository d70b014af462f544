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

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from connectors.errors import ConnectorError
from connectors.protocols import IdentityProvider, Notifier, Ticketing
from engine.auditor import Auditor
from engine.locks import Locks
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
from models.audit import AuditEventBase, Outcome, record_many, utcnow
from models.db import session_scope
from models.directory import Mirror, MirrorChanges, mirror_put
from models.domain import Account, Notice
from models.ledger import (
    OPEN_STATUSES,
    Grant,
    GrantStatus,
    LedgerEntry,
    LedgerStatus,
    applied_since,
    cursor_put,
    entries_for,
    roster_count_put,
    upsert_entry,
    upsert_grant,
)
from models.review import Decision, ReviewItem

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
_TICKET_KINDS = frozenset({ActionKind.OPEN_TICKET, ActionKind.COMMENT_TICKET, ActionKind.CLOSE_TICKET})
# Owed until done, whatever the new plan says: no account state shows a ticket opened or a message sent.
_CARRIED_KINDS = frozenset({ActionKind.OPEN_TICKET, ActionKind.NOTIFY})

# async (schedule) -> the scheduled flow run id
Scheduler = Callable[[Schedule], Awaitable[str]]
# async (request) -> (approved, approver, reason)
Approver = Callable[[RequestApproval], Awaitable[tuple[bool, str, str]]]
# async (action, account) -> (result, account): how one step runs (flows wrap apply_action in a Prefect task)
Step = Callable[[Action, "Account | None"], Awaitable[tuple["ActionResult", "Account | None"]]]
# async () -> (plan, account, the other targets' accounts): the employee's plan computed again from fresh
# state (see Applier.apply)
Replan = Callable[[], Awaitable[tuple[Plan, "Account | None", "Mapping[str, Account | None]"]]]


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    detail: str = ""
    target_id: str | None = None  # the account, ticket or flow run the step acted on or made


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
            record_many(session=session, events=events)

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
        with session_scope(self.database_url) as session:
            upsert_entry(session=session, entry=self._entry(action, LedgerStatus.STARTED))
            session.commit()
        try:
            outcome, detail, account, target_id = await self._execute(action, account)
        except ConnectorError as exc:
            log.warning("%s failed: %s", action.step_name, exc)  # ids, not the user name a subject may be
            # a retryable failure (timeout, 5xx, 429) may still have taken effect: "uncertain", settled by resume()
            status = LedgerStatus.UNCERTAIN if exc.retryable else LedgerStatus.FAILED
            self._finish(action, Outcome.FAILED, str(exc), None, status=status)
            return ActionResult(action, Outcome.FAILED, str(exc)), account
        except Exception as exc:  # noqa: BLE001 - a defect in one step fails that step, not the batch
            log.exception("%s crashed", action.step_name)
            detail = f"internal error: {type(exc).__name__}"
            self._finish(action, Outcome.FAILED, detail, None, status=LedgerStatus.FAILED)
            return ActionResult(action, Outcome.FAILED, detail), account
        status = LedgerStatus.APPLIED if outcome is Outcome.APPLIED else LedgerStatus.SKIPPED
        self._finish(action, outcome, detail, target_id, status=status)
        return ActionResult(action, outcome, detail, target_id), account

    def resume(self, plan: Plan) -> list[Action]:
        """Settle what an earlier, interrupted or failed run of this employee left open in the ledger.

        - a ticket or notification still owed (pending, started or failed) is carried into this run: tickets are
          idempotent by reference, and the account state cannot show whether one was opened or a message sent;
        - an account change left ``started`` (interrupted) or ``uncertain`` (its request went unanswered) that
          the new plan no longer contains took effect after all (the IdP state shows it): its missing audit row
          is written now;
        - anything else the new plan no longer contains is superseded by the current state.
        """
        planned = {a.key for a in plan.actions}
        with session_scope(self.database_url) as session:
            open_entries = entries_for(session=session, employee_id=plan.employee_id, statuses=OPEN_STATUSES)
        carried: list[Action] = []
        for entry in open_entries:
            if entry.key in planned:
                continue
            action = ACTION_ADAPTER.validate_python(entry.action)
            status = LedgerStatus(entry.status)
            if action.kind in _CARRIED_KINDS:
                carried.append(action)
            elif status in RECOVERED and action.kind in ACCOUNT_KINDS:
                self._finish(action, Outcome.APPLIED, RECOVERED[status], None, status=LedgerStatus.APPLIED)
            else:
                with session_scope(self.database_url) as session:
                    upsert_entry(session=session, entry=self._entry(action, LedgerStatus.SUPERSEDED))
                    session.commit()
        return carried

    def _mark_pending(self, actions: list[Action]) -> None:
        with session_scope(self.database_url) as session:
            for action in actions:
                upsert_entry(session=session, entry=self._entry(action, LedgerStatus.PENDING))
            session.commit()

    def _entry(self, action: Action, status: LedgerStatus, detail: str = "") -> LedgerEntry:
        return LedgerEntry(
            key=action.key,
            employee_id=action.employee_id,
            kind=action.kind.value,
            target=action.subject,
            status=status,
            action=ACTION_ADAPTER.dump_python(action, mode="json"),
            detail=detail,
            flow_run_id=self.auditor.correlation_id,
        )

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
        event = self._audit(action, outcome, detail, target_id=target_id)
        with session_scope(self.database_url) as session:
            upsert_entry(session=session, entry=self._entry(action, status, detail))
            if outcome is Outcome.APPLIED:
                self._record_decision(session, action)
            record_many(session=session, events=[event])  # commits the ledger entry with the audit row

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

    def _record_decision(self, session: Session, action: Action) -> None:
        """The grant a decision makes, in the transaction of its ledger entry and audit row."""
        match action:
            case RequestApproval() | RecordApproval():
                upsert_grant(
                    session=session,
                    grant=Grant(
                        employee_id=action.employee_id,
                        group_name=action.group,
                        status=GrantStatus.GRANTED,
                        source="approval",
                        decided_by=self._approved_by.pop(action.key, "approver")
                        if isinstance(action, RequestApproval)
                        else action.decided_by,
                        decided_at=action.decided_at if isinstance(action, RecordApproval) else utcnow(),
                        correlation_id=self.auditor.correlation_id,
                    ),
                )
            case RecordReviewDecision():
                item = session.get(ReviewItem, (action.campaign_id, action.item_id))
                if item is not None:
                    item.decision = Decision.KEEP if action.decision == "keep" else Decision.REVOKE
                    item.decided_by, item.decided_at = action.decided_by, action.decided_at
                    item.reason, item.flagged = action.reason, action.flagged
                    if action.decision == "keep":
                        item.action_taken, item.action_outcome, item.action_at = "none", None, None
                    session.add(item)
                if action.group and action.employee_id and not action.employee_id.startswith("account:"):
                    upsert_grant(
                        session=session,
                        grant=Grant(
                            employee_id=action.employee_id,
                            group_name=action.group,
                            status=GrantStatus.GRANTED if action.decision == "keep" else GrantStatus.REVOKED,
                            source="review",
                            decided_by=action.decided_by,
                            decided_at=action.decided_at,
                            recertify_until=action.recertify_until if action.decision == "keep" else None,
                            campaign_id=action.campaign_id,
                            item_id=action.item_id,
                            correlation_id=self.auditor.correlation_id,
                        ),
                    )
            case _:
                pass

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
                made = await idp.create_user(attributes)
                if made.existing:
                    return (
                        Outcome.SKIPPED,
                        f"account {made.id} already exists (found, not created)",
                        made,
                        made.id,
                    )
                return Outcome.APPLIED, f"account {made.id}", made, made.id
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
