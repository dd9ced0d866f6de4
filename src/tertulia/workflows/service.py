"""The workflow rules: saving definitions (checked, with every error by path), versions, publishing
and stopping, runs and their logs. Owners and managers (`manage_workflows`) edit; a service never
commits.

Versions: a new workflow has one draft version. Publishing makes the draft the published version
(the one before it is retired: its runs finish on it). Saving a workflow whose newest version is
published or stopped makes a new draft version; the published one keeps starting runs until the
draft is published. Stopping ends every run in progress and starts no more.
"""

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from tertulia.channels import message_templates
from tertulia.channels.models import Channel, MessageTemplate
from tertulia.contacts.models import CustomField, Tag
from tertulia.conversations.models import ClosingCategory, StoredFile
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import Conflict, NotFound, ValidationFailed
from tertulia.kit.text import tidy_name
from tertulia.segments import counts as segment_counts
from tertulia.segments import repository as segments_repo
from tertulia.users.models import Membership, Team, User
from tertulia.users.permissions import Actor, Permission
from tertulia.workflows import language as lang
from tertulia.workflows import queue
from tertulia.workflows import repository as repo
from tertulia.workflows.models import (
    RunStatus,
    VersionState,
    Workflow,
    WorkflowRun,
    WorkflowRunLog,
    WorkflowStatus,
    WorkflowVersion,
)

MAX_NAME = 120


def check_context(session: Session, workspace_id: int, self_workflow_id: int | None = None) -> lang.CheckContext:
    filters = segment_counts.check_context(session, workspace_id)

    def ids(query: Select[int]) -> frozenset[int]:
        return frozenset(session.scalars(query))

    # Rows, not the result: a result has keys(), which dict() would take for a mapping's.
    rows = session.execute(select(Channel.id, Channel.type).where(Channel.workspace_id == workspace_id)).all()
    channel_types: dict[int, str] = {row[0]: row[1] for row in rows}
    return lang.CheckContext(
        custom_fields=filters.custom_fields,
        load_segment=filters.load_segment,
        channel_ids=frozenset(channel_types),
        channel_types=channel_types,
        user_ids=ids(select(Membership.user_id).where(Membership.workspace_id == workspace_id, Membership.active)),
        team_ids=ids(select(Team.id).where(Team.workspace_id == workspace_id)),
        closing_category_ids=ids(select(ClosingCategory.id).where(ClosingCategory.workspace_id == workspace_id)),
        manual_workflow_ids=frozenset(repo.manual_workflow_ids(session, workspace_id)),
        self_workflow_id=self_workflow_id,
        file_exists=lambda file_id: (
            session.scalar(
                select(StoredFile.id).where(StoredFile.workspace_id == workspace_id, StoredFile.id == file_id)
            )
            is not None
        ),
        whatsapp_templates=lambda channel, name, language: whatsapp_template_shapes(
            session, workspace_id, channel, name, language
        ),
    )


def whatsapp_template_shapes(
    session: Session, workspace_id: int, channel: int | str, name: str, language: str
) -> list[lang.TemplateShape]:
    """The stored templates of this name and language on the WhatsApp numbers a step may send on:
    the step's channel, or every active number of the workspace for "last_interacted"."""
    query = select(Channel).where(Channel.workspace_id == workspace_id, Channel.type == "whatsapp")
    if isinstance(channel, int):
        query = query.where(Channel.id == channel)
    else:
        query = query.where(Channel.active)
    shapes = []
    for number in session.scalars(query.order_by(Channel.id)):
        template = message_templates.find_template(session, number, name, language)
        if template is None:
            continue
        found = message_templates.slots(template)
        text_slots = [s for s in found if s.kind == "text"]
        shapes.append(
            lang.TemplateShape(
                name=template.name,
                named=template.parameter_format == "NAMED",
                header=tuple(s.key for s in text_slots if s.component == "header"),
                body=tuple(s.key for s in text_slots if s.component == "body"),
                media=next((s.kind for s in found if s.kind != "text"), None),
            )
        )
    return shapes


