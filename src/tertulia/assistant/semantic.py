"""Embeddings for retrieval, an optional extra of the workspace's language model: with an
embeddings model named in its settings, each knowledge entry's phrasings (its question and other
phrasings) are embedded once (and again when its text changes), and each question is embedded
when it is asked; `retrieval` fuses the cosine similarities with its lexical ranking (see its docstring).

The answer path never waits on the endpoint for longer than the endpoint's timeout, and never fails
because of it:
- The entries' vectors are stored in the database (`assistant_entry_embeddings`, keyed by entry,
  model and the SHA-256 of the text embedded, little-endian float32), so a restarted or second
  process loads them instead of paying the endpoint again, and a change to the knowledge embeds
  only the phrasings that changed. Per process they are gathered in a background thread (stored
  vectors loaded, the missing ones embedded, `EMBED_BATCH` texts a request with the endpoint's
  retries, then stored) and kept in memory with the index's version, one set per workspace. The
  question that starts the gathering waits for it until its deadline (the endpoint's timeout);
  later questions do not wait: until the vectors are ready they are answered by lexical retrieval
  alone.
- The question's own embedding is one request, without retries, within what is left of the same
  deadline.
- Any failure (timeout, an error status, an answer that is not embeddings, the budget) is logged
  and reported (`Lookup.error`, which the caller records as the settings page's last error, as the
  chat path does), and the question is answered lexically. A failed computation is tried again
  after RETRY_FAILED_SECONDS, not on every question.

Every call first reserves the most it can spend (`llm.prompt_token_bound`, `model_settings.reserve`):
the entries' vectors against the month's budget only (the thread reserves, records and settles them
itself), the question's against its conversation's as well (`Lookup.reservation`, settled when the
caller records the question's tokens).
"""

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import structlog
from sqlalchemy.orm import Session

from tertulia.assistant import model_settings, repository, retrieval
from tertulia.assistant.llm import EMBED_BATCH, Endpoint, ModelError, embed, prompt_token_bound
from tertulia.kit.db import Database, database_of

log = structlog.get_logger("tertulia.assistant.semantic")

RETRY_FAILED_SECONDS = 60.0
# Less than this left of the deadline: the question's embedding is not worth asking for.
MIN_REQUEST_SECONDS = 0.05

OFF = "off"
READY = "ready"
BUILDING = "building"
BUDGET = "budget"
ERROR = "error"


@dataclass(frozen=True)
class Lookup:
    """The question's similarities to the entries (None: answer lexically), why (`status`), and
    what to record: tokens and the error."""

    semantic: retrieval.Semantic | None
    status: str
    tokens: int = 0  # the question's embedding
    error: str | None = None  # the question's, or the entries' vectors' (reported once)
    reservation: model_settings.Reservation | None = None  # the question's, settled when recorded

    @property
    def called(self) -> bool:
        return bool(self.tokens or self.error or self.reservation) or self.status == READY


@dataclass
class _Vectors:
    """One workspace's entry vectors for one index version and endpoint, while and after they are
    computed. Per language: the rows (each phrasing's unit vector) and each entry's first row."""

    key: tuple[object, ...]
    version: tuple[int, str]
    done: threading.Event = field(default_factory=threading.Event)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    starts: dict[str, np.ndarray] = field(default_factory=dict)
    error: str | None = None
    tokens: int = 0  # what embedding the missing phrasings spent (the others were stored)
    finished_at: float = 0.0
    reported: bool = False


_vectors: dict[int, _Vectors] = {}
_lock = threading.Lock()


def _unit(matrix: np.ndarray) -> np.ndarray:
    # float32: half the memory (10,000 entries of 3 phrasings at 1,536 dimensions: 184 MB), and
    # cosines need no more precision.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _as_bytes(vector: Sequence[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


@dataclass(frozen=True)
class _Phrasing:
    entry_id: int
    text: str
    hash: str


def _phrasings(index: retrieval.WorkspaceIndex) -> tuple[list[_Phrasing], dict[str, tuple[int, int, list[int]]]]:
    """Every phrasing to embed, in the index's order, and per language its first phrasing, its last
    + 1 and each entry's first row."""
    phrasings: list[_Phrasing] = []
    layout: dict[str, tuple[int, int, list[int]]] = {}
    for language, language_index in index.languages.items():
        first = len(phrasings)
        starts: list[int] = []
        for entry in language_index.entries:
            starts.append(len(phrasings) - first)
            for text in entry.phrasings or (entry.answer,):
                sent = text[: retrieval.MAX_QUESTION]
                phrasings.append(_Phrasing(entry.id, sent, text_hash(sent)))
        layout[language] = (first, len(phrasings), starts)
    return phrasings, layout


