"""The assistant's optional language model against a fake OpenAI-compatible endpoint (a real local
HTTP server), on both databases: a grounded answer is used and says so (`source: "llm"`); an answer
that cites nothing, or an entry it was not given, hands off; a timeout, an error or a spent budget
falls back to retrieval's answer; a 5xx is retried, a 401 is not and shows on the settings page;
the API key is sent as a bearer token but never rendered back."""

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from tertulia.assistant import llm
from tertulia.assistant.model_settings import do_save, record_call
from tertulia.assistant.models import ModelSettings, ModelUsage
from tertulia.assistant.service import check_entry_values, do_create_entry
from tertulia.kit.db import Database
from tests.assistant.fake_openai import COMPLETION_TOKENS, PROMPT_TOKENS, FakeOpenAI, Reply, error, fake_openai
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

API_KEY = "sk-test-7f3a9c1e5b"
HOURS = {
    "question": "¿A qué hora abren?",
    "alternatives": ["Horario de la tienda"],
    "answer": "Abrimos de lunes a sábado de 9 a 19 h.",
    "language": "es",
}
CARDS = {
    "question": "¿Aceptan tarjeta de crédito?",
    "alternatives": ["¿Puedo pagar con tarjeta?"],
    "answer": "Aceptamos todas las tarjetas de crédito y débito.",
    "language": "es",
}


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setattr(llm, "RETRY_BASE_SECONDS", 0.01)  # keep the retries' waits short
    with fake_openai() as running:
        yield running


def configure(db: Database, tenant: Tenant, endpoint: FakeOpenAI, **values: Any) -> None:
    with db.transaction() as session:
        raw = {
            "enabled": True,
            "base_url": endpoint.base_url,
            "model": "fake-model",
            "timeout_seconds": 2.0,
            "max_retries": 2,
            **values,
        }
        do_save(session, tenant.actor(), raw, api_key=API_KEY)


def knowledge(db: Database, tenant: Tenant) -> dict[str, int]:
    with db.transaction() as session:
        actor = tenant.actor()
        return {
            name: do_create_entry(session, actor, check_entry_values(session, tenant.workspace_id, raw)).id
            for name, raw in (("hours", HOURS), ("cards", CARDS))
        }


