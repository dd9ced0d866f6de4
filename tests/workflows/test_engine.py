"""The engine as a pure function and the definition checker: no database, no I/O."""

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tertulia.segments.evaluator import ContactSnapshot
from tertulia.segments.timing import EvalContext
from tertulia.workflows import engine
from tertulia.workflows import language as lang

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def check(definition: dict[str, Any]) -> lang.Workflow:
    workflow, errors = lang.check_definition(definition, lang.CheckContext(custom_fields={}))
    assert workflow is not None, errors
    return workflow


def errors_of(definition: dict[str, Any]) -> dict[str, str]:
    return lang.check_definition(definition, lang.CheckContext(custom_fields={}))[1]


def ctx(now: datetime = NOW, **contact: Any) -> engine.Context:
    snapshot = ContactSnapshot(id=1, workspace_id=1, created_at=NOW, updated_at=NOW, **contact)
    return engine.Context(
        now=now,
        eval=EvalContext(workspace_id=1, timezone=ZoneInfo("America/Mexico_City"), now=now),
        contact=snapshot,
        values={"contact.first_name": "Ana"},
    )


def flow(*steps: dict[str, Any], trigger: str = "manual") -> lang.Workflow:
    return check({"trigger": {"type": trigger}, "steps": list(steps)})


def drive(
    workflow: lang.Workflow, inputs: list[Any], context: engine.Context | None = None
) -> tuple[engine.RunState, list[engine.Action], list[engine.Log]]:
    """Feed the inputs, answering every action with success."""
    state = engine.new_state({})
    actions: list[engine.Action] = []
    logs: list[engine.Log] = []
    pending = [engine.Start(), *inputs]
    while pending:
        output = engine.advance(workflow, state, pending.pop(0), context or ctx())
        state = output.state
        logs.extend(output.logs)
        for action in output.actions:
            actions.append(action)
            pending.insert(0, engine.Result(action.key, True, {}))
    return state, actions, logs


def test_send_renders_variables_with_fallbacks() -> None:
    workflow = flow(
        {
            "id": "a",
            "type": "send_message",
            "config": {"text": 'Hola {{contact.first_name}} {{contact.last_name | "x"}} {{system.current_date}}'},
        }
    )
    state, actions, _ = drive(workflow, [])
    assert actions[0].params["text"] == "Hola Ana x 2026-11-26"
    assert state.status == engine.FINISHED


def test_failed_send_takes_the_failure_branch_or_fails_the_run() -> None:
    with_branch = flow(
        {"id": "a", "type": "send_message", "config": {"text": "x"}, "next": "b", "on": {"failure": "c"}},
        {"id": "b", "type": "add_tags", "config": {"tags": ["ok"]}},
        {"id": "c", "type": "add_tags", "config": {"tags": ["failed"]}},
    )
    out = engine.advance(with_branch, engine.new_state({}), engine.Start(), ctx())
    out = engine.advance(with_branch, out.state, engine.Result("a1", False, error="window closed"), ctx())
    assert out.actions[0].params == {"tags": ["failed"]}
    without = flow({"id": "a", "type": "send_message", "config": {"text": "x"}})
    out = engine.advance(without, engine.new_state({}), engine.Start(), ctx())
    out = engine.advance(without, out.state, engine.Result("a1", False, error="window closed"), ctx())
    assert out.state.status == engine.FAILED
    assert out.state.error == "window closed"


def test_a_stale_result_is_ignored() -> None:
    workflow = flow(
        {"id": "a", "type": "add_tags", "config": {"tags": ["x"]}, "next": "b"},
        {"id": "b", "type": "add_tags", "config": {"tags": ["y"]}},
    )
    first = engine.advance(workflow, engine.new_state({}), engine.Start(), ctx())
    second = engine.advance(workflow, first.state, engine.Result("a1", True), ctx())
    again = engine.advance(workflow, second.state, engine.Result("a1", True), ctx())
    assert again.actions == []
    assert again.state == second.state


