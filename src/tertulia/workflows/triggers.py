"""The event-log consumer that starts runs and hands them what the contact writes.

Each event it reads becomes new runs of the published workflows whose trigger it matches (type,
config, conditions over the contact, once per contact) and inputs for the runs in progress of its
contact (message.received). A read of the log (up to the dispatcher's batch) is handled in one
transaction. Events made by an import, and every event of a blocked contact, start nothing. Fed
twice (the log is at least once), an event starts nothing twice: a run remembers the event that
started it and the newest event fed to it.

A read is first handled optimistically: the contacts, the runs of its contacts in the workflows it
may start and the workspaces' custom field types are read once, and the new runs are inserted
together at its end without a savepoint each. If anything raises (a concurrent start of the same
run, an event fed twice whose run has ended), the attempt is rolled back and the read is handled
again the careful way, each start in its own savepoint (`runner.start_run`).
"""

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.broadcasts import repository as broadcasts_repo
from tertulia.contacts.models import Contact
from tertulia.events.dispatcher import Consumer
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database, on_commit
from tertulia.kit.errors import DomainError
from tertulia.kit.queue import task_database
from tertulia.kit.text import name_key, tidy_name
from tertulia.segments import repository as segments_repo
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.timing import EvalContext
from tertulia.workflows import language as lang
from tertulia.workflows import queue, runner, service, tasks
from tertulia.workflows import repository as repo
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowVersion

CONSUMER_NAME = "workflows"

TRIGGERS_BY_EVENT: dict[str, tuple[str, ...]] = {
    EventType.CONVERSATION_OPENED: ("conversation_opened",),
    EventType.CONVERSATION_CLOSED: ("conversation_closed",),
    EventType.CONTACT_TAGGED: ("tag_added",),
    EventType.CONTACT_UNTAGGED: ("tag_removed",),
    EventType.CONTACT_UPDATED: ("field_changed",),
    EventType.BROADCAST_REPLIED: ("broadcast_replied",),
}
# Events after which someone may qualify for an assignment waiting in the queue (queue.py): an
# agent's load went down, or a queued conversation was assigned by hand or closed.
QUEUE_WAKERS = frozenset(
    {EventType.CONVERSATION_ASSIGNED, EventType.CONVERSATION_UNASSIGNED, EventType.CONVERSATION_CLOSED}
)
TYPES = frozenset(
    {
        *(EventType(t) for t in TRIGGERS_BY_EVENT),
        EventType.MESSAGE_RECEIVED,
        *QUEUE_WAKERS,
        EventType.USER_STATUS_CHANGED,
        EventType.TEAM_MEMBERS_CHANGED,
    }
)


def wakes_queue(event: EventRecord) -> bool:
    """Whether someone may now qualify for a queued assignment: a load went down, a queued
    conversation was taken or closed, a person came online (users/presence.py) or joined a team
    (users/teams.py: the queue of a team's assignments)."""
    if event.type in QUEUE_WAKERS:
        return True
    if event.type == EventType.TEAM_MEMBERS_CHANGED:
        return bool(event.payload.get("added_user_ids"))
    return event.type == EventType.USER_STATUS_CHANGED and event.payload.get("status") == "online"


def source_of(actor: str | None) -> str:
    """Who caused a conversation change, in the trigger's terms, from the event's actor label."""
    kind = (actor or "system").split(":", 1)[0]
    return {"channel": "contact", "contact": "contact", "user": "user", "api": "api", "workflow": "workflow"}.get(
        kind, "system"
    )


