"""event retention: raw provider events are pruned by age

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 22:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.create_index("ix_provider_events_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("provider_events", schema=None) as batch_op:
        batch_op.drop_index("ix_provider_events_received_at")
