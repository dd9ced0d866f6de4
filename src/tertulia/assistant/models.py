"""Knowledge entries (a question, its other phrasings and the answer), per-workspace synonyms, and
the workspace's knowledge version, which every change bumps so each process knows when its
in-memory index is stale."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.clock import utcnow
from tertulia.kit.crypto import EncryptedJSON
from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin, UTCDateTime

LANGUAGES = ("es", "en")


class KnowledgeEntry(IdMixin, TimestampMixin, Base):
    """`question_key` is the folded question (case, accents, spacing): one entry per question and
    language in a workspace, which is also what a CSV import matches on. `search_key` is the folded
    text of every field, for the list's search."""

    __tablename__ = "knowledge_entries"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id", "language", "question_key", name="uq_knowledge_entries_workspace_id_language_question_key"
        ),
        Index("ix_knowledge_entries_workspace_id_id", "workspace_id", "id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    question: Mapped[str] = mapped_column(String(500))
    question_key: Mapped[str] = mapped_column(String(500))
    alternatives: Mapped[list[str]] = mapped_column(JSONType, default=list)
    answer: Mapped[str] = mapped_column(Text)
    buttons: Mapped[list[str]] = mapped_column(JSONType, default=list)
    topic: Mapped[str] = mapped_column(String(100), default="")
    language: Mapped[str] = mapped_column(String(2))
    active: Mapped[bool] = mapped_column(default=True)
    search_key: Mapped[str] = mapped_column(Text, default="")


class KnowledgeSynonym(IdMixin, Base):
    """A group of words or phrases the assistant treats as one (`bici`, `bicicleta`, `bike`)."""

    __tablename__ = "knowledge_synonyms"
    __table_args__ = (Index("ix_knowledge_synonyms_workspace_id", "workspace_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(2))
    terms: Mapped[list[str]] = mapped_column(JSONType, default=list)


class KnowledgeVersion(Base):
    """One row per workspace with knowledge; `version` grows with every change to its entries or
    synonyms (in the same transaction), so a process holding an index of an older version rebuilds."""

    __tablename__ = "knowledge_versions"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
    # Random at every change: a workspace id used again after a deletion (SQLite reuses the highest
    # id) starts its count again, and must not meet an index cached for its predecessor.
    stamp: Mapped[str] = mapped_column(String(32))


class ChannelBotSettings(IdMixin, TimestampMixin, Base):
    """How the assistant behaves on one channel. A channel without a row has the defaults (the bot
    off). `hours` is "always" or "outside" (only while the business hours are closed);
    `keep_paused` makes a pause last into the contact's next conversation until someone closes a
    conversation with "turn the bot back on"."""

    __tablename__ = "assistant_channel_settings"
    __table_args__ = (
        UniqueConstraint("channel_id", name="uq_assistant_channel_settings_channel_id"),
        Index("ix_assistant_channel_settings_workspace_id", "workspace_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(BigID, ForeignKey("channels.id", ondelete="CASCADE"))
    enabled: Mapped[bool] = mapped_column(default=False)
    # None: the assistant's default threshold, whatever it is when the bot reads it.
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    handoff_keywords: Mapped[list[str]] = mapped_column(JSONType, default=list)
    handoff_message: Mapped[str] = mapped_column(Text, default="")
    max_bot_answers: Mapped[int] = mapped_column(Integer)
    hours: Mapped[str] = mapped_column(String(20), default="always")
    keep_paused: Mapped[bool] = mapped_column(default=False)


class BotTurn(IdMixin, Base):
    """What the bot did with one customer's message: answered it or handed off. One row per
    message (unique): the key that makes a redelivered message.received send nothing twice, and
    what the maximum of answers per conversation counts."""

    __tablename__ = "assistant_bot_turns"
    __table_args__ = (
        UniqueConstraint("message_id", name="uq_assistant_bot_turns_message_id"),
        Index("ix_assistant_bot_turns_conversation_id", "conversation_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    conversation_id: Mapped[int] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(BigID, ForeignKey("messages.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(20))  # "answered" or "handoff"
    reason: Mapped[str] = mapped_column(String(40))
    entry_id: Mapped[int | None] = mapped_column(BigID)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    reply_message_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("messages.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ModelSettings(IdMixin, TimestampMixin, Base):
    """The workspace's OpenAI-compatible language model (one row at most per workspace; none: the
    assistant answers from retrieval alone). `secrets` holds the API key, encrypted like channel
    secrets and never shown back. `last_error` is the last failure of a call or of "Test
    connection", cleared by the next success; the settings page shows it."""

    __tablename__ = "assistant_model_settings"
    __table_args__ = (UniqueConstraint("workspace_id", name="uq_assistant_model_settings_workspace_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    enabled: Mapped[bool] = mapped_column(default=False)
    base_url: Mapped[str] = mapped_column(String(500), default="")
    model: Mapped[str] = mapped_column(String(200), default="")
    # The embeddings model on the same endpoint; empty: retrieval stays lexical.
    embedding_model: Mapped[str] = mapped_column(String(200), default="", server_default="")
    secrets: Mapped[dict[str, Any]] = mapped_column(EncryptedJSON("assistant.model_secrets"), default=dict)
    timeout_seconds: Mapped[float] = mapped_column(Float)
    max_retries: Mapped[int] = mapped_column(Integer)
    conversation_token_budget: Mapped[int] = mapped_column(Integer)
    monthly_token_budget: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ModelUsage(IdMixin, Base):
    """Tokens one call to the model spent (a ledger: one row a call, never updated, so concurrent
    calls need no lock). `month` is "YYYY-MM" in UTC; `conversation_id` is null for calls outside a
    conversation (the answer endpoint, "Test connection")."""

    __tablename__ = "assistant_model_usage"
    __table_args__ = (
        Index("ix_assistant_model_usage_workspace_id_month", "workspace_id", "month"),
        Index("ix_assistant_model_usage_conversation_id", "conversation_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    conversation_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True
    )
    month: Mapped[str] = mapped_column(String(7))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EntryEmbedding(IdMixin, Base):
    """One embedded phrasing of a knowledge entry: the vector `model` gave for the text whose SHA-256
    is `text_hash`, as little-endian float32 bytes. A process loads these instead of asking the
    endpoint again; a changed phrasing has another hash and is embedded again, a deleted entry takes
    its rows with it."""

    __tablename__ = "assistant_entry_embeddings"
    __table_args__ = (
        UniqueConstraint(
            "workspace_id",
            "entry_id",
            "model",
            "text_hash",
            name="uq_assistant_entry_embeddings_entry_model_text",
        ),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    entry_id: Mapped[int] = mapped_column(BigID, ForeignKey("knowledge_entries.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    text_hash: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TokenCounter(IdMixin, Base):
    """Tokens spent and reserved in one budget's scope: a workspace's month (`scope` "month:2026-11")
    or a conversation ("conversation:42", `conversation_id` set so the row goes with it). A call
    reserves its estimate with a conditional UPDATE (`tokens + estimate <= budget`) before it is
    made and settles the difference after, so concurrent calls cannot together pass the budget.
    `assistant_model_usage` stays the ledger of what each call spent."""

    __tablename__ = "assistant_token_counters"
    __table_args__ = (UniqueConstraint("workspace_id", "scope", name="uq_assistant_token_counters_workspace_id_scope"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(40))
    conversation_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("conversations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class TokenReservation(IdMixin, Base):
    """Tokens a call has set aside in the counters (the month's, and the conversation's when there
    is one) and not yet settled. Settling deletes the row and gives the tokens back only when the
    delete found it, so a reservation is given back once: by its call, or, when the process died
    before settling, by the sweep that releases reservations older than any call can last."""

    __tablename__ = "assistant_token_reservations"

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    month: Mapped[str] = mapped_column(String(7))
    # SET NULL: a deleted conversation's counter goes with it, and the month's is still owed its tokens.
    conversation_id: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("conversations.id", ondelete="SET NULL"), nullable=True, index=True
    )
    tokens: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


def entry_dict(entry: KnowledgeEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "question": entry.question,
        "alternatives": list(entry.alternatives or []),
        "answer": entry.answer,
        "buttons": list(entry.buttons or []),
        "topic": entry.topic,
        "language": entry.language,
        "active": entry.active,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
    }
