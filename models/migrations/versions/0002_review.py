"""Access review campaigns, items and reviewer assignments.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_campaign",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("remind_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("escalate_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("on_deadline", sa.String(16), nullable=False),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_campaign_status", "review_campaign", ["status"])
    op.create_table(
        "review_item",
        sa.Column("campaign_id", sa.String(64), sa.ForeignKey("review_campaign.id"), primary_key=True),
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("employee_id", sa.String(), nullable=True),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("user_name", sa.String(), nullable=False),
        sa.Column("group", sa.String(), nullable=True),
        sa.Column("revoke_group", sa.String(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("action_taken", sa.String(), nullable=True),
        sa.Column("action_outcome", sa.String(), nullable=True),
        sa.Column("action_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_review_item_employee_id", "review_item", ["employee_id"])
    op.create_index("ix_review_item_reviewer", "review_item", ["reviewer"])
    op.create_table(
        "review_assignment",
        sa.Column("campaign_id", sa.String(64), sa.ForeignKey("review_campaign.id"), primary_key=True),
        sa.Column("reviewer", sa.String(256), primary_key=True),
        sa.Column("reference", sa.String(), nullable=False),
        sa.Column("ticket_id", sa.String(), nullable=True),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("review_assignment")
    op.drop_table("review_item")
    op.drop_table("review_campaign")
