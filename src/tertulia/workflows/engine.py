"""The workflow engine as a pure function: (workflow, run state, input, context) -> (actions, next state).

No I/O here. The runner (runner.py) loads the run and what the engine may read (the contact, the
values of variables, the time), performs the actions the engine asks for through the services, and
feeds each action's result back as the next input. Simulation (simulate.py) feeds made-up results
instead, so it shares every rule with real runs.

The engine asks for at most one action at a time and waits for its result (status "acting"): the
action's key (`a<n>`, counted per run) is its idempotency key, so a runner that crashed after doing
it but before recording the result can tell, on retry, that it is done.

Inputs:
- Start: a new run begins at its first step.
- Result(key, ok, data, error): the outcome of the action with that key (a stale key is ignored).
- ContactWrote(text): the contact wrote; answers a question, or cuts a wait short when asked to.
- Tick: time passed (ctx.now); a question's timeout, a wait's end or a queue's timeout is due.
- QueueWake: someone may now qualify for the assignment a run waits for in the queue (queue.py):
  try again (a fresh action key), or time out if the queue's timeout has passed.
"""

import copy
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tertulia.conversations import variables
from tertulia.kit.text import fold
from tertulia.segments.evaluator import ContactSnapshot, matches
from tertulia.segments.timing import EvalContext
from tertulia.workflows import conversation_conditions, schedule
from tertulia.workflows import language as lang
from tertulia.workflows.conversation_conditions import ConversationFacts
from tertulia.workflows.language import Step, Workflow
from tertulia.workspaces.hours import BusinessHours

# Runaway protection: a run that executes more steps than this within one minute is stopped.
MAX_STEPS_PER_MINUTE = 200
MAX_PATH = 500
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ().-]{7,20}$")
URL_HOST = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
STARS = "\u2b50\u2605"  # ⭐ and ★: a rating given as stars

RUNNING, ACTING, WAITING, FINISHED, FAILED, STOPPED = "running", "acting", "waiting", "finished", "failed", "stopped"
ACTIVE = (RUNNING, ACTING, WAITING)


@dataclass
class RunState:
    """Everything the engine knows of a run; stored as JSON in the run's row."""

    at: str | None = None  # the step being executed (None: the run is over)
    status: str = RUNNING
    vars: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    jumps: dict[str, int] = field(default_factory=dict)
    seq: int = 0  # actions asked for so far
    pending: dict[str, Any] | None = None  # the action waiting for its result: key, step, phase
    wait: dict[str, Any] | None = None  # kind (wait/question), until (ISO), attempts, on_message
    window_start: str | None = None  # runaway protection: the minute being counted
    window_steps: int = 0
    path: list[str] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: json_copy(getattr(self, name)) for name in _STATE_FIELDS}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> "RunState":
        return cls(**{name: json_copy(value) for name, value in raw.items()})

    def copied(self) -> "RunState":
        return RunState(**{name: json_copy(getattr(self, name)) for name in _STATE_FIELDS})


_STATE_FIELDS = tuple(f.name for f in fields(RunState))


def json_copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data (dicts, lists, tuples of strings, numbers, booleans, None),
    anything else copied by `copy.deepcopy`. A run's state is copied on every step: the generic
    `dataclasses.asdict` and `copy.deepcopy` (memo, dispatch per object) were a sixth of a batch
    of resumed runs' time."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {key: json_copy(item) for key, item in value.items()}
    if kind is list:
        return [json_copy(item) for item in value]
    if kind is tuple:
        return tuple(json_copy(item) for item in value)
    return copy.deepcopy(value)


@dataclass(frozen=True)
class Start:
    pass


@dataclass(frozen=True)
class Result:
    key: str
    ok: bool
    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class ContactWrote:
    text: str
    # When the message was written: a message older than the question or wait is not an answer
    # (the message that opened the conversation arrives after the run has asked).
    at: datetime | None = None
    # A shared location ({"latitude", "longitude", "name"?, "address"?}) when the channel gave one.
    location: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class QueueWake:
    pass


