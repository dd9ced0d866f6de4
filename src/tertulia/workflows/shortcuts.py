"""Shortcuts: a person runs a published workflow whose trigger is `shortcut` on a contact, from the
inbox or the contact's page (or `POST /api/v1/workflows/{id}/run`), answering its small form. The
answers are checked against the form (kinds, required fields, options) and become `trigger.<name>`
variables; `trigger.user_id` is who ran it and `trigger.conversation_id` the conversation it was run
from. Running one needs `edit_contacts` (agents have it), not `manage_workflows`.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.orm import Session

from tertulia.contacts.models import Contact
from tertulia.conversations import repository as conversations_repo
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.users.permissions import Actor, Permission
from tertulia.workflows import repository as repo
from tertulia.workflows import starts
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowStatus
from tertulia.workflows.trigger_kinds import FormField, ShortcutConfig

MAX_ANSWER = 1000
REQUIRED = "this field is required"
NOT_A_NUMBER = "must be a number"
NOT_AN_OPTION = "must be one of the options"
TOO_LONG = "must be at most 1,000 characters"
NOT_IN_FORM = "no such field in the form"


@dataclass(frozen=True)
class Shortcut:
    workflow: Workflow
    form: tuple[FormField, ...]


def published_shortcuts(session: Session, actor: Actor) -> list[Shortcut]:
    """The workspace's published shortcut workflows, by name."""
    actor.require(Permission.EDIT_CONTACTS)
    found: list[Shortcut] = []
    for version in repo.published_versions(session, actor.workspace_id, ("shortcut",)):
        workflow = session.get(Workflow, version.workflow_id)
        if workflow is None or workflow.status != WorkflowStatus.PUBLISHED:
            continue
        try:
            _, checked = starts.published(session, workflow, "shortcut")
        except Conflict:
            continue  # a definition that no longer checks is shown on its own page
        found.append(Shortcut(workflow, form_of(checked.trigger_config)))
    return sorted(found, key=lambda s: (s.workflow.name.casefold(), s.workflow.id))


def form_of(trigger_config: Any) -> tuple[FormField, ...]:
    """The form of a checked shortcut trigger's config; none for any other trigger."""
    return tuple(trigger_config.form) if isinstance(trigger_config, ShortcutConfig) else ()


def drafted_form(definition: Mapping[str, Any]) -> tuple[FormField, ...]:
    """The form of a definition as saved (it may not check yet): its shortcut trigger's fields, or
    none when the trigger is not a shortcut or its form is not valid."""
    trigger = definition.get("trigger")
    if not isinstance(trigger, Mapping) or trigger.get("type") != "shortcut":
        return ()
    try:
        return form_of(ShortcutConfig.model_validate(trigger.get("config") or {}))
    except PydanticValidationError:
        return ()


def clean_answers(
    form: tuple[FormField, ...], answers: Mapping[str, Any], *, prefix: str = "answers"
) -> dict[str, Any]:
    """The answers as variables; a ValidationFailed with every bad one at `<prefix>.<name>`."""
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    names = {item.name for item in form}
    for name in answers:
        if name not in names:
            errors[f"{prefix}.{name}"] = NOT_IN_FORM
    for item in form:
        raw = answers.get(item.name)
        if isinstance(raw, str):
            raw = raw.strip()
        if raw is None or raw == "":
            if item.required:
                errors[f"{prefix}.{item.name}"] = REQUIRED
            cleaned[item.name] = None
            continue
        if item.kind == "number":
            number = _number(raw)
            if number is None:
                errors[f"{prefix}.{item.name}"] = NOT_A_NUMBER
            cleaned[item.name] = number
        elif item.kind == "choice":
            chosen = next((o for o in item.options if isinstance(raw, str) and o.casefold() == raw.casefold()), None)
            if chosen is None:
                errors[f"{prefix}.{item.name}"] = NOT_AN_OPTION
            cleaned[item.name] = chosen
        else:
            text = raw if isinstance(raw, str) else str(raw)
            if isinstance(raw, bool | dict | list) or len(text) > MAX_ANSWER:
                errors[f"{prefix}.{item.name}"] = TOO_LONG if len(text) > MAX_ANSWER else "must be text"
            cleaned[item.name] = text
    if errors:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in errors.items()), details=errors)
    return cleaned


def _number(raw: Any) -> int | float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        text = raw.replace(",", ".") if raw.count(",") == 1 and "." not in raw else raw
        try:
            value = float(text)
        except ValueError:
            return None
    else:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def do_run_shortcut(
    session: Session,
    actor: Actor,
    workflow_id: int,
    contact: Contact,
    answers: Mapping[str, Any],
    *,
    conversation_id: int | None = None,
) -> WorkflowRun:
    """Start the shortcut on the contact: 404 for no such workflow in the workspace (or, for someone
    who cannot manage workflows, one that is not a published shortcut), 409 when it is not a
    published shortcut or the contact may not start it (blocked, conditions, once per contact,
    already in it), 422 for bad answers."""
    actor.require(Permission.EDIT_CONTACTS)
    workflow = repo.workflow(session, actor.workspace_id, workflow_id)
    if workflow is None or contact.workspace_id != actor.workspace_id:
        raise NotFound(f"No workflow {workflow_id}.")
    try:
        version, checked = starts.published(session, workflow, "shortcut")
    except Conflict:
        if not actor.can(Permission.MANAGE_WORKFLOWS):
            # Agents see workflows only as the shortcuts of their menu: any other id is no workflow
            # to them (its status, trigger or checker's complaints are the managers' to read).
            raise NotFound(f"No workflow {workflow_id}.") from None
        raise
    values = clean_answers(form_of(checked.trigger_config), answers)
    if conversation_id is not None:
        conversation = conversations_repo.open_conversation(session, actor.workspace_id, contact.id)
        if conversation is None or conversation.id != conversation_id:
            conversation_id = None  # only the contact's own open conversation is passed on
    values.update({"user_id": actor.user_id, "conversation_id": conversation_id})
    return starts.start(session, workflow, version, checked, contact, values, conversation_id=conversation_id)
