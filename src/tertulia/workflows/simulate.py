"""Running a definition on a contact without doing anything: the path it takes and the actions it
would take, from the same engine as real runs.

What a simulation assumes: every action succeeds (an HTTP request answers 200 with no body, an
assignment finds someone at once, so it never waits in the queue; the assistant takes the
conversation), waits end at once, a date & time step reads the simulation's `now` (the current
time unless given) against the hours, range or windows as they are saved, a question gets the
next of the given answers, or times out when there are none left, and a shortcut's form gets the
given answers, checked as when a person runs it. Actions are not applied, so a
later branch sees the contact as it is now (a field the flow would have set is not set yet).

The simulated run is about the contact's conversation as a real run would be now: the open one,
else their latest (conversation_conditions.py), read once; its facts (status, channel, team,
assignee and the assignee's activity status) are in the result's `conversation`, None when the
contact has none. Branches on it see it as it is, even after a step that would open, close or
assign it.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from tertulia.contacts.models import Contact
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed
from tertulia.segments import repository as segments_repo
from tertulia.segments.evaluator import ContactSnapshot
from tertulia.segments.timing import EvalContext
from tertulia.workflows import conversation_conditions, engine, shortcuts
from tertulia.workflows import language as lang
from tertulia.workflows.runner import business_hours, variable_values

MAX_INPUTS = 2000


@dataclass
class Simulation:
    path: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    logs: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    error: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    # What branch conditions saw of the contact's conversation (None: the contact has none).
    conversation: dict[str, Any] | None = None


def simulate(
    session: Session,
    workflow: lang.Workflow,
    contact: Contact,
    *,
    answers: list[str] | None = None,
    trigger_values: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Simulation:
    moment = now or utcnow()
    timezone = segments_repo.workspace_timezone(session, contact.workspace_id) or "UTC"
    snapshot = ContactSnapshot.of(contact, segments_repo.contact_tag_keys(session, contact.id))
    values = variable_values(session, contact)
    facts = conversation_conditions.load(session, [(contact.id, contact.workspace_id)]).get(contact.id)
    pending_answers = list(answers or [])
    state = engine.new_state(trigger_values or {})
    result = Simulation()
    event: engine.Input = engine.Start()
    for _ in range(MAX_INPUTS):
        ctx = engine.Context(
            now=moment,
            eval=EvalContext(workspace_id=contact.workspace_id, timezone=ZoneInfo(timezone), now=moment),
            contact=snapshot,
            values=values,
            business_hours=partial(business_hours, session, contact.workspace_id, contact.id, now=moment),
            conversation=facts,
        )
        output = engine.advance(workflow, state, event, ctx)
        state = output.state
        result.logs.extend({"step_id": e.step_id, "outcome": e.outcome, "error": e.error} for e in output.logs)
        if output.actions:
            action = output.actions[0]
            result.actions.append({"step_id": action.step_id, "kind": action.kind, "params": action.params})
            event = engine.Result(action.key, True, _made_up(action))
            continue
        if state.status == engine.WAITING and state.wait is not None:
            if state.wait["kind"] == "question" and pending_answers:
                event = engine.ContactWrote(pending_answers.pop(0))
            else:
                moment = datetime.fromisoformat(state.wait["until"]) + timedelta(seconds=1)
                event = engine.Tick()
            continue
        break
    result.path = list(state.path)
    result.status = state.status
    result.error = state.error
    result.variables = dict(state.vars)
    result.conversation = asdict(facts) if facts is not None else None
    return result


def trigger_values(workflow: lang.Workflow, form: Mapping[str, Any], user_id: int | None) -> dict[str, Any]:
    """The trigger variables a simulated start gets: a shortcut's form answers (checked: 422 at
    `form.<name>`), who runs it, and no conversation. Answers for a trigger with no form are refused,
    rather than ignored, so a mistaken simulation does not look like a passing one."""
    fields = shortcuts.form_of(workflow.trigger_config)
    if not fields:
        if form:
            raise ValidationFailed.field("form", "the trigger has no form: only a shortcut takes answers")
        return {}
    values = shortcuts.clean_answers(fields, form, prefix="form")
    values.update({"user_id": user_id, "conversation_id": None})
    return values


def _made_up(action: engine.Action) -> dict[str, Any]:
    if action.kind == "http_request":
        return {"status": 200, "json": None}
    return {}