Input = Start | Result | ContactWrote | Tick | QueueWake


@dataclass(frozen=True)
class Action:
    """A side effect for the runner. `key` is unique within the run (its idempotency key)."""

    key: str
    step_id: str
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Log:
    step_id: str
    step_type: str
    outcome: str
    error: str | None = None


@dataclass(frozen=True)
class Context:
    """What the engine may read: the time, the contact as filters see it, and the values of the
    `contact.*`, `conversation.*` and `assignee.*` variables (dotted name -> value)."""

    now: datetime
    eval: EvalContext
    # The contact, or a function that loads it (only branches need it).
    contact: ContactSnapshot | Callable[[], ContactSnapshot] | None = None
    values: Mapping[str, Any] = field(default_factory=dict)
    # The business hours a date & time step reads: a team's (its own, else the workspace's), or with
    # None the team of the contact's open conversation, else the workspace's. None: always open.
    business_hours: Callable[[int | None], BusinessHours] | None = None
    # The conversation the run is about (conversation_conditions.py), or a function that loads it
    # (only branches with conversation or assignee status conditions need it); None: there is none.
    conversation: ConversationFacts | Callable[[], ConversationFacts | None] | None = None

    def snapshot(self) -> ContactSnapshot | None:
        return self.contact() if callable(self.contact) else self.contact

    def conversation_facts(self) -> ConversationFacts | None:
        return self.conversation() if callable(self.conversation) else self.conversation


@dataclass
class Output:
    state: RunState
    actions: list[Action] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)


def new_state(trigger_values: Mapping[str, Any]) -> RunState:
    return RunState(trigger=dict(trigger_values))


def advance(workflow: Workflow, state: RunState, event: Input, ctx: Context) -> Output:
    """One input in; the actions to take and the state after them."""
    return _Engine(workflow, state.copied(), ctx).feed(event)


# ----- variables ---------------------------------------------------------------------------------


def lookup(name: str, state: RunState, ctx: Context) -> Any:
    head, _, rest = name.partition(".")
    if head == "vars":
        return state.vars.get(rest)
    if head == "trigger":
        return state.trigger.get(rest)
    if head == "system":
        local = ctx.now.astimezone(ctx.eval.timezone)
        return {
            "current_date": local.strftime("%Y-%m-%d"),
            "current_time": local.strftime("%H:%M"),
            "current_datetime": local.strftime("%Y-%m-%d %H:%M:%S"),
        }.get(rest)
    return ctx.values.get(name)


def render(text: str, state: RunState, ctx: Context) -> str:
    return variables.substitute_names(text, lambda name: lookup(name, state, ctx))


def render_json(text: str, state: RunState, ctx: Context) -> Any:
    """A JSON body with variables: each value is escaped for a JSON string (ValueError if the result
    is not JSON)."""

    def value(name: str) -> Any:
        found = lookup(name, state, ctx)
        if found is None or found == "":
            return None
        if isinstance(found, bool) or not isinstance(found, int | float):
            return json.dumps(str(found))[1:-1]
        return found

    return json.loads(variables.substitute_names(text, value))


def json_path(document: Any, path: str) -> Any:
    """`$.a.b[0].c` in a parsed JSON document; None when any part is missing."""
    current = document
    for name, index in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]", path[1:]):
        if name:
            if not isinstance(current, dict):
                return None
            current = current.get(name)
        else:
            if not isinstance(current, list) or int(index) >= len(current):
                return None
            current = current[int(index)]
    return current


# ----- answers -----------------------------------------------------------------------------------


