"""channel identity: an upstream account (Viber service, bot token, ...) belongs to one channel

Existing channels get their fingerprint when the workers start (it is keyed by the server secret, which
a migration does not have).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 23:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_fingerprint", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_channels_identity_fingerprint", ["identity_fingerprint"])


def downgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_constraint("uq_channels_identity_fingerprint", type_="unique")
        batch_op.drop_column("identity_fingerprint")