def ask(client: TestClient, tenant: Tenant, question: str = "hola, ¿a qué hora abren el sábado?") -> dict[str, Any]:
    response = client.post(
        "/api/v1/assistant/answer", headers=tenant.headers, json={"question": question, "language": "es"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def month_tokens(db: Database, tenant: Tenant) -> int:
    with db.transaction(write=False) as session:
        total = session.scalar(
            select(func.coalesce(func.sum(ModelUsage.prompt_tokens + ModelUsage.completion_tokens), 0)).where(
                ModelUsage.workspace_id == tenant.workspace_id
            )
        )
        return int(total or 0)


def last_error(db: Database, tenant: Tenant) -> str:
    with db.transaction(write=False) as session:
        row = session.scalar(select(ModelSettings).where(ModelSettings.workspace_id == tenant.workspace_id))
        assert row is not None
        return row.last_error


def test_without_a_model_retrieval_answers(client: TestClient, db: Database, tenant: Tenant) -> None:
    ids = knowledge(db, tenant)
    answer = ask(client, tenant)
    assert answer["source"] == "retrieval"
    assert answer["model_status"] == "off"
    assert answer["entry_id"] == ids["hours"]
    assert answer["answer"] == HOURS["answer"]


def test_a_grounded_answer_is_used(client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint)
    endpoint.answer_with("¡Hola! El sábado abrimos de 9 a 19 h.", [ids["hours"]])
    answer = ask(client, tenant)
    assert answer["source"] == "llm"
    assert answer["model_status"] == "grounded"
    assert answer["answer"] == "¡Hola! El sábado abrimos de 9 a 19 h."
    assert answer["entry_id"] == ids["hours"]
    assert answer["handoff"] is False
    # The OpenAI wire format, with the key as a bearer token and the retrieved entries by id.
    [request] = endpoint.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body["model"] == "fake-model"
    assert request.body["temperature"] == 0.0
    assert request.body["max_tokens"] > 0
    assert [m["role"] for m in request.body["messages"]] == ["system", "user"]
    assert f"[entry {ids['hours']}]" in request.body["messages"][1]["content"]
    assert month_tokens(db, tenant) == PROMPT_TOKENS + COMPLETION_TOKENS
    # A model may wrap its JSON in a fenced block; that is still the answer asked for.
    endpoint.content = '```json\n{"answer": "De 9 a 19 h.", "entry_ids": [' + str(ids["hours"]) + "]}\n```"
    assert ask(client, tenant)["answer"] == "De 9 a 19 h."


UNGROUNDED = [
    '{"answer": "Abrimos 24 horas.", "entry_ids": []}',  # cites nothing
    '{"answer": "Abrimos 24 horas."}',  # no citations at all
    '{"answer": "Abrimos 24 horas.", "entry_ids": [987654]}',  # an id it was not given
    '{"answer": "Abrimos 24 horas.", "entry_ids": [HOURS, 987654]}',  # one given, one not
    '{"answer": "Abrimos 24 horas.", "entry_ids": [true]}',  # not an id
    '{"answer": "", "entry_ids": [HOURS]}',  # nothing to say
]


def test_an_ungrounded_answer_hands_off(client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint)
    for reply in UNGROUNDED:
        endpoint.content = reply.replace("HOURS", str(ids["hours"]))
        answer = ask(client, tenant)
        assert answer["source"] == "llm", reply
        assert answer["model_status"] == "ungrounded", reply
        assert answer["handoff"] is True, reply
        assert answer["reason"] == "ungrounded", reply
        assert answer["answer"] is None, reply
        assert answer["entry_id"] == ids["hours"], reply  # retrieval's best entry, for the agent's note
    assert endpoint.chat_calls == len(UNGROUNDED)


def test_an_entry_of_another_workspace_is_not_a_citation(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Any, endpoint: FakeOpenAI
) -> None:
    knowledge(db, tenant)
    other = knowledge(db, make_tenant())
    configure(db, tenant, endpoint)
    endpoint.answer_with("Abrimos de 9 a 19 h.", [other["hours"]])
    assert ask(client, tenant)["reason"] == "ungrounded"


def test_a_timeout_falls_back_to_retrieval(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint, timeout_seconds=1.0, max_retries=0)
    endpoint.script = [Reply(delay=5.0)]
    endpoint.answer_with("no debería verse", [ids["hours"]])
    answer = ask(client, tenant)
    assert answer["source"] == "retrieval"
    assert answer["model_status"] == "error"
    assert answer["answer"] == HOURS["answer"]
    assert endpoint.chat_calls == 1
    assert "timeout" in last_error(db, tenant)


def test_a_server_error_is_retried(client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint, max_retries=2)
    endpoint.script = [Reply(500, error("The server had an error", "server_error")), Reply(429, error("Slow down"))]
    endpoint.answer_with("Abrimos a las 9.", [ids["hours"]])
    answer = ask(client, tenant)
    assert endpoint.chat_calls == 3
    assert answer["source"] == "llm"
    assert answer["answer"] == "Abrimos a las 9."
    assert last_error(db, tenant) == ""


def test_retries_stop_at_the_maximum(client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    knowledge(db, tenant)
    configure(db, tenant, endpoint, max_retries=1)
    endpoint.script = [Reply(503, error("Overloaded")) for _ in range(5)]
    answer = ask(client, tenant)
    assert endpoint.chat_calls == 2
    assert answer["source"] == "retrieval"
    assert answer["answer"] == HOURS["answer"]
    assert last_error(db, tenant) == "HTTP 503: Overloaded"


def test_a_401_is_not_retried_and_shows_on_the_settings_page(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    knowledge(db, tenant)
    configure(db, tenant, endpoint, max_retries=3)
    # An endpoint that echoes the key it refused: the page must still not show it.
    endpoint.script = [Reply(401, error(f"Incorrect API key provided: {API_KEY}", code="invalid_api_key"))]
    answer = ask(client, tenant)
    assert endpoint.chat_calls == 1
    assert answer["source"] == "retrieval"
    assert answer["answer"] == HOURS["answer"]
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/assistant-model")
    assert page.status_code == 200
    assert 'data-testid="model-last-error"' in page.text
    assert "HTTP 401: Incorrect API key provided: ***" in page.text
    assert API_KEY not in page.text


def test_a_spent_monthly_budget_means_retrieval_only(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    ids = knowledge(db, tenant)
    configure(db, tenant, endpoint, monthly_token_budget=5000)
    endpoint.answer_with("Abrimos a las 9.", [ids["hours"]])
    assert ask(client, tenant)["source"] == "llm"
    with db.transaction() as session:  # the rest of the month's budget spent elsewhere
        spent = 5000 - PROMPT_TOKENS - COMPLETION_TOKENS
        record_call(session, tenant.workspace_id, None, prompt_tokens=spent, completion_tokens=0, error=None)
    second = ask(client, tenant)
    assert endpoint.chat_calls == 1
    assert second["source"] == "retrieval"
    assert second["model_status"] == "budget"
    assert second["answer"] == HOURS["answer"]


def test_an_answer_that_is_not_json_falls_back(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    knowledge(db, tenant)
    configure(db, tenant, endpoint)
    endpoint.content = "Abrimos de 9 a 19."
    answer = ask(client, tenant)
    assert (answer["source"], answer["model_status"]) == ("retrieval", "invalid_output")
    assert answer["answer"] == HOURS["answer"]
    assert month_tokens(db, tenant) == PROMPT_TOKENS + COMPLETION_TOKENS  # spent all the same


def test_the_api_key_is_stored_encrypted(db: Database, tenant: Tenant, endpoint: FakeOpenAI) -> None:
    configure(db, tenant, endpoint)
    with db.transaction(write=False) as session:
        stored = session.execute(
            text("SELECT secrets FROM assistant_model_settings WHERE workspace_id = :id"), {"id": tenant.workspace_id}
        ).scalar_one()
    assert stored.startswith("v1:")
    assert API_KEY not in stored