# A choice of a picker in the builder: the value stored in the definition and the name shown.
Choice = tuple[int | str, str]


def reference_choices(
    session: Session, workspace_id: int, self_workflow_id: int | None = None
) -> dict[str, list[Choice]]:
    """What the workspace has that a definition names by id or key (channels, users, teams,
    closing categories, the workflows a step may start, contact fields, tags), by the config field
    names that hold them, so the builder draws pickers: any step or trigger that uses one of these
    names gets one. The same sets the checker accepts (`check_context`)."""

    def named(query: Select[int, str]) -> list[Choice]:
        return [(row[0], row[1] or f"#{row[0]}") for row in session.execute(query)]

    channels = named(
        select(Channel.id, Channel.name).where(Channel.workspace_id == workspace_id).order_by(Channel.name)
    )
    users: list[Choice] = [
        (user_id, " ".join(part for part in (first, last) if part) or email)
        for user_id, first, last, email in session.execute(
            select(User.id, User.first_name, User.last_name, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id, Membership.active)
            .order_by(User.first_name, User.last_name, User.email)
        )
    ]
    teams = named(select(Team.id, Team.name).where(Team.workspace_id == workspace_id).order_by(Team.name))
    categories = named(
        select(ClosingCategory.id, ClosingCategory.name)
        .where(ClosingCategory.workspace_id == workspace_id)
        .order_by(ClosingCategory.position, ClosingCategory.name)
    )
    startable = repo.manual_workflow_ids(session, workspace_id) - {self_workflow_id}
    workflows = (
        named(select(Workflow.id, Workflow.name).where(Workflow.id.in_(startable)).order_by(Workflow.name))
        if startable
        else []
    )
    custom = session.execute(
        select(CustomField.key, CustomField.label)
        .where(CustomField.workspace_id == workspace_id)
        .order_by(CustomField.position, CustomField.key)
    )
    fields: list[Choice] = [(name, name) for name in lang.UPDATABLE_FIELDS]
    fields += [(key, f"{label} ({key})" if label and label != key else key) for key, label in custom]
    tags: list[Choice] = [
        (name, name)
        for (name,) in session.execute(
            select(Tag.name).where(Tag.workspace_id == workspace_id).order_by(Tag.name_key).limit(500)
        )
    ]
    templates = approved_templates(session, workspace_id)
    template_names: list[Choice] = [(name, name) for name in dict.fromkeys(t.name for t in templates)]
    template_languages: list[Choice] = [(code, code) for code in dict.fromkeys(sorted(t.language for t in templates))]
    # Each name a NAMED template asks for, with the templates that ask for it.
    asking: dict[str, list[str]] = {}
    for template in templates:
        if template.parameter_format == "NAMED":
            for slot in message_templates.slots(template):
                if slot.kind == "text" and template.name not in asking.setdefault(slot.key, []):
                    asking[slot.key].append(template.name)
    parameter_names: list[Choice] = [(key, f"{key} ({', '.join(names)})") for key, names in sorted(asking.items())]
    return {
        "channel": channels,
        "template.name": template_names,
        "template.language": template_languages,
        "named_parameters.name": parameter_names,
        "user_id": users,
        "team_id": teams,
        "category_id": categories,
        "category_ids": categories,
        "workflow_id": workflows,
        "field": fields,
        "fields": fields,
        "save_to.name": fields,
        "tags": tags,
    }


def approved_templates(session: Session, workspace_id: int) -> Sequence[MessageTemplate]:
    """The APPROVED templates of the workspace's active WhatsApp numbers (at most 500)."""
    return session.scalars(
        select(MessageTemplate)
        .join(Channel, Channel.id == MessageTemplate.channel_id)
        .where(
            MessageTemplate.workspace_id == workspace_id,
            MessageTemplate.status == message_templates.APPROVED,
            Channel.active,
        )
        .order_by(MessageTemplate.name, MessageTemplate.language)
        .limit(500)
    ).all()


