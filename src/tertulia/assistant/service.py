"""The rules of the knowledge matrix: what a valid entry is, who may change it (`manage_knowledge`),
bulk changes (all or nothing), synonyms. Every change bumps the workspace's knowledge version in
the same transaction, so the retrieval index of every process is rebuilt on its next question.
Nothing here commits."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from tertulia.assistant import repository
from tertulia.assistant.models import LANGUAGES, KnowledgeEntry, KnowledgeSynonym
from tertulia.contacts.repository import custom_fields
from tertulia.conversations import variables
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import fold
from tertulia.users.permissions import Actor, Permission, access_in_workspace

MAX_QUESTION = 500
MAX_ALTERNATIVES = 30
MAX_ANSWER = 4000
MAX_BUTTONS = 10
MAX_BUTTON = 20  # the shortest button title a channel allows (WhatsApp: 20 characters)
MAX_TOPIC = 100
MAX_ENTRIES = 20_000
MAX_BULK = 1000
MAX_SYNONYM_GROUPS = 500
MAX_SYNONYM_TERMS = 20
MAX_SYNONYM = 100


@dataclass(frozen=True)
class EntryValues:
    question: str
    alternatives: list[str]
    answer: str
    buttons: list[str]
    topic: str
    language: str
    active: bool

    @property
    def question_key(self) -> str:
        return question_key(self.question)


def question_key(question: str) -> str:
    return " ".join(fold(question).split())


def _line(value: Any) -> str:
    return " ".join(str(value or "").split())


def check_entry_values(session: Session, workspace_id: int, raw: Mapping[str, Any], *, prefix: str = "") -> EntryValues:
    """Every field's problem at once; `prefix` names the entry in a bulk request (`entries[3].`)."""
    errors: dict[str, str] = {}
    question = _line(raw.get("question"))
    if not question:
        errors["question"] = "Enter the question."
    elif len(question) > MAX_QUESTION:
        errors["question"] = "The question is too long (500 characters at most)."
    alternatives: list[str] = []
    seen = {question_key(question)}
    for value in raw.get("alternatives") or []:
        text = _line(value)
        if not text or question_key(text) in seen:
            continue
        if len(text) > MAX_QUESTION:
            errors["alternatives"] = "Each phrasing can have 500 characters at most."
        seen.add(question_key(text))
        alternatives.append(text)
    if len(alternatives) > MAX_ALTERNATIVES:
        errors["alternatives"] = "An entry can have at most 30 other phrasings."
    answer = str(raw.get("answer") or "").strip().replace("\r\n", "\n")
    if not answer:
        errors["answer"] = "Enter the answer."
    elif len(answer) > MAX_ANSWER:
        errors["answer"] = "The answer is too long (4,000 characters at most)."
    else:
        keys = [f.key for f in custom_fields(session, workspace_id)]
        try:
            variables.parse(answer, keys, field_name="answer")
        except ValidationFailed as exc:
            errors["answer"] = str((exc.details or {}).get("answer", exc.message))
    buttons: list[str] = []
    for value in raw.get("buttons") or []:
        text = _line(value)
        if not text:
            continue
        if len(text) > MAX_BUTTON:
            errors["buttons"] = "A button can have 20 characters at most."
        elif fold(text) in {fold(b) for b in buttons}:
            errors["buttons"] = "Two buttons have the same text."
        buttons.append(text)
    if len(buttons) > MAX_BUTTONS:
        errors["buttons"] = "An entry can have at most 10 buttons."
    topic = _line(raw.get("topic"))
    if len(topic) > MAX_TOPIC:
        errors["topic"] = "The topic is too long (100 characters at most)."
    language = str(raw.get("language") or "").strip().lower()
    if language not in LANGUAGES:
        errors["language"] = "Choose Spanish (es) or English (en)."
    active = raw.get("active", True)
    if not isinstance(active, bool):
        errors["active"] = "Must be true or false."
    if errors:
        raise ValidationFailed(
            "The knowledge entry is not valid.", details={f"{prefix}{k}": v for k, v in errors.items()}
        )
    return EntryValues(question, alternatives, answer, buttons, topic, language, bool(active))


def list_entries(
    session: Session,
    actor: Actor,
    *,
    search: str = "",
    language: str | None = None,
    topic: str | None = None,
    active: bool | None = None,
    after: int | None = None,
    limit: int = 50,
) -> list[KnowledgeEntry]:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    return repository.entries_page(
        session,
        actor.workspace_id,
        search=fold(search),
        language=language,
        topic=topic,
        active=active,
        after=after,
        limit=limit,
    )


def access_entry(session: Session, actor: Actor, entry_id: int) -> KnowledgeEntry:
    return access_in_workspace(
        session,
        actor,
        KnowledgeEntry,
        entry_id,
        permission=Permission.MANAGE_KNOWLEDGE,
        not_found="Knowledge entry not found.",
    )


def _search_key(values: EntryValues) -> str:
    return fold(" ".join([values.question, *values.alternatives, values.answer, values.topic]))


def _apply(entry: KnowledgeEntry, values: EntryValues) -> None:
    entry.question = values.question
    entry.question_key = values.question_key
    entry.alternatives = values.alternatives
    entry.answer = values.answer
    entry.buttons = values.buttons
    entry.topic = values.topic
    entry.language = values.language
    entry.active = values.active
    entry.search_key = _search_key(values)


_DUPLICATE = "Another entry already has this question in this language."


