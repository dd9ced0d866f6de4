"""Concurrent answers cannot together pass the language model's budget, on both databases: each
call reserves its estimated tokens with a conditional UPDATE before it is made, so with a month's
budget of K calls, 3K answers asked at once make at most K calls to the (fake) endpoint, and the
tokens recorded stay within the budget."""

import threading

from sqlalchemy import select

from tertulia.assistant import grounded, model_settings
from tertulia.assistant.models import KnowledgeEntry
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.assistant.fake_openai import FakeOpenAI, Reply, completion
from tests.assistant.test_model import HOURS, configure, endpoint, knowledge
from tests.conftest import Tenant

__all__ = ["endpoint"]

CALLS = 3  # what the budget allows
QUESTION = "hola, ¿a qué hora abren el sábado?"


def test_concurrent_answers_make_at_most_the_calls_the_budget_allows(
    db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    with db.transaction(write=False) as session:
        hours = session.scalars(select(KnowledgeEntry).where(KnowledgeEntry.id == ids["hours"])).one()
        messages = grounded.build_messages(QUESTION, [hours])
    # Each call is charged exactly what it reserves, so the budget holds CALLS of them.
    estimate = model_settings.estimate_tokens((m["content"] for m in messages), grounded.MAX_COMPLETION_TOKENS)
    budget = CALLS * estimate
    configure(db, tenant, endpoint, monthly_token_budget=budget)
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
                outcome = grounded.compose(session, tenant.workspace_id, QUESTION, "es")
            with db.transaction() as session:
                grounded.record(session, tenant.workspace_id, outcome)
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
        spent = model_settings.month_tokens(session, tenant.workspace_id, model_settings.month_of(utcnow()))
    assert spent == endpoint.chat_calls * estimate <= budget
