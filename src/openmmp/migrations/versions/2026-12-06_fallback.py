"""fallback: a message may name channels to try next; each leg is a message of its own

`messages.parent_id` links a leg to the first message of its chain, `messages.fallback` holds the leg's
place in it (the channels still to try, the timer, the leg that followed).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 12:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.add_column(sa.Column("fallback", sa.JSON(none_as_null=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_messages_parent_id"), ["parent_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_parent_id"))
        batch_op.drop_column("fallback")
        batch_op.drop_column("parent_id")
