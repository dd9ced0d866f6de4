"""The web shell: sign-in, redirects, CSRF, security headers, languages, profile."""

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

import tertulia
from tertulia.app import create_app
from tertulia.channels.registry import registered_types
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings, get_settings
from tertulia.mail.models import OutgoingEmail
from tertulia.users.invitations import do_invite
from tertulia.users.models import User
from tertulia.web import i18n, templating
from tertulia.web.context import safe_next
from tests.conftest import Tenant
from tests.web.helpers import csrf_from, email_of, sign_in, sign_in_as


def test_pages_redirect_to_login_and_come_back(client: TestClient, db: Database, tenant: Tenant) -> None:
    response = client.get("/contacts?q=ana", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/contacts%3Fq%3Dana"
    htmx = client.get(
        "/contacts/5/fields/email/edit",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/contacts/5?edit=email"},
        follow_redirects=False,
    )
    # An htmx fragment cannot be a landing page: come back to the page it was requested from.
    assert htmx.headers["HX-Redirect"] == "/login?next=/contacts/5%3Fedit%3Demail"

    page = client.get("/login?next=/contacts%3Fq%3Dana")
    signed_in = client.post(
        "/login",
        data={
            "email": email_of(db, tenant.owner_id),
            "password": "owner-password",
            "next": "/contacts?q=ana",
            "csrf_token": csrf_from(page),
        },
        follow_redirects=False,
    )
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/contacts?q=ana"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie  # base_url is plain http in tests
    assert client.get("/contacts").status_code == 200


def test_wrong_password_keeps_the_email_and_throttling_is_explained(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    email = email_of(db, tenant.agent_id)
    token = csrf_from(client.get("/login"))
    responses = [
        client.post("/login", data={"email": email, "password": "nope", "csrf_token": token}) for _ in range(6)
    ]
    assert all(f'value="{email}"' in r.text for r in responses)
    assert responses[0].status_code == 401
    assert "Wrong email or password." in responses[0].text
    response = responses[-1]
    assert response.status_code == 429
    # The first wait is short (login_delay_seconds); it doubles with each further failure.
    assert re.search(r"Too many failed attempts\. Try again in (30|29|31) seconds\.", response.text)


def test_a_browser_that_signed_in_before_is_not_locked_out_by_someone_elses_failures(
    db: Database, tenant: Tenant
) -> None:
    """Five wrong passwords from anywhere used to keep the account's owner out for 15 minutes, on
    every device, and could be repeated for ever."""
    email = email_of(db, tenant.agent_id)
    app = create_app(Settings(), db)
    with TestClient(app) as own, TestClient(app) as stranger:
        sign_in(own, email, "agent-password")
        assert own.cookies.get("tertulia_device")
        assert own.post("/logout", data={"csrf_token": csrf_from(own.get("/contacts"))}).status_code == 200
        token = csrf_from(stranger.get("/login"))
        for _ in range(get_settings().login_max_failures):
            stranger.post("/login", data={"email": email, "password": "nope", "csrf_token": token})
        refused = stranger.post("/login", data={"email": email, "password": "agent-password", "csrf_token": token})
        assert refused.status_code == 429
        sign_in(own, email, "agent-password")  # same address as the stranger, a known device


def test_open_redirects_are_refused() -> None:
    assert safe_next("https://evil.example/") == "/contacts"
    assert safe_next("//evil.example/") == "/contacts"
    assert safe_next("/\\evil.example") == "/contacts"
    assert safe_next("/contacts/5") == "/contacts/5"


def test_forms_without_the_csrf_token_are_refused(client: TestClient, db: Database, tenant: Tenant) -> None:
    # Before sign-in: the double-submit cookie must match the field.
    client.get("/login")
    refused = client.post("/login", data={"email": "a@b.co", "password": "x", "csrf_token": "forged"})
    assert refused.status_code == 403
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    for headers, data in (
        ({}, {"first_name": "Ana"}),
        ({}, {"first_name": "Ana", "csrf_token": "forged"}),
        ({}, {"first_name": "Ana", "csrf_token": "señuelo"}),  # non-ASCII: a 500 when compared as str
        ({"HX-Request": "true", "X-CSRF-Token": "forged"}, {"first_name": "Ana"}),
    ):
        response = client.post("/contacts", data=data, headers=headers, follow_redirects=False)
        assert response.status_code == 403, response.text
    accepted = client.post("/contacts", data={"first_name": "Ana", "csrf_token": token}, follow_redirects=False)
    assert accepted.status_code == 303
    via_htmx = client.post(
        "/contacts",
        data={"first_name": "Bea"},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
        follow_redirects=False,
    )
    assert via_htmx.headers["HX-Redirect"].startswith("/contacts/")


def test_a_cookie_planted_with_a_matching_field_does_not_pass_for_a_sign_in_form(db: Database, tenant: Tenant) -> None:
    """A site that can set cookies for the app's host (a sibling subdomain) used to be able to sign a
    victim in: any value it planted in the anonymous CSRF cookie passed when the form echoed it."""
    email = email_of(db, tenant.agent_id)
    with TestClient(create_app(Settings(), db), raise_server_exceptions=False) as client:
        client.cookies.set("tertulia_csrf", "attacker-chosen-value")
        planted = client.post(
            "/login",
            data={"email": email, "password": "agent-password", "csrf_token": "attacker-chosen-value"},
            follow_redirects=False,
        )
        assert planted.status_code == 403
        # The page's own token is signed, tied to the cookie it set, and works.
        client.cookies.clear()
        page = client.get("/login")
        nonce = page.cookies["tertulia_csrf"]
        token = csrf_from(page)
        assert token != nonce
        signed_in = client.post(
            "/login", data={"email": email, "password": "agent-password", "csrf_token": token}, follow_redirects=False
        )
        assert signed_in.status_code == 303
    with TestClient(create_app(Settings(), db), raise_server_exceptions=False) as other:
        # Another browser's cookie does not go with this token.
        other.get("/login")
        borrowed = other.post("/login", data={"email": email, "password": "agent-password", "csrf_token": token})
        assert borrowed.status_code == 403


def test_behind_https_the_anonymous_csrf_cookie_cannot_be_set_by_other_hosts(db: Database) -> None:
    app = create_app(Settings(base_url="https://crm.example.com"), db)
    with TestClient(app, base_url="https://testserver", raise_server_exceptions=False) as client:
        cookie = next(c for c in client.get("/login").headers.get_list("set-cookie") if "csrf" in c)
    # The __Host- prefix: browsers accept it only from this host itself, Secure, for path /.
    assert cookie.startswith("__Host-tertulia_csrf=")
    assert "secure" in cookie.lower()
    assert "domain=" not in cookie.lower()


def test_security_headers_and_static_caching(client: TestClient) -> None:
    page = client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "<script>" not in page.text  # no inline script anywhere
    css_url = re.search(r'href="(/static/css/app\.css\?v=[0-9a-f]+)"', page.text)
    assert css_url
    css = client.get(css_url.group(1))
    assert css.status_code == 200
    assert "max-age=31536000" in css.headers["cache-control"]
    vendored = re.findall(r'src="(/static/vendor/[^"]+)"', page.text)
    assert any("htmx-2.0" in url for url in vendored)
    assert any("alpinejs-csp" in url for url in vendored)
    assert all(client.get(url).status_code == 200 for url in vendored)


def test_language_follows_user_then_browser_then_workspace(
    client: TestClient, db: Database, make_tenant: object
) -> None:
    assert "Iniciar sesión" in client.get("/login", headers={"Accept-Language": "es-MX,es;q=0.9"}).text
    assert "Sign in" in client.get("/login", headers={"Accept-Language": "fr, en;q=0.5"}).text
    tenant = make_tenant(default_language="es")  # type: ignore[operator]
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    # No user choice and a browser that asks for neither language: the workspace default (Spanish).
    assert "Contactos" in client.get("/contacts", headers={"Accept-Language": "de"}).text
    assert ">Contacts<" in client.get("/contacts", headers={"Accept-Language": "en"}).text
    token = csrf_from(client.get("/contacts"))
    switched = client.post(
        "/language", data={"language": "es", "next": "/contacts", "csrf_token": token}, follow_redirects=False
    )
    assert switched.headers["location"] == "/contacts"
    with db.transaction(write=False) as session:
        user = session.get(User, tenant.owner_id)
        assert user is not None
        assert user.language == "es"
    # The person's own choice beats the browser's.
    assert "Contactos" in client.get("/contacts", headers={"Accept-Language": "en"}).text


def test_negotiation_parses_quality_values() -> None:
    assert i18n.negotiate(None, "fr;q=0.9, es;q=0.8, en;q=0.1", "en") == "es"
    assert i18n.negotiate(None, "en;q=0, es", None) == "es"
    assert i18n.negotiate("en", "es", "es") == "en"
    assert i18n.negotiate(None, None, None) == "en"


@pytest.mark.parametrize("language", ["es", "en"])
def test_catalogues_are_complete(language: str) -> None:
    with (i18n.TRANSLATIONS_DIR / "messages.pot").open("rb") as handle:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    with (i18n.TRANSLATIONS_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = read_po(handle)
    translated = {
        (m.id if isinstance(m.id, str) else m.id[0])
        for m in catalog
        if m.id and (all(m.string) if isinstance(m.string, tuple) else m.string)
    }
    assert template - translated == set()


def test_dates_and_numbers_follow_the_locale_and_zone() -> None:
    moment = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)
    spanish = i18n.Formatter("es", i18n.safe_zone("America/Mexico_City"))
    english = i18n.Formatter("en", i18n.safe_zone("UTC"))
    assert spanish.datetime(moment) == "28 feb 2026, 20:30:00"
    assert english.datetime(moment).startswith("Mar 1, 2026")
    assert spanish.number(1234.5) == "1.234,5"
    assert english.number(1234.5) == "1,234.5"


def test_settings_need_manage_workspace(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    refused = client.get("/settings")
    assert refused.status_code == 403
    assert "You do not have access to this page" in refused.text
    assert 'href="/settings"' not in client.get("/contacts").text
    client.cookies.clear()
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert client.get("/settings").status_code == 200


def test_modules_agents_may_not_open_and_unknown_pages(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/workflows").status_code == 403  # owners and managers only
    missing = client.get("/no-such-page")
    assert missing.status_code == 404
    assert "Page not found" in missing.text
    assert client.get("/api/v1/no-such-thing").headers["content-type"].startswith("application/json")


def test_profile_edit_keeps_input_on_error_then_saves(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    bad = client.post(
        "/profile",
        data={
            "first_name": "Marta",
            "last_name": "Núñez",
            "avatar_url": "ftp://nope",
            "language": "es",
            "timezone": "Europe/Madrid",
            "csrf_token": token,
        },
    )
    assert bad.status_code == 422
    assert 'value="ftp://nope"' in bad.text
    assert 'value="Marta"' in bad.text
    assert "must be an http(s) URL" in bad.text or "debe ser una URL" in bad.text
    good = client.post(
        "/profile",
        data={
            "first_name": "Marta",
            "last_name": "Núñez",
            "avatar_url": "https://example.com/a.png",
            "language": "es",
            "timezone": "Europe/Madrid",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert good.status_code == 303
    saved = client.get("/profile")
    assert "Tu perfil se ha guardado." in saved.text
    status = client.post("/profile/status", data={"status": "busy", "csrf_token": token}, follow_redirects=False)
    assert status.status_code == 303
    with db.transaction(write=False) as session:
        user = session.get(User, tenant.manager_id)
        assert user is not None
        assert (user.first_name, user.timezone, user.activity_status.value) == ("Marta", "Europe/Madrid", "busy")


def test_change_password_signs_out(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    wrong = client.post(
        "/profile/password",
        data={"current_password": "wrong", "new_password": "new-password-1", "csrf_token": token},
    )
    assert wrong.status_code == 422
    assert "is not your current password" in wrong.text
    changed = client.post(
        "/profile/password",
        data={"current_password": "agent-password", "new_password": "new-password-1", "csrf_token": token},
        follow_redirects=False,
    )
    assert changed.headers["location"] == "/login"
    assert client.get("/contacts", follow_redirects=False).status_code == 303
    sign_in(client, email_of(db, tenant.agent_id), "new-password-1")


def test_sign_out(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    out = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.headers["location"] == "/login"
    assert "You have been signed out." in client.get("/login").text
    assert client.get("/contacts", follow_redirects=False).status_code == 303


def _not_stored(response: Response) -> Response:
    """Pages at a URL with a one-time secret must not be kept by browsers or proxies."""
    assert response.headers.get("cache-control") == "no-store", (response.url, response.headers.get("cache-control"))
    return response


def test_invitation_and_password_reset_pages(client: TestClient, db: Database, tenant: Tenant) -> None:
    assert _not_stored(client.get("/invitations/unknown-token")).status_code == 404
    assert _not_stored(client.get("/password-reset/unknown-token")).status_code == 404
    with db.transaction() as session:
        issued = do_invite(session, tenant.actor(), "new.person@example.com", "agent")
    token = issued.url.rsplit("/", 1)[1]
    page = _not_stored(client.get(f"/invitations/{token}"))
    assert page.status_code == 200
    assert "new.person@example.com" in page.text
    short = _not_stored(
        client.post(
            f"/invitations/{token}",
            data={"first_name": "Nina", "last_name": "Paz", "password": "short", "csrf_token": csrf_from(page)},
        )
    )
    assert short.status_code == 422
    assert 'value="Nina"' in short.text
    joined = client.post(
        f"/invitations/{token}",
        data={"first_name": "Nina", "last_name": "Paz", "password": "long-enough-1", "csrf_token": csrf_from(page)},
        follow_redirects=False,
    )
    assert _not_stored(joined).headers["location"] == "/contacts"
    assert "Nina Paz" in client.get("/contacts").text

    client.cookies.clear()
    forgot = client.get("/forgot-password")
    sent = client.post(
        "/forgot-password",
        data={"email": "new.person@example.com", "csrf_token": csrf_from(forgot)},
        follow_redirects=False,
    )
    assert sent.headers["location"] == "/login"
    with db.transaction(write=False) as session:
        mail = session.scalars(select(OutgoingEmail).where(OutgoingEmail.to_address == "new.person@example.com"))
        link = next(m for m in (re.search(r"/password-reset/(\S+)", e.body) for e in mail) if m)
    reset_page = _not_stored(client.get(f"/password-reset/{link.group(1)}"))
    assert reset_page.status_code == 200
    too_short = _not_stored(
        client.post(reset_page.url.path, data={"password": "short", "csrf_token": csrf_from(reset_page)})
    )
    assert too_short.status_code == 422
    assert "must be at least 8 characters" in too_short.text
    done = client.post(
        reset_page.url.path,
        data={"password": "another-password", "csrf_token": csrf_from(reset_page)},
        follow_redirects=False,
    )
    assert _not_stored(done).headers["location"] == "/login"
    sign_in(client, "new.person@example.com", "another-password")


def test_session_cookie_is_secure_behind_https(db: Database, tenant: Tenant) -> None:
    app = create_app(Settings(base_url="https://crm.example.com"), db)
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()
        signed_in = client.post(
            "/login",
            data={"email": email_of(db, tenant.agent_id), "password": "agent-password", "csrf_token": csrf_from(page)},
            follow_redirects=False,
        )
        cookie = signed_in.headers["set-cookie"].lower()
        assert "secure" in cookie
        assert "httponly" in cookie


def test_malformed_page_parameters_get_an_error_page(client: TestClient, db: Database, tenant: Tenant) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    response = client.get("/contacts?after=abc")
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("text/html")
    assert client.get("/api/v1/contacts?limit=abc", headers=tenant.headers).json()["error"]["code"] == (
        "validation_failed"
    )
    # The error page names the site's icon, so the browser asks for no /favicon.ico (a 404 of its own).
    icon = re.search(r'rel="icon" href="([^"]+)"', response.text)
    assert icon is not None
    assert client.get(icon.group(1)).status_code == 200


def test_every_icon_the_pages_ask_for_is_drawn() -> None:
    # The icon macro draws nothing for a name it lacks: the empty states and Settings > Channels
    # showed blank squares for "link" (webhooks) and for WhatsApp channels.
    used = {"link", "sms", *registered_types()}
    for folder in Path(tertulia.__file__).parent.rglob("templates"):
        for template in folder.rglob("*.html"):
            used.update(re.findall(r'icon\("([a-z_-]+)"', template.read_text()))
    macro = templating.environment.from_string('{% from "macros.html" import icon %}{{ icon(name) }}')
    blank = sorted(name for name in used if not re.search(r"<(path|rect|circle)", macro.render(name=name)))
    assert blank == []
