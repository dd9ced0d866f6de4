"""The broadcast editor's WhatsApp template fields read against the synced template: what was typed as
Meta's components, and every problem with it, each for the field it belongs beside.

What was written must be right; what is missing may come later. A line without a name, a name the
template lacks or gives twice, a value left empty, more values than the body takes, a header value
the template has no place for, longer than Meta's 60 characters (a variable counted as its fallback)
or given both in its field and as a line, a body value longer than 1024 characters, a value with a
tab, a line break or more than 4 spaces in a row (Meta's rules: audience.parameter_refusal), refuse
the save (the page shows the form again with
everything typed and every problem beside its field). Parameters still missing (a name not given,
fewer body values than the template takes, the header's value) do not: the draft is saved, the
editor shows them beside the fields, and the dry run and scheduling are refused until they are
filled.

What a template needs is channels.message_templates' `slots`, the rule `check_template_message`
applies to every template message when it is sent (the broadcast's too, per contact); this module
only reads the editor's fields and says which of them a problem is about.

The fields: `template_params`, one value per line in order (a POSITIONAL template's body), or one
`name = value` per line (a NAMED template's body); `template_header`, the value of the one parameter
of a TEXT header (`{{1}}`, or a NAMED template's `{{name}}`), at most MAX_HEADER_TEXT characters on
one line, stored as the API stores it: `{"type": "header", "parameters": [{"text": ...}]}`, with its
`parameter_name` for a NAMED template. A NAMED template's header value written as a `name = value`
line (as the editor once took it, and as a page opened before it changed still posts it) is taken as
the header's when the header field is empty; `template_header_media`, the file an IMAGE, VIDEO or
DOCUMENT header shows: its https link, or the media id WhatsApp gave it when it was uploaded (digits
only: a value of digits is an id, anything else must be an https link), and
`template_header_filename`, a DOCUMENT's file name (optional); `template_header_latitude`,
`template_header_longitude`, `template_header_place_name` and `template_header_address`, the place a
LOCATION header shows (the coordinates required, decimal numbers with a point; the name and address
optional). The file and the place are the same for every contact, so they are literal, without
variables; they are stored as Meta takes them: `{"type": "header", "parameters": [{"type": "image",
"image": {"link": ...}}]}` (or `{"id": ...}`), `{"type": "location", "location": {"latitude":
"19.4326", "longitude": "-99.1332", ...}}`.
"""

import re
from dataclasses import dataclass, field
from typing import Any

from tertulia.broadcasts.audience import (
    MAX_BODY_PARAMETER,
    MAX_HEADER_TEXT,
    MAX_SPACES,
    PARAMETER_SPACING,
    known_refusal,
    known_value,
)
from tertulia.channels.message_templates import (
    APPROVED,
    FILE_KINDS,
    MAX_PLACE_TEXT,
    PlaceRefused,
    Slot,
    component_text,
    file_header,
    is_https_url,
    place,
    slots,
)
from tertulia.channels.models import MessageTemplate
from tertulia.web import i18n

NAME_FIELD = "template_name"
HEADER_FIELD = "template_header"
PARAMS_FIELD = "template_params"
MEDIA_FIELD = "template_header_media"
FILENAME_FIELD = "template_header_filename"
LATITUDE_FIELD = "template_header_latitude"
LONGITUDE_FIELD = "template_header_longitude"
PLACE_NAME_FIELD = "template_header_place_name"
ADDRESS_FIELD = "template_header_address"
PLACE_FIELDS = (LATITUDE_FIELD, LONGITUDE_FIELD, PLACE_NAME_FIELD, ADDRESS_FIELD)
# Each key of Meta's place and its field.
PLACE_KEYS = {
    "latitude": LATITUDE_FIELD,
    "longitude": LONGITUDE_FIELD,
    "name": PLACE_NAME_FIELD,
    "address": ADDRESS_FIELD,
}
# A value of digits in the header file's field is the id of a file uploaded to WhatsApp.
MEDIA_ID = re.compile(r"[0-9]{1,64}")

