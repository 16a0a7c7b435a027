"""Sessions record their container runtime (`runc`, `runsc`), so reading a session needs no node round trip.

Rows from before this revision have none (NULL); the API then asks the session's node, as it did before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Bring the schema from 0001 to 0002."""
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("runtime", sa.String(), nullable=True))


def downgrade() -> None:
    """Undo `upgrade`."""
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("runtime")
