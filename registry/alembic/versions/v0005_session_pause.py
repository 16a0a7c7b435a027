"""Pause: a session may be `paused` (kept on its node without a running container); what its last pause kept.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Bring the schema from 0004 to 0005."""
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("pause", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Undo `upgrade`."""
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("pause")
