"""Durable runs: starting them, feeding them their inputs, and doing what the engine asks.

A run is a row. Its `inbox` holds inputs in order (the start, what the contact wrote) and `due_at`
says when a worker should look at it (now, the end of a wait, a question's timeout). `run_due`
processes every due run; the event consumer (triggers.py) and the periodic sweep (tasks.py) call it.

One run is advanced in one transaction at a time: the row is locked, each input is fed to the
engine, every action the engine asks for is done through the services in the same transaction
(a savepoint each, so a refused action rolls back alone and becomes a failure result), each is
recorded in `workflow_effects` under its key, and the new state is written. A crash anywhere rolls
all of it back, so the retry repeats the same inputs from the same state: nothing is done twice and
nothing is skipped. Messages are written to the outbox in that transaction and delivered after it
commits, by the outbox's own task.

Due runs are turned in batches (`run_due`), first optimistically: no savepoint around each run's
turn nor around the tag actions, tags read once for the batch, and the batch's rows written in one
flush at its end. Savepoints only matter when something rolls back, so when nothing in the batch
raises, this commits exactly what the careful way would have. When anything raises (a refused tag
action, a bug in one step, a unique violation at the flush), the whole attempt is rolled back and
the batch is turned again the careful way: a savepoint per run and per action, as described above.

HTTP requests are the exception: they leave the server, so they cannot wait inside a transaction.
The run is committed with the request as its `pending_action` and `due_at` pushed past the
request's timeout (a lease); the request is made; its result is recorded as the effect under the
action's key and fed back in a new transaction. A crash after the request and before that record
makes the retry send the request again, with the same `Idempotency-Key` header, so a receiver that
honours it sees one request.
"""

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import httpx
import structlog
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.assistant import bot_settings
from tertulia.channels import message_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import MessageType
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import repository as conversations_repo
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation, ConversationStatus, Message, OpeningSource
from tertulia.events import service as event_log
from tertulia.events.types import EventType, WorkflowRunFailed
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import DomainError
from tertulia.kit.settings import get_settings
from tertulia.segments import repository as segments_repo
from tertulia.segments.evaluator import ContactSnapshot
from tertulia.segments.timing import EvalContext
from tertulia.users.models import ActivityStatus, Membership, TeamMember, User
from tertulia.users.permissions import Actor
from tertulia.webhooks.addresses import AddressRefused
from tertulia.workflows import engine, http_hosts, queue, service
from tertulia.workflows import language as lang
from tertulia.workflows import repository as repo
from tertulia.workflows.conversation_conditions import ConversationFacts, FactsCache
from tertulia.workflows.models import RunStatus, Workflow, WorkflowEffect, WorkflowRun, WorkflowRunLog, WorkflowVersion
from tertulia.workspaces.hours import BusinessHours
from tertulia.workspaces.service import hours_at

log = structlog.get_logger("tertulia.workflows")

# Inputs fed to one run in one transaction before the next due run gets its turn.
MAX_INPUTS_PER_TURN = 20
# Due runs claimed and turned in one transaction (see run_due).
BATCH_SIZE = 50
LEASE_MARGIN = timedelta(seconds=60)
MAX_RESPONSE_BYTES = 256 * 1024
USER_AGENT = "Tertulia-Workflows/1"

# Test hook: called at named points of processing; a test raises from it to simulate a crash there.
crash_point: Callable[[str], None] | None = None
# Test hook: False turns every batch the careful way (tests compare the two; see the docstring).
OPTIMISTIC_BATCHES = True


def _crash(point: str) -> None:
    if crash_point is not None:
        crash_point(point)


def workflow_actor(workspace_id: int) -> Actor:
    return Actor.system(workspace_id, "workflow")


# ----- starting -------------------------------------------------------------------------------------


def start_run(
    session: Session,
    workflow: Workflow,
    version: WorkflowVersion,
    contact_id: int,
    trigger_values: dict[str, Any],
    *,
    once_per_contact: bool,
    conversation_id: int | None = None,
    event_id: int | None = None,
) -> WorkflowRun | None:
    """A new run for the contact, or None: already in this workflow, once per contact and ran before,
    or this event already started one."""
    if repo.active_run(session, workflow.id, contact_id) is not None:
        return None
    if once_per_contact and repo.ever_ran(session, workflow.id, contact_id):
        return None
    run = new_run(workflow, version, contact_id, trigger_values, conversation_id=conversation_id, event_id=event_id)
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        return None  # a concurrent start won (one run per contact and workflow), or a repeated event
    return run


def new_run(
    workflow: Workflow,
    version: WorkflowVersion,
    contact_id: int,
    trigger_values: dict[str, Any],
    *,
    conversation_id: int | None = None,
    event_id: int | None = None,
) -> WorkflowRun:
    """The row of a new run, due now, for the caller to add (`start_run` checks and adds it)."""
    now = utcnow()
    return WorkflowRun(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        version_id=version.id,
        contact_id=contact_id,
        active_contact_id=contact_id,
        conversation_id=conversation_id,
        status=RunStatus.RUNNING,
        state=engine.new_state(trigger_values).to_json(),
        inbox=[{"type": "start"}],
        due_at=now,
        trigger_event_id=event_id,
        last_event_id=event_id or 0,
        steps=0,
        started_at=now,
        updated_at=now,
    )


