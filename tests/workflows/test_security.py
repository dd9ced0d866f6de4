"""The workflows module's inputs, route by route, on both databases: the incoming webhook's body
(size, nesting, numbers, NUL and unpaired surrogates, ids, secrets, throttling), running shortcuts
(answers, other workspaces' contacts, agents), names and imports, stored markup shown escaped on
every page, and other workspaces' workflows answering 404.

Ids beyond 64 bits and NUL in API bodies are also in the shared walks (tests/kit/test_out_of_range.py,
tests/kit/test_input_text.py); page forms and agents' refusals are walked for every route by
tests/web/test_form_text_everywhere.py and tests/web/test_roles_everywhere.py."""

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE
from tertulia.workflows import hooks
from tertulia.workflows.hooks_api import WRONG_SECRETS_PER_MINUTE
from tertulia.workflows.models import Workflow
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import advance
from tests.workflows.test_shortcut_and_webhook import NOTE, SHORTCUT, new_contact, note_of, published

pytestmark = pytest.mark.usefixtures("no_background_work")

BIG = 99999999999999999999
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
PAYLOADS = (SCRIPT, IMG)
NOTED_HOOK: dict[str, Any] = {
    "trigger": {"type": "incoming_webhook"},
    "steps": [
        {"id": "note", "type": "update_field", "config": {"field": "note", "value": "{{trigger.x}}|{{trigger.y}}"}}
    ],
}


def _hook(client: TestClient, tenant: Tenant) -> tuple[int, str, str]:
    """A published incoming-webhook workflow: its id, its URL's path and its secret."""
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    workflow_id = published(client, tenant, NOTED_HOOK, "Hook")
    hook = client.get(f"/api/v1/workflows/{workflow_id}/hook", headers=tenant.headers).json()
    return workflow_id, "/" + hook["url"].split("://", 1)[1].split("/", 1)[1], hook["secret"]


def _post_raw(client: TestClient, path: str, raw: bytes, **headers: str) -> Any:
    return client.post(path, content=raw, headers={"Content-Type": "application/json", **headers})


def _contacts(db: Database) -> int:
    with db.transaction(write=False) as session:
        return session.scalar(select(func.count()).select_from(Contact)) or 0


# ----- 1. the incoming webhook ---------------------------------------------------------------------


