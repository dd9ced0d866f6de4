"""Settings > Snippets, Settings > Closing categories, the Files library and notification preferences."""

import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_create_custom_field
from tertulia.conversations import service as inbox
from tertulia.conversations import settings_views as inbox_settings
from tertulia.conversations.models import ClosingCategory, Snippet, StoredFile
from tertulia.kit.db import Database
from tertulia.users.models import User
from tests.conftest import Tenant
from tests.conversations.support import make_webchat, new_visitor
from tests.web.helpers import sign_in_as

ES = {"Accept-Language": "es"}


def _owner(client: TestClient, db: Database, tenant: Tenant) -> str:
    return sign_in_as(client, db, tenant.owner_id, "owner-password")


def _agent(client: TestClient, db: Database, tenant: Tenant) -> str:
    return sign_in_as(client, db, tenant.agent_id, "agent-password")


def _snippets(db: Database, workspace_id: int) -> list[Snippet]:
    with db.transaction(write=False) as session:
        return list(session.scalars(select(Snippet).where(Snippet.workspace_id == workspace_id).order_by(Snippet.id)))


def _file_count(db: Database) -> int:
    with db.transaction(write=False) as session:
        return int(session.scalar(select(func.count()).select_from(StoredFile)) or 0)


def _error_beside(html: str, field: str) -> str:
    """The text of the error shown under `field` (the macro gives it the id `<field>-error`)."""
    match = re.search(rf'<p class="field-error" id="{re.escape(field)}-error" role="alert">([^<]*)</p>', html)
    assert match, f"no error beside {field}"
    return match.group(1)


# ----- permissions and navigation ---------------------------------------------------------------


