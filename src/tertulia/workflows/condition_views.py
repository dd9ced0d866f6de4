"""The conditions editor of the workflow builder: the segments' filter panel in a dialog.

A trigger's conditions and a branch's are the segments' filter language (plus, in branches, the
`variable` category over the run's variables and the `conversation` and `assignee_status` ones over
the run's conversation, offered under "Conversation" with the workspace's channels, teams and
people to pick from), so the builder edits them with the panel people use
for segments (segments/panel.py and its template), server-rendered here:

- `POST /workflows/conditions/panel` renders the panel: from posted JSON (`editor_source`, when
  the dialog opens, with `editor_definition` for a branch, whose declared variables the Category
  picker offers) or from the panel's own fields as its pickers change (htmx re-renders it, as on
  the contacts page).
- `POST /workflows/conditions/apply` turns the panel's fields into the filter JSON (panel.py's
  translation), checks it as saving the definition would, and answers `{"conditions": ...}`, which
  the builder's script writes into the field; a bad value answers 422 with the panel again and the
  message beside its condition.

- `POST /workflows/conditions/count` answers the live count of the contacts the panel's
  conditions match now, as values are typed (the segments' count, `segments.views.matching_count`);
  the panel's renders carry it too. Conditions on a branch's variables depend on the run, so a
  filter with any is not counted (a note says why).

An assignee "me" (kept from a definition written before the picker dropped it, or typed in the
JSON) is the person looking, and a run has none: the engine evaluates it with no user, so "is me"
matches no one and "is not me" everyone, whatever the contact's assignee. The same holds for a
segment condition whose segment says "me", itself or through a segment it nests. The dialog does
not count such a filter as if the viewer were "me" (a note says why) and Apply refuses it beside its
condition, so a person (or another segment) gets chosen instead.

None changes anything (the definition is only saved by the builder's form). Owners and Managers
only (`manage_workflows`), like the builder.
"""

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Form
from sqlalchemy import select
from starlette.datastructures import FormData
from starlette.responses import JSONResponse, Response

from tertulia.channels.models import Channel
from tertulia.channels.service import provider_name
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text, read_only
from tertulia.kit.text import replace_unsafe_characters
from tertulia.segments import counts as segment_counts
from tertulia.segments.language import CheckedFilter, depends_on_viewer
from tertulia.segments.panel import (
    Catalogue,
    ChoiceCategory,
    FieldChoice,
    RawFilter,
    apply_action,
    choice_key,
    error_slots,
    from_filter,
    from_form,
    operators_for,
    to_filter,
    widget,
)
from tertulia.segments.views import CATEGORY_LABELS, UNIT_LABELS, catalogue, matching_count, operator_label
from tertulia.users.models import Team
from tertulia.users.permissions import Permission
from tertulia.users.service import member_names
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.workflows import conversation_conditions, language, service
from tertulia.workflows.conversation_conditions import ASSIGNEE_STATUS, CONVERSATION, OPERATORS
from tertulia.workflows.views import OPENING_SOURCE_LABELS

router = APIRouter(prefix="/workflows", include_in_schema=False, route_class=CheckedInputRoute)

