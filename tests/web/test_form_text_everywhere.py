"""Every page form, present and future, shows kit.text's refusal (NUL, unpaired surrogates) beside
the field that holds it, in the reader's language, and stores nothing: the forms are taken from the
app's own routes, so a new one is checked as soon as it is mounted.

A lone surrogate cannot reach a form (its UTF-8 bytes are invalid and Starlette decodes them as
U+FFFD), so NUL stands for both here; the shared rule is tested with both in tests/kit/test_input_text.py.
"""

import html
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin
from urllib.parse import quote_from_bytes

from fastapi import routing
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select

from tertulia.broadcasts.service import DraftFields, do_create_broadcast
from tertulia.channels.service import do_create_channel
from tertulia.channels.views import SMS_FORMS
from tertulia.contacts.import_jobs import do_create_import
from tertulia.contacts.models import Tag
from tertulia.conversations.service import do_create_closing_category
from tertulia.kit.db import Database
from tertulia.kit.http import is_page_path
from tertulia.models import Base
from tertulia.users.invitations import do_invite
from tertulia.users.models import Role
from tertulia.users.passwords import do_request_password_reset
from tertulia.users.teams import do_create_team
from tertulia.web.context import LANGUAGE_COOKIE
from tertulia.workflows.service import do_create_workflow
from tests.channels import meta_samples as meta
from tests.channels.fake_telegram import BOT_TOKEN
from tests.conftest import Tenant
from tests.conversations.support import make_webchat
from tests.users.helpers import link_token, outbox
from tests.web.helpers import email_of, sign_in_as

MESSAGES = {
    "en": "must not contain NUL characters or unpaired surrogates",
    "es": "no debe contener caracteres NUL ni sustitutos sin pareja",
}
FIELD_ERROR = re.compile(r'<(p|span|div|dd)\b([^>]*class="[^"]*field-error[^"]*"[^>]*)>(.*?)</\1>', re.S)

# Values other fields need so that the request reaches the page's own checks (a required field left
# out is refused before the page runs).
VALID = {
    "email": "ana@example.com",
    "password": "a-long-enough-password",
    "new_password": "a-long-enough-password",
    "current_password": "owner-password",
    "language": "es",
    "role": "agent",
    "status": "online",
    "type": "text",
    "mode": "create",
    "direction": "up",
    "action": "tag",
    "name": "Nombre",
    "label": "Etiqueta",
    "key": "plan_b",
    "shortcut": "saludo",
    "text": "Hola",
    "tag": "vip",
}
# Fields the reader never types (hidden values, a button's own value, the file input): their refusal
# is shown at the top of the form or beside the control that sent it, so any field error will do.
NOT_TYPED = {
    "next",
    "then",
    "return_to",
    "ids",
    "confirm",
    "segment",
    "action",
    "csrf_token",
    "members",
    "file",
    "state",
    "code",
    # The workflow builder's conditions dialog: hidden, or posted by its script.
    "editor_scope",
    "editor_source",
    "editor_definition",
    "editor_variables",
}
# Forms a page reads itself (request.state.form) rather than through declared Form() parameters.
HAND_READ = {
    "/contacts/import": ["file"],
    "/messages/files": ["file"],
    "/settings/snippets": ["file"],
    "/settings/snippets/{snippet_id}": ["file"],
    "/contacts/segments/{segment_id}/filter": ["g0.c0.value"],
    "/contacts/filter/panel": ["g0.c0.value"],
    "/contacts/filter/count": ["g0.c0.value"],
    "/contacts/import/{job_id}/start": ["col-0"],
    "/contacts/{contact_id}/merge/{other_id}": ["keep.first_name"],
    "/contacts/segments": ["g0.c0.value"],
    "/workflows/conditions/panel": ["g0.c0.value"],
    "/workflows/conditions/apply": ["g0.c0.value"],
    "/workflows/conditions/count": ["g0.c0.value"],
}
FILTER_FIELDS = {"g0.match": "all", "g0.c0.cat": "field:first_name", "g0.c0.op": "is"}