MEDIA_KINDS = frozenset(message_templates.MEDIA_HEADERS.values())


def media_header_templates(session: Session, workspace_id: int) -> dict[str, str]:
    """The names of the approved templates whose header is a file or a place, with its kind
    (`image`, `video`, `document`, `location`): the builder shows the header file's field, or the
    place's, for these."""
    found: dict[str, str] = {}
    for template in approved_templates(session, workspace_id):
        kind = next((s.kind for s in message_templates.slots(template) if s.kind in MEDIA_KINDS), None)
        if kind is not None:
            found.setdefault(template.name, kind)
    return found


def check_definition(
    session: Session, workspace_id: int, raw: Any, self_workflow_id: int | None = None
) -> lang.Workflow:
    workflow, errors = lang.check_definition(raw, check_context(session, workspace_id, self_workflow_id))
    if workflow is None:
        raise lang.DefinitionErrors(errors)
    return workflow


def definition_errors(session: Session, workflow: Workflow, version: WorkflowVersion) -> dict[str, str]:
    """What is wrong with a stored definition today (a custom field or channel it names is gone)."""
    return lang.check_definition(version.definition, check_context(session, workflow.workspace_id, workflow.id))[1]


# Checked definitions of versions, for runs: a published version never changes, but what checking
# depends on (custom field types) may; the key holds both.
_CACHE: "OrderedDict[tuple[Any, ...], lang.Workflow]" = OrderedDict()
_CACHE_SIZE = 512


def checked_version(
    session: Session, version: WorkflowVersion, *, fields: Mapping[str, Any] | None = None
) -> lang.Workflow:
    """The runnable form of a stored version. Checked loosely: a channel or user deleted since it was
    published fails the step that names it when the step runs, not the whole run. `fields`: the
    workspace's custom field types when the caller has them (a batch of runs loads them once)."""
    if fields is None:
        fields = segments_repo.custom_field_types(session, version.workspace_id)
    # The creation time too: a deleted workflow's version id may be handed out again (SQLite).
    key = (version.id, version.created_at, tuple(sorted(fields.items())))
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached
    ctx = segment_counts.check_context(session, version.workspace_id)
    checked = lang.load_definition(version.definition, lang.CheckContext(ctx.custom_fields, ctx.load_segment))
    _CACHE[key] = checked
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return checked


# ----- workflows ----------------------------------------------------------------------------------


# C0 and C1 control characters (tabs and line breaks too): a name is one line of plain text, and
# an escape sequence in one would reach terminals through logs and exports.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
NO_CONTROL_CHARACTERS = "must not contain control characters"  # translated in web/messages.py


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not tidy_name(name).strip():
        raise ValidationFailed.field("name", "must not be empty")
    cleaned = tidy_name(name).strip()
    if _CONTROL.search(cleaned):
        raise ValidationFailed.field("name", NO_CONTROL_CHARACTERS)
    if len(cleaned) > MAX_NAME:
        raise ValidationFailed.field("name", f"must be at most {MAX_NAME} characters")
    return cleaned


def access_workflow(session: Session, actor: Actor, workflow_id: int, *, lock: bool = False) -> Workflow:
    actor.require(Permission.MANAGE_WORKFLOWS)
    found = repo.workflow(session, actor.workspace_id, workflow_id, lock=lock)
    if found is None:
        raise NotFound(f"No workflow {workflow_id}.")
    return found


def list_workflows(session: Session, actor: Actor) -> list[Workflow]:
    actor.require(Permission.MANAGE_WORKFLOWS)
    return repo.workflows(session, actor.workspace_id)


def do_create_workflow(session: Session, actor: Actor, name: Any, definition: Any) -> Workflow:
    actor.require(Permission.MANAGE_WORKFLOWS)
    cleaned = check_name(name)
    checked = check_definition(session, actor.workspace_id, definition)
    now = utcnow()
    workflow = Workflow(workspace_id=actor.workspace_id, name=cleaned, status=WorkflowStatus.DRAFT, round_robin={})
    session.add(workflow)
    session.flush()
    draft = _new_version(session, workflow, definition, checked, 1, now)
    workflow.draft_version_id = draft.id
    session.flush()
    return workflow