PANEL_URL = "/workflows/conditions/panel"
COUNT_URL = "/workflows/conditions/count"
# A filter is far smaller than this; the cap keeps a pasted document from being parsed at all.
MAX_SOURCE = 200_000
MAX_VARIABLES = 200
# A filter nests 5 deep (filter, groups, a group, conditions, a condition) plus a value's list or
# "ago" object; a definition's step configs go a little deeper.
MAX_NESTING = 20
TITLES = {
    "trigger": i18n.lazy("Trigger conditions"),
    "branch": i18n.lazy("Branch conditions"),
}
APPLY = i18n.lazy("Apply")
NOT_JSON = i18n.lazy("The conditions are not JSON; edit them under Advanced.")
# language.check_conditions' message, shown at the top when no condition holds the error.
NOT_CHECKED = i18n.lazy("The conditions have errors.")
NOT_COUNTED = i18n.lazy("Conditions on variables depend on each run: no count.")
NOT_COUNTED_CONVERSATION = i18n.lazy("Conditions on the conversation depend on each run: no count.")
CONVERSATION_GROUP = i18n.lazy("Conversation")
# The branch's conversation categories (conversation_conditions.py), in the Category picker's order.
CONVERSATION_LABELS = {
    "status": i18n.lazy("Conversation status"),
    "channel": i18n.lazy("Conversation channel"),
    "channel_type": i18n.lazy("Conversation channel type"),
    "team": i18n.lazy("Conversation team"),
    "assignee": i18n.lazy("Conversation assignee"),
    "opening_source": i18n.lazy("Conversation opened by"),
    ASSIGNEE_STATUS: i18n.lazy("Assignee's status"),
}
STATUS_LABELS = {"open": i18n.lazy("open"), "closed": i18n.lazy("closed")}
ACTIVITY_LABELS = {
    "online": i18n.lazy("Online"),
    "away": i18n.lazy("Away"),
    "busy": i18n.lazy("Busy"),
    "offline": i18n.lazy("Offline"),
}
CONVERSATION_OPERATOR_LABELS = {
    "team": {"exists": i18n.lazy("has a team"), "not_exists": i18n.lazy("has no team")},
    "assignee": {"exists": i18n.lazy("is assigned"), "not_exists": i18n.lazy("is unassigned")},
}
NO_ME = i18n.lazy("'Me' has no meaning when a workflow runs: choose a person.")
SEGMENT_ME = i18n.lazy("The segment %(name)s uses 'Me', which has no meaning when a workflow runs.")

Text = Annotated[str, Form(max_length=MAX_SOURCE)]
OptionalText = Annotated[str | None, Form(max_length=MAX_SOURCE)]


def _scope(value: str) -> str:
    return "branch" if value == "branch" else "trigger"


def _variables(text: str) -> dict[str, str]:
    """The panel's hidden list of variables (name -> kind), as the dialog was opened with; anything
    malformed is dropped (it only decides what the Category picker offers)."""
    parsed = _loaded(text) if text else {}
    if not isinstance(parsed, dict):
        return {}
    return {
        name: "number" if kind == "number" else "text"
        for name, kind in list(parsed.items())[:MAX_VARIABLES]
        if isinstance(name, str) and language.VAR_NAME.match(name)
    }


def _conversation_choices(ctx: WebContext) -> dict[str, ChoiceCategory]:
    """A branch's categories on the run's conversation and its assignee's status, with the
    workspace's channels, channel types, teams and members to pick from."""
    session, workspace_id, gettext = ctx.session, ctx.actor.workspace_id, ctx.fmt.gettext
    channels = session.execute(
        select(Channel.id, Channel.name, Channel.type).where(Channel.workspace_id == workspace_id).order_by(Channel.id)
    ).all()
    teams = session.execute(select(Team.id, Team.name).where(Team.workspace_id == workspace_id).order_by(Team.name))
    values: dict[str, tuple[tuple[str, str], ...]] = {
        "status": tuple((status, gettext(STATUS_LABELS[status])) for status in conversation_conditions.STATUSES),
        "channel": tuple((str(row.id), f"{row.name} ({gettext(provider_name(row.type))})") for row in channels),
        "channel_type": tuple(
            (kind, gettext(provider_name(kind)))
            for kind in sorted({*language.CHANNEL_TYPES, *(row.type for row in channels)})
        ),
        "team": tuple((str(row.id), row.name) for row in teams),
        "assignee": tuple((str(user_id), name) for user_id, name in member_names(session, workspace_id).items()),
        ASSIGNEE_STATUS: tuple(
            (status, gettext(ACTIVITY_LABELS[status])) for status in conversation_conditions.ACTIVITY_STATUSES
        ),
        "opening_source": tuple(
            (source, gettext(OPENING_SOURCE_LABELS[source])) for source in conversation_conditions.OPENING_SOURCES
        ),
    }
    found: dict[str, ChoiceCategory] = {}
    for name, label in CONVERSATION_LABELS.items():
        category, field = (ASSIGNEE_STATUS, None) if name == ASSIGNEE_STATUS else (CONVERSATION, name)
        found[choice_key(category, field)] = ChoiceCategory(
            category=category,
            field_name=field,
            label=gettext(label),
            operators=OPERATORS[name],
            choices=values[name],
            operator_labels={op: gettext(text) for op, text in CONVERSATION_OPERATOR_LABELS.get(name, {}).items()},
            ids=name in conversation_conditions.ID_FIELDS,
        )
    return found


