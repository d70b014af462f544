"""Access review campaigns: the findings routed to reviewers, their decisions and what was done about them.

A :class:`ReviewCampaign` holds the schedule it was created with (reminder, escalation, deadline and the
``on_deadline`` rule), so a later policy change does not move the goalposts of a running campaign.
A :class:`ReviewItem` is one finding in one campaign (primary key campaign + finding id); auto-remediated
findings are stored too (``auto`` True, decided by ``policy:auto_remediate``) so the export is the whole
evidence. A :class:`ReviewAssignment` is one reviewer's share: their ticket and reminder/escalation marks.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Field, Session, SQLModel

from models.audit import utcnow
from models.rows import dialect_of, insert_records, update_rows

__all__ = [
    "CampaignStatus",
    "Decision",
    "ReviewCampaign",
    "ReviewItem",
    "ReviewAssignment",
    "DecisionRow",
    "add_campaign",
    "mark_assignments",
    "record_decisions",
    "set_actions",
    "set_ticket_ids",
]


class CampaignStatus:
    OPEN = "open"
    CLOSED = "closed"


class Decision:
    KEEP = "keep"
    REVOKE = "revoke"


class ReviewCampaign(SQLModel, table=True):
    __tablename__ = "review_campaign"

    id: str = Field(primary_key=True, max_length=64)  # "rc-YYYYMMDD-<8 hex>"
    status: str = Field(default=CampaignStatus.OPEN, max_length=16, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    remind_at: datetime
    escalate_at: datetime
    deadline_at: datetime
    on_deadline: str = Field(max_length=16)  # "revoke" | "keep_and_flag"
    correlation_id: str | None = None  # the Prefect flow run that created it
    closed_at: datetime | None = None


class ReviewItem(SQLModel, table=True):
    __tablename__ = "review_item"

    campaign_id: str = Field(primary_key=True, foreign_key="review_campaign.id", max_length=64)
    id: str = Field(primary_key=True, max_length=32)  # the stable finding id
    kind: str = Field(max_length=32)
    employee_id: str | None = Field(default=None, index=True)
    account_id: str
    user_name: str
    group: str | None = None
    revoke_group: str | None = None
    detail: str = ""
    target: str = Field(default="directory", max_length=64)  # the provisioning target holding the account
    reviewer: str = Field(index=True)
    auto: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    decision: str | None = Field(default=None, max_length=16)  # "keep" | "revoke" | None (undecided)
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    flagged: bool = False  # kept by the deadline rule keep_and_flag, not by a person
    action_taken: str | None = None  # e.g. "remove_membership prod-admin", "disable_account", "none"
    action_outcome: str | None = None  # applied | failed | skipped
    action_at: datetime | None = None
    recommendation: str | None = Field(
        default=None, max_length=8
    )  # keep | revoke | none (lifecycle/recommend.py)
    evidence: str | None = None  # the recommendation's evidence line, as shown to the reviewer


class ReviewAssignment(SQLModel, table=True):
    __tablename__ = "review_assignment"

    campaign_id: str = Field(primary_key=True, foreign_key="review_campaign.id", max_length=64)
    reviewer: str = Field(primary_key=True, max_length=256)
    reference: str  # "tenure:review:<campaign>:<reviewer>"
    ticket_id: str | None = None
    reminded_at: datetime | None = None
    escalated_at: datetime | None = None


def add_campaign(
    session: Session,
    campaign: ReviewCampaign,
    items: Iterable[Mapping[str, Any]],
    assignments: Iterable[Mapping[str, Any]],
) -> None:
    """A new campaign with its items and assignments (field name → value, each), in the session's transaction.
    A review of a million accounts makes hundreds of thousands of items and one assignment per manager, so
    they go in the driver's executemany (:func:`models.rows.insert_records`), not as ORM objects."""
    session.add(campaign)
    session.flush()
    insert_records(session, ReviewItem, items)
    insert_records(session, ReviewAssignment, assignments)


def set_ticket_ids(session: Session, campaign_id: str, tickets: Mapping[str, str]) -> None:
    """Each reviewer's ticket id (reviewer → id) on their assignment, in the session's transaction."""
    update_rows(
        session,
        ReviewAssignment.__tablename__,
        ("ticket_id",),
        ("campaign_id", "reviewer"),
        [(ticket, campaign_id, reviewer) for reviewer, ticket in tickets.items()],
    )


def set_actions(session: Session, items: Iterable[ReviewItem]) -> None:
    """The action taken on each item (``action_taken``, ``action_outcome``, ``action_at``), in the session's
    transaction: one executemany for a deadline's thousands of revocations."""
    time = dialect_of(session).time
    update_rows(
        session,
        ReviewItem.__tablename__,
        ("action_taken", "action_outcome", "action_at"),
        ("campaign_id", "id"),
        [
            (
                i.action_taken,
                i.action_outcome,
                time(i.action_at) if i.action_at else None,
                i.campaign_id,
                i.id,
            )
            for i in items
        ],
    )


def mark_assignments(
    session: Session, campaign_id: str, marks: Mapping[str, tuple[datetime | None, datetime | None]]
) -> None:
    """Each reviewer's reminder and escalation marks (reviewer → (reminded_at, escalated_at)), in the
    session's transaction."""
    time = dialect_of(session).time
    update_rows(
        session,
        ReviewAssignment.__tablename__,
        ("reminded_at", "escalated_at"),
        ("campaign_id", "reviewer"),
        [
            (time(r) if r else None, time(e) if e else None, campaign_id, reviewer)
            for reviewer, (r, e) in marks.items()
        ],
    )


@dataclass(frozen=True, slots=True)
class DecisionRow:
    """A decision on one item, as :func:`record_decisions` stores it."""

    campaign_id: str
    item_id: str
    decision: str  # Decision.KEEP | Decision.REVOKE
    decided_by: str
    decided_at: datetime
    reason: str
    flagged: bool


_DECIDED = ("decision", "decided_by", "decided_at", "reason", "flagged")


def record_decisions(session: Session, decisions: Iterable[DecisionRow]) -> None:
    """Each decision on its item, in the session's transaction; a kept item's action becomes ``none`` (a
    revoked one's is set when it is carried out), an item not found is left alone. Consecutive keeps, and
    consecutive revokes, go in one executemany each, in the order given."""
    time = dialect_of(session).time
    for keep, run in itertools.groupby(decisions, key=lambda d: d.decision == Decision.KEEP):
        action = ("none", None, None) if keep else ()
        update_rows(
            session,
            ReviewItem.__tablename__,
            (*_DECIDED, "action_taken", "action_outcome", "action_at") if keep else _DECIDED,
            ("campaign_id", "id"),
            [
                (
                    d.decision,
                    d.decided_by,
                    time(d.decided_at),
                    d.reason,
                    d.flagged,
                    *action,
                    d.campaign_id,
                    d.item_id,
                )
                for d in run
            ],
        )
