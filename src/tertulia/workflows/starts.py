"""Starting a run for a contact outside the event log (a shortcut, an incoming webhook, a date),
with the same rules as the trigger consumer: blocked contacts start nothing, the trigger's
conditions must match, one run per contact and workflow at a time, and "once per contact". Each
refusal is a Conflict whose code says why, so an API can answer it and the date sweep can record it.
"""

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.db import on_commit
from tertulia.kit.errors import Conflict, DomainError
from tertulia.segments import repository as segments_repo
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.timing import EvalContext
from tertulia.workflows import language as lang
from tertulia.workflows import repository as repo
from tertulia.workflows import runner, service, tasks
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowStatus, WorkflowVersion

BLOCKED = "This contact is blocked: workflows start nothing for it."
CONDITIONS = "The contact does not meet the conditions of this workflow's trigger."
ALREADY_RUNNING = "The contact is already in this workflow."
ALREADY_RAN = "This workflow runs once per contact, and this contact has had its run."
NOT_PUBLISHED = "This workflow is not published."


def published(session: Session, workflow: Workflow, trigger_type: str) -> tuple[WorkflowVersion, lang.Workflow]:
    """The workflow's published version and its checked definition, when its trigger is
    `trigger_type`; a Conflict (not_published, wrong_trigger) otherwise."""
    version = repo.version(session, workflow.published_version_id)
    if workflow.status != WorkflowStatus.PUBLISHED or version is None:
        raise Conflict(NOT_PUBLISHED, code="not_published")
    if version.trigger_type != trigger_type:
        raise Conflict(f"This workflow's trigger is not {trigger_type}.", code="wrong_trigger")
    try:
        return version, service.checked_version(session, version)
    except DomainError as exc:
        raise Conflict(f"This workflow's definition no longer checks: {exc.message}", code="invalid") from exc


def start(
    session: Session,
    workflow: Workflow,
    version: WorkflowVersion,
    checked: lang.Workflow,
    contact: Contact,
    values: dict[str, Any],
    *,
    conversation_id: int | None = None,
) -> WorkflowRun:
    """A new run of the contact, or a Conflict saying why none started. The advance task is
    queued after the commit."""
    if contact.blocked:
        raise Conflict(BLOCKED, code="contact_blocked")
    if checked.conditions.groups:
        snapshot = ContactSnapshot.of(contact, segments_repo.contact_tag_keys(session, contact.id))
        timezone = segments_repo.workspace_timezone(session, contact.workspace_id) or "UTC"
        context = EvalContext(workspace_id=contact.workspace_id, timezone=ZoneInfo(timezone), now=utcnow())
        if not matches(checked.conditions, snapshot, context):
            raise Conflict(CONDITIONS, code="conditions_not_met")
    if repo.active_run(session, workflow.id, contact.id) is not None:
        raise Conflict(ALREADY_RUNNING, code="already_running")
    once = checked.trigger.once_per_contact
    if once and repo.ever_ran(session, workflow.id, contact.id):
        raise Conflict(ALREADY_RAN, code="already_ran")
    run = runner.start_run(
        session, workflow, version, contact.id, values, once_per_contact=once, conversation_id=conversation_id
    )
    if run is None:  # a concurrent start took the contact's place
        raise Conflict(ALREADY_RUNNING, code="already_running")
    on_commit(session, tasks.nudge)
    return run