def _catalogue(ctx: WebContext, variables: dict[str, str], scope: str = "trigger") -> Catalogue:
    cat = catalogue(ctx)
    cat.variables = dict(variables)
    if scope == "branch":
        cat.choices = _conversation_choices(ctx)
        cat.choice_group = ctx.fmt.gettext(CONVERSATION_GROUP)
    # A field or variable the panel was opened with but the workspace lacks (another workspace's
    # field, a variable no step declares) stays as it is, as panel.from_filter keeps it visible, so
    # Apply refuses it beside its condition rather than turning it into another field.
    form = ctx.request.state.form
    for key, value in form.multi_items():
        if not key.endswith(".cat") or not isinstance(value, str):
            continue
        if value.startswith("field:") and value[6:] and value[6:] not in cat.fields:
            cat.fields[value[6:]] = FieldChoice(value[6:], value[6:], "text")
        elif value.startswith("var:") and language.VAR_NAME.match(value[4:]) and value[4:] not in cat.variables:
            cat.variables[value[4:]] = "text"
    return cat


def _uses_variables(conditions: dict[str, Any]) -> bool:
    return any(
        condition.get("category") == "variable"
        for group in conditions.get("groups") or []
        for condition in group.get("conditions") or []
    )


def _viewer_notes(ctx: WebContext, conditions: dict[str, Any]) -> dict[str, str]:
    """Why each condition that depends on who is looking means nothing at run time, by panel slot
    (`g1-c0`): an assignee "me", or a segment whose filter says it, directly or through the
    segments it nests (a run has no viewer, so "is me" matches no one)."""
    notes: dict[str, str] = {}
    segments: tuple[dict[int, str], dict[int, CheckedFilter | ValidationFailed]] | None = None
    for group_index, group in enumerate(conditions.get("groups") or []):
        for condition_index, condition in enumerate(group.get("conditions") or []):
            slot = f"g{group_index}-c{condition_index}"
            value = condition.get("value")
            if condition.get("category") == "contact_field" and condition.get("field") == "assignee":
                if value == "me":
                    notes[slot] = ctx.fmt.gettext(NO_ME)
                continue
            if condition.get("category") != "segment" or not isinstance(value, int) or isinstance(value, bool):
                continue
            if segments is None:  # read (cached checked filters) only when a segment is used
                versions, checked = segment_counts.checked_filters_by_id(ctx.session, ctx.actor.workspace_id)
                segments = ({segment_id: name for segment_id, name, _at in versions}, checked)
            names, checks = segments
            # A segment that does not check (or is not this workspace's) is refused by the check itself.
            segment = checks.get(value)
            if isinstance(segment, CheckedFilter) and depends_on_viewer(segment):
                notes[slot] = ctx.fmt.gettext(SEGMENT_ME) % {"name": names[value]}
    return notes