def _gather(
    database: Database,
    workspace_id: int,
    index: retrieval.WorkspaceIndex,
    model: model_settings.ActiveModel,
    endpoint: Endpoint,
) -> tuple[np.ndarray, dict[str, tuple[int, int, list[int]]], int]:
    """The vectors of every phrasing, in order: the stored ones loaded, the missing ones embedded
    (their tokens reserved first) and stored; each language's layout, and the tokens spent."""
    phrasings, layout = _phrasings(index)
    with database.transaction(write=False) as session:
        stored = repository.stored_embeddings(session, workspace_id, endpoint.model)
        found = {(entry_id, digest): vector for _row, entry_id, digest, vector in stored}
        missing = list({(p.entry_id, p.hash): p for p in phrasings if (p.entry_id, p.hash) not in found}.values())
        reservation = None
        if missing:
            bound = prompt_token_bound(p.text for p in missing)
            reservation = model_settings.reserve(session, workspace_id, model, None, bound)
            if reservation is None:
                raise ModelError("The month's token budget cannot cover the knowledge's embeddings.", retryable=False)
    tokens = 0
    try:
        # Stored a batch at a time: a failure halfway through a large knowledge base keeps what was
        # paid for, and the next attempt asks for the rest only.
        for start in range(0, len(missing), EMBED_BATCH):
            batch = missing[start : start + EMBED_BATCH]
            try:
                result = embed(endpoint, [p.text for p in batch])
            except ModelError as exc:
                tokens += exc.tokens
                raise
            tokens += result.tokens
            for phrasing, vector in zip(batch, result.vectors, strict=True):
                found[(phrasing.entry_id, phrasing.hash)] = _as_bytes(vector)
            _store(
                database,
                workspace_id,
                endpoint.model,
                [(p.entry_id, p.hash, found[(p.entry_id, p.hash)]) for p in batch],
            )
    finally:
        if reservation is not None:
            with database.transaction() as session:
                model_settings.record_usage(
                    session, workspace_id, None, prompt_tokens=tokens, completion_tokens=0, reservations=[reservation]
                )
    vectors = [np.frombuffer(found[(p.entry_id, p.hash)], dtype="<f4") for p in phrasings]
    if len({vector.shape[0] for vector in vectors}) > 1:
        # Stored by the same model name on another endpoint: compute them all again next time.
        with database.transaction() as session:
            repository.delete_embeddings(
                session, workspace_id, [row for row, *_ in stored], other_than_model=endpoint.model
            )
        raise ModelError("The stored embeddings are not all of one size; they will be computed again.", retryable=False)
    _prune(database, workspace_id, index.version, endpoint.model, phrasings, stored)
    matrix = np.vstack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)
    return matrix, layout, tokens


def _store(database: Database, workspace_id: int, model: str, rows: list[tuple[int, str, bytes]]) -> None:
    try:
        with database.transaction() as session:
            repository.add_embeddings(session, workspace_id, model, rows)
    except Exception:  # storing is an economy: the vectors are used all the same
        log.exception("assistant.embeddings.store_failed", model=model)


def _prune(
    database: Database,
    workspace_id: int,
    version: tuple[int, str],
    model: str,
    phrasings: list[_Phrasing],
    stored: list[tuple[int, int, str, bytes]],
) -> None:
    """While the index is still the knowledge's current version, the stored rows it no longer needs
    removed (a changed phrasing's old text, another model's). A process still on an older version
    removes nothing: what it thinks stale may be another's new phrasing. (An entry deleted takes its
    rows with it; an inactive one keeps them, for when it is active again.)"""
    current = {(p.entry_id, p.hash) for p in phrasings}
    entries = {entry_id for entry_id, _hash in current}
    stale = [
        row for row, entry_id, digest, _vector in stored if entry_id in entries and (entry_id, digest) not in current
    ]
    try:
        with database.transaction() as session:
            if repository.version(session, workspace_id) == version:
                repository.delete_embeddings(session, workspace_id, stale, other_than_model=model)
    except Exception:
        log.exception("assistant.embeddings.prune_failed", model=model)


def _compute(
    target: _Vectors,
    database: Database,
    workspace_id: int,
    index: retrieval.WorkspaceIndex,
    model: model_settings.ActiveModel,
    endpoint: Endpoint,
) -> None:
    try:
        vectors, layout, tokens = _gather(database, workspace_id, index, model, endpoint)
        for language, (first, end, starts) in layout.items():
            target.rows[language] = _unit(vectors[first:end].astype(np.float64))
            target.starts[language] = np.array(starts, dtype=np.int64)
        target.tokens = tokens
    except ModelError as exc:
        target.error = exc.message
        target.tokens = exc.tokens
        log.warning("assistant.embeddings.index_failed", model=endpoint.model, error=exc.message)
    except Exception:  # a bug here must cost the lexical answer nothing
        target.error = "The knowledge's embeddings could not be computed."
        log.exception("assistant.embeddings.index_crashed", model=endpoint.model)
    finally:
        target.finished_at = time.monotonic()
        target.done.set()


