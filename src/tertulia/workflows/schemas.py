"""The API's shapes for workflows, their runs and simulations (OpenAPI-described). A definition is
the JSON of docs/workflows.md; it is checked by `language.check_definition`, which answers every
error with the path of the step and field at fault."""

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from tertulia.contacts.schemas import IDENTIFIER_PATTERN
from tertulia.kit.types import ID, described

Name = Annotated[str, described(120)]
Answer = Annotated[str, described(2000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkflowBody(Strict):
    name: Name
    definition: dict[str, Any] = Field(description="The workflow: a trigger and its steps (docs/workflows.md).")


class WorkflowPatch(Strict):
    name: Name | None = None
    definition: dict[str, Any] | None = Field(
        default=None, description="A new definition: a published workflow gets a new draft version."
    )


MIN_SIMULATED_YEAR, MAX_SIMULATED_YEAR = 2000, 2200


class SimulateBody(Strict):
    contact: str = Field(
        description="The contact: id:12, email:ana@example.com or phone:+5215512345678.",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN, "maxLength": 300},
    )
    answers: Annotated[list[Answer], described(max_items=50)] = Field(
        default_factory=list, description="What the contact answers to each question, in order."
    )
    form: Annotated[dict[str, Any], described(max_items=5)] = Field(
        default_factory=dict,
        description="For a shortcut: the answers to its form, by field name, checked as when a person runs it "
        "(they become trigger.<name>; trigger.user_id is the caller).",
    )
    at: AwareDatetime | None = Field(
        default=None,
        description="The moment the simulated run starts (ISO 8601 with an offset); date & time steps read it. "
        "Default: now.",
    )

    @field_validator("at")
    @classmethod
    def _within_reach(cls, value: datetime | None) -> datetime | None:
        # Waits and timeouts are added to it: keep it far from the calendar's ends.
        if value is not None and not (MIN_SIMULATED_YEAR <= value.year <= MAX_SIMULATED_YEAR):
            raise ValueError(f"must be between the years {MIN_SIMULATED_YEAR} and {MAX_SIMULATED_YEAR}")
        return value


class WorkflowOut(BaseModel):
    id: int
    name: str
    status: str = Field(description="draft, published or stopped.")
    trigger_type: str | None
    definition: dict[str, Any] | None = Field(description="The draft if there is one, else the published version.")
    version: int | None
    has_draft: bool
    published_version: int | None
    runs_in_progress: int
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime


class StopOut(BaseModel):
    workflow: WorkflowOut
    runs_stopped: int


class LogOut(BaseModel):
    step_id: str
    step_type: str
    outcome: str
    error: str | None
    at: datetime


class RunOut(BaseModel):
    id: int
    contact_id: int
    version_id: int
    status: str = Field(description="running, acting, waiting, finished, failed or stopped.")
    at_step: str | None
    variables: dict[str, Any]
    due_at: datetime | None
    started_at: datetime
    finished_at: datetime | None
    last_error: str | None
    logs: list[LogOut]


class RunPage(BaseModel):
    items: list[RunOut]
    next_cursor: int | None


class SimulatedAction(BaseModel):
    step_id: str
    kind: str
    params: dict[str, Any]


class SimulatedLog(BaseModel):
    step_id: str
    outcome: str
    error: str | None


class SimulationOut(BaseModel):
    path: list[str] = Field(description="The steps the run would go through, in order.")
    actions: list[SimulatedAction] = Field(description="What it would do, in order; none of it was done.")
    logs: list[SimulatedLog]
    status: str
    error: str | None
    variables: dict[str, Any]
    conversation: dict[str, Any] | None = Field(
        description="What branch conditions read of the contact's conversation (the open one, else the latest): "
        "status, channel_id, channel_type, team_id, assignee_id, assignee_status, opening_source. Null when there is "
        "none. "
        "Steps are not applied, so a branch after an assign or close step still sees it as it is now."
    )


# ----- templates ----------------------------------------------------------------------------------


class TemplatePlaceholderOut(BaseModel):
    key: str
    kind: str = Field(description="team, tag, custom_field or closing_category.")
    label: dict[str, str] = Field(description="By language: es, en.")
    default: Any = Field(description="A value, or one per language; teams and categories: chosen by name.")


class WorkflowTemplateOut(BaseModel):
    id: str
    category: str
    example: bool = Field(description="One of the nine example flows of respond.io's Spanish help centre.")
    name: dict[str, str] = Field(description="By language: es, en.")
    description: dict[str, str]
    trigger_type: str
    placeholders: list[TemplatePlaceholderOut]
    definition: dict[str, Any] = Field(description="By language: the definition with the placeholders' defaults.")


class FromTemplateBody(Strict):
    name: Name | None = Field(default=None, description="The template's name in `language` when left out.")
    language: Annotated[str, described(10)] | None = Field(
        default=None, description="es or en: the language of the messages it sends (default es)."
    )
    values: dict[str, Any] = Field(
        default_factory=dict, description="Placeholder key -> value: a team or category id, a tag, a field key."
    )


class FromTemplateOut(WorkflowOut):
    problems: dict[str, str] = Field(
        description="What to fix before publishing (path -> message): what the workspace lacks, as the checker says."
    )


class RunShortcutBody(Strict):
    contact: str = Field(
        description="The contact: id:12, email:ana@example.com or phone:+5215512345678.",
        json_schema_extra={"pattern": IDENTIFIER_PATTERN, "maxLength": 300},
    )
    answers: Annotated[dict[str, Any], described(max_items=5)] = Field(
        default_factory=dict, description="The answers to the shortcut's form, by field name."
    )
    conversation_id: ID | None = Field(
        default=None, description="The contact's open conversation it is run from (trigger.conversation_id)."
    )


class HookOut(BaseModel):
    url: str = Field(description="POST a JSON object here to start a run; the secret is its last part.")
    secret: str
    header: str = Field(description="Or POST to the URL without the secret, giving it in this header.")
    curl: str


class WorkflowExport(BaseModel):
    """The same JSON as creating a workflow: POST it to /api/v1/workflows to import it."""

    name: str
    definition: dict[str, Any]


class ContactRunLog(BaseModel):
    step_id: str
    step_type: str
    outcome: str
    error: str | None
    at: datetime


class ContactRunOut(BaseModel):
    id: int
    workflow_id: int
    workflow_name: str
    status: str = Field(description="running, acting, waiting, finished, failed or stopped.")
    at_step: str | None = Field(description="The step it is at (or ended at).")
    started_at: datetime
    finished_at: datetime | None
    last_error: str | None
    last_logs: list[ContactRunLog] = Field(description="Its last log lines, oldest first (at most 5).")


class ContactRunPage(BaseModel):
    items: list[ContactRunOut]


class HttpHostsBody(Strict):
    hosts: list[Annotated[str, Field(max_length=1000)]] = Field(
        max_length=500,
        description="Host names (crm.internal, *.corp.example), IP addresses or networks (10.20.0.0/16) that HTTP "
        "request steps may call although they are private or local; at most 50. Replaces the list.",
    )


class HttpHostsOut(BaseModel):
    hosts: list[str]