def _count(ctx: WebContext, raw: RawFilter, cat: Catalogue) -> dict[str, Any]:
    """The live count's context: `count`, `count_note` and the errors that kept it from counting."""
    conditions = to_filter(raw, cat)
    # Counting "me" as the viewer would show a number no run ever sees.
    viewer_notes = _viewer_notes(ctx, conditions)
    if viewer_notes:
        return {"count": None, "count_note": next(iter(viewer_notes.values())), "count_errors": {}}
    if _uses_variables(conditions):
        return {"count": None, "count_note": ctx.fmt.gettext(NOT_COUNTED), "count_errors": {}}
    if conversation_conditions.uses(conditions):
        return {"count": None, "count_note": ctx.fmt.gettext(NOT_COUNTED_CONVERSATION), "count_errors": {}}
    count, errors = matching_count(ctx, conditions)
    return {"count": count, "count_note": "", "count_errors": errors}


def _render(
    ctx: WebContext,
    raw: RawFilter,
    cat: Catalogue,
    scope: str,
    *,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    counted = _count(ctx, raw, cat)
    editor = {
        "panel_url": PANEL_URL,
        "count_url": COUNT_URL,
        "title": ctx.fmt.gettext(TITLES[scope]),
        "apply": ctx.fmt.gettext(APPLY),
        # The variables as the panel knows them, unknown ones kept visible included.
        "hidden": {"editor_scope": scope, "editor_variables": json.dumps(cat.variables if scope == "branch" else {})},
    }
    context = {
        "editor": editor,
        "raw": raw,
        "cat": cat,
        "segment": None,
        "count": counted["count"],
        "count_note": counted["count_note"],
        "errors": {**counted["count_errors"], **(errors or {})},
        "operators_for": lambda category: operators_for(category, cat),
        "widget": lambda category, operator: widget(category, operator, cat),
        "operator_label": lambda category, operator: _operator_label(ctx, cat, category, operator),
        "category_labels": {k: ctx.fmt.gettext(v) for k, v in CATEGORY_LABELS.items()},
        "units": {k: ctx.fmt.gettext(v) for k, v in UNIT_LABELS.items()},
    }
    return ctx.render("contacts/_filter_panel.html", context, status_code=status_code)


def _operator_label(ctx: WebContext, cat: Catalogue, category: str, operator: str) -> str:
    choice = cat.choices.get(category)
    if choice is not None and operator in choice.operator_labels:
        return choice.operator_labels[operator]
    return operator_label(ctx, category, operator)


# conversation_conditions' messages about a row the workspace lacks (one deleted since the
# condition was written), by kind of row, as shown beside the condition.
MISSING_ROW = re.compile(r"^no (channel|team|member) (\d+) in this workspace$")
MISSING_LABELS = {
    "channel": i18n.lazy("There is no channel %(id)s in this workspace (deleted?): choose another."),
    "team": i18n.lazy("There is no team %(id)s in this workspace (deleted?): choose another."),
    "member": i18n.lazy("Person %(id)s is not a member of this workspace: choose another."),
}


def _translated(ctx: WebContext, message: str) -> str:
    missing = MISSING_ROW.match(message)
    if missing is not None:
        return ctx.fmt.gettext(MISSING_LABELS[missing.group(1)]) % {"id": missing.group(2)}
    return ctx.fmt.gettext(message)


def _slots(ctx: WebContext, exc: ValidationFailed) -> dict[str, str]:
    details = exc.details if isinstance(exc.details, dict) else {}
    slots = error_slots(details) or {"filter": exc.message}
    return {slot: _translated(ctx, message) for slot, message in slots.items()}


def _typed(ctx: WebContext, cat: Catalogue) -> RawFilter:
    """The panel as submitted, with what kit.text refused made visible (U+FFFD) to show it again."""
    form = ctx.request.state.form
    return from_form(FormData([(key, replace_unsafe_characters(value)) for key, value in form.multi_items()]), cat)


def _loaded(text: str) -> Any:
    """JSON a client sent, or None when it is not JSON, nests past any filter's depth (the panel
    reads it recursively) or holds NaN or an infinity."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: arrays nested past the parser's limit
        return None
    if language.nesting_depth(value, MAX_NESTING) > MAX_NESTING or language.non_finite_path(value) is not None:
        return None
    return value


def _parsed(text: str) -> Any:
    value = _loaded(text)
    if value is None:
        raise ValidationFailed.field("filter", NOT_JSON)
    return value


@router.post("/conditions/panel")
@read_only
def conditions_panel(
    ctx: UserPage,
    editor_scope: Annotated[str, Form()] = "trigger",
    editor_source: OptionalText = None,
    editor_definition: OptionalText = None,
    editor_variables: Text = "",
    action: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """The panel from the field's JSON (`editor_source`) when the dialog opens, else from its own
    fields after a picker or an add/remove button changed."""
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)
    scope = _scope(editor_scope)
    known = _variables(editor_variables)
    if scope == "branch" and editor_definition is not None:
        check = service.check_context(ctx.session, ctx.actor.workspace_id)
        known = language.variable_kinds_of(_loaded(editor_definition), check)
    cat = _catalogue(ctx, known if scope == "branch" else {}, scope)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _render(ctx, _typed(ctx, cat), cat, scope, errors=_slots(ctx, exc), status_code=422)
    if editor_source is not None:
        try:
            stored = _parsed(editor_source)
        except ValidationFailed as exc:
            return _render(ctx, RawFilter(), cat, scope, errors=_slots(ctx, exc), status_code=422)
        return _render(ctx, from_filter(stored if isinstance(stored, dict) else None, cat), cat, scope)
    raw = apply_action(from_form(ctx.request.state.form, cat), action, cat)
    return _render(ctx, raw, cat, scope)


@router.post("/conditions/apply")
@read_only
def apply_conditions(
    ctx: UserPage, editor_scope: Annotated[str, Form()] = "trigger", editor_variables: Text = ""
) -> Response:
    """The panel's fields as the filter JSON, checked against the workspace (its fields, tags and
    segments; a branch's variables): `{"conditions": ...}`, or the panel with the errors (422)."""
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)
    scope = _scope(editor_scope)
    declared = _variables(editor_variables) if scope == "branch" else None
    cat = _catalogue(ctx, declared or {}, scope)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        return _render(ctx, _typed(ctx, cat), cat, scope, errors=_slots(ctx, exc), status_code=422)
    raw = from_form(ctx.request.state.form, cat)
    conditions = to_filter(raw, cat)
    check = service.check_context(ctx.session, ctx.actor.workspace_id)
    errors: dict[str, str] = {}
    try:
        language.check_conditions(conditions, check, declared)
    except ValidationFailed as exc:
        errors = _slots(ctx, exc)
    for slot, note in _viewer_notes(ctx, conditions).items():
        errors.setdefault(slot, note)
    if errors:
        return _render(ctx, raw, cat, scope, errors=errors, status_code=422)
    return JSONResponse({"conditions": conditions})


@router.post("/conditions/count")
@read_only
def conditions_count(
    ctx: UserPage, editor_scope: Annotated[str, Form()] = "trigger", editor_variables: Text = ""
) -> Response:
    """The live count while values are typed; errors go beside their conditions (out of band)."""
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)
    scope = _scope(editor_scope)
    cat = _catalogue(ctx, _variables(editor_variables) if scope == "branch" else {}, scope)
    try:
        check_form_text(ctx.request)
    except ValidationFailed as exc:
        refused = {"count": None, "errors": _slots(ctx, exc), "raw": _typed(ctx, cat), "oob": True}
        return ctx.render("contacts/_filter_count.html", refused, status_code=422)
    raw = from_form(ctx.request.state.form, cat)
    counted = _count(ctx, raw, cat)
    context = {**counted, "errors": counted["count_errors"], "raw": raw, "oob": True}
    return ctx.render("contacts/_filter_count.html", context, status_code=422 if counted["count_errors"] else 200)
