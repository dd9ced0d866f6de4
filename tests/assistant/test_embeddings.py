"""Embeddings, the optional extra of the assistant's language model, against the fake
OpenAI-compatible endpoint (a real local HTTP server whose embeddings are bag-of-words vectors, with
words a test declares alike), on both databases: a question that shares no word with an entry but
means the same finds it; a question about something else still hands off; the endpoint failing or
timing out leaves the lexical answer (never silence, never a 500) and shows on the settings page;
the budget stops the calls; with no embeddings model nothing changes and /embeddings is never called.
The client itself: batches of EMBED_BATCH texts, vectors in input order, a token budget."""

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.assistant import llm, model_settings, retrieval, semantic
from tertulia.assistant.service import check_entry_values, do_create_entry
from tertulia.kit.db import Database
from tests.assistant.fake_openai import FakeOpenAI, Reply, embedding, embedding_tokens, error, fake_openai
from tests.assistant.test_model import ask, configure, knowledge, last_error, month_tokens
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

# "When are you open?" in words no entry has; the fake embeds the hours words alike.
PARAPHRASE = "¿Cuándo atienden?"
HOURS_WORDS = {"cuando": "horario", "atienden": "horario", "hora": "horario", "abren": "horario", "horario": "horario"}
UNRELATED = "¿Venden bicicletas eléctricas?"
LEXICAL = "hola, ¿a qué hora abren el sábado?"


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setattr(llm, "RETRY_BASE_SECONDS", 0.01)
    with fake_openai() as running:
        running.meanings = dict(HOURS_WORDS)
        yield running


def with_embeddings(db: Database, tenant: Tenant, endpoint: FakeOpenAI, **values: Any) -> None:
    configure(db, tenant, endpoint, embedding_model="fake-embedding", **values)


def lexical_and_fused(db: Database, tenant: Tenant, question: str) -> tuple[retrieval.Answer, retrieval.Answer, str]:
    with db.transaction(write=False) as session:
        model = model_settings.active_model(session, tenant.workspace_id)
        looked = semantic.lookup(session, tenant.workspace_id, model, question)
        lexical = retrieval.answer(session, tenant.workspace_id, question, "es")
        fused = retrieval.answer(session, tenant.workspace_id, question, "es", None, looked.semantic)
    return lexical, fused, looked.status


def test_a_question_close_only_in_meaning_finds_its_entry(db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint)
    lexical, fused, status = lexical_and_fused(db, tenant, PARAPHRASE)
    assert status == semantic.READY
    assert lexical.handoff is True  # no word in common: retrieval alone hands off
    assert fused.handoff is False
    assert fused.entry_id == ids["hours"]
    assert fused.confidence >= retrieval.DEFAULT_THRESHOLD
    # Something the knowledge does not cover still hands off.
    _lexical, unrelated, _status = lexical_and_fused(db, tenant, UNRELATED)
    assert unrelated.handoff is True
    # The entries' phrasings once (one request: fewer than a batch), then each question's.
    first, *questions = endpoint.embedding_requests
    assert first.path == "/v1/embeddings"
    assert first.body["model"] == "fake-embedding"
    assert len(first.body["input"]) == 4  # two entries, a question and a phrasing each
    assert [r.body["input"] for r in questions] == [[PARAPHRASE], [UNRELATED]]


def test_the_answer_endpoint_uses_embeddings_and_counts_their_tokens(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint)
    endpoint.answer_with("Abrimos de lunes a sábado de 9 a 19 h.", [ids["hours"]])
    answer = ask(client, tenant, PARAPHRASE)
    assert answer["embeddings"] == "ready"
    assert answer["entry_id"] == ids["hours"]
    assert answer["handoff"] is False
    # The model was given the entry the embedding found.
    [chat] = [r for r in endpoint.requests if r.path.endswith("/chat/completions")]
    assert f"[entry {ids['hours']}]" in chat.body["messages"][1]["content"]
    spent = sum(embedding_tokens(r.body["input"]) for r in endpoint.embedding_requests)
    assert spent > 0
    assert month_tokens(db, tenant) == 120 + 30 + spent
    assert last_error(db, tenant) == ""
    # The vectors are kept: the next question embeds the question only.
    ask(client, tenant, PARAPHRASE)
    assert len(endpoint.embedding_requests) == 3


def test_without_an_embeddings_model_nothing_changes(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint)
    endpoint.answer_with("Abrimos de lunes a sábado de 9 a 19 h.", [ids["hours"]])
    for question in (PARAPHRASE, LEXICAL, UNRELATED):
        answer = ask(client, tenant, question)
        assert answer["embeddings"] == "off"
        alone = client.post(
            "/api/v1/assistant/answer",
            headers=tenant.headers,
            json={"question": question, "language": "es", "use_model": False},
        ).json()
        if answer["source"] == "retrieval":
            assert (answer["entry_id"], answer["confidence"], answer["handoff"]) == (
                alone["entry_id"],
                alone["confidence"],
                alone["handoff"],
            )
    paraphrase = ask(client, tenant, PARAPHRASE)
    assert paraphrase["handoff"] is True
    assert endpoint.embedding_requests == []


