"""The builder's conditions editor (workflows/condition_views.py): the segments' filter panel from a
trigger's or branch's JSON, re-rendered as its pickers change, and "Apply" back to the JSON, with
bad values refused beside their condition and another workspace's fields and segments refused."""

import html as markup
import json
import re
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field, do_create_tag
from tertulia.kit.db import Database
from tertulia.segments.service import do_create_segment
from tertulia.users.teams import do_create_team
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.test_api_and_pages import _builder_data

PANEL = "/workflows/conditions/panel"
APPLY = "/workflows/conditions/apply"
COUNT = "/workflows/conditions/count"
TAGGED = {"match": "all", "groups": [{"match": "all", "conditions": [
    {"category": "tag", "operator": "has_any_of", "value": ["vip"]},
    {"category": "contact_field", "field": "points", "operator": "gt", "value": 10},
]}]}  # fmt: skip
# A question whose answer is saved as the variable "area", then a branch on it.
DEFINITION: dict[str, Any] = {
    "trigger": {"type": "conversation_opened"},
    "steps": [
        {
            "id": "ask",
            "type": "ask_question",
            "config": {"text": "¿Ventas o soporte?", "kind": "text", "save_to": {"kind": "variable", "name": "area"}},
            "next": "split",
        },
        {"id": "split", "type": "branch", "config": {"branches": [{"conditions": {"groups": []}}]}},
    ],
}


def _manager(client: TestClient, db: Database, tenant: Tenant, language: str = "en") -> str:
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.post("/language", data={"language": language, "next": "/workflows", "csrf_token": token})
    with db.transaction() as session:
        do_create_tag(session, tenant.actor(), "vip")
        do_create_tag(session, tenant.actor(), "nuevo")
        do_create_custom_field(session, tenant.actor(), "points", "Points", FieldType.NUMBER)
    return token


def _selected(html: str, name: str) -> list[str]:
    """The selected options of the select called `name`."""
    found = re.search(rf'<select[^>]*name="{re.escape(name)}"[^>]*>(.*?)</select>', html, re.S)
    assert found, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"[^>]*\sselected', found.group(1))


def _count_of(html: str) -> str:
    """The live count the panel or the count route shows ("" when none)."""
    found = re.search(r'id="filter-count"[^>]*data-count="([^"]*)"', html)
    assert found, "no count"
    return found.group(1)


