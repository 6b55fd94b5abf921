"""claims by kind: the claim index leads with the job's kind

A claim for a rare kind (channel set-up) walked the whole claim index while the dispatch backlog was
large; with `kind` first every claim seeks straight to its own jobs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 23:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_claim")
        batch_op.drop_index("ix_jobs_run_at")
        batch_op.create_index("ix_jobs_claim", ["kind", "company_id", "priority", "run_at"], unique=False)
        batch_op.create_index("ix_jobs_due", ["kind", "run_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_due")
        batch_op.drop_index("ix_jobs_claim")
        batch_op.create_index("ix_jobs_run_at", ["run_at"], unique=False)
        batch_op.create_index("ix_jobs_claim", ["company_id", "priority", "run_at"], unique=False)
