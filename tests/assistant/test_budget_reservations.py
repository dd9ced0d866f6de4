"""The language model's budget reservations, on both databases: a call reserves the most it can
spend (the prompt's UTF-8 bytes, its framing, and the `max_tokens` it sends), settles to the
`usage` the endpoint reports, and keeps the reservation as spent when the endpoint may have answered
without reporting any; a reservation whose process died before settling is given back by the sweep
once it is older than any call can last, and only once, however the sweep and a late settle meet."""

import threading
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tertulia.assistant import grounded, llm, model_settings
from tertulia.assistant.models import KnowledgeEntry, TokenCounter, TokenReservation
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tests.assistant.fake_openai import FakeOpenAI, Reply, completion, error
from tests.assistant.test_budget_race import a_conversation
from tests.assistant.test_model import configure, endpoint, knowledge, month_tokens
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider

__all__ = ["endpoint"]

pytestmark = pytest.mark.usefixtures("no_background_work")

QUESTION = "hola, ¿a qué hora abren el sábado?"
PAST_THE_LIMIT = model_settings.RESERVATION_TIMEOUT + timedelta(minutes=1)


# Texts whose forms differ in length: composed and combining accents, Hangul syllables and jamo,
# compatibility ligatures and full-width forms, a composition exclusion, emoji with a joiner.
TRICKY = [
    "",
    "hola",
    "¿A qué hora abren el sábado?",
    "e\u0301 n\u0303",
    "한국어 \u1100\u1161",
    "\ufdfa \ufb03 \uff21\uff22 \u2460",
    "\u0958 \u2adc \U0001d160",
    "👩\u200d💻 日本語",
]


@pytest.mark.parametrize("text", TRICKY)
def test_the_bound_covers_the_bytes_of_the_text_and_of_every_normal_form(text: str) -> None:
    bound = llm.text_token_bound(text)
    assert bound >= len(text.encode())
    for form in llm.NORMAL_FORMS:
        assert bound >= len(unicodedata.normalize(form, text).encode())


def test_the_bound_is_bytes_not_characters() -> None:
    assert llm.text_token_bound("hola") == 4
    assert llm.text_token_bound("¿qué?") == 8  # ¿ is two bytes, é three once NFD takes its accent apart
    assert llm.text_token_bound("日本") == 6
    # ARABIC LIGATURE SALLALLAHOU: 3 bytes, 33 once NFKC has spelt it out.
    assert llm.text_token_bound("\ufdfa") == len(unicodedata.normalize("NFKC", "\ufdfa").encode()) == 33
    messages = grounded.build_messages("When do you open on Saturday?", [])  # ASCII: one form
    assert llm.chat_token_bound((m["content"] for m in messages), 600) == (
        sum(len(m["content"].encode()) + llm.FRAMING_TOKENS for m in messages) + llm.FRAMING_TOKENS + 600
    )


def test_no_answer_reserves_less_than_the_minimum_the_settings_page_warns_about() -> None:
    # The shortest prompt a call is made with: one entry of one character each, a one-character
    # question.
    shortest = KnowledgeEntry(id=1, language="en", question="?", answer="!")
    messages = grounded.build_messages("?", [shortest])
    bound = llm.chat_token_bound((m["content"] for m in messages), grounded.MAX_COMPLETION_TOKENS)
    assert grounded.MIN_ANSWER_TOKENS < bound < grounded.MIN_ANSWER_TOKENS + 64
    budgets = {"conversation_token_budget": grounded.MIN_ANSWER_TOKENS - 1, "monthly_token_budget": bound}
    assert grounded.budget_warnings(budgets) == [
        grounded.BudgetWarning("conversation_token_budget", "budget_below_one_answer", grounded.MIN_ANSWER_TOKENS)
    ]


@pytest.fixture
def provider(fakehttp_adapter: FakeHttpAdapter) -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


def counter(db: Database, tenant: Tenant, scope: str) -> int:
    with db.transaction(write=False) as session:
        tokens = session.scalar(
            select(TokenCounter.tokens).where(
                TokenCounter.workspace_id == tenant.workspace_id, TokenCounter.scope == scope
            )
        )
        return int(tokens or 0)


def month_scope() -> str:
    return f"month:{model_settings.month_of(utcnow())}"


def open_reservations(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(TokenReservation)) or 0)


def answer(db: Database, tenant: Tenant) -> grounded.Outcome:
    with db.transaction(write=False) as session:
        outcome = grounded.compose(session, tenant.workspace_id, QUESTION, "es")
    with db.transaction() as session:
        grounded.record(session, tenant.workspace_id, outcome)
    return outcome


def the_bound(endpoint: FakeOpenAI) -> int:
    """The bound of the chat the endpoint was asked, from what it received."""
    [request] = [r for r in endpoint.requests if r.path.endswith("/chat/completions")]
    contents = [m["content"] for m in request.body["messages"]]
    return llm.chat_token_bound(contents, request.body["max_tokens"])


