"""Volumes: a namespace's size-capped filesystems, each on one node, that outlive sessions; what a session mounts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Bring the schema from 0003 to 0004."""
    op.create_table(
        "volumes",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("size_mb", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("namespace", "name", name="uq_volumes_namespace_name"),
    )
    op.create_index("ix_volumes_namespace", "volumes", ["namespace"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("volumes", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    """Undo `upgrade`."""
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("volumes")
    op.drop_index("ix_volumes_namespace", table_name="volumes")
    op.drop_table("volumes")