def contact_wrote(
    session: Session,
    workspace_id: int,
    contact_id: int,
    text: str,
    at: datetime,
    event_id: int,
    location: Mapping[str, Any] | None = None,
    runs: Sequence[WorkflowRun] | None = None,
) -> int:
    """Hand a message of the contact to each of its runs in progress; how many got it. `location`:
    the place the contact shared, when the message is a location. `runs`: the contact's runs in
    progress, locked, when the caller has read them already."""
    if runs is None:
        runs = repo.active_runs_of_contact(session, workspace_id, contact_id)
    fed = 0
    for run in runs:
        if event_id <= run.last_event_id:
            continue  # this event was fed before (the log is at least once)
        item: dict[str, Any] = {"type": "wrote", "text": text, "at": at.isoformat()}
        if location is not None:
            item["location"] = dict(location)
        run.inbox = [*run.inbox, item]
        run.last_event_id = event_id
        if run.pending_action is None:
            # An HTTP request under way keeps its lease: the message waits for its result, and
            # making the run due now would send the request a second time.
            run.due_at = utcnow()
        fed += 1
    session.flush()
    return fed


# ----- processing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpCall:
    run_id: int
    key: str
    step_id: str
    params: dict[str, Any]
    # The workspace's allowed private hosts (http_hosts.py), read in the turn that asked for it.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    allow_private: bool

    @classmethod
    def default(cls) -> "Policy":
        return cls(allow_private=bool(get_settings().webhooks_allow_private))


def run_due(
    db: Database,
    *,
    now: datetime | None = None,
    policy: Policy | None = None,
    budget_seconds: float = 10.0,
    batch_size: int | None = None,
) -> int:
    """Process due runs until none is due or the budget is spent; how many turns were taken.

    Due runs are claimed a batch at a time, and a batch's turns share one transaction: the runs are
    locked with `FOR UPDATE SKIP LOCKED` (PostgreSQL), so another worker claims other runs instead of
    waiting for these; SQLite has one writer at a time anyway. Each run's turn is a savepoint, so a
    run whose turn raises rolls back alone and is left due for a later sweep. A crash rolls the
    whole batch back, and the retry repeats every turn of it from the same states."""
    policy = policy or Policy.default()
    size = batch_size or BATCH_SIZE
    started = time.monotonic()
    turns = 0
    skipped: set[int] = set()
    while time.monotonic() - started < budget_seconds:
        moment = now or utcnow()
        # A read first on SQLite: there a write transaction takes the database's write lock, and
        # most sweeps find nothing due (on PostgreSQL a claim of nothing locks nothing).
        if db.dialect != "postgresql":
            with db.transaction(write=False) as session:
                if not repo.due_run_ids(session, moment, 1, exclude=skipped):
                    break
        try:
            if not OPTIMISTIC_BATCHES:
                raise NotFast
            with db.transaction() as session:
                claimed = repo.claim_due_runs(session, moment, size, exclude=skipped)
                taken, calls = _turn_batch(session, claimed, moment, skipped, fast=True, limit=size)
        except NotFast:
            # Rolled back: the same due runs again, each in its own savepoint.
            with db.transaction() as session:
                claimed = repo.claim_due_runs(session, moment, size, exclude=skipped)
                taken, calls = _turn_batch(session, claimed, moment, skipped, fast=False, limit=size)
        if not claimed:
            break
        turns += taken
        for call in calls:
            _make_request(db, call, now=now, policy=policy)
    return turns


class NotFast(Exception):
    """Something raised in an optimistic batch: it is rolled back and done again the careful way."""


def _turn_batch(
    session: Session,
    runs: list[WorkflowRun],
    now: datetime,
    skipped: set[int],
    *,
    fast: bool = False,
    limit: int | None = None,
) -> tuple[int, list["HttpCall"]]:
    """One turn of each claimed run, in this transaction; how many turns, and the HTTP requests
    they ask for.

    `fast`: no savepoint around each turn, and anything raised ends the attempt with `NotFast`
    (the caller rolls the transaction back). Otherwise each turn is a savepoint, and a turn that
    raises is rolled back alone, its run left due and skipped for the rest of the sweep.

    A turn whose run leaves the head of the assignment queue makes the next run of its pool due
    (queue.py); that run is claimed into this batch, in due order among the runs still to turn,
    while the batch has fewer than `limit` turns: a queue drains a batch at a time, not a run a
    batch. The runs after it in the pool are locked and loaded with it, in one claim, and each is
    turned only when the run before it leaves and wakes it."""
    loaded = _BatchLoad.of(session, runs, fast=fast)
    pending = sorted(runs, key=_due_order, reverse=True)  # popped from the end: the earliest due
    seen = {run.id for run in runs}
    reserved: dict[int, WorkflowRun] = {}  # queued runs locked ahead of their wake (see below)
    limit = max(limit or 0, len(runs))
    turned = 0
    calls: list[HttpCall] = []
    deferred = BatchRows()
    while pending:
        run = pending.pop()
        turned += 1
        rows = BatchRows()
        queue.woken(session)  # only what this turn wakes
        try:
            if fast:
                call = _turn_of(session, run, now, loaded, rows)
            else:
                with session.begin_nested():
                    call = _turn_of(session, run, now, loaded, rows)
        except Exception as exc:
            if crash_point is not None:
                raise  # a simulated crash ends the process's work, as a real one would
            if fast:
                raise NotFast from exc
            log.exception("workflow run turn failed", run_id=run.id)
            skipped.add(run.id)
            continue
        deferred.extend(rows)
        if call is not None:
            calls.append(call)
        for run_id in queue.woken(session):
            if run_id in seen or run_id in skipped or turned + len(pending) >= limit:
                continue
            if run_id not in reserved:
                # The runs after it in its pool are likely next: locked and loaded together now,
                # each turned only once the one before it leaves (woken then).
                room = limit - turned - len(pending)
                claimed_next = repo.claim_queue_next(session, run_id, room)
                fresh = [r for r in claimed_next if r.id not in seen and r.id not in reserved]
                loaded.add_all(session, fresh)
                reserved.update({r.id: r for r in fresh})
            successor = reserved.pop(run_id, None)
            if successor is None or successor.due_at is None or successor.due_at > now:
                continue  # another worker holds it, or it is no longer due: a later claim takes it
            seen.add(run_id)
            pending.append(successor)
            pending.sort(key=_due_order, reverse=True)
    try:
        session.flush()
        deferred.insert(session)
    except Exception as exc:
        if fast and crash_point is None:
            raise NotFast from exc
        raise
    return turned, calls