NAMED_LINE = re.compile(r"^\s*(?P<name>[A-Za-z0-9_]+)\s*=\s*(?P<value>.*?)\s*$")

NAMELESS = i18n.lazy(
    "Lines without a name: %(lines)s (this template's parameters have names: write one name = value per line)"
)
EMPTY_VALUE = i18n.lazy("%(name)s has no value (line %(line)s)")
UNKNOWN_NAME = i18n.lazy("Template %(template)s has no parameter %(name)s (it has: %(names)s)")
GIVEN_TWICE = i18n.lazy("%(name)s is given more than once (lines %(lines)s)")
MISSING_NAMES = i18n.lazy("Missing parameters: %(names)s")
BODY_COUNT = i18n.lazy("The body takes %(wanted)s values, one per line; %(given)s given")
MISSING_HEADER = i18n.lazy("The header needs a value for its {{1}} (%(header)s)")
NO_HEADER = i18n.lazy("This template's header takes no text value: leave it empty")
MISSING_NAMED_HEADER = i18n.lazy("The header needs a value for its {{%(name)s}} (%(header)s)")
HEADER_TOO_LONG = i18n.lazy(
    "At most %(max)s characters on one line, a variable counted as its fallback (%(length)s written)"
)
BODY_TOO_LONG = i18n.lazy(
    "Line %(line)s: at most %(max)s characters, a variable counted as its fallback (%(length)s written)"
)
BAD_SPACING = i18n.lazy("No tabs, line breaks or more than %(max)s spaces in a row: WhatsApp refuses them")
LINE_BAD_SPACING = i18n.lazy("Line %(line)s: no tabs or more than %(max)s spaces in a row: WhatsApp refuses them")
HEADER_LINE_TOO = i18n.lazy("%(name)s is the header's parameter: its value goes in the header text field only")
MISSING_MEDIA = {
    "image": i18n.lazy("The header shows an image: give its https:// link"),
    "video": i18n.lazy("The header shows a video: give its https:// link"),
    "document": i18n.lazy("The header shows a document: give its https:// link"),
}
NO_MEDIA = i18n.lazy("This template's header takes no file: leave it empty")
NOT_HTTPS = i18n.lazy(
    "Write the file's full https:// link, e.g. https://tienda.example/promo.jpg, or its WhatsApp media id (digits only)"
)
MEDIA_VARIABLE = i18n.lazy("The header's file is the same for every contact: write its link without variables")
NO_FILENAME = i18n.lazy("Only a document header takes a file name: leave it empty")
FILENAME_ALONE = i18n.lazy("A file name goes with the document's link: give the link too")
BAD_FILENAME = i18n.lazy("A file name without line breaks, slashes or braces, at most %(max)s characters")
MAX_FILENAME = 240
MISSING_PLACE = i18n.lazy("The header shows a place on a map: give its latitude and longitude")
NO_PLACE = i18n.lazy("This template's header shows no place: leave the place's fields empty")
PLACE_VARIABLE = i18n.lazy("The header's place is the same for every contact: write it without variables")
BAD_LATITUDE = i18n.lazy("A latitude is a number from -90 to 90, with a point for decimals, e.g. 19.4326")
BAD_LONGITUDE = i18n.lazy("A longitude is a number from -180 to 180, with a point for decimals, e.g. -99.1332")
BAD_PLACE_TEXT = i18n.lazy("At most %(max)s characters, without line breaks")
UNKNOWN_TEMPLATE = i18n.lazy(
    "No WhatsApp number has a template %(template)s in %(language)s (sync the templates if it is new)"
)
NOT_APPROVED = i18n.lazy("Template %(name)s is %(status)s: only approved templates can be sent")


