"""Whatever a person types comes back as the same text in the page, never as markup."""

from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.web import i18n
from tertulia.web.templating import render_string

# Names as typed into forms: any printable text, with markup-like characters made likely.
typed = st.text(
    alphabet=st.one_of(st.sampled_from("<>&\"'/=` ;:()[]{}"), st.characters(blacklist_categories=("Cs", "Cc"))),
    min_size=1,
    max_size=40,
).filter(lambda s: s.strip() == s and s)


class TextOf(HTMLParser):
    """Collects the text inside elements with a given class, and counts the elements seen."""

    def __init__(self, css_class: str) -> None:
        super().__init__(convert_charrefs=True)
        self.css_class = css_class
        self.depth = 0
        self.texts: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        classes = (dict(attrs).get("class") or "").split()
        if self.depth:
            self.depth += 1
        elif self.css_class in classes:
            self.depth = 1
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.texts[-1] += data


class Ctx:
    csrf_token = "token"
    fmt = i18n.Formatter("en", i18n.safe_zone("UTC"))

    def can(self, _permission: str) -> bool:
        return True


def _row_context(first_name: str, tag: str) -> dict[str, Any]:
    contact = SimpleNamespace(
        id=1,
        full_name=first_name,
        email=None,
        phone=None,
        phone_raw=None,
        avatar_url=None,
        assignee_id=None,
        last_incoming_at=None,
    )
    return {
        "ctx": Ctx(),
        "contacts": [contact],
        "tags": {1: [tag]},
        "people": {},
        "next_after": None,
        "q": first_name,
        "view": "all",
        "first_page": True,
    }


@settings(max_examples=150, deadline=None)
@given(name=typed, tag=typed)
def test_typed_values_render_as_exactly_that_text(name: str, tag: str) -> None:
    html = render_string("contacts/_rows.html", _row_context(name, tag))
    names = TextOf("contact-name")
    names.feed(html)
    assert names.texts == [name]
    tags = TextOf("tag")
    tags.feed(html)
    assert tags.texts == [tag]
    # No element appears that the template did not write itself.
    assert set(names.tags) <= {"tr", "td", "input", "a", "span", "svg", "path", "circle"}
