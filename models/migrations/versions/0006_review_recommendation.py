"""Review items carry the explained recommendation shown to the reviewer (lifecycle/recommend.py).

Revision ID: 0006
Revises: 0008 (main's head when this branch was rebased; the issue asked for 0004, re-chained by the lead)
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_item") as table:
        table.add_column(sa.Column("recommendation", sa.String(8), nullable=True))
        table.add_column(sa.Column("evidence", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_item") as table:
        table.drop_column("evidence")
        table.drop_column("recommendation")
