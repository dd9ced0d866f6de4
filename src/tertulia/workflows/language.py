"""The workflow definition language: its JSON shape, its checks, and the checked form the engine runs.

A definition is one trigger and a list of steps. The first step is where a run starts; every step
names the step after it (`next`, or none: the run ends) and, for outcomes that leave the straight
path, `on` (`failure`, `invalid`, `timeout`). A branch step lists its branches in its config, each
with conditions and a `next`; its own `next` is the else branch. Conditions are the segments'
filter language (segments/language.py), plus categories of our own in branches: `variable`, over the
run's variables, and `conversation` and `assignee_status`, over the conversation the run is about
(conversation_conditions.py). Texts use the inbox's variable syntax (conversations/variables.py)
with the names listed in `TRIGGER_VARIABLES`, `conversation.*`, `assignee.*`, `vars.*` and
`system.*`.

`check_definition` never stops at the first problem: it returns every error it finds, keyed by the
path of the step and field at fault (`steps[3].config.text`), so a builder can show each beside its
field. docs/workflows.md describes the format for people.
"""

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema
from pydantic import ValidationError as PydanticValidationError

from tertulia.channels.message_templates import FILE_KINDS, MAX_PLACE_TEXT, coordinate
from tertulia.contacts.models import FieldType
from tertulia.conversations import variables
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.types import MAX_ID
from tertulia.segments import language as filters
from tertulia.segments.language import CheckedFilter
from tertulia.workflows import conversation_conditions, schedule, trigger_kinds

MAX_STEPS = 100
MAX_BRANCHES = 9
MAX_OPTIONS = 10
MAX_OPTION_LENGTH = 20
MAX_JUMPS = 10  # per run, over all its jump steps (and the most one jump step may allow)
MAX_HEADERS = 10
MAX_MAPPINGS = 10
MAX_TEXT = 2000
MAX_WAIT_SECONDS = 7 * 24 * 3600
MAX_HTTP_TIMEOUT = 30
MAX_WINDOWS = 14
MAX_OPEN_LIMIT = 10_000
STEP_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
VAR_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
UNIT_SECONDS = {"minutes": 60, "hours": 3600, "days": 86400}
# A run's variables enter the filter language as custom fields with this prefix (see
# `_filter_with_variables`), so conditions on them are checked and evaluated by the segments' code.
# Names are at most 50 characters so the prefixed key stays a valid custom key (64).
VAR_PREFIX = "wfvar__"

TriggerType = Literal[
    "conversation_opened",
    "conversation_closed",
    "tag_added",
    "tag_removed",
    "field_changed",
    "broadcast_replied",
    "manual",
    "shortcut",
    "incoming_webhook",
    "date",
]
TRIGGER_TYPES: tuple[str, ...] = (
    "conversation_opened",
    "conversation_closed",
    "tag_added",
    "tag_removed",
    "field_changed",
    "broadcast_replied",
    "manual",
    *trigger_kinds.CONFIGS,
)
# Who opened or closed a conversation, from the event's actor (events.service.actor_label).
SOURCES = ("contact", "user", "api", "workflow", "system")
TRIGGER_VARIABLES: dict[str, frozenset[str]] = {
    "conversation_opened": frozenset({"source", "conversation_id"}),
    "conversation_closed": frozenset({"source", "conversation_id", "category", "summary"}),
    "tag_added": frozenset({"tag"}),
    "tag_removed": frozenset({"tag"}),
    "field_changed": frozenset({"field", "old_value", "new_value"}),
    "broadcast_replied": frozenset({"broadcast_id", "channel_id"}),
    "manual": frozenset(),  # any name: the starting workflow passes its variables
    **trigger_kinds.VARIABLES,
}
CONTACT_VARIABLES = variables.CONTACT_FIELDS | {"id"}
CONVERSATION_VARIABLES = frozenset({"id", "status", "channel_id", "opened_at", "closed_at", "closing_summary"})
ASSIGNEE_VARIABLES = variables.USER_FIELDS
SYSTEM_VARIABLES = frozenset({"current_date", "current_time", "current_datetime"})

STEP_TYPES = (
    "send_message",
    "ask_question",
    "wait",
    "branch",
    "update_field",
    "add_tags",
    "remove_tags",
    "assign",
    "unassign",
    "open_conversation",
    "close_conversation",
    "add_comment",
    "jump_to",
    "start_workflow",
    "http_request",
    "date_time",
    "hand_to_assistant",
)
# Outcomes a step may send elsewhere than `next`.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "send_message": ("failure",),
    "ask_question": ("invalid", "timeout"),
    "assign": ("failure", "timeout"),
    "http_request": ("failure",),
    "date_time": ("failure",),
    "hand_to_assistant": ("failure",),
}
# The standard contact fields an update_field step may set (the others are the system's).
UPDATABLE_FIELDS = ("first_name", "last_name", "email", "phone", "language", "country")


# ----- the JSON shape ---------------------------------------------------------------------------


class _Strict(BaseModel):
    # No NaN or infinity in a number: PostgreSQL's JSON cannot store them, and no step means them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class TriggerIn(_Strict):
    type: TriggerType
    config: dict[str, Any] = Field(default_factory=dict)
    # The segments' filter JSON over the contact, checked when the trigger fires.
    conditions: dict[str, Any] = Field(default_factory=dict)
    once_per_contact: bool = False


class StepIn(_Strict):
    id: str
    type: str
    name: str | None = Field(default=None, max_length=100)
    config: dict[str, Any] | None = None
    next: str | None = None
    on: dict[str, str] = Field(default_factory=dict)


class DefinitionIn(_Strict):
    trigger: TriggerIn
    steps: list[StepIn]


# Trigger configs.


class OpenedConfig(_Strict):
    # "broadcast_reply": opened by a contact's reply to a broadcast (triggers._Batch.source); "contact"
    # is any other message of theirs that opened one, never such a reply.
    sources: list[Literal["contact", "broadcast_reply", "user", "api", "workflow", "system"]] = Field(
        default_factory=list
    )