def _entry_vectors(
    session: Session,
    workspace_id: int,
    model: model_settings.ActiveModel,
    endpoint: Endpoint,
    index: retrieval.WorkspaceIndex,
) -> tuple[_Vectors, bool]:
    """The workspace's entry vectors for its current index (being computed, or done), and whether
    this call started computing them."""
    secret = hashlib.sha256(endpoint.api_key.encode()).hexdigest()
    key: tuple[object, ...] = (index.version, endpoint.base_url, endpoint.model, secret)
    with _lock:
        current = _vectors.get(workspace_id)
        stale = current is None or current.key != key
        failed = (
            current is not None
            and current.done.is_set()
            and current.error is not None
            and time.monotonic() - current.finished_at >= RETRY_FAILED_SECONDS
        )
        if current is not None and not stale and not failed:
            return current, False
        _vectors.pop(workspace_id, None)
        target = _vectors[workspace_id] = _Vectors(key, index.version)
        while len(_vectors) > retrieval.CACHE_WORKSPACES:  # as many workspaces as retrieval keeps
            del _vectors[next(iter(_vectors))]
    thread = threading.Thread(
        target=_compute,
        args=(target, database_of(session), workspace_id, index, model, endpoint),
        name=f"embeddings-{workspace_id}",
        daemon=True,
    )
    thread.start()
    return target, True


def _take_report(target: _Vectors) -> str | None:
    """The computation's error, to the first question that sees it finished (the thread recorded
    its tokens)."""
    with _lock:
        if target.reported or not target.done.is_set():
            return None
        target.reported = True
        return target.error


def _similarities(target: _Vectors, question: np.ndarray) -> retrieval.Semantic:
    by_language: dict[str, np.ndarray] = {}
    for language, rows in target.rows.items():
        starts = target.starts[language]
        if len(starts) == 0 or rows.shape[0] == 0:
            by_language[language] = np.zeros(0, dtype=np.float64)
            continue
        similarity = rows @ question.astype(np.float32)
        by_language[language] = np.asarray(np.maximum.reduceat(similarity, starts), dtype=np.float64)
    return retrieval.Semantic(target.version, by_language)


def lookup(
    session: Session,
    workspace_id: int,
    model: model_settings.ActiveModel | None,
    question: str,
    conversation_id: int | None = None,
) -> Lookup:
    """The question's similarity to every entry when embeddings are on, ready and the endpoint
    answers in time; otherwise None and why. Never raises for the endpoint's sake."""
    endpoint = model.embeddings if model is not None else None
    if model is None or endpoint is None or not question.strip():
        return Lookup(None, OFF)
    deadline = time.monotonic() + endpoint.timeout_seconds
    index = retrieval.index_for(session, workspace_id)
    if not any(language_index.entries for language_index in index.languages.values()):
        return Lookup(None, OFF)  # nothing to compare the question with
    if model_settings.over_budget(session, workspace_id, model, conversation_id):
        return Lookup(None, BUDGET)
    target, started = _entry_vectors(session, workspace_id, model, endpoint, index)
    if started:
        target.done.wait(max(deadline - time.monotonic(), 0.0))
    index_error = _take_report(target)
    if not target.done.is_set():
        return Lookup(None, BUILDING)
    if target.error is not None:
        return Lookup(None, ERROR, error=index_error)
    left = deadline - time.monotonic()
    if left < MIN_REQUEST_SECONDS:
        return Lookup(None, BUILDING)
    text = question[: retrieval.MAX_QUESTION]
    reservation = model_settings.reserve(session, workspace_id, model, conversation_id, prompt_token_bound([text]))
    if reservation is None:
        return Lookup(None, BUDGET)
    asked = replace(endpoint, timeout_seconds=min(endpoint.timeout_seconds, left), max_retries=0)
    try:
        result = embed(asked, [text])
        vector = np.asarray(result.vectors[0], dtype=np.float64)
        dimensions = {rows.shape[1] for rows in target.rows.values() if rows.shape[0]}
        if dimensions and dimensions != {vector.shape[0]}:
            raise ModelError("The question's embedding is not the size of the knowledge's.", retryable=False)
    except ModelError as exc:
        log.warning("assistant.embeddings.question_failed", model=endpoint.model, error=exc.message)
        return Lookup(None, ERROR, tokens=exc.tokens, error=exc.message, reservation=reservation)
    norm = float(np.linalg.norm(vector))
    question_vector = vector / norm if norm > 0 else vector
    return Lookup(_similarities(target, question_vector), READY, tokens=result.tokens, reservation=reservation)


def forget_vectors() -> None:
    """Drops every vector this process holds, as a process starting afresh has none (tests)."""
    with _lock:
        _vectors.clear()


def wait_for_vectors(workspace_id: int, timeout: float) -> bool:
    """Whether the workspace's entry vectors finished computing within `timeout` seconds (for
    tests and the benchmark)."""
    with _lock:
        current = _vectors.get(workspace_id)
    return current is not None and current.done.wait(timeout)
