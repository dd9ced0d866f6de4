"""The workflow templates ("create from template"): one JSON file per template under
templates_library/, read once.

A template file holds its id, category, name and description in Spanish and English, the texts its
steps send (per language), the placeholders the user fills (a team, a tag, a custom field, a closing
category) and a definition in the language of docs/workflows.md in which two kinds of stand-ins may
take the place of any value:

- `{"$text": "key"}`: the template's text `key` in the chosen language (messages, options, the
  values branches compare answers with);
- `{"$placeholder": "key"}`: the value the user gave for that placeholder, else the placeholder's
  default, else a workspace's item whose name matches one of its `suggest` names (a team called
  "Ventas"), else null.

Creating from a template saves a draft even when the workspace lacks what the template needs (no
sales team, no "csat" field): the draft's page and the API answer list the checker's errors by path,
and publishing stays refused until they are fixed. docs/workflows-templates.md describes each
template and how it maps onto respond.io's examples.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.conversations.models import ClosingCategory
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.text import fold
from tertulia.kit.types import is_id, is_id_text
from tertulia.segments.language import CUSTOM_KEY
from tertulia.users.models import Team
from tertulia.users.permissions import Actor, Permission
from tertulia.workflows import language as lang
from tertulia.workflows import service
from tertulia.workflows.models import VersionState, Workflow, WorkflowStatus, WorkflowVersion

LIBRARY = Path(__file__).parent / "templates_library"
LANGUAGES = ("es", "en")
PlaceholderKind = Literal["team", "tag", "custom_field", "closing_category"]
ID_KINDS = frozenset({"team", "closing_category"})
MAX_TAG = 100


@dataclass(frozen=True)
class Placeholder:
    key: str
    kind: PlaceholderKind
    label: Mapping[str, str]
    # A value, or one per language.
    default: Any = None
    # Names of workspace items (teams, closing categories) chosen when nothing was given.
    suggest: tuple[str, ...] = ()

    def default_for(self, language: str) -> Any:
        if isinstance(self.default, Mapping):
            return self.default.get(language, self.default.get("es"))
        return self.default


@dataclass(frozen=True)
class Template:
    id: str
    order: int
    category: str
    # One of the nine example flows of respond.io's Spanish help centre (docs/workflows-templates.md).
    example: bool
    name: Mapping[str, str]
    description: Mapping[str, str]
    placeholders: tuple[Placeholder, ...]
    texts: Mapping[str, Mapping[str, Any]]
    definition: Mapping[str, Any]

    def placeholder(self, key: str) -> Placeholder | None:
        return next((p for p in self.placeholders if p.key == key), None)


def language_of(value: str | None) -> str:
    """ "es" or "en": a template's texts exist in those two ("es-MX" is Spanish; others English)."""
    head = (value or "es").lower().split("-", 1)[0].split("_", 1)[0]
    return head if head in LANGUAGES else "en"


def _load(path: Path) -> Template:
    raw = json.loads(path.read_text(encoding="utf-8"))
    placeholders = tuple(
        Placeholder(
            key=p["key"],
            kind=p["kind"],
            label=p["label"],
            default=p.get("default"),
            suggest=tuple(p.get("suggest", ())),
        )
        for p in raw.get("placeholders", [])
    )
    return Template(
        id=raw["id"],
        order=int(raw["order"]),
        category=raw["category"],
        example=bool(raw.get("example")),
        name=raw["name"],
        description=raw["description"],
        placeholders=placeholders,
        texts=raw.get("texts", {}),
        definition=raw["definition"],
    )


@cache
def templates() -> tuple[Template, ...]:
    """Every template, in the gallery's order."""
    found = [_load(path) for path in sorted(LIBRARY.glob("*.json"))]
    return tuple(sorted(found, key=lambda t: (t.order, t.id)))


def template(template_id: str) -> Template:
    found = next((t for t in templates() if t.id == template_id), None)
    if found is None:
        raise NotFound(f"No workflow template {template_id!r}.")
    return found


# ----- building a definition ----------------------------------------------------------------------


