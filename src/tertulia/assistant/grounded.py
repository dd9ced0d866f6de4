"""Answers written by the workspace's language model from the retrieved knowledge, and only from it.

Retrieval runs first, as without a model. Its best entries (up to CANDIDATES, each with a
confidence of at least half the threshold) go to the model with their ids; the model must answer in
JSON, `{"answer": "...", "entry_ids": [12]}`, citing the entries it used, or
`{"answer": "", "entry_ids": []}` when they do not answer the question. Its answer is used only
when it is not empty, cites at least one entry, and cites only entries it was given; any other
answer is **ungrounded** and becomes the hand-off (reason "ungrounded"), as a low confidence would.

The model never makes the assistant silent or worse than retrieval: with no model set, nothing to
ground on (no candidates), a budget spent, or any failure of the endpoint (timeout, error, an answer
that is not the JSON asked for, or a text with a variable the inbox cannot fill), the answer is
retrieval's own (`source` "retrieval", `model_status` saying why).

With an embeddings model named, the question's embedding is fused into retrieval's ranking and
confidence first (`semantic`), within the endpoint's timeout and falling back to lexical retrieval
on any failure; its tokens and error are recorded with the chat's.

`compose` reads and calls the endpoint; before each call it reserves the most the call can spend
(`llm.chat_token_bound`; `model_settings.reserve`, a short transaction of its own, so concurrent
calls cannot together pass a budget). The caller records what the calls spent and how they went
(`record`, which settles the reservations) in its own transaction, so no write lock is held while
the model writes.
"""

import json
import re
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.assistant import model_settings, retrieval, semantic
from tertulia.assistant.llm import ModelError, chat, chat_token_bound
from tertulia.assistant.models import KnowledgeEntry
from tertulia.contacts.repository import custom_fields
from tertulia.conversations import variables
from tertulia.kit.errors import ValidationFailed

CANDIDATES = 5
MAX_COMPLETION_TOKENS = 600
MAX_ANSWER = 4000

RETRIEVAL = "retrieval"
MODEL = "llm"

SYSTEM_PROMPT = """You are a customer-service assistant for a business. Answer the customer's \
question using ONLY the knowledge entries given below; never add facts that are not in them.
Reply in the customer's language, briefly and kindly.
Keep any placeholder written like {{contact.first_name}} exactly as it is.
Reply with a JSON object and nothing else:
{"answer": "<your answer>", "entry_ids": [<the ids of the entries your answer uses>]}
If the entries do not answer the question, reply {"answer": "", "entry_ids": []}."""


@dataclass(frozen=True)
class Outcome:
    """What the assistant answers, which path wrote it, and what the model call spent."""

    answer: retrieval.Answer
    source: str  # MODEL or RETRIEVAL
    # Why: "grounded", "ungrounded" (source MODEL); "off", "no_candidates", "budget", "error",
    # "invalid_output" (source RETRIEVAL).
    model_status: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    called: bool = False  # whether the endpoint was called (what `record` records)
    # Embeddings (`semantic.Lookup`): "off", "ready", "building", "budget" or "error"; the
    # question's tokens, the entries' vectors' tokens, and the error.
    embeddings: str = semantic.OFF
    embedding_tokens: int = 0
    embedding_error: str | None = None
    # Tokens set aside before the calls (the question's embedding, the chat), settled by `record`.
    reservations: tuple[model_settings.Reservation, ...] = ()


def _retrieval(found: retrieval.Answer, status: str) -> Outcome:
    return Outcome(found, RETRIEVAL, status)


def build_messages(question: str, entries: list[KnowledgeEntry]) -> list[dict[str, str]]:
    knowledge = "\n\n".join(
        f"[entry {entry.id}] ({entry.language})\nQuestion: {entry.question}\nAnswer: {entry.answer}"
        for entry in entries
    )
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"Knowledge entries:\n\n{knowledge}\n\nCustomer's question:\n{question}"},
    ]


# The least any answer reserves (`llm.chat_token_bound`): the system prompt and the user message's
# scaffolding with no entry and an empty question, their framing and the reply's, and the reply's
# MAX_COMPLETION_TOKENS. A real prompt is longer (a call is made only with at least one entry and a
# question; five Spanish entries of ~250 characters reserve about 2,400), so a budget below this
# admits no call at all: the assistant answers from retrieval alone, whatever is asked.
MIN_ANSWER_TOKENS = chat_token_bound((m["content"] for m in build_messages("", [])), MAX_COMPLETION_TOKENS)
BUDGET_BELOW_ONE_ANSWER = "budget_below_one_answer"
BUDGET_FIELDS = ("conversation_token_budget", "monthly_token_budget")


