from sqlalchemy import BigInteger, ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.kit.time import now_ms
from openmmp.models.base import Base, Id, IdMixin


class Upload(IdMixin, Base):
    """A file a company uploaded for a background task to read (a campaign's contacts).

    Kept in the database, in pieces (`UploadChunk`), so that whichever worker runs the task, on whichever
    host, reads it; `complete` once its last piece is stored. The task deletes it when it ends.
    """

    __tablename__ = "uploads"

    company_id: Mapped[int] = mapped_column(Id, ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(10), doc="csv or xlsx")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    complete: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class UploadChunk(Base):
    """A piece of an upload, in the order it arrived (`seq`)."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[int] = mapped_column(
        Id, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
