"""campaigns: bulk campaigns and their contacts

A campaign sends one approved template of one channel to its contacts. `campaign_contacts` holds each
recipient once per campaign (`uq_campaign_contacts_phone`: an import de-duplicates by inserting), and
`ix_campaign_contacts_status` finds the contacts of a campaign by status, in order.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("company_id", _ID, nullable=False),
        sa.Column("channel_id", _ID, nullable=False),
        sa.Column("template_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=10), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("broadcast_type", sa.Integer(), nullable=True),
        sa.Column("schedule_time", sa.BigInteger(), nullable=True),
        sa.Column("expired_date", sa.BigInteger(), nullable=True),
        sa.Column("contacts_total", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"], ["channels.id"], name=op.f("fk_campaigns_channel_id_channels"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_campaigns_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.id"],
            name=op.f("fk_campaigns_template_id_templates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("public_id", name=op.f("uq_campaigns_public_id")),
    )
    op.create_index("ix_campaigns_company", "campaigns", ["company_id", "status", "id"])
    op.create_table(
        "campaign_contacts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("campaign_id", _ID, nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("client_message_id", sa.String(length=100), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("message_id", _ID, nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_contacts_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_campaign_contacts_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_contacts")),
        sa.UniqueConstraint("campaign_id", "phone", name="uq_campaign_contacts_phone"),
    )
    op.create_index("ix_campaign_contacts_status", "campaign_contacts", ["campaign_id", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_campaign_contacts_status", table_name="campaign_contacts")
    op.drop_table("campaign_contacts")
    op.drop_index("ix_campaigns_company", table_name="campaigns")
    op.drop_table("campaigns")