def trigger_values(
    event: EventRecord, trigger_type: str, config: Any, *, source: str | None = None
) -> dict[str, Any] | None:
    """The trigger variables when the event matches the trigger's config; None when it does not.
    `source`: who opened or closed the conversation when known better than the event's actor says
    (a contact's reply to a broadcast: "broadcast_reply", see `_Batch.source`)."""
    payload = event.payload
    if trigger_type in ("conversation_opened", "conversation_closed"):
        conversation = payload.get("conversation") or {}
        source = source or source_of(event.actor)
        if config.sources and source not in config.sources:
            return None
        values = {"source": source, "conversation_id": conversation.get("id")}
        if trigger_type == "conversation_closed":
            category = conversation.get("closing_category_id")
            if config.category_ids and category not in config.category_ids:
                return None
            values.update({"category": category, "summary": conversation.get("closing_summary")})
        return values
    if trigger_type in ("tag_added", "tag_removed"):
        tag = str(payload.get("tag") or "")
        wanted = {name_key(tidy_name(name)) for name in config.tags}
        if wanted and name_key(tidy_name(tag)) not in wanted:
            return None
        return {"tag": tag}
    if trigger_type == "field_changed":
        for change in payload.get("changes") or []:
            name = str(change.get("field") or "").removeprefix("custom_fields.")
            if name in config.fields:
                return {"field": name, "old_value": change.get("old"), "new_value": change.get("new")}
        return None
    if trigger_type == "broadcast_replied":
        return {"broadcast_id": payload.get("broadcast_id"), "channel_id": payload.get("channel_id")}
    return None


def _broadcast_matches(event: EventRecord, workflow: Workflow, config: Any) -> bool:
    named = event.payload.get("workflow_id")
    if named is not None:
        return bool(named == workflow.id)
    return not config.broadcast_ids or event.payload.get("broadcast_id") in config.broadcast_ids


def consume(db: Database, event: EventRecord) -> int:
    """Start the runs this event triggers, or feed it to the contact's runs; how many runs it touched."""
    return consume_batch(db, [event])


def consume_batch(db: Database, events: list[EventRecord]) -> int:
    """`consume` for several events (in id order) in one transaction: one commit for a read of the
    log instead of one or two per event. All or nothing, as the dispatcher's batches must be."""
    if runner.OPTIMISTIC_BATCHES:
        try:
            return _consume_all(db, events, fast=True)
        except runner.NotFast:
            pass  # rolled back: handled again the careful way
    return _consume_all(db, events, fast=False)


def _consume_all(db: Database, events: list[EventRecord], *, fast: bool) -> int:
    touched = 0
    with db.transaction() as session:
        try:
            batch = _Batch(session, events, fast=fast)
            for workspace_id in sorted({event.workspace_id for event in events if wakes_queue(event)}):
                touched += queue.wake(session, workspace_id)
            for event in events:
                touched += _consume(session, event, batch)
            session.flush()  # the new runs of an optimistic attempt
        except Exception as exc:
            if fast:
                raise runner.NotFast from exc
            raise
        if touched:
            on_commit(session, tasks.nudge)
    return touched