class ClosedConfig(_Strict):
    sources: list[Literal["contact", "user", "api", "workflow", "system"]] = Field(default_factory=list)
    category_ids: list[int] = Field(default_factory=list)


class TagConfig(_Strict):
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)


class FieldChangedConfig(_Strict):
    fields: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1, max_length=50)


class BroadcastReplyConfig(_Strict):
    broadcast_ids: list[int] = Field(default_factory=list, max_length=100)


class EmptyConfig(_Strict):
    pass


TRIGGER_CONFIGS: dict[str, type[_Strict]] = {
    "conversation_opened": OpenedConfig,
    "conversation_closed": ClosedConfig,
    "tag_added": TagConfig,
    "tag_removed": TagConfig,
    "field_changed": FieldChangedConfig,
    "broadcast_replied": BroadcastReplyConfig,
    "manual": EmptyConfig,
    **trigger_kinds.CONFIGS,  # type: ignore[dict-item]
}

# Step configs.

Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]


class Duration(_Strict):
    amount: int = Field(ge=1)
    unit: Literal["minutes", "hours", "days"]

    @property
    def seconds(self) -> int:
        return self.amount * UNIT_SECONDS[self.unit]


CHANNEL_TYPES = ("whatsapp", "messenger", "instagram", "telegram", "webchat", "email", "twilio", "vonage", "bird")
MAX_TEMPLATE_PARAMETERS = 20


class NamedParameter(_Strict):
    """The value of one of a NAMED template's parameters (`{{first_name}}` is `first_name`)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")
    value: Text


MAX_MEDIA_LINK = 2000
MAX_MEDIA_FILENAME = 240


class HeaderMedia(_Strict):
    """The file of a template whose header is an image, a video or a document: its https URL
    (variables allowed, checked once filled in when the step runs) or the media id WhatsApp gave it
    when it was uploaded (digits), one of the two, and, for a document, the file name the customer
    sees."""

    link: str | None = Field(default=None, min_length=1, max_length=MAX_MEDIA_LINK)
    id: str | None = Field(default=None, pattern=r"^[0-9]{1,64}$")
    filename: str | None = Field(default=None, min_length=1, max_length=MAX_MEDIA_FILENAME)


def _number_or_text(value: Any) -> Any:
    """A coordinate is a number or a text (a decimal, or variables that give one); a boolean, which
    the number type would take for 0 or 1, is neither."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("must be a number, or text with variables")
    return value


MAX_COORDINATE_TEXT = 200
# The builder shows a coordinate as a text field (a decimal or variables), which the checker takes.
Coordinate = Annotated[
    float | Annotated[str, Field(min_length=1, max_length=MAX_COORDINATE_TEXT)],
    BeforeValidator(_number_or_text),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_COORDINATE_TEXT}),
]


class HeaderLocation(_Strict):
    """The place a template whose header is a LOCATION shows: its latitude (-90 to 90) and
    longitude (-180 to 180), numbers or text with variables (checked once filled in when the step
    runs), and optionally its name and address."""

    latitude: Coordinate
    longitude: Coordinate
    name: str | None = Field(default=None, min_length=1, max_length=MAX_PLACE_TEXT)
    address: str | None = Field(default=None, min_length=1, max_length=MAX_PLACE_TEXT)


class TemplateConfig(_Strict):
    """A WhatsApp message template approved for the channel: its name, language and the values of
    its parameters, variables allowed: for a POSITIONAL template ({{1}}, {{2}}, ...) in order in the
    body and in a text header; for a NAMED one ({{first_name}}) by name, wherever the template uses
    the name (its header or body). A template whose header is an image, a video or a document takes
    that file as `header_media`; one whose header is a place (LOCATION) takes it as `header_location`."""

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=15)
    parameters: list[Text] = Field(default_factory=list, max_length=MAX_TEMPLATE_PARAMETERS)
    header_parameters: list[Text] = Field(default_factory=list, max_length=1)
    named_parameters: list[NamedParameter] = Field(default_factory=list, max_length=MAX_TEMPLATE_PARAMETERS)
    header_media: HeaderMedia | None = None
    header_location: HeaderLocation | None = None


class MessageVariant(_Strict):
    """What a kind of channel sends instead of the default message: its own text, a file (with the
    text as its caption), or (WhatsApp) a template, which may be sent outside the 24-hour window."""

    channel_type: Literal[CHANNEL_TYPES]  # type: ignore[valid-type]
    text: Text | None = None
    file_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    template: TemplateConfig | None = None


class SendMessageConfig(_Strict):
    # "last_interacted", or a channel id.
    channel: Literal["last_interacted"] | int = "last_interacted"
    text: Text
    # An uploaded file sent with the text as its caption.
    file_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    variants: list[MessageVariant] = Field(default_factory=list, max_length=len(CHANNEL_TYPES))


class SaveTo(_Strict):
    kind: Literal["field", "variable", "tag"]
    # A contact field name, a variable name, or nothing for a tag (the chosen option is the tag).
    name: str | None = None


