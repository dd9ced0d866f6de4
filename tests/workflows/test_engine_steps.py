"""The date & time, queued assign and hand-to-assistant steps and the URL, rating and location
questions, in the pure engine and the checker: no database, no I/O."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.workflows import engine, schedule
from tertulia.workflows import language as lang
from tertulia.workspaces.hours import is_open, parse_hours
from tests.workflows.test_engine import NOW, ctx, drive, errors_of, flow

# NOW is Thursday 2026-11-26 12:00 UTC: 06:00 in Mexico City (the context's zone), 13:00 in Madrid.
INSIDE = {"id": "in", "type": "add_tags", "config": {"tags": ["in"]}}
OUTSIDE = {"id": "out", "type": "add_tags", "config": {"tags": ["out"]}}


def date_time(config: dict[str, Any]) -> lang.Workflow:
    return flow(
        {"id": "d", "type": "date_time", "config": config, "next": "in", "on": {"failure": "out"}}, INSIDE, OUTSIDE
    )


def tags_after(workflow: lang.Workflow, context: engine.Context) -> list[str]:
    _, actions, _ = drive(workflow, [], context)
    return [tag for action in actions for tag in action.params.get("tags", [])]


WEEKLY = {
    "mode": "weekly",
    "windows": [{"days": ["monday", "tuesday", "wednesday", "thursday", "friday"], "start": "09:00", "end": "18:00"}],
}


@pytest.mark.parametrize(
    ("config", "now", "expected"),
    [
        # Weekly windows in the workspace's zone (Mexico City, UTC-6): 06:00 is before 09:00.
        (WEEKLY, NOW, "out"),
        (WEEKLY, NOW + timedelta(hours=4), "in"),
        (WEEKLY, NOW + timedelta(hours=12), "out"),  # 18:00 local: the end is not inside
        ({**WEEKLY, "timezone": "Europe/Madrid"}, NOW, "in"),
        (WEEKLY, NOW + timedelta(days=2, hours=4), "out"),  # Saturday
        # Date ranges: a date alone covers its whole day (local), a time is the first moment outside.
        ({"mode": "date_range", "start": "2026-11-26", "end": "2026-11-26"}, NOW, "in"),
        ({"mode": "date_range", "start": "2026-11-26", "end": "2026-11-26"}, NOW + timedelta(hours=19), "out"),
        ({"mode": "date_range", "end": "2026-11-26 06:00"}, NOW, "out"),
        ({"mode": "date_range", "end": "2026-11-26 06:01"}, NOW, "in"),
        ({"mode": "date_range", "start": "2026-11-27"}, NOW, "out"),
        ({"mode": "date_range", "start": "2026-11-26 20:59", "timezone": "Asia/Tokyo"}, NOW, "in"),  # 21:00 there
        ({"mode": "date_range", "start": "2026-11-26 20:59"}, NOW, "out"),
    ],
)
def test_date_time_windows_and_ranges(config: dict[str, Any], now: datetime, expected: str) -> None:
    assert tags_after(date_time(config), ctx(now)) == [expected]


def test_date_time_business_hours_of_the_team_or_the_workspace() -> None:
    workspace = parse_hours({"timezone": "Europe/Madrid", "week": {"thursday": [{"start": "09:00", "end": "14:00"}]}})
    night_team = parse_hours({"timezone": "UTC", "week": {"thursday": [{"start": "20:00", "end": "24:00"}]}})
    asked: list[int | None] = []

    def hours(team_id: int | None) -> Any:
        asked.append(team_id)
        return night_team if team_id == 7 else workspace

    workflow = date_time({"mode": "business_hours"})
    assert tags_after(workflow, replace(ctx(), business_hours=hours)) == ["in"]  # 13:00 in Madrid
    assert tags_after(workflow, replace(ctx(NOW + timedelta(hours=2)), business_hours=hours)) == ["out"]
    team = date_time({"mode": "business_hours", "team_id": 7})
    assert tags_after(team, replace(ctx(), business_hours=hours)) == ["out"]
    assert tags_after(team, replace(ctx(NOW + timedelta(hours=9)), business_hours=hours)) == ["in"]
    assert asked == [None, None, 7, 7]
    # No hours handed over (none saved): always open.
    assert tags_after(workflow, ctx()) == ["in"]


def test_date_time_outside_without_a_failure_branch_ends_the_run() -> None:
    workflow = flow(
        {"id": "d", "type": "date_time", "config": {"mode": "date_range", "end": "2020-01-01"}, "next": "in"}, INSIDE
    )
    state, actions, logs = drive(workflow, [])
    assert (state.status, actions, [log.outcome for log in logs]) == ("finished", [], ["outside"])


def test_date_time_checker_errors_at_the_field() -> None:
    def step_errors(config: dict[str, Any]) -> dict[str, str]:
        found = errors_of(
            {"trigger": {"type": "manual"}, "steps": [{"id": "d", "type": "date_time", "config": config}]}
        )
        return {path.removeprefix("steps[0].config."): message for path, message in found.items()}

    assert set(step_errors({"mode": "weekly"})) == {"windows"}
    bad_window = {"mode": "weekly", "windows": [{"days": ["monday", "monday"], "start": "18:00", "end": "09:00"}]}
    assert set(step_errors(bad_window)) == {"windows[0].end", "windows[0].days"}
    assert set(step_errors({"mode": "weekly", "windows": [{"days": ["funday"], "start": "9", "end": "10:00"}]})) == {
        "windows[0].days[0]"
    }
    assert set(step_errors({"mode": "weekly", "windows": [{"days": ["friday"], "start": "9", "end": "10:00"}]})) == {
        "windows[0].start"
    }
    assert set(step_errors({"mode": "date_range"})) == {"start"}
    assert set(step_errors({"mode": "date_range", "start": "2026-12-01", "end": "2026-11-01"})) == {"end"}
    assert set(step_errors({"mode": "date_range", "start": "mañana", "timezone": "Mars/Base"})) == {"start", "timezone"}
    assert set(step_errors({"mode": "business_hours", "timezone": "UTC", "windows": WEEKLY["windows"]})) == {
        "timezone",
        "windows",
    }
    assert set(step_errors({"mode": "weekly", "team_id": 3, "windows": WEEKLY["windows"]})) == {"team_id"}
    context = lang.CheckContext(custom_fields={}, team_ids=frozenset({1}))
    raw = {
        "trigger": {"type": "manual"},
        "steps": [{"id": "d", "type": "date_time", "config": {"mode": "business_hours", "team_id": 2}}],
    }
    assert lang.check_definition(raw, context)[1] == {"steps[0].config.team_id": "no team 2"}


@settings(max_examples=200, deadline=None)
@given(
    minute=st.integers(min_value=0, max_value=7 * 24 * 60 - 1),
    start=st.integers(min_value=0, max_value=23 * 60),
    length=st.integers(min_value=1, max_value=60 * 6),
)
def test_weekly_windows_agree_with_business_hours(minute: int, start: int, length: int) -> None:
    """A weekly window and a business-hours block with the same times say the same for any moment."""
    end = min(start + length, 24 * 60)
    hhmm = f"{start // 60:02d}:{start % 60:02d}", f"{end // 60:02d}:{end % 60:02d}"
    days = ["monday", "wednesday", "saturday"]
    config = lang.DateTimeConfig(
        mode="weekly", timezone="America/Santiago", windows=[lang.TimeWindow(days=days, start=hhmm[0], end=hhmm[1])]
    )
    hours = parse_hours(
        {"timezone": "America/Santiago", "week": {day: [{"start": hhmm[0], "end": hhmm[1]}] for day in days}}
    )
    moment = datetime(2026, 3, 30, tzinfo=UTC) + timedelta(minutes=minute)
    assert schedule.inside(config, moment, schedule.zone_of(config, UTC), None) == is_open(hours, moment)


# ----- assign with capacity and a queue ------------------------------------------------------------

QUEUED = {
    "id": "a",
    "type": "assign",
    "config": {"to": "workspace", "max_open": 2, "queue_timeout": {"amount": 1, "unit": "hours"}},
    "next": "in",
    "on": {"timeout": "out"},
}


def queued_run() -> tuple[lang.Workflow, engine.RunState, engine.Action]:
    workflow = flow(QUEUED, INSIDE, OUTSIDE)
    output = engine.advance(workflow, engine.new_state({}), engine.Start(), ctx())
    action = output.actions[0]
    assert action.kind == "assign"
    assert action.params["max_open"] == 2
    output = engine.advance(workflow, output.state, engine.Result(action.key, False, {"queued": True}, "nobody"), ctx())
    assert output.state.status == engine.WAITING
    assert output.state.wait is not None
    assert output.state.wait["kind"] == "queue"
    assert [log.outcome for log in output.logs] == ["queued"]
    return workflow, output.state, action


def test_a_queued_assignment_is_tried_again_when_woken_and_goes_on_once_assigned() -> None:
    workflow, state, first = queued_run()
    later = ctx(NOW + timedelta(minutes=10))
    assert engine.resume_at(state) == NOW + timedelta(hours=1)
    # Nobody yet: back to waiting, same queue place and timeout, nothing logged.
    output = engine.advance(workflow, state, engine.QueueWake(), later)
    retry = output.actions[0]
    assert retry.key != first.key
    assert retry.params["retry"] is True
    output = engine.advance(workflow, output.state, engine.Result(retry.key, False, {"queued": True}), later)
    assert output.state.status == engine.WAITING
    assert output.state.wait == state.wait
    assert output.logs == []
    # A message from the contact or an early tick changes nothing.
    assert engine.advance(workflow, output.state, engine.ContactWrote("hola"), later).state == output.state
    assert engine.advance(workflow, output.state, engine.Tick(), later).state == output.state
    # Someone qualifies.
    output = engine.advance(workflow, output.state, engine.QueueWake(), later)
    again = output.actions[0]
    output = engine.advance(workflow, output.state, engine.Result(again.key, True, {"user_id": 5}), later)
    assert [log.outcome for log in output.logs] == ["assigned to user 5"]
    assert output.actions[0].params == {"tags": ["in"]}
    assert output.state.wait is None


def test_a_queued_assignment_takes_the_timeout_branch() -> None:
    workflow, state, _ = queued_run()
    late = ctx(NOW + timedelta(hours=1))
    for event in (engine.Tick(), engine.QueueWake()):  # the sweep's tick, or a wake after the timeout
        output = engine.advance(workflow, state, event, late)
        assert [log.outcome for log in output.logs] == ["timeout"]
        assert output.actions[0].params == {"tags": ["out"]}


def test_a_queued_conversation_that_closed_takes_the_failure_path() -> None:
    workflow, state, _ = queued_run()
    output = engine.advance(workflow, state, engine.QueueWake(), ctx())
    retry = output.actions[0]
    output = engine.advance(workflow, output.state, engine.Result(retry.key, False, {}, "no open conversation"), ctx())
    assert [log.outcome for log in output.logs] == ["not_assigned"]
    assert output.state.wait is None
    assert output.actions[0].params == {"tags": ["in"]}


def test_the_queue_pool_names_who_may_take_it() -> None:
    one = lang.AssignConfig(to="team", team_id=3, max_open=2, only_online=True)
    assert engine.queue_pool(one) == engine.queue_pool(one.model_copy(update={"strategy": "least_open"}))
    assert engine.queue_pool(one) != engine.queue_pool(one.model_copy(update={"max_open": 3}))


def test_assign_checker() -> None:
    def step_errors(config: dict[str, Any], on: dict[str, str] | None = None) -> dict[str, str]:
        step = {"id": "a", "type": "assign", "config": config, "next": "x", "on": on or {}}
        return errors_of({"trigger": {"type": "manual"}, "steps": [step, {"id": "x", "type": "unassign"}]})

    assert set(step_errors({"to": "workspace", "max_open": 0})) == {"steps[0].config.max_open"}
    assert set(step_errors({"to": "workspace"}, {"timeout": "x"})) == {"steps[0].on.timeout"}
    too_long = {"to": "workspace", "queue_timeout": {"amount": 8, "unit": "days"}}
    assert set(step_errors(too_long, {"timeout": "x"})) == {"steps[0].config.queue_timeout"}
    ok = {"to": "workspace", "queue_timeout": {"amount": 2, "unit": "hours"}}
    assert step_errors(ok, {"timeout": "x", "failure": "x"}) == {}


# ----- hand to the assistant -----------------------------------------------------------------------


def test_hand_to_assistant_ends_the_run_or_goes_on() -> None:
    ends = flow({"id": "h", "type": "hand_to_assistant"})
    state, actions, logs = drive(ends, [])
    assert [a.kind for a in actions] == ["hand_to_assistant"]
    assert state.status == "finished"
    assert [log.outcome for log in logs] == ["handed to the assistant; the run ends"]
    goes_on = flow({"id": "h", "type": "hand_to_assistant", "config": {"then": "continue"}, "next": "in"}, INSIDE)
    _, actions, _ = drive(goes_on, [])
    assert [a.kind for a in actions] == ["hand_to_assistant", "add_tags"]
    failing = flow({"id": "h", "type": "hand_to_assistant", "on": {"failure": "out"}}, OUTSIDE)
    output = engine.advance(failing, engine.new_state({}), engine.Start(), ctx())
    output = engine.advance(failing, output.state, engine.Result(output.actions[0].key, False, {}, "bot off"), ctx())
    assert output.actions[0].params == {"tags": ["out"]}
    errors = errors_of(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "h", "type": "hand_to_assistant", "next": "x"}, {"id": "x", "type": "unassign"}],
        }
    )
    assert set(errors) == {"steps[0].next"}


# ----- questions: URL, rating, location ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "answer", "valid", "value"),
    [
        ("url", "https://Example.com/a?b=1", True, "https://example.com/a?b=1"),
        ("url", "tienda.example.mx/ofertas", True, "https://tienda.example.mx/ofertas"),
        ("url", "ftp://example.com", False, None),
        ("url", "no es una url", False, None),
        ("url", "localhost:8000", False, None),
        ("url", "https://ana@example.com", False, None),
        ("rating", "4", True, 4),
        ("rating", "5/5", True, 5),
        ("rating", "3 estrellas", True, 3),
        ("rating", "⭐⭐", True, 2),
        ("rating", "★★★★★★", False, None),
        ("rating", "0", False, None),
        ("rating", "45", False, None),
        ("location", "Av. Reforma 222, CDMX", True, "Av. Reforma 222, CDMX"),
        ("location", "  ", False, None),
    ],
)
def test_new_question_kinds(kind: str, answer: str, valid: bool, value: Any) -> None:
    config = lang.AskQuestionConfig(text="?", kind=kind)  # type: ignore[arg-type]
    assert engine.check_answer(config, answer) == (valid, value)


def test_a_shared_location_is_an_answer_and_bad_coordinates_fall_back_to_the_text() -> None:
    config = lang.AskQuestionConfig(text="?", kind="location")
    shared = {"latitude": 19.4326, "longitude": -99.1332, "name": "Zócalo"}
    assert engine.check_answer(config, "", shared) == (True, "19.432600,-99.133200 Zócalo")
    assert engine.check_answer(config, "", {"latitude": 91, "longitude": 0}) == (False, None)
    assert engine.check_answer(config, "cerca del metro", {"latitude": "x"}) == (True, "cerca del metro")


def test_rating_retries_then_saves_a_number_variable_a_branch_reads() -> None:
    question = {
        "id": "q",
        "type": "ask_question",
        "config": {
            "text": "¿Qué tal?",
            "kind": "rating",
            "max_attempts": 2,
            "save_to": {"kind": "variable", "name": "r"},
        },
        "next": "b",
        "on": {"invalid": "out"},
    }
    good = {"category": "variable", "field": "r", "operator": "gte", "value": 4}
    branch = {
        "id": "b",
        "type": "branch",
        "config": {"branches": [{"name": "good", "conditions": {"groups": [{"conditions": [good]}]}, "next": "in"}]},
    }
    workflow = flow(question, branch, INSIDE, OUTSIDE)
    later = NOW + timedelta(minutes=1)
    state, actions, _ = drive(
        workflow, [engine.ContactWrote("genial", at=later), engine.ContactWrote("⭐⭐⭐⭐", at=later)]
    )
    assert state.vars == {"r": 4}
    assert [a.params.get("text") or a.params.get("tags") for a in actions] == ["¿Qué tal?", "¿Qué tal?", ["in"]]
    assert lang.check_definition(
        {
            "trigger": {"type": "manual"},
            "steps": [{**question, "config": {**question["config"], "min": 1}, "next": None, "on": {}}],
        },
        lang.CheckContext(custom_fields={}),
    )[1] == {"steps[0].config.min": "only a number question has a minimum and maximum"}
