"""background tasks: long work run in steps by the workers, with its result file in pieces

`background_tasks` holds each task's state, checkpoint and step count (the fence of its steps);
`background_task_chunks` its result file, one row per piece, appended with the step that wrote it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "background_tasks",
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("checkpoint", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=True),
        sa.Column("processed", sa.BigInteger(), nullable=False),
        sa.Column("summary", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("result_bytes", sa.BigInteger(), nullable=False),
        sa.Column("result_media_type", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_background_tasks_channel_id_channels"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_background_tasks_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_background_tasks")),
        sa.UniqueConstraint("public_id", name=op.f("uq_background_tasks_public_id")),
    )
    with op.batch_alter_table("background_tasks", schema=None) as batch_op:
        batch_op.create_index("ix_background_tasks_company", ["company_id", "id"], unique=False)
        batch_op.create_index("ix_background_tasks_finished_at", ["finished_at"], unique=False)
        batch_op.create_index("ix_background_tasks_job_id", ["job_id"], unique=False)

    op.create_table(
        "background_task_chunks",
        sa.Column(
            "task_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["background_tasks.id"],
            name=op.f("fk_background_task_chunks_task_id_background_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "seq", name=op.f("pk_background_task_chunks")),
    )


def downgrade() -> None:
    op.drop_table("background_task_chunks")
    with op.batch_alter_table("background_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_background_tasks_job_id")
        batch_op.drop_index("ix_background_tasks_finished_at")
        batch_op.drop_index("ix_background_tasks_company")
    op.drop_table("background_tasks")
