"""A configured channel: one WhatsApp number, one Telegram bot, one web-chat widget, ..."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.crypto import EncryptedJSON
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin


class Channel(IdMixin, TimestampMixin, Base):
    """`key` is the public, unguessable handle used in webhook and widget URLs (never the numeric id).

    `config` is shown to managers; `secrets` (API tokens, app secrets, the widget's identity secret)
    never leaves the server: it is encrypted at rest (kit/crypto.py) and pages and the API show only
    which names are set.
    """

    __tablename__ = "channels"
    __table_args__ = (Index("ix_channels_workspace_id_type", "workspace_id", "type"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(120))
    key: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(default=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    secrets: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("channels.secrets"), default=dict)
    # Health (channels/health.py): when the provider was last heard from, the last message it
    # accepted, and the last thing that went wrong (a refused send, a failed connect).
    last_callback_at: Mapped[datetime | None]
    last_sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