def build(found: Template, values: Mapping[str, Any], language: str) -> dict[str, Any]:
    """The template's definition with its texts in `language` and `values` in its placeholders
    (a placeholder without a value becomes null: the checker then says what to choose)."""

    def fill(node: Any) -> Any:
        if isinstance(node, Mapping):
            if set(node) == {"$text"}:
                texts = found.texts[node["$text"]]
                return texts.get(language, texts["es"])
            if set(node) == {"$placeholder"}:
                return values.get(node["$placeholder"])
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(item) for item in node]
        return node

    filled = fill(found.definition)
    assert isinstance(filled, dict)
    return filled


def check_values(found: Template, raw: Any) -> dict[str, Any]:
    """The values given for the template's placeholders, checked for shape (not for existence: a
    team that does not exist is the checker's error in the draft). 422 names `values.<key>`."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValidationFailed.field("values", "must be an object of placeholder values")
    errors: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for key, value in raw.items():
        placeholder = found.placeholder(str(key))
        path = f"values.{key}"
        if placeholder is None:
            known = ", ".join(p.key for p in found.placeholders) or "none"
            errors[path] = f"this template has no such placeholder (it has: {known})"
            continue
        if value is None or value == "":
            continue
        if placeholder.kind in ID_KINDS:
            number = int(value.strip()) if isinstance(value, str) and is_id_text(value.strip()) else value
            if not isinstance(number, int) or isinstance(number, bool) or not is_id(number):
                errors[path] = "must be an id (a positive whole number)"
                continue
            cleaned[placeholder.key] = number
        elif not isinstance(value, str) or not value.strip():
            errors[path] = "must be text"
        elif placeholder.kind == "tag":
            if len(value.strip()) > MAX_TAG:
                errors[path] = f"must be at most {MAX_TAG} characters"
            else:
                cleaned[placeholder.key] = value.strip()
        else:
            name = value.strip()
            if name not in lang.UPDATABLE_FIELDS and not CUSTOM_KEY.match(name):
                errors[path] = "a field key: lower-case letters, digits and _"
            else:
                cleaned[placeholder.key] = name
    if errors:
        first = next(iter(errors.items()))
        raise ValidationFailed(f"{first[0]}: {first[1]}", details=errors)
    return cleaned


def _by_name(rows: list[tuple[int, str]], names: tuple[str, ...]) -> int | None:
    wanted = [fold(n) for n in names]
    for name in wanted:
        for row_id, row_name in rows:
            if fold(row_name) == name:
                return row_id
    return None


def suggested_values(session: Session, workspace_id: int, found: Template, language: str) -> dict[str, Any]:
    """What each placeholder gets when the user gives nothing: its default, or the workspace's team
    or closing category named like one of its suggestions."""
    values: dict[str, Any] = {}
    for placeholder in found.placeholders:
        if placeholder.kind == "team":
            teams = [
                tuple(r) for r in session.execute(select(Team.id, Team.name).where(Team.workspace_id == workspace_id))
            ]
            values[placeholder.key] = _by_name(teams, placeholder.suggest)  # type: ignore[arg-type]
        elif placeholder.kind == "closing_category":
            categories = [
                tuple(r)
                for r in session.execute(
                    select(ClosingCategory.id, ClosingCategory.name).where(ClosingCategory.workspace_id == workspace_id)
                )
            ]
            values[placeholder.key] = _by_name(categories, placeholder.suggest)  # type: ignore[arg-type]
        else:
            values[placeholder.key] = placeholder.default_for(language)
    return values


def _needs_category(session: Session, workspace_id: int, found: Template, values: Mapping[str, Any]) -> dict[str, str]:
    """A workflow closing a conversation without a category fails where the workspace asks for one:
    said in the draft, beside the placeholder, rather than at the first run."""
    missing = [p for p in found.placeholders if p.kind == "closing_category" and values.get(p.key) is None]
    if not missing:
        return {}
    asks = session.scalar(select(ClosingCategory.id).where(ClosingCategory.workspace_id == workspace_id).limit(1))
    if asks is None:
        return {}
    return {f"values.{p.key}": "this workspace asks for a closing category: choose one" for p in missing}


@dataclass(frozen=True)
class Created:
    workflow: Workflow
    # The checker's errors in the draft (path -> message), and what the workspace lacks.
    problems: dict[str, str]


def do_create_from_template(
    session: Session,
    actor: Actor,
    template_id: str,
    *,
    values: Any = None,
    language: str | None = None,
    name: Any = None,
) -> Created:
    """A draft workflow from the template. It is saved even when the checker finds errors (a team
    or field the workspace lacks): the draft lists them and cannot be published until fixed."""
    actor.require(Permission.MANAGE_WORKFLOWS)
    found = template(template_id)
    chosen = language_of(language)
    given = check_values(found, values)
    filled = suggested_values(session, actor.workspace_id, found, chosen) | given
    cleaned = service.check_name(name if name not in (None, "") else found.name.get(chosen, found.name["es"]))
    definition = build(found, filled, chosen)
    _checked, errors = lang.check_definition(definition, service.check_context(session, actor.workspace_id))
    now = utcnow()
    workflow = Workflow(workspace_id=actor.workspace_id, name=cleaned, status=WorkflowStatus.DRAFT, round_robin={})
    session.add(workflow)
    session.flush()
    draft = WorkflowVersion(
        workspace_id=workflow.workspace_id,
        workflow_id=workflow.id,
        number=1,
        definition=definition,
        trigger_type=definition["trigger"]["type"],
        state=VersionState.DRAFT,
        created_at=now,
    )
    session.add(draft)
    session.flush()
    workflow.draft_version_id = draft.id
    session.flush()
    return Created(workflow, {**errors, **_needs_category(session, actor.workspace_id, found, filled)})


# ----- what the gallery shows ------------------------------------------------------------------------


def _short(text: Any, limit: int = 90) -> str:
    value = str(text or "").replace("\n", " ").strip()
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def preview(found: Template, language: str) -> list[dict[str, Any]]:
    """Each step of the template as its id, type, a detail (a text, a tag, a team) and terms the page
    translates (`round_robin`, `only_online`, a wait's unit): the gallery's preview of what it does."""
    chosen = language_of(language)
    shown = {
        p.key: f"‹{p.label.get(chosen, p.key)}›" if p.kind in ID_KINDS else p.default_for(chosen)
        for p in found.placeholders
    }
    definition = build(found, shown, chosen)
    steps: list[dict[str, Any]] = []
    for step in definition["steps"]:
        config = step.get("config") or {}
        detail, terms = "", []
        if "text" in config:
            detail = _short(config["text"])
        elif step["type"] == "assign":
            detail = str(config.get("team_id") or "")
            terms = [config.get("strategy", "round_robin")] + (["only_online"] if config.get("only_online") else [])
        elif "tags" in config:
            detail = ", ".join(str(t) for t in config["tags"])
        elif step["type"] == "wait":
            detail, terms = str(config["duration"]["amount"]), [config["duration"]["unit"]]
        elif step["type"] == "branch":
            detail = ", ".join(str(b["name"]) for b in config["branches"])
        elif step["type"] == "jump_to":
            detail = f"→ {config['target']} (×{config['max_jumps']})"
        steps.append({"id": step["id"], "type": step["type"], "detail": detail, "terms": terms})
    return steps


def template_dict(found: Template) -> dict[str, Any]:
    """The API's shape of a template: both languages, and its definition as stored (stand-ins kept)."""
    return {
        "id": found.id,
        "category": found.category,
        "example": found.example,
        "name": dict(found.name),
        "description": dict(found.description),
        "trigger_type": found.definition["trigger"]["type"],
        "placeholders": [
            {
                "key": p.key,
                "kind": p.kind,
                "label": dict(p.label),
                "default": dict(p.default) if isinstance(p.default, Mapping) else p.default,
            }
            for p in found.placeholders
        ],
        "definition": {
            language: build(found, {p.key: p.default_for(language) for p in found.placeholders}, language)
            for language in LANGUAGES
        },
    }
