"""The workspace's optional language model (Settings > Assistant > Language model,
`manage_knowledge`): an OpenAI-compatible endpoint, its model and API key, the client's timeout and
retries, and token budgets per conversation and per month. Also what the model has spent
(`ModelUsage`, one row per call) and the last error, which the settings page shows.

Budgets are kept by `TokenCounter` rows (the month's, and each conversation's): a call first
reserves the most it can spend (`reserve`: a conditional UPDATE in a short transaction of its own,
refused when the reservation would pass the budget), then settles it with what the endpoint says it
really spent when it is recorded (`record_call`). The reservation is an upper bound
(`llm.chat_token_bound`: the prompt's UTF-8 bytes, its framing, and the `max_tokens` the request
sends), so neither concurrent calls together nor one call alone can overrun a budget (within the
bound's assumptions and exceptions, which docs/assistant.md lists).

Each reservation is also a `TokenReservation` row until it is settled; settling deletes it, and
gives its tokens back only when the delete found it. A process that dies between reserving and
settling leaves the row, and `release_stale_reservations` (a periodic task) gives back the tokens of
rows older than RESERVATION_TIMEOUT, by the same delete: a reservation is given back once, whether
the sweep runs twice or its call settles late.

The API key is write-only, like channel secrets: stored encrypted (`ModelSettings.secrets`), never
rendered; a form left empty keeps it. Nothing here commits."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tertulia.assistant.llm import Endpoint, ModelError, chat, chat_token_bound, embed, prompt_token_bound
from tertulia.assistant.models import ModelSettings, ModelUsage, TokenCounter, TokenReservation
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database, database_of
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.settings import get_settings
from tertulia.users.permissions import Actor, Permission
from tertulia.webhooks.addresses import check_url_shape

DEFAULT_TIMEOUT = 15.0
DEFAULT_RETRIES = 2
DEFAULT_CONVERSATION_BUDGET = 20_000
DEFAULT_MONTHLY_BUDGET = 2_000_000
MAX_TIMEOUT = 120.0
MAX_RETRIES = 5
MAX_BUDGET = 1_000_000_000
MAX_BASE_URL = 500
MAX_MODEL = 200
MAX_API_KEY = 500
SUCCESS_WRITE_EVERY = timedelta(minutes=1)
BUDGET_ERROR = "Enter a number of tokens between 1 and 1,000,000,000."
# A reservation still unsettled this long after it was made belongs to a process that died: the
# longest call (a 120 s timeout for each of 6 attempts, and the waits between them) takes about 12.5
# minutes.
RESERVATION_TIMEOUT = timedelta(minutes=30)
# Reservations released by one sweep, at most (each in a short transaction of its own).
RELEASE_BATCH = 500


@dataclass(frozen=True)
class ModelValues:
    enabled: bool
    base_url: str
    model: str
    timeout_seconds: float
    max_retries: int
    conversation_token_budget: int
    monthly_token_budget: int
    embedding_model: str = ""  # empty: no embeddings, retrieval stays lexical


DEFAULTS = ModelValues(
    False, "", "", DEFAULT_TIMEOUT, DEFAULT_RETRIES, DEFAULT_CONVERSATION_BUDGET, DEFAULT_MONTHLY_BUDGET
)


@dataclass(frozen=True)
class ModelStatus:
    """What the settings page shows besides the values: whether a key is stored (never the key),
    the last error and when, the last success, and this month's tokens."""

    values: ModelValues
    has_api_key: bool
    last_error: str
    last_error_at: datetime | None
    last_success_at: datetime | None
    month_tokens: int


def values_of(row: ModelSettings | None) -> ModelValues:
    if row is None:
        return DEFAULTS
    return ModelValues(
        row.enabled,
        row.base_url,
        row.model,
        row.timeout_seconds,
        row.max_retries,
        row.conversation_token_budget,
        row.monthly_token_budget,
        row.embedding_model,
    )


