"""Branch conditions on the run's conversation and its assignee's status, as the engine evaluates
them (a pure function: the conversation's facts are given) and as the checker refuses them. No
database: the runs against the services are in test_conversation_branch_runs.py."""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tertulia.kit.errors import ValidationFailed
from tertulia.segments import language as filters
from tertulia.segments.evaluator import ContactSnapshot
from tertulia.segments.timing import EvalContext
from tertulia.workflows import engine
from tertulia.workflows import language as lang
from tertulia.workflows.conversation_conditions import ConversationFacts

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
KNOWN = lang.CheckContext(
    custom_fields={},
    channel_ids=frozenset({7, 8}),
    channel_types={7: "whatsapp", 8: "telegram"},
    user_ids=frozenset({21, 22}),
    team_ids=frozenset({31}),
)
# Open, on WhatsApp channel 7, team 31, assigned to user 21 who is online.
FACTS = ConversationFacts(
    status="open", channel_id=7, channel_type="whatsapp", team_id=31, assignee_id=21, assignee_status="online"
)


def condition(category: str, operator: str, value: Any = None, field: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"category": category, "operator": operator}
    if field is not None:
        found["field"] = field
    if value is not None:
        found["value"] = value
    return found


def definition(*conditions: dict[str, Any], match: str = "all") -> dict[str, Any]:
    return {
        "trigger": {"type": "manual"},
        "steps": [
            {
                "id": "b",
                "type": "branch",
                "config": {
                    "branches": [
                        {
                            "name": "yes",
                            "conditions": {"groups": [{"match": match, "conditions": list(conditions)}]},
                            "next": "yes",
                        }
                    ]
                },
                "next": "no",
            },
            {"id": "yes", "type": "add_tags", "config": {"tags": ["yes"]}},
            {"id": "no", "type": "add_tags", "config": {"tags": ["no"]}},
        ],
    }


def taken(conditions: list[dict[str, Any]], facts: ConversationFacts | None, match: str = "all") -> str:
    """The branch a run takes with these conditions on a conversation with these facts."""
    workflow, errors = lang.check_definition(definition(*conditions, match=match), KNOWN)
    assert workflow is not None, errors
    context = engine.Context(
        now=NOW,
        eval=EvalContext(workspace_id=1, timezone=ZoneInfo("UTC"), now=NOW),
        contact=ContactSnapshot(id=1, workspace_id=1, created_at=NOW, updated_at=NOW),
        conversation=facts,
    )
    output = engine.advance(workflow, engine.new_state({}), engine.Start(), context)
    return output.state.path[1]


