"""Dynamic variables in snippets and replies: `{{contact.first_name}}`, `{{contact.custom.plan}}`,
`{{user.first_name}}`, `{{workspace.name}}`, with a fallback: `{{contact.first_name | "cliente"}}`.

Unknown variables (and anything else between double braces) are an error when saving or sending,
so a customer never receives raw braces. A known variable with no value and no fallback renders
as an empty string.
"""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tertulia.kit.errors import ValidationFailed

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BODY = re.compile(
    r"""^\s*(?P<name>[a-z_]+(?:\.[a-z_][a-z0-9_]*)+)\s*(?:\|\s*"(?P<fallback>[^"]*)"\s*)?$""",
)
# A known name followed by "|" whose fallback is not one double-quoted text: a bad fallback.
_PIPED = re.compile(r"^\s*(?P<name>[a-z_]+(?:\.[a-z_][a-z0-9_]*)+)\s*\|")

CONTACT_FIELDS = frozenset({"first_name", "last_name", "full_name", "email", "phone", "country", "language"})
USER_FIELDS = frozenset({"first_name", "last_name", "full_name", "email"})
WORKSPACE_FIELDS = frozenset({"name"})


@dataclass(frozen=True)
class Variable:
    name: str
    fallback: str | None


@dataclass
class VariableContext:
    contact: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)
    user: dict[str, Any] = field(default_factory=dict)
    workspace: dict[str, Any] = field(default_factory=dict)


def _known(name: str, custom_keys: Iterable[str] | None) -> bool:
    parts = name.split(".")
    head, rest = parts[0], parts[1:]
    if head == "contact":
        if len(rest) == 2 and rest[0] == "custom":
            return custom_keys is None or rest[1] in set(custom_keys)
        return len(rest) == 1 and rest[0] in CONTACT_FIELDS
    if head == "user":
        return len(rest) == 1 and rest[0] in USER_FIELDS
    if head == "workspace":
        return len(rest) == 1 and rest[0] in WORKSPACE_FIELDS
    return False


def parse(text: str, custom_keys: Iterable[str] | None = None, field_name: str = "text") -> list[Variable]:
    """Every variable in `text`; raises ValidationFailed naming the first bad one."""
    keys = list(custom_keys) if custom_keys is not None else None
    return parse_names(text, lambda name: _known(name, keys), field_name)


def parse_names(text: str, known: Callable[[str], bool], field_name: str = "text") -> list[Variable]:
    """The same syntax with another set of names (workflows add `trigger.*`, `vars.*`...): `known`
    says which dotted names exist."""
    found: list[Variable] = []
    for match in _TAG.finditer(text):
        body = _BODY.match(match.group(1))
        if body is None:
            piped = _PIPED.match(match.group(1))
            if piped is not None and known(piped.group("name")):
                raise ValidationFailed.field(field_name, f"the fallback of {match.group(0)} must be in double quotes")
        if body is None or not known(body.group("name")):
            raise ValidationFailed.field(field_name, f"unknown variable {match.group(0)}")
        found.append(Variable(body.group("name"), body.group("fallback")))
    if "{{" in _TAG.sub("", text):
        raise ValidationFailed.field(field_name, "unclosed {{ in text")
    return found


def substitute_names(text: str, lookup: Callable[[str], Any]) -> str:
    """Replace every variable of an already checked text by `lookup(name)`, or its fallback when
    that is None or empty. Anything that is not a well-formed variable is left as it is."""

    def substitute(match: re.Match[str]) -> str:
        body = _BODY.match(match.group(1))
        if body is None:
            return match.group(0)
        value = lookup(body.group("name"))
        if value is None or value == "":
            return body.group("fallback") or ""
        return str(value)

    return _TAG.sub(substitute, text)


def _lookup(name: str, ctx: VariableContext) -> Any:
    parts = name.split(".")
    if parts[0] == "contact" and len(parts) == 3:
        return ctx.custom.get(parts[2])
    source = {"contact": ctx.contact, "user": ctx.user, "workspace": ctx.workspace}[parts[0]]
    return source.get(parts[1])


def render(text: str, ctx: VariableContext, custom_keys: Iterable[str] | None = None, field_name: str = "text") -> str:
    parse(text, custom_keys, field_name)
    return substitute_names(text, lambda name: _lookup(name, ctx))
