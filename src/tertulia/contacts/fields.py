"""The standard contact fields, and the validation and normalisation of contact values (standard
fields and typed custom fields).

`STANDARD_FIELDS` is the one catalogue of the standard fields: what each is called, how pages label
it, whether people set it, whether a CSV column maps to it, whether the export offers it, which
columns hold it and how the filter language sees it. The importer, the exporter, the contact pages
and the segment language all read their lists from it. `KIND_BY_TYPE` is the same for custom fields.

Every cleaning function raises ValidationFailed naming the field; import, API and UI share them, so
a value accepted in one place is accepted everywhere.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlparse

import phonenumbers

from tertulia.contacts.models import CustomField, FieldType
from tertulia.kit import text as kit_text
from tertulia.kit.errors import ValidationFailed
from tertulia.users.service import normalize_email
from tertulia.web.i18n import lazy
from tertulia.workspaces.service import check_country, check_language

# Kinds of value a field holds, as the filter language sees them; each kind has its own operators.
Kind = Literal["text", "number", "date", "datetime", "list", "checkbox", "code", "assignee"]


@dataclass(frozen=True)
class Filterable:
    """How the filter language sees a standard field: by `name`, over the `column`, as a `kind`."""

    name: str
    column: str
    kind: Kind


@dataclass(frozen=True)
class StandardField:
    name: str  # in the API, CSV headers and the activity log
    label: str = ""  # lazy; translated where it is shown ("" where no page names it)
    import_label: str = ""  # the import mapping's wording, when it differs from `label`
    settable: bool = False  # people set it (API, contact form, import); clean_contact_values cleans it
    importable: bool = False  # a CSV column can be mapped to it
    exported: bool = False  # the export offers it
    exported_by_default: bool = False  # ... and includes it when no fields are chosen
    columns: tuple[str, ...] = ()  # the contacts columns written when it is set
    filter: Filterable | None = None


# In the order the pages list them: the import mapping, the filter panel's field picker and the
# default export columns (after the id) follow it.
STANDARD_FIELDS: tuple[StandardField, ...] = (
    StandardField(
        "first_name",
        lazy("First name"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("first_name", "first_name_folded"),
        filter=Filterable("first_name", "first_name_folded", "text"),
    ),
    StandardField(
        "last_name",
        lazy("Last name"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("last_name", "last_name_folded"),
        filter=Filterable("last_name", "last_name_folded", "text"),
    ),
    StandardField(
        "email",
        lazy("Email"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("email",),
        filter=Filterable("email", "email", "text"),
    ),
    StandardField(
        "phone",
        lazy("Phone"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("phone", "phone_raw"),
        filter=Filterable("phone", "phone", "text"),
    ),
    StandardField("phone_raw", exported=True),  # the phone as it was typed; written with `phone`
    StandardField(
        "language",
        lazy("Language"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("language",),
        filter=Filterable("language", "language", "code"),
    ),
    StandardField(
        "country",
        lazy("Country"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("country",),
        filter=Filterable("country", "country", "code"),
    ),
    StandardField(
        "avatar_url",
        lazy("Avatar URL"),
        settable=True,
        importable=True,
        exported=True,
        exported_by_default=True,
        columns=("avatar_url",),
    ),
    # Import and export name the assignee by email; the import resolves it to assignee_id.
    StandardField(
        "assignee_email",
        import_label=lazy("Assignee (email)"),
        importable=True,
        exported=True,
        exported_by_default=True,
    ),
    StandardField(
        "created_at",
        lazy("Created on"),
        exported=True,
        exported_by_default=True,
        filter=Filterable("created_at", "created_at", "datetime"),
    ),
    StandardField(
        "updated_at",
        lazy("Updated on"),
        exported=True,
        exported_by_default=True,
        filter=Filterable("updated_at", "updated_at", "datetime"),
    ),
    StandardField(
        "assignee_id",
        lazy("Assignee"),
        import_label=lazy("Assignee (user id)"),
        settable=True,
        importable=True,
        exported=True,
        columns=("assignee_id",),
        filter=Filterable("assignee", "assignee_id", "assignee"),
    ),
    # The export writes tags after the custom fields, so it handles them itself.
    StandardField("tags", import_label=lazy("Tags"), importable=True),
    # Mapping a column to the id updates the contacts it names instead of matching by email or phone.
    StandardField("id", import_label=lazy("Contact id"), importable=True, exported=True, exported_by_default=True),
    # The message categories of the filter language read these two.
    StandardField("last_incoming_at", exported=True),
    StandardField("last_outgoing_at", exported=True),
    # Set by blocking (contacts.service.do_block_contact), never by a field edit or an import; a
    # filter, so audiences (broadcasts, workflows) can leave blocked contacts out.
    StandardField("blocked", lazy("Blocked"), exported=True, filter=Filterable("blocked", "blocked", "checkbox")),
)
FIELDS_BY_NAME: dict[str, StandardField] = {field.name: field for field in STANDARD_FIELDS}
SETTABLE_FIELDS: tuple[str, ...] = tuple(field.name for field in STANDARD_FIELDS if field.settable)
# Every column a contact's settable fields are stored in (the importer's insert columns).
SETTABLE_COLUMNS: tuple[str, ...] = tuple(column for field in STANDARD_FIELDS for column in field.columns)
# The labels of the fields people set, as the contact page and the activity log name them.
SETTABLE_LABELS: dict[str, str] = {name: FIELDS_BY_NAME[name].label for name in SETTABLE_FIELDS}
# The filter language's names of the standard fields, with their labels in the filter panel.
FILTER_LABELS: dict[str, str] = {field.filter.name: field.label for field in STANDARD_FIELDS if field.filter}

# The kind of each custom field type, as the filter language sees it.
KIND_BY_TYPE: dict[FieldType, Kind] = {
    FieldType.TEXT: "text",
    FieldType.EMAIL: "text",
    FieldType.URL: "text",
    FieldType.PHONE: "text",
    FieldType.NUMBER: "number",
    FieldType.DATE: "date",
    FieldType.DATETIME: "datetime",
    FieldType.LIST: "list",
    FieldType.CHECKBOX: "checkbox",
}

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED_KEYS = frozenset(SETTABLE_FIELDS) | {
    "id",
    "tags",
    "created_at",
    "updated_at",
    "last_incoming_at",
    "last_outgoing_at",
    "assignee",
    "phone_raw",
    "custom_fields",
}
MAX_TEXT = 2000


@dataclass(frozen=True)
class Phone:
    e164: str
    raw: str


def clean_name(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be text")
    cleaned = kit_text.tidy_name(value)
    if len(cleaned) > 200:
        raise ValidationFailed.field(field, "must be at most 200 characters")
    return cleaned or None


def clean_email(value: Any, field: str = "email") -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be text")
    return normalize_email(value, field)


def clean_phone(value: Any, default_country: str | None, field: str = "phone") -> Phone | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str | int):
        raise ValidationFailed.field(field, "must be text")
    raw = str(value).strip()
    candidate = raw
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        number = phonenumbers.parse(candidate, None if candidate.startswith("+") else default_country)
    except phonenumbers.NumberParseException as exc:
        hint = "" if default_country else " (no default country is set, so include the +country code)"
        raise ValidationFailed.field(field, f"not a phone number{hint}") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValidationFailed.field(field, "not a valid phone number")
    return Phone(e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), raw=raw)


def clean_url(value: Any, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be text")
    cleaned = value.strip()
    parsed = urlparse(cleaned)
    if parsed.scheme not in ("http", "https") or not parsed.netloc or len(cleaned) > MAX_TEXT:
        raise ValidationFailed.field(field, "must be an http(s) URL")
    return cleaned


def clean_code(value: Any, field: str) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValidationFailed.field(field, "must be text")
    return check_language(value, field) if field == "language" else check_country(value, field)


def parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "y", "si", "sí", "x", "on"):
            return True
        if lowered in ("false", "0", "no", "n", "off", ""):
            return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValidationFailed.field(field, "must be true or false")


def parse_number(value: Any, field: str) -> int | float:
    if isinstance(value, bool):
        raise ValidationFailed.field(field, "must be a number")
    if isinstance(value, int | float):
        number: int | float = value
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        # Spanish spreadsheets write 1.234,5; accept a lone comma as the decimal mark.
        if "," in text and "." not in text:
            text = text.replace(",", ".")
        try:
            number = float(text)
        except ValueError as exc:
            raise ValidationFailed.field(field, "must be a number") from exc
    else:
        raise ValidationFailed.field(field, "must be a number")
    if isinstance(number, float):
        if not math.isfinite(number):
            raise ValidationFailed.field(field, "must be a finite number")
        if number.is_integer() and abs(number) < 2**53:
            return int(number)
    return number


def parse_date(value: Any, field: str) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        text = value.strip()
        for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y"):
            try:
                return datetime.strptime(text, pattern).replace(tzinfo=UTC).date().isoformat()
            except ValueError:
                continue
    raise ValidationFailed.field(field, "must be a date (YYYY-MM-DD)")


def parse_datetime(value: Any, field: str) -> str:
    """Stored as ISO 8601 in UTC with a trailing Z, so string order is time order."""
    parsed: datetime | None = None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValidationFailed.field(field, "must be an ISO 8601 date-time with a time zone")
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_custom_value(definition: CustomField, value: Any, default_country: str | None) -> Any:
    """A typed, normalised custom value, or None to clear it."""
    field = f"custom_fields.{definition.key}"
    if value is None or (isinstance(value, str) and not value.strip() and definition.type != FieldType.CHECKBOX):
        return None
    match definition.type:
        case FieldType.TEXT:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValidationFailed.field(field, "must be text")
            text = str(value).strip()
            if len(text) > MAX_TEXT:
                raise ValidationFailed.field(field, f"must be at most {MAX_TEXT} characters")
            return text
        case FieldType.NUMBER:
            return parse_number(value, field)
        case FieldType.DATE:
            return parse_date(value, field)
        case FieldType.DATETIME:
            return parse_datetime(value, field)
        case FieldType.LIST:
            options = definition.options or []
            if not isinstance(value, str):
                raise ValidationFailed.field(field, "must be one of the options")
            for option in options:
                if option.casefold() == value.strip().casefold():
                    return option
            raise ValidationFailed(
                f"{field}: {value!r} is not one of the options",
                details={field: f"must be one of: {', '.join(options)}"},
            )
        case FieldType.CHECKBOX:
            return parse_bool(value, field)
        case FieldType.EMAIL:
            return clean_email(value, field)
        case FieldType.URL:
            return clean_url(value, field)
        case FieldType.PHONE:
            phone = clean_phone(value, default_country, field)
            return phone.e164 if phone else None
    raise AssertionError(f"unhandled field type {definition.type}")
