"""Why an endpoint was switched off. The reason is stored in English, as the API shows it; the page
and the owners' email tell it in the reader's language, so every reason is built and read here."""

import re

BY_PERSON = "Disabled by a person."
_IN_A_ROW = re.compile(r"^(\d+) failed deliveries in a row$")
_FOR_HOURS = re.compile(r"^every delivery failed for (\d+(?:\.\d+)?) hours$")
# The reasons in Spanish, for the owners' email (mail.texts' languages, not the web's catalogues);
# `%(n)s` is the reason's number.
SPANISH = {
    "by_person": "lo desactivó una persona",
    "in_a_row": "%(n)s entregas fallidas seguidas",
    "for_hours": "todas las entregas fallaron durante %(n)s horas",
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
    parsed = parse(reason)
    if language != "es" or parsed is None:
        return reason
    key, number = parsed
    return SPANISH[key] % {"n": number}
