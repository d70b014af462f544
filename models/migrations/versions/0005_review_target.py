"""Review items name the provisioning target holding the account (several targets per policy).

Revision ID: 0005
Revises: 0006 (re-chained onto main's head at the rebase)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_item") as batch:
        batch.add_column(sa.Column("target", sa.String(64), nullable=False, server_default="directory"))


def downgrade() -> None:
    with op.batch_alter_table("review_item") as batch:
        batch.drop_column("target")
