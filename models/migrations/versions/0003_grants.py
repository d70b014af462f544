"""The ledger holds grants and decisions: ``entitlement_grant``; action entries keep their typed action and detail.

Approvals recorded before this revision (applied ``request_approval`` entries) become grants.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_ledger") as batch:
        batch.alter_column("result", new_column_name="action")
        batch.add_column(sa.Column("detail", sa.String(), nullable=False, server_default=""))
    op.create_table(
        "entitlement_grant",
        sa.Column("employee_id", sa.String(256), primary_key=True),
        sa.Column("group_name", sa.String(256), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recertify_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("campaign_id", sa.String(), nullable=True),
        sa.Column("item_id", sa.String(), nullable=True),
        sa.Column("correlation_id", sa.String(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute(
        "INSERT INTO entitlement_grant (employee_id, group_name, status, source, decided_by, decided_at, "
        "correlation_id, updated_at) SELECT employee_id, target, 'granted', 'approval', 'approval flow', "
        "updated_at, flow_run_id, updated_at FROM action_ledger "
        "WHERE kind = 'request_approval' AND status = 'applied'"
    )


def downgrade() -> None:
    op.drop_table("entitlement_grant")
    with op.batch_alter_table("action_ledger") as batch:
        batch.drop_column("detail")
        batch.alter_column("action", new_column_name="result")