@pytest.mark.parametrize(
    ("reply", "charged"),
    [
        # Reported: settled to what was reported.
        (completion("{}", prompt_tokens=321, completion_tokens=9), lambda _bound: 330),
        # Not reported: the reservation is kept as spent.
        ({**completion("{}"), "usage": None}, lambda bound: bound),
    ],
    ids=["usage", "no_usage"],
)
def test_a_call_reserves_its_bound_and_settles_to_the_reported_usage(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI, reply: dict[str, Any], charged: Any
) -> None:
    knowledge(db, tenant)
    configure(db, tenant, endpoint)
    seen: list[int] = []
    endpoint.script = [Reply(body=reply)]
    original = endpoint.handle

    def handle(path: str, headers: dict[str, str], body: dict[str, Any]) -> Reply:
        seen.append(counter(db, tenant, month_scope()))  # what was reserved while the model writes
        return original(path, headers, body)

    endpoint.handle = handle  # type: ignore[method-assign]
    outcome = answer(db, tenant)
    assert outcome.called
    bound = the_bound(endpoint)
    [request] = endpoint.requests
    assert request.body["max_tokens"] == grounded.MAX_COMPLETION_TOKENS
    assert seen == [bound]
    assert counter(db, tenant, month_scope()) == month_tokens(db, tenant) == charged(bound)
    assert open_reservations(db) == 0


@pytest.mark.parametrize(
    ("replies", "timeout", "kept"),
    [
        ([Reply(401, error("Incorrect API key provided", code="invalid_api_key"))], 2.0, False),
        ([Reply(delay=5.0)], 1.0, True),  # sent, and no answer: it may have been written and billed
        ([Reply(body={"choices": []})], 2.0, True),  # a 2xx that is not a completion
    ],
    ids=["refused", "timeout", "not_a_completion"],
)
def test_a_failed_call_keeps_its_reservation_only_when_it_may_have_been_spent(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI, replies: list[Reply], timeout: float, kept: bool
) -> None:
    knowledge(db, tenant)
    configure(db, tenant, endpoint, timeout_seconds=timeout, max_retries=0)
    endpoint.script = list(replies)
    outcome = answer(db, tenant)
    assert outcome.model_status in ("error", "invalid_output")
    expected = the_bound(endpoint) if kept else 0
    assert counter(db, tenant, month_scope()) == month_tokens(db, tenant) == expected
    assert open_reservations(db) == 0


def test_a_crashed_reservation_is_given_back_once_by_the_sweep(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI, provider: FakeProvider
) -> None:
    """Reserve, die without settling, restart: the sweep gives the tokens back after the limit (not
    before), a second sweep gives nothing, and the dead call's late settle charges what it spent
    without giving the reservation back again."""
    conversation_id = a_conversation(db, tenant, provider)
    configure(db, tenant, endpoint, monthly_token_budget=1000, conversation_token_budget=1000)
    scopes = (month_scope(), f"conversation:{conversation_id}")
    with db.transaction(write=False) as session:
        model = model_settings.active_model(session, tenant.workspace_id)
        assert model is not None
        dead = model_settings.reserve(session, tenant.workspace_id, model, conversation_id, 1000)
        assert dead is not None
        # The whole budget is held: nothing else fits until the dead call's tokens come back.
        assert model_settings.reserve(session, tenant.workspace_id, model, conversation_id, 1) is None
    # The process dies here. A sweep within the limit leaves the reservation: its call may still run.
    with travel(model_settings.RESERVATION_TIMEOUT - timedelta(minutes=1)):
        assert model_settings.release_stale_reservations(db) == 0
    assert [counter(db, tenant, scope) for scope in scopes] == [1000, 1000]
    with travel(PAST_THE_LIMIT):
        assert model_settings.release_stale_reservations(db) == 1
        assert [counter(db, tenant, scope) for scope in scopes] == [0, 0]
        assert model_settings.release_stale_reservations(db) == 0  # nothing is given back twice
        assert [counter(db, tenant, scope) for scope in scopes] == [0, 0]
        # The late settle charges what was spent and gives nothing back: the sweep did.
        with db.transaction() as session:
            model_settings.record_usage(
                session,
                tenant.workspace_id,
                conversation_id,
                prompt_tokens=70,
                completion_tokens=30,
                reservations=[dead],
            )
        assert [counter(db, tenant, scope) for scope in scopes] == [100, 100]
        with db.transaction(write=False) as session:
            # The budget is whole again but for what was spent.
            again = model_settings.reserve(session, tenant.workspace_id, model, conversation_id, 900)
            assert again is not None
    assert open_reservations(db) == 1


def test_a_sweep_and_a_late_settle_at_once_give_the_tokens_back_once(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    configure(db, tenant, endpoint, monthly_token_budget=100_000)
    rounds = 4
    with db.transaction(write=False) as session:
        model = model_settings.active_model(session, tenant.workspace_id)
        assert model is not None
        held = [model_settings.reserve(session, tenant.workspace_id, model, None, 500) for _ in range(rounds)]
    assert all(held)
    failures: list[BaseException] = []

    def settle(reservation: model_settings.Reservation, start: threading.Barrier) -> None:
        try:
            start.wait(timeout=10)
            with db.transaction() as session:
                model_settings.record_usage(
                    session,
                    tenant.workspace_id,
                    None,
                    prompt_tokens=10,
                    completion_tokens=0,
                    reservations=[reservation],
                )
        except BaseException as exc:
            failures.append(exc)

    def sweep(start: threading.Barrier) -> None:
        try:
            start.wait(timeout=10)
            model_settings.release_stale_reservations(db)
        except BaseException as exc:
            failures.append(exc)

    with travel(PAST_THE_LIMIT):
        for reservation in held:
            assert reservation is not None
            start = threading.Barrier(3)
            threads = [
                threading.Thread(target=settle, args=(reservation, start)),
                threading.Thread(target=sweep, args=(start,)),
                threading.Thread(target=sweep, args=(start,)),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
    assert failures == []
    # Each reservation given back exactly once, whoever came first; each call's 10 tokens charged.
    assert counter(db, tenant, month_scope()) == month_tokens(db, tenant) == 10 * rounds
    assert open_reservations(db) == 0