def check_answer(
    config: lang.AskQuestionConfig, text: str, location: Mapping[str, Any] | None = None
) -> tuple[bool, Any]:
    """(valid, the value to save)."""
    answer = text.strip()
    kind = config.kind
    if kind == "location":
        return check_location(answer, location)
    if not answer:
        return False, None
    if kind == "text":
        return True, answer[: lang.MAX_TEXT]
    if kind == "choice":
        if answer.isdigit() and 1 <= int(answer) <= len(config.options):
            return True, config.options[int(answer) - 1]
        for option in config.options:
            if fold(option) == fold(answer):
                return True, option
        return False, None
    if kind == "number":
        try:
            number = float(answer.replace(",", "."))
        except ValueError:
            return False, None
        if not math.isfinite(number):
            return False, None
        if (config.min is not None and number < config.min) or (config.max is not None and number > config.max):
            return False, None
        return True, int(number) if number.is_integer() else number
    if kind == "email":
        return (True, answer.lower()) if EMAIL.match(answer) else (False, None)
    if kind == "phone":
        digits = re.sub(r"\D", "", answer)
        return (True, answer) if PHONE.match(answer) and 7 <= len(digits) <= 15 else (False, None)
    if kind == "date":
        for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
            try:
                return True, datetime.strptime(answer, pattern).date().isoformat()  # noqa: DTZ007 - a calendar date
            except ValueError:
                continue
        return False, None
    if kind == "url":
        return check_url(answer)
    if kind == "rating":
        return check_rating(answer)
    raise AssertionError(kind)


def check_url(answer: str) -> tuple[bool, Any]:
    """A web address: http(s) with a host that has a dot; "example.com/x" is taken as https."""
    candidate = answer if re.match(r"^https?://", answer, re.IGNORECASE) else f"https://{answer}"
    if any(c.isspace() for c in candidate) or len(candidate) > lang.MAX_TEXT:
        return False, None
    parts = urlsplit(candidate)
    host = (parts.hostname or "").lower()
    if not URL_HOST.match(host) or parts.username is not None:
        return False, None
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return False, None
    return True, urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, parts.fragment))


def check_rating(answer: str) -> tuple[bool, Any]:
    """1 to 5: the digit ("4", "4/5", "4 stars") or as many stars ("⭐⭐⭐⭐")."""
    stars = [c for c in answer if not c.isspace() and c != "\ufe0f"]
    if stars and all(c in STARS for c in stars):
        count = len(stars)
    else:
        match = re.match(r"^([1-5])(?:\s*/\s*5|\s*[a-z]*)?$", fold(answer))
        if match is None:
            return False, None
        count = int(match.group(1))
    return (True, count) if 1 <= count <= 5 else (False, None)


def check_location(answer: str, location: Mapping[str, Any] | None) -> tuple[bool, Any]:
    """A shared location becomes "latitude,longitude" (with its name or address after it when the
    channel gave one); on channels without locations, any text is taken as the address."""
    if location is not None:
        try:
            latitude, longitude = float(location["latitude"]), float(location["longitude"])
        except (KeyError, TypeError, ValueError):
            latitude = longitude = math.nan
        if -90 <= latitude <= 90 and -180 <= longitude <= 180:
            label = str(location.get("name") or location.get("address") or "").strip()
            value = f"{latitude:.6f},{longitude:.6f}"
            return True, f"{value} {label}"[: lang.MAX_TEXT].strip()
    if not answer:
        return False, None
    return True, answer[: lang.MAX_TEXT]


def queue_pool(config: lang.AssignConfig) -> str:
    """Who an assignment may go to, as a key: runs waiting with the same key are served in order,
    since whoever qualifies for one qualifies for all of them."""
    return json.dumps(
        [config.to, config.user_id, config.team_id, config.only_online, config.max_open], separators=(",", ":")
    )


# ----- the engine --------------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment)