@pytest.mark.parametrize(
    ("kind", "extra", "answer", "valid", "value"),
    [
        ("number", {"min": 1, "max": 10}, "7,5", True, 7.5),
        ("number", {"min": 1, "max": 10}, "11", False, None),
        ("choice", {"options": ["Ventas", "Soporte"]}, "soporte", True, "Soporte"),
        ("choice", {"options": ["Ventas", "Soporte"]}, "1", True, "Ventas"),
        ("choice", {"options": ["Ventas", "Soporte"]}, "3", False, None),
        ("email", {}, "ana@example", False, None),
        ("phone", {}, "+52 55 1234 5678", True, "+52 55 1234 5678"),
        ("date", {}, "31/12/2026", True, "2026-12-31"),
    ],
)
def test_answers_are_checked_by_kind(kind: str, extra: dict[str, Any], answer: str, valid: bool, value: Any) -> None:
    config = lang.AskQuestionConfig(text="?", kind=kind, **extra)
    assert engine.check_answer(config, answer) == (valid, value)


QUESTION = {
    "id": "q",
    "type": "ask_question",
    "config": {
        "text": "¿Cuántos?",
        "kind": "number",
        "min": 1,
        "max": 5,
        "max_attempts": 2,
        "save_to": {"kind": "variable", "name": "n"},
        "timeout": {"amount": 2, "unit": "hours"},
    },
    "next": "b",
    "on": {"invalid": "bad", "timeout": "late"},
}
BRANCH = {
    "id": "b",
    "type": "branch",
    "config": {
        "branches": [
            {
                "name": "many",
                "conditions": {
                    "groups": [{"conditions": [{"category": "variable", "field": "n", "operator": "gte", "value": 3}]}]
                },
                "next": "many",
            }
        ]
    },
    "next": "few",
}
ENDS = [{"id": name, "type": "add_tags", "config": {"tags": [name]}} for name in ("many", "few", "bad", "late")]


def test_question_answer_goes_to_a_variable_and_a_branch_reads_it() -> None:
    workflow = flow(QUESTION, BRANCH, *ENDS)
    later = NOW + timedelta(minutes=1)
    state, actions, _ = drive(workflow, [engine.ContactWrote("4", at=later)], ctx())
    assert state.vars == {"n": 4}
    assert actions[-1].params == {"tags": ["many"]}


def test_invalid_answers_retry_then_take_the_invalid_branch() -> None:
    workflow = flow(QUESTION, BRANCH, *ENDS)
    later = NOW + timedelta(minutes=1)
    _, actions, _ = drive(workflow, [engine.ContactWrote("nine", at=later), engine.ContactWrote("99", at=later)])
    assert [a.kind for a in actions] == ["send_message", "send_message", "add_tags"]
    assert actions[-1].params == {"tags": ["bad"]}


def test_a_message_older_than_the_question_is_not_an_answer() -> None:
    workflow = flow(QUESTION, BRANCH, *ENDS)
    state, _, _ = drive(workflow, [engine.ContactWrote("4", at=NOW - timedelta(seconds=1))])
    assert state.status == engine.WAITING
    assert state.vars == {}


def test_question_timeout_and_wait_end_on_ticks() -> None:
    workflow = flow(QUESTION, BRANCH, *ENDS)
    state, _, _ = drive(workflow, [])
    early = engine.advance(workflow, state, engine.Tick(), ctx(NOW + timedelta(hours=1)))
    assert early.state.status == engine.WAITING
    late = engine.advance(workflow, state, engine.Tick(), ctx(NOW + timedelta(hours=2)))
    assert late.actions[0].params == {"tags": ["late"]}


def test_a_wait_is_cut_short_when_the_contact_writes_only_when_asked() -> None:
    for cut, expected in ((True, engine.ACTING), (False, engine.WAITING)):
        workflow = flow(
            {
                "id": "w",
                "type": "wait",
                "config": {"duration": {"amount": 3, "unit": "days"}, "until_contact_writes": cut},
                "next": "t",
            },
            {"id": "t", "type": "add_tags", "config": {"tags": ["t"]}},
        )
        state = engine.advance(workflow, engine.new_state({}), engine.Start(), ctx()).state
        assert engine.resume_at(state) == NOW + timedelta(days=3)
        after = engine.advance(workflow, state, engine.ContactWrote("hi", at=NOW + timedelta(seconds=1)), ctx())
        assert after.state.status == expected


