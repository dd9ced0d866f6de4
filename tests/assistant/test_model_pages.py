"""Settings > Assistant > Language model on both databases: an owner saves the endpoint with its
API key, which is never rendered back and is kept when the form leaves it empty; errors show beside
their fields in Spanish and English; "Test connection" shows that it works, or the endpoint's error
(not retried), its tokens reserved from the month's budget and recorded, or that the month's budget
is spent and nothing was sent; agents cannot open the page."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.assistant import model_settings
from tertulia.assistant.grounded import MIN_ANSWER_TOKENS
from tertulia.assistant.models import ModelSettings, ModelUsage, TokenCounter, TokenReservation
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.web.context import LANGUAGE_COOKIE
from tests.assistant.fake_openai import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    FakeOpenAI,
    Reply,
    embedding_tokens,
    error,
    fake_openai,
)
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

API_KEY = "sk-page-5d1e2f3a4b"
PAGE = "/settings/assistant-model"


@pytest.fixture
def endpoint() -> Iterator[FakeOpenAI]:
    with fake_openai() as running:
        yield running


def _form(endpoint: FakeOpenAI, **changes: str) -> dict[str, str]:
    return {
        "enabled": "1",
        "base_url": endpoint.base_url,
        "model": "llama3.1",
        "api_key": API_KEY,
        "timeout_seconds": "5",
        "max_retries": "1",
        "conversation_token_budget": "5000",
        "monthly_token_budget": "100000",
        **changes,
    }


def _row(db: Database, tenant: Tenant) -> ModelSettings:
    with db.transaction(write=False) as session:
        row = session.scalar(select(ModelSettings).where(ModelSettings.workspace_id == tenant.workspace_id))
        assert row is not None
        session.expunge(row)
        return row


def test_an_owner_saves_the_model_and_the_key_is_never_shown(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert client.get(PAGE).status_code == 200
    saved = client.post(PAGE, data={**_form(endpoint), "csrf_token": token}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    row = _row(db, tenant)
    assert (row.enabled, row.base_url, row.model, row.max_retries) == (True, endpoint.base_url, "llama3.1", 1)
    assert row.secrets == {"api_key": API_KEY}
    page = client.get(PAGE)
    assert API_KEY not in page.text
    assert 'value="llama3.1"' in page.text
    assert "A key is saved" in page.text
    # Saving again with the key field empty keeps the key.
    again = client.post(
        PAGE, data={**_form(endpoint, api_key="", model="qwen2.5"), "csrf_token": token}, follow_redirects=False
    )
    assert again.status_code == 303
    assert _row(db, tenant).secrets == {"api_key": API_KEY}
    # A refused form shows what was typed, except the key.
    refused = client.post(PAGE, data={**_form(endpoint, max_retries="9"), "csrf_token": token})
    assert refused.status_code == 422
    assert API_KEY not in refused.text
    # "Remove the saved API key".
    client.post(
        PAGE, data={**_form(endpoint, api_key=""), "clear_api_key": "1", "csrf_token": token}, follow_redirects=False
    )
    assert _row(db, tenant).secrets == {}


@pytest.mark.parametrize(
    ("language", "url_error", "timeout_error"),
    [
        ("es", "Escribe la URL base del endpoint", "Escribe un tiempo de espera entre 1 y 120 segundos."),
        ("en", "Enter the endpoint's base URL", "Enter a timeout between 1 and 120 seconds."),
    ],
)
def test_errors_beside_their_fields(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    endpoint: FakeOpenAI,
    language: str,
    url_error: str,
    timeout_error: str,
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    refused = client.post(PAGE, data={**_form(endpoint, base_url="ftp://x", timeout_seconds="0"), "csrf_token": token})
    assert refused.status_code == 422
    assert url_error in refused.text.replace("&#39;", "'")
    assert timeout_error in refused.text


def test_test_connection_shows_success_then_the_endpoints_error(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.post(PAGE, data={**_form(endpoint, max_retries="3"), "csrf_token": token}, follow_redirects=False)
    endpoint.content = "OK"
    worked = client.post(f"{PAGE}/test", data={"csrf_token": token})
    assert worked.status_code == 200
    assert 'data-testid="model-test-ok"' in worked.text
    assert endpoint.requests[0].headers["authorization"] == f"Bearer {API_KEY}"
    endpoint.script = [Reply(401, error("Incorrect API key provided", code="invalid_api_key"))]
    client.cookies.set(LANGUAGE_COOKIE, "es")
    failed = client.post(f"{PAGE}/test", data={"csrf_token": token})
    assert failed.status_code == 200
    assert len(endpoint.requests) == 2  # a 401 is not retried
    assert 'data-testid="model-last-error"' in failed.text
    assert "HTTP 401: Incorrect API key provided" in failed.text
    assert "El endpoint del modelo falló" in failed.text
    assert API_KEY not in failed.text
    assert _row(db, tenant).last_error == "HTTP 401: Incorrect API key provided"
    # The error stays on the page until a call works.
    assert "HTTP 401" in client.get(PAGE).text


def _month_spending(db: Database, tenant: Tenant) -> tuple[int, list[tuple[int | None, int, int]], int]:
    """The month's counter, the ledger's rows (conversation, prompt, completion) and the
    reservations still unsettled."""
    month = model_settings.month_of(utcnow())
    with db.transaction(write=False) as session:
        counter = session.scalar(
            select(TokenCounter.tokens).where(
                TokenCounter.workspace_id == tenant.workspace_id, TokenCounter.scope == f"month:{month}"
            )
        )
        ledger = session.execute(
            select(ModelUsage.conversation_id, ModelUsage.prompt_tokens, ModelUsage.completion_tokens)
            .where(ModelUsage.workspace_id == tenant.workspace_id, ModelUsage.month == month)
            .order_by(ModelUsage.id)
        )
        reservations = session.scalar(
            select(func.count())
            .select_from(TokenReservation)
            .where(TokenReservation.workspace_id == tenant.workspace_id)
        )
        return int(counter or 0), [tuple(row) for row in ledger], int(reservations or 0)


def test_test_connection_is_counted_and_refused_once_the_month_is_spent(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.post(
        PAGE, data={**_form(endpoint, embedding_model="nomic-embed-text"), "csrf_token": token}, follow_redirects=False
    )
    endpoint.content = "OK"
    worked = client.post(f"{PAGE}/test", data={"csrf_token": token})
    assert 'data-testid="model-test-ok"' in worked.text
    spent = PROMPT_TOKENS + embedding_tokens(["OK"]) + COMPLETION_TOKENS
    # What the endpoint reported, in the ledger (no conversation) and the month's counter; the
    # reservation settled.
    assert _month_spending(db, tenant) == (
        spent,
        [(None, PROMPT_TOKENS + embedding_tokens(["OK"]), COMPLETION_TOKENS)],
        0,
    )
    assert f"Tokens used this month: {spent}." in client.get(PAGE).text

    # The month's budget is now exactly what was spent: the next test is refused before any request.
    client.post(
        PAGE, data={**_form(endpoint, monthly_token_budget=str(spent)), "csrf_token": token}, follow_redirects=False
    )
    sent = len(endpoint.requests)
    client.cookies.set(LANGUAGE_COOKIE, "es")
    refused = client.post(f"{PAGE}/test", data={"csrf_token": token})
    assert refused.status_code == 200
    assert len(endpoint.requests) == sent
    assert 'data-testid="model-test-refused"' in refused.text
    assert "el presupuesto de tokens de este mes está agotado" in refused.text
    assert 'data-testid="model-test-ok"' not in refused.text
    assert _month_spending(db, tenant) == (
        spent,
        [(None, PROMPT_TOKENS + embedding_tokens(["OK"]), COMPLETION_TOKENS)],
        0,
    )


def test_agents_cannot_open_it(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get(PAGE).status_code == 403


@pytest.mark.parametrize(
    ("language", "warning"),
    [
        ("es", "Con un presupuesto de menos de {minimum} tokens el modelo no puede escribir ninguna respuesta"),
        ("en", "With a budget under {minimum} tokens the model cannot write any answer"),
    ],
)
def test_a_budget_below_one_answer_is_saved_with_a_warning_beside_it(
    client: TestClient, db: Database, tenant: Tenant, endpoint: FakeOpenAI, language: str, warning: str
) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    client.cookies.set(LANGUAGE_COOKIE, language)
    below = str(MIN_ANSWER_TOKENS - 1)
    saved = client.post(
        PAGE, data={**_form(endpoint, conversation_token_budget=below), "csrf_token": token}, follow_redirects=False
    )
    assert saved.status_code == 303  # saved, not refused: a manager may switch the model off this way
    assert _row(db, tenant).conversation_token_budget == MIN_ANSWER_TOKENS - 1
    page = client.get(PAGE).text
    assert 'data-testid="conversation-token-budget-warning"' in page
    assert 'data-testid="monthly-token-budget-warning"' not in page
    assert warning.format(minimum=MIN_ANSWER_TOKENS) in page
    # A monthly budget of exactly one answer's reservation admits it; a refused form warns about
    # what was typed.
    refused = client.post(
        PAGE,
        data={
            **_form(endpoint, conversation_token_budget="1", monthly_token_budget=str(MIN_ANSWER_TOKENS)),
            "max_retries": "9",
            "csrf_token": token,
        },
    )
    assert refused.status_code == 422
    assert 'data-testid="conversation-token-budget-warning"' in refused.text
    assert 'data-testid="monthly-token-budget-warning"' not in refused.text
    # A budget typed as something other than a plain number has its error, not a warning.
    odd = client.post(PAGE, data={**_form(endpoint, conversation_token_budget="²"), "csrf_token": token})
    assert odd.status_code == 422
    assert "token-budget-warning" not in odd.text
    client.post(
        PAGE,
        data={**_form(endpoint, conversation_token_budget=str(MIN_ANSWER_TOKENS)), "csrf_token": token},
        follow_redirects=False,
    )
    assert "token-budget-warning" not in client.get(PAGE).text
