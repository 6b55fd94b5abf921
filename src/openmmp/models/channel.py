from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class ChannelStatus(IntEnum):
    REQUEST = 1
    PROCESSING = 2
    LAUNCH = 3
    SUSPEND = 4
    REJECT = 5
    ACCEPT = 6


SENDING_STATUSES = frozenset({ChannelStatus.LAUNCH, ChannelStatus.ACCEPT})


class WebhookStatus(IntEnum):
    ACTIVATED = 1
    FAILED = 2
    BLOCKED = 3


class Channel(IdMixin, Base):
    """An official account or bot of one company on one upstream.

    `credentials` and `webhook_secret` hold Fernet ciphertext (kit.crypto.Keyring), never clear text.
    """

    __tablename__ = "channels"

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    application_id: Mapped[int]
    status: Mapped[int] = mapped_column(default=ChannelStatus.LAUNCH)
    status_cause: Mapped[str | None] = mapped_column(String(500))
    credentials: Mapped[str] = mapped_column(Text)
    # Keyed fingerprint of the upstream account the credentials act as (Credentials.identity): unique,
    # so one Viber service or bot token belongs to one channel. NULL when the application has none.
    identity_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(Text)
    webhook_status: Mapped[int] = mapped_column(default=WebhookStatus.ACTIVATED)
    webhook_failing_since: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)