def on(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return condition("conversation", operator, value, field)


@pytest.mark.parametrize(
    ("cond", "expected"),
    [
        (on("status", "is", "open"), "yes"),
        (on("status", "is", "closed"), "no"),
        (on("status", "is_not", "closed"), "yes"),
        (on("status", "is_not", "open"), "no"),
        (on("channel", "is", 7), "yes"),
        (on("channel", "is", 8), "no"),
        (on("channel", "is_not", 8), "yes"),
        (on("channel", "is_not", 7), "no"),
        (on("channel", "is_any_of", [8, 7]), "yes"),
        (on("channel", "is_any_of", [8]), "no"),
        (on("channel", "is_none_of", [8]), "yes"),
        (on("channel", "is_none_of", [7, 8]), "no"),
        (on("channel_type", "is", "whatsapp"), "yes"),
        (on("channel_type", "is", "telegram"), "no"),
        (on("channel_type", "is_not", "whatsapp"), "no"),
        (on("channel_type", "is_any_of", ["telegram", "whatsapp"]), "yes"),
        (on("channel_type", "is_none_of", ["whatsapp"]), "no"),
        (on("team", "is", 31), "yes"),
        (on("team", "is_not", 31), "no"),
        (on("team", "exists"), "yes"),
        (on("team", "not_exists"), "no"),
        (on("assignee", "is", 21), "yes"),
        (on("assignee", "is", 22), "no"),
        (on("assignee", "is_not", 22), "yes"),
        (on("assignee", "is_any_of", [22]), "no"),
        (on("assignee", "is_none_of", [22]), "yes"),
        (on("assignee", "exists"), "yes"),
        (on("assignee", "not_exists"), "no"),
        (condition("assignee_status", "is", "online"), "yes"),
        (condition("assignee_status", "is", "away"), "no"),
        (condition("assignee_status", "is_not", "online"), "no"),
        (condition("assignee_status", "is_not", "away"), "yes"),
        (condition("assignee_status", "is_any_of", ["away", "online"]), "yes"),
        (condition("assignee_status", "is_none_of", ["online", "busy"]), "no"),
    ],
)
def test_each_field_and_operator_on_an_open_assigned_conversation(cond: dict[str, Any], expected: str) -> None:
    assert taken([cond], FACTS) == expected


def test_a_closed_unassigned_conversation_and_no_conversation_at_all() -> None:
    closed = ConversationFacts(status="closed", channel_id=8, channel_type="telegram")
    assert taken([on("status", "is", "closed")], closed) == "yes"
    assert taken([on("assignee", "not_exists")], closed) == "yes"
    assert taken([on("team", "not_exists")], closed) == "yes"
    # No assignee: no status either, so "is" matches nothing and "is not" everything.
    assert taken([condition("assignee_status", "is", "offline")], closed) == "no"
    assert taken([condition("assignee_status", "is_not", "online")], closed) == "yes"
    # No conversation: every field is empty.
    assert taken([on("status", "is", "open")], None) == "no"
    assert taken([on("status", "is_not", "open")], None) == "yes"
    assert taken([on("channel", "is_any_of", [7, 8])], None) == "no"
    assert taken([on("assignee", "not_exists")], None) == "yes"


def test_conversation_conditions_combine_with_contact_conditions_and_groups() -> None:
    on_whatsapp_online = [on("channel_type", "is", "whatsapp"), condition("assignee_status", "is", "online")]
    assert taken(on_whatsapp_online, FACTS) == "yes"
    away = ConversationFacts(**{**FACTS.__dict__, "assignee_status": "away"})
    assert taken(on_whatsapp_online, away) == "no"
    assert taken(on_whatsapp_online, away, match="any") == "yes"
    # A contact condition in the same group: the contact has no tag.
    with_tag = [on("status", "is", "open"), condition("tag", "has_any_of", ["vip"])]
    assert taken(with_tag, FACTS) == "no"
    assert taken(with_tag, FACTS, match="any") == "yes"


def test_a_branch_without_conversation_conditions_never_asks_for_the_conversation() -> None:
    workflow, _errors = lang.check_definition(definition(condition("tag", "exists")), KNOWN)
    assert workflow is not None
    assert not workflow.first.reads_conversation

    def refuse() -> ConversationFacts | None:
        raise AssertionError("the conversation was loaded for a branch that does not read it")

    context = engine.Context(
        now=NOW,
        eval=EvalContext(workspace_id=1, timezone=ZoneInfo("UTC"), now=NOW),
        contact=ContactSnapshot(id=1, workspace_id=1, created_at=NOW, updated_at=NOW),
        conversation=refuse,
    )
    assert engine.advance(workflow, engine.new_state({}), engine.Start(), context).state.path == ["b", "no"]
    reading, _errors = lang.check_definition(definition(on("status", "is", "open")), KNOWN)
    assert reading is not None
    assert reading.first.reads_conversation


WHERE = "steps[0].config.branches[0].conditions.groups[0].conditions[0]"


@pytest.mark.parametrize(
    ("cond", "path", "message"),
    [
        (on("channel", "is", 9), "value", "no channel 9 in this workspace"),
        (on("channel", "is_any_of", [7, 9]), "value[1]", "no channel 9 in this workspace"),
        (on("team", "is", 32), "value", "no team 32 in this workspace"),
        (on("assignee", "is_none_of", [23]), "value[0]", "no member 23 in this workspace"),
        (on("assignee", "is", "me"), "value", "must be a user id"),
        (on("status", "is", "pending"), "value", "must be one of: open, closed"),
        (on("status", "is_any_of", ["open"]), "operator", "not valid here; use one of: is, is_not"),
        (on("channel", "exists"), "operator", "not valid here; use one of: is, is_not, is_any_of, is_none_of"),
        (on("channel", "contains", 7), "operator", "not valid here; use one of: is, is_not, is_any_of, is_none_of"),
        (on("channel_type", "is", "carrier-pigeon"), "value", "must be a kind of channel: "),
        (on("opened_by", "is", "contact"), "field", "unknown conversation field 'opened_by'"),
        (
            on("opening_source", "is", "email"),
            "value",
            "must be one of: contact, broadcast_reply, user, api, workflow, system",
        ),
        (on("opening_source", "is_any_of", ["user"]), "operator", "not valid here; use one of: is, is_not"),
        (on("channel", "is_any_of", []), "value", "must be a non-empty list"),
        (on("team", "exists", 31), "value", "exists takes no value"),
        (on("team", "is"), "value", "a value is required"),
        (condition("assignee_status", "is", "asleep"), "value", "must be one of: online, away, busy, offline"),
        (condition("assignee_status", "is", "online", "status"), "field", "an assignee_status condition has no field"),
    ],
)  # fmt: skip
def test_the_checker_names_the_condition_and_the_problem(cond: dict[str, Any], path: str, message: str) -> None:
    errors = lang.check_definition(definition(cond), KNOWN)[1]
    assert errors[f"{WHERE}.{path}"].startswith(message), errors


def test_triggers_and_segments_refuse_conversation_conditions_by_name() -> None:
    trigger_only = {
        "trigger": {"type": "tag_added", "conditions": {"groups": [{"conditions": [on("status", "is", "open")]}]}},
        "steps": [{"id": "t", "type": "add_tags", "config": {"tags": ["x"]}}],
    }
    errors = lang.check_definition(trigger_only, KNOWN)[1]
    assert errors["trigger.conditions.groups[0].conditions[0].category"].startswith(
        "conversation conditions exist only in a workflow's branch step"
    )
    context = filters.CheckContext(custom_fields={}, load_segment=lambda _id: None)
    for category in ("conversation", "assignee_status", "variable"):
        field = None if category == "assignee_status" else "status"
        raw = {"groups": [{"conditions": [condition(category, "is", "open", field)]}]}
        with pytest.raises(ValidationFailed) as refused:
            filters.check_filter(raw, context)
        assert refused.value.details == {
            "groups[0].conditions[0].category": f"{category} conditions exist only in a workflow's branch step:"
            " a segment or a trigger's conditions are about the contact alone, without a run or a conversation"
        }
