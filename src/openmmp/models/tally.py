from sqlalchemy import BigInteger, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from openmmp.models.base import Base, Id


class MessageTally(Base):
    """A change to the count of a channel's messages in a status, by the hour they were created in.

    Rows are only ever added, in the transaction that creates or moves the messages (a message from
    PENDING to SENT adds -1 at PENDING and +1 at SENT), so writers never wait on one another; the workers'
    periodic round folds them into one row per (channel, hour, status). A channel's summary over a period
    adds up the rows of its hours, whatever the number of messages: `segments` sums the upstream
    messages that were accepted (the parts of a long SMS; one for any other), what a channel bills.
    """

    __tablename__ = "message_tallies"
    __table_args__ = (Index("ix_message_tallies_channel", "channel_id", "hour"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    channel_id: Mapped[int] = mapped_column(Id, ForeignKey("channels.id", ondelete="CASCADE"))
    hour: Mapped[int] = mapped_column(BigInteger, doc="Epoch ms of the hour the messages were created in")
    status: Mapped[int] = mapped_column(doc="MessageStatus")
    messages: Mapped[int] = mapped_column(BigInteger, default=0, doc="Messages in the status (a change)")
    segments: Mapped[int] = mapped_column(BigInteger, default=0, doc="Accepted upstream messages (a change)")