@dataclass
class Form:
    path: str
    fields: list[str]
    required: list[str]
    # Fields parsed as numbers, ids or booleans before the page runs: NUL there is a malformed value
    # (the 4xx error page, 404 for an id), not text the page shows again.
    not_text: list[str]
    # The page reads fields of its own from the form (request.state.form, ctx.form): HAND_READ names them.
    reads_by_hand: bool


def _is_text(annotation: Any) -> bool:
    return annotation is str or (get_origin(annotation) is not None and str in get_args(annotation))


def page_forms(app: Any) -> Iterator[Form]:
    """Every POST route of the pages with the fields its form sends."""
    for context in routing.iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, routing.APIRoute) or "POST" not in route.methods:
            continue
        if not is_page_request_path(context.path) or context.path.startswith("/channels/"):
            continue
        fields: list[str] = []
        required: list[str] = []
        not_text: list[str] = []
        for param in context.dependant.body_params:
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                for name, info in annotation.model_fields.items():
                    fields.append(info.alias or name)
                    if info.is_required():
                        required.append(info.alias or name)
                    if not _is_text(info.annotation):
                        not_text.append(info.alias or name)
            else:
                fields.append(param.alias)
                if param.field_info.is_required():
                    required.append(param.alias)
                if not _is_text(annotation):
                    not_text.append(param.alias)
        fields.extend(HAND_READ.get(context.path, []))
        source = inspect.getsource(route.endpoint)
        reads_by_hand = "state.form" in source or "ctx.form" in source
        yield Form(context.path, fields, required, not_text, reads_by_hand)


def is_page_request_path(path: str) -> bool:
    return bool(is_page_path(path))