def test_webhook_bodies_the_parser_or_the_databases_refused_are_4xx_or_stored_safely(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    _workflow_id, path, _secret = _hook(client, tenant)
    email = b'"email": "ana@example.com"'
    refused = {
        # Nested past the parser's recursion (a 500 before) and past MAX_NESTING.
        b"[" * 30_000 + b"]" * 30_000: hooks.TOO_DEEP,
        b"{" + email + b', "x": ' + b"[" * 3_000 + b"]" * 3_000 + b"}": hooks.TOO_DEEP,
        b"{" + email + b', "x": ' + b"[" * (hooks.MAX_NESTING + 1) + b"]" * (hooks.MAX_NESTING + 1) + b"}": (
            hooks.TOO_DEEP
        ),
        # Not JSON (PostgreSQL refused them in the run's state: a 500; SQLite stored them).
        b"{" + email + b', "x": NaN}': hooks.NOT_JSON,
        b"{" + email + b', "x": -Infinity}': hooks.NOT_JSON,
        b"\xff\xfe{": hooks.NOT_JSON,
        b'"text"': hooks.NOT_AN_OBJECT,
    }
    for raw, message in refused.items():
        response = _post_raw(client, path, raw)
        assert response.status_code == 422, (raw[:40], response.text)
        assert response.json()["error"]["details"] == {"body": message}
    assert _contacts(db) == 0

    # Numbers nothing holds are kept as written; NUL and lone surrogates become U+FFFD (PostgreSQL
    # answered 500 for both, SQLite stored NUL and answered 500 for a surrogate in a contact's name).
    # json.dumps escapes them as \u0000 and \ud800, the way a sender's JSON carries them.
    stored = {
        json.dumps({"email": "ana@example.com", "x": "a\x00b", "y": "c\ud800d"}).encode(): "a\ufffdb|c\ufffdd",
        b'{"email": "ana@example.com", "x": 1e999, "y": ' + b"9" * 5_000 + b"}": "1e999|" + "9" * 1_000,
        b'{"email": "ana@example.com", "x": 123456789012345678901234567890, "y": -7}': (
            "123456789012345678901234567890|-7"
        ),
    }
    for raw, note in stored.items():
        response = _post_raw(client, path, raw)
        assert response.status_code == 202, (raw[:40], response.text)
        assert response.json()["started"] is True, response.text
        advance(db)
        assert note_of(client, tenant, "email:ana@example.com") == note
        client.post("/api/v1/contacts/email:ana@example.com/tags", headers=tenant.headers, json={"tags": ["x"]})

    named = json.dumps({"email": "luz@example.com", "first_name": "L\ud800z", "last_name": "R\x00iz"}).encode()
    assert _post_raw(client, path, named).status_code == 202
    contact = client.get("/api/v1/contacts/email:luz@example.com", headers=tenant.headers).json()
    assert (contact["first_name"], contact["last_name"]) == ("L\ufffdz", "R\ufffdiz")

    assert _post_raw(client, path, json.dumps({"id": BIG}).encode()).status_code == 422
    assert _post_raw(client, path, json.dumps({"id": str(BIG)}).encode()).status_code == 422


def test_webhook_paths_secrets_size_and_throttling(client: TestClient, db: Database, tenant: Tenant) -> None:
    workflow_id, path, secret = _hook(client, tenant)
    body = json.dumps({"email": "ana@example.com"}).encode()
    # Ids beyond 64 bits are refused where they come in, naming the parameter.
    for beyond in (f"/hooks/workflows/{BIG}/{secret}", f"/hooks/workflows/{BIG}"):
        response = _post_raw(client, beyond, body, **{hooks.HEADER: secret})
        assert response.status_code == 422, response.text
        assert "workflow_id" in response.json()["error"]["details"]
    # A secret of another workflow, text the comparison cannot take as ASCII (hmac.compare_digest
    # raises on non-ASCII str), NUL: the same 404 as no workflow at all.
    other_id, _other_path, other_secret = _hook(client, tenant)
    for wrong in (other_secret, "ñ" * 43, secret[:-1], secret + "x"):
        response = _post_raw(client, f"/hooks/workflows/{workflow_id}/{wrong}", body)
        assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found"), wrong
    nul = _post_raw(client, f"/hooks/workflows/{workflow_id}/a%00b", body)  # kit.text's rule for paths
    assert (nul.status_code, nul.json()["error"]["details"]) == (422, {"secret": UNSAFE_TEXT_MESSAGE})
    # A header's bytes beyond ASCII arrive as Latin-1 text: compared, not a 500.
    raw_header = {hooks.HEADER: "é".encode(), "Content-Type": b"application/json"}
    assert client.post(f"/hooks/workflows/{workflow_id}", content=body, headers=raw_header).status_code == 404
    assert _post_raw(client, f"/hooks/workflows/{other_id + 1000}/{secret}", body).status_code == 404
    assert _contacts(db) == 0

    # Too big: with a declared length, and streamed without one (chunked).
    padded = {"email": "ana@example.com", "pad": "x" * hooks.MAX_BODY}
    assert _post_raw(client, path, json.dumps(padded).encode()).status_code == 413

    def chunks() -> Iterator[bytes]:
        yield b'{"email": "ana@example.com", "pad": "'
        for _ in range(hooks.MAX_BODY // 4096 + 1):
            yield b"x" * 4096
        yield b'"}'

    streamed = client.post(path, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert _contacts(db) == 0

    # Guessing is throttled per client address; the right secret still gets through.
    already = 6  # the wrong secrets above
    answers = [
        _post_raw(client, f"/hooks/workflows/{workflow_id}/guess{n}", body).status_code
        for n in range(WRONG_SECRETS_PER_MINUTE - already)
    ]
    assert answers == [404] * (WRONG_SECRETS_PER_MINUTE - already)
    throttled = _post_raw(client, f"/hooks/workflows/{workflow_id}/guess", body)
    assert throttled.status_code == 429, throttled.text
    assert int(throttled.headers["Retry-After"]) > 0
    assert _post_raw(client, path, body).status_code == 202


# ----- 2. running shortcuts ------------------------------------------------------------------------


def test_shortcut_runs_check_answers_contacts_and_who_runs_them(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    open_form = {**SHORTCUT["trigger"], "once_per_contact": False}
    shortcut_id = published(client, tenant, {**SHORTCUT, "trigger": open_form})
    hook_id = published(client, tenant, NOTED_HOOK, "Not a shortcut")
    contact_id = new_contact(client, tenant, "ana@example.com")
    other = make_tenant()
    stranger = new_contact(client, other, "eva@example.com")
    run = f"/api/v1/workflows/{shortcut_id}/run"

    def answers(reason: str, contact: str = f"id:{contact_id}") -> dict[str, Any]:
        return {"contact": contact, "answers": {"reason": reason}}

    too_long = client.post(run, headers=tenant.headers, json=answers("x" * 1001))
    assert too_long.status_code == 422
    assert too_long.json()["error"]["details"] == {"answers.reason": "must be at most 1,000 characters"}
    nul = client.post(run, headers=tenant.headers, json=answers("a\x00b"))
    assert (nul.status_code, nul.json()["error"]["details"]) == (422, {"answers.reason": UNSAFE_TEXT_MESSAGE})
    # Another workspace's contact is no contact here, by id or by email; its workflow is no workflow.
    for contact in (f"id:{stranger}", "email:eva@example.com"):
        response = client.post(run, headers=tenant.headers, json=answers("x", contact))
        assert response.status_code == 404, response.text
        assert str(stranger) not in response.text.replace(contact, "")  # only what was sent is named
    client.post("/api/v1/custom-fields", headers=other.headers, json=NOTE)
    other_shortcut = published(client, other, {**SHORTCUT, "trigger": open_form})
    foreign = client.post(f"/api/v1/workflows/{other_shortcut}/run", headers=tenant.headers, json=answers("x"))
    assert foreign.status_code == 404

    # Agents run shortcuts (edit_contacts), see nothing else of workflows: any workflow that is not a
    # published shortcut is no workflow to them (409 wrong_trigger before), while managers read why.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    agent = {"X-CSRF-Token": _csrf(client)}
    assert client.post(run, headers=agent, json=answers("Llamada")).status_code == 201
    assert client.get(f"/api/v1/workflows/{shortcut_id}", headers=agent).status_code == 403
    assert client.get(f"/api/v1/workflows/{shortcut_id}/export", headers=agent).status_code == 403
    not_shortcut = client.post(f"/api/v1/workflows/{hook_id}/run", headers=agent, json=answers("x"))
    assert (not_shortcut.status_code, not_shortcut.json()["error"]["code"]) == (404, "not_found")
    managed = client.post(f"/api/v1/workflows/{hook_id}/run", headers=tenant.headers, json=answers("x"))
    assert (managed.status_code, managed.json()["error"]["code"]) == (409, "wrong_trigger")
    menu = client.get(f"/workflows/shortcuts/menu?contact_id={contact_id}")
    assert "Not a shortcut" not in menu.text
    assert "update_field" not in menu.text
    assert "{{trigger" not in menu.text

    # The page's form: another workspace's contact, ids beyond 64 bits, values over the field limit.
    form = {"csrf_token": agent["X-CSRF-Token"], "answer_0": "x"}
    assert client.post(f"/workflows/{shortcut_id}/shortcut/{stranger}", data=form).status_code == 404
    assert client.post(f"/workflows/{BIG}/shortcut/{contact_id}", data=form).status_code == 404
    assert client.post(f"/workflows/{shortcut_id}/shortcut/{BIG}", data=form).status_code == 404
    assert client.post(f"/workflows/{hook_id}/shortcut/{contact_id}", data=form).status_code == 404
    assert client.get(f"/workflows/shortcuts/menu?contact_id={stranger}").status_code == 404
    longer = client.post(f"/workflows/{shortcut_id}/shortcut/{contact_id}", data={**form, "answer_0": "x" * 1500})
    assert longer.status_code == 422
    assert "como máximo 1000 caracteres" in longer.text or "at most 1,000 characters" in longer.text
    longest = client.post(f"/workflows/{shortcut_id}/shortcut/{contact_id}", data={**form, "answer_0": "x" * 3000})
    assert longest.status_code == 422


def _csrf(client: TestClient) -> str:
    match = re.search(r'name="csrf-token" content="([^"]+)"', client.get("/profile").text)
    assert match
    return match.group(1)


# ----- 3. names, definitions and imports -----------------------------------------------------------

MANUAL: dict[str, Any] = {"trigger": {"type": "manual"}, "steps": [{"id": "a", "type": "unassign"}]}
ASK = (
    '{"trigger": {"type": "manual"}, "steps": [{"id": "a", "type": "ask_question", '
    '"config": {"text": "?", "kind": "number", "min": %s}}]}'
)


def test_names_definitions_and_imports_are_refused_with_what_is_wrong(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    api = {**tenant.headers, "Content-Type": "application/json"}
    # (Line breaks and tabs are spaces in a name: kit.text.tidy_name.)
    for name in ("a\x01b", "a\x1b[31mb", "c1\x9b", "del\x7f"):
        created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": name, "definition": MANUAL})
        assert created.status_code == 422, (name, created.text)
        assert created.json()["error"]["details"] == {"name": "must not contain control characters"}
        from_template = client.post(
            "/api/v1/workflow-templates/assign_agent/workflows", headers=tenant.headers, json={"name": name}
        )
        assert from_template.status_code == 422
    # NaN and infinity (PostgreSQL's JSON refused them: a 500; SQLite stored them).
    for number in ("NaN", "Infinity", "-1e999"):
        raw = f'{{"name": "x", "definition": {ASK % number}}}'.encode()
        refused = client.post("/api/v1/workflows", headers=api, content=raw)
        assert refused.status_code == 422, refused.text
        assert "steps[0].config.min" in refused.json()["error"]["details"]
    conditions = {"groups": [{"conditions": [{"category": "contact_field", "field": "score", "operator": "gt"}]}]}
    raw = json.dumps({"name": "x", "definition": {**MANUAL, "conditions": conditions}}).replace(
        '"gt"', '"gt", "value": NaN'
    )
    refused = client.post("/api/v1/workflows", headers=api, content=raw.encode())
    assert refused.status_code == 422, refused.text
    # Nested past the parser's recursion: a 500 for every JSON API before (kit.http).
    deep = b'{"name": "x", "definition": {"x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}}"
    too_deep = client.post("/api/v1/workflows", headers=api, content=deep)
    assert (too_deep.status_code, too_deep.json()["error"]["details"]) == (422, {"request": "nested too deeply"})
    definition_errors = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "x", "definition": {"trigger": {"type": "nope"}}}
    )
    assert definition_errors.status_code == 422
    assert "trigger.type" in definition_errors.json()["error"]["details"]

    token = sign_in_as(client, db, tenant.owner_id, "owner-password")

    def imported(raw: bytes) -> Any:
        files = {"file": ("w.json", raw, "application/json")}
        return client.post("/workflows/import", data={"csrf_token": token}, files=files, follow_redirects=False)

    good = json.dumps({"name": "Importado", "definition": MANUAL})
    refusals = {
        # Nested past the parser's recursion, or past MAX_IMPORT_NESTING (a 500 before).
        good.replace('"a"', "[" * 5_000 + "]" * 5_000): "The file is not JSON.",
        good.replace('"a"', '"a", "x": ' + "[" * 70 + "]" * 70): "The file is not an exported workflow.",
        # A lone surrogate (a 500 before) and NUL (stored as sent on SQLite before).
        json.dumps({"name": "x\ud800", "definition": MANUAL}): UNSAFE_TEXT_MESSAGE,
        json.dumps({"name": "x\x00", "definition": MANUAL}): UNSAFE_TEXT_MESSAGE,
        json.dumps({"name": "x", "definition": {**MANUAL, "steps": [{"id": "a\x00", "type": "unassign"}]}}): (
            UNSAFE_TEXT_MESSAGE
        ),
        json.dumps({"name": "a\x1bb", "definition": MANUAL}): "must not contain control characters",
        f'{{"name": "x", "definition": {ASK % "NaN"}}}': "must be a finite number",
        json.dumps({"name": "x", "definition": {"trigger": {"type": "nope"}, "steps": []}}): "trigger.type",
        "{not json": "The file is not JSON.",
    }
    for raw, said in refusals.items():
        response = imported(raw.encode("utf-8", "surrogatepass"))
        assert response.status_code == 422, (raw[:60], response.status_code)
        assert said in response.text, (raw[:60], re.findall(r"error[^>]*>([^<]*)<", response.text))
    assert imported(b" " * 400_001).status_code == 422
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Workflow)) == 0
    assert imported(good.encode()).status_code == 303


# ----- stored markup is shown escaped ----------------------------------------------------------------


def _unescaped(page: str) -> list[str]:
    return [payload for payload in PAYLOADS if payload in page or "<img src=x" in page or "<script>alert" in page]


def test_names_and_texts_with_markup_are_escaped_on_every_page(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    client.post("/api/v1/custom-fields", headers=tenant.headers, json=NOTE)
    form = [{"name": "reason", "label": IMG, "kind": "choice", "options": [SCRIPT, IMG]}]
    definition = {
        "trigger": {"type": "shortcut", "config": {"form": form}},
        "steps": [
            {"id": "say", "type": "add_comment", "config": {"text": f"{SCRIPT} {IMG}"}, "next": "note"},
            {"id": "note", "type": "update_field", "config": {"field": "note", "value": IMG}},
        ],
    }
    shortcut_id = published(client, tenant, definition, name=f"{SCRIPT}{IMG}")
    contact_id = new_contact(client, tenant, "ana@example.com")
    started = client.post(
        f"/api/v1/workflows/{shortcut_id}/run",
        headers=tenant.headers,
        json={"contact": f"id:{contact_id}", "answers": {"reason": SCRIPT}},
    )
    assert started.status_code == 201, started.text
    advance(db)
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    pages = [
        "/workflows",
        f"/workflows/{shortcut_id}",
        f"/workflows/contacts/{contact_id}/runs",
        f"/workflows/shortcuts/menu?contact_id={contact_id}",
        f"/contacts/{contact_id}",
    ]
    for url in pages:
        page = client.get(url)
        assert page.status_code == 200, url
        assert _unescaped(page.text) == [], url
        assert "&lt;script&gt;" in page.text or "\\u003cscript\\u003e" in page.text or url.startswith("/contacts/"), url
    # What was typed comes back escaped: a refused shortcut form, a refused template card, a refused save.
    refused = client.post(
        f"/workflows/{shortcut_id}/shortcut/{contact_id}", data={"csrf_token": token, "answer_0": IMG + "!"}
    )
    assert refused.status_code == 422
    assert _unescaped(refused.text) == []
    for template_id in ("sales_team_assignment", "priority_support_assignment"):
        card = client.post(f"/workflows/new/templates/{template_id}", data={"csrf_token": token, "value_0": IMG})
        assert card.status_code in (200, 422), template_id  # the gallery again, or the new draft's page
        assert _unescaped(card.text) == [], template_id
    assert _unescaped(client.get("/workflows/new/templates").text + client.get("/workflows").text) == []
    saved = client.post(
        f"/workflows/{shortcut_id}", data={"csrf_token": token, "name": "x", "definition": f'{{"x": "{IMG}'}
    )
    assert saved.status_code == 422
    assert _unescaped(saved.text) == []


# ----- 4. other workspaces' workflows ----------------------------------------------------------------


def test_another_workspaces_workflow_is_not_found_anywhere(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant()
    theirs = published(client, other, MANUAL, "Theirs")
    api = [
        ("GET", f"/api/v1/workflows/{theirs}"),
        ("GET", f"/api/v1/workflows/{theirs}/export"),
        ("POST", f"/api/v1/workflows/{theirs}/clone"),
        ("DELETE", f"/api/v1/workflows/{theirs}"),
        ("GET", f"/api/v1/workflows/{theirs}/hook"),
        ("POST", f"/api/v1/workflows/{theirs}/hook/regenerate"),
        ("POST", f"/api/v1/workflows/{theirs}/stop"),
    ]
    for method, url in api:
        response = client.request(method, url, headers=tenant.headers)
        assert response.status_code == 404, (method, url, response.text)
        assert "Theirs" not in response.text
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert client.get(f"/workflows/{theirs}/export").status_code == 404
    assert client.get(f"/workflows/{theirs}").status_code == 404
    for action in ("clone", "delete", "publish", "stop"):
        response = client.post(f"/workflows/{theirs}/{action}", data={"csrf_token": token}, follow_redirects=False)
        assert response.status_code == 404, action
    with db.transaction(write=False) as session:
        assert [(w.id, w.status) for w in session.scalars(select(Workflow))] == [(theirs, "published")]