def _new_version(
    session: Session, workflow: Workflow, definition: Any, checked: lang.Workflow, number: int, now: Any
) -> WorkflowVersion:
    version = WorkflowVersion(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        number=number,
        definition=dict(definition),
        trigger_type=checked.trigger.type,
        state=VersionState.DRAFT,
        created_at=now,
    )
    session.add(version)
    session.flush()
    return version


def do_update_workflow(session: Session, actor: Actor, workflow: Workflow, name: Any, definition: Any) -> Workflow:
    """A new name and/or definition. A published or stopped workflow gets a new draft version."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    if name is not None:
        workflow.name = check_name(name)
    if definition is not None:
        checked = check_definition(session, actor.workspace_id, definition, workflow.id)
        _reject_self_start(checked, workflow.id)
        draft = repo.version(session, workflow.draft_version_id)
        if draft is not None and draft.state == VersionState.DRAFT:
            draft.definition = dict(definition)
            draft.trigger_type = checked.trigger.type
        else:
            latest = repo.latest_version(session, workflow.id)
            number = (latest.number if latest else 0) + 1
            draft = _new_version(session, workflow, definition, checked, number, utcnow())
            workflow.draft_version_id = draft.id
    workflow.updated_at = utcnow()
    session.flush()
    return workflow


def _reject_self_start(checked: lang.Workflow, workflow_id: int) -> None:
    for step in checked.steps:
        if isinstance(step.config, lang.StartWorkflowConfig) and step.config.workflow_id == workflow_id:
            raise ValidationFailed.field(f"steps[{step.index}].config.workflow_id", "a workflow cannot start itself")


def _starts(version: WorkflowVersion | None) -> set[int]:
    if version is None:
        return set()
    return {
        step.get("config", {}).get("workflow_id")
        for step in version.definition.get("steps", [])
        if isinstance(step, Mapping) and step.get("type") == "start_workflow" and isinstance(step.get("config"), dict)
    } - {None}


def _check_no_cycle(session: Session, workflow: Workflow, version: WorkflowVersion) -> None:
    """Publishing must not close a cycle of workflows starting each other."""
    pending = list(_starts(version))
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current == workflow.id:
            raise ValidationFailed.field("definition", "workflows would start each other in a cycle")
        if current in seen:
            continue
        seen.add(current)
        other = repo.workflow(session, workflow.workspace_id, current)
        if other is not None:
            pending.extend(_starts(repo.version(session, other.published_version_id)))


def do_publish(session: Session, actor: Actor, workflow: Workflow) -> Workflow:
    actor.require(Permission.MANAGE_WORKFLOWS)
    draft = repo.version(session, workflow.draft_version_id)
    if draft is None or draft.state != VersionState.DRAFT:
        if workflow.status == WorkflowStatus.PUBLISHED:
            raise Conflict("This workflow is published and has no changes to publish.", code="nothing_to_publish")
        # A stopped workflow published again: its newest version, as a new version.
        latest = repo.latest_version(session, workflow.id)
        if latest is None:
            raise Conflict("This workflow has no definition.", code="nothing_to_publish")
        do_update_workflow(session, actor, workflow, None, latest.definition)
        draft = repo.version(session, workflow.draft_version_id)
        assert draft is not None
    check_definition(session, actor.workspace_id, draft.definition, workflow.id)
    _check_no_cycle(session, workflow, draft)
    now = utcnow()
    current = repo.version(session, workflow.published_version_id)
    if current is not None and current.state == VersionState.PUBLISHED:
        current.state = VersionState.RETIRED
    draft.state = VersionState.PUBLISHED
    draft.published_at = now
    workflow.published_version_id = draft.id
    workflow.draft_version_id = None
    workflow.status = WorkflowStatus.PUBLISHED
    workflow.updated_at = now
    session.flush()
    return workflow


def do_stop(session: Session, actor: Actor, workflow: Workflow) -> int:
    """Stop the workflow and end its runs in progress; how many runs were ended."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    if workflow.status != WorkflowStatus.PUBLISHED:
        raise Conflict("This workflow is not published.", code="not_published")
    now = utcnow()
    published = repo.version(session, workflow.published_version_id)
    if published is not None:
        published.state = VersionState.STOPPED
    workflow.status = WorkflowStatus.STOPPED
    workflow.published_version_id = None
    workflow.updated_at = now
    runs = repo.active_runs_of_workflow(session, workflow.id)
    for run in runs:
        end_run(session, run, RunStatus.STOPPED, "the workflow was stopped")
    session.flush()
    return len(runs)