class _Engine:
    def __init__(self, workflow: Workflow, state: RunState, ctx: Context) -> None:
        self.wf = workflow
        self.state = state
        self.ctx = ctx
        self.out = Output(state)

    # -- inputs

    def feed(self, event: Input) -> Output:
        state = self.state
        if state.status not in ACTIVE:
            return self.out
        if isinstance(event, Start):
            if state.at is None and not state.path:
                self.go(self.wf.first.id)
        elif isinstance(event, Result):
            if state.status != ACTING or state.pending is None or state.pending["key"] != event.key:
                return self.out  # a result seen before (a retry), or for an action we no longer wait for
            pending, state.pending = state.pending, None
            state.status = RUNNING
            self.resolve(self.wf.by_id[pending["step"]], pending["phase"], event)
        elif isinstance(event, ContactWrote):
            if state.status != WAITING or state.wait is None:
                return self.out
            if event.at is not None and event.at < _parse(state.wait["since"]):
                return self.out
            step = self.wf.by_id[str(state.at)]
            if state.wait["kind"] == "question":
                self.answer(step, event.text, event.location)
            elif state.wait.get("on_message"):
                self.log(step, "cut_short")
                self.end_wait()
                self.go(step.next)
        elif isinstance(event, Tick):
            if state.status != WAITING or state.wait is None or self.ctx.now < _parse(state.wait["until"]):
                return self.out
            step = self.wf.by_id[str(state.at)]
            kind = state.wait["kind"]
            self.end_wait()
            if kind == "question":
                self.log(step, "timeout")
                self.go(step.on.get("timeout"))
            elif kind == "queue":
                self.log(step, "timeout")
                self.go(step.on.get("timeout", step.next))
            else:
                self.log(step, "waited")
                self.go(step.next)
        elif isinstance(event, QueueWake):
            if state.status != WAITING or state.wait is None or state.wait["kind"] != "queue":
                return self.out
            if self.ctx.now >= _parse(state.wait["until"]):
                return self.feed(Tick())
            step = self.wf.by_id[str(state.at)]
            # The wait stays while the action is under way: a retry that finds nobody goes back to it.
            self.act(step, "queue", "assign", {**step.config.model_dump(mode="json"), "retry": True})
            return self.out
        self.run()
        return self.out

    # -- moving

    def go(self, step_id: str | None) -> None:
        self.state.at = step_id
        self.state.status = RUNNING if step_id is not None else FINISHED

    def end_wait(self) -> None:
        self.state.wait = None
        self.state.status = RUNNING

    def fail(self, step: Step, error: str) -> None:
        self.log(step, "failed", error)
        self.state.status = FAILED
        self.state.error = error

    def log(self, step: Step, outcome: str, error: str | None = None) -> None:
        self.out.logs.append(Log(step.id, step.type, outcome, error))

    def act(self, step: Step, phase: str, kind: str, params: dict[str, Any]) -> None:
        self.state.seq += 1
        key = f"a{self.state.seq}"
        self.state.pending = {"key": key, "step": step.id, "phase": phase}
        self.state.status = ACTING
        self.out.actions.append(Action(key, step.id, kind, params))

    def count_step(self, step: Step) -> bool:
        """Runaway protection; False when the run has to stop."""
        state = self.state
        now = self.ctx.now
        if state.window_start is None or now - _parse(state.window_start) >= timedelta(minutes=1):
            state.window_start, state.window_steps = _iso(now), 0
        state.window_steps += 1
        if state.window_steps > MAX_STEPS_PER_MINUTE:
            self.fail(step, f"stopped: more than {MAX_STEPS_PER_MINUTE} steps in a minute (a runaway loop?)")
            return False
        if len(state.path) < MAX_PATH:
            state.path.append(step.id)
        return True

    def run(self) -> None:
        while self.state.status == RUNNING:
            if self.state.at is None:
                self.state.status = FINISHED
                return
            step = self.wf.by_id[self.state.at]
            if not self.count_step(step):
                return
            self.execute(step)

    # -- steps

    def execute(self, step: Step) -> None:
        config: Any = step.config
        state = self.state
        match step.type:
            case "send_message":
                self.act(step, "send", "send_message", self.message(config))
            case "ask_question":
                params = {"channel": config.channel, "text": self.question_text(config, config.text)}
                self.act(step, "ask", "send_message", params)
            case "wait":
                until = self.ctx.now + timedelta(seconds=config.duration.seconds)
                state.wait = {
                    "kind": "wait",
                    "since": _iso(self.ctx.now),
                    "until": _iso(until),
                    "on_message": config.until_contact_writes,
                }
                state.status = WAITING
            case "branch":
                self.branch(step)
            case "update_field":
                self.act(step, "do", "update_field", {"field": config.field, "value": self.text(config.value)})
            case "add_tags" | "remove_tags":
                self.act(step, "do", step.type, {"tags": list(config.tags)})
            case "assign":
                self.act(step, "do", "assign", config.model_dump(mode="json"))
            case "unassign" | "open_conversation":
                self.act(step, "do", step.type, {})
            case "close_conversation":
                summary = self.text(config.summary) if config.summary else None
                self.act(step, "do", "close_conversation", {"category_id": config.category_id, "summary": summary})
            case "add_comment":
                self.act(step, "do", "add_comment", {"text": self.text(config.text)})
            case "jump_to":
                # Two caps: this step's own `max_jumps`, and MAX_JUMPS for the whole run, over all
                # its jump steps (the "at most 10 jumps per run"); whichever comes first.
                used = state.jumps.get(step.id, 0)
                if used < config.max_jumps and sum(state.jumps.values()) < lang.MAX_JUMPS:
                    state.jumps[step.id] = used + 1
                    self.log(step, "jumped")
                    self.go(config.target)
                elif config.when_exhausted == "exit":
                    self.log(step, "jumps_used_up")
                    self.go(None)
                else:
                    self.log(step, "jumps_used_up")
                    self.go(step.next)
            case "start_workflow":
                self.act(step, "do", "start_workflow", {"workflow_id": config.workflow_id, "vars": dict(state.vars)})
            case "http_request":
                self.http(step, config)
            case "date_time":
                self.date_time(step, config)
            case "hand_to_assistant":
                self.act(step, "do", "hand_to_assistant", {})
            case _:
                raise AssertionError(step.type)

    def message(self, config: lang.SendMessageConfig) -> dict[str, Any]:
        """The send's parameters, every text rendered now: the runner picks the variant of the kind
        of channel it sends on (the default message when there is none)."""
        variants = {
            variant.channel_type: {
                "text": self.text(variant.text) if variant.text is not None else None,
                "file_id": variant.file_id,
                "template": {
                    "name": variant.template.name,
                    "language": variant.template.language,
                    "parameters": [self.text(value) for value in variant.template.parameters],
                    "header_parameters": [self.text(value) for value in variant.template.header_parameters],
                    "named_parameters": {p.name: self.text(p.value) for p in variant.template.named_parameters},
                    "header_media": self.header_media(variant.template.header_media),
                    "header_location": self.header_location(variant.template.header_location),
                }
                if variant.template is not None
                else None,
            }
            for variant in config.variants
        }
        text = self.text(config.text)
        return {"channel": config.channel, "text": text, "file_id": config.file_id, "variants": variants}

    def text(self, text: str) -> str:
        return render(text, self.state, self.ctx)

    def header_media(self, media: lang.HeaderMedia | None) -> dict[str, Any] | None:
        """A template's header file, its URL (or media id) and name filled in (the URL is checked
        when sent)."""
        if media is None:
            return None
        filename = self.text(media.filename).strip() if media.filename is not None else ""
        if media.id is not None:
            return {"id": media.id, "filename": filename or None}
        return {"link": self.text(media.link or "").strip(), "filename": filename or None}

    def header_location(self, place: lang.HeaderLocation | None) -> dict[str, Any] | None:
        """A template's header place, its texts filled in (the coordinates are checked when sent)."""
        if place is None:
            return None
        filled = {
            key: self.text(value).strip() if isinstance(value, str) else value
            for key in ("latitude", "longitude", "name", "address")
            if (value := getattr(place, key)) is not None
        }
        return filled

    def question_text(self, config: lang.AskQuestionConfig, text: str) -> str:
        body = self.text(text)
        if config.kind == "choice":
            body += "\n" + "\n".join(f"{i}. {option}" for i, option in enumerate(config.options, start=1))
        return body

    def branch(self, step: Step) -> None:
        contact = self.ctx.snapshot()
        if contact is not None:
            contact = self.with_variables(contact)
            if step.reads_conversation:
                contact = conversation_conditions.with_facts(contact, self.ctx.conversation_facts())
        for index, (branch, checked) in enumerate(zip(step.config.branches, step.filters, strict=True)):
            if contact is not None and matches(checked, contact, self.ctx.eval):
                self.log(step, f"branch {index + 1}: {branch.name}")
                self.go(branch.next)
                return
        self.log(step, "else")
        self.go(step.next)

    def with_variables(self, contact: ContactSnapshot) -> ContactSnapshot:
        custom = dict(contact.custom)
        folded = dict(contact.custom_folded)
        for name, kind in self.wf.variable_kinds.items():
            value = self.state.vars.get(name)
            key = f"{lang.VAR_PREFIX}{name}"
            if value is None or value == "":
                continue
            if kind == "number":
                try:
                    custom[key] = float(value)
                except (TypeError, ValueError):
                    continue
            else:
                custom[key] = str(value)
                folded[key] = fold(str(value))
        return replace(contact, custom=custom, custom_folded=folded)

    def http(self, step: Step, config: lang.HttpConfig) -> None:
        body: Any = None
        if config.body is not None:
            try:
                body = render_json(config.body, self.state, self.ctx)
            except ValueError:
                self.after_http(
                    step, config, Result("", False, error="the body is not JSON once its variables are filled in")
                )
                return
        params = {
            "method": config.method,
            "url": self.text(config.url),
            "headers": [[h.name, self.text(h.value)] for h in config.headers],
            "body": body,
            "timeout_seconds": config.timeout_seconds,
        }
        self.act(step, "do", "http_request", params)

    def after_http(self, step: Step, config: lang.HttpConfig, result: Result) -> None:
        status = result.data.get("status")
        if config.status_variable is not None and status is not None:
            self.state.vars[config.status_variable] = status
        if result.ok:
            document = result.data.get("json")
            for mapping in config.response:
                value = json_path(document, mapping.path)
                if value is not None and not isinstance(value, str | int | float | bool):
                    value = json.dumps(value)[: lang.MAX_TEXT]
                self.state.vars[mapping.variable] = value
            self.log(step, f"status {status}")
            self.go(step.next)
            return
        self.outcome_failure(step, result.error or f"status {status}")

    def date_time(self, step: Step, config: lang.DateTimeConfig) -> None:
        hours = None
        if config.mode == "business_hours" and self.ctx.business_hours is not None:
            hours = self.ctx.business_hours(config.team_id)
        if schedule.inside(config, self.ctx.now, schedule.zone_of(config, self.ctx.eval.timezone), hours):
            self.log(step, "inside")
            self.go(step.next)
        else:
            self.log(step, "outside")
            self.go(step.on.get("failure"))

    def after_assign(self, step: Step, phase: str, result: Result) -> None:
        config: lang.AssignConfig = step.config
        if result.ok:
            if phase == "queue":
                self.end_wait()
            if result.data.get("already"):
                self.log(step, f"already assigned to user {result.data.get('user_id')}")
            else:
                self.log(step, f"assigned to user {result.data.get('user_id')}")
            self.go(step.next)
            return
        if result.data.get("queued") and config.queue_timeout is not None:
            if phase == "queue":
                assert self.state.wait is not None  # kept while the retry was under way
            else:
                until = self.ctx.now + timedelta(seconds=config.queue_timeout.seconds)
                self.state.wait = {
                    "kind": "queue",
                    "since": _iso(self.ctx.now),
                    "until": _iso(until),
                    "pool": queue_pool(config),
                }
                self.log(step, "queued", result.error)
            self.state.status = WAITING
            return
        if phase == "queue":
            self.end_wait()
        if "failure" in step.on:
            self.log(step, "failure", result.error)
            self.go(step.on["failure"])
        else:
            self.log(step, "not_assigned", result.error)
            self.go(step.next)

    def outcome_failure(self, step: Step, error: str) -> None:
        target = step.on.get("failure")
        if target is not None:
            self.log(step, "failure", error)
            self.go(target)
        else:
            self.fail(step, error)

    # -- results

    def resolve(self, step: Step, phase: str, result: Result) -> None:
        config: Any = step.config
        if step.type == "send_message":
            if result.ok:
                self.log(step, "sent")
                self.go(step.next)
            else:
                self.outcome_failure(step, result.error or "not sent")
        elif step.type == "ask_question":
            if phase in ("ask", "retry"):
                if not result.ok:
                    self.fail(step, result.error or "the question could not be sent")
                    return
                if phase == "ask":
                    until = self.ctx.now + timedelta(seconds=config.timeout.seconds)
                    self.state.wait = {
                        "kind": "question",
                        "since": _iso(self.ctx.now),
                        "until": _iso(until),
                        "attempts": 0,
                    }
                else:
                    assert self.state.wait is not None
                self.state.status = WAITING
                self.log(step, "asked" if phase == "ask" else "asked again")
            else:  # "save": the answer went to a contact field or tag
                self.log(step, "answered", None if result.ok else result.error)
                self.go(step.next)
        elif step.type == "http_request":
            self.after_http(step, config, result)
        elif step.type == "assign":
            self.after_assign(step, phase, result)
        elif step.type == "hand_to_assistant":
            if not result.ok:
                self.outcome_failure(step, result.error or "not handed to the assistant")
            elif config.then == "end":
                self.log(step, "handed to the assistant; the run ends")
                self.go(None)
            else:
                self.log(step, "handed to the assistant")
                self.go(step.next)
        else:
            # Updates, tags, conversation changes, comments, starting a workflow: a failure is logged
            # and the run goes on (these steps have no failure branch).
            self.log(step, "done" if result.ok else "skipped", None if result.ok else result.error)
            self.go(step.next)

    def answer(self, step: Step, text: str, location: Mapping[str, Any] | None = None) -> None:
        config: lang.AskQuestionConfig = step.config
        wait = self.state.wait
        assert wait is not None
        valid, value = check_answer(config, text, location)
        if not valid:
            wait["attempts"] = int(wait.get("attempts", 0)) + 1
            if wait["attempts"] >= config.max_attempts:
                self.end_wait()
                self.log(step, "invalid")
                self.go(step.on.get("invalid"))
                return
            self.state.status = RUNNING
            retry = config.retry_text or config.text
            self.act(
                step, "retry", "send_message", {"channel": config.channel, "text": self.question_text(config, retry)}
            )
            return
        self.end_wait()
        save = config.save_to
        if save is None:
            self.log(step, "answered")
            self.go(step.next)
        elif save.kind == "variable":
            assert save.name is not None
            self.state.vars[save.name] = value
            self.log(step, "answered")
            self.go(step.next)
        elif save.kind == "field":
            self.act(step, "save", "update_field", {"field": save.name, "value": str(value)})
        else:
            self.act(step, "save", "add_tags", {"tags": [str(value)]})


def resume_at(state: RunState) -> datetime | None:
    """When a waiting run is next due on its own (its wait or its question's timeout)."""
    if state.status == WAITING and state.wait is not None:
        return _parse(state.wait["until"])
    return None
