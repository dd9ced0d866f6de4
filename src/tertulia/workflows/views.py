"""Workflows in the web app (Owners and Managers, as the API): the list with each workflow's status,
runs in progress and last error, and a workflow's page with its visual builder (and the JSON it
edits, under "Advanced"), what is wrong with it, a simulation on a contact, publish and stop, and
its runs with their logs.

The builder (web/static/js/workflow-builder.js) draws its forms from the JSON schemas of the
language's step and trigger configs (`builder_data`), so a step type added to language.py gets a
form without a change here; labels for the names we know are translated, others read as the
schema's title.
"""

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Form, Path
from jinja2.utils import htmlsafe_json_dumps
from sqlalchemy import select
from starlette.datastructures import UploadFile
from starlette.responses import Response

from tertulia.channels.models import Channel
from tertulia.channels.service import provider_name
from tertulia.contacts import service as contacts_service
from tertulia.conversations.models import ClosingCategory, OpeningSource
from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text_named
from tertulia.kit.text import check_input_text
from tertulia.kit.types import ID
from tertulia.users.models import Team
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, submit
from tertulia.workflows import catalogue, language, service, shortcuts
from tertulia.workflows import repository as repo
from tertulia.workflows.models import Workflow
from tertulia.workflows.simulate import Simulation, simulate, trigger_values
from tertulia.workflows.trigger_kinds import MAX_FORM_FIELDS

FormAnswer = Annotated[str, Form(max_length=2000)]

router = APIRouter(prefix="/workflows", include_in_schema=False, route_class=CheckedInputRoute)

