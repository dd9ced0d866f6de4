"""Incoming webhooks: each workflow whose trigger is `incoming_webhook` has a URL with a secret.

    POST /hooks/workflows/{workflow id}/{secret}             the secret in the path
    POST /hooks/workflows/{workflow id}  X-Tertulia-Secret   or in a header

The secret is an HMAC-SHA256 of the workflow's id and a nonce under the installation's secret key
(`kit.security.sign`), so it is never stored and the workflow's page can show it again; it is
compared in constant time. Regenerating it draws a new nonce (`WorkflowHook`): the old URL stops
working at once. Rotating the installation's secret key changes every hook URL. A wrong or missing
secret is answered 404, like an unknown workflow, and nothing of the request is stored.

The body must be a JSON object of at most `MAX_BODY` bytes, nested at most `MAX_NESTING` levels
(deeper is a 422, never a 500 from the parser's recursion). `NaN` and `Infinity` are not JSON (422).
Numbers no 64-bit integer or finite double holds (`1e999`, a 30-digit id) are kept as the text they
were written as, and NUL characters and unpaired surrogates in names and texts become U+FFFD: the
sender is another system, which may not be able to change its payload, and both databases store the
result alike (PostgreSQL refuses NUL and lone surrogates in JSON, SQLite kept them). Its fields, flattened (`{"order":
{"total": 5}}` is `order.total`; list items are `_0`, `_1`...; names lower-cased with anything but
letters, digits and `_` made `_`), become `trigger.*` variables, at most `MAX_VARIABLES` of them,
texts cut at `MAX_VALUE` characters. The contact is the one with the body's `id`, else its `email`,
else its `phone`; with none found by email or phone it is created through the contacts service
(`do_create_contact`, the API's own validation, with `first_name` and `last_name` when given). An
`id` that names no contact creates nothing.

The answer is 202 with the run's id, or with the reason no run started (not published, contact
blocked, conditions not met, already in the workflow, once per contact): the request was valid and
nothing will come of sending it again.
"""

import json
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.security import same_secret, sign
from tertulia.kit.text import replace_unsafe_characters
from tertulia.users.permissions import Actor, Permission
from tertulia.workflows import language as lang
from tertulia.workflows import repository as repo
from tertulia.workflows import starts
from tertulia.workflows.models import Workflow, WorkflowHook
from tertulia.workspaces.service import get_workspace

PATH = "/hooks/workflows"
HEADER = "X-Tertulia-Secret"
SIGNING_PURPOSE = "workflows.hook"
MAX_BODY = 64 * 1024
MAX_NESTING = 64
MAX_VARIABLES = 100
MAX_DEPTH = 5
MAX_LIST_ITEMS = 20
MAX_VALUE = 1000
# Identifying fields of the body, in the order they are tried.
IDENTITY_FIELDS = ("id", "email", "phone")
_UNSAFE = re.compile(r"[^a-z0-9_]")


def hook_actor(workspace_id: int) -> Actor:
    """Who creates contacts for a webhook (events say "webhook")."""
    return Actor.system(workspace_id, "webhook")


def secret_of(session: Session, workflow_id: int) -> str:
    """The workflow's current secret: an HMAC of its id and its nonce (none before the first
    regeneration) under the installation's key."""
    nonce = session.scalar(select(WorkflowHook.nonce).where(WorkflowHook.workflow_id == workflow_id)) or ""
    return sign(SIGNING_PURPOSE, f"{workflow_id}:{nonce}")


def do_regenerate(session: Session, actor: Actor, workflow: Workflow) -> str:
    """A new secret for the workflow's URL (the old one stops working at once)."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    hook = session.scalar(select(WorkflowHook).where(WorkflowHook.workflow_id == workflow.id).with_for_update())
    nonce = secrets.token_urlsafe(24)
    if hook is None:
        session.add(
            WorkflowHook(workspace_id=workflow.workspace_id, workflow_id=workflow.id, nonce=nonce, rotated_at=utcnow())
        )
    else:
        hook.nonce = nonce
        hook.rotated_at = utcnow()
    session.flush()
    return secret_of(session, workflow.id)


@dataclass(frozen=True)
class HookInfo:
    url: str
    secret: str
    header: str
    curl: str


def hook_info(session: Session, actor: Actor, workflow: Workflow, base_url: str) -> HookInfo:
    """The URL and a curl command that calls it."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    secret = secret_of(session, workflow.id)
    url = f"{base_url.rstrip('/')}{PATH}/{workflow.id}/{secret}"
    curl = (
        f"curl -X POST '{url}' -H 'Content-Type: application/json' "
        """-d '{"email": "ana@example.com", "first_name": "Ana", "order": {"id": "A-1001", "total": 59.9}}'"""
    )
    return HookInfo(url=url, secret=secret, header=HEADER, curl=curl)


def verified_workflow(session: Session, workflow_id: int, secret: str | None) -> Workflow:
    """The workflow whose hook secret this is; NotFound for a wrong secret as for no workflow
    (compared in constant time)."""
    matched = same_secret(secret or "", secret_of(session, workflow_id))
    workflow = session.get(Workflow, workflow_id) if matched else None
    if workflow is None:
        raise NotFound("No such webhook.")
    return workflow


