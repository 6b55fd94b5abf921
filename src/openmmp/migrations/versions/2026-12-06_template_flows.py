"""template_flows: CONVERSATION templates running with end users

Each row is one flow: the template's steps as they were when it started, the recipient (conversation, or
phone until they write), the answers so far and the last inbound message taken as a reply.
`ix_template_flows_conversation` finds the flow a reply is for; `ix_template_flows_phone` binds a flow
started by phone to the conversation of the first reply.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "template_flows",
        sa.Column("company_id", _ID, nullable=False),
        sa.Column("channel_id", _ID, nullable=False),
        sa.Column("conversation_id", _ID, nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("template_public_id", sa.String(length=36), nullable=False),
        sa.Column("message_id", sa.String(length=36), nullable=False),
        sa.Column("api_key_id", _ID, nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("sent", sa.JSON(), nullable=False),
        sa.Column("replied_up_to", _ID, nullable=False),
        sa.Column("expire_at", sa.BigInteger(), nullable=True),
        sa.Column("cause", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_template_flows_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_template_flows_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_template_flows_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_flows")),
        sa.UniqueConstraint("message_id", name=op.f("uq_template_flows_message_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_template_flows_public_id")),
    )
    with op.batch_alter_table("template_flows", schema=None) as batch_op:
        batch_op.create_index(
            "ix_template_flows_conversation", ["channel_id", "conversation_id", "status"], unique=False
        )
        batch_op.create_index("ix_template_flows_phone", ["channel_id", "phone", "status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("template_flows", schema=None) as batch_op:
        batch_op.drop_index("ix_template_flows_phone")
        batch_op.drop_index("ix_template_flows_conversation")
    op.drop_table("template_flows")