STATUS_LABELS: dict[str, str] = {
    "draft": i18n.lazy("Draft"),
    "published": i18n.lazy("Published"),
    "stopped": i18n.lazy("Stopped"),
}
RUN_STATUS_LABELS: dict[str, str] = {
    "running": i18n.lazy("Running"),
    "acting": i18n.lazy("Running"),
    "waiting": i18n.lazy("Waiting"),
    "finished": i18n.lazy("Finished"),
    "failed": i18n.lazy("Failed"),
    "stopped": i18n.lazy("Stopped"),
}
STEP_LABELS: dict[str, str] = {
    "send_message": i18n.lazy("Send a message"),
    "ask_question": i18n.lazy("Ask a question"),
    "wait": i18n.lazy("Wait"),
    "branch": i18n.lazy("Branch"),
    "update_field": i18n.lazy("Update a contact field"),
    "add_tags": i18n.lazy("Add tags"),
    "remove_tags": i18n.lazy("Remove tags"),
    "assign": i18n.lazy("Assign"),
    "unassign": i18n.lazy("Unassign"),
    "open_conversation": i18n.lazy("Open the conversation"),
    "close_conversation": i18n.lazy("Close the conversation"),
    "add_comment": i18n.lazy("Add an internal comment"),
    "jump_to": i18n.lazy("Jump to"),
    "start_workflow": i18n.lazy("Start another workflow"),
    "http_request": i18n.lazy("HTTP request"),
    "date_time": i18n.lazy("Date and time"),
    "hand_to_assistant": i18n.lazy("Hand to the AI assistant"),
}
TRIGGER_LABELS: dict[str, str] = {
    "conversation_opened": i18n.lazy("Conversation opened"),
    "conversation_closed": i18n.lazy("Conversation closed"),
    "tag_added": i18n.lazy("Tag added"),
    "tag_removed": i18n.lazy("Tag removed"),
    "field_changed": i18n.lazy("Contact field changed"),
    "broadcast_replied": i18n.lazy("Broadcast reply"),
    "manual": i18n.lazy("Manual (started by another workflow)"),
    "shortcut": i18n.lazy("Shortcut (run by hand from the inbox or a contact)"),
    "incoming_webhook": i18n.lazy("Incoming webhook"),
    "date": i18n.lazy("A date of the contact"),
}
# Field names of the configs, wherever they appear (a name with two meanings reads well for both).
FIELD_LABELS: dict[str, str] = {
    "id": i18n.lazy("Step id"),
    "name": i18n.lazy("Name"),
    "next": i18n.lazy("Then go to"),
    "text": i18n.lazy("Text"),
    "channel": i18n.lazy("Channel"),
    "kind": i18n.lazy("Kind"),
    "options": i18n.lazy("Options"),
    "min": i18n.lazy("Minimum"),
    "max": i18n.lazy("Maximum"),
    "retry_text": i18n.lazy("Retry message"),
    "max_attempts": i18n.lazy("Maximum attempts"),
    "timeout": i18n.lazy("Timeout"),
    "amount": i18n.lazy("Amount"),
    "unit": i18n.lazy("Unit"),
    "save_to": i18n.lazy("Save the answer to"),
    "duration": i18n.lazy("Duration"),
    "until_contact_writes": i18n.lazy("End the wait when the contact writes"),
    "branches": i18n.lazy("Branches"),
    "conditions": i18n.lazy("Conditions (filter JSON)"),
    "field": i18n.lazy("Field"),
    "value": i18n.lazy("Value"),
    "tags": i18n.lazy("Tags"),
    "to": i18n.lazy("Assign to"),
    "user_id": i18n.lazy("User"),
    "team_id": i18n.lazy("Team"),
    "strategy": i18n.lazy("Strategy"),
    "only_online": i18n.lazy("Only online users"),
    "category_id": i18n.lazy("Closing category"),
    "summary": i18n.lazy("Summary"),
    "target": i18n.lazy("Target step"),
    "max_jumps": i18n.lazy("Maximum jumps"),
    "when_exhausted": i18n.lazy("When the jumps are used up"),
    "workflow_id": i18n.lazy("Workflow"),
    "method": i18n.lazy("Method"),
    "url": i18n.lazy("URL"),
    "headers": i18n.lazy("Headers"),
    "body": i18n.lazy("Body (JSON)"),
    "timeout_seconds": i18n.lazy("Timeout (seconds)"),
    "response": i18n.lazy("Response values"),
    "path": i18n.lazy("JSON path"),
    "variable": i18n.lazy("Variable"),
    "status_variable": i18n.lazy("Save the status code to the variable"),
    "sources": i18n.lazy("Sources"),
    "category_ids": i18n.lazy("Closing categories"),
    "fields": i18n.lazy("Fields"),
    "broadcast_ids": i18n.lazy("Broadcast ids"),
    "once_per_contact": i18n.lazy("Only once per contact"),
    "mode": i18n.lazy("Check against"),
    "timezone": i18n.lazy("Time zone"),
    "start": i18n.lazy("Start"),
    "end": i18n.lazy("End"),
    "windows": i18n.lazy("Time windows"),
    "days": i18n.lazy("Days"),
    "max_open": i18n.lazy("Only users with fewer open conversations than"),
    "queue_timeout": i18n.lazy("Wait in the queue at most"),
    "then": i18n.lazy("Afterwards"),
    "form": i18n.lazy("Form"),
    "label": i18n.lazy("Label"),
    "required": i18n.lazy("Required"),
    "direction": i18n.lazy("Before or after"),
    "offset": i18n.lazy("How long"),
    "time": i18n.lazy("At (local time)"),
    "repeat": i18n.lazy("Repeat"),
    "file_id": i18n.lazy("File (id of an uploaded file)"),
    "variants": i18n.lazy("Per-channel messages"),
    "channel_type": i18n.lazy("Kind of channel"),
    "template": i18n.lazy("WhatsApp template"),
    "language": i18n.lazy("Language code"),
    "parameters": i18n.lazy("Body parameters, in order"),
    "header_parameters": i18n.lazy("Header parameter"),
    "named_parameters": i18n.lazy("Named parameters (a named template)"),
    "header_media": i18n.lazy("Header file (image, video or document)"),
    "link": i18n.lazy("File URL (https://, variables allowed)"),
    "header_media.id": i18n.lazy("Or the file's WhatsApp media id (digits), instead of the URL"),
    "filename": i18n.lazy("File name (documents only)"),
    "header_location": i18n.lazy("Header place (a location template)"),
    "latitude": i18n.lazy("Latitude (-90 to 90, variables allowed)"),
    "longitude": i18n.lazy("Longitude (-180 to 180, variables allowed)"),
    "header_location.name": i18n.lazy("Place name (optional)"),
    "address": i18n.lazy("Address (optional)"),
}
# The standard contact fields in the field pickers (custom fields show their own label).
CONTACT_FIELD_LABELS: dict[str, str] = {
    "first_name": i18n.lazy("First name"),
    "last_name": i18n.lazy("Last name"),
    "email": i18n.lazy("Email"),
    "phone": i18n.lazy("Phone"),
    "language": i18n.lazy("Language"),
    "country": i18n.lazy("Country"),
}
# Where a step's other outcomes (`on`) lead.
OUTCOME_LABELS: dict[str, str] = {
    "failure": i18n.lazy("On failure go to"),
    "invalid": i18n.lazy("On an invalid answer go to"),
    "timeout": i18n.lazy("On timeout go to"),
}
# Who opened a conversation (OpeningSource), as the "conversation opened" trigger's picker and the
# branch conditions' "Conversation opened by" name them: one set of words for both.
OPENING_SOURCE_LABELS: dict[str, str] = {
    OpeningSource.CONTACT: i18n.lazy("Contact"),
    OpeningSource.BROADCAST_REPLY: i18n.lazy("Broadcast reply"),
    OpeningSource.USER: i18n.lazy("User"),
    OpeningSource.API: i18n.lazy("API"),
    OpeningSource.WORKFLOW: i18n.lazy("Workflow"),
    OpeningSource.SYSTEM: i18n.lazy("System"),
}
VALUE_LABELS: dict[str, str] = {
    "last_interacted": i18n.lazy("Last interacted channel"),
    "minutes": i18n.lazy("minutes"),
    "hours": i18n.lazy("hours"),
    "days": i18n.lazy("days"),
    "text": i18n.lazy("Text"),
    "choice": i18n.lazy("Multiple choice"),
    "number": i18n.lazy("Number"),
    "email": i18n.lazy("Email"),
    "phone": i18n.lazy("Phone"),
    "date": i18n.lazy("Date"),
    "field": i18n.lazy("Contact field"),
    "variable": i18n.lazy("Variable"),
    "tag": i18n.lazy("Tag"),
    **OPENING_SOURCE_LABELS,
    "team": i18n.lazy("Team"),
    "workspace": i18n.lazy("Anyone in the workspace"),
    "round_robin": i18n.lazy("Round robin"),
    "least_open": i18n.lazy("Least open conversations"),
    "continue": i18n.lazy("Continue to the next step"),
    "exit": i18n.lazy("End the run"),
    "url": i18n.lazy("URL"),
    "rating": i18n.lazy("Rating (1-5)"),
    "location": i18n.lazy("Location"),
    "business_hours": i18n.lazy("Business hours"),
    "date_range": i18n.lazy("A date range"),
    "weekly": i18n.lazy("Weekly time windows"),
    "end": i18n.lazy("End the run"),
    "monday": i18n.lazy("Monday"),
    "tuesday": i18n.lazy("Tuesday"),
    "wednesday": i18n.lazy("Wednesday"),
    "thursday": i18n.lazy("Thursday"),
    "friday": i18n.lazy("Friday"),
    "saturday": i18n.lazy("Saturday"),
    "sunday": i18n.lazy("Sunday"),
    "before": i18n.lazy("Before"),
    "after": i18n.lazy("After"),
    "once": i18n.lazy("Once"),
    "yearly": i18n.lazy("Every year"),
}
# The builder's own words (buttons, hints, messages), passed to its script.
UI_TEXTS: dict[str, str] = {
    "trigger": i18n.lazy("Trigger"),
    "add_step": i18n.lazy("Add step"),
    "step_type": i18n.lazy("Type of the new step"),
    "duplicate": i18n.lazy("Duplicate"),
    "move_up": i18n.lazy("Move up"),
    "move_down": i18n.lazy("Move down"),
    "delete": i18n.lazy("Delete"),
    "select": i18n.lazy("Configure"),
    "zoom_in": i18n.lazy("Zoom in"),
    "zoom_out": i18n.lazy("Zoom out"),
    "zoom_reset": i18n.lazy("Reset zoom"),
    "canvas": i18n.lazy("Workflow canvas: drag or use the arrow keys to move, + and - to zoom"),
    "panel": i18n.lazy("Configure the selected step"),
    "end": i18n.lazy("End the run"),
    "else": i18n.lazy("Else"),
    "start": i18n.lazy("Start"),
    "ends": i18n.lazy("Ends"),
    "add": i18n.lazy("Add"),
    "remove": i18n.lazy("Remove"),
    "none": i18n.lazy("None"),
    "one_per_line": i18n.lazy("One per line"),
    "not_json": i18n.lazy("Not valid JSON"),
    "set": i18n.lazy("Use this setting"),
    "channel_id": i18n.lazy("Channel id"),
    "advanced": i18n.lazy("Advanced: JSON"),
    "builder": i18n.lazy("Builder"),
    "json_broken": i18n.lazy("The JSON is not valid: fix it under “Advanced: JSON” to use the builder."),
    "nothing_selected": i18n.lazy("Choose the trigger or a step to configure it."),
    "type": i18n.lazy("Type"),
    "step_deleted": i18n.lazy("Step deleted"),
    "step_added": i18n.lazy("Step added"),
    "outcomes": i18n.lazy("Other outcomes"),
    "item": i18n.lazy("Item"),
    "choose": i18n.lazy("Choose…"),
    "add_from_list": i18n.lazy("Add one of the workspace's"),
    "not_found": i18n.lazy("not found"),
    "goes_to": i18n.lazy("Goes to"),
}
# The checker's and pydantic's most frequent messages, in the page's language: each English wording
# (its numbers and names captured) and the msgid it reads as. Others are shown as they come.
ERROR_WORDINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), msgid)
    for pattern, msgid in (
        (r"Field required", i18n.lazy("Required")),
        (r"Input should be a valid integer.*", i18n.lazy("Not a valid whole number")),
        (r"Input should be a valid number.*", i18n.lazy("Not a valid number")),
        (r"Input should be a valid string", i18n.lazy("Must be text")),
        (r"Input should be greater than or equal to (?P<n>\S+)", i18n.lazy("Must be %(n)s or more")),
        (r"Input should be less than or equal to (?P<n>\S+)", i18n.lazy("Must be %(n)s or less")),
        (r"Input should be (?P<options>'.*')", i18n.lazy("Must be one of: %(options)s")),
        (r"String should match pattern .*", i18n.lazy("Not in the expected format")),
        (r"Extra inputs are not permitted", i18n.lazy("Not a setting of this step")),
        (r"no step (?P<id>'.*')", i18n.lazy("No step %(id)s")),
        (r"unknown step type; use one of: (?P<types>.*)", i18n.lazy("Unknown step type; use one of: %(types)s")),
        (r"no path leads to this step \(unreachable\)", i18n.lazy("No path leads to this step (unreachable)")),
        (r"this step needs its configuration", i18n.lazy("This step needs its configuration")),
        (r"unknown contact field (?P<name>'.*')", i18n.lazy("Unknown contact field %(name)s")),
        (r"unknown variable (?P<name>'.*')", i18n.lazy("Unknown variable %(name)s")),
        (r"another step already has the id (?P<id>'.*')", i18n.lazy("Another step already has the id %(id)s")),
        (r"no channel (?P<id>\d+)", i18n.lazy("No channel %(id)s in this workspace")),
        (r"no member (?P<id>\d+) in this workspace", i18n.lazy("No user %(id)s in this workspace")),
        (r"no team (?P<id>\d+)", i18n.lazy("No team %(id)s in this workspace")),
        (r"no closing category (?P<id>\d+)", i18n.lazy("No closing category %(id)s in this workspace")),
        (r"no workflow (?P<id>\d+) with a manual trigger", i18n.lazy("No workflow %(id)s with a manual trigger")),
        (r"choose the user", i18n.lazy("Choose the user")),
        (r"choose the team", i18n.lazy("Choose the team")),
        (r"at most 7 days", i18n.lazy("At most 7 days")),
        (r"parameter (?P<name>'.*') is given twice", i18n.lazy("Parameter %(name)s is given twice")),
        (
            r"give positional or named parameters, not both",
            i18n.lazy("Fill in the body and header parameters or the named parameters, not both"),
        ),
        (
            r"template (?P<template>'.*') takes positional parameters: give them in order under parameters",
            i18n.lazy("Template %(template)s takes positional parameters: fill in the body parameters, in order"),
        ),
        (
            r"template (?P<template>'.*') takes named parameters: give them by name under named_parameters",
            i18n.lazy("Template %(template)s takes named parameters: add them under named parameters"),
        ),
        (
            r"template (?P<template>'[^']*') has no parameter (?P<name>'.*') \(it has: (?P<names>.*)\)",
            i18n.lazy("Template %(template)s has no parameter %(name)s (it has: %(names)s)"),
        ),
        (
            r"template (?P<template>'.*') needs a value for: (?P<names>.*)",
            i18n.lazy("Template %(template)s needs a value for: %(names)s"),
        ),
        (
            r"the body of (?P<template>'.*') takes (?P<n>\d+) parameter\(s\), (?P<given>\d+) given",
            i18n.lazy("The body of template %(template)s takes %(n)s parameter(s); %(given)s given"),
        ),
        (
            r"the header of (?P<template>'.*') takes (?P<n>\d+) parameter\(s\), (?P<given>\d+) given",
            i18n.lazy("The header of template %(template)s takes %(n)s parameter(s); %(given)s given"),
        ),
        (r"only WhatsApp channels send templates", i18n.lazy("Only WhatsApp channels send templates")),
        (
            r"template (?P<template>'.*') has an? (image|video|document) header: give the https:// URL of its file",
            i18n.lazy("Template %(template)s has a file in its header: give the https:// URL of the file"),
        ),
        (
            r"only a document header takes a file name; template (?P<template>'.*') has an? \w+ header",
            i18n.lazy("Only a document header takes a file name; template %(template)s has another kind of file"),
        ),
        (
            r"template (?P<template>'.*') has no image, video or document header",
            i18n.lazy("Template %(template)s has no image, video or document header: leave the header file empty"),
        ),
        (
            r"must be an https:// URL \(variables may stand in for it\)",
            i18n.lazy("Must be an https:// URL (a variable may stand in for it)"),
        ),
        (
            r"give the file's https:// URL \(link\) or its media id \(id\), one of the two",
            i18n.lazy("Give the file's https:// URL or its media id, one of the two"),
        ),
        (
            r"a template's header is a file or a place, not both",
            i18n.lazy("A template's header is a file or a place: fill in only the one the template has"),
        ),
        (
            r"must be a number from -(?P<n>\d+) to \d+ \(variables may stand in for it\)",
            i18n.lazy(
                "Must be a number from -%(n)s to %(n)s, with a point for decimals (a variable may stand in for it)"
            ),
        ),
        (
            r"Value error, must be a number, or text with variables",
            i18n.lazy("Must be a number, or text with variables"),
        ),
        (r"Input should be a finite number", i18n.lazy("Must be a finite number")),
        (
            r"template (?P<template>'.*') has a location header: give the place's latitude and longitude",
            i18n.lazy("Template %(template)s shows a place in its header: give its latitude and longitude"),
        ),
        (
            r"template (?P<template>'.*') has no location header",
            i18n.lazy("Template %(template)s shows no place in its header: leave the header place empty"),
        ),
        (
            r"no WhatsApp number has a template (?P<template>'.*') in (?P<language>'.*')"
            r" \(sync the templates if it is new\)",
            i18n.lazy(
                "No WhatsApp number has a template %(template)s in %(language)s (sync the templates if it is new)"
            ),
        ),
    )
)