def _integer(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def check_values(raw: Mapping[str, Any], current: ModelValues = DEFAULTS) -> ModelValues:
    """Every field's problem at once; a field left out keeps its current value."""
    errors: dict[str, str] = {}
    enabled = raw.get("enabled", current.enabled)
    if not isinstance(enabled, bool):
        errors["enabled"] = "Must be true or false."
    base_url = str(raw.get("base_url", current.base_url) or "").strip()
    if base_url:
        try:
            # Private and local addresses are allowed (a local Ollama or vLLM is the point) unless the
            # installation forbids them; plain http only to those.
            base_url = check_url_shape(base_url, allow_private=get_settings().assistant_model_allow_private)
        except ValueError:
            errors["base_url"] = "Enter the endpoint's base URL, such as https://api.openai.com/v1."
        else:
            if len(base_url) > MAX_BASE_URL:
                errors["base_url"] = "The URL is too long (500 characters at most)."
    model = " ".join(str(raw.get("model", current.model) or "").split())
    if len(model) > MAX_MODEL:
        errors["model"] = "The model name is too long (200 characters at most)."
    if enabled is True and not base_url and "base_url" not in errors:
        errors["base_url"] = "Enter the endpoint's base URL, such as https://api.openai.com/v1."
    if enabled is True and not model:
        errors["model"] = "Enter the model's name."
    embedding_model = " ".join(str(raw.get("embedding_model", current.embedding_model) or "").split())
    if len(embedding_model) > MAX_MODEL:
        errors["embedding_model"] = "The model name is too long (200 characters at most)."
    timeout = raw.get("timeout_seconds", current.timeout_seconds)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= MAX_TIMEOUT:
        errors["timeout_seconds"] = "Enter a timeout between 1 and 120 seconds."
    retries = _integer(raw.get("max_retries", current.max_retries), 0, MAX_RETRIES)
    if retries is None:
        errors["max_retries"] = "Enter a number of retries between 0 and 5."
    per_conversation = _integer(raw.get("conversation_token_budget", current.conversation_token_budget), 1, MAX_BUDGET)
    if per_conversation is None:
        errors["conversation_token_budget"] = BUDGET_ERROR
    monthly = _integer(raw.get("monthly_token_budget", current.monthly_token_budget), 1, MAX_BUDGET)
    if monthly is None:
        errors["monthly_token_budget"] = BUDGET_ERROR
    if errors:
        raise ValidationFailed("The language model's settings are not valid.", details=errors)
    assert retries is not None
    assert per_conversation is not None
    assert monthly is not None
    return ModelValues(
        bool(enabled), base_url, model, float(timeout), retries, per_conversation, monthly, embedding_model
    )


def check_api_key(value: str) -> str:
    key = value.strip()
    if len(key) > MAX_API_KEY or any(c.isspace() for c in key):
        raise ValidationFailed.field("api_key", "The API key is too long or has spaces in it.")
    return key


def row_for(session: Session, workspace_id: int) -> ModelSettings | None:
    return session.scalar(select(ModelSettings).where(ModelSettings.workspace_id == workspace_id))


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def month_tokens(session: Session, workspace_id: int, month: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(ModelUsage.prompt_tokens + ModelUsage.completion_tokens), 0)).where(
            ModelUsage.workspace_id == workspace_id, ModelUsage.month == month
        )
    )
    return int(total or 0)


def conversation_tokens(session: Session, workspace_id: int, conversation_id: int) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(ModelUsage.prompt_tokens + ModelUsage.completion_tokens), 0)).where(
            ModelUsage.workspace_id == workspace_id, ModelUsage.conversation_id == conversation_id
        )
    )
    return int(total or 0)


@dataclass(frozen=True)
class ActiveModel:
    """A workspace's model, ready to call: the endpoint and its budgets."""

    endpoint: Endpoint
    conversation_token_budget: int
    monthly_token_budget: int
    # The same endpoint with the embeddings model; None when no embeddings model is named.
    embeddings: Endpoint | None = None


def active_model(session: Session, workspace_id: int) -> ActiveModel | None:
    """The workspace's model when it is on and complete; None: retrieval alone."""
    row = row_for(session, workspace_id)
    if row is None or not row.enabled or not row.base_url or not row.model:
        return None
    key = str((row.secrets or {}).get("api_key") or "")
    endpoint = Endpoint(row.base_url, row.model, key, row.timeout_seconds, row.max_retries)
    embeddings = (
        Endpoint(row.base_url, row.embedding_model, key, row.timeout_seconds, row.max_retries)
        if row.embedding_model
        else None
    )
    return ActiveModel(endpoint, row.conversation_token_budget, row.monthly_token_budget, embeddings)


