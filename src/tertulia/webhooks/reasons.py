"""Why an endpoint was switched off. The reason is stored in English, as the API shows it; the page
and the owners' email tell it in the reader's language, so every reason is built and read here."""

import re

from tertulia.web import i18n

BY_PERSON = "Disabled by a person."
_IN_A_ROW = re.compile(r"^(\d+) failed deliveries in a row$")
_FOR_HOURS = re.compile(r"^every delivery failed for (\d+(?:\.\d+)?) hours$")
# parse's keys, as the page and the email say them (the web catalogues translate them); `%(n)s` is
# the reason's number.
LABELS: dict[str, str] = {
    "by_person": i18n.lazy("Disabled by a person."),
    "in_a_row": i18n.lazy("%(n)s failed deliveries in a row"),
    "for_hours": i18n.lazy("Every delivery failed for %(n)s hours"),
}


def in_a_row(failures: int) -> str:
    return f"{failures} failed deliveries in a row"


def for_hours(hours: float) -> str:
    return f"every delivery failed for {hours:g} hours"


def parse(reason: str) -> tuple[str, str] | None:
    """(which reason, its number or "") for a reason built here; None for any other text."""
    if reason == BY_PERSON:
        return "by_person", ""
    for key, pattern in (("in_a_row", _IN_A_ROW), ("for_hours", _FOR_HOURS)):
        if match := pattern.match(reason):
            return key, match.group(1)
    return None


def in_language(reason: str, language: str) -> str:
    """The reason in `language`; a reason of another form as stored."""
    parsed = parse(reason)
    if parsed is None:
        return reason
    key, number = parsed
    told = i18n.translations(language).ugettext(LABELS[key])
    return told % {"n": number} if number else told