# A template on a step whose channel is not WhatsApp: said with the channel's name and its type's name.
NOT_WHATSAPP = re.compile(
    r"the step's channel (?P<id>\d+) is an? (?P<kind>\w+) channel, not WhatsApp: only WhatsApp sends templates"
)
NOT_WHATSAPP_TEXT = i18n.lazy(
    "The step's channel (%(name)s, %(kind)s) is not a WhatsApp channel: only WhatsApp sends templates."
    " Choose a WhatsApp channel or the last interacted one"
)

# Those that count (the singular and plural msgids of one catalogue entry).
COUNTED_WORDINGS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), singular, plural)
    for pattern, singular, plural in (
        (
            r"String should have at least (?P<n>\d+) characters?",
            "At least %(n)s character",
            "At least %(n)s characters",
        ),
        (r"String should have at most (?P<n>\d+) characters?", "At most %(n)s character", "At most %(n)s characters"),
        (
            r"List should have at least (?P<n>\d+) items? after validation, not \d+",
            "At least %(n)s item",
            "At least %(n)s items",
        ),
        (
            r"List should have at most (?P<n>\d+) items? after validation, not \d+",
            "At most %(n)s item",
            "At most %(n)s items",
        ),
    )
)


def translated_errors(ctx: WebContext, errors: dict[str, str]) -> dict[str, str]:
    """The errors of a definition by path, each in the page's language where its wording is known."""

    def one(message: str) -> str:
        not_whatsapp = NOT_WHATSAPP.fullmatch(message)
        if not_whatsapp:
            return ctx.fmt.gettext(NOT_WHATSAPP_TEXT) % {
                "name": channel_name(int(not_whatsapp["id"])),
                "kind": ctx.fmt.gettext(provider_name(not_whatsapp["kind"])),
            }
        for pattern, singular, plural in COUNTED_WORDINGS:
            counted = pattern.fullmatch(message)
            if counted:
                return ctx.fmt.ngettext(singular, plural, int(counted["n"])) % counted.groupdict()
        for pattern, msgid in ERROR_WORDINGS:
            found = pattern.fullmatch(message)
            if found:
                return ctx.fmt.gettext(msgid) % found.groupdict()
        return message

    def channel_name(channel_id: int) -> str:
        name = ctx.session.scalar(
            select(Channel.name).where(Channel.workspace_id == ctx.actor.workspace_id, Channel.id == channel_id)
        )
        return name or f"#{channel_id}"

    return {path: one(message) for path, message in errors.items()}