def test_a_failing_endpoint_leaves_the_lexical_answer(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint)  # two retries: three attempts
    endpoint.embedding_script = [Reply(503, error("The server is overloaded.", "server_error"))] * 3
    endpoint.answer_with("Abrimos de lunes a sábado de 9 a 19 h.", [ids["hours"]])
    answer = ask(client, tenant, LEXICAL)
    assert answer["embeddings"] == "error"
    assert answer["entry_id"] == ids["hours"]
    assert answer["answer"]
    assert answer["handoff"] is False
    assert "HTTP 503" in last_error(db, tenant)
    assert len(endpoint.embedding_requests) == 3
    # A failed computation is not tried again on every question.
    paraphrase = ask(client, tenant, PARAPHRASE)
    assert paraphrase["handoff"] is True
    assert paraphrase["embeddings"] == "error"
    assert len(endpoint.embedding_requests) == 3
    # Nor is an endpoint that answers something else than embeddings used.
    endpoint.embedding_script = [Reply(200, {"data": "nonsense"})]
    with db.transaction() as session:  # a knowledge change: the vectors are computed again
        do_create_entry(
            session,
            tenant.actor(),
            check_entry_values(
                session,
                tenant.workspace_id,
                {"question": "¿Hacen envíos?", "answer": "Sí, a todo el país.", "language": "es"},
            ),
        )
    answer = ask(client, tenant, LEXICAL)
    assert answer["embeddings"] == "error"
    assert answer["entry_id"] == ids["hours"]
    assert "not with embeddings" in last_error(db, tenant)


def test_a_slow_endpoint_never_holds_an_answer_past_the_timeout(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, timeout_seconds=1.0, max_retries=0)
    endpoint.answer_with("Abrimos de lunes a sábado de 9 a 19 h.", [ids["hours"]])
    endpoint.embedding_script = [Reply(delay=30.0)]  # the entries' vectors
    started = time.monotonic()
    answer = ask(client, tenant, LEXICAL)
    assert time.monotonic() - started < 8.0  # the wait (1 s) and the chat, far from the 30 s
    # Still computing, or (on a busy machine) its own 1 s timeout came first.
    assert answer["embeddings"] in ("building", "error")
    assert answer["entry_id"] == ids["hours"]
    assert answer["handoff"] is False
    assert semantic.wait_for_vectors(tenant.workspace_id, 5.0)
    answer = ask(client, tenant, LEXICAL)
    assert answer["embeddings"] == "error"
    assert answer["entry_id"] == ids["hours"]
    assert "timeout" in last_error(db, tenant)


def test_a_slow_question_embedding_falls_back_in_time(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, timeout_seconds=1.0)
    endpoint.answer_with("Abrimos de lunes a sábado de 9 a 19 h.", [ids["hours"]])
    # The first questions build the entries' embeddings (each waits for the build until its own
    # deadline, then answers lexically while it goes on): on a loaded machine it may take more than one.
    deadline = time.monotonic() + 60
    while ask(client, tenant, LEXICAL)["embeddings"] != "ready":
        assert time.monotonic() < deadline, "the entries' embeddings were never built"
    endpoint.embedding_script = [Reply(delay=30.0)]  # the question's, not retried
    started = time.monotonic()
    answer = ask(client, tenant, LEXICAL)
    assert time.monotonic() - started < 8.0
    assert answer["embeddings"] == "error"
    assert answer["entry_id"] == ids["hours"]
    assert "timeout" in last_error(db, tenant)
    assert len(endpoint.embedding_requests) == 3


def test_a_spent_budget_stops_embeddings(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, monthly_token_budget=100)
    with db.transaction() as session:
        model_settings.record_call(
            session, tenant.workspace_id, None, prompt_tokens=100, completion_tokens=0, error=None
        )
    answer = ask(client, tenant, LEXICAL)
    assert answer["embeddings"] == "budget"
    assert answer["model_status"] == "budget"
    assert answer["entry_id"] == ids["hours"]
    assert answer["handoff"] is False
    assert endpoint.requests == []


def test_the_client_batches_and_stops_at_the_budget(endpoint: FakeOpenAI) -> None:
    texts = [f"pregunta numero {i}" for i in range(130)]
    target = llm.Endpoint(endpoint.base_url, "fake-embedding", "", 2.0, 0)
    result = llm.embed(target, texts)
    assert [len(r.body["input"]) for r in endpoint.embedding_requests] == [64, 64, 2]
    assert len(result.vectors) == 130
    assert result.vectors[7] == embedding(texts[7])
    assert result.tokens == embedding_tokens(texts)
    with pytest.raises(llm.ModelError) as failed:
        llm.embed(target, texts, token_budget=10)
    assert failed.value.tokens == embedding_tokens(texts[:64])  # one batch spent, then stopped
    assert len(endpoint.embedding_requests) == 4


def test_the_settings_page_saves_the_embeddings_model(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/assistant-model")
    assert page.status_code == 200
    assert 'name="embedding_model"' in page.text
    form = {
        "enabled": "1",
        "base_url": endpoint.base_url,
        "model": "fake-model",
        "embedding_model": "fake-embedding",
        "timeout_seconds": "5",
        "max_retries": "1",
        "conversation_token_budget": "1000",
        "monthly_token_budget": "100000",
        "csrf_token": token,
    }
    saved = client.post("/settings/assistant-model", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    with db.transaction(write=False) as session:
        model = model_settings.active_model(session, tenant.workspace_id)
        assert model is not None
        assert model.embeddings is not None
        assert model.embeddings.model == "fake-embedding"
    too_long = client.post("/settings/assistant-model", data={**form, "embedding_model": "x" * 201})
    assert too_long.status_code == 422
    assert "200 characters at most" in too_long.text