def _words(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _error_beside(html: str, slot: str) -> str:
    found = re.search(rf'<p class="field-error" id="err-{slot}"[^>]*>(.*?)</p>', html, re.S)
    assert found, f"no error slot {slot}"
    return markup.unescape(found.group(1).strip())


def test_the_panel_opens_on_the_fields_json_with_its_values(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _manager(client, db, tenant)
    answer = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": json.dumps(TAGGED)}
    )
    assert answer.status_code == 200, answer.text
    html = answer.text
    assert _selected(html, "g0.c0.cat") == ["tag"]
    assert _selected(html, "g0.c0.op") == ["has_any_of"]
    assert _selected(html, "g0.c0.values") == ["vip"]
    assert _selected(html, "g0.c1.cat") == ["field:points"]
    assert _selected(html, "g0.c1.op") == ["gt"]
    assert 'name="g0.c1.value" value="10"' in html
    # The dialog's panel: Apply instead of the segment buttons, with the live count (of no contact
    # yet); no variables for a trigger.
    assert 'data-testid="apply-conditions"' in html
    assert "Apply" in html
    assert _count_of(html) == "0"
    assert f'hx-post="{COUNT}"' in html
    assert "save-new" not in html
    assert 'name="editor_scope" value="trigger"' in html
    assert 'label="Variables"' not in html


def test_a_branch_offers_the_variables_its_workflow_declares(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _manager(client, db, tenant)
    source = {
        "groups": [{"conditions": [{"category": "variable", "field": "area", "operator": "is", "value": "ventas"}]}]
    }
    data = {
        "csrf_token": token,
        "editor_scope": "branch",
        "editor_source": json.dumps(source),
        "editor_definition": json.dumps(DEFINITION),
    }
    html = client.post(PANEL, data=data).text
    assert _selected(html, "g0.c0.cat") == ["var:area"]
    assert 'name="g0.c0.value" value="ventas"' in html
    variables = re.search(r'name="editor_variables" value="([^"]*)"', html)
    assert variables
    assert json.loads(markup.unescape(variables.group(1))) == {"area": "text"}
    applied = client.post(
        APPLY,
        data={
            "csrf_token": token,
            "editor_scope": "branch",
            "editor_variables": json.dumps({"area": "text"}),
            "match": "all",
            "g0.match": "all",
            "g0.c0.cat": "var:area",
            "g0.c0.op": "is",
            "g0.c0.value": "soporte",
        },
    )
    assert applied.status_code == 200, applied.text
    condition = {"category": "variable", "field": "area", "operator": "is", "value": "soporte"}
    assert applied.json() == {"conditions": {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}}


def test_pickers_re_render_the_panel_and_apply_answers_the_filter_json(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    form = {"csrf_token": token, "editor_scope": "trigger", "match": "any", "g0.match": "all", "g0.c0.cat": "tag"}
    # The category changed to Tags: the operator becomes the first a tag has, with its tag picker.
    html = client.post(PANEL, data={**form, "g0.c0.op": "is"}).text
    assert _selected(html, "g0.c0.op") == ["has_any_of"]
    assert 'name="g0.c0.values"' in html
    assert '<option value="nuevo"' in html
    added = client.post(PANEL, data={**form, "g0.c0.op": "has_any_of", "action": "add_condition:0"}).text
    assert 'name="g0.c1.cat"' in added
    applied = client.post(APPLY, data={**form, "g0.c0.op": "has_none_of", "g0.c0.values": ["vip", "nuevo"]})
    assert applied.status_code == 200, applied.text
    assert applied.json()["conditions"] == {
        "match": "any",
        "groups": [
            {"match": "all", "conditions": [{"category": "tag", "operator": "has_none_of", "value": ["vip", "nuevo"]}]}
        ],
    }


def test_a_bad_value_is_refused_beside_its_condition_in_spanish(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant, "es")
    form = {"csrf_token": token, "editor_scope": "trigger", "match": "all", "g0.match": "all"}
    bad = {**form, "g0.c0.cat": "field:first_name", "g0.c0.op": "is", "g0.c0.value": "Ana", "g0.c1.cat": "field:points"}
    answer = client.post(APPLY, data={**bad, "g0.c1.op": "gt", "g0.c1.value": "mucho"})
    assert answer.status_code == 422
    assert _error_beside(answer.text, "g0-c1") == "debe ser un número"
    assert _error_beside(answer.text, "g0-c0") == ""
    # What was typed is shown again, to be corrected.
    assert 'name="g0.c1.value" value="mucho"' in answer.text
    assert "Aplicar" in answer.text
    empty = client.post(APPLY, data={**form, "g0.c0.cat": "field:first_name", "g0.c0.op": "is", "g0.c0.value": ""})
    assert empty.status_code == 422
    assert _error_beside(empty.text, "g0-c0") == "falta un valor"


def test_english_errors_and_json_that_is_not_json(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = _manager(client, db, tenant)
    answer = client.post(
        APPLY,
        data={"csrf_token": token, "match": "all", "g0.match": "all", "g0.c0.cat": "field:points", "g0.c0.op": "lt"},
    )
    assert answer.status_code == 422
    assert _error_beside(answer.text, "g0-c0") == "a value is required"
    for wrong in ("{nope", "[" * 5000 + "]" * 5000, '{"groups": ' + "[" * 25 + "1" + "]" * 25 + "}"):
        broken = client.post(PANEL, data={"csrf_token": token, "editor_source": wrong})
        assert broken.status_code == 422
        assert "edit them under Advanced" in _error_beside(broken.text, "filter")
    # A definition that is not JSON offers no variables, and the panel still opens.
    opened = client.post(
        PANEL,
        data={"csrf_token": token, "editor_scope": "branch", "editor_source": "{}", "editor_definition": "[" * 5000},
    )
    assert opened.status_code == 200
    assert 'name="editor_variables" value="{}"' in opened.text


def test_a_variable_no_step_declares_and_variables_on_a_trigger_are_refused(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    form = {"csrf_token": token, "match": "all", "g0.match": "all", "g0.c0.cat": "var:zona", "g0.c0.op": "is"}
    branch = client.post(
        APPLY, data={**form, "editor_scope": "branch", "editor_variables": "{}", "g0.c0.value": "norte"}
    )
    assert branch.status_code == 422
    assert _error_beside(branch.text, "g0-c0") == "unknown variable 'zona'"
    # A variables list that is not JSON (nested past the parser's limit) declares none.
    broken = client.post(APPLY, data={**form, "editor_scope": "branch", "editor_variables": "[" * 5000})
    assert broken.status_code == 422
    assert _error_beside(broken.text, "g0-c0") == "unknown variable 'zona'"
    trigger = client.post(APPLY, data={**form, "editor_scope": "trigger", "g0.c0.value": "norte"})
    assert trigger.status_code == 422
    assert "exist only in a workflow's branch step" in _error_beside(trigger.text, "g0-c0")


def test_another_workspaces_segment_and_field_are_refused(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    other = make_tenant()
    with db.transaction() as session:
        foreign = do_create_segment(session, other.actor(), "Ajenos", {"groups": []}).id
        do_create_custom_field(session, other.actor(), "secret_score", "Secret", FieldType.NUMBER)
    token = _manager(client, db, tenant)
    source = {"groups": [{"conditions": [{"category": "segment", "operator": "in", "value": foreign}]}]}
    html = client.post(PANEL, data={"csrf_token": token, "editor_source": json.dumps(source)}).text
    assert "Ajenos" not in html  # the picker lists this workspace's segments only
    form = {"csrf_token": token, "match": "all", "g0.match": "all"}
    segment = client.post(APPLY, data={**form, "g0.c0.cat": "segment", "g0.c0.op": "in", "g0.c0.value": str(foreign)})
    assert segment.status_code == 422
    assert _error_beside(segment.text, "g0-c0") == f"no segment {foreign}"
    field = client.post(APPLY, data={**form, "g0.c0.cat": "field:secret_score", "g0.c0.op": "is", "g0.c0.value": "3"})
    assert field.status_code == 422
    assert "secret_score" in _error_beside(field.text, "g0-c0")


def test_agents_may_not_use_the_editor(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.post(PANEL, data={"csrf_token": token, "editor_source": "{}"}).status_code == 403
    assert client.post(APPLY, data={"csrf_token": token, "match": "all"}).status_code == 403
    assert client.post(COUNT, data={"csrf_token": token, "match": "all"}).status_code == 403


def test_the_dialog_counts_the_contacts_its_conditions_match_now(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    with db.transaction() as session:
        for name, tags in (("Ana", ["vip"]), ("Luis", ["vip", "nuevo"]), ("Eva", [])):
            contact = do_create_contact(session, tenant.actor(), {"first_name": name})
            if tags:
                do_add_tags(session, tenant.actor(), contact, tags)
    opened = client.post(PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": "{}"})
    assert _count_of(opened.text) == "3"
    assert "3 contacts match" in _words(opened.text)
    opened = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": json.dumps(TAGGED)}
    )
    assert _count_of(opened.text) == "0"  # nobody has the points
    form = {"csrf_token": token, "editor_scope": "trigger", "match": "all", "g0.match": "all", "g0.c0.cat": "tag"}
    vip = client.post(COUNT, data={**form, "g0.c0.op": "has_any_of", "g0.c0.values": ["vip"]})
    assert vip.status_code == 200, vip.text
    assert _count_of(vip.text) == "2"
    both = client.post(COUNT, data={**form, "g0.c0.op": "has_all_of", "g0.c0.values": ["vip", "nuevo"]})
    assert _count_of(both.text) == "1"
    assert "1 contact matches" in _words(both.text)
    # A picker's change re-renders the panel with a fresh count.
    rendered = client.post(PANEL, data={**form, "g0.c0.op": "has_none_of", "g0.c0.values": ["vip"]})
    assert _count_of(rendered.text) == "1"
    # A bad value: no count, the message beside its condition (out of band), in the page's language.
    bad = {**form, "g0.c0.cat": "field:points", "g0.c0.op": "gt", "g0.c0.value": "lots"}
    refused = client.post(COUNT, data=bad)
    assert refused.status_code == 422
    assert _count_of(refused.text) == ""
    assert _error_beside(refused.text, "g0-c0") == "must be a number"
    # A branch's conditions on variables depend on each run: not counted, and said so.
    on_variable = {
        "csrf_token": token,
        "editor_scope": "branch",
        "editor_variables": json.dumps({"area": "text"}),
        "match": "all",
        "g0.match": "all",
        "g0.c0.cat": "var:area",
        "g0.c0.op": "is",
        "g0.c0.value": "ventas",
    }
    note = client.post(COUNT, data=on_variable)
    assert note.status_code == 200, note.text
    assert _count_of(note.text) == ""
    assert "Conditions on variables depend on each run: no count." in note.text
    assert client.post(PANEL, data=on_variable).text.count("depend on each run") == 1


def test_the_dialog_offers_no_me_assignee_unless_the_condition_says_it(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    form = {"csrf_token": token, "match": "all", "g0.match": "all", "g0.c0.cat": "field:assignee", "g0.c0.op": "is"}
    dialog = client.post(PANEL, data={**form, "editor_scope": "trigger"}).text
    assert 'name="g0.c0.value"' in dialog
    assert '<option value="me"' not in dialog
    assert f'<option value="{tenant.agent_id}"' in dialog
    # The contacts page's panel still has it: someone is looking there.
    contacts = client.post("/contacts/filter/panel", data=form).text
    assert '<option value="me"' in contacts
    # A stored condition that says "me" is shown as it is, not turned into someone.
    mine = {
        "groups": [
            {"conditions": [{"category": "contact_field", "field": "assignee", "operator": "is", "value": "me"}]}
        ]
    }
    kept = client.post(PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": json.dumps(mine)})
    assert _selected(kept.text, "g0.c0.value") == ["me"]


ME_NOTE = "'Me' has no meaning when a workflow runs: choose a person."
ME_NOTE_ES = "«Yo» no significa nada cuando se ejecuta un flujo: elige a una persona."


def _assignee_me(token: str, operator: str = "is") -> dict[str, Any]:
    """A trigger's panel fields: a tag condition, then an assignee "me" one (the second slot)."""
    return {
        "csrf_token": token,
        "editor_scope": "trigger",
        "match": "all",
        "g0.match": "all",
        "g0.c0.cat": "tag",
        "g0.c0.op": "has_any_of",
        "g0.c0.values": ["vip"],
        "g0.c1.cat": "field:assignee",
        "g0.c1.op": operator,
        "g0.c1.value": "me",
    }


def test_an_assignee_me_is_not_counted_and_apply_asks_for_a_person(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    with db.transaction() as session:
        # Assigned to the manager looking: counting "me" as the viewer would say 1 (or 0 for "is not").
        contact = do_create_contact(session, tenant.actor(), {"first_name": "Ana", "assignee_id": tenant.manager_id})
        do_add_tags(session, tenant.actor(), contact, ["vip"])
    for operator in ("is", "is_not"):
        form = _assignee_me(token, operator)
        counted = client.post(COUNT, data=form)
        assert counted.status_code == 200, counted.text
        assert _count_of(counted.text) == ""
        assert ME_NOTE in markup.unescape(counted.text)
        assert _error_beside(counted.text, "g0-c1") == ""
        applied = client.post(APPLY, data=form)
        assert applied.status_code == 422
        assert _error_beside(applied.text, "g0-c1") == ME_NOTE
        assert _error_beside(applied.text, "g0-c0") == ""
        assert _selected(applied.text, "g0.c1.value") == ["me"]  # shown as it is, to be changed
    # Opened from stored JSON: the note, not the viewer's count.
    stored = {"groups": [{"conditions": [{"category": "contact_field", "field": "assignee", "operator": "is",
                                          "value": "me"}]}]}  # fmt: skip
    opened = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": json.dumps(stored)}
    )
    assert _count_of(opened.text) == ""
    assert ME_NOTE in markup.unescape(opened.text)
    # A person instead: counted and applied.
    person = {**_assignee_me(token), "g0.c1.value": str(tenant.manager_id)}
    assert _count_of(client.post(COUNT, data=person).text) == "1"
    chosen = client.post(APPLY, data=person)
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["conditions"]["groups"][0]["conditions"][1]["value"] == tenant.manager_id


def test_an_assignee_me_is_refused_in_spanish_beside_other_errors(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant, "es")
    form = {**_assignee_me(token), "g0.c0.cat": "field:points", "g0.c0.op": "gt", "g0.c0.value": "mucho"}
    counted = client.post(COUNT, data=_assignee_me(token))
    assert _count_of(counted.text) == ""
    assert ME_NOTE_ES in counted.text
    applied = client.post(APPLY, data=form)
    assert applied.status_code == 422
    assert _error_beside(applied.text, "g0-c0") == "debe ser un número"
    assert _error_beside(applied.text, "g0-c1") == ME_NOTE_ES


def _in_segment(token: str, segment_id: int) -> dict[str, Any]:
    """A trigger's panel fields: a tag condition, then "in segment" (the second slot)."""
    return {
        **_assignee_me(token),
        "g0.c1.cat": "segment",
        "g0.c1.op": "in",
        "g0.c1.value": str(segment_id),
    }


def test_a_segment_that_says_me_even_nested_is_not_counted_and_apply_refuses_it(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant)
    mine = {"groups": [{"conditions": [{"category": "contact_field", "field": "assignee", "operator": "is",
                                         "value": "me"}]}]}  # fmt: skip
    with db.transaction() as session:
        # Assigned to the manager looking: counting "me" as the viewer would say 1.
        contact = do_create_contact(session, tenant.actor(), {"first_name": "Ana", "assignee_id": tenant.manager_id})
        do_add_tags(session, tenant.actor(), contact, ["vip"])
        direct = do_create_segment(session, tenant.actor(), "Míos", mine).id
        nested_filter = {"groups": [{"conditions": [{"category": "segment", "operator": "in", "value": direct}]}]}
        nested = do_create_segment(session, tenant.actor(), "Míos <b>VIP</b>", nested_filter).id
        everyone = do_create_segment(session, tenant.actor(), "Todos", {"groups": []}).id
    for segment_id, name in ((direct, "Míos"), (nested, "Míos <b>VIP</b>")):
        note = f"The segment {name} uses 'Me', which has no meaning when a workflow runs."
        form = _in_segment(token, segment_id)
        counted = client.post(COUNT, data=form)
        assert counted.status_code == 200, counted.text
        assert _count_of(counted.text) == ""
        assert note in markup.unescape(counted.text)
        assert "<b>VIP" not in counted.text  # the name is text, not markup
        applied = client.post(APPLY, data=form)
        assert applied.status_code == 422
        assert _error_beside(applied.text, "g0-c1") == note
        assert _error_beside(applied.text, "g0-c0") == ""
    # A segment that does not depend on who is looking: counted and applied.
    plain = _in_segment(token, everyone)
    assert _count_of(client.post(COUNT, data=plain).text) == "1"
    chosen = client.post(APPLY, data=plain)
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["conditions"]["groups"][0]["conditions"][1]["value"] == everyone

    # In Spanish, "is not me" too.
    client.post("/language", data={"language": "es", "next": "/workflows", "csrf_token": token})
    with db.transaction() as session:
        mine["groups"][0]["conditions"][0]["operator"] = "is_not"
        others = do_create_segment(session, tenant.actor(), "Ajenos", mine).id
    refused = client.post(APPLY, data=_in_segment(token, others))
    assert refused.status_code == 422
    expected = "El segmento Ajenos usa «Yo», que no significa nada cuando se ejecuta un flujo."
    assert _error_beside(refused.text, "g0-c1") == expected


def test_a_branch_offers_the_conversation_and_writes_ids_a_trigger_does_not(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    token = _manager(client, db, tenant, "es")
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Soporte").id
        other_team = do_create_team(session, tenant.actor(), "Ventas").id
    stored = {"groups": [{"conditions": [
        {"category": "conversation", "field": "team", "operator": "is_any_of", "value": [team_id]},
        {"category": "assignee_status", "operator": "is_not", "value": "away"},
    ]}]}  # fmt: skip
    opened = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "branch", "editor_source": json.dumps(stored)}
    )
    assert opened.status_code == 200
    assert _selected(opened.text, "g0.c0.cat") == ["conversation:team"]
    assert _selected(opened.text, "g0.c0.values") == [str(team_id)]
    assert _selected(opened.text, "g0.c1.cat") == ["assignee_status"]
    assert _selected(opened.text, "g0.c1.value") == ["away"]
    assert "Equipo de la conversación" in opened.text
    assert "Ausente" in opened.text
    assert "Las condiciones sobre la conversación dependen de cada ejecución" in _words(opened.text)
    assert _count_of(opened.text) == ""
    form = {
        "csrf_token": token,
        "editor_scope": "branch",
        "match": "all",
        "g0.match": "all",
        "g0.c0.cat": "conversation:team",
        "g0.c0.op": "is_any_of",
        "g0.c0.values": [str(team_id), str(other_team)],
        "g0.c1.cat": "conversation:assignee",
        "g0.c1.op": "not_exists",
    }
    applied = client.post(APPLY, data=form)
    assert applied.status_code == 200, applied.text
    assert applied.json()["conditions"]["groups"][0]["conditions"] == [
        {"category": "conversation", "field": "team", "operator": "is_any_of", "value": [team_id, other_team]},
        {"category": "conversation", "field": "assignee", "operator": "not_exists"},
    ]
    # A team of no workspace: refused beside its condition.
    refused = client.post(APPLY, data={**form, "g0.c0.values": [str(team_id + 1000)]})
    assert refused.status_code == 422
    assert _error_beside(refused.text, "g0-c0") == (
        f"No hay ningún equipo {team_id + 1000} en este espacio de trabajo (¿se eliminó?): elige otro."
    )
    # A trigger's panel has no conversation categories, and its conditions refuse them.
    trigger = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "trigger", "editor_source": json.dumps({"groups": []})}
    )
    assert "conversation:status" not in trigger.text


def test_a_branch_offers_who_opened_the_conversation_in_both_languages(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    stored = {"groups": [{"conditions": [
        {"category": "conversation", "field": "opening_source", "operator": "is", "value": "broadcast_reply"},
    ]}]}  # fmt: skip
    token = _manager(client, db, tenant, "es")
    for language, words in (
        ("es", ("Conversación abierta por", "Respuesta a una difusión")),
        ("en", ("Conversation opened by", "Broadcast reply")),
    ):
        client.post("/language", data={"language": language, "next": "/workflows", "csrf_token": token})
        opened = client.post(
            PANEL, data={"csrf_token": token, "editor_scope": "branch", "editor_source": json.dumps(stored)}
        )
        assert opened.status_code == 200
        assert _selected(opened.text, "g0.c0.cat") == ["conversation:opening_source"]
        assert _selected(opened.text, "g0.c0.value") == ["broadcast_reply"]
        assert all(word in opened.text for word in words)
    form = {
        "csrf_token": token,
        "editor_scope": "branch",
        "match": "all",
        "g0.match": "all",
        "g0.c0.cat": "conversation:opening_source",
        "g0.c0.op": "is_not",
        "g0.c0.value": "api",
    }
    applied = client.post(APPLY, data=form)
    assert applied.status_code == 200, applied.text
    assert applied.json()["conditions"]["groups"][0]["conditions"] == [
        {"category": "conversation", "field": "opening_source", "operator": "is_not", "value": "api"},
    ]
    refused = client.post(APPLY, data={**form, "g0.c0.value": "email"})
    assert refused.status_code == 422


OPENED = {
    "trigger": {"type": "conversation_opened", "config": {}},
    "steps": [{"id": "mark", "type": "add_tags", "config": {"tags": ["nuevo"]}}],
}


def test_the_branch_and_the_trigger_name_who_opened_a_conversation_alike(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """The conditions dialog's "Conversation opened by" and the "conversation opened" trigger's
    sources in the builder read one set of labels: the same word for each source."""
    token = _manager(client, db, tenant, "es")
    created = client.post(
        "/api/v1/workflows", headers=tenant.headers, json={"name": "Quién abrió", "definition": OPENED}
    )
    assert created.status_code == 201, created.text
    builder = _builder_data(client.get(f"/workflows/{created.json()['id']}").text)
    sources = builder["triggers"]["conversation_opened"]["schema"]["properties"]["sources"]["items"]["enum"]
    trigger_words = {source: builder["labels"]["values"][source] for source in sources}
    stored = {"groups": [{"conditions": [
        {"category": "conversation", "field": "opening_source", "operator": "is", "value": "contact"},
    ]}]}  # fmt: skip
    opened = client.post(
        PANEL, data={"csrf_token": token, "editor_scope": "branch", "editor_source": json.dumps(stored)}
    )
    assert opened.status_code == 200
    found = re.search(r'<select[^>]*name="g0\.c0\.value"[^>]*>(.*?)</select>', opened.text, re.S)
    assert found
    dialog_words = {
        value: markup.unescape(label.strip())
        for value, label in re.findall(r'<option value="([^"]+)"[^>]*>([^<]*)</option>', found.group(1))
    }
    assert dialog_words["broadcast_reply"] == "Respuesta a una difusión"
    # The dialog offers every source (the system's too); the trigger those a person can pick.
    assert set(trigger_words) <= set(dialog_words)
    assert {source: dialog_words[source] for source in trigger_words} == trigger_words