# The pickers of contact fields, whose standard names get their label in the page's language.
FIELD_PICKERS = frozenset({"field", "fields", "save_to.name"})
MAX_DEFINITION = 400_000
STARTER: dict[str, Any] = {
    "trigger": {"type": "conversation_opened", "config": {"sources": ["contact"]}},
    "steps": [{"id": "welcome", "type": "send_message", "config": {"text": 'Hola {{contact.first_name | ""}} 👋'}}],
}


def builder_data(
    ctx: WebContext,
    definition: Any,
    errors: dict[str, str],
    choices: dict[str, list[service.Choice]],
    media_templates: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What the builder's script needs, as one JSON data block: the definition it edits, the errors
    found in it by path, the config schemas of every step and trigger type, the workspace's
    channels, users, teams, ... by the config field names that hold them (`choices`, drawn as
    pickers), the templates whose header is a file or a place (by name, with its kind: the header
    file's field, or the place's, shows for these), and its words."""

    def words(labels: dict[str, str]) -> dict[str, str]:
        return {key: ctx.fmt.gettext(value) for key, value in labels.items()}

    step_labels = words(STEP_LABELS)
    field_names = words(CONTACT_FIELD_LABELS)
    trigger_labels = words(TRIGGER_LABELS)
    return {
        "definition": definition,
        "errors": errors,
        "steps": {
            name: {"label": step_labels.get(name, ""), "schema": model.model_json_schema()}
            for name, model in language.STEP_CONFIGS.items()
        },
        "triggers": {
            name: {"label": trigger_labels.get(name, ""), "schema": model.model_json_schema()}
            for name, model in language.TRIGGER_CONFIGS.items()
        },
        "outcomes": {name: list(outcomes) for name, outcomes in language.OUTCOMES.items()},
        "media_templates": media_templates or {},
        "no_config": sorted(language.NO_CONFIG_STEPS),
        "choices": {
            name: [
                {"value": value, "label": field_names.get(str(value), label) if name in FIELD_PICKERS else label}
                for value, label in listed
            ]
            for name, listed in choices.items()
        },
        "labels": {
            "fields": words(FIELD_LABELS),
            "values": words(VALUE_LABELS),
            "outcomes": words(OUTCOME_LABELS),
            "ui": words(UI_TEXTS),
        },
    }


def _parsed_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _require(ctx: WebContext) -> None:
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationFailed.field("definition", f"not JSON: {exc}") from exc


@router.get("")
def workflows_page(ctx: UserPage) -> Response:
    return _list(ctx)


def _list(
    ctx: WebContext,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    import_errors: dict[str, str] | None = None,
) -> Response:
    _require(ctx)
    items = service.list_workflows(ctx.session, ctx.actor)
    counts = repo.active_run_counts(ctx.session, ctx.actor.workspace_id)
    context = {
        "workflows": items,
        "counts": counts,
        "status_labels": {k: ctx.fmt.gettext(v) for k, v in STATUS_LABELS.items()},
        "typed": typed or {"name": "", "definition": json.dumps(STARTER, indent=2, ensure_ascii=False)},
        "errors": errors or {},
        "import_errors": import_errors or {},
    }
    failed = errors or import_errors
    return ctx.render("workflows/list.html", context, active="workflows", status_code=422 if failed else 200)


@router.post("")
def create_workflow(
    ctx: UserPage,
    name: Annotated[str, Form(max_length=500)] = "",
    definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
) -> Response:
    _require(ctx)
    typed = {"name": name.replace("\x00", "\ufffd"), "definition": definition.replace("\x00", "\ufffd")}

    def create() -> Workflow:
        return service.do_create_workflow(ctx.session, ctx.actor, name, _parse(definition))

    return submit(
        ctx,
        create,
        again=lambda exc: _list(ctx, typed=typed, errors=field_errors(ctx, exc)),
        done=lambda workflow: ctx.redirect(f"/workflows/{workflow.id}"),
    )


# Before "/{workflow_id}": the path would match it first.
@router.post("/import")
def import_workflow(ctx: UserPage) -> Response:
    """A workflow from an exported JSON file: a new draft, or the list with the errors beside the
    upload (each at the path of the step and field at fault)."""
    _require(ctx)
    # The CSRF check has already parsed the multipart body.
    form = getattr(ctx.request.state, "form", None)
    file = form.get("file") if form is not None else None
    if not isinstance(file, UploadFile) or not file.filename:
        return _list(ctx, import_errors={"file": ctx._("Choose a JSON file exported from a workflow.")})
    file.file.seek(0)
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    try:
        if len(data) > MAX_IMPORT_BYTES:
            raise ValidationFailed.field("file", ctx._("The file is too big."))
        try:
            document = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # RecursionError: arrays nested past the parser's limit
            raise ValidationFailed.field("file", ctx._("The file is not JSON.")) from exc
        if (
            not isinstance(document, dict)
            or not isinstance(document.get("definition"), dict)
            or language.nesting_depth(document, MAX_IMPORT_NESTING) > MAX_IMPORT_NESTING
        ):
            raise ValidationFailed.field("file", ctx._("The file is not an exported workflow."))
        # The file is read here, not by the route's check of JSON bodies: kit.text's rule for NUL and
        # unpaired surrogates is asked for by hand (a 422 naming where, as the API answers).
        check_input_text(document)
        workflow = service.do_create_workflow(ctx.session, ctx.actor, document.get("name"), document["definition"])
    except DomainError as exc:
        ctx.session.rollback()
        return _list(ctx, import_errors=field_errors(ctx, exc))
    return ctx.redirect(f"/workflows/{workflow.id}")


def _page(
    ctx: WebContext,
    workflow: Workflow,
    *,
    typed: str | None = None,
    errors: dict[str, str] | None = None,
    simulation: Simulation | None = None,
    contact: str = "",
    form_typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    definition = service.current_definition(ctx.session, workflow)
    draft = repo.version(ctx.session, workflow.draft_version_id)
    shown = (
        draft
        or repo.version(ctx.session, workflow.published_version_id)
        or repo.latest_version(ctx.session, workflow.id)
    )
    assert shown is not None
    problems = translated_errors(ctx, service.definition_errors(ctx.session, workflow, shown))
    runs = service.runs_with_logs(ctx.session, workflow, limit=50)
    shown_text = typed if typed is not None else json.dumps(definition, indent=2, ensure_ascii=False)
    # Errors of what was just typed, else those of the stored version: each beside its step and field.
    placed = translated_errors(
        ctx,
        {
            k: v
            for k, v in (errors or {}).items()
            if k not in ("name", "__all__", "contact", "answers") and not k.startswith(("form.", "form_"))
        },
    )
    context = {
        "workflow": workflow,
        "definition": shown_text,
        # Not the tojson filter: it sorts keys, and the forms follow the schemas' field order.
        "builder": htmlsafe_json_dumps(
            builder_data(
                ctx,
                _parsed_or_none(shown_text),
                placed or (problems if typed is None else {}),
                service.reference_choices(ctx.session, ctx.actor.workspace_id, workflow.id),
                service.media_header_templates(ctx.session, ctx.actor.workspace_id),
            )
        ),
        "problems": problems,
        "errors": translated_errors(ctx, errors or {}),
        "has_draft": draft is not None,
        "runs": runs,
        "in_progress": repo.active_run_counts(ctx.session, ctx.actor.workspace_id).get(workflow.id, 0),
        "status_labels": {k: ctx.fmt.gettext(v) for k, v in STATUS_LABELS.items()},
        "run_labels": {k: ctx.fmt.gettext(v) for k, v in RUN_STATUS_LABELS.items()},
        "simulation": simulation,
        "contact": contact,
        "shortcut_form": shortcuts.drafted_form(definition),
        "form_typed": form_typed or {},
    }
    return ctx.render("workflows/workflow.html", context, active="workflows", status_code=status_code)


@router.get("/{workflow_id}")
def workflow_page(ctx: UserPage, workflow_id: ID) -> Response:
    return _page(ctx, service.access_workflow(ctx.session, ctx.actor, workflow_id))


@router.post("/{workflow_id}")
def save_workflow(
    ctx: UserPage,
    workflow_id: ID,
    name: Annotated[str, Form(max_length=500)] = "",
    definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    typed = definition.replace("\x00", "\ufffd")
    return submit(
        ctx,
        lambda: service.do_update_workflow(ctx.session, ctx.actor, workflow, name, _parse(definition)),
        again=lambda exc: _page(ctx, workflow, typed=typed, errors=field_errors(ctx, exc), status_code=422),
        redirect=f"/workflows/{workflow.id}",
        flash="settings_saved",
    )


def _action(ctx: WebContext, workflow_id: int, do: Any) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    return submit(
        ctx,
        lambda: do(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect=f"/workflows/{workflow.id}",
    )


@router.post("/{workflow_id}/publish")
def publish_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    return _action(ctx, workflow_id, service.do_publish)


@router.post("/{workflow_id}/stop")
def stop_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    return _action(ctx, workflow_id, service.do_stop)


@router.post("/{workflow_id}/simulate")
def simulate_workflow(
    ctx: UserPage,
    workflow_id: ID,
    contact: Annotated[str, Form(max_length=300)] = "",
    answers: Annotated[str, Form(max_length=10_000)] = "",
    form_0: FormAnswer = "",
    form_1: FormAnswer = "",
    form_2: FormAnswer = "",
    form_3: FormAnswer = "",
    form_4: FormAnswer = "",
) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    typed = contact.replace("\x00", "\ufffd")
    # A shortcut's form is posted by position (form_0, ...), as the inbox's shortcut menu does.
    posted = (form_0, form_1, form_2, form_3, form_4)[:MAX_FORM_FIELDS]
    fields = shortcuts.drafted_form(service.current_definition(ctx.session, workflow))
    form_typed = {item.name: posted[index] for index, item in enumerate(fields)}
    # A refused text is shown beside the field it came from; a posted form_N with no such field in
    # the form (a trigger that is not a shortcut) keeps its name and is shown above the simulation's
    # fields.
    placed = {f"form_{index}": f"form.{item.name}" for index, item in enumerate(fields)}
    try:
        check_form_text_named(ctx.request, placed)
        found = contacts_service.access_contact(ctx.session, ctx.actor, contact.strip() or "id:0")
        checked = service.check_definition(
            ctx.session, ctx.actor.workspace_id, service.current_definition(ctx.session, workflow), workflow.id
        )
        given = [line.strip() for line in answers.splitlines() if line.strip()]
        values = trigger_values(checked, form_typed, ctx.actor.user_id)
        result = simulate(ctx.session, checked, found, answers=given, trigger_values=values)
    except DomainError as exc:
        errors = field_errors(ctx, exc)
        if "identifier" in errors:
            errors = {"contact": errors.pop("identifier"), **errors}
        elif "__all__" in errors and exc.code == "not_found":
            errors = {"contact": errors.pop("__all__")}
        return _page(ctx, workflow, errors=errors, contact=typed, form_typed=form_typed, status_code=422)
    return _page(ctx, workflow, simulation=result, contact=typed, form_typed=form_typed)


@router.post("/{workflow_id}/runs/{run_id}/stop")
def stop_run(ctx: UserPage, workflow_id: ID, run_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    return submit(
        ctx,
        lambda: service.do_stop_run(
            ctx.session, ctx.actor, service.access_run(ctx.session, ctx.actor, workflow, run_id, lock=True)
        ),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect=f"/workflows/{workflow.id}",
    )


# ----- create from a template (workflows/catalogue.py) ----------------------------------------------
# Under /workflows/new/ so the paths cannot be read as a workflow's id. A card's form names its
# placeholders by position (value_0, value_1, ...): the catalogue says which key each one is.

MAX_TEMPLATE_VALUES = 4
TEMPLATE_CATEGORY_LABELS: dict[str, str] = {
    "bot": i18n.lazy("Bot"),
    "assignment": i18n.lazy("Assignment"),
    "routing": i18n.lazy("Routing"),
    "away": i18n.lazy("Away"),
    "welcome": i18n.lazy("Welcome"),
    "data": i18n.lazy("Data collection"),
    "marketing": i18n.lazy("Marketing"),
    "hygiene": i18n.lazy("Hygiene"),
}
PREVIEW_TERMS: dict[str, str] = {
    "round_robin": i18n.lazy("in turn"),
    "least_open": i18n.lazy("fewest open conversations"),
    "only_online": i18n.lazy("online only"),
    "minutes": i18n.lazy("minutes"),
    "hours": i18n.lazy("hours"),
    "days": i18n.lazy("days"),
}


def _gallery(ctx: WebContext, *, failed: str | None = None, errors: dict[str, str] | None = None) -> Response:
    _require(ctx)
    language = catalogue.language_of(ctx.fmt.language)
    session, workspace_id = ctx.session, ctx.actor.workspace_id
    teams = [(t.id, t.name) for t in session.scalars(select(Team).where(Team.workspace_id == workspace_id))]
    categories = [
        (c.id, c.name)
        for c in session.scalars(select(ClosingCategory).where(ClosingCategory.workspace_id == workspace_id))
    ]
    cards = [
        {
            "template": found,
            "name": found.name.get(language, found.name["es"]),
            "description": found.description.get(language, found.description["es"]),
            "steps": catalogue.preview(found, language),
            "values": catalogue.suggested_values(session, workspace_id, found, language),
            "labels": {p.key: p.label.get(language, p.key) for p in found.placeholders},
        }
        for found in catalogue.templates()
    ]
    context = {
        "cards": cards,
        "teams": sorted(teams, key=lambda t: t[1].lower()),
        "categories": sorted(categories, key=lambda c: c[1].lower()),
        "category_labels": {k: ctx.fmt.gettext(v) for k, v in TEMPLATE_CATEGORY_LABELS.items()},
        "step_labels": {k: ctx.fmt.gettext(v) for k, v in STEP_LABELS.items()},
        "terms": {k: ctx.fmt.gettext(v) for k, v in PREVIEW_TERMS.items()},
        "failed": failed,
        "errors": errors or {},
    }
    status_code = 422 if errors else 200
    return ctx.render("workflows/templates.html", context, active="workflows", status_code=status_code)


@router.get("/new/templates")
def templates_page(ctx: UserPage) -> Response:
    return _gallery(ctx)


@router.post("/new/templates/{template_id}")
def create_from_template(
    ctx: UserPage,
    template_id: Annotated[str, Path(max_length=64)],
    value_0: Annotated[str, Form(max_length=200)] = "",
    value_1: Annotated[str, Form(max_length=200)] = "",
    value_2: Annotated[str, Form(max_length=200)] = "",
    value_3: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    _require(ctx)
    found = catalogue.template(template_id)
    given = (value_0, value_1, value_2, value_3)[:MAX_TEMPLATE_VALUES]
    values = {p.key: given[i].strip() for i, p in enumerate(found.placeholders[:MAX_TEMPLATE_VALUES])}

    def create() -> Workflow:
        return catalogue.do_create_from_template(
            ctx.session, ctx.actor, found.id, values=values, language=ctx.fmt.language
        ).workflow

    return submit(
        ctx,
        create,
        again=lambda exc: _gallery(ctx, failed=found.id, errors=field_errors(ctx, exc)),
        done=lambda workflow: ctx.redirect(f"/workflows/{workflow.id}"),
    )


# ----- clone, delete, export, import ----------------------------------------------------------------

MAX_IMPORT_BYTES = MAX_DEFINITION
# An exported workflow nests a dozen levels (a branch's filter); far deeper is no export, and would
# only exhaust the recursion of what reads it next.
MAX_IMPORT_NESTING = 64


@router.post("/{workflow_id}/clone")
def clone_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    return submit(
        ctx,
        lambda: service.do_clone(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=422),
        done=lambda copy: ctx.redirect(f"/workflows/{copy.id}"),
    )


@router.post("/{workflow_id}/delete")
def delete_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    return submit(
        ctx,
        lambda: service.do_delete(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect="/workflows",
    )


@router.get("/{workflow_id}/export")
def export_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    body = json.dumps(service.export_dict(ctx.session, workflow), indent=2, ensure_ascii=False)
    return Response(
        body.encode(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="workflow-{workflow.id}.json"'},
    )