def _check_unique(
    session: Session, workspace_id: int, values: EntryValues, own_id: int | None, prefix: str = ""
) -> None:
    found = repository.entries_by_key(session, workspace_id, [(values.language, values.question_key)])
    other = found.get((values.language, values.question_key))
    if other is not None and other.id != own_id:
        raise ValidationFailed.field(f"{prefix}question", _DUPLICATE)


def do_create_entry(session: Session, actor: Actor, values: EntryValues) -> KnowledgeEntry:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    _check_unique(session, actor.workspace_id, values, None)
    if repository.count_entries(session, actor.workspace_id) >= MAX_ENTRIES:
        raise ValidationFailed.field("question", "A workspace can have at most 20,000 knowledge entries.")
    entry = KnowledgeEntry(workspace_id=actor.workspace_id)
    _apply(entry, values)
    session.add(entry)
    session.flush()
    repository.bump_version(session, actor.workspace_id)
    return entry


def do_update_entry(session: Session, actor: Actor, entry: KnowledgeEntry, values: EntryValues) -> None:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    _check_unique(session, actor.workspace_id, values, entry.id)
    _apply(entry, values)
    session.flush()
    repository.bump_version(session, actor.workspace_id)


def do_delete_entry(session: Session, actor: Actor, entry: KnowledgeEntry) -> None:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    session.delete(entry)
    session.flush()
    repository.bump_version(session, actor.workspace_id)


@dataclass
class BulkResult:
    created: list[KnowledgeEntry]
    updated: list[KnowledgeEntry]


def do_upsert_entries(session: Session, actor: Actor, batch: Sequence[EntryValues]) -> BulkResult:
    """Entries written by (language, question): a question already in the workspace is updated,
    a new one created. The caller has checked every item (all or nothing); two items with the
    same question are refused here, naming the later one."""
    actor.require(Permission.MANAGE_KNOWLEDGE)
    seen: dict[tuple[str, str], int] = {}
    for index, values in enumerate(batch):
        key = (values.language, values.question_key)
        if key in seen:
            raise ValidationFailed.field(f"entries[{index}].question", f"same question as entries[{seen[key]}]")
        seen[key] = index
    existing = repository.entries_by_key(session, actor.workspace_id, list(seen))
    new = sum(1 for key in seen if key not in existing)
    if new and repository.count_entries(session, actor.workspace_id) + new > MAX_ENTRIES:
        raise ValidationFailed.field("entries", "A workspace can have at most 20,000 knowledge entries.")
    result = BulkResult([], [])
    for values in batch:
        entry = existing.get((values.language, values.question_key))
        if entry is None:
            entry = KnowledgeEntry(workspace_id=actor.workspace_id)
            session.add(entry)
            result.created.append(entry)
        else:
            result.updated.append(entry)
        _apply(entry, values)
    session.flush()
    if batch:
        repository.bump_version(session, actor.workspace_id)
    return result


def do_delete_entries(session: Session, actor: Actor, ids: Sequence[int]) -> int:
    """Deletes the workspace's entries among `ids` (others' ids are ignored, never revealed)."""
    actor.require(Permission.MANAGE_KNOWLEDGE)
    deleted = repository.delete_entries(session, actor.workspace_id, ids)
    if deleted:
        repository.bump_version(session, actor.workspace_id)
    return deleted


def do_set_active(session: Session, actor: Actor, ids: Sequence[int], active: bool) -> int:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    changed = repository.set_active(session, actor.workspace_id, ids, active)
    if changed:
        repository.bump_version(session, actor.workspace_id)
    return changed


# ----- synonyms -------------------------------------------------------------------------------------


def list_synonyms(session: Session, actor: Actor) -> list[KnowledgeSynonym]:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    return repository.synonyms(session, actor.workspace_id)


def check_synonyms(groups: Sequence[Mapping[str, Any]]) -> list[tuple[str, list[str]]]:
    errors: dict[str, str] = {}
    if len(groups) > MAX_SYNONYM_GROUPS:
        raise ValidationFailed.field("synonyms", "At most 500 groups of synonyms.")
    clean: list[tuple[str, list[str]]] = []
    for index, group in enumerate(groups):
        language = str(group.get("language") or "").strip().lower()
        if language not in LANGUAGES:
            errors[f"synonyms[{index}].language"] = "Choose Spanish (es) or English (en)."
        terms: list[str] = []
        for term in group.get("terms") or []:
            text = _line(term)
            if text and fold(text) not in {fold(t) for t in terms}:
                terms.append(text)
        if len(terms) < 2:
            errors[f"synonyms[{index}].terms"] = "A group needs at least two words or phrases."
        elif len(terms) > MAX_SYNONYM_TERMS or any(len(t) > MAX_SYNONYM for t in terms):
            errors[f"synonyms[{index}].terms"] = "At most 20 terms of 100 characters each."
        clean.append((language, terms))
    if errors:
        raise ValidationFailed("The synonyms are not valid.", details=errors)
    return clean


def parse_synonym_lines(text: str, language: str) -> list[dict[str, Any]]:
    """The settings page's shape: one group a line, terms separated by commas."""
    return [
        {"language": language, "terms": [t for t in line.split(",") if t.strip()]}
        for line in text.splitlines()
        if line.strip()
    ]


def do_replace_synonyms(session: Session, actor: Actor, groups: Sequence[tuple[str, list[str]]]) -> None:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    repository.replace_synonyms(session, actor.workspace_id, groups)
    session.flush()
    repository.bump_version(session, actor.workspace_id)
