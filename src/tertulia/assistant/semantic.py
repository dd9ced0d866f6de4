"""Embeddings for retrieval, an optional extra of the workspace's language model: with an
embeddings model named in its settings, each knowledge entry's phrasings (its question and other
phrasings) are embedded once per knowledge version, and each question is embedded when it is
asked; `retrieval` fuses the cosine similarities with its lexical ranking (see its docstring).

The answer path never waits on the endpoint for longer than the endpoint's timeout, and never fails
because of it:
- The entries' vectors are computed in a background thread (`EMBED_BATCH` texts a request, the
  endpoint's retries, no further request once the month's remaining tokens are spent) and kept in
  memory with the index's version, per process, one set per workspace. The question that starts the
  computation waits for it until its deadline (the endpoint's timeout); later questions do not wait:
  until the vectors are ready they are answered by lexical retrieval alone.
- The question's own embedding is one request, without retries, within what is left of the same
  deadline.
- Any failure (timeout, an error status, an answer that is not embeddings, the budget) is logged
  and reported (`Lookup.error`, which the caller records as the settings page's last error, as the
  chat path does), and the question is answered lexically. A failed computation is tried again
  after RETRY_FAILED_SECONDS, not on every question.

The tokens of the entries' vectors count against the monthly budget only (`Lookup.index_tokens`),
the question's against its conversation's as well (`Lookup.tokens`). Nothing here touches the
database except the reads of `retrieval.index_for` and the budget.
"""

import hashlib
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
import structlog
from sqlalchemy.orm import Session

from tertulia.assistant import model_settings, retrieval
from tertulia.assistant.llm import Endpoint, ModelError, embed

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
    index_tokens: int = 0  # the entries' vectors (reported once, by the first question to see them)
    error: str | None = None

    @property
    def called(self) -> bool:
        return bool(self.tokens or self.index_tokens or self.error) or self.status == READY


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
    tokens: int = 0
    finished_at: float = 0.0
    reported: bool = False


_vectors: dict[int, _Vectors] = {}
_lock = threading.Lock()


def _unit(matrix: np.ndarray) -> np.ndarray:
    # float32: half the memory (10,000 entries of 3 phrasings at 1,536 dimensions: 184 MB), and
    # cosines need no more precision.
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _compute(target: _Vectors, index: retrieval.WorkspaceIndex, endpoint: Endpoint, budget: int) -> None:
    texts: list[str] = []
    # Per language: its first text, its last text + 1, and each entry's first row.
    layout: dict[str, tuple[int, int, list[int]]] = {}
    for language, language_index in index.languages.items():
        first = len(texts)
        starts: list[int] = []
        for entry in language_index.entries:
            starts.append(len(texts) - first)
            texts.extend(entry.phrasings or (entry.answer,))
        layout[language] = (first, len(texts), starts)
    try:
        result = embed(endpoint, [text[: retrieval.MAX_QUESTION] for text in texts], token_budget=budget)
        vectors = np.asarray(result.vectors, dtype=np.float64).reshape(len(texts), -1) if texts else np.zeros((0, 0))
        for language, (first, end, starts) in layout.items():
            target.rows[language] = _unit(vectors[first:end])
            target.starts[language] = np.array(starts, dtype=np.int64)
        target.tokens = result.tokens
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
    budget = model_settings.remaining_monthly_tokens(session, workspace_id, model)
    thread = threading.Thread(
        target=_compute, args=(target, index, endpoint, budget), name=f"embeddings-{workspace_id}", daemon=True
    )
    thread.start()
    return target, True


def _take_report(target: _Vectors) -> tuple[int, str | None]:
    """The computation's tokens and error, to the first question that sees it finished."""
    with _lock:
        if target.reported or not target.done.is_set():
            return 0, None
        target.reported = True
        return target.tokens, target.error


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
    index_tokens, index_error = _take_report(target)
    if not target.done.is_set():
        return Lookup(None, BUILDING)
    if target.error is not None:
        return Lookup(None, ERROR, index_tokens=index_tokens, error=index_error)
    left = deadline - time.monotonic()
    if left < MIN_REQUEST_SECONDS:
        return Lookup(None, BUILDING, index_tokens=index_tokens)
    asked = replace(endpoint, timeout_seconds=min(endpoint.timeout_seconds, left), max_retries=0)
    try:
        result = embed(asked, [question[: retrieval.MAX_QUESTION]])
        vector = np.asarray(result.vectors[0], dtype=np.float64)
        dimensions = {rows.shape[1] for rows in target.rows.values() if rows.shape[0]}
        if dimensions and dimensions != {vector.shape[0]}:
            raise ModelError("The question's embedding is not the size of the knowledge's.", retryable=False)
    except ModelError as exc:
        log.warning("assistant.embeddings.question_failed", model=endpoint.model, error=exc.message)
        return Lookup(None, ERROR, tokens=exc.tokens, index_tokens=index_tokens, error=exc.message)
    norm = float(np.linalg.norm(vector))
    question_vector = vector / norm if norm > 0 else vector
    return Lookup(_similarities(target, question_vector), READY, tokens=result.tokens, index_tokens=index_tokens)


def wait_for_vectors(workspace_id: int, timeout: float) -> bool:
    """Whether the workspace's entry vectors finished computing within `timeout` seconds (for
    tests and the benchmark)."""
    with _lock:
        current = _vectors.get(workspace_id)
    return current is not None and current.done.wait(timeout)