def over_budget(session: Session, workspace_id: int, model: ActiveModel, conversation_id: int | None) -> bool:
    """Whether a budget is already spent, a quick look before any work (not a guarantee: only
    `reserve` is atomic)."""
    if month_tokens(session, workspace_id, month_of(utcnow())) >= model.monthly_token_budget:
        return True
    return (
        conversation_id is not None
        and conversation_tokens(session, workspace_id, conversation_id) >= model.conversation_token_budget
    )


@dataclass(frozen=True)
class Reservation:
    """Tokens set aside in the month's counter (and the conversation's, when there is one) for a
    call about to be made, recorded as `TokenReservation` `id`; `record_call` settles them with
    what the call spent."""

    workspace_id: int
    month: str
    conversation_id: int | None
    tokens: int
    id: int


def _scopes(month: str, conversation_id: int | None) -> list[tuple[str, int | None]]:
    month_scope: list[tuple[str, int | None]] = [(f"month:{month}", None)]
    return month_scope + ([(f"conversation:{conversation_id}", conversation_id)] if conversation_id else [])


def _counters(session: Session, workspace_id: int, month: str, conversation_id: int | None) -> None:
    """The counters of the scopes, created when missing with what the ledger holds for them (a
    workspace that spent tokens before the counters existed, or a new month or conversation)."""
    scopes = _scopes(month, conversation_id)
    existing = set(
        session.scalars(
            select(TokenCounter.scope).where(
                TokenCounter.workspace_id == workspace_id, TokenCounter.scope.in_([scope for scope, _ in scopes])
            )
        )
    )
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    for scope, conversation in scopes:
        if scope in existing:
            continue
        spent = (
            month_tokens(session, workspace_id, month)
            if conversation is None
            else conversation_tokens(session, workspace_id, conversation)
        )
        session.execute(
            insert(TokenCounter)
            .values(workspace_id=workspace_id, scope=scope, conversation_id=conversation, tokens=spent)
            .on_conflict_do_nothing(index_elements=["workspace_id", "scope"])
        )


def _add(session: Session, workspace_id: int, month: str, conversation_id: int | None, tokens: int) -> None:
    for scope, _conversation in _scopes(month, conversation_id):
        session.execute(
            update(TokenCounter)
            .where(TokenCounter.workspace_id == workspace_id, TokenCounter.scope == scope)
            .values(tokens=TokenCounter.tokens + tokens)
        )


class _OverBudget(Exception):
    pass


def reserve(
    session: Session, workspace_id: int, model: ActiveModel, conversation_id: int | None, tokens: int
) -> Reservation | None:
    """Sets `tokens` aside for a call, in a short write transaction of its own (committed before the
    call, so every process sees it); None when the month's or the conversation's budget cannot
    take them. One conditional UPDATE per counter: concurrent reservations wait for each other on
    the row (PostgreSQL) or the write lock (SQLite) and each sees the others' tokens. The same
    transaction records the reservation (`TokenReservation`), so a process that dies before settling
    it leaves a row for `release_stale_reservations`. `session` is the caller's (a read
    transaction: on SQLite a write one would hold the lock this needs)."""
    tokens = max(tokens, 1)
    now = utcnow()
    month = month_of(now)
    budgets = [model.monthly_token_budget, model.conversation_token_budget]
    try:
        with database_of(session).transaction() as writing:
            _counters(writing, workspace_id, month, conversation_id)
            for (scope, _conversation), budget in zip(_scopes(month, conversation_id), budgets, strict=False):
                reserved = writing.execute(
                    update(TokenCounter)
                    .where(
                        TokenCounter.workspace_id == workspace_id,
                        TokenCounter.scope == scope,
                        TokenCounter.tokens + tokens <= budget,
                    )
                    .values(tokens=TokenCounter.tokens + tokens)
                )
                if reserved.rowcount != 1:  # type: ignore[attr-defined]
                    raise _OverBudget
            row = TokenReservation(
                workspace_id=workspace_id, month=month, conversation_id=conversation_id, tokens=tokens, created_at=now
            )
            writing.add(row)
            writing.flush()
            reservation_id = row.id
    except _OverBudget:
        return None
    return Reservation(workspace_id, month, conversation_id, tokens, reservation_id)


def _claim(session: Session, reservation_id: int) -> bool:
    """Deletes the reservation's row: True when this transaction found it, and so owes its tokens
    back; False when its call or the sweep already gave them back. Concurrent claims of one row wait
    for each other (its row lock on PostgreSQL, the write lock on SQLite), and only one finds it."""
    deleted = session.execute(
        delete(TokenReservation)
        .where(TokenReservation.id == reservation_id)
        .execution_options(synchronize_session=False)
    )
    return bool(deleted.rowcount == 1)  # type: ignore[attr-defined]