# ----- the body ---------------------------------------------------------------------------------


NOT_JSON = "must be JSON"
NOT_AN_OBJECT = "must be a JSON object"
TOO_DEEP = f"must not be nested more than {MAX_NESTING} levels deep"
_INT64 = 2**63


def _not_a_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int | str:
    # Counted in digits first: int() refuses over 4,300 of them, and a 64-bit id has at most 19.
    if len(text.lstrip("-")) <= 19 and -_INT64 <= (value := int(text)) < _INT64:
        return value
    return text


def _decimal(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request's JSON object, bounded and with its texts made storable (the module's docstring);
    ValidationFailed at `body` when it is not one."""
    try:
        body = json.loads(raw, parse_int=_integer, parse_float=_decimal, parse_constant=_not_a_constant)
    except RecursionError as exc:
        raise ValidationFailed.field("body", TOO_DEEP) from exc
    except ValueError as exc:  # not UTF-8, not JSON, NaN or Infinity
        raise ValidationFailed.field("body", NOT_JSON) from exc
    if not isinstance(body, dict):
        raise ValidationFailed.field("body", NOT_AN_OBJECT)
    if lang.nesting_depth(body, MAX_NESTING) > MAX_NESTING:
        raise ValidationFailed.field("body", TOO_DEEP)
    cleaned: dict[str, Any] = replace_unsafe_characters(body)
    return cleaned


def _name(key: Any) -> str:
    name = _UNSAFE.sub("_", str(key).strip().lower())[:50]
    if name and name[0].isdigit():
        name = f"_{name}"[:50]
    return name


def flatten(body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's values by dotted name (bounded: see the module's docstring)."""
    found: dict[str, Any] = {}

    def visit(value: Any, name: str, depth: int) -> None:
        if len(found) >= MAX_VARIABLES:
            return
        if isinstance(value, Mapping) and depth < MAX_DEPTH:
            for key, item in value.items():
                part = _name(key)
                if part:
                    visit(item, f"{name}.{part}" if name else part, depth + 1)
            return
        if isinstance(value, list) and depth < MAX_DEPTH:
            for index, item in enumerate(value[:MAX_LIST_ITEMS]):
                visit(item, f"{name}._{index}" if name else f"_{index}", depth + 1)
            return
        if isinstance(value, Mapping | list):
            return  # deeper than MAX_DEPTH: left out
        if isinstance(value, str):
            value = value[:MAX_VALUE]
        found.setdefault(name, value)

    visit(body, "", 0)
    return found


def find_or_create_contact(session: Session, workspace_id: int, body: Mapping[str, Any]) -> Contact:
    """The contact the body names (id, email or phone), created when an email or phone is new."""
    workspace = get_workspace(session, workspace_id)
    given = {name: body.get(name) for name in IDENTITY_FIELDS if body.get(name) not in (None, "")}
    if not given:
        raise ValidationFailed(
            "The body needs the contact's id, email or phone.", details={"email": "id, email or phone is required"}
        )
    for name, value in given.items():
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValidationFailed.field(name, "must be text")
        try:
            contact = contacts_service.find_contact(session, workspace, f"{name}:{value}")
        except ValidationFailed as exc:
            raise ValidationFailed.field(name, str((exc.details or {}).get("identifier", exc.message))) from exc
        if contact is not None:
            return contact
        if name == "id":
            raise ValidationFailed.field("id", f"no contact with id {value}")
    values: dict[str, Any] = {name: given[name] for name in ("email", "phone") if name in given}
    for name in ("first_name", "last_name"):
        if isinstance(body.get(name), str):
            values[name] = body[name]
    try:
        with session.begin_nested():
            return contacts_service.do_create_contact(session, hook_actor(workspace_id), values)
    except IntegrityError:
        # A request for the same new contact committed first (PostgreSQL): it is the contact now.
        for name in ("email", "phone"):
            if name in given:
                contact = contacts_service.find_contact(session, workspace, f"{name}:{given[name]}")
                if contact is not None:
                    return contact
        raise


@dataclass(frozen=True)
class Received:
    run_id: int | None
    contact_id: int | None
    reason: str | None
    message: str | None


def receive(session: Session, workflow: Workflow, body: Mapping[str, Any]) -> Received:
    """Start the workflow for the body's contact; why not, when it does not."""
    try:
        version, checked = starts.published(session, workflow, "incoming_webhook")
    except Conflict as exc:
        return Received(None, None, exc.code, exc.message)
    contact = find_or_create_contact(session, workflow.workspace_id, body)
    try:
        run = starts.start(session, workflow, version, checked, contact, flatten(body))
    except Conflict as exc:
        return Received(None, contact.id, exc.code, exc.message)
    return Received(run.id, contact.id, None, None)


def access_hook_workflow(session: Session, actor: Actor, workflow_id: int) -> Workflow:
    actor.require(Permission.MANAGE_WORKFLOWS)
    workflow = repo.workflow(session, actor.workspace_id, workflow_id)
    if workflow is None:
        raise NotFound(f"No workflow {workflow_id}.")
    return workflow
