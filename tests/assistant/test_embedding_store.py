"""The knowledge's embeddings kept in the database, on both databases, against the fake
OpenAI-compatible endpoint: a restarted process (a new Database, nothing in memory) loads them and
sends the endpoint no phrasing; editing an entry embeds only its changed phrasing; another
embeddings model embeds everything again. And the inbox's suggested replies and the Knowledge
page's "Try a question" rank with the question's embedding, as the bot's answer does."""

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.assistant import model_settings, semantic
from tertulia.assistant.models import EntryEmbedding, KnowledgeEntry
from tertulia.assistant.service import check_entry_values, do_update_entry
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive
from tertulia.kit.db import Database
from tests.assistant.fake_openai import FakeOpenAI, embedding
from tests.assistant.test_embeddings import PARAPHRASE, endpoint, with_embeddings
from tests.assistant.test_model import CARDS, HOURS, configure, knowledge
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider
from tests.web.helpers import sign_in_as

__all__ = ["endpoint"]

pytestmark = pytest.mark.usefixtures("no_background_work")

# The endpoint's timeout, which is also how long a question waits for the entries' vectors: the
# question must find them ready even on a loaded machine.
SLOW_MACHINE = 20.0


@pytest.fixture
def provider(fakehttp_adapter: FakeHttpAdapter) -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


def lookup(database: Database, tenant: Tenant, question: str) -> semantic.Lookup:
    with database.transaction(write=False) as session:
        model = model_settings.active_model(session, tenant.workspace_id)
        return semantic.lookup(session, tenant.workspace_id, model, question)


def phrasings_sent(endpoint: FakeOpenAI, since: int = 0) -> list[str]:
    """The entries' phrasings sent to /embeddings after the first `since` requests (each question
    is a request of its own text alone)."""
    return [
        text
        for request in endpoint.embedding_requests[since:]
        if request.body["input"] != [PARAPHRASE]
        for text in request.body["input"]
    ]


def stored(db: Database, tenant: Tenant) -> list[EntryEmbedding]:
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(EntryEmbedding).where(EntryEmbedding.workspace_id == tenant.workspace_id)))
        session.expunge_all()
        return rows


def restarted(db: Database) -> Database:
    """Another process on the same database: a Database of its own, no vectors in memory."""
    semantic.forget_vectors()
    return Database(db.url)


def test_a_restarted_process_loads_the_vectors_instead_of_embedding_again(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, timeout_seconds=SLOW_MACHINE)
    assert lookup(db, tenant, PARAPHRASE).status == semantic.READY
    assert sorted(phrasings_sent(endpoint)) == sorted([HOURS["question"], *HOURS["alternatives"], *cards_phrasings()])
    rows = stored(db, tenant)
    assert len(rows) == 4
    # Compact little-endian float32, the endpoint's vector as it came.
    hours_question = next(r for r in rows if r.entry_id == ids["hours"] and r.text_hash == hash_of(HOURS["question"]))
    assert len(hours_question.vector) == 4 * len(embedding(HOURS["question"]))
    assert np.frombuffer(hours_question.vector, dtype="<f4").tolist() == embedding(HOURS["question"], endpoint.meanings)
    requests = len(endpoint.embedding_requests)
    other = restarted(db)
    try:
        looked = lookup(other, tenant, PARAPHRASE)
        assert looked.status == semantic.READY
        # The question's own embedding, and no phrasing.
        assert [r.body["input"] for r in endpoint.embedding_requests[requests:]] == [[PARAPHRASE]]
    finally:
        other.dispose()


def test_an_edited_entry_embeds_only_its_changed_phrasing(db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    ids = knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, timeout_seconds=SLOW_MACHINE)
    assert lookup(db, tenant, PARAPHRASE).status == semantic.READY
    requests = len(endpoint.embedding_requests)
    with db.transaction() as session:
        entry = session.get(KnowledgeEntry, ids["hours"])
        assert entry is not None
        raw = {**HOURS, "alternatives": ["¿Cuándo abren?"]}  # "Horario de la tienda" replaced
        do_update_entry(session, tenant.actor(), entry, check_entry_values(session, tenant.workspace_id, raw))
    other = restarted(db)
    try:
        assert lookup(other, tenant, PARAPHRASE).status == semantic.READY
    finally:
        other.dispose()
    assert phrasings_sent(endpoint, requests) == ["¿Cuándo abren?"]
    # The replaced phrasing's vector is gone; the others are still there, once.
    hashes = sorted(r.text_hash for r in stored(db, tenant) if r.entry_id == ids["hours"])
    assert hashes == sorted([hash_of(HOURS["question"]), hash_of("¿Cuándo abren?")])
    assert len(stored(db, tenant)) == 4


def test_another_embeddings_model_embeds_everything_again(db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    knowledge(db, tenant)
    with_embeddings(db, tenant, endpoint, timeout_seconds=SLOW_MACHINE)
    assert lookup(db, tenant, PARAPHRASE).status == semantic.READY
    requests = len(endpoint.embedding_requests)
    configure(db, tenant, endpoint, embedding_model="other-embedding", timeout_seconds=SLOW_MACHINE)
    assert lookup(db, tenant, PARAPHRASE).status == semantic.READY
    assert len(phrasings_sent(endpoint, requests)) == 4
    assert all(r.body["model"] == "other-embedding" for r in endpoint.embedding_requests[requests:])
    # The first model's vectors make way for the second's.
    assert {r.model for r in stored(db, tenant)} == {"other-embedding"}
    assert len(stored(db, tenant)) == 4


def test_suggested_replies_and_try_a_question_use_the_embeddings(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI, provider: FakeProvider
) -> None:
    ids = knowledge(db, tenant)
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "fakehttp", "Tienda", {"url": provider.url})
        received = do_receive(
            session,
            session.get(Channel, channel.id) or channel,
            InboundMessage(sender_id="visitor-1", provider_message_id="m-1", text=PARAPHRASE),
        )
        assert received.conversation is not None
        conversation_id = received.conversation.id
    url = f"/api/v1/assistant/conversations/{conversation_id}/suggestions"
    # Lexical alone: the paraphrase shares no word with any entry.
    assert client.get(url, headers=tenant.headers).json()["items"] == []
    with_embeddings(db, tenant, endpoint, timeout_seconds=SLOW_MACHINE)
    suggested = client.get(url, headers=tenant.headers)
    assert suggested.status_code == 200, suggested.text
    items = suggested.json()["items"]
    assert items[0]["entry_id"] == ids["hours"]
    assert [r.body["input"] for r in endpoint.embedding_requests][-1] == [PARAPHRASE]
    # The question's tokens count against the conversation.
    with db.transaction(write=False) as session:
        assert model_settings.conversation_tokens(session, tenant.workspace_id, conversation_id) > 0
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    tried = client.get("/settings/knowledge", params={"ask": PARAPHRASE, "ask_language": "es"})
    assert tried.status_code == 200
    assert HOURS["answer"] in tried.text
    assert endpoint.chat_calls == 0  # ranking only: the model writes nothing here


def hash_of(text: str) -> str:
    return semantic.text_hash(text)


def cards_phrasings() -> list[str]:
    return [CARDS["question"], *CARDS["alternatives"]]