def test_an_agent_is_refused_the_snippet_and_category_pages(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _agent(client, db, tenant)
    for url in ("/settings/snippets", "/settings/closing-categories"):
        refused = client.get(url)
        assert refused.status_code == 403, url
        assert "You do not have access to this page" in refused.text
    assert client.post(
        "/settings/snippets", data={"shortcut": "hi", "text": "Hi", "csrf_token": token}
    ).status_code == (403)
    assert client.post("/settings/closing-categories", data={"name": "Done", "csrf_token": token}).status_code == 403
    with db.transaction() as session:
        snippet = inbox.do_create_snippet(session, tenant.actor(), "hola", "Hola")
        category = inbox.do_create_closing_category(session, tenant.actor(), "Resuelto")
        snippet_id, category_id = snippet.id, category.id
    for url in (
        f"/settings/snippets/{snippet_id}",
        f"/settings/snippets/{snippet_id}/delete",
        f"/settings/closing-categories/{category_id}/rename",
        f"/settings/closing-categories/{category_id}/delete",
    ):
        assert (
            client.post(url, data={"name": "x", "shortcut": "x", "text": "x", "csrf_token": token}).status_code == 403
        )
    assert [s.shortcut for s in _snippets(db, tenant.workspace_id)] == ["hola"]
    with db.transaction(write=False) as session:
        assert [c.name for c in session.scalars(select(ClosingCategory))] == ["Resuelto"]


def test_managers_see_the_new_sections_in_the_settings_navigation(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    for page in ("general", "snippets", "closing-categories"):
        response = client.get(f"/settings/{page}")
        assert response.status_code == 200, page
        assert 'href="/settings/snippets"' in response.text
        assert 'href="/settings/closing-categories"' in response.text
    assert 'aria-current="page" data-testid="settings-snippets"' in client.get("/settings/snippets").text


def test_another_workspaces_snippet_or_category_is_not_found(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant("Other Co")
    with db.transaction() as session:
        snippet_id = inbox.do_create_snippet(session, other.actor(), "theirs", "Theirs").id
        category_id = inbox.do_create_closing_category(session, other.actor(), "Theirs").id
    token = _owner(client, db, tenant)
    assert client.get(f"/settings/snippets/{snippet_id}").status_code == 404
    assert client.post(f"/settings/snippets/{snippet_id}/delete", data={"csrf_token": token}).status_code == 404
    deleted = client.post(f"/settings/closing-categories/{category_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 404
    assert [s.shortcut for s in _snippets(db, other.workspace_id)] == ["theirs"]


# ----- snippets ---------------------------------------------------------------------------------


def test_create_a_snippet_with_a_file_and_see_it_listed(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    created = client.post(
        "/settings/snippets",
        data={
            "shortcut": "/Precios",
            "text": 'Hola {{contact.first_name | "cliente"}}, <b>precios</b>',
            "csrf_token": token,
        },
        files={"file": ("lista <2026>.pdf", b"%PDF-1.4 prices", "application/pdf")},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    assert created.headers["location"] == "/settings/snippets"
    [snippet] = _snippets(db, tenant.workspace_id)
    assert snippet.shortcut == "precios"
    assert snippet.text == 'Hola {{contact.first_name | "cliente"}}, <b>precios</b>'
    assert snippet.file_id is not None
    with db.transaction(write=False) as session:
        stored = session.get(StoredFile, snippet.file_id)
        assert stored is not None
        assert (stored.name, stored.content_type, stored.conversation_id) == (
            "lista <2026>.pdf",
            "application/pdf",
            None,
        )

    page = client.get("/settings/snippets")
    assert "The snippet has been saved." in page.text
    assert "<code>/precios</code>" in page.text
    assert "&lt;b&gt;precios&lt;/b&gt;" in page.text
    assert "<b>precios</b>" not in page.text
    assert f'href="/api/v1/files/{snippet.file_id}"' in page.text
    assert "lista &lt;2026&gt;.pdf" in page.text
    download = client.get(f"/api/v1/files/{snippet.file_id}")
    assert download.status_code == 200
    assert download.content == b"%PDF-1.4 prices"


@pytest.mark.parametrize(
    ("text", "english", "spanish"),
    [
        ("Hola {{contact.nickname}}", "Unknown variable {{contact.nickname}}.", "Variable desconocida"),
        (
            "Hola {{contact.first_name | cliente}}",
            "The fallback of {{contact.first_name | cliente}} must be in double quotes",
            "comillas dobles",
        ),
        ("Hola {{contact.first_name", "A {{ is not closed with }}.", "no se cierra"),
    ],
)
def test_variable_errors_are_shown_beside_the_text_and_keep_the_input(
    client: TestClient, db: Database, tenant: Tenant, text: str, english: str, spanish: str
) -> None:
    token = _owner(client, db, tenant)
    bad = client.post("/settings/snippets", data={"shortcut": "saludo", "text": text, "csrf_token": token})
    assert bad.status_code == 422
    assert english in _error_beside(bad.text, "text")
    assert 'aria-describedby="text-error"' in bad.text
    assert 'value="saludo"' in bad.text
    assert f">{text}</textarea>" in bad.text
    in_spanish = client.post(
        "/settings/snippets", data={"shortcut": "saludo", "text": text, "csrf_token": token}, headers=ES
    )
    assert in_spanish.status_code == 422
    assert spanish in _error_beside(in_spanish.text, "text")
    assert _snippets(db, tenant.workspace_id) == []


def test_custom_fields_are_offered_as_variables_and_accepted(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
    token = _owner(client, db, tenant)
    assert "<code>{{contact.custom.plan}}</code>" in client.get("/settings/snippets").text
    ok = client.post(
        "/settings/snippets",
        data={"shortcut": "plan", "text": "Tu plan: {{contact.custom.plan}}", "csrf_token": token},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    unknown = client.post(
        "/settings/snippets", data={"shortcut": "otro", "text": "{{contact.custom.nivel}}", "csrf_token": token}
    )
    assert "Unknown variable {{contact.custom.nivel}}." in _error_beside(unknown.text, "text")


def test_shortcut_and_empty_snippet_errors(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    bad_shortcut = client.post(
        "/settings/snippets", data={"shortcut": "Hola amigo", "text": "Hola", "csrf_token": token}, headers=ES
    )
    assert bad_shortcut.status_code == 422
    assert "minúsculas" in _error_beside(bad_shortcut.text, "shortcut")
    assert 'value="Hola amigo"' in bad_shortcut.text
    empty = client.post("/settings/snippets", data={"shortcut": "vacio", "text": "  ", "csrf_token": token})
    assert "a snippet needs text or a file" in _error_beside(empty.text, "text")

    client.post("/settings/snippets", data={"shortcut": "hola", "text": "Hola", "csrf_token": token})
    duplicate = client.post("/settings/snippets", data={"shortcut": "/HOLA", "text": "Otra", "csrf_token": token})
    assert duplicate.status_code == 422
    assert _error_beside(duplicate.text, "shortcut") == "Another snippet already uses this shortcut."
    assert ">Otra</textarea>" in duplicate.text
    assert [s.text for s in _snippets(db, tenant.workspace_id)] == ["Hola"]


def test_a_refused_snippet_stores_no_file_and_asks_for_it_again(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _owner(client, db, tenant)
    client.post("/settings/snippets", data={"shortcut": "hola", "text": "Hola", "csrf_token": token})
    for data in (
        {"shortcut": "otro", "text": "{{nope.nope}}"},  # refused before the file is stored
        {"shortcut": "hola", "text": "Hola otra vez"},  # refused after: the shortcut is taken
    ):
        refused = client.post(
            "/settings/snippets",
            data={**data, "csrf_token": token},
            files={"file": ("guia.pdf", b"%PDF guide", "application/pdf")},
        )
        assert refused.status_code == 422
        assert _error_beside(refused.text, "file") == "The file was not saved: choose it again."
    bad_type = client.post(
        "/settings/snippets",
        data={"shortcut": "exe", "text": "", "csrf_token": token},
        files={"file": ("tool.exe", b"MZ", "application/x-msdownload")},
    )
    assert bad_type.status_code == 422
    assert _error_beside(bad_type.text, "file") == "Files of type application/x-msdownload are not accepted."
    assert _file_count(db) == 0
    assert [s.shortcut for s in _snippets(db, tenant.workspace_id)] == ["hola"]


def test_a_snippet_may_be_only_a_file(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    created = client.post(
        "/settings/snippets",
        data={"shortcut": "catalogo", "text": "  ", "csrf_token": token},
        files={"file": ("catalogo.pdf", b"%PDF catalogue", "application/pdf")},
        follow_redirects=False,
    )
    assert created.status_code == 303, created.text
    [snippet] = _snippets(db, tenant.workspace_id)
    assert (snippet.text, snippet.file_id is not None) == ("", True)


def test_edit_a_snippet_replace_and_remove_its_file(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    client.post(
        "/settings/snippets",
        data={"shortcut": "guia", "text": "Aquí la guía", "csrf_token": token},
        files={"file": ("guia.pdf", b"%PDF v1", "application/pdf")},
    )
    [snippet] = _snippets(db, tenant.workspace_id)
    first_file = snippet.file_id
    form = client.get(f"/settings/snippets/{snippet.id}")
    assert form.status_code == 200
    assert 'value="guia"' in form.text
    assert ">Aquí la guía</textarea>" in form.text
    assert f'href="/api/v1/files/{first_file}"' in form.text

    bad = client.post(
        f"/settings/snippets/{snippet.id}",
        data={"shortcut": "guia", "text": "Hola {{contact.apodo}}", "csrf_token": token},
    )
    assert bad.status_code == 422
    assert "Unknown variable {{contact.apodo}}." in _error_beside(bad.text, "text")
    assert ">Hola {{contact.apodo}}</textarea>" in bad.text

    replaced = client.post(
        f"/settings/snippets/{snippet.id}",
        data={"shortcut": "guia-2026", "text": "La guía nueva", "csrf_token": token},
        files={"file": ("guia2.pdf", b"%PDF v2", "application/pdf")},
        follow_redirects=False,
    )
    assert replaced.status_code == 303
    [snippet] = _snippets(db, tenant.workspace_id)
    assert (snippet.shortcut, snippet.text) == ("guia-2026", "La guía nueva")
    assert snippet.file_id not in (None, first_file)

    removed = client.post(
        f"/settings/snippets/{snippet.id}",
        data={"shortcut": "guia-2026", "text": "La guía nueva", "remove_file": "1", "csrf_token": token},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    [snippet] = _snippets(db, tenant.workspace_id)
    assert snippet.file_id is None

    deleted = client.post(f"/settings/snippets/{snippet.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 200
    assert "The snippet has been deleted." in deleted.text
    assert _snippets(db, tenant.workspace_id) == []


# ----- closing categories -----------------------------------------------------------------------


def test_closing_categories_create_rename_delete_and_errors(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _owner(client, db, tenant)
    assert "No closing categories" in client.get("/settings/closing-categories").text
    for name in ("Resuelto", "Venta <cerrada>"):
        created = client.post(
            "/settings/closing-categories", data={"name": name, "csrf_token": token}, follow_redirects=False
        )
        assert created.status_code == 303
    page = client.get("/settings/closing-categories")
    assert "The closing category has been saved." in page.text
    assert 'value="Venta &lt;cerrada&gt;"' in page.text

    duplicate = client.post("/settings/closing-categories", data={"name": "  resuelto ", "csrf_token": token})
    assert duplicate.status_code == 422
    assert _error_beside(duplicate.text, "new") == "Another closing category already has this name."
    assert 'value="  resuelto "' in duplicate.text
    empty = client.post("/settings/closing-categories", data={"name": " ", "csrf_token": token}, headers=ES)
    assert empty.status_code == 422
    assert "obligatorio" in _error_beside(empty.text, "new")

    with db.transaction(write=False) as session:
        ids = {c.name: c.id for c in session.scalars(select(ClosingCategory))}
    clash = client.post(
        f"/settings/closing-categories/{ids['Venta <cerrada>']}/rename", data={"name": "RESUELTO", "csrf_token": token}
    )
    assert clash.status_code == 422
    key = f"category-{ids['Venta <cerrada>']}"
    assert _error_beside(clash.text, key) == "Another closing category already has this name."
    assert 'value="RESUELTO"' in clash.text

    renamed = client.post(
        f"/settings/closing-categories/{ids['Venta <cerrada>']}/rename",
        data={"name": "Venta cerrada", "csrf_token": token},
        follow_redirects=False,
    )
    assert renamed.status_code == 303
    deleted = client.post(f"/settings/closing-categories/{ids['Resuelto']}/delete", data={"csrf_token": token})
    assert "The closing category has been deleted." in deleted.text
    with db.transaction(write=False) as session:
        assert [c.name for c in session.scalars(select(ClosingCategory))] == ["Venta cerrada"]


# ----- files library ----------------------------------------------------------------------------


def test_an_agent_uploads_and_lists_library_files(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _agent(client, db, tenant)
    assert 'href="/messages/files"' in client.get("/messages").text
    assert "No files yet" in client.get("/messages/files").text
    uploaded = client.post(
        "/messages/files",
        data={"csrf_token": token},
        files={"file": ("<img src=x onerror=alert(1)>.txt", b"x" * 2048, "text/plain")},
        follow_redirects=False,
    )
    assert uploaded.status_code == 303
    page = client.get("/messages/files")
    assert "The file has been uploaded." in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;.txt" in page.text
    assert "<img src=x" not in page.text
    assert "2 KB" in page.text
    assert "text/plain" in page.text
    with db.transaction(write=False) as session:
        stored = session.scalars(select(StoredFile)).one()
        agent = session.get(User, tenant.agent_id)
        assert agent is not None
        assert stored.uploaded_by_id == tenant.agent_id
        assert agent.full_name in page.text
    assert f'href="/api/v1/files/{stored.id}"' in page.text
    assert client.get(f"/api/v1/files/{stored.id}").content == b"x" * 2048


def test_library_files_are_deleted_by_their_uploader_or_a_manager_unless_in_use(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _agent(client, db, tenant)
    for name in ("lista.pdf", "guia.pdf"):
        client.post(
            "/messages/files",
            data={"csrf_token": token},
            files={"file": (name, b"%PDF " + name.encode(), "application/pdf")},
        )
    with db.transaction() as session:
        ids = {f.name: f.id for f in session.scalars(select(StoredFile))}
        # guia.pdf goes into a snippet: from then on it is in use.
        inbox.do_create_snippet(session, tenant.actor(), "guia", "Aquí la guía", file_id=ids["guia.pdf"])
    page = client.get("/messages/files")
    assert f'action="/messages/files/{ids["lista.pdf"]}/delete"' in page.text
    in_use = client.post(f"/messages/files/{ids['guia.pdf']}/delete", data={"csrf_token": token}, headers=ES)
    assert in_use.status_code == 422  # shown on the page, like every refused form
    assert "Este archivo ya se envió o está en un atajo; se conserva." in in_use.text
    deleted = client.post(f"/messages/files/{ids['lista.pdf']}/delete", data={"csrf_token": token})
    assert "The file has been deleted." in deleted.text
    assert _file_count(db) == 1
    # Another agent's upload: no button, and a forged post is refused.
    owner_token = _owner(client, db, tenant)
    client.post(
        "/messages/files", data={"csrf_token": owner_token}, files={"file": ("precios.pdf", b"%PDF", "application/pdf")}
    )
    with db.transaction(write=False) as session:
        owners = session.scalars(select(StoredFile.id).where(StoredFile.name == "precios.pdf")).one()
    token = _agent(client, db, tenant)
    assert f'action="/messages/files/{owners}/delete"' not in client.get("/messages/files").text
    assert client.post(f"/messages/files/{owners}/delete", data={"csrf_token": token}).status_code == 403
    assert client.post("/messages/files/999999/delete", data={"csrf_token": token}).status_code == 404
    assert _file_count(db) == 2


def test_file_upload_errors_are_shown_beside_the_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _agent(client, db, tenant)
    nothing = client.post("/messages/files", data={"csrf_token": token}, files={"file": ("", b"", "text/plain")})
    assert nothing.status_code == 422
    assert _error_beside(nothing.text, "file") == "Choose a file."
    wrong = client.post(
        "/messages/files", data={"csrf_token": token}, files={"file": ("page.html", b"<html>", "text/html")}
    )
    assert wrong.status_code == 422
    assert _error_beside(wrong.text, "file") == "Files of type text/html are not accepted."
    empty = client.post(
        "/messages/files", data={"csrf_token": token}, files={"file": ("empty.txt", b"", "text/plain")}, headers=ES
    )
    assert empty.status_code == 422
    assert _error_beside(empty.text, "file") == "El archivo está vacío."
    assert _file_count(db) == 0
    forged = client.post("/messages/files", data={"csrf_token": "wrong"}, files={"file": ("a.txt", b"a", "text/plain")})
    assert forged.status_code == 403
    assert _file_count(db) == 0


def test_files_sent_in_conversations_stay_out_of_the_library(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    channel = make_webchat(db, tenant)
    new_visitor(client, channel, name="Ana").say("hola")
    conversation_id = client.get("/api/v1/conversations", headers=tenant.headers).json()["items"][0]["id"]
    in_conversation = client.post(
        "/api/v1/files",
        headers=tenant.headers,
        data={"conversation_id": str(conversation_id)},
        files={"file": ("private.pdf", b"%PDF private", "application/pdf")},
    )
    assert in_conversation.status_code == 201
    other = make_tenant("Other Co")
    foreign = client.post(
        "/api/v1/files", headers=other.headers, files={"file": ("foreign.pdf", b"%PDF x", "application/pdf")}
    )
    assert foreign.status_code == 201
    _agent(client, db, tenant)
    page = client.get("/messages/files")
    assert "private.pdf" not in page.text
    assert "foreign.pdf" not in page.text
    assert "No files yet" in page.text


def test_the_library_pages_older_files(
    client: TestClient, db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_settings, "FILES_PAGE_SIZE", 2)
    token = _agent(client, db, tenant)
    for name in ("one.txt", "two.txt", "three.txt"):
        client.post("/messages/files", data={"csrf_token": token}, files={"file": (name, b"data", "text/plain")})
    first = client.get("/messages/files")
    assert "three.txt" in first.text
    assert "two.txt" in first.text
    assert "one.txt" not in first.text
    match = re.search(r'href="(/messages/files\?before=\d+)"', first.text)
    assert match
    older = client.get(match.group(1))
    assert "one.txt" in older.text
    assert "three.txt" not in older.text
    assert 'data-testid="older-files"' not in older.text


def test_signed_out_people_go_to_sign_in(client: TestClient) -> None:
    for url in ("/messages/files", "/settings/snippets", "/settings/closing-categories"):
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")


# ----- notification preferences -----------------------------------------------------------------


def test_notification_preferences_are_saved_and_reach_the_inbox(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _agent(client, db, tenant)
    profile = client.get("/profile")
    assert re.search(r'name="desktop" value="1" checked', profile.text)
    assert re.search(r'name="sound" value="1" checked', profile.text)
    inbox_page = client.get("/messages").text
    assert 'data-notify-desktop="on" data-notify-sound="on"' in inbox_page

    saved = client.post("/profile/notifications", data={"desktop": "1", "csrf_token": token}, follow_redirects=False)
    assert saved.status_code == 303
    with db.transaction(write=False) as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        assert (user.notify_desktop, user.notify_sound) == (True, False)
    assert "Your notification settings have been saved." in client.get("/profile").text
    assert not re.search(r'name="sound" value="1" checked', client.get("/profile").text)
    assert 'data-notify-desktop="on" data-notify-sound="off"' in client.get("/messages").text

    client.post("/profile/notifications", data={"sound": "1", "csrf_token": token})
    assert 'data-notify-desktop="off" data-notify-sound="on"' in client.get("/messages").text
    with db.transaction(write=False) as session:
        owner = session.get(User, tenant.owner_id)
        assert owner is not None
        assert (owner.notify_desktop, owner.notify_sound) == (True, True)  # one person's choice only
    assert client.post("/profile/notifications", data={"sound": "1"}).status_code == 403