def _world(client: TestClient, db: Database, tenant: Tenant) -> dict[str, str]:
    """One of everything a form's URL can name, in the tenant's workspace."""
    api = tenant.headers
    contact = client.post("/api/v1/contacts", headers=api, json={"first_name": "Ana", "tags": ["vip"]}).json()
    other = client.post("/api/v1/contacts", headers=api, json={"first_name": "Anita"}).json()
    segment = client.post("/api/v1/segments", headers=api, json={"name": "Clientes"}).json()
    snippet = client.post("/api/v1/snippets", headers=api, json={"shortcut": "hola", "text": "Hola"}).json()
    field = client.post(
        "/api/v1/custom-fields", headers=api, json={"key": "plan", "label": "Plan", "type": "text"}
    ).json()
    uploaded = client.post("/api/v1/files", headers=api, files={"file": ("nota.txt", b"hola", "text/plain")}).json()
    webchat = make_webchat(db, tenant)
    webhook = client.post(
        "/api/v1/webhooks", headers=api, json={"url": "https://hooks.example.invalid/x", "events": ["contact.created"]}
    ).json()
    webhook_delivery = client.post(f"/api/v1/webhooks/{webhook['id']}/test", headers=api).json()
    knowledge = client.post(
        "/api/v1/knowledge/entries",
        headers=api,
        json={"question": "¿Horario?", "answer": "De 9 a 18.", "language": "es"},
    ).json()
    with db.transaction() as session:
        actor = tenant.actor()
        team = do_create_team(session, actor, "Ventas")
        invitation = do_invite(session, actor, "nueva@example.com", Role.AGENT)
        category = do_create_closing_category(session, actor, "Resuelto")
        telegram = do_create_channel(session, actor, "telegram", "Bot", {}, {"bot_token": BOT_TOKEN})
        # As connecting would have left it (the page shows the bot's name).
        telegram.config = {**telegram.config, "bot": {"id": 1, "first_name": "Bot", "username": "tertulia_bot"}}
        instagram = do_create_channel(
            session,
            actor,
            "instagram",
            "Cuenta",
            {"ig_user_id": meta.IG_ID},
            {"access_token": meta.PAGE_TOKEN, "app_secret": meta.APP_SECRET},
        )
        messenger = do_create_channel(
            session,
            actor,
            "messenger",
            "Página",
            {"page_id": meta.PAGE_ID},
            {"page_access_token": meta.PAGE_TOKEN, "app_secret": meta.APP_SECRET},
        )
        twilio = do_create_channel(
            session,
            actor,
            "twilio",
            "SMS",
            {"account_sid": "AC" + "1" * 32, "from_number": "+14155550100", "api_key_sid": "SK" + "3" * 32},
            {"auth_token": "2" * 32, "api_key_secret": "secreto"},
        )
        vonage = do_create_channel(
            session,
            actor,
            "vonage",
            "SMS Vonage",
            {"api_key": "abcd1234", "from_number": "+447400123456"},
            {"api_secret": "secreto", "signature_secret": "firma"},
        )
        bird = do_create_channel(
            session,
            actor,
            "bird",
            "SMS Bird",
            {"workspace_id": "ws-1", "channel_id": "ch-1", "from_number": "+31612345678"},
            {"access_key": "clave", "signing_key": "firma"},
        )
        email = do_create_channel(
            session,
            actor,
            "email",
            "Correo",
            {"address": "soporte@example.com", "incoming_host": "imap.example.com", "smtp_host": "smtp.example.com"},
            {"password": "secreto"},
        )
        job = do_create_import(session, actor, "c.csv", b"first_name\nLuz\n")
        broadcast = do_create_broadcast(session, actor, DraftFields(name="Aviso"))
        tag_id = session.scalar(select(Tag.id).where(Tag.workspace_id == tenant.workspace_id))
        ids = {
            "team_id": team.id,
            "invitation_id": invitation.invitation.id,
            "telegram": telegram.id,
            "messenger": messenger.id,
            "instagram": instagram.id,
            "twilio": twilio.id,
            "vonage": vonage.id,
            "bird": bird.id,
            "email": email.id,
            "job_id": job.id,
            "category_id": category.id,
            "broadcast_id": broadcast.id,
            "workflow_id": do_create_workflow(
                session, actor, "Flujo", {"trigger": {"type": "manual"}, "steps": [{"id": "a", "type": "unassign"}]}
            ).id,
        }
    with db.transaction() as session:
        do_request_password_reset(session, email_of(db, tenant.manager_id))
    reset = link_token(outbox(db, email_of(db, tenant.manager_id))[-1].body, "/password-reset")
    return {
        "contact_id": str(contact["id"]),
        "other_id": str(other["id"]),
        "segment_id": str(segment["id"]),
        "snippet_id": str(snippet["id"]),
        "category_id": str(ids["category_id"]),
        "broadcast_id": str(ids["broadcast_id"]),
        "workflow_id": str(ids["workflow_id"]),
        "template_id": "assign_agent",
        "key": field["key"],
        "file_id": str(uploaded["id"]),
        "tag_id": str(tag_id),
        "team_id": str(ids["team_id"]),
        "invitation_id": str(ids["invitation_id"]),
        "job_id": str(ids["job_id"]),
        "user_id": str(tenant.agent_id),
        "name": "first_name",
        "webchat": str(webchat.id),
        "endpoint_id": str(webhook["id"]),
        "delivery_id": str(webhook_delivery["id"]),
        "entry_id": str(knowledge["id"]),
        "telegram": str(ids["telegram"]),
        "messenger": str(ids["messenger"]),
        "instagram": str(ids["instagram"]),
        "twilio": str(ids["twilio"]),
        "vonage": str(ids["vonage"]),
        "bird": str(ids["bird"]),
        "email": str(ids["email"]),
        "/password-reset/{token}": reset,
        "/invitations/{token}": invitation.token,
    }


def _url(path: str, field: str, world: dict[str, str]) -> str:
    channel = world["webchat"]
    if path.endswith("/meta"):
        channel = world["instagram"] if field == "access_token" else world["messenger"]
    elif path.endswith(("/telegram", "/menu")) and "{channel_id}" in path:
        channel = world["telegram"]
    # An SMS form shows the fields of its provider only: each field is tried on a provider that has it.
    provider = next((name for name, (config, secrets) in SMS_FORMS.items() if field in (*config, *secrets)), "twilio")
    if path.endswith(("/sms", "/sms/test")):
        channel = world[provider]
    if path.endswith(("/email", "/email/test")) and "{channel_id}" in path:
        channel = world["email"]

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "provider":
            return provider
        if name == "channel_id":
            return channel
        if name == "token":
            return world[path]
        return world[name]

    return re.sub(r"\{(\w+)\}", fill, path)