@dataclass(frozen=True)
class BudgetWarning:
    """A budget that is saved (a manager may switch the model off this way) but admits no answer."""

    field: str
    code: str
    minimum: int


def budget_warnings(budgets: dict[str, int]) -> list[BudgetWarning]:
    """A warning for each of `budgets` (by field name) below what one answer reserves."""
    return [
        BudgetWarning(field, BUDGET_BELOW_ONE_ANSWER, MIN_ANSWER_TOKENS)
        for field in BUDGET_FIELDS
        if field in budgets and budgets[field] < MIN_ANSWER_TOKENS
    ]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


def parse_reply(content: str) -> tuple[str, list[object]] | None:
    """The model's (answer, cited ids), or None when the reply is not the JSON object asked for (a
    fenced ```json block is accepted: models add one however they are asked)."""
    text = _FENCE.sub("", content.strip())
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    answer = data.get("answer")
    cited = data.get("entry_ids")
    if answer is None:
        answer = ""
    if cited is None:
        cited = []
    if not isinstance(answer, str) or not isinstance(cited, list):
        return None
    return answer.strip(), cited


def grounded_ids(cited: list[object], given: set[int]) -> list[int] | None:
    """The cited ids when every one is a given entry's id (and there is one); None otherwise."""
    ids: list[int] = []
    for value in cited:
        if isinstance(value, bool):
            return None
        number = int(value.strip()) if isinstance(value, str) and value.strip().isdigit() else value
        if not isinstance(number, int) or number not in given:
            return None
        if number not in ids:
            ids.append(number)
    return ids or None


def _fillable(session: Session, workspace_id: int, text: str) -> bool:
    """Whether the inbox can fill the text's variables when it is sent (an unknown one would make
    the send fail, and the customer get nothing)."""
    try:
        variables.parse(text, [f.key for f in custom_fields(session, workspace_id)], field_name="answer")
    except ValidationFailed:
        return False
    return True


def compose(
    session: Session,
    workspace_id: int,
    question: str,
    language: str | None = None,
    threshold: float | None = None,
    *,
    conversation_id: int | None = None,
    use_model: bool = True,
) -> Outcome:
    """The assistant's answer to `question`: the model's when it is set, within budget, and its
    answer grounded; retrieval's otherwise, with the question's embedding fused into retrieval's
    ranking when embeddings are on and answer in time (`semantic`). Reads only (see `record`)."""
    limit = retrieval.DEFAULT_THRESHOLD if threshold is None else threshold
    model = model_settings.active_model(session, workspace_id) if use_model else None
    if model is None:
        return _retrieval(retrieval.answer(session, workspace_id, question, language, limit), "off")
    looked = semantic.lookup(session, workspace_id, model, question, conversation_id)
    outcome = _written(session, workspace_id, question, language, limit, model, looked.semantic, conversation_id)
    return replace(
        outcome,
        called=outcome.called or looked.called,
        embeddings=looked.status,
        embedding_tokens=looked.tokens,
        embedding_error=looked.error,
        reservations=(*outcome.reservations, *((looked.reservation,) if looked.reservation else ())),
    )


def _written(
    session: Session,
    workspace_id: int,
    question: str,
    language: str | None,
    limit: float,
    model: model_settings.ActiveModel,
    similar: retrieval.Semantic | None,
    conversation_id: int | None,
) -> Outcome:
    found = retrieval.answer(session, workspace_id, question, language, limit, similar)
    if found.reason in ("empty_question", "no_knowledge"):
        return _retrieval(found, "no_candidates")
    floor = limit / 2
    ranked = [
        a for a in retrieval.suggestions(session, workspace_id, question, CANDIDATES, similar) if a.confidence >= floor
    ]
    if not ranked:
        return _retrieval(found, "no_candidates")
    rows = {
        e.id: e
        for e in session.scalars(
            select(KnowledgeEntry).where(
                KnowledgeEntry.workspace_id == workspace_id,
                KnowledgeEntry.id.in_([a.entry_id for a in ranked if a.entry_id is not None]),
            )
        )
    }
    entries = [rows[a.entry_id] for a in ranked if a.entry_id in rows]
    if not entries:
        return _retrieval(found, "no_candidates")
    messages = build_messages(question, entries)
    bound = chat_token_bound((m["content"] for m in messages), MAX_COMPLETION_TOKENS)
    reservation = model_settings.reserve(session, workspace_id, model, conversation_id, bound)
    if reservation is None:
        return _retrieval(found, "budget")
    return replace(_asked(session, workspace_id, model, messages, found, ranked, rows), reservations=(reservation,))