@dataclass(frozen=True)
class Problem:
    """A problem shown beside the field `beside`: `message` is a catalogue entry, %-formatted with
    `values` once translated; `refuses_save` False for a parameter still missing (the draft may be saved)."""

    beside: str
    message: str
    values: dict[str, str] = field(default_factory=dict)
    refuses_save: bool = True


@dataclass
class Read:
    components: list[dict[str, Any]]
    problems: list[Problem]

    @property
    def refuses_save(self) -> bool:
        return any(p.refuses_save for p in self.problems)


def header_slot(template: MessageTemplate | None) -> Slot | None:
    """The parameter the header text field fills: a TEXT header's `{{1}}` or `{{name}}` (Meta allows
    one per header)."""
    if template is None:
        return None
    return next((s for s in slots(template) if s.component == "header" and s.kind == "text"), None)


def _refused(kind: str, text: str, beside: str, line: int | None = None) -> list[Problem]:
    """Meta's rules on a header's or body's text parameter (audience.parameter_refusal), checked on
    what the editor can know: the value with each variable as its fallback (the value of a contact
    is only known when sent). `line`: the body value's line, which the message names."""
    refusal = known_refusal(kind, text)
    if refusal is None:
        return []
    if refusal == PARAMETER_SPACING:
        if line is None:
            return [Problem(beside, BAD_SPACING, {"max": str(MAX_SPACES)})]
        return [Problem(beside, LINE_BAD_SPACING, {"max": str(MAX_SPACES), "line": str(line)})]
    length = str(len(known_value(text)))
    if kind == "header":
        return [Problem(beside, HEADER_TOO_LONG, {"max": str(MAX_HEADER_TEXT), "length": length})]
    return [Problem(beside, BODY_TOO_LONG, {"max": str(MAX_BODY_PARAMETER), "length": length, "line": str(line)})]


def _header_text(header: str, beside: str = HEADER_FIELD) -> list[Problem]:
    return _refused("header", header, beside)


def read_form(
    template: MessageTemplate | None,
    name: str,
    language: str,
    header: str,
    lines: str,
    media: str = "",
    filename: str = "",
    typed_place: dict[str, str] | None = None,
    before: Any = None,
) -> Read:
    """The typed header, header file or place and parameter lines as the draft's components, with
    every problem. A template not synced (None) keeps what was typed as positional values (a file as
    an image, or a document when it has a file name), or by name where the draft's components
    (`before`) had names, so that saving a draft whose template is gone keeps them: the name is the
    problem. `typed_place` is the place's fields by name (`latitude`, `longitude`, `name`, `address`)."""
    header = header.strip()
    file_part, problems = _media(template, media.strip(), filename.strip())
    place_part, place_problems = _place(template, typed_place or {})
    problems += place_problems
    if header and (template is None or header_slot(template) is not None):
        problems += _header_text(header)
    if template is None:
        named = _names_before(before)
        components: list[dict[str, Any]] = []
        if header:
            given = {"text": header}
            if named["header"]:
                given["parameter_name"] = named["header"][0]
            components.append({"type": "header", "parameters": [given]})
        body: list[dict[str, Any]] = []
        for number, line in enumerate(lines.splitlines(), start=1):
            by_name = NAMED_LINE.match(line) if named["body"] else None
            if by_name is not None and by_name["value"]:
                body.append({"text": by_name["value"], "parameter_name": by_name["name"]})
            elif line.strip():
                body.append({"text": line.strip()})
            else:
                continue
            problems += _refused("body", body[-1]["text"], PARAMS_FIELD, number)
        if body:
            components.append({"type": "body", "parameters": body})
    elif template.parameter_format == "NAMED":
        components, found = _named(template, header, lines)
        problems += found
    else:
        components, found = _positional(template, header, lines)
        problems += found
    for part in (file_part, place_part):
        if part is None:
            continue
        # The header's one parameter (several typed for a template not synced: kept, for the editor).
        text = next((c for c in components if c["type"] == "header"), None)
        if text is None:
            components.insert(0, {"type": "header", "parameters": [part]})
        else:
            text["parameters"].append(part)
    # A link or a place refused is said once: not also as missing.
    said = {p.beside for p in problems if p.beside in (MEDIA_FIELD, *PLACE_FIELDS)}
    if said & set(PLACE_FIELDS):
        said.add(LATITUDE_FIELD)  # where a missing place is said
    rest = [p for p in completeness(template, name, language, components) if p.beside not in said]
    return Read(components, problems + rest)


