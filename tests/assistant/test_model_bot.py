"""The bot with a language model, fed from the event log as in production, against a fake
OpenAI-compatible endpoint: it sends the model's grounded answer (payload `source: "llm"`), hands
off an ungrounded one with a note saying so, answers from retrieval when the endpoint fails (never
silence), and stops calling the model once the conversation's token budget is spent."""

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tertulia.assistant import llm
from tertulia.assistant.model_settings import conversation_tokens
from tertulia.assistant.models import KnowledgeEntry
from tertulia.kit.db import Database
from tests.assistant.fake_openai import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    FakeOpenAI,
    Reply,
    completion,
    embedding_tokens,
    error,
    fake_openai,
)
from tests.assistant.support import ENTRIES, Shop, feed
from tests.assistant.test_model import configure
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider

pytestmark = pytest.mark.usefixtures("no_background_work")


@pytest.fixture(autouse=True)
def _bot_from_now(db: Database) -> None:
    feed(db)


@pytest.fixture
def provider(fakehttp_adapter: FakeHttpAdapter) -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setattr(llm, "RETRY_BASE_SECONDS", 0.01)
    with fake_openai() as running:
        yield running


def _entry_id(shop: Shop, question: str) -> int:
    with shop.db.transaction(write=False) as session:
        found = session.scalar(
            select(KnowledgeEntry.id).where(
                KnowledgeEntry.workspace_id == shop.tenant.workspace_id, KnowledgeEntry.question == question
            )
        )
        assert found is not None
        return found


def test_the_bot_sends_the_models_grounded_answer(
    db: Database, tenant: Tenant, provider: FakeProvider, endpoint: FakeOpenAI
) -> None:
    shop = Shop(db, tenant, provider)
    configure(db, tenant, endpoint)
    hours = _entry_id(shop, ENTRIES[0]["question"])
    endpoint.answer_with("¡Hola! Abrimos de lunes a sábado, de 9 a 19 h.", [hours])
    conversation_id = shop.customer_writes("hola, a que hora abren?")
    [reply] = shop.outgoing(conversation_id)
    assert reply.text == "¡Hola! Abrimos de lunes a sábado, de 9 a 19 h."
    assert reply.payload["bot"]["outcome"] == "answered"
    assert reply.payload["bot"]["source"] == "llm"
    assert reply.payload["bot"]["entry_id"] == hours
    with db.transaction(write=False) as session:
        assert conversation_tokens(session, tenant.workspace_id, conversation_id) == PROMPT_TOKENS + COMPLETION_TOKENS


def test_the_bot_hands_off_an_ungrounded_answer(
    db: Database, tenant: Tenant, provider: FakeProvider, endpoint: FakeOpenAI
) -> None:
    shop = Shop(db, tenant, provider, handoff_message="Te paso con una persona.")
    configure(db, tenant, endpoint)
    endpoint.answer_with("Abrimos las 24 horas, todos los días.", [])
    conversation_id = shop.customer_writes("hola, a que hora abren?")
    [handoff] = shop.outgoing(conversation_id)
    assert handoff.text == "Te paso con una persona."
    assert handoff.payload["bot"]["outcome"] == "handoff"
    assert handoff.payload["bot"]["source"] == "llm"
    assert shop.conversation(conversation_id).bot_paused is True
    [note] = shop.notes(conversation_id)
    assert "not grounded" in note


def test_the_bot_answers_from_retrieval_when_the_endpoint_fails(
    db: Database, tenant: Tenant, provider: FakeProvider, endpoint: FakeOpenAI
) -> None:
    shop = Shop(db, tenant, provider)
    configure(db, tenant, endpoint, max_retries=1)
    endpoint.script = [Reply(500, error("boom", "server_error")), Reply(502, error("bad gateway"))]
    conversation_id = shop.customer_writes("hola, a que hora abren?")
    [reply] = shop.outgoing(conversation_id)
    assert reply.text == "Abrimos de lunes a sábado de 9 a 19 h."
    assert reply.payload["bot"]["source"] == "retrieval"
    assert endpoint.chat_calls == 2


def test_the_conversation_budget_stops_the_model(
    db: Database, tenant: Tenant, provider: FakeProvider, endpoint: FakeOpenAI
) -> None:
    shop = Shop(db, tenant, provider)
    # Room for one call's reservation (its prompt's estimate and the 600 tokens it may write), not
    # for another after the first spent 1,530.
    configure(db, tenant, endpoint, conversation_token_budget=2000)
    hours = _entry_id(shop, ENTRIES[0]["question"])
    endpoint.answer_with("De 9 a 19 h.", [hours])
    endpoint.script = [Reply(body=completion(endpoint.content, prompt_tokens=1500, completion_tokens=30))]
    conversation_id = shop.customer_writes("hola, a que hora abren?")
    shop.customer_writes("¿puedo pagar con tarjeta?")
    first, second = shop.outgoing(conversation_id)
    assert (first.text, first.payload["bot"]["source"]) == ("De 9 a 19 h.", "llm")
    assert (second.text, second.payload["bot"]["source"]) == (ENTRIES[2]["answer"], "retrieval")
    assert endpoint.chat_calls == 1
    # Another conversation has its own budget.
    other = shop.customer_writes("hola, a que hora abren?", sender="visitor-2")
    [reply] = shop.outgoing(other)
    assert reply.payload["bot"]["source"] == "llm"


def test_with_embeddings_the_bot_understands_a_question_in_other_words(
    db: Database, tenant: Tenant, provider: FakeProvider, endpoint: FakeOpenAI
) -> None:
    shop = Shop(db, tenant, provider, handoff_message="Te paso con una persona.")
    configure(db, tenant, endpoint)
    hours = _entry_id(shop, ENTRIES[0]["question"])
    endpoint.answer_with("Abrimos de lunes a sábado, de 9 a 19 h.", [hours])
    question = "¿Cuándo puedo ir al local?"  # no word of any entry
    without = shop.customer_writes(question)
    [handoff] = shop.outgoing(without)
    assert handoff.text == "Te paso con una persona."
    assert endpoint.chat_calls == 0  # nothing found to ground an answer on
    alike = dict.fromkeys(("cuando", "local", "horario", "tienda", "hora", "abren", "atienden"), "horario")
    endpoint.meanings = alike
    configure(db, tenant, endpoint, embedding_model="fake-embedding")
    conversation_id = shop.customer_writes(question, sender="visitor-2")
    [reply] = shop.outgoing(conversation_id)
    assert reply.text == "Abrimos de lunes a sábado, de 9 a 19 h."
    assert reply.payload["bot"]["source"] == "llm"
    # The conversation pays for its question's embedding, not for the knowledge's.
    asked = [r for r in endpoint.embedding_requests if r.body["input"] == [question]]
    assert len(asked) == 1
    with db.transaction(write=False) as session:
        assert conversation_tokens(session, tenant.workspace_id, conversation_id) == (
            PROMPT_TOKENS + COMPLETION_TOKENS + embedding_tokens([question])
        )