def _body(form: Form, field: str, token: str) -> tuple[bytes, str]:
    nul = quote_from_bytes(b"a\x00b")
    if field == "file":
        boundary = "tertuliaboundary"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n',
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a\x00b.csv"\r\n'
            "Content-Type: text/csv\r\n\r\nfirst_name\r\nLuz\r\n",
            f"--{boundary}--\r\n",
        ]
        return "".join(parts).encode(), f"multipart/form-data; boundary={boundary}"
    values = {name: quote_from_bytes(VALID.get(name, "x").encode()) for name in form.required}
    if field.startswith("g0."):
        values.update(FILTER_FIELDS)
    values[field] = nul
    values["csrf_token"] = token
    return "&".join(f"{k}={v}" for k, v in values.items()).encode(), "application/x-www-form-urlencoded"


def _shown_beside(page: str, field: str, message: str) -> bool:
    """The message is in a field error that belongs to `field`: the control named `field` points at
    it (aria-describedby), or its id is named after the field (`email-error`, `err-name`, the filter
    panel's `err-g0-c0` for a condition's fields); hidden fields' errors may sit anywhere in the form."""
    described: set[str] = set()
    for control in re.findall(rf'<(?:input|select|textarea)\b[^>]*\bname="{re.escape(field)}"[^>]*>', page):
        described.update(re.findall(r'aria-describedby="([^"]+)"', control))
    slot = "g0-c0" if field.startswith("g0.c0.") else field
    for _tag, attributes, content in FIELD_ERROR.findall(page):
        if html.unescape(re.sub(r"<[^>]+>", "", content)).strip() != message:
            continue
        ids = re.findall(r'\bid="([^"]+)"', attributes)
        if field in NOT_TYPED or any(found in described or slot in found for found in ids):
            return True
    return False


# Every table's row count in one statement: it runs twice per form field, and a statement per table
# was half the test's time.
_COUNT_EVERY_TABLE = select(
    *(
        select(func.count()).select_from(table).scalar_subquery().label(table.name)
        for table in Base.metadata.sorted_tables
    )
)


def _counts(db: Database) -> dict[str, int]:
    """Rows per table: a refused form adds and removes none."""
    with db.transaction(write=False) as session:
        row = session.execute(_COUNT_EVERY_TABLE).one()
    return {table.name: row._mapping[table.name] or 0 for table in Base.metadata.sorted_tables}


def test_every_page_form_shows_nul_beside_the_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    world = _world(client, db, tenant)
    forms = list(page_forms(client.app))
    assert len(forms) > 50, [f.path for f in forms]  # the walk really finds the app's forms
    for path in HAND_READ:
        assert path in {f.path for f in forms}, path
    failures: list[str] = []
    checked = 0
    for form in forms:
        if form.reads_by_hand:
            assert form.path in HAND_READ, f"{form.path} reads its form by hand: list its fields in HAND_READ"
        for index, field in enumerate(form.fields):
            for language in ("es", "en") if index < 2 else (("es", "en")[index % 2],):
                token = _csrf(client) or (sign_in_as(client, db, tenant.owner_id, "owner-password"))
                before = _counts(db)
                body, content_type = _body(form, field, token)
                headers = {"Content-Type": content_type, "Accept-Language": language}
                client.cookies.set(LANGUAGE_COOKIE, language)
                response = client.post(
                    _url(form.path, field, world), content=body, headers=headers, follow_redirects=False
                )
                checked += 1
                where = f"POST {form.path} {field}={language!r}: {response.status_code}"
                if not 400 <= response.status_code < 500:
                    failures.append(f"{where} (not a 4xx)")
                elif field not in form.not_text and not _shown_beside(response.text, field, MESSAGES[language]):
                    failures.append(f"{where} (message not beside the field)")
                elif _counts(db) != before:
                    failures.append(f"{where} (something was stored)")
    assert not failures, "\n".join(failures)
    assert checked > 80


def _csrf(client: TestClient) -> str | None:
    """The signed-in session's form token; None once a form has signed the owner out."""
    page = client.get("/profile", follow_redirects=False)
    match = re.search(r'name="csrf-token" content="([^"]+)"', page.text) if page.status_code == 200 else None
    return match.group(1) if match else None
