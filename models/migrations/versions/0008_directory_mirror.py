"""The sync keeps a copy of a change-tracking directory (accounts, groups, delta links) to read only what changed.

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "directory_link",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("users_link", sa.Text(), nullable=False),
        sa.Column("groups_link", sa.Text(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "directory_account",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_table(
        "directory_group",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("group_id", sa.String(255), primary_key=True),
        sa.Column("group_name", sa.Text(), nullable=False),
        sa.Column("member_ids", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("directory_group")
    op.drop_table("directory_account")
    op.drop_table("directory_link")