def end_run(session: Session, run: WorkflowRun, status: str, reason: str | None) -> None:
    now = utcnow()
    queue.leave(session, run.id)
    run.status = status
    run.active_contact_id = None
    run.due_at = None
    run.pending_action = None
    run.finished_at = now
    run.updated_at = now
    if reason is not None:
        state = dict(run.state)
        at = state.get("at")
        state["status"] = status
        run.state = state
        session.add(
            WorkflowRunLog(
                workspace_id=run.workspace_id,
                workflow_id=run.workflow_id,
                run_id=run.id,
                step_id=str(at or "-"),
                step_type="-",
                outcome=status,
                error=reason,
                at=now,
            )
        )


# ----- runs ---------------------------------------------------------------------------------------


def access_run(session: Session, actor: Actor, workflow: Workflow, run_id: int, *, lock: bool = False) -> WorkflowRun:
    run = repo.run(session, run_id, lock=lock)
    if run is None or run.workflow_id != workflow.id or run.workspace_id != actor.workspace_id:
        raise NotFound(f"No run {run_id} of this workflow.")
    return run


def do_stop_run(session: Session, actor: Actor, run: WorkflowRun) -> WorkflowRun:
    actor.require(Permission.MANAGE_WORKFLOWS)
    if run.status not in RunStatus.ACTIVE:
        raise Conflict("This run is not in progress.", code="not_running")
    by = f"user {actor.user_id}" if actor.user_id else actor.kind
    end_run(session, run, RunStatus.STOPPED, f"stopped by {by}")
    session.flush()
    return run


@dataclass(frozen=True)
class RunWithLogs:
    run: WorkflowRun
    logs: list[WorkflowRunLog]


def runs_with_logs(
    session: Session, workflow: Workflow, *, before_id: int | None = None, limit: int = 50
) -> list[RunWithLogs]:
    runs = repo.runs_page(session, workflow.id, before_id=before_id, limit=limit)
    logs = repo.logs_of(session, [r.id for r in runs])
    return [RunWithLogs(run, logs[run.id]) for run in runs]


def workflow_dict(session: Session, workflow: Workflow, active_runs: int | None = None) -> dict[str, Any]:
    draft = repo.version(session, workflow.draft_version_id)
    published = repo.version(session, workflow.published_version_id)
    shown = draft or published or repo.latest_version(session, workflow.id)
    if active_runs is None:
        active_runs = repo.active_run_counts(session, workflow.workspace_id).get(workflow.id, 0)
    return {
        "id": workflow.id,
        "name": workflow.name,
        "status": workflow.status,
        "trigger_type": shown.trigger_type if shown else None,
        "definition": shown.definition if shown else None,
        "version": shown.number if shown else None,
        "has_draft": draft is not None,
        "published_version": published.number if published else None,
        "runs_in_progress": active_runs,
        "last_error": workflow.last_error,
        "last_error_at": workflow.last_error_at,
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
    }


def run_dict(item: RunWithLogs) -> dict[str, Any]:
    run = item.run
    return {
        "id": run.id,
        "contact_id": run.contact_id,
        "version_id": run.version_id,
        "status": run.status,
        "at_step": run.state.get("at"),
        "variables": run.state.get("vars", {}),
        "due_at": run.due_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_error": run.last_error,
        "logs": [
            {
                "step_id": log.step_id,
                "step_type": log.step_type,
                "outcome": log.outcome,
                "error": log.error,
                "at": log.at,
            }
            for log in item.logs
        ],
    }


