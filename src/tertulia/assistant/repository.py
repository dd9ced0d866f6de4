"""The SQL of the knowledge matrix: entries by workspace (keyset pages, folded search), synonyms,
the version counter that tells every process when its index is stale, and the entries' stored
embeddings."""

import secrets
from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tertulia.assistant.models import EntryEmbedding, KnowledgeEntry, KnowledgeSynonym, KnowledgeVersion
from tertulia.kit.clock import utcnow


def entries_page(
    session: Session,
    workspace_id: int,
    *,
    search: str = "",
    language: str | None = None,
    topic: str | None = None,
    active: bool | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[KnowledgeEntry]:
    """Entries in id order; `search` is folded text every word of which must appear somewhere in
    the entry (question, phrasings, answer, topic)."""
    query = select(KnowledgeEntry).where(KnowledgeEntry.workspace_id == workspace_id)
    for word in search.split():
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(KnowledgeEntry.search_key.like(f"%{escaped}%", escape="\\"))
    if language is not None:
        query = query.where(KnowledgeEntry.language == language)
    if topic is not None:
        query = query.where(KnowledgeEntry.topic == topic)
    if active is not None:
        query = query.where(KnowledgeEntry.active == active)
    if after is not None:
        query = query.where(KnowledgeEntry.id > after)
    return list(session.scalars(query.order_by(KnowledgeEntry.id).limit(limit)))


def all_entries(session: Session, workspace_id: int, *, active_only: bool = False) -> list[KnowledgeEntry]:
    query = select(KnowledgeEntry).where(KnowledgeEntry.workspace_id == workspace_id)
    if active_only:
        query = query.where(KnowledgeEntry.active)
    return list(session.scalars(query.order_by(KnowledgeEntry.id)))


def entries_by_key(
    session: Session, workspace_id: int, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], KnowledgeEntry]:
    """Entries by (language, question_key)."""
    if not keys:
        return {}
    wanted = {k for _, k in keys}
    query = select(KnowledgeEntry).where(
        KnowledgeEntry.workspace_id == workspace_id, KnowledgeEntry.question_key.in_(sorted(wanted))
    )
    return {(e.language, e.question_key): e for e in session.scalars(query)}


def topics(session: Session, workspace_id: int) -> list[str]:
    query = (
        select(KnowledgeEntry.topic)
        .where(KnowledgeEntry.workspace_id == workspace_id, KnowledgeEntry.topic != "")
        .distinct()
        .order_by(KnowledgeEntry.topic)
    )
    return list(session.scalars(query))


def delete_entries(session: Session, workspace_id: int, ids: Sequence[int]) -> int:
    result = session.execute(
        delete(KnowledgeEntry).where(KnowledgeEntry.workspace_id == workspace_id, KnowledgeEntry.id.in_(list(ids)))
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def synonyms(session: Session, workspace_id: int) -> list[KnowledgeSynonym]:
    query = select(KnowledgeSynonym).where(KnowledgeSynonym.workspace_id == workspace_id)
    return list(session.scalars(query.order_by(KnowledgeSynonym.id)))


def replace_synonyms(session: Session, workspace_id: int, groups: Sequence[tuple[str, list[str]]]) -> None:
    session.execute(delete(KnowledgeSynonym).where(KnowledgeSynonym.workspace_id == workspace_id))
    session.add_all(KnowledgeSynonym(workspace_id=workspace_id, language=lang, terms=terms) for lang, terms in groups)


def version(session: Session, workspace_id: int) -> tuple[int, str]:
    """The workspace's knowledge version and stamp ((0, "") before its first change)."""
    row = session.execute(
        select(KnowledgeVersion.version, KnowledgeVersion.stamp).where(KnowledgeVersion.workspace_id == workspace_id)
    ).first()
    return (int(row[0]), str(row[1])) if row is not None else (0, "")


def bump_version(session: Session, workspace_id: int) -> None:
    """One more change to the workspace's knowledge. The row is written on first use; a concurrent
    first write is absorbed by the upsert, and later ones serialise on the row."""
    stamp = secrets.token_hex(16)
    values = {"workspace_id": workspace_id, "version": 1, "stamp": stamp}
    changes = {"version": KnowledgeVersion.version + 1, "stamp": stamp}
    if session.get_bind().dialect.name == "postgresql":
        statement = postgres_insert(KnowledgeVersion).values(values)
        session.execute(statement.on_conflict_do_update(index_elements=["workspace_id"], set_=changes))
    else:
        lite = sqlite_insert(KnowledgeVersion).values(values)
        session.execute(lite.on_conflict_do_update(index_elements=["workspace_id"], set_=changes))


def count_entries(session: Session, workspace_id: int) -> int:
    query = select(func.count()).select_from(KnowledgeEntry).where(KnowledgeEntry.workspace_id == workspace_id)
    return int(session.scalar(query) or 0)


def set_active(session: Session, workspace_id: int, ids: Sequence[int], active: bool) -> int:
    result = session.execute(
        update(KnowledgeEntry)
        .where(
            KnowledgeEntry.workspace_id == workspace_id,
            KnowledgeEntry.id.in_(list(ids)),
            KnowledgeEntry.active != active,
        )
        .values(active=active, updated_at=utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ----- the entries' stored embeddings ---------------------------------------------------------------


def stored_embeddings(session: Session, workspace_id: int, model: str) -> list[tuple[int, int, str, bytes]]:
    """The workspace's stored vectors of `model`: (row id, entry id, text hash, float32 bytes)."""
    rows = session.execute(
        select(EntryEmbedding.id, EntryEmbedding.entry_id, EntryEmbedding.text_hash, EntryEmbedding.vector).where(
            EntryEmbedding.workspace_id == workspace_id, EntryEmbedding.model == model
        )
    )
    return [(int(row_id), int(entry_id), str(text_hash), bytes(vector)) for row_id, entry_id, text_hash, vector in rows]


def add_embeddings(session: Session, workspace_id: int, model: str, rows: Sequence[tuple[int, str, bytes]]) -> None:
    """(entry id, text hash, vector bytes) rows; one another process stored first is kept, and an
    entry deleted meanwhile is skipped (its foreign key would refuse the row)."""
    if not rows:
        return
    existing = set(
        session.scalars(
            select(KnowledgeEntry.id).where(
                KnowledgeEntry.workspace_id == workspace_id, KnowledgeEntry.id.in_({entry for entry, _, _ in rows})
            )
        )
    )
    values = [
        {
            "workspace_id": workspace_id,
            "entry_id": entry_id,
            "model": model,
            "text_hash": text_hash,
            "vector": vector,
            "created_at": utcnow(),
        }
        for entry_id, text_hash, vector in rows
        if entry_id in existing
    ]
    if not values:
        return
    insert = postgres_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(EntryEmbedding).on_conflict_do_nothing(
            index_elements=["workspace_id", "entry_id", "model", "text_hash"]
        ),
        values,
    )


def delete_embeddings(session: Session, workspace_id: int, ids: Sequence[int], *, other_than_model: str) -> None:
    """The rows `ids`, and every row of another model than `other_than_model`."""
    if ids:
        session.execute(
            delete(EntryEmbedding).where(EntryEmbedding.workspace_id == workspace_id, EntryEmbedding.id.in_(ids))
        )
    session.execute(
        delete(EntryEmbedding).where(
            EntryEmbedding.workspace_id == workspace_id, EntryEmbedding.model != other_than_model
        )
    )
