"""Sessions with network "egress" record their allow-list, so reading a session shows what it may reach.

Rows from before this revision, and sessions with another network, have none (NULL).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Bring the schema from 0002 to 0003."""
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("egress", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Undo `upgrade`."""
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("egress")
