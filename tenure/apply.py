"""Apply a plan: each action is one audited, idempotent step through the connectors.

Idempotency comes from three places: the connectors (create looks up by employee id / ticket reference
first), the planner (re-planning after a partial apply plans only what is left), and the action ledger.
Every action of a plan enters the ledger as ``pending``, becomes ``started`` before its call and ``applied``
(with its audit row, in one transaction) after it. A crash between the call and that commit leaves
``started``: the next run either plans the action again (it had not taken effect; it is applied now) or does
not (it had; the run records the missing audit row as recovered), so every applied change has exactly one
audit row. Tickets still owed by an interrupted or failed run are carried into the next run
(:meth:`Applier.resume`), since no account state shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import ConnectorError
from connectors.protocols import IdentityProvider, Ticketing
from lifecycle.actions import ACCOUNT_KINDS, Action, ActionKind, Plan
from models.audit import AuditEventBase, Outcome, record_many
from models.db import session_scope
from models.domain import Account, AccountAttributes, TicketRequest
from models.state import LedgerEntry
from tenure.auditor import Auditor

__all__ = ["AUDIT_ACTIONS", "ActionResult", "ApplyReport", "Applier", "Scheduler", "Approver", "Step"]

log = logging.getLogger("tenure.apply")

# Ledger statuses that mean "not settled yet": see Applier.resume.
OPEN_STATUSES = ("pending", "started", "uncertain", "failed")

# Why a change is audited as applied by a later run (Applier.resume), by the ledger status it was left in.
RECOVERED = {
    "started": "completed before an interruption; confirmed by re-planning",
    "uncertain": "took effect although its request went unanswered; confirmed by re-planning",
}

# Audit action names by plan action kind.
AUDIT_ACTIONS: dict[ActionKind, str] = {
    ActionKind.CREATE_ACCOUNT: "idp.user.create",
    ActionKind.UPDATE_ACCOUNT: "idp.user.update",
    ActionKind.ENABLE_ACCOUNT: "idp.user.enable",
    ActionKind.DISABLE_ACCOUNT: "idp.user.disable",
    ActionKind.DELETE_ACCOUNT: "idp.user.delete",
    ActionKind.ADD_MEMBERSHIP: "idp.membership.add",
    ActionKind.REMOVE_MEMBERSHIP: "idp.membership.remove",
    ActionKind.OPEN_TICKET: "ticket.create",
    ActionKind.REQUEST_APPROVAL: "approval.request",
    ActionKind.SCHEDULE: "lifecycle.schedule",
}

# async (action) -> a short result string (e.g. the scheduled flow run id)
Scheduler = Callable[[Action], Awaitable[str]]
# async (action) -> (approved, approver, reason)
Approver = Callable[[Action], Awaitable[tuple[bool, str, str]]]
# async (action, account) -> (result, account): how one step runs (flows wrap apply_action in a Prefect task)
Step = Callable[[Action, "Account | None"], Awaitable[tuple["ActionResult", "Account | None"]]]


@dataclass(frozen=True)
class ActionResult:
    action: Action
    outcome: Outcome
    detail: str = ""


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
        lines += ["| action | target | outcome | detail |", "|---|---|---|---|"]
        for r in self.results:
            detail = (r.detail or r.action.reason).replace("|", "/")
            lines.append(f"| {r.action.kind.value} | {r.action.target} | {r.outcome.value} | {detail} |")
        return "\n".join(lines)


class Applier:
    """Applies plans through the connectors, with the ledger and the audit trail.

    ``dry_run`` writes ``planned`` audit rows and touches nothing else. ``scheduler`` books SCHEDULE actions
    (a Prefect flow run at ``at``); ``approver`` decides REQUEST_APPROVAL actions (a Prefect pause form).
    Without them those actions are recorded as skipped with the reason.
    """

    def __init__(
        self,
        *,
        idp: IdentityProvider,
        ticketing: Ticketing | None,
        auditor: Auditor,
        dry_run: bool = False,
        scheduler: Scheduler | None = None,
        approver: Approver | None = None,
        step: Step | None = None,
    ) -> None:
        self.idp = idp
        self.step: Step = step or self.apply_action
        self.ticketing = ticketing
        self.auditor = auditor
        self.dry_run = dry_run
        self.scheduler = scheduler
        self.approver = approver
        self._group_ids: dict[str, str] | None = None

    async def group_id(self, name: str) -> str:
        if self._group_ids is None or name not in self._group_ids:
            self._group_ids = {g.name: g.id for g in await self.idp.list_groups()}
        if name not in self._group_ids:
            raise ConnectorError(
                f"group {name!r} does not exist in the identity provider", source=self.idp.source
            )
        return self._group_ids[name]

    async def apply(self, plan: Plan, account: Account | None) -> ApplyReport:
        """Apply every action in order; a failed action is audited and does not stop the others, except
        that account actions after a failed create have no account to act on."""
        report = ApplyReport(plan.employee_id, plan.event, skipped_reason=plan.skipped_reason)
        if self.dry_run:
            self.auditor.record_many(self._audit(a, Outcome.PLANNED, a.reason) for a in plan.actions)
            report.results = [ActionResult(a, Outcome.PLANNED) for a in plan.actions]
            return report
        actions = [*plan.actions, *self.resume(plan)]
        self._mark_pending(actions)
        for action in actions:
            if account is None and action.kind not in (
                ActionKind.CREATE_ACCOUNT,
                ActionKind.OPEN_TICKET,
                ActionKind.SCHEDULE,
                ActionKind.REQUEST_APPROVAL,
            ):
                result = ActionResult(
                    action, Outcome.SKIPPED, "no account to act on (creation failed or pending)"
                )
                self.auditor.record_many([self._audit(action, result.outcome, result.detail)])
            else:
                result, account = await self.step(action, account)
            report.results.append(result)
        return report

    async def apply_action(
        self, action: Action, account: Account | None
    ) -> tuple[ActionResult, Account | None]:
        """One step: ledger ``started`` → connector call → ledger ``applied`` + audit row, atomically."""
        with session_scope(self.auditor.database_url) as session:
            session.merge(self._entry(action, "started"))
            session.commit()
        try:
            outcome, detail, account, target_id = await self._execute(action, account)
        except ConnectorError as exc:
            log.warning("%s %s for %s failed: %s", action.kind.value, action.target, action.employee_id, exc)
            # a retryable failure (timeout, 5xx, 429) may still have taken effect: "uncertain", settled by resume()
            self._finish(
                action, Outcome.FAILED, str(exc), None, status="uncertain" if exc.retryable else "failed"
            )
            return ActionResult(action, Outcome.FAILED, str(exc)), account
        self._finish(
            action, outcome, detail, target_id, status="applied" if outcome is Outcome.APPLIED else "skipped"
        )
        return ActionResult(action, outcome, detail), account

    def resume(self, plan: Plan) -> list[Action]:
        """Settle what an earlier, interrupted or failed run of this employee left open in the ledger.

        - a ticket still owed (pending, started or failed) is carried into this run: tickets are idempotent by
          reference, and the account state cannot show whether one was opened;
        - an account change left ``started`` (interrupted) or ``uncertain`` (its request went unanswered) that
          the new plan no longer contains took effect after all (the IdP state shows it): its missing audit row
          is written now;
        - anything else the new plan no longer contains is superseded by the current state.
        """
        planned = {a.key for a in plan.actions}
        with session_scope(self.auditor.database_url) as session:
            from sqlmodel import col, select

            open_entries = session.exec(
                select(LedgerEntry).where(
                    LedgerEntry.employee_id == plan.employee_id, col(LedgerEntry.status).in_(OPEN_STATUSES)
                )
            ).all()
        carried: list[Action] = []
        for entry in open_entries:
            if entry.key in planned:
                continue
            action = Action.model_validate(entry.result)
            if action.kind is ActionKind.OPEN_TICKET:
                carried.append(action)
            elif entry.status in ("started", "uncertain") and action.kind in ACCOUNT_KINDS:
                self._finish(action, Outcome.APPLIED, RECOVERED[entry.status], None, status="applied")
            else:
                self._set_status(entry.key, "superseded")
        return carried

    def _mark_pending(self, actions: list[Action]) -> None:
        with session_scope(self.auditor.database_url) as session:
            for action in actions:
                session.merge(self._entry(action, "pending"))
            session.commit()

    def _set_status(self, key: str, status: str) -> None:
        with session_scope(self.auditor.database_url) as session:
            entry = session.get(LedgerEntry, key)
            if entry is not None:
                entry.status = status
                session.add(entry)
                session.commit()

    def _entry(self, action: Action, status: str) -> LedgerEntry:
        return LedgerEntry(
            key=action.key,
            employee_id=action.employee_id,
            kind=action.kind.value,
            target=action.target,
            status=status,
            result=action.model_dump(mode="json"),
            flow_run_id=self.auditor.correlation_id,
        )

    def _finish(
        self, action: Action, outcome: Outcome, detail: str, target_id: str | None, *, status: str
    ) -> None:
        event = self._audit(action, outcome, detail, target_id=target_id)
        with session_scope(self.auditor.database_url) as session:
            session.merge(self._entry(action, status))
            record_many(session=session, events=[event])  # commits the ledger entry with the audit row

    def _audit(
        self, action: Action, outcome: Outcome, detail: str, *, target_id: str | None = None
    ) -> AuditEventBase:
        system = (
            self.ticketing.source
            if action.kind is ActionKind.OPEN_TICKET and self.ticketing
            else (
                "prefect"
                if action.kind in (ActionKind.SCHEDULE, ActionKind.REQUEST_APPROVAL)
                else self.idp.source
            )
        )
        details: dict[str, Any] = {"target": action.target}
        if action.kind is ActionKind.UPDATE_ACCOUNT:
            details["changed"] = sorted(action.params.get("changes", {}))
        if action.kind is ActionKind.SCHEDULE:
            details.update(event=action.params.get("event"), at=action.params.get("at"))
        if action.kind is ActionKind.OPEN_TICKET:
            details["reference"] = action.params.get("reference")
        return self.auditor.event(
            action=AUDIT_ACTIONS[action.kind],
            target_system=system,
            target_id=target_id or action.target,
            employee_id=action.employee_id,
            outcome=outcome,
            reason=action.reason
            if outcome in (Outcome.APPLIED, Outcome.PLANNED)
            else f"{action.reason}: {detail}",
            details=details,
            # one audit row per applied change, however often the step is retried
            idempotency_key=f"{action.key}:{self.auditor.correlation_id}:applied"
            if outcome is Outcome.APPLIED
            else None,
        )

    async def _execute(
        self, action: Action, account: Account | None
    ) -> tuple[Outcome, str, Account | None, str | None]:
        kind, idp = action.kind, self.idp
        if kind is ActionKind.CREATE_ACCOUNT:
            created = await idp.create_user(AccountAttributes.model_validate(action.params))
            return Outcome.APPLIED, f"account {created.id}", created, created.id
        assert account is not None
        if kind is ActionKind.UPDATE_ACCOUNT:
            account = await idp.update_user(account, dict(action.params.get("changes", {})))
        elif kind is ActionKind.ENABLE_ACCOUNT:
            await idp.reactivate_user(account.id)
            account = account.model_copy(update={"active": True})
        elif kind is ActionKind.DISABLE_ACCOUNT:
            await idp.deactivate_user(account.id)
            account = account.model_copy(update={"active": False})
        elif kind is ActionKind.DELETE_ACCOUNT:
            await idp.delete_user(account.id)
            return Outcome.APPLIED, "deleted", None, account.id
        elif kind is ActionKind.ADD_MEMBERSHIP:
            await idp.add_member(await self.group_id(action.target), account.id)
            account = account.model_copy(update={"groups": account.groups | {action.target}})
        elif kind is ActionKind.REMOVE_MEMBERSHIP:
            await idp.remove_member(await self.group_id(action.target), account.id)
            account = account.model_copy(update={"groups": account.groups - {action.target}})
        else:
            return await self._execute_side_effect(action, account)
        return Outcome.APPLIED, "", account, account.id

    async def _execute_side_effect(
        self, action: Action, account: Account | None
    ) -> tuple[Outcome, str, Account | None, str | None]:
        if action.kind is ActionKind.OPEN_TICKET:
            if self.ticketing is None:
                return Outcome.SKIPPED, "no ticketing system configured", account, None
            params = action.params
            ticket = await self.ticketing.create_ticket(
                TicketRequest(
                    reference=params["reference"],
                    purpose=action.target,
                    title=params["title"],
                    body=params.get("body", ""),
                    queue=params.get("queue"),
                )
            )
            return Outcome.APPLIED, f"ticket {ticket.id}", account, ticket.id
        if action.kind is ActionKind.SCHEDULE:
            if self.scheduler is None:
                return (
                    Outcome.SKIPPED,
                    "no scheduler here; the nightly sync re-plans this employee",
                    account,
                    None,
                )
            run = await self.scheduler(action)
            return Outcome.APPLIED, f"flow run {run} at {action.params.get('at')}", account, run
        if action.kind is ActionKind.REQUEST_APPROVAL:
            if self.approver is None:
                return Outcome.SKIPPED, "awaiting approval (no approver in this context)", account, None
            approved, approver, why = await self.approver(action)
            if not approved:
                return Outcome.SKIPPED, f"denied by {approver}: {why}", account, None
            if account is not None:
                await self.idp.add_member(await self.group_id(action.target), account.id)
                account = account.model_copy(update={"groups": account.groups | {action.target}})
            return Outcome.APPLIED, f"approved by {approver}: {why}", account, account.id if account else None
        raise ConnectorError(f"unknown action kind {action.kind}", source="tenure")
