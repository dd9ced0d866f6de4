from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, IdMixin, TimestampMixin


class OutgoingEmail(IdMixin, TimestampMixin, Base):
    """The mail outbox: a row is written in the same transaction as the change that causes it."""

    __tablename__ = "outgoing_emails"

    to_address: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