class _Batch:
    """What a read of the log reads once: the published versions by workspace and trigger types
    with their workflows, the workspaces' custom field types, the events' contacts, and (when
    `fast`) which of those contacts are in, or have been through, those workflows."""

    def __init__(self, session: Session, events: list[EventRecord], *, fast: bool) -> None:
        self._session = session
        self._events = events
        self.fast = fast
        self._found: dict[tuple[int, tuple[str, ...]], list[WorkflowVersion]] = {}
        self._fields: dict[int, dict[str, Any]] = {}
        self._contacts: dict[int, Contact] | None = None
        self._opened_by_reply: set[int] | None = None
        # Strong references: the session's identity map holds its objects weakly.
        self._workflows: dict[int, Workflow] = {}
        # For the workflows in `_runs_read`: the (workflow id, contact id) pairs of the events'
        # contacts with a run in progress, and those that ever had a run.
        self._runs_read: set[int] = set()
        self._active: set[tuple[int, int]] = set()
        self._ran: set[tuple[int, int]] = set()
        # The runs in progress of the contacts who wrote in this read, read and locked together at
        # the first message (one query, not one a message); contacts given a run by this read since.
        self._runs_in_progress: dict[tuple[int, int], list[WorkflowRun]] | None = None
        self._started_for: set[int] = set()

    def published(self, workspace_id: int, trigger_types: tuple[str, ...]) -> list[WorkflowVersion]:
        key = (workspace_id, trigger_types)
        if key not in self._found:
            versions = repo.published_versions(self._session, workspace_id, trigger_types)
            wanted = [v.workflow_id for v in versions if v.workflow_id not in self._workflows]
            if wanted:
                for workflow in self._session.scalars(select(Workflow).where(Workflow.id.in_(wanted))):
                    self._workflows[workflow.id] = workflow
            self._found[key] = versions
        return self._found[key]

    def workflow(self, workflow_id: int) -> Workflow | None:
        return self._workflows.get(workflow_id)

    def fields(self, workspace_id: int) -> dict[str, Any]:
        if workspace_id not in self._fields:
            self._fields[workspace_id] = dict(segments_repo.custom_field_types(self._session, workspace_id))
        return self._fields[workspace_id]

    def source(self, event: EventRecord) -> str:
        """Who opened or closed the event's conversation (`source_of`), with a conversation that a
        contact's reply to a broadcast opened told apart as "broadcast_reply". The conversations
        opened by contacts in the read are looked up together, once."""
        source = source_of(event.actor)
        if source != "contact" or event.type != EventType.CONVERSATION_OPENED:
            return source
        if self._opened_by_reply is None:
            opened = [
                e
                for e in self._events
                if e.type == EventType.CONVERSATION_OPENED
                and source_of(e.actor) == "contact"
                and e.conversation_id is not None
                and e.contact_id is not None
            ]
            self._opened_by_reply = broadcasts_repo.conversations_opened_by_a_reply(
                self._session,
                [e.contact_id for e in opened if e.contact_id is not None],
                [e.conversation_id for e in opened if e.conversation_id is not None],
            )
        return "broadcast_reply" if event.conversation_id in self._opened_by_reply else source

    def contact(self, contact_id: int) -> Contact | None:
        if self._contacts is None:
            wanted: set[int] = set()
            for event in self._events:
                if event.contact_id is not None and event.type in TRIGGERS_BY_EVENT:
                    wanted.add(event.contact_id)
            self._contacts = {
                c.id: c for c in self._session.scalars(select(Contact).where(Contact.id.in_(sorted(wanted))))
            }
        if contact_id not in self._contacts:
            found = self._session.get(Contact, contact_id)
            if found is None:
                return None
            self._contacts[contact_id] = found
        return self._contacts[contact_id]

    def runs_in_progress(self, workspace_id: int, contact_id: int) -> list[WorkflowRun]:
        """The contact's runs in progress, locked. A contact given a run by this read is read again:
        its new run came after the read of them all."""
        if contact_id in self._started_for:
            return repo.active_runs_of_contact(self._session, workspace_id, contact_id)
        if self._runs_in_progress is None:
            writers = {
                (event.workspace_id, event.contact_id)
                for event in self._events
                if event.type == EventType.MESSAGE_RECEIVED and event.contact_id is not None
            }
            self._runs_in_progress = repo.active_runs_of_contacts(self._session, writers)
        return self._runs_in_progress.get((workspace_id, contact_id), [])

    def start(
        self,
        workflow: Workflow,
        version: WorkflowVersion,
        contact_id: int,
        values: dict[str, Any],
        *,
        once_per_contact: bool,
        conversation_id: int | None,
        event_id: int,
    ) -> bool:
        """Start a run (see `runner.start_run`); whether one started."""
        self._started_for.add(contact_id)
        if not self.fast:
            started = runner.start_run(
                self._session,
                workflow,
                version,
                contact_id,
                values,
                once_per_contact=once_per_contact,
                conversation_id=conversation_id,
                event_id=event_id,
            )
            return started is not None
        self._read_runs(workflow.id)
        pair = (workflow.id, contact_id)
        if pair in self._active or (once_per_contact and pair in self._ran):
            return False
        run = runner.new_run(workflow, version, contact_id, values, conversation_id=conversation_id, event_id=event_id)
        self._session.add(run)  # inserted with the others at the end of the read
        self._active.add(pair)
        self._ran.add(pair)
        return True

    def _read_runs(self, workflow_id: int) -> None:
        """The runs of the batch's contacts in this workflow and in the other workflows read so far
        whose runs are not read yet (one query, usually once per batch)."""
        if workflow_id in self._runs_read:
            return
        workflow_ids = sorted({workflow_id, *self._workflows} - self._runs_read)
        contact_ids = sorted({event.contact_id for event in self._events if event.contact_id is not None})
        rows = self._session.execute(
            select(WorkflowRun.workflow_id, WorkflowRun.contact_id, WorkflowRun.active_contact_id).where(
                WorkflowRun.workflow_id.in_(workflow_ids), WorkflowRun.contact_id.in_(contact_ids)
            )
        )
        for run_workflow_id, contact_id, active_contact_id in rows:
            self._ran.add((run_workflow_id, contact_id))
            if active_contact_id is not None:
                self._active.add((run_workflow_id, active_contact_id))
        self._runs_read.update(workflow_ids)


