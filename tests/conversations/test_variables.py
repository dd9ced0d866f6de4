"""Dynamic variables: rendering, fallbacks, and unknown variables as errors."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tertulia.conversations.variables import VariableContext, parse, render
from tertulia.kit.errors import ValidationFailed

CTX = VariableContext(
    contact={"first_name": "Ana", "last_name": None},
    custom={"plan": "Pro"},
    user={"first_name": "Mara"},
    workspace={"name": "Tienda Sol"},
)


def test_renders_known_variables_and_fallbacks() -> None:
    text = (
        "Hola {{ contact.first_name }} ({{contact.custom.plan}}), "
        '{{contact.last_name | "cliente"}}: {{user.first_name}} de {{workspace.name}}'
    )
    assert render(text, CTX, ["plan"]) == "Hola Ana (Pro), cliente: Mara de Tienda Sol"


def test_missing_value_without_fallback_is_empty() -> None:
    assert render("[{{contact.last_name}}]", CTX) == "[]"


@pytest.mark.parametrize(
    "text",
    [
        "{{contact.nickname}}",
        "{{contact.custom.unknown_key}}",
        "{{ticket.id}}",
        "{{contact.first_name | cliente}}",
        "Hola {{contact.first_name",
        "{{}}",
    ],
)
def test_unknown_or_malformed_variables_are_errors(text: str) -> None:
    with pytest.raises(ValidationFailed) as error:
        parse(text, ["plan"], "message.text")
    assert "message.text" in error.value.details


@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=200))
def test_text_without_braces_is_unchanged(text: str) -> None:
    assert render(text, CTX, []) == text


@given(st.text(alphabet=st.characters(blacklist_characters='{}"'), max_size=40))
def test_fallback_is_used_verbatim(fallback: str) -> None:
    assert render(f'{{{{contact.last_name | "{fallback}"}}}}', CTX) == fallback