def _asked(
    session: Session,
    workspace_id: int,
    model: model_settings.ActiveModel,
    messages: list[dict[str, str]],
    found: retrieval.Answer,
    ranked: list[retrieval.Answer],
    rows: dict[int, KnowledgeEntry],
) -> Outcome:
    """The model's answer to `messages`, kept only when grounded in `rows`; retrieval's `found`
    otherwise."""
    try:
        completion = chat(model.endpoint, messages, max_tokens=MAX_COMPLETION_TOKENS)
    except ModelError as exc:
        # Tokens only when the endpoint may have answered without saying what it spent: then the
        # most it could have (the reservation), kept as spent.
        return Outcome(
            found,
            RETRIEVAL,
            "error",
            error=exc.message,
            called=True,
            prompt_tokens=exc.tokens,
            completion_tokens=exc.completion_tokens,
        )
    prompt, written_tokens = completion.prompt_tokens, completion.completion_tokens
    parsed = parse_reply(completion.content)
    if parsed is None:
        error = "The model did not answer with the JSON object it was asked for."
        return Outcome(
            found,
            RETRIEVAL,
            "invalid_output",
            error=error,
            called=True,
            prompt_tokens=prompt,
            completion_tokens=written_tokens,
        )
    text, cited = parsed
    ids = grounded_ids(cited, set(rows))
    if not text or ids is None:
        handoff = retrieval.Answer(None, found.entry_id, found.confidence, True, "ungrounded", language=found.language)
        return Outcome(
            handoff, MODEL, "ungrounded", called=True, prompt_tokens=prompt, completion_tokens=written_tokens
        )
    if len(text) > MAX_ANSWER or not _fillable(session, workspace_id, text):
        error = "The model's answer was too long or had a placeholder the inbox cannot fill."
        return Outcome(
            found,
            RETRIEVAL,
            "invalid_output",
            error=error,
            called=True,
            prompt_tokens=prompt,
            completion_tokens=written_tokens,
        )
    first = rows[ids[0]]
    confidence = max((a.confidence for a in ranked if a.entry_id in ids), default=0.0)
    written = retrieval.Answer(
        answer=text,
        entry_id=first.id,
        confidence=confidence,
        handoff=False,
        reason="matched",
        buttons=tuple(first.buttons or ()),
        language=first.language,
    )
    return Outcome(written, MODEL, "grounded", called=True, prompt_tokens=prompt, completion_tokens=written_tokens)


def record(session: Session, workspace_id: int, outcome: Outcome, conversation_id: int | None = None) -> None:
    """What the calls spent, per conversation and month (settling their reservations), and their
    error or success for the settings page (the chat's error first, else the embeddings'); nothing
    when the endpoint was not called. (The entries' vectors are recorded where they are computed,
    for the month only.)"""
    if not outcome.called and not outcome.reservations:
        return
    model_settings.record_call(
        session,
        workspace_id,
        conversation_id,
        prompt_tokens=outcome.prompt_tokens + outcome.embedding_tokens,
        completion_tokens=outcome.completion_tokens,
        error=outcome.error or outcome.embedding_error,
        reservations=outcome.reservations,
    )


def retrieve(session: Session, workspace_id: int, question: str, conversation_id: int | None = None) -> semantic.Lookup:
    """The question's similarities to the entries for retrieval's fused ranking (`retrieval.answer`
    and `retrieval.suggestions` with `semantic`) when the workspace's embeddings are on and ready;
    the lexical ranking's `Lookup` otherwise. What the bot's answer uses, for the pages that show
    retrieval alone (suggested replies, "Try a question"); record it with `record_lookup`."""
    model = model_settings.active_model(session, workspace_id)
    return semantic.lookup(session, workspace_id, model, question, conversation_id)


def record_lookup(
    session: Session, workspace_id: int, looked: semantic.Lookup, conversation_id: int | None = None
) -> None:
    record(
        session,
        workspace_id,
        Outcome(
            retrieval.Answer(None, None, 0.0, True, "no_match"),
            RETRIEVAL,
            "off",
            called=looked.called,
            embeddings=looked.status,
            embedding_tokens=looked.tokens,
            embedding_error=looked.error,
            reservations=(looked.reservation,) if looked.reservation else (),
        ),
        conversation_id,
    )