class AskQuestionConfig(_Strict):
    text: Text
    kind: Literal["text", "choice", "number", "email", "phone", "date", "url", "rating", "location"] = "text"
    options: list[Annotated[str, Field(min_length=1, max_length=MAX_OPTION_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_OPTIONS
    )
    min: float | None = None
    max: float | None = None
    retry_text: Text | None = None
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout: Duration = Field(default_factory=lambda: Duration(amount=1, unit="days"))
    save_to: SaveTo | None = None
    channel: Literal["last_interacted"] | int = "last_interacted"


class WaitConfig(_Strict):
    duration: Duration
    until_contact_writes: bool = False


class BranchIn(_Strict):
    name: str = Field(min_length=1, max_length=100)
    conditions: dict[str, Any]
    next: str | None = None


class BranchConfig(_Strict):
    branches: list[BranchIn] = Field(min_length=1, max_length=MAX_BRANCHES)


class UpdateFieldConfig(_Strict):
    field: str = Field(min_length=1, max_length=100)
    # Text with variables; an empty text clears the field.
    value: str = Field(max_length=MAX_TEXT)


class TagsConfig(_Strict):
    tags: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(min_length=1, max_length=20)


class AssignConfig(_Strict):
    to: Literal["user", "team", "workspace"]
    user_id: int | None = None
    team_id: int | None = None
    strategy: Literal["round_robin", "least_open"] = "round_robin"
    only_online: bool = False
    # Only users with fewer open conversations assigned to them than this.
    max_open: int | None = Field(default=None, ge=1, le=MAX_OPEN_LIMIT)
    # When nobody qualifies: wait in the queue this long (first come, first served), then take the
    # `timeout` branch. None: no queue (the `failure` branch, or on to `next`).
    queue_timeout: Duration | None = None


class CloseConfig(_Strict):
    category_id: int | None = None
    summary: str | None = Field(default=None, max_length=MAX_TEXT)


class CommentConfig(_Strict):
    text: Text


class JumpConfig(_Strict):
    target: str
    max_jumps: int = Field(default=3, ge=1, le=MAX_JUMPS)
    # When the jumps are used up: go on to `next`, or end the run.
    when_exhausted: Literal["continue", "exit"] = "continue"


class StartWorkflowConfig(_Strict):
    workflow_id: int = Field(ge=1)


class Header(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
    value: str = Field(max_length=MAX_TEXT)


class ResponseMapping(_Strict):
    path: str = Field(min_length=1, max_length=200, pattern=r"^\$(\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*$")
    variable: str


class HttpConfig(_Strict):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(min_length=1, max_length=2000)
    headers: list[Header] = Field(default_factory=list, max_length=MAX_HEADERS)
    # A JSON text with variables; sent as application/json after the variables are filled in.
    body: str | None = Field(default=None, max_length=20_000)
    timeout_seconds: int = Field(default=10, ge=1, le=MAX_HTTP_TIMEOUT)
    response: list[ResponseMapping] = Field(default_factory=list, max_length=MAX_MAPPINGS)
    status_variable: str | None = None


Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]


class TimeWindow(_Strict):
    days: list[Weekday] = Field(min_length=1, max_length=7)
    # Local wall-clock times HH:MM in the step's time zone; the end is later the same day (24:00 allowed).
    start: str = Field(max_length=5)
    end: str = Field(max_length=5)


class DateTimeConfig(_Strict):
    """Is "now" inside: the business hours (of a team, else the workspace's), a date range, or
    weekly time windows? Inside goes to `next`, outside to `on.failure` (the run ends without it)."""

    mode: Literal["business_hours", "date_range", "weekly"]
    # business_hours: a team's hours (its own, else the workspace's); None: the team of the
    # contact's open conversation, else the workspace's hours. The schedule has its own time zone.
    team_id: int | None = None
    # date_range and weekly: an IANA zone; None: the workspace's time zone.
    timezone: str | None = Field(default=None, max_length=64)
    # date_range: "YYYY-MM-DD" (a whole day: the end date is included) or "YYYY-MM-DD HH:MM" (the
    # end moment is not); either may be left open, not both.
    start: str | None = Field(default=None, max_length=16)
    end: str | None = Field(default=None, max_length=16)
    windows: list[TimeWindow] = Field(default_factory=list, max_length=MAX_WINDOWS)


class AssistantConfig(_Strict):
    # After turning the assistant's bot on: end the run (the bot has the conversation), or go on.
    then: Literal["end", "continue"] = "end"


STEP_CONFIGS: dict[str, type[_Strict]] = {
    "send_message": SendMessageConfig,
    "ask_question": AskQuestionConfig,
    "wait": WaitConfig,
    "branch": BranchConfig,
    "update_field": UpdateFieldConfig,
    "add_tags": TagsConfig,
    "remove_tags": TagsConfig,
    "assign": AssignConfig,
    "unassign": EmptyConfig,
    "open_conversation": EmptyConfig,
    "close_conversation": CloseConfig,
    "add_comment": CommentConfig,
    "jump_to": JumpConfig,
    "start_workflow": StartWorkflowConfig,
    "http_request": HttpConfig,
    "date_time": DateTimeConfig,
    "hand_to_assistant": AssistantConfig,
}
# Steps that work without any configuration: the others must have one.
NO_CONFIG_STEPS = frozenset({"unassign", "open_conversation", "close_conversation", "hand_to_assistant"})


# ----- the checked form -------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    index: int
    id: str
    type: str
    name: str | None
    config: Any  # the step's config model
    next: str | None
    on: Mapping[str, str]
    # branch: one checked filter per branch, in order.
    filters: tuple[CheckedFilter, ...] = ()
    # branch: whether a condition reads the run's conversation or its assignee's status
    # (conversation_conditions.py), so the engine asks for them only then.
    reads_conversation: bool = False


@dataclass(frozen=True)
class Workflow:
    """A checked definition: what the engine runs."""

    trigger: TriggerIn
    trigger_config: Any
    conditions: CheckedFilter
    steps: tuple[Step, ...]
    by_id: Mapping[str, Step]
    variable_kinds: Mapping[str, str]

    @property
    def first(self) -> Step:
        return self.steps[0]


SegmentLoader = Callable[[int], Mapping[str, Any] | None]


@dataclass(frozen=True)
class TemplateShape:
    """What a stored WhatsApp template asks for, as the checker compares a step's values with it:
    whether its parameters are NAMED, the keys of the text parameters of its header and body
    (`1`, `2`, ... or names), in order, and the kind of its media header (`image`, `video`,
    `document`, `location`; None for a text header or none)."""

    name: str
    named: bool
    header: tuple[str, ...]
    body: tuple[str, ...]
    media: str | None = None


@dataclass
class CheckContext:
    """What checking a definition needs from its workspace. Sets left as None are not checked
    (a definition read back from storage was checked when it was saved)."""

    custom_fields: Mapping[str, FieldType]
    load_segment: SegmentLoader = lambda _id: None
    channel_ids: frozenset[int] | None = None
    # The kind of each channel of the workspace ("whatsapp", "telegram", ...), by id.
    channel_types: Mapping[int, str] | None = None
    user_ids: frozenset[int] | None = None
    team_ids: frozenset[int] | None = None
    closing_category_ids: frozenset[int] | None = None
    # Workflows of the workspace with a manual trigger (what start_workflow may name).
    manual_workflow_ids: frozenset[int] | None = None
    self_workflow_id: int | None = None
    # Whether an uploaded file of the workspace has this id (a message may send one).
    file_exists: Callable[[int], bool] | None = None
    # The stored WhatsApp templates of this name and language that a step sending on this channel
    # (an id, or "last_interacted": any of the workspace's numbers) may use.
    whatsapp_templates: Callable[[int | str, str, str], Sequence[TemplateShape]] | None = None


class DefinitionErrors(ValidationFailed):
    """422 with every error of the definition, by path."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        first = next(iter(errors.items()))
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{first[0]}: {first[1]}{more}", details=dict(errors))


def _loc_path(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _model_errors(exc: PydanticValidationError, prefix: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors():
        loc = tuple(
            part
            for part in error["loc"]
            if not (isinstance(part, str) and part in ("int", "str", "float", "constrained-str"))
        )
        # Union members (a channel id or "last_interacted") add their own name to the location.
        loc = tuple(p for p in loc if not (isinstance(p, str) and (p.startswith("literal[") or p == "int")))
        found.setdefault(_loc_path(prefix, loc), error["msg"])
    return found


def variables_in(raw: Any) -> Iterator[tuple[str, str]]:
    """(name, path) of every variable a filter's `variable` conditions name."""
    if not isinstance(raw, Mapping):
        return
    for g_index, group in enumerate(raw.get("groups") or []):
        if not isinstance(group, Mapping):
            continue
        for c_index, condition in enumerate(group.get("conditions") or []):
            if isinstance(condition, Mapping) and condition.get("category") == "variable":
                yield str(condition.get("field")), f"groups[{g_index}].conditions[{c_index}].field"


def _filter_with_variables(raw: Any) -> Any:
    """The filter with `variable` conditions written as conditions on prefixed custom fields, so the
    segments' checker and evaluator handle them (the engine puts the variables there)."""
    if not isinstance(raw, Mapping):
        return raw
    groups = []
    for group in raw.get("groups") or []:
        if not isinstance(group, Mapping):
            groups.append(group)
            continue
        conditions = []
        for condition in group.get("conditions") or []:
            if isinstance(condition, Mapping) and condition.get("category") == "variable":
                name = f"{VAR_PREFIX}{condition.get('field')}"
                conditions.append({**condition, "category": "contact_field", "field": name})
            else:
                conditions.append(condition)
        groups.append({**group, "conditions": conditions})
    return {**raw, "groups": groups}


def _variable_kind(kind: str) -> FieldType:
    return FieldType.NUMBER if kind == "number" else FieldType.TEXT


class _Checker:
    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.errors: dict[str, str] = {}
        self.variable_kinds: dict[str, str] = {}
        # The `trigger.*` names of the shortcut, webhook and date triggers (trigger_kinds.py).
        self.trigger_known: Callable[[str], bool] | None = None

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, message)

    def run(self, raw: Any) -> Workflow | None:
        if not isinstance(raw, Mapping):
            self.error("definition", "must be an object with trigger and steps")
            return None
        try:
            parsed = DefinitionIn.model_validate(raw)
        except PydanticValidationError as exc:
            self.errors.update(_model_errors(exc, ""))
            return None
        if not parsed.steps:
            self.error("steps", "a workflow needs at least one step")
            return None
        if len(parsed.steps) > MAX_STEPS:
            self.error("steps", f"at most {MAX_STEPS} steps")
            return None
        trigger_config = self.trigger_config(parsed.trigger)
        configs = [self.step_config(index, step) for index, step in enumerate(parsed.steps)]
        ids = self.step_ids(parsed.steps)
        self.collect_variables(parsed.steps, configs)
        conditions = self.filter(parsed.trigger.conditions, "trigger.conditions", allow_variables=False)
        steps: list[Step] = []
        for index, (step, config) in enumerate(zip(parsed.steps, configs, strict=True)):
            path = f"steps[{index}]"
            self.edges(step, config, ids, path)
            filters: tuple[CheckedFilter, ...] = ()
            reads_conversation = False
            if config is not None:
                self.references(step.type, config, f"{path}.config", ids)
                self.texts(parsed.trigger.type, step.type, config, f"{path}.config")
                if isinstance(config, BranchConfig):
                    filters = tuple(
                        self.filter(branch.conditions, f"{path}.config.branches[{b}].conditions", allow_variables=True)
                        or CheckedFilter("all", ())
                        for b, branch in enumerate(config.branches)
                    )
                    reads_conversation = any(conversation_conditions.uses(b.conditions) for b in config.branches)
            steps.append(
                Step(
                    index, step.id, step.type, step.name, config, step.next, dict(step.on), filters, reads_conversation
                )
            )
        if len(ids) == len(steps):
            self.graph(steps)
        if self.errors:
            return None
        assert conditions is not None
        return Workflow(
            trigger=parsed.trigger,
            trigger_config=trigger_config,
            conditions=conditions,
            steps=tuple(steps),
            by_id={s.id: s for s in steps},
            variable_kinds=dict(self.variable_kinds),
        )

    # -- trigger

    def trigger_config(self, trigger: TriggerIn) -> Any:
        model = TRIGGER_CONFIGS[trigger.type]
        try:
            config = model.model_validate(trigger.config)
        except PydanticValidationError as exc:
            self.errors.update(_model_errors(exc, "trigger.config"))
            return None
        if trigger.type == "manual" and trigger.once_per_contact:
            self.error("trigger.once_per_contact", "a manual trigger has no once-per-contact setting")
        if isinstance(config, FieldChangedConfig):
            for index, name in enumerate(config.fields):
                if not self.known_field(name):
                    self.error(f"trigger.config.fields[{index}]", f"unknown contact field {name!r}")
        if isinstance(config, ClosedConfig) and self.ctx.closing_category_ids is not None:
            for index, category in enumerate(config.category_ids):
                if category not in self.ctx.closing_category_ids:
                    self.error(f"trigger.config.category_ids[{index}]", f"no closing category {category}")
        for path, message in trigger_kinds.check(config, self.ctx.custom_fields).items():
            self.error(path, message)
        self.trigger_known = trigger_kinds.known_variable(trigger.type, config)
        return config

    def known_field(self, name: str) -> bool:
        return name in UPDATABLE_FIELDS or name in self.ctx.custom_fields

    # -- steps

    def step_config(self, index: int, step: StepIn) -> Any:
        path = f"steps[{index}]"
        if step.type not in STEP_CONFIGS:
            self.error(f"{path}.type", f"unknown step type; use one of: {', '.join(STEP_TYPES)}")
            return None
        if not step.config and step.type not in NO_CONFIG_STEPS:
            self.error(f"{path}.config", "this step needs its configuration")
            return None
        try:
            return STEP_CONFIGS[step.type].model_validate(step.config or {})
        except PydanticValidationError as exc:
            self.errors.update(_model_errors(exc, f"{path}.config"))
            return None

    def step_ids(self, steps: list[StepIn]) -> set[str]:
        seen: set[str] = set()
        for index, step in enumerate(steps):
            if not STEP_ID.match(step.id):
                self.error(f"steps[{index}].id", "lower-case letters, digits, - and _ (at most 64)")
            elif step.id in seen:
                self.error(f"steps[{index}].id", f"another step already has the id {step.id!r}")
            seen.add(step.id)
        return seen

    def collect_variables(self, steps: list[StepIn], configs: list[Any]) -> None:
        """The variables a run may have: answers saved as variables and HTTP response values."""
        for index, config in enumerate(configs):
            path = f"steps[{index}].config"
            names: list[tuple[str, str, str]] = []
            if isinstance(config, AskQuestionConfig) and config.save_to is not None:
                kind = "number" if config.kind in ("number", "rating") else "text"
                if config.save_to.kind == "variable":
                    names.append((config.save_to.name or "", f"{path}.save_to.name", kind))
            if isinstance(config, HttpConfig):
                names.extend(
                    (m.variable, f"{path}.response[{i}].variable", "text") for i, m in enumerate(config.response)
                )
                if config.status_variable is not None:
                    names.append((config.status_variable, f"{path}.status_variable", "number"))
            for name, name_path, kind in names:
                if not VAR_NAME.match(name):
                    self.error(name_path, "a variable name: lower-case letters, digits and _ (at most 64)")
                    continue
                known = self.variable_kinds.get(name)
                if known is not None and known != kind:
                    self.error(name_path, f"the variable {name!r} is a {known} elsewhere in this workflow")
                self.variable_kinds[name] = kind
        del steps

    def edges(self, step: StepIn, config: Any, ids: set[str], path: str) -> None:
        if step.next is not None and step.next not in ids:
            self.error(f"{path}.next", f"no step {step.next!r}")
        exits = isinstance(config, JumpConfig) and config.when_exhausted == "exit"
        if exits and step.next is not None:
            self.error(f"{path}.next", "a jump that ends the run when its jumps are used up has no next step")
        if isinstance(config, AssistantConfig) and config.then == "end" and step.next is not None:
            self.error(f"{path}.next", "a hand-off that ends the run has no next step (or choose to continue)")
        if isinstance(config, AssignConfig) and config.queue_timeout is None and "timeout" in step.on:
            self.error(f"{path}.on.timeout", "only an assignment that waits in the queue has a timeout")
        allowed = OUTCOMES.get(step.type, ())
        for outcome, target in step.on.items():
            if outcome not in allowed:
                message = f"use one of: {', '.join(allowed)}" if allowed else "this step has no other outcomes"
                self.error(f"{path}.on.{outcome}", f"unknown outcome; {message}")
            elif target not in ids:
                self.error(f"{path}.on.{outcome}", f"no step {target!r}")
        if isinstance(config, BranchConfig):
            for b, branch in enumerate(config.branches):
                if branch.next is not None and branch.next not in ids:
                    self.error(f"{path}.config.branches[{b}].next", f"no step {branch.next!r}")

    def references(self, step_type: str, config: Any, path: str, ids: set[str]) -> None:
        ctx = self.ctx
        channel = getattr(config, "channel", None)
        if isinstance(channel, int) and ctx.channel_ids is not None and channel not in ctx.channel_ids:
            self.error(f"{path}.channel", f"no channel {channel}")
        if isinstance(config, AskQuestionConfig):
            self.question(config, path)
        if isinstance(config, SendMessageConfig):
            self.message(config, path)
        if isinstance(config, WaitConfig) and config.duration.seconds > MAX_WAIT_SECONDS:
            self.error(f"{path}.duration", "at most 7 days")
        if isinstance(config, UpdateFieldConfig) and not self.known_field(config.field):
            self.error(f"{path}.field", f"unknown contact field {config.field!r}")
        if isinstance(config, AssignConfig):
            if config.to == "user":
                if config.user_id is None:
                    self.error(f"{path}.user_id", "choose the user")
                elif ctx.user_ids is not None and config.user_id not in ctx.user_ids:
                    self.error(f"{path}.user_id", f"no member {config.user_id} in this workspace")
            if config.queue_timeout is not None and config.queue_timeout.seconds > MAX_WAIT_SECONDS:
                self.error(f"{path}.queue_timeout", "at most 7 days")
            if config.to == "team":
                if config.team_id is None:
                    self.error(f"{path}.team_id", "choose the team")
                elif ctx.team_ids is not None and config.team_id not in ctx.team_ids:
                    self.error(f"{path}.team_id", f"no team {config.team_id}")
        if isinstance(config, DateTimeConfig):
            for where, message in schedule.check(config).items():
                self.error(f"{path}.{where}", message)
            if config.team_id is not None and ctx.team_ids is not None and config.team_id not in ctx.team_ids:
                self.error(f"{path}.team_id", f"no team {config.team_id}")
        category = config.category_id if isinstance(config, CloseConfig) else None
        if category is not None and ctx.closing_category_ids is not None and category not in ctx.closing_category_ids:
            self.error(f"{path}.category_id", f"no closing category {category}")
        if isinstance(config, JumpConfig) and config.target not in ids:
            self.error(f"{path}.target", f"no step {config.target!r}")
        if isinstance(config, StartWorkflowConfig):
            if config.workflow_id == ctx.self_workflow_id:
                self.error(f"{path}.workflow_id", "a workflow cannot start itself")
            elif ctx.manual_workflow_ids is not None and config.workflow_id not in ctx.manual_workflow_ids:
                self.error(f"{path}.workflow_id", f"no workflow {config.workflow_id} with a manual trigger")
        if isinstance(config, HttpConfig) and not re.match(r"^https?://", config.url.strip(), re.IGNORECASE):
            self.error(f"{path}.url", "must start with https:// or http://")
        del step_type

    def question(self, config: AskQuestionConfig, path: str) -> None:
        if config.kind == "choice" and len(config.options) < 2:
            self.error(f"{path}.options", "a multiple choice question needs 2 to 10 options")
        if config.kind != "choice" and config.options:
            self.error(f"{path}.options", "only a multiple choice question has options")
        if config.kind != "number" and (config.min is not None or config.max is not None):
            self.error(f"{path}.min", "only a number question has a minimum and maximum")
        if config.min is not None and config.max is not None and config.min > config.max:
            self.error(f"{path}.max", "must not be below the minimum")
        if config.timeout.seconds > MAX_WAIT_SECONDS:
            self.error(f"{path}.timeout", "at most 7 days")
        save = config.save_to
        if save is not None:
            if save.kind == "tag" and config.kind != "choice":
                self.error(f"{path}.save_to.kind", "only a multiple choice answer can be saved as a tag")
            if save.kind == "tag" and save.name is not None:
                self.error(f"{path}.save_to.name", "the chosen option is the tag; give no name")
            if save.kind == "field" and not self.known_field(save.name or ""):
                self.error(f"{path}.save_to.name", f"unknown contact field {save.name!r}")

    def message(self, config: SendMessageConfig, path: str) -> None:
        files = [("file_id", config.file_id)]
        seen: set[str] = set()
        for index, variant in enumerate(config.variants):
            where = f"{path}.variants[{index}]"
            if variant.channel_type in seen:
                self.error(f"{where}.channel_type", f"{variant.channel_type} has a message already")
            seen.add(variant.channel_type)
            if variant.template is not None:
                if variant.channel_type != "whatsapp":
                    self.error(f"{where}.template", "only WhatsApp channels send templates")
                if variant.text is not None or variant.file_id is not None:
                    self.error(f"{where}.template", "a template is sent on its own: leave the text and file empty")
                self.template(config.channel, variant.template, f"{where}.template")
            elif variant.text is None and variant.file_id is None:
                self.error(where, "needs a text, a file or a template")
            files.append((f"variants[{index}].file_id", variant.file_id))
        exists = self.ctx.file_exists
        for name, file_id in files:
            if file_id is not None and exists is not None and not exists(file_id):
                self.error(f"{path}.{name}", f"no file {file_id}")

    def template(self, channel: int | str, config: TemplateConfig, path: str) -> None:
        """The parameters against the template as stored for the numbers the step may send on.
        Named values and a header file can only be checked against it, so named values are refused
        for a template no number has (yet); positional values and a header file for one are left to
        the check when the message is sent."""
        named = config.named_parameters
        seen: set[str] = set()
        for index, parameter in enumerate(named):
            if parameter.name in seen:
                self.error(f"{path}.named_parameters[{index}].name", f"parameter {parameter.name!r} is given twice")
            seen.add(parameter.name)
        media = config.header_media
        if media is not None and (media.link is None) == (media.id is None):
            self.error(
                f"{path}.header_media", "give the file's https:// URL (link) or its media id (id), one of the two"
            )
        elif media is not None and media.link is not None and not _may_be_https(media.link):
            self.error(f"{path}.header_media.link", "must be an https:// URL (variables may stand in for it)")
        if media is not None and config.header_location is not None:
            self.error(f"{path}.header_location", "a template's header is a file or a place, not both")
        if config.header_location is not None:
            for key, limit in (("latitude", 90), ("longitude", 180)):
                value = getattr(config.header_location, key)
                if not (isinstance(value, str) and "{{" in value) and coordinate(value, limit) is None:
                    self.error(
                        f"{path}.header_location.{key}",
                        f"must be a number from -{limit} to {limit} (variables may stand in for it)",
                    )
        kind = self.channel_kind(channel)
        if kind is not None and kind != "whatsapp":
            self.error(
                f"{path}.name",
                f"the step's channel {channel} is {_article(kind)} {kind} channel, not WhatsApp:"
                " only WhatsApp sends templates",
            )
            return
        if named and (config.parameters or config.header_parameters):
            self.error(f"{path}.named_parameters", "give positional or named parameters, not both")
            return
        lookup = self.ctx.whatsapp_templates
        if lookup is None:
            return
        shapes = lookup(channel, config.name, config.language)
        if not shapes:
            if named:
                self.error(
                    f"{path}.name",
                    f"no WhatsApp number has a template {config.name!r} in {config.language!r}"
                    " (sync the templates if it is new)",
                )
            return
        for shape in shapes:
            self.template_fits(shape, config, path)
            self.header_media_fits(shape, config, path)
            self.header_location_fits(shape, config, path)

    def channel_kind(self, channel: int | str) -> str | None:
        """The kind of the step's channel when it names one the workspace has."""
        kinds = self.ctx.channel_types
        if not isinstance(channel, int) or kinds is None:
            return None
        return kinds.get(channel)

    def header_media_fits(self, shape: TemplateShape, config: TemplateConfig, path: str) -> None:
        media = config.header_media
        if shape.media in FILE_KINDS:  # a file by its URL or media id (a place: header_location)
            if media is None:
                self.error(
                    f"{path}.header_media",
                    f"template {shape.name!r} has {_article(shape.media)} {shape.media} header:"
                    " give the https:// URL of its file",
                )
            elif media.filename is not None and shape.media != "document":
                self.error(
                    f"{path}.header_media.filename",
                    f"only a document header takes a file name; template {shape.name!r} has"
                    f" {_article(shape.media)} {shape.media} header",
                )
        elif media is not None:
            self.error(f"{path}.header_media", f"template {shape.name!r} has no image, video or document header")

    def header_location_fits(self, shape: TemplateShape, config: TemplateConfig, path: str) -> None:
        if shape.media == "location" and config.header_location is None:
            self.error(
                f"{path}.header_location",
                f"template {shape.name!r} has a location header: give the place's latitude and longitude",
            )
        elif shape.media != "location" and config.header_location is not None:
            self.error(f"{path}.header_location", f"template {shape.name!r} has no location header")

    def template_fits(self, shape: TemplateShape, config: TemplateConfig, path: str) -> None:
        if not shape.named:
            if config.named_parameters:
                self.error(
                    f"{path}.named_parameters",
                    f"template {shape.name!r} takes positional parameters: give them in order under parameters",
                )
                return
            for part, asked, given in (
                ("body", shape.body, config.parameters),
                ("header", shape.header, config.header_parameters),
            ):
                if len(given) != len(asked):
                    field = "parameters" if part == "body" else "header_parameters"
                    self.error(
                        f"{path}.{field}",
                        f"the {part} of {shape.name!r} takes {len(asked)} parameter(s), {len(given)} given",
                    )
            return
        if config.parameters or config.header_parameters:
            field = "parameters" if config.parameters else "header_parameters"
            self.error(
                f"{path}.{field}",
                f"template {shape.name!r} takes named parameters: give them by name under named_parameters",
            )
            return
        names = list(dict.fromkeys((*shape.header, *shape.body)))
        for index, parameter in enumerate(config.named_parameters):
            if parameter.name not in names:
                self.error(
                    f"{path}.named_parameters[{index}].name",
                    f"template {shape.name!r} has no parameter {parameter.name!r}"
                    f" (it has: {', '.join(names) or 'none'})",
                )
        named = {p.name for p in config.named_parameters}
        missing = [name for name in names if name not in named]
        if missing:
            self.error(f"{path}.named_parameters", f"template {shape.name!r} needs a value for: {', '.join(missing)}")

    def texts(self, trigger_type: str, step_type: str, config: Any, path: str) -> None:
        for name, text in _texts_of(config):
            try:
                variables.parse_names(text, lambda n: self.known_variable(trigger_type, n), f"{path}.{name}")
            except ValidationFailed as exc:
                for where, message in (exc.details or {}).items():
                    self.error(where, message)
        if isinstance(config, HttpConfig) and config.body is not None and f"{path}.body" not in self.errors:
            try:
                json.loads(variables.substitute_names(config.body, lambda _name: "0"))
            except ValueError:
                self.error(f"{path}.body", "must be JSON (variables may stand in for values)")
        del step_type

    def known_variable(self, trigger_type: str, name: str) -> bool:
        head, _, rest = name.partition(".")
        if head == "contact":
            if rest.startswith("custom."):
                return rest.removeprefix("custom.") in self.ctx.custom_fields
            return rest in CONTACT_VARIABLES
        if head == "conversation":
            return rest in CONVERSATION_VARIABLES
        if head == "assignee":
            return rest in ASSIGNEE_VARIABLES
        if head == "system":
            return rest in SYSTEM_VARIABLES
        if head == "vars":
            return rest in self.variable_kinds
        if head == "trigger" and self.trigger_known is not None:
            return self.trigger_known(rest)
        if head == "trigger":
            return "." not in rest and (trigger_type == "manual" or rest in TRIGGER_VARIABLES[trigger_type])
        return False

    def filter(self, raw: Any, path: str, *, allow_variables: bool) -> CheckedFilter | None:
        custom: dict[str, FieldType] = dict(self.ctx.custom_fields)
        if allow_variables:
            for name, where in variables_in(raw):
                if name not in self.variable_kinds:
                    self.error(f"{path}.{where}", f"unknown variable {name!r}")
                    return None
            custom.update({f"{VAR_PREFIX}{n}": _variable_kind(k) for n, k in self.variable_kinds.items()})
            raw = _filter_with_variables(raw)
            known = conversation_conditions.Known(
                channel_types=self.ctx.channel_types,
                team_ids=self.ctx.team_ids,
                user_ids=self.ctx.user_ids,
                channel_kinds=CHANNEL_TYPES,
            )
            problems = conversation_conditions.check(raw, known)
            for where, message in problems.items():
                self.error(f"{path}.{where}", message)
            if problems:
                return None
            custom.update(conversation_conditions.FIELD_TYPES)
            raw = conversation_conditions.rewritten(raw)
        ctx = filters.CheckContext(custom_fields=custom, load_segment=self.ctx.load_segment)
        try:
            return filters.check_filter(raw, ctx, path)
        except ValidationFailed as exc:
            for where, message in (exc.details or {path: exc.message}).items():
                self.error(where, message)
            return None

    # -- the graph

    def graph(self, steps: list[Step]) -> None:
        """Every step reachable from the first; no cycle except through a jump_to step."""
        by_id = {s.id: s for s in steps}
        reached: set[str] = set()
        pending = [steps[0].id]
        while pending:
            current = pending.pop()
            if current in reached:
                continue
            reached.add(current)
            pending.extend(t for t in successors(by_id[current], jumps=True) if t in by_id)
        for step in steps:
            if step.id not in reached:
                self.error(f"steps[{step.index}]", "no path leads to this step (unreachable)")
        # Depth-first search for a cycle over the edges other than jumps.
        state: dict[str, int] = {}

        def visit(step_id: str) -> bool:
            state[step_id] = 1
            for target in successors(by_id[step_id], jumps=False):
                if target not in by_id:
                    continue
                mark = state.get(target, 0)
                if mark == 1:
                    step = by_id[step_id]
                    self.error(
                        f"steps[{step.index}].next", f"makes a loop back to {target!r}; loops must use a jump_to step"
                    )
                    return True
                if mark == 0 and visit(target):
                    return True
            state[step_id] = 2
            return False

        for step in steps:
            if state.get(step.id, 0) == 0 and visit(step.id):
                return


def successors(step: Step, *, jumps: bool) -> list[str]:
    found = [t for t in (step.next, *step.on.values()) if t is not None]
    if isinstance(step.config, BranchConfig):
        found.extend(b.next for b in step.config.branches if b.next is not None)
    if jumps and isinstance(step.config, JumpConfig):
        found.append(step.config.target)
    return found


def _may_be_https(link: str) -> bool:
    """Whether a header file's URL may be https once its variables are filled in: it starts with
    https:// or with a variable (the URL it gives is checked when the step runs)."""
    head = link.strip()
    return head.lower().startswith("https://") or head.startswith("{{")


def _article(word: str | None) -> str:
    return "an" if (word or "")[:1] in ("a", "e", "i", "o", "u") else "a"


def _texts_of(config: Any) -> list[tuple[str, str]]:
    """(field path, text) of every text with variables in a step's config."""
    if isinstance(config, SendMessageConfig):
        found = [("text", config.text)]
        for index, variant in enumerate(config.variants):
            if variant.text is not None:
                found.append((f"variants[{index}].text", variant.text))
            for part in ("parameters", "header_parameters"):
                for position, value in enumerate(getattr(variant.template, part) if variant.template else []):
                    found.append((f"variants[{index}].template.{part}[{position}]", value))
            for position, named in enumerate(variant.template.named_parameters if variant.template else []):
                found.append((f"variants[{index}].template.named_parameters[{position}].value", named.value))
            media = variant.template.header_media if variant.template else None
            if media is not None:
                if media.link is not None:
                    found.append((f"variants[{index}].template.header_media.link", media.link))
                if media.filename is not None:
                    found.append((f"variants[{index}].template.header_media.filename", media.filename))
            place = variant.template.header_location if variant.template else None
            for key in ("latitude", "longitude", "name", "address"):
                value = getattr(place, key) if place is not None else None
                if isinstance(value, str):
                    found.append((f"variants[{index}].template.header_location.{key}", value))
        return found
    if isinstance(config, CommentConfig):
        return [("text", config.text)]
    if isinstance(config, AskQuestionConfig):
        found = [("text", config.text)]
        if config.retry_text:
            found.append(("retry_text", config.retry_text))
        return found
    if isinstance(config, UpdateFieldConfig):
        return [("value", config.value)]
    if isinstance(config, CloseConfig) and config.summary:
        return [("summary", config.summary)]
    if isinstance(config, HttpConfig):
        found = [("url", config.url)]
        found.extend((f"headers[{i}].value", h.value) for i, h in enumerate(config.headers))
        if config.body is not None:
            found.append(("body", config.body))
        return found
    return []


NOT_FINITE = "must be a finite number (not NaN or infinity)"


def non_finite_path(raw: Any) -> str | None:
    """The path (`steps[0].config.min`) of a NaN or infinite number anywhere in a definition, even
    where a config takes any JSON (conditions): PostgreSQL's JSON cannot store one. Walked without
    recursion, as it is what a client sent."""
    pending: list[tuple[Any, str]] = [(raw, "")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return path or "definition"
        if isinstance(value, Mapping):
            pending.extend((item, f"{path}.{key}" if path else str(key)) for key, item in value.items())
        elif isinstance(value, list | tuple):
            pending.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
    return None


def nesting_depth(value: Any, stop_past: int) -> int:
    """How deep objects and arrays go in JSON-like data (1 for a flat object), counted without
    recursion since a client sent it; the count stops once it passes `stop_past`."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, Mapping | list | tuple):
            deepest = max(deepest, depth)
            if depth > stop_past:
                return depth
            items = current.values() if isinstance(current, Mapping) else current
            pending.extend((item, depth + 1) for item in items)
    return deepest


def check_definition(raw: Any, ctx: CheckContext) -> tuple[Workflow | None, dict[str, str]]:
    """The checked workflow and no errors, or None and every error found (path -> message)."""
    not_finite = non_finite_path(raw)
    if not_finite is not None:
        return None, {not_finite: NOT_FINITE}
    checker = _Checker(ctx)
    workflow = checker.run(raw)
    return workflow, checker.errors


def load_definition(raw: Any, ctx: CheckContext) -> Workflow:
    """A definition that must be valid (it was checked when saved): DefinitionErrors otherwise."""
    workflow, errors = check_definition(raw, ctx)
    if workflow is None:
        raise DefinitionErrors(errors or {"definition": "not a valid workflow"})
    return workflow


DEFINITION_SCHEMA = TypeAdapter(DefinitionIn).json_schema()


def variable_kinds_of(raw: Any, ctx: CheckContext) -> dict[str, str]:
    """The run variables a definition declares, by name ("text" or "number"): what its branches'
    conditions may name. Empty while the definition's shape is wrong (a draft being edited); the
    steps whose config is wrong declare nothing."""
    if not isinstance(raw, Mapping):
        return {}
    try:
        parsed = DefinitionIn.model_validate(raw)
    except PydanticValidationError:
        return {}
    checker = _Checker(ctx)
    steps = parsed.steps[:MAX_STEPS]
    checker.collect_variables(steps, [checker.step_config(index, step) for index, step in enumerate(steps)])
    return dict(checker.variable_kinds)


def check_conditions(raw: Any, ctx: CheckContext, variable_kinds: Mapping[str, str] | None) -> CheckedFilter | None:
    """A trigger's (no variables: `variable_kinds` None) or a branch's conditions on their own, as
    saving the definition checks them; ValidationFailed with every error by path inside the filter."""
    checker = _Checker(ctx)
    checker.variable_kinds = dict(variable_kinds or {})
    checked = checker.filter(raw, "", allow_variables=variable_kinds is not None)
    if checker.errors:
        details = {path.lstrip("."): message for path, message in checker.errors.items()}
        raise ValidationFailed("The conditions have errors.", details=details)
    return checked