def _consume(session: Session, event: EventRecord, batch: _Batch) -> int:
    if event.contact_id is None or (event.actor or "").split(":", 1)[0] == "import":
        return 0
    if event.type == EventType.MESSAGE_RECEIVED:
        return _contact_wrote(session, event, batch.runs_in_progress(event.workspace_id, event.contact_id))
    trigger_types = TRIGGERS_BY_EVENT.get(event.type)
    if not trigger_types:
        return 0
    # The event against each trigger first: most events match none, and then no contact is read.
    matching: list[tuple[WorkflowVersion, Workflow, lang.Workflow, dict[str, Any]]] = []
    source: str | None = None
    for version in batch.published(event.workspace_id, trigger_types):
        workflow = batch.workflow(version.workflow_id)
        if workflow is None:
            continue
        try:
            checked = service.checked_version(session, version, fields=batch.fields(event.workspace_id))
        except DomainError:
            continue  # a definition that no longer checks starts nothing (shown on its page)
        if version.trigger_type in ("conversation_opened", "conversation_closed"):
            source = source or batch.source(event)
        values = trigger_values(event, version.trigger_type, checked.trigger_config, source=source)
        if values is None:
            continue
        if version.trigger_type == "broadcast_replied" and not _broadcast_matches(
            event, workflow, checked.trigger_config
        ):
            continue
        matching.append((version, workflow, checked, values))
    if not matching:
        return 0
    contact = batch.contact(event.contact_id)
    if contact is None or contact.workspace_id != event.workspace_id or contact.blocked:
        return 0
    started = 0
    snapshot: ContactSnapshot | None = None
    for version, workflow, checked, values in matching:
        if checked.conditions.groups:
            snapshot = snapshot or ContactSnapshot.of(contact, segments_repo.contact_tag_keys(session, contact.id))
            if not matches(checked.conditions, snapshot, _eval_context(session, event.workspace_id)):
                continue
        started += batch.start(
            workflow,
            version,
            contact.id,
            values,
            once_per_contact=checked.trigger.once_per_contact,
            conversation_id=event.conversation_id,
            event_id=event.id,
        )
    return started


def _eval_context(session: Session, workspace_id: int) -> EvalContext:
    timezone = segments_repo.workspace_timezone(session, workspace_id) or "UTC"
    return EvalContext(workspace_id=workspace_id, timezone=ZoneInfo(timezone), now=utcnow())


def _contact_wrote(session: Session, event: EventRecord, runs: list[WorkflowRun]) -> int:
    message = event.payload.get("message") or {}
    text = message.get("text") or ""
    at = datetime.fromisoformat(message["created_at"]) if message.get("created_at") else event.created_at
    location = (message.get("payload") or {}).get("location") if message.get("type") == "location" else None
    assert event.contact_id is not None
    return runner.contact_wrote(
        session,
        event.workspace_id,
        event.contact_id,
        text,
        at,
        event.id,
        location if isinstance(location, dict) else None,
        runs,
    )


def handle(event: EventRecord) -> None:
    consume(task_database(), event)


def handle_batch(events: list[EventRecord]) -> None:
    consume_batch(task_database(), events)


CONSUMER = Consumer(name=CONSUMER_NAME, handle=handle, types=TYPES, handle_batch=handle_batch)

__all__ = ["CONSUMER", "consume", "lang"]
