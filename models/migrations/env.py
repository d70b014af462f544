"""Alembic environment: runs on the connection models.db hands over (config.attributes["connection"])."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import models.audit  # noqa: F401  (registers tables on SQLModel.metadata)
import models.directory  # noqa: F401
import models.ledger  # noqa: F401
import models.review  # noqa: F401

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
