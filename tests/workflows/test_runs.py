"""Runs end to end: triggers from the event log, steps through the services, waits and questions
resumed by the sweep and by the contact writing."""

from collections.abc import Iterator
from datetime import timedelta

import pytest

from tertulia.channels.models import Channel
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, FakeProvider
from tests.workflows.support import advance, channel_on_fake, customer_writes, feed, logs, publish, runs, sent_texts


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[tuple[Channel, FakeProvider]]:
    with channel_on_fake(db, tenant) as found:
        yield found


WELCOME = {
    "trigger": {"type": "conversation_opened", "config": {"sources": ["contact"]}},
    "steps": [
        {
            "id": "hello",
            "type": "send_message",
            "config": {"text": 'Hola {{contact.first_name | "amigo"}}'},
            "next": "ask",
        },
        {
            "id": "ask",
            "type": "ask_question",
            "config": {
                "text": "¿Tu email?",
                "kind": "email",
                "retry_text": "Eso no parece un email",
                "max_attempts": 2,
                "save_to": {"kind": "field", "name": "email"},
            },
            "next": "thanks",
            "on": {"invalid": "bye", "timeout": "bye"},
        },
        {"id": "thanks", "type": "send_message", "config": {"text": "Gracias, {{contact.email}}"}},
        {"id": "bye", "type": "add_tags", "config": {"tags": ["sin email"]}},
    ],
}


def test_welcome_and_question_answered(db: Database, tenant: Tenant, channel: tuple[Channel, FakeProvider]) -> None:
    workflow_id = publish(db, tenant, WELCOME)
    contact_id = customer_writes(db, channel[0], "ana", "hola")
    feed(db)
    assert sent_texts(db, contact_id) == ["Hola amigo", "¿Tu email?"]
    [run] = runs(db, workflow_id)
    assert run.status == "waiting"
    customer_writes(db, channel[0], "ana", "no tengo")
    feed(db)
    assert sent_texts(db, contact_id)[-1] == "Eso no parece un email"
    customer_writes(db, channel[0], "ana", "Ana@Example.com")
    feed(db)
    [run] = runs(db, workflow_id)
    assert sent_texts(db, contact_id)[-1] == "Gracias, ana@example.com", (logs(db, run.id), run.state, run.inbox)
    [run] = runs(db, workflow_id)
    assert run.status == "finished"
    assert [step for step, _ in logs(db, run.id)] == ["hello", "ask", "ask", "ask", "thanks"]


def test_question_times_out_on_the_sweep(db: Database, tenant: Tenant, channel: tuple[Channel, FakeProvider]) -> None:
    workflow_id = publish(db, tenant, WELCOME)
    contact_id = customer_writes(db, channel[0], "bea", "hola")
    feed(db)
    advance(db, utcnow() + timedelta(hours=23))
    assert runs(db, workflow_id)[0].status == "waiting"
    advance(db, utcnow() + timedelta(days=1, minutes=1))
    [run] = runs(db, workflow_id)
    assert run.status == "finished"
    assert ("ask", "timeout") in logs(db, run.id)
    assert len(sent_texts(db, contact_id)) == 2