def test_jumps_are_capped_then_continue_or_exit() -> None:
    for exhausted, final in (("continue", ["x", "x", "x", "done"]), ("exit", ["x", "x", "x"])):
        jump = {"id": "j", "type": "jump_to", "config": {"target": "x", "max_jumps": 2, "when_exhausted": exhausted}}
        if exhausted == "continue":
            jump["next"] = "done"
        workflow = (
            flow(
                {"id": "x", "type": "add_tags", "config": {"tags": ["x"]}, "next": "j"},
                jump,
                {"id": "done", "type": "add_tags", "config": {"tags": ["done"]}},
            )
            if exhausted == "continue"
            else flow({"id": "x", "type": "add_tags", "config": {"tags": ["x"]}, "next": "j"}, jump)
        )
        state, actions, _ = drive(workflow, [])
        assert [a.params["tags"][0] for a in actions] == final
        assert state.status == engine.FINISHED


@pytest.mark.parametrize(("first_cap", "xs", "ys"), [(10, 11, 1), (4, 5, 7), (1, 2, 10)])
def test_a_run_jumps_at_most_ten_times_over_all_its_jump_steps(first_cap: int, xs: int, ys: int) -> None:
    """Each jump step allows up to 10, but the run's jumps are counted together: once 10 are used,
    every jump step acts as used up (here: goes on to its next step)."""
    workflow = flow(
        {"id": "x", "type": "add_tags", "config": {"tags": ["x"]}, "next": "jx"},
        {"id": "jx", "type": "jump_to", "config": {"target": "x", "max_jumps": first_cap}, "next": "y"},
        {"id": "y", "type": "add_tags", "config": {"tags": ["y"]}, "next": "jy"},
        {"id": "jy", "type": "jump_to", "config": {"target": "y", "max_jumps": 10}, "next": "done"},
        {"id": "done", "type": "add_tags", "config": {"tags": ["done"]}},
    )
    state, actions, logs = drive(workflow, [])
    assert [a.params["tags"][0] for a in actions] == ["x"] * xs + ["y"] * ys + ["done"]
    assert sum(state.jumps.values()) == lang.MAX_JUMPS == 10
    jumped = [log.step_id for log in logs if log.outcome == "jumped"]
    assert (jumped.count("jx"), jumped.count("jy")) == (xs - 1, ys - 1)
    assert [log.step_id for log in logs if log.outcome == "jumps_used_up"] == ["jx", "jy"]
    assert state.status == engine.FINISHED


def test_a_jump_step_left_with_jumps_ends_the_run_when_the_run_has_used_its_ten() -> None:
    workflow = flow(
        {"id": "x", "type": "add_tags", "config": {"tags": ["x"]}, "next": "jx"},
        {"id": "jx", "type": "jump_to", "config": {"target": "x", "max_jumps": 10}, "next": "jy"},
        {"id": "jy", "type": "jump_to", "config": {"target": "x", "max_jumps": 5, "when_exhausted": "exit"}},
    )
    state, actions, logs = drive(workflow, [])
    assert len(actions) == 11  # the first pass and ten jumps of jx; jy never jumps
    assert [log.outcome for log in logs if log.step_id == "jy"] == ["jumps_used_up"]
    assert state.jumps == {"jx": 10}
    assert state.status == engine.FINISHED