@dataclass
class BatchRows:
    """A batch's log lines and effect records, inserted together at its end: nothing in a turn
    reads them back, so they go in as plain rows, one executemany per table, without ORM objects
    or the ids a flush would ask back (the generic multi-row INSERT that needs was re-parsed by
    the driver on every batch: about a fifth of a batch's time)."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: "BatchRows") -> None:
        self.logs.extend(other.logs)
        self.effects.extend(other.effects)

    def insert(self, session: Session) -> None:
        if self.logs:
            session.execute(insert(WorkflowRunLog), self.logs)
        if self.effects:
            session.execute(insert(WorkflowEffect), self.effects)


def _due_order(run: WorkflowRun) -> tuple[datetime, int]:
    """The claim's order: the earliest due first, then the lowest id."""
    assert run.due_at is not None
    return run.due_at, run.id


@dataclass
class _BatchLoad:
    """What the turns of a batch read, loaded once for the batch: the runs' workflows, versions and
    contacts (in the session's identity map), each workspace's time zone and custom field types,
    the effect keys already recorded for the runs, and (in one query, the first time a branch
    asks) the facts of the runs' conversations. In an optimistic batch (`fast`), also the
    tags and the contacts' tag sets, read on first use (see `contacts.service.TagCache`: sound
    there because nothing of the attempt is rolled back unless all of it is)."""

    timezones: dict[int, str]
    field_types: dict[int, dict[str, Any]]
    effect_keys: dict[int, set[str]]
    # Strong references: the session's identity map holds its objects weakly.
    rows: list[Any]
    fast: bool = False
    tags: contacts_service.TagCache | None = None
    conversations: FactsCache | None = None

    @classmethod
    def of(cls, session: Session, runs: list[WorkflowRun], *, fast: bool = False) -> "_BatchLoad":
        workspaces = {run.workspace_id for run in runs}
        return cls(
            timezones={w: segments_repo.workspace_timezone(session, w) or "UTC" for w in workspaces},
            field_types={w: dict(segments_repo.custom_field_types(session, w)) for w in workspaces},
            effect_keys=repo.effect_keys(session, [run.id for run in runs]),
            rows=repo.load_for_runs(session, runs),
            fast=fast,
            tags=contacts_service.TagCache([run.contact_id for run in runs]) if fast else None,
            conversations=FactsCache(session, [(run.contact_id, run.workspace_id) for run in runs]),
        )

    def add_all(self, session: Session, runs: list[WorkflowRun]) -> None:
        """What runs claimed into the batch after its start need (see `_turn_batch`)."""
        if not runs:
            return
        for workspace_id in {run.workspace_id for run in runs} - set(self.timezones):
            self.timezones[workspace_id] = segments_repo.workspace_timezone(session, workspace_id) or "UTC"
            self.field_types[workspace_id] = dict(segments_repo.custom_field_types(session, workspace_id))
        self.effect_keys.update(repo.effect_keys(session, [run.id for run in runs]))
        self.rows.extend(repo.load_for_runs(session, runs))
        if self.conversations is not None:
            self.conversations.add((run.contact_id, run.workspace_id) for run in runs)


def _make_request(db: Database, call: "HttpCall", *, now: datetime | None, policy: Policy) -> None:
    """Make a run's HTTP request between transactions and record its result; the run is due again."""
    moment = now or utcnow()
    outcome = http_request(call, policy)
    _crash("after_http")
    with db.transaction() as session:
        run = repo.run(session, call.run_id, lock=True)
        if run is None or run.status not in RunStatus.ACTIVE or repo.effect(session, call.run_id, call.key) is not None:
            return
        _record_effect(session, run, call.key, call.step_id, "http_request", outcome)
        run.pending_action = None
        run.due_at = moment


def seconds_until_next(db: Database) -> float | None:
    with db.transaction(write=False) as session:
        moment = repo.next_due(session)
    if moment is None:
        return None
    return max(0.0, (moment - utcnow()).total_seconds())


def process_run(db: Database, run_id: int, *, now: datetime | None = None, policy: Policy | None = None) -> None:
    """Advance one run as far as it goes now (HTTP requests made between transactions)."""
    policy = policy or Policy.default()
    for _ in range(lang.MAX_STEPS):
        moment = now or utcnow()
        with db.transaction() as session:
            call = turn(session, run_id, moment)
        if call is None:
            return
        outcome = http_request(call, policy)
        _crash("after_http")
        with db.transaction() as session:
            run = repo.run(session, run_id, lock=True)
            if run is None or run.status not in RunStatus.ACTIVE or repo.effect(session, run_id, call.key) is not None:
                continue
            _record_effect(session, run, call.key, call.step_id, "http_request", outcome)
            run.pending_action = None
            run.due_at = moment


def turn(session: Session, run_id: int, now: datetime) -> HttpCall | None:
    """One turn of a run in the caller's transaction (`process_run` makes one per transaction);
    an HTTP request it returns is for the caller to make. The demo writes its past runs so."""
    run = repo.run(session, run_id, lock=True)
    if run is None:
        return None
    return _turn_of(session, run, now, None)