def _names_before(components: Any) -> dict[str, list[str]]:
    """The parameter names a draft's stored components carried, per component."""
    names: dict[str, list[str]] = {"header": [], "body": []}
    for component in components if isinstance(components, list) else []:
        kind = str(component.get("type", "")).lower() if isinstance(component, dict) else ""
        if kind in names:
            for parameter in component.get("parameters") or []:
                if isinstance(parameter, dict) and isinstance(parameter.get("parameter_name"), str):
                    names[kind].append(parameter["parameter_name"])
    return names


def _media(template: MessageTemplate | None, link: str, filename: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The header's file parameter in Meta's form, or the problems with the typed link and name."""
    problems: list[Problem] = []
    slot = file_header(template)
    kind = slot.kind if slot is not None else ("document" if filename else "image")
    if link and template is not None and slot is None:
        problems.append(Problem(MEDIA_FIELD, NO_MEDIA))
    elif "{{" in link:
        problems.append(Problem(MEDIA_FIELD, MEDIA_VARIABLE))
    elif link and not MEDIA_ID.fullmatch(link) and not is_https_url(link):
        problems.append(Problem(MEDIA_FIELD, NOT_HTTPS))
    if filename:
        if kind != "document":
            problems.append(Problem(FILENAME_FIELD, NO_FILENAME))
        elif not link:
            problems.append(Problem(FILENAME_FIELD, FILENAME_ALONE))
        elif len(filename) > MAX_FILENAME or any(ch in "/\\{}" or ord(ch) < 32 or ord(ch) == 127 for ch in filename):
            problems.append(Problem(FILENAME_FIELD, BAD_FILENAME, {"max": str(MAX_FILENAME)}))
    if problems or not link:
        return None, problems
    file: dict[str, str] = {"id": link} if MEDIA_ID.fullmatch(link) else {"link": link}
    if filename:
        file["filename"] = filename
    return {"type": kind, kind: file}, problems


def _place(template: MessageTemplate | None, typed: dict[str, str]) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The header's place in Meta's form, or the problems with its typed fields (nothing typed:
    nothing, and the place is missing when the template shows one)."""
    given = {key: value.strip() for key, value in typed.items() if key in PLACE_KEYS and value.strip()}
    if not given:
        return None, []
    if template is not None and not any(s.component == "header" and s.kind == "location" for s in slots(template)):
        return None, [Problem(PLACE_KEYS[key], NO_PLACE) for key in PLACE_KEYS if key in given][:1]
    variables = [key for key, value in given.items() if "{{" in value]
    if variables:
        return None, [Problem(PLACE_KEYS[variables[0]], PLACE_VARIABLE)]
    problems: list[Problem] = []
    for key in ("name", "address"):
        if "\n" in given.get(key, "") or "\r" in given.get(key, ""):
            problems.append(Problem(PLACE_KEYS[key], BAD_PLACE_TEXT, {"max": str(MAX_PLACE_TEXT)}))
    try:
        found = place(given)
    except PlaceRefused as exc:
        if exc.field in ("latitude", "longitude"):
            problems.insert(
                0, Problem(PLACE_KEYS[exc.field], BAD_LATITUDE if exc.field == "latitude" else BAD_LONGITUDE)
            )
        elif exc.field in PLACE_KEYS and not problems:
            problems.append(Problem(PLACE_KEYS[exc.field], BAD_PLACE_TEXT, {"max": str(MAX_PLACE_TEXT)}))
        return None, problems
    if problems:
        return None, problems
    return {"type": "location", "location": found}, []


def _positional(template: MessageTemplate, header: str, lines: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    components: list[dict[str, Any]] = []
    problems: list[Problem] = []
    if header:
        if header_slot(template) is None:
            problems.append(Problem(HEADER_FIELD, NO_HEADER))
        else:
            components.append({"type": "header", "parameters": [{"text": header}]})
    body: list[dict[str, Any]] = []
    for number, line in enumerate(lines.splitlines(), start=1):
        if line.strip():
            body.append({"text": line.strip()})
            problems += _refused("body", line.strip(), PARAMS_FIELD, number)
    if body:
        components.append({"type": "body", "parameters": body})
    return components, problems


def _named(template: MessageTemplate, header: str, lines: str) -> tuple[list[dict[str, Any]], list[Problem]]:
    text_slots = [s for s in slots(template) if s.kind == "text"]
    in_header = header_slot(template)
    # The names the lines fill: the body's, and the header's when it is only the header's (a line for
    # it is the header's value, as the editor once took it).
    body_names = list(dict.fromkeys(s.key for s in text_slots if s.component == "body"))
    header_only = in_header.key if in_header is not None and in_header.key not in body_names else None
    known = body_names + ([header_only] if header_only else [])
    problems: list[Problem] = []
    if header and in_header is None:
        problems.append(Problem(HEADER_FIELD, NO_HEADER))
    nameless: list[int] = []
    seen: dict[str, list[int]] = {}
    values: dict[str, str] = {}
    for number, line in enumerate(lines.splitlines(), start=1):
        if not line.strip():
            continue
        found = NAMED_LINE.match(line)
        if found is None:
            nameless.append(number)
            continue
        name = found["name"]
        seen.setdefault(name, []).append(number)
        if not found["value"]:
            problems.append(Problem(PARAMS_FIELD, EMPTY_VALUE, {"name": name, "line": str(number)}))
        elif name not in known:
            if len(seen[name]) == 1:
                values_of = {"template": repr(template.name), "name": repr(name), "names": ", ".join(body_names)}
                problems.append(Problem(PARAMS_FIELD, UNKNOWN_NAME, values_of))
        elif name == header_only and header:
            if len(seen[name]) == 1:
                problems.append(Problem(PARAMS_FIELD, HEADER_LINE_TOO, {"name": name}))
        elif name not in values:
            values[name] = found["value"]
            if name != header_only:  # the header's rules are the header's (below)
                problems += _refused("body", found["value"], PARAMS_FIELD, number)
    if nameless:
        problems.insert(0, Problem(PARAMS_FIELD, NAMELESS, {"lines": ", ".join(str(n) for n in nameless)}))
    for name, numbers in seen.items():
        if len(numbers) > 1:
            problems.append(
                Problem(PARAMS_FIELD, GIVEN_TWICE, {"name": name, "lines": ", ".join(str(n) for n in numbers)})
            )
    if header_only is not None and header_only in values:
        header = values.pop(header_only)
        problems += _header_text(header, PARAMS_FIELD)  # beside the line it was written in
    parts: dict[str, list[dict[str, Any]]] = {"header": [], "body": []}
    if header and in_header is not None:
        parts["header"].append({"text": header, "parameter_name": in_header.key})
    for slot in text_slots:
        if slot.component == "body" and slot.key in values:
            parts["body"].append({"text": values[slot.key], "parameter_name": slot.key})
    return [{"type": part, "parameters": given} for part, given in parts.items() if given], problems


def completeness(template: MessageTemplate | None, name: str, language: str, components: Any) -> list[Problem]:
    """What the template still lacks in these components (the form's or a stored draft's): the
    template itself (unknown, not approved), the header's file or place, missing names, the
    header's value, the body's count of values (more than it takes is an error, fewer is still to
    be filled)."""
    if template is None:
        return [Problem(NAME_FIELD, UNKNOWN_TEMPLATE, {"template": repr(name), "language": repr(language)}, False)]
    problems: list[Problem] = []
    if template.status != APPROVED:
        problems.append(
            Problem(NAME_FIELD, NOT_APPROVED, {"name": repr(template.name), "status": template.status}, False)
        )
    given: dict[str, list[dict[str, Any]]] = {"header": [], "body": []}
    for component in components if isinstance(components, list) else []:
        kind = str(component.get("type", "")).lower() if isinstance(component, dict) else ""
        if kind in given:
            given[kind].extend(p for p in component.get("parameters") or [] if isinstance(p, dict))
    wanted = slots(template)
    media = next((s for s in wanted if s.kind != "text"), None)
    if media is not None and media.kind == "location":
        if not any(_place_given(p) for p in given["header"]):
            problems.append(Problem(LATITUDE_FIELD, MISSING_PLACE, {}, False))
    elif media is not None and not any(_file_link(p, media.kind) for p in given["header"]):
        problems.append(Problem(MEDIA_FIELD, MISSING_MEDIA[media.kind], {}, False))
    in_header = header_slot(template)
    if template.parameter_format == "NAMED":
        if in_header is not None and not any(p.get("parameter_name") == in_header.key for p in given["header"]):
            header = component_text(template, "HEADER") or ""
            values = {"name": in_header.key, "header": header}
            problems.append(Problem(HEADER_FIELD, MISSING_NAMED_HEADER, values, False))
        named = {str(p.get("parameter_name")) for p in given["body"]}
        body_names = dict.fromkeys(s.key for s in wanted if s.kind == "text" and s.component == "body")
        missing = [key for key in body_names if key not in named]
        if missing:
            problems.append(Problem(PARAMS_FIELD, MISSING_NAMES, {"names": ", ".join(missing)}, False))
        return problems
    if in_header is not None and not given["header"]:
        header = component_text(template, "HEADER") or ""
        problems.append(Problem(HEADER_FIELD, MISSING_HEADER, {"header": header}, False))
    body = [s for s in wanted if s.component == "body"]
    if len(given["body"]) != len(body):
        counts = {"wanted": str(len(body)), "given": str(len(given["body"]))}
        problems.append(Problem(PARAMS_FIELD, BODY_COUNT, counts, len(given["body"]) > len(body)))
    return problems


def file_parameter(parameter: Any) -> tuple[str, str] | None:
    """A header parameter's file as the editor shows it (link or media id, file name), or None for
    another kind."""
    if not isinstance(parameter, dict) or parameter.get("type") not in FILE_KINDS:
        return None
    file = parameter.get(str(parameter["type"]))
    if not isinstance(file, dict):
        return "", ""
    return str(file.get("link") or file.get("id") or ""), str(file.get("filename") or "")


def place_parameter(parameter: Any) -> dict[str, str] | None:
    """A header parameter's place as the editor's fields show it (by field name), or None for
    another kind."""
    if not isinstance(parameter, dict) or parameter.get("type") != "location":
        return None
    found = parameter.get("location")
    found = found if isinstance(found, dict) else {}
    return {field: str(found.get(key) or "") for key, field in PLACE_KEYS.items()}


def _place_given(parameter: dict[str, Any]) -> bool:
    """Whether a header parameter is a place `check_template_message` will take."""
    if parameter.get("type") != "location":
        return False
    try:
        place(parameter.get("location"))
    except PlaceRefused:
        return False
    return True


def _file_link(parameter: dict[str, Any], kind: str) -> bool:
    """Whether a header parameter gives this kind of file by an https link or a media id (as the API
    may set it), the way `check_template_message` will take it."""
    file = parameter.get(kind)
    if parameter.get("type") != kind or not isinstance(file, dict):
        return False
    if "link" in file:
        return is_https_url(file["link"])
    return isinstance(file.get("id"), str) and bool(file["id"].strip())