def test_runaway_protection_stops_a_run_with_too_many_steps_in_a_minute() -> None:
    steps = [
        {
            "id": f"s{i}",
            "type": "branch",
            "config": {
                "branches": [
                    {
                        "name": "never",
                        "conditions": {
                            "groups": [
                                {"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["zzz"]}]}
                            ]
                        },
                    }
                ]
            },
            "next": f"s{i + 1}",
        }
        for i in range(90)
    ]
    steps.append({"id": "s90", "type": "jump_to", "config": {"target": "s0", "max_jumps": 10}})
    state, _, _ = drive(check({"trigger": {"type": "manual"}, "steps": steps}), [])
    assert state.status == engine.FAILED
    assert "steps in a minute" in (state.error or "")


def test_http_maps_response_values_and_status() -> None:
    workflow = flow(
        {
            "id": "h",
            "type": "http_request",
            "config": {
                "url": "https://crm.example.com/lookup?email={{contact.email}}",
                "body": '{"name": "{{contact.first_name}}"}',
                "response": [{"path": "$.data.plan", "variable": "plan"}, {"path": "$.items[1]", "variable": "second"}],
                "status_variable": "status",
            },
            "next": "t",
        },
        {"id": "t", "type": "send_message", "config": {"text": "Plan {{vars.plan}} {{vars.second}} {{vars.status}}"}},
    )
    out = engine.advance(workflow, engine.new_state({}), engine.Start(), ctx())
    assert out.actions[0].params["body"] == {"name": "Ana"}
    data = {"status": 201, "json": {"data": {"plan": "gold"}, "items": ["a", "b"]}}
    out = engine.advance(workflow, out.state, engine.Result("a1", True, data), ctx())
    assert out.actions[0].params["text"] == "Plan gold b 201"


def test_checker_names_every_problem_with_its_path() -> None:
    errors = errors_of(
        {
            "trigger": {"type": "tag_added", "once_per_contact": True},
            "steps": [
                {"id": "a", "type": "send_message", "config": {"text": "{{conversation.nope}}"}, "next": "b"},
                {
                    "id": "b",
                    "type": "ask_question",
                    "config": {"text": "?", "kind": "choice", "options": ["only"]},
                    "next": "a",
                },
                {"id": "c", "type": "http_request", "config": {"url": "ftp://x", "body": "{nope"}},
                {
                    "id": "d",
                    "type": "branch",
                    "config": {
                        "branches": [
                            {
                                "name": "x",
                                "conditions": {
                                    "groups": [
                                        {
                                            "conditions": [
                                                {"category": "variable", "field": "ghost", "operator": "exists"}
                                            ]
                                        }
                                    ]
                                },
                            }
                        ]
                    },
                },
            ],
        }
    )
    assert errors["steps[0].config.text"] == "unknown variable {{conversation.nope}}"
    assert errors["steps[1].config.options"].startswith("a multiple choice question needs")
    assert errors["steps[1].next"].startswith("makes a loop back")
    assert errors["steps[2].config.url"] == "must start with https:// or http://"
    assert errors["steps[2].config.body"].startswith("must be JSON")
    assert errors["steps[3].config.branches[0].conditions.groups[0].conditions[0].field"] == "unknown variable 'ghost'"
    assert "unreachable" in errors["steps[2]"]


def test_checker_limits() -> None:
    many = [
        {"id": f"s{i}", "type": "add_tags", "config": {"tags": ["x"]}, "next": f"s{i + 1}" if i < 100 else None}
        for i in range(101)
    ]
    assert errors_of({"trigger": {"type": "manual"}, "steps": many}) == {"steps": "at most 100 steps"}
    branches = [{"name": f"b{i}", "conditions": {}} for i in range(10)]
    errors = errors_of(
        {"trigger": {"type": "manual"}, "steps": [{"id": "b", "type": "branch", "config": {"branches": branches}}]}
    )
    assert "steps[0].config.branches" in errors
    jumps = errors_of(
        {
            "trigger": {"type": "manual"},
            "steps": [{"id": "j", "type": "jump_to", "config": {"target": "j", "max_jumps": 11}}],
        }
    )
    assert "steps[0].config.max_jumps" in jumps


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
_STATES = st.builds(
    engine.RunState,
    at=st.none() | st.text(max_size=6),
    vars=st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
    trigger=st.dictionaries(st.text(max_size=6), _JSON, max_size=4),
    jumps=st.dictionaries(st.text(max_size=6), st.integers(), max_size=3),
    seq=st.integers(min_value=0),
    pending=st.none() | st.dictionaries(st.text(max_size=6), _JSON, max_size=3),
    wait=st.none() | st.dictionaries(st.text(max_size=6), _JSON, max_size=3),
    path=st.lists(st.text(max_size=6), max_size=10),
)


def _nested_containers(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(c for item in value.values() for c in _nested_containers(item))]
    if isinstance(value, list):
        return [value, *(c for item in value for c in _nested_containers(item))]
    return []


@given(_STATES)
def test_state_copies_agree_with_the_generic_deep_copies_and_share_nothing(state: engine.RunState) -> None:
    """The run state's own JSON copy gives what `dataclasses.asdict` and `copy.deepcopy` give, and
    no dict or list of the copy is one of the original's (the engine mutates its copy)."""
    as_json = state.to_json()
    assert as_json == dataclasses.asdict(state)
    assert engine.RunState.from_json(as_json) == engine.RunState(**copy.deepcopy(as_json))
    copied = state.copied()
    assert copied == state
    mine = {id(c) for name in vars(state) for c in _nested_containers(getattr(state, name))}
    assert mine.isdisjoint({id(c) for name in vars(copied) for c in _nested_containers(getattr(copied, name))})
    assert mine.isdisjoint({id(c) for c in _nested_containers(as_json)})