def runs_of_contact(session: Session, workspace_id: int, contact_id: int) -> Sequence[WorkflowRun]:
    return list(
        session.scalars(
            select(WorkflowRun)
            .where(WorkflowRun.workspace_id == workspace_id, WorkflowRun.contact_id == contact_id)
            .order_by(WorkflowRun.id.desc())
            .limit(50)
        )
    )


def current_definition(session: Session, workflow: Workflow) -> dict[str, Any]:
    """The draft if there is one, else the published (or newest) version's definition."""
    shown = (
        repo.version(session, workflow.draft_version_id)
        or repo.version(session, workflow.published_version_id)
        or repo.latest_version(session, workflow.id)
    )
    if shown is None:
        raise NotFound("This workflow has no definition.")
    return shown.definition


# ----- clone, delete, export ------------------------------------------------------------------------

COPY_PREFIX = "Copy of "


def export_dict(session: Session, workflow: Workflow) -> dict[str, Any]:
    """The workflow as JSON: its name and its current definition, the body that creates it again
    (`POST /api/v1/workflows`); importing is creating from it, checked like any new workflow."""
    return {"name": workflow.name, "definition": current_definition(session, workflow)}


def do_clone(session: Session, actor: Actor, workflow: Workflow) -> Workflow:
    """A new draft with the workflow's current definition, named "Copy of ..."; no runs."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    name = f"{COPY_PREFIX}{workflow.name}"[:MAX_NAME]
    return do_create_workflow(session, actor, name, current_definition(session, workflow))


def do_delete(session: Session, actor: Actor, workflow: Workflow) -> int:
    """Delete the workflow with its versions, runs, their logs and effects; how many runs were in
    progress. Those runs end where they are: nothing more is sent for them (messages already
    written to the outbox still go). Other workflows whose step starts this one fail that step."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    runs = repo.active_runs_of_workflow(session, workflow.id)
    for run in runs:  # first, so that a run of another workflow next in a pool is woken
        queue.leave(session, run.id)
    repo.delete_workflow(session, workflow.id)
    in_progress = len(runs)
    return in_progress


# ----- a contact's runs -----------------------------------------------------------------------------

LAST_LOGS = 5


def contact_run_dict(
    session: Session, run: WorkflowRun, logs: Sequence[WorkflowRunLog] | None = None
) -> dict[str, Any]:
    workflow = session.get(Workflow, run.workflow_id)
    if logs is None:
        logs = repo.logs_of(session, [run.id])[run.id]
    return {
        "id": run.id,
        "workflow_id": run.workflow_id,
        "workflow_name": workflow.name if workflow is not None else "",
        "status": run.status,
        "at_step": run.state.get("at"),
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "last_error": run.last_error,
        "last_logs": [
            {"step_id": e.step_id, "step_type": e.step_type, "outcome": e.outcome, "error": e.error, "at": e.at}
            for e in list(logs)[-LAST_LOGS:]
        ],
    }


def contact_runs(session: Session, actor: Actor, contact_id: int) -> list[dict[str, Any]]:
    """The contact's runs (the newest 50), each with its workflow's name and last log lines."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    runs = runs_of_contact(session, actor.workspace_id, contact_id)
    logs = repo.logs_of(session, [run.id for run in runs])
    return [contact_run_dict(session, run, logs[run.id]) for run in runs]


def access_contact_run(
    session: Session, actor: Actor, contact_id: int, run_id: int, *, lock: bool = False
) -> WorkflowRun:
    actor.require(Permission.MANAGE_WORKFLOWS)
    run = repo.run(session, run_id, lock=lock)
    if run is None or run.contact_id != contact_id or run.workspace_id != actor.workspace_id:
        raise NotFound(f"No workflow run {run_id} of this contact.")
    return run
