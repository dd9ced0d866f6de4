"""Concurrent answers cannot together pass the language model's budget, on both databases: each
call reserves the most it can spend with a conditional UPDATE before it is made, so with a month's
(or a conversation's) budget of K calls, 3K answers asked at once make at most K calls to the
(fake) endpoint, and the tokens recorded stay within the budget."""

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tertulia.assistant import grounded, llm, model_settings
from tertulia.assistant.models import KnowledgeEntry
from tertulia.channels.protocol import InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.conversations.inbound import do_receive
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.assistant.fake_openai import FakeOpenAI, Reply, completion
from tests.assistant.test_model import HOURS, configure, endpoint, knowledge
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider, fake_provider

__all__ = ["endpoint"]

pytestmark = pytest.mark.usefixtures("no_background_work")

CALLS = 3  # what the budget allows
QUESTION = "hola, ¿a qué hora abren el sábado?"


@pytest.fixture
def provider(fakehttp_adapter: FakeHttpAdapter) -> Iterator[FakeProvider]:
    with fake_provider() as running:
        yield running


def a_conversation(db: Database, tenant: Tenant, provider: FakeProvider) -> int:
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "fakehttp", "Tienda", {"url": provider.url})
        received = do_receive(session, channel, InboundMessage(sender_id="v-1", provider_message_id="m-1", text="hola"))
        assert received.conversation is not None
        return received.conversation.id


@pytest.mark.parametrize("scope", ["month", "conversation"])
def test_concurrent_answers_make_at_most_the_calls_the_budget_allows(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI, provider: FakeProvider, scope: str
) -> None:
    ids = knowledge(db, tenant)
    conversation_id = a_conversation(db, tenant, provider) if scope == "conversation" else None
    with db.transaction(write=False) as session:
        hours = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.id == ids["hours"])).one()
        messages = grounded.build_messages(QUESTION, [hours])
    # Each call is charged exactly what it reserves, so the budget holds CALLS of them.
    estimate = llm.chat_token_bound((m["content"] for m in messages), grounded.MAX_COMPLETION_TOKENS)
    budget = CALLS * estimate
    if conversation_id is None:
        configure(db, tenant, endpoint, monthly_token_budget=budget)
    else:
        configure(db, tenant, endpoint, conversation_token_budget=budget)
    reply = completion(
        f'{{"answer": "{HOURS["answer"]}", "entry_ids": [{ids["hours"]}]}}',
        prompt_tokens=estimate - grounded.MAX_COMPLETION_TOKENS,
        completion_tokens=grounded.MAX_COMPLETION_TOKENS,
    )
    # Slow enough that the calls overlap.
    endpoint.script = [Reply(body=reply, delay=0.3) for _ in range(3 * CALLS)]
    start = threading.Barrier(3 * CALLS)
    sources: list[str] = []
    failures: list[BaseException] = []

    def ask() -> None:
        try:
            start.wait(timeout=30)
            with db.transaction(write=False) as session:
                outcome = grounded.compose(
                    session, tenant.workspace_id, QUESTION, "es", conversation_id=conversation_id
                )
            with db.transaction() as session:
                grounded.record(session, tenant.workspace_id, outcome, conversation_id)
            sources.append(outcome.model_status)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3 * CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(sources) == 3 * CALLS
    assert 1 <= endpoint.chat_calls <= CALLS
    assert sources.count("grounded") == endpoint.chat_calls
    assert sources.count("budget") == 3 * CALLS - endpoint.chat_calls
    # Every call asked for what was computed above, so each reserved `estimate`.
    assert all(r.body["messages"] == messages for r in endpoint.requests)
    with db.transaction(write=False) as session:
        spent = (
            model_settings.month_tokens(session, tenant.workspace_id, model_settings.month_of(utcnow()))
            if conversation_id is None
            else model_settings.conversation_tokens(session, tenant.workspace_id, conversation_id)
        )
    assert spent == endpoint.chat_calls * estimate <= budget