def _turn_of(
    session: Session,
    run: WorkflowRun,
    now: datetime,
    loaded: "_BatchLoad | None",
    deferred: "BatchRows | None" = None,
) -> HttpCall | None:
    """One turn of a locked run; `loaded` holds what a batch loaded for it (None: load it here), and
    `deferred` takes the turn's log lines and effect records for the caller to add (None: added
    to the session as they are made)."""
    if run.status not in RunStatus.ACTIVE:
        return None
    if run.due_at is None or run.due_at > now:
        return None
    # The time once the run is ours: a message written while this turn waited for the lock is
    # newer than a question asked in it, so it is not taken for an answer to that question.
    now = max(now, utcnow())
    version = session.get(WorkflowVersion, run.version_id)
    workflow = session.get(Workflow, run.workflow_id)
    contact = session.get(Contact, run.contact_id)
    assert version is not None
    assert workflow is not None
    if contact is None:
        service.end_run(session, run, RunStatus.STOPPED, "the contact was deleted")
        return None
    # An optimistic batch flushes its rows once at its end (see the module's docstring).
    fast = loaded is not None and loaded.fast
    try:
        checked = service.checked_version(
            session, version, fields=loaded.field_types[run.workspace_id] if loaded else None
        )
    except DomainError as exc:
        _finish(
            session,
            workflow,
            run,
            engine.RunState.from_json(run.state),
            f"the definition no longer checks: {exc.message}",
            flush=not fast,
        )
        return None
    state = engine.RunState.from_json(run.state)
    performer = _Performer(
        session,
        workflow,
        run,
        contact,
        now,
        timezone=loaded.timezones[run.workspace_id] if loaded else None,
        effect_keys=loaded.effect_keys.get(run.id, set()) if loaded else None,
        deferred=deferred,
        tags=loaded.tags if loaded else None,
        conversations=loaded.conversations if loaded else None,
    )
    fed = 0
    while fed < MAX_INPUTS_PER_TURN:
        event = _next_input(session, run, state, now)
        if event is None:
            break
        if isinstance(event, HttpCall):
            return event
        fed += 1
        output = engine.advance(checked, state, event, performer.context())
        state = output.state
        while True:
            performer.write_logs(output.logs)
            if not output.actions:
                break
            action = output.actions[0]
            if action.kind == "http_request":
                run.pending_action = {"key": action.key, "step": action.step_id, "params": action.params}
                run.due_at = now + timedelta(seconds=int(action.params["timeout_seconds"])) + LEASE_MARGIN
                _save(session, workflow, run, state, now, flush=not fast)
                allowed = http_hosts.allowed_hosts(session, run.workspace_id)
                return HttpCall(run.id, action.key, action.step_id, action.params, allowed)
            result = performer.perform(action)
            _crash("after_action")
            output = engine.advance(checked, state, result, performer.context())
            state = output.state
        if state.status not in engine.ACTIVE:
            break
    if fed == 0 and state.status == engine.ACTING:
        # Waiting for an action that is not under way (no request pending): it can never go on.
        _finish(session, workflow, run, state, "the run waited for an action that was not under way", flush=not fast)
        return None
    _save(session, workflow, run, state, now, flush=not fast)
    _crash("end_of_turn")
    return None


def _next_input(session: Session, run: WorkflowRun, state: engine.RunState, now: datetime) -> Any:
    """The next input for the engine: a finished HTTP request's result, the oldest inbox item, or
    the passing of time; None when there is nothing to feed."""
    if state.status == engine.ACTING and state.pending is not None:
        effect = repo.effect(session, run.id, state.pending["key"])
        if effect is not None:
            return engine.Result(effect.key, effect.ok, effect.result, effect.result.get("error"))
        pending = run.pending_action
        if pending is not None and pending["key"] == state.pending["key"]:
            # A request whose worker died before recording it: its lease (due_at) has passed.
            run.due_at = now + timedelta(seconds=int(pending["params"]["timeout_seconds"])) + LEASE_MARGIN
            return HttpCall(
                run.id,
                pending["key"],
                pending["step"],
                pending["params"],
                http_hosts.allowed_hosts(session, run.workspace_id),
            )
        return None
    if run.inbox:
        item, run.inbox = run.inbox[0], run.inbox[1:]
        if item["type"] == "start":
            return engine.Start()
        return engine.ContactWrote(item["text"], datetime.fromisoformat(item["at"]), item.get("location"))
    if state.status == engine.WAITING and run.due_at is not None and run.due_at <= now:
        run.due_at = None  # fed once; _save sets the next due time
        if state.wait is not None and state.wait.get("kind") == "queue":
            return engine.QueueWake()  # woken (queue.wake), or its timeout: the engine tells which
        return engine.Tick()
    return None


def _save(
    session: Session, workflow: Workflow, run: WorkflowRun, state: engine.RunState, now: datetime, *, flush: bool = True
) -> None:
    was_queued = queue.is_queued(run.state)
    run.state = state.to_json()
    run.steps = len(state.path)
    run.updated_at = now
    if was_queued or queue.is_queued(run.state):
        queue.sync(session, run, state, now)
    if state.status not in engine.ACTIVE:
        _finish(session, workflow, run, state, state.error, flush=flush)
        return
    run.status = state.status
    if state.status != engine.ACTING:
        run.pending_action = None
        resume = engine.resume_at(state)
        run.due_at = now if run.inbox or state.status == engine.RUNNING else resume


def _finish(
    session: Session,
    workflow: Workflow,
    run: WorkflowRun,
    state: engine.RunState,
    error: str | None,
    *,
    flush: bool = True,
) -> None:
    """End the run. `flush`: write it now (an optimistic batch leaves it for its one flush)."""
    now = utcnow()
    status = RunStatus.FAILED if error is not None else RunStatus.FINISHED
    if queue.is_queued(run.state):  # _save has already synced the queue row of any other run
        queue.leave(session, run.id)
    run.state = {**state.to_json(), "status": status}
    run.status = status
    run.active_contact_id = None
    run.due_at = None
    run.pending_action = None
    run.finished_at = now
    run.updated_at = now
    run.inbox = []
    if error is not None:
        run.last_error = error[:1000]
        workflow.last_error = error[:1000]
        workflow.last_error_at = now
        log.info("workflow run failed", run_id=run.id, workflow_id=workflow.id, error=error)
        _emit_failed(session, workflow, run, state, error)
    if flush:
        session.flush()