def release_stale_reservations(database: Database, older_than: timedelta = RESERVATION_TIMEOUT) -> int:
    """Gives back the tokens of reservations made more than `older_than` ago and never settled (their
    process died mid-call); how many. Each in a short transaction of its own, claimed first and then
    the counters (as `record_usage` does), so a late settle of the same call neither waits for a
    long sweep nor gives the tokens back a second time."""
    cutoff = utcnow() - older_than
    with database.transaction(write=False) as session:
        stale = list(
            session.execute(
                select(
                    TokenReservation.id,
                    TokenReservation.workspace_id,
                    TokenReservation.month,
                    TokenReservation.conversation_id,
                    TokenReservation.tokens,
                )
                .where(TokenReservation.created_at < cutoff)
                .order_by(TokenReservation.id)
                .limit(RELEASE_BATCH)
            )
        )
    released = 0
    for reservation_id, workspace_id, month, conversation_id, tokens in stale:
        with database.transaction() as session:
            if _claim(session, reservation_id):
                _add(session, workspace_id, month, conversation_id, -tokens)
                released += 1
    return released


def record_usage(
    session: Session,
    workspace_id: int,
    conversation_id: int | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    reservations: Sequence[Reservation] = (),
) -> None:
    """What calls spent: a row of the ledger, and the counters given back the calls' reservations
    (those the sweep has not released already) and charged what was spent instead."""
    # Every row claimed before any counter is touched, in id order, as the sweep does: a transaction
    # holding a counter never waits for a reservation's row.
    owed = [r for r in sorted(reservations, key=lambda r: r.id) if _claim(session, r.id)]
    for reservation in owed:
        _add(session, workspace_id, reservation.month, reservation.conversation_id, -reservation.tokens)
    spent = prompt_tokens + completion_tokens
    if not spent:
        session.flush()
        return
    now = utcnow()
    _counters(session, workspace_id, month_of(now), conversation_id)  # before the ledger row it would count
    _add(session, workspace_id, month_of(now), conversation_id, spent)
    session.add(
        ModelUsage(
            workspace_id=workspace_id,
            conversation_id=conversation_id,
            month=month_of(now),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            created_at=now,
        )
    )
    session.flush()


def record_call(
    session: Session,
    workspace_id: int,
    conversation_id: int | None,
    *,
    prompt_tokens: int,
    completion_tokens: int,
    error: str | None,
    reservations: Sequence[Reservation] = (),
) -> None:
    """What one call spent (`record_usage`) and how it went: an error is kept for the settings page
    until a call succeeds."""
    record_usage(
        session,
        workspace_id,
        conversation_id,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        reservations=reservations,
    )
    now = utcnow()
    row = row_for(session, workspace_id)
    if row is not None:
        if error is None:
            # Written at most once a minute while calls succeed: every bot turn writing the one row
            # would make concurrent turns of the workspace wait for each other's commit.
            if row.last_error or row.last_success_at is None or row.last_success_at < now - SUCCESS_WRITE_EVERY:
                row.last_error = ""
                row.last_success_at = now
        else:
            row.last_error = error[:1000]
            row.last_error_at = now
    session.flush()


def get_status(session: Session, actor: Actor) -> ModelStatus:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    row = row_for(session, actor.workspace_id)
    return ModelStatus(
        values_of(row),
        bool(row is not None and (row.secrets or {}).get("api_key")),
        row.last_error if row is not None else "",
        row.last_error_at if row is not None else None,
        row.last_success_at if row is not None else None,
        month_tokens(session, actor.workspace_id, month_of(utcnow())),
    )


