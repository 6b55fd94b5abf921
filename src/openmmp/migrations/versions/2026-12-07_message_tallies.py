"""message tallies: the counts of each channel's messages per status and hour, kept as they change

And `ix_conversations_started`: a channel's summary counts the conversations started in its period.

A channel's summary adds up `message_tallies` rather than counting its messages. The rows are filled
here from the messages there are, one per (channel, hour, status): a message accepted upstream (SENT,
DELIVERED, READ, or FAIL with an upstream id) counts its segments.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BACKFILL = """
INSERT INTO message_tallies (channel_id, hour, status, messages, segments)
SELECT channel_id, (created_at / 3600000) * 3600000, status, count(*),
       sum(CASE WHEN status IN (2, 4, 5) OR (status = 3 AND provider_message_id IS NOT NULL)
                THEN segments ELSE 0 END)
FROM messages
GROUP BY channel_id, (created_at / 3600000) * 3600000, status
"""
"""The tallies of the messages stored: one row per (channel, hour, status). bench/cdr_export.py times it."""


def upgrade() -> None:
    op.create_table(
        "message_tallies",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("channel_id", _ID, nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("messages", sa.BigInteger(), nullable=False),
        sa.Column("segments", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["channel_id"], ["channels.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_message_tallies_channel", "message_tallies", ["channel_id", "hour"])
    op.execute(BACKFILL)
    op.create_index("ix_conversations_started", "conversations", ["channel_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_started", table_name="conversations")
    op.drop_index("ix_message_tallies_channel", table_name="message_tallies")
    op.drop_table("message_tallies")