def _emit_failed(session: Session, workflow: Workflow, run: WorkflowRun, state: engine.RunState, error: str) -> None:
    """`workflow.run_failed` in the event log, in the run's transaction (outgoing webhooks deliver it)."""
    payload: WorkflowRunFailed = {
        "workflow_id": workflow.id,
        "workflow_name": workflow.name,
        "run_id": run.id,
        "contact_id": run.contact_id,
        "step_id": state.at,
        "error": error[:1000],
    }
    event_log.emit(
        session,
        event_log.Event(
            EventType.WORKFLOW_RUN_FAILED,
            run.workspace_id,
            payload,
            conversation_id=run.conversation_id,
            contact_id=run.contact_id,
            actor="workflow",
        ),
    )


def _record_effect(
    session: Session,
    run: WorkflowRun,
    key: str,
    step_id: str,
    kind: str,
    result: engine.Result,
    *,
    deferred: "BatchRows | None" = None,
) -> None:
    data = dict(result.data)
    if result.error is not None:
        data["error"] = result.error
    values = {"run_id": run.id, "key": key, "step_id": step_id, "kind": kind, "ok": result.ok, "result": data}
    if deferred is not None:
        deferred.effects.append({**values, "at": utcnow()})  # inserted with the batch's other rows
        return
    session.add(WorkflowEffect(**values, at=utcnow()))
    session.flush()


# ----- the actions ----------------------------------------------------------------------------------


