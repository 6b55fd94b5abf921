"""templates: a company's message templates, their review and the upstream's id of them

`templates` holds each template's messages (or the upstream's own form), its status and the variables a
send must give; `ix_templates_upstream` finds the template an upstream's verdict names.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "templates",
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("channel_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("application_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("status_cause", sa.String(length=500), nullable=True),
        sa.Column("description", sa.String(length=1000), nullable=True),
        sa.Column("expire_type", sa.String(length=20), nullable=False),
        sa.Column("ttl", sa.Integer(), nullable=True),
        sa.Column("expire_time", sa.BigInteger(), nullable=True),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("upstream", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("upstream_id", sa.String(length=200), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_templates_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_templates_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("public_id", name=op.f("uq_templates_public_id")),
    )
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.create_index("ix_templates_company", ["company_id", "status", "id"], unique=False)
        batch_op.create_index("ix_templates_upstream", ["application_id", "upstream_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("templates", schema=None) as batch_op:
        batch_op.drop_index("ix_templates_upstream")
        batch_op.drop_index("ix_templates_company")
    op.drop_table("templates")
