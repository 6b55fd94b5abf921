from enum import IntEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class TaskStatus(IntEnum):
    """api.md §2 backgroundTask status. DONE and FAIL are final."""

    PENDING = 1
    PROCESSING = 2
    DONE = 3
    FAIL = 4


class BackgroundTask(IdMixin, Base):
    """Long work of one company run in steps by the workers (tasks/runner.py); `public_id` is its wire `id`.

    `step` counts the steps committed and fences them: a runner commits its step only where `step` is
    still what it read, so a runner whose lease ran out while another took the task over writes nothing.
    `checkpoint` is where the next step starts (None before the first). `job_id` is its outbox job while
    the task is PENDING or PROCESSING. The result file is `BackgroundTaskChunk`s, in `seq` order.
    """

    __tablename__ = "background_tasks"
    __table_args__ = (
        Index("ix_background_tasks_company", "company_id", "id"),
        Index("ix_background_tasks_job_id", "job_id"),
        Index("ix_background_tasks_finished_at", "finished_at"),
    )

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(Id, ForeignKey("channels.id", ondelete="SET NULL"))
    job_id: Mapped[int | None] = mapped_column(Id)
    type: Mapped[str] = mapped_column(String(40), doc="Which handler runs it (`TaskHandler.type`)")
    status: Mapped[int] = mapped_column(default=TaskStatus.PENDING)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, doc="What the task was asked to do")
    checkpoint: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    step: Mapped[int] = mapped_column(default=0)
    total: Mapped[int | None] = mapped_column(BigInteger, doc="Items to process, once known")
    processed: Mapped[int] = mapped_column(BigInteger, default=0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    error: Mapped[str | None] = mapped_column(String(500), doc="Why it FAILed, as the company reads it")
    result_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    result_media_type: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    updated_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)


class BackgroundTaskChunk(Base):
    """A piece of a task's result file, appended in the transaction that commits the step that wrote it.

    Kept in the database so that any API node serves the file whichever worker wrote it, and so that a
    piece exists exactly when its step's checkpoint does.
    """

    __tablename__ = "background_task_chunks"

    task_id: Mapped[int] = mapped_column(
        Id, ForeignKey("background_tasks.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