def do_save(
    session: Session, actor: Actor, raw: Mapping[str, Any], *, api_key: str = "", clear_api_key: bool = False
) -> ModelValues:
    """Saves the fields given; `api_key` replaces the stored key when not empty."""
    actor.require(Permission.MANAGE_KNOWLEDGE)
    row = row_for(session, actor.workspace_id)
    values = check_values(raw, values_of(row))
    key = check_api_key(api_key)
    if row is None:
        row = ModelSettings(workspace_id=actor.workspace_id, secrets={})
        session.add(row)
    changed_endpoint = (
        (row.base_url, row.model, row.embedding_model) != (values.base_url, values.model, values.embedding_model)
        or bool(key)
        or clear_api_key
    )
    row.enabled = values.enabled
    row.base_url = values.base_url
    row.model = values.model
    row.embedding_model = values.embedding_model
    row.timeout_seconds = values.timeout_seconds
    row.max_retries = values.max_retries
    row.conversation_token_budget = values.conversation_token_budget
    row.monthly_token_budget = values.monthly_token_budget
    if key:
        row.secrets = {**(row.secrets or {}), "api_key": key}
    elif clear_api_key:
        row.secrets = {k: v for k, v in (row.secrets or {}).items() if k != "api_key"}
    if changed_endpoint:
        row.last_error = ""  # an error of the previous endpoint says nothing about this one
    session.flush()
    return values


TEST_MESSAGES = [
    {"role": "system", "content": "You check that a connection works."},
    {"role": "user", "content": "Answer with the single word OK."},
]


# The most "Test connection" can spend: its chat (`max_tokens` of 5) and, when an embeddings model is
# named, one embedding of "OK".
TEST_MAX_TOKENS = 5
TEST_EMBEDDING = "OK"


@dataclass(frozen=True)
class ConnectionTest:
    """What "Test connection" found: whether it worked, the endpoint's error otherwise, and what it
    spent against its reservation (settled by `record_connection_test`). `refused`: the month's
    budget could not take the test, so nothing was sent."""

    worked: bool
    error: str = ""
    refused: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reservation: Reservation | None = None


def connection_test_bound(embeddings: bool) -> int:
    bound = chat_token_bound((m["content"] for m in TEST_MESSAGES), TEST_MAX_TOKENS)
    return bound + (prompt_token_bound([TEST_EMBEDDING]) if embeddings else 0)


def try_connection(session: Session, actor: Actor) -> ConnectionTest:
    """One small completion with the saved settings (no retries), and one embedding when an
    embeddings model is named, for "Test connection": whether it worked and the error otherwise.
    Its bound is reserved in the month's budget first (`reserve`, as every call to the model; no
    conversation's), so it is refused, unsent, when the month's budget is spent. The caller records
    the outcome (`record_connection_test`) in a transaction of its own, so no write lock is held
    while the endpoint answers."""
    actor.require(Permission.MANAGE_KNOWLEDGE)
    row = row_for(session, actor.workspace_id)
    if row is None or not row.base_url or not row.model:
        raise ValidationFailed.field("base_url", "Save the endpoint's base URL and model first.")
    endpoint = Endpoint(row.base_url, row.model, str((row.secrets or {}).get("api_key") or ""), row.timeout_seconds, 0)
    # The test runs whether or not the model is on; only the month's budget applies to it.
    budgets = ActiveModel(endpoint, row.conversation_token_budget, row.monthly_token_budget)
    bound = connection_test_bound(bool(row.embedding_model))
    reservation = reserve(session, actor.workspace_id, budgets, None, bound)
    if reservation is None:
        return ConnectionTest(False, refused=True)
    try:
        completion = chat(endpoint, TEST_MESSAGES, max_tokens=TEST_MAX_TOKENS)
    except ModelError as exc:
        return ConnectionTest(False, exc.message, False, exc.tokens, exc.completion_tokens, reservation)
    prompt, written = completion.prompt_tokens, completion.completion_tokens
    if not completion.content.strip():
        return ConnectionTest(
            False, "The endpoint answered with an empty message.", False, prompt, written, reservation
        )
    if row.embedding_model:
        try:
            embedded = embed(replace(endpoint, model=row.embedding_model), [TEST_EMBEDDING])
        except ModelError as exc:
            return ConnectionTest(False, f"Embeddings: {exc.message}", False, prompt + exc.tokens, written, reservation)
        prompt += embedded.tokens
    return ConnectionTest(True, "", False, prompt, written, reservation)


def record_connection_test(session: Session, workspace_id: int, test: ConnectionTest) -> None:
    """Settles the test's reservation with what it spent (the month's ledger and counter) and keeps
    its error or success for the settings page; nothing for a refused test, which reserved nothing."""
    if test.reservation is None:
        return
    record_call(
        session,
        workspace_id,
        None,
        prompt_tokens=test.prompt_tokens,
        completion_tokens=test.completion_tokens,
        error=None if test.worked else test.error,
        reservations=(test.reservation,),
    )