class _Performer:
    """Does the engine's actions for one run, through the services, inside the run's transaction."""

    def __init__(
        self,
        session: Session,
        workflow: Workflow,
        run: WorkflowRun,
        contact: Contact,
        now: datetime,
        *,
        timezone: str | None = None,
        effect_keys: set[str] | None = None,
        deferred: "BatchRows | None" = None,
        tags: contacts_service.TagCache | None = None,
        conversations: FactsCache | None = None,
    ) -> None:
        self.session = session
        self.workflow = workflow
        self.run = run
        self.contact = contact
        self.now = now
        self.actor = workflow_actor(run.workspace_id)
        self._context: engine.Context | None = None
        # The run's recorded effect keys when a batch loaded them (None: ask the database each time).
        self.effect_keys = effect_keys
        self.deferred = deferred
        # Set in an optimistic batch: tag actions read through it, without a savepoint.
        self.tags = tags
        # The facts branch conditions read of the run's conversation (the batch's, else this run's).
        self.conversations = conversations or FactsCache(session, [(contact.id, run.workspace_id)])
        timezone = timezone or segments_repo.workspace_timezone(session, run.workspace_id) or "UTC"
        self.eval = EvalContext(workspace_id=run.workspace_id, timezone=ZoneInfo(timezone), now=now)

    def context(self) -> engine.Context:
        """What the engine may read, loaded when it reads it (most steps read nothing) and again
        after each action (which may have changed the contact)."""
        if self._context is None:
            session, contact = self.session, self.contact

            def snapshot() -> ContactSnapshot:
                session.refresh(contact)
                return ContactSnapshot.of(contact, segments_repo.contact_tag_keys(session, contact.id))

            def values() -> dict[str, Any]:
                session.refresh(contact)
                return variable_values(session, contact)

            def conversation() -> ConversationFacts | None:
                return self.conversations.get(contact.id, contact.workspace_id)

            self._context = engine.Context(
                now=self.now,
                eval=self.eval,
                contact=snapshot,
                values=_Lazy(values),
                business_hours=self.hours,
                conversation=conversation,
            )
        return self._context

    def hours(self, team_id: int | None) -> BusinessHours:
        return business_hours(self.session, self.run.workspace_id, self.contact.id, team_id, self.now)

    def write_logs(self, logs: list[engine.Log]) -> None:
        for entry in logs:
            values = {
                "workspace_id": self.run.workspace_id,
                "workflow_id": self.run.workflow_id,
                "run_id": self.run.id,
                "step_id": entry.step_id,
                "step_type": entry.step_type,
                "outcome": entry.outcome[:200],
                "error": entry.error[:1000] if entry.error else None,
                "at": utcnow(),
            }
            if self.deferred is None:
                self.session.add(WorkflowRunLog(**values))
            else:
                self.deferred.logs.append(values)

    def perform(self, action: engine.Action) -> engine.Result:
        session = self.session
        self._context = None
        # The action may open, close or assign the contact's conversation.
        self.conversations.forget(self.contact.id)
        known = self.effect_keys is None or action.key in self.effect_keys
        done = repo.effect(session, self.run.id, action.key) if known else None
        if done is not None:  # recorded by an earlier attempt that committed (cannot happen inside one turn)
            return engine.Result(action.key, done.ok, done.result, done.result.get("error"))
        if self.tags is not None and action.kind in _OPTIMISTIC_ACTIONS:
            # No savepoint: in an optimistic batch anything raised here rolls the whole attempt
            # back (see the module's docstring), so a refused action never leaves half its writes.
            result = engine.Result(action.key, True, self.do(action))
            _record_effect(session, self.run, action.key, action.step_id, action.kind, result, deferred=self.deferred)
            return result
        try:
            with session.begin_nested():
                data = self.do(action)
            result = engine.Result(action.key, True, data)
        except Queued as exc:
            result = engine.Result(action.key, False, {"queued": True}, exc.message)
        except DomainError as exc:
            result = engine.Result(action.key, False, {}, exc.message)
        _record_effect(session, self.run, action.key, action.step_id, action.kind, result, deferred=self.deferred)
        return result

    def conversation(self) -> Conversation:
        found = conversations_repo.open_conversation(self.session, self.run.workspace_id, self.contact.id, lock=True)
        if found is None:
            raise DomainError("the contact has no open conversation", code="no_conversation")
        return found

    def do(self, action: engine.Action) -> dict[str, Any]:
        session, actor, contact, params = self.session, self.actor, self.contact, action.params
        match action.kind:
            case "send_message":
                channel = self.channel(params["channel"])
                message = self.send(channel, params)
                self.run.conversation_id = message.conversation_id
                return {"message_id": message.id, "channel_id": channel.id}
            case "update_field":
                name, value = params["field"], params["value"] or None
                values = {name: value} if name in lang.UPDATABLE_FIELDS else {"custom_fields": {name: value}}
                contacts_service.do_update_contact(session, actor, contact, values)
                return {}
            case "add_tags":
                return {"tags": contacts_service.do_add_tags(session, actor, contact, params["tags"], cache=self.tags)}
            case "remove_tags":
                tags = contacts_service.do_remove_tags(session, actor, contact, params["tags"], cache=self.tags)
                return {"tags": tags}
            case "assign":
                return self.assign(action.step_id, params)
            case "unassign":
                conversations_service.do_assign(session, actor, self.conversation(), user_id=None, team_id=None)
                return {}
            case "open_conversation":
                reachable = conversations_service.reply_channels(session, contact.workspace_id, contact.id)
                last = conversations_service.default_reply_channel(session, contact.id, reachable)
                conversation, created = conversations_service.open_conversation_for(
                    session, contact, last.id if last else None, OpeningSource.WORKFLOW
                )
                if created:
                    conversations_service.record_opened(session, actor, conversation)
                return {"conversation_id": conversation.id, "created": created}
            case "close_conversation":
                conversations_service.do_close(
                    session, actor, self.conversation(), category_id=params["category_id"], summary=params["summary"]
                )
                return {}
            case "add_comment":
                message = conversations_service.do_comment(session, actor, self.conversation(), params["text"])
                return {"message_id": message.id}
            case "start_workflow":
                return self.start_workflow(params)
            case "hand_to_assistant":
                return self.hand_to_assistant()
        raise AssertionError(action.kind)

    def send(self, channel: Channel, params: dict[str, Any]) -> Message:
        """The variant for this kind of channel, or the default message (a question's text has no other)."""
        session, actor, contact = self.session, self.actor, self.contact
        variant = (params.get("variants") or {}).get(channel.type)
        spec = variant or {"text": params["text"], "file_id": params.get("file_id")}
        template = spec.get("template")
        if template is not None:
            named = template.get("named_parameters") or {}
            components = (
                self.named_components(channel, template, named)
                if named
                else [
                    {"type": part, "parameters": [{"type": "text", "text": value} for value in values]}
                    for part, values in (
                        ("header", template.get("header_parameters")),
                        ("body", template["parameters"]),
                    )
                    if values
                ]
            )
            if template.get("header_media"):
                components.insert(0, self.header_media_component(channel, template, template["header_media"]))
            elif template.get("header_location"):
                components.insert(0, self.header_location_component(channel, template, template["header_location"]))
            payload = {
                "template": {
                    "name": template["name"],
                    "language": {"code": template["language"]},
                    "components": components,
                }
            }
            return conversations_service.do_send(
                session, actor, contact, channel, text=None, message_type=MessageType.TEMPLATE, payload=payload
            )
        file_ids = [spec["file_id"]] if spec.get("file_id") else []
        attachments = conversations_service.check_files(session, contact.workspace_id, file_ids)
        return conversations_service.do_send(
            session,
            actor,
            contact,
            channel,
            text=spec.get("text"),
            message_type=conversations_service.message_type_of(attachments),
            file_ids=file_ids,
        )

    def named_components(
        self, channel: Channel, template: dict[str, Any], values: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Meta's named form: each value as `parameter_name` in the header and body that use its
        name, in the order of the number's stored template (the values' own order is not kept by
        every database's JSON). A name the template no longer has goes in the body, where checking
        the message refuses it by name (the template changed since the workflow was saved)."""
        stored = message_templates.find_template(self.session, channel, template["name"], template["language"])
        slots = [s for s in message_templates.slots(stored) if s.kind == "text"] if stored is not None else []
        parts: dict[str, list[dict[str, Any]]] = {"header": [], "body": []}
        for slot in slots:
            if slot.key in values:
                parts[slot.component].append({"type": "text", "parameter_name": slot.key, "text": values[slot.key]})
        used = {s.key for s in slots}
        for name in sorted(set(values) - used):
            parts["body"].append({"type": "text", "parameter_name": name, "text": values[name]})
        return [{"type": part, "parameters": given} for part, given in parts.items() if given]

    def header_media_component(
        self, channel: Channel, template: dict[str, Any], media: dict[str, Any]
    ) -> dict[str, Any]:
        """Meta's header of a template whose header is a file: `{"type": "image", "image": {"link"}}`
        (a document with its file name), the kind as the number's stored template says. The URL is
        checked here, once its variables are filled in, so the run's log says what was wrong."""
        name = template["name"]
        stored = message_templates.find_template(self.session, channel, name, template["language"])
        slot = message_templates.file_header(stored)
        kind = slot.kind if slot is not None else None
        if stored is not None and kind is None:
            raise DomainError(
                f"template {name!r} has no image, video or document header on this number any more:"
                " remove the header file from the step",
                code="template_header_media",
            )
        link = str(media.get("link") or "")
        if media.get("id"):
            file: dict[str, Any] = {"id": str(media["id"])}
        elif message_templates.is_https_url(link):
            file = {"link": link}
        else:
            raise DomainError(
                f"the header file's URL of template {name!r} is not an https:// URL once its variables"
                f" are filled in: {link[:200]!r}",
                code="template_header_media",
            )
        kind = kind or "image"  # an unknown template: refused by name when the message is checked
        if kind == "document" and media.get("filename"):
            file["filename"] = media["filename"]
        return {"type": "header", "parameters": [{"type": kind, kind: file}]}

    def header_location_component(
        self, channel: Channel, template: dict[str, Any], given: dict[str, Any]
    ) -> dict[str, Any]:
        """Meta's header of a template whose header is a place: `{"type": "location", "location":
        {"latitude", "longitude", "name", "address"}}`. The place is checked here, once its
        variables are filled in, so the run's log says what was wrong."""
        name = template["name"]
        stored = message_templates.find_template(self.session, channel, name, template["language"])
        if stored is not None and not any(
            s.component == "header" and s.kind == "location" for s in message_templates.slots(stored)
        ):
            raise DomainError(
                f"template {name!r} has no location header on this number any more: remove the place from the step",
                code="template_header_location",
            )
        try:
            found = message_templates.place({key: value for key, value in given.items() if value != ""})
        except message_templates.PlaceRefused as exc:
            raise DomainError(
                f"the place in the header of template {name!r} is not valid once its variables are filled in:"
                f" {message_templates.PLACE_RULES[exc.rule]} ({exc.field}: {str(given.get(exc.field))[:200]!r})",
                code="template_header_location",
            ) from None
        return {"type": "header", "parameters": [{"type": "location", "location": found}]}

    def channel(self, choice: Any) -> Channel:
        session = self.session
        if choice == "last_interacted":
            reachable = conversations_service.reply_channels(session, self.run.workspace_id, self.contact.id)
            chosen = conversations_service.default_reply_channel(session, self.contact.id, reachable)
            if chosen is None:
                raise DomainError("the contact has no channel to be reached on", code="no_channel")
            return chosen
        channel = session.scalar(
            select(Channel).where(Channel.workspace_id == self.run.workspace_id, Channel.id == int(choice))
        )
        if channel is None or not channel.active:
            raise DomainError(f"channel {choice} is not connected", code="no_channel")
        return channel

    def assign(self, step_id: str, params: dict[str, Any]) -> dict[str, Any]:
        session, workspace_id = self.session, self.run.workspace_id
        conversation = self.conversation()
        if params.get("retry") and conversation.assignee_id is not None:
            # Someone took the queued conversation by hand while it waited.
            return {"user_id": conversation.assignee_id, "already": True}
        queued = params.get("queue_timeout") is not None
        pool = engine.queue_pool(lang.AssignConfig.model_validate({k: v for k, v in params.items() if k != "retry"}))
        if queued and queue.ahead(session, self.run, pool):
            raise Queued("an earlier conversation waits in the queue for the same people")
        team_id = params.get("team_id") if params["to"] == "team" else None
        if params["to"] == "user":
            candidates = [int(params["user_id"])]
        else:
            members = select(Membership.user_id).where(Membership.workspace_id == workspace_id, Membership.active)
            if team_id is not None:
                members = members.join(TeamMember, TeamMember.user_id == Membership.user_id).where(
                    TeamMember.team_id == team_id
                )
            candidates = sorted(set(session.scalars(members)))
        if params.get("only_online") and candidates:
            online = select(User.id).where(User.id.in_(candidates), User.activity_status == ActivityStatus.ONLINE)
            candidates = sorted(set(session.scalars(online)))
        counts: dict[int, int] = {}
        if candidates and (params.get("max_open") is not None or params.get("strategy") == "least_open"):
            counts = open_counts(session, workspace_id, candidates)
        if params.get("max_open") is not None:
            candidates = [user_id for user_id in candidates if counts.get(user_id, 0) < int(params["max_open"])]
        if not candidates:
            if queued:
                raise Queued("no user qualifies for the assignment yet: waiting in the queue")
            raise DomainError("no user qualifies for the assignment", code="nobody")
        if len(candidates) == 1 or params["to"] == "user":
            chosen = candidates[0]
        elif params.get("strategy") == "least_open":
            chosen = min(candidates, key=lambda user_id: (counts.get(user_id, 0), user_id))
        else:
            locked = session.scalar(select(Workflow).where(Workflow.id == self.workflow.id).with_for_update())
            assert locked is not None
            last = (locked.round_robin or {}).get(step_id)
            later = [user_id for user_id in candidates if last is None or user_id > last]
            chosen = later[0] if later else candidates[0]
            locked.round_robin = {**(locked.round_robin or {}), step_id: chosen}
        conversations_service.do_assign(session, self.actor, conversation, user_id=chosen, team_id=team_id)
        return {"user_id": chosen}

    def hand_to_assistant(self) -> dict[str, Any]:
        """The assistant's bot takes the conversation: no person assigned (its team stays), the bot
        not paused. The channel's bot must be on, or the step fails (nobody would answer)."""
        session, conversation = self.session, self.conversation()
        if conversation.channel_id is None:
            raise DomainError("the conversation has no channel for the assistant to answer on", code="bot_off")
        settings = bot_settings.settings_for(session, self.run.workspace_id, conversation.channel_id)
        if not settings.enabled:
            raise DomainError("the assistant's bot is off on this conversation's channel", code="bot_off")
        if conversation.assignee_id is not None:
            conversations_service.do_assign(
                session, self.actor, conversation, user_id=None, team_id=conversation.team_id
            )
        conversations_service.do_set_bot_paused(session, self.actor, conversation, False)
        return {"conversation_id": conversation.id}

    def start_workflow(self, params: dict[str, Any]) -> dict[str, Any]:
        session = self.session
        target = repo.workflow(session, self.run.workspace_id, int(params["workflow_id"]))
        version = repo.version(session, target.published_version_id) if target is not None else None
        if target is None or version is None or version.trigger_type != "manual":
            raise DomainError(
                f"workflow {params['workflow_id']} is not a published manual workflow", code="no_workflow"
            )
        values = {**{str(k): v for k, v in (params.get("vars") or {}).items()}, "workflow_id": self.workflow.id}
        started = start_run(session, target, version, self.contact.id, values, once_per_contact=False)
        if started is None:
            raise DomainError("the contact is already in that workflow", code="already_running")
        return {"run_id": started.id}


# Actions done without a savepoint in an optimistic batch: they change nothing that the batch's tag
# cache does not see, and refuse (raise) only in the rare case that sends the batch the careful way.
_OPTIMISTIC_ACTIONS = frozenset({"add_tags", "remove_tags"})


class Queued(DomainError):
    """Nobody qualifies for an assignment that may wait: the run joins (or stays in) the queue."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="queued")


def open_counts(session: Session, workspace_id: int, user_ids: list[int]) -> dict[int, int]:
    """Open conversations assigned to each of these users."""
    rows = session.execute(
        select(Conversation.assignee_id, func.count())
        .where(
            Conversation.workspace_id == workspace_id,
            Conversation.status == ConversationStatus.OPEN,
            Conversation.assignee_id.in_(user_ids),
        )
        .group_by(Conversation.assignee_id)
    ).all()
    return {int(user_id): int(count) for user_id, count in rows if user_id is not None}


def business_hours(
    session: Session, workspace_id: int, contact_id: int, team_id: int | None, now: datetime
) -> BusinessHours:
    """The hours a date & time step reads: the team's (its own, else the workspace's); with no team
    named, those of the team of the contact's open conversation, else the workspace's."""
    if team_id is None:
        conversation = conversations_repo.open_conversation(session, workspace_id, contact_id)
        team_id = conversation.team_id if conversation is not None else None
    return hours_at(session, workspace_id, now, team_id)


class _Lazy(Mapping[str, Any]):
    """A mapping loaded on first use."""

    def __init__(self, load: Callable[[], dict[str, Any]]) -> None:
        self._load = load
        self._data: dict[str, Any] | None = None

    def _get(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    def __getitem__(self, key: str) -> Any:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def variable_values(session: Session, contact: Contact) -> dict[str, Any]:
    """The `contact.*`, `conversation.*` and `assignee.*` values of texts, by dotted name."""
    values: dict[str, Any] = {
        "contact.id": contact.id,
        "contact.first_name": contact.first_name,
        "contact.last_name": contact.last_name,
        "contact.full_name": contact.full_name,
        "contact.email": contact.email,
        "contact.phone": contact.phone,
        "contact.country": contact.country,
        "contact.language": contact.language,
    }
    for key, value in (contact.custom or {}).items():
        values[f"contact.custom.{key}"] = value
    conversation = conversations_repo.open_conversation(session, contact.workspace_id, contact.id)
    if conversation is not None:
        values.update(
            {
                "conversation.id": conversation.id,
                "conversation.status": conversation.status.value
                if hasattr(conversation.status, "value")
                else conversation.status,
                "conversation.channel_id": conversation.channel_id,
                "conversation.opened_at": conversation.opened_at.isoformat(),
                "conversation.closed_at": conversation.closed_at.isoformat() if conversation.closed_at else None,
                "conversation.closing_summary": conversation.closing_summary,
            }
        )
        assignee = session.get(User, conversation.assignee_id) if conversation.assignee_id else None
        if assignee is not None:
            values.update(
                {
                    "assignee.first_name": assignee.first_name,
                    "assignee.last_name": assignee.last_name,
                    "assignee.full_name": assignee.full_name,
                    "assignee.email": assignee.email,
                }
            )
    return values


# ----- HTTP -----------------------------------------------------------------------------------------


def http_request(call: HttpCall, policy: Policy, client: httpx.Client | None = None) -> engine.Result:
    """Make a workflow's HTTP request to a checked address (never a private one unless allowed)."""
    params = call.params
    url = str(params["url"])
    try:
        target = http_hosts.target(url, call.allowed_hosts, allow_private=policy.allow_private)
    except (ValueError, AddressRefused) as exc:
        return engine.Result(call.key, False, {}, f"refused: {exc}")
    parts = urlsplit(url)
    literal = f"[{target.address}]" if ":" in target.address else target.address
    host_header = parts.netloc.rsplit("@", 1)[-1]
    address_url = urlunsplit((parts.scheme, f"{literal}:{target.port}", parts.path or "/", parts.query, ""))
    headers: dict[str, str] = dict(params.get("headers") or [])
    headers.update(
        {"Host": host_header, "User-Agent": USER_AGENT, "Idempotency-Key": f"wfrun-{call.run_id}-{call.key}"}
    )
    content = None
    if params.get("body") is not None:
        content = json.dumps(params["body"]).encode()
        headers.setdefault("Content-Type", "application/json")
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    http = client or httpx.Client(follow_redirects=False, trust_env=False)
    try:
        request = http.build_request(
            params["method"],
            address_url,
            content=content,
            headers=headers,
            extensions=extensions,
            timeout=float(params["timeout_seconds"]),
        )
        response = http.send(request, stream=True)
        try:
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MAX_RESPONSE_BYTES:
                    break
        finally:
            response.close()
    except httpx.HTTPError as exc:
        return engine.Result(call.key, False, {}, f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        if client is None:
            http.close()
    try:
        document = json.loads(raw[:MAX_RESPONSE_BYTES]) if raw else None
    except ValueError:
        document = None
    ok = 200 <= response.status_code < 300
    return engine.Result(
        call.key, ok, {"status": response.status_code, "json": document}, None if ok else f"HTTP {response.status_code}"
    )
