"""campaign runs: what a broadcast of a campaign needs to run, pause and report

`campaigns` gains the run's `job_id` (its public id, the broadcast's `jobId`) and `request_id` (a repeated
broadcast with it gets the same answer), the schedule's `time_zone`, `started_at`, `reason` (why it is
paused, waiting or done, in words) and `watch_from` (the failure rate that auto-pauses a campaign counts
only contacts after this id: those queued since it was last resumed). A contact gains `error`, why it
was not sent.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("job_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("request_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("time_zone", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("watch_from", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("campaign_contacts") as batch_op:
        batch_op.add_column(sa.Column("error", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_contacts") as batch_op:
        batch_op.drop_column("error")
    with op.batch_alter_table("campaigns") as batch_op:
        for column in ("watch_from", "reason", "started_at", "time_zone", "request_id", "job_id"):
            batch_op.drop_column(column)
