"""Validation and normalisation of contact values: standard fields and typed custom fields.

Every function raises ValidationFailed naming the field; import, API and UI share them, so a value
accepted in one place is accepted everywhere.
"""

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlparse

import phonenumbers

from tertulia.contacts.models import CustomField, FieldType
from tertulia.kit.errors import ValidationFailed
from tertulia.users.service import normalize_email
from tertulia.workspaces.service import check_country, check_language

STANDARD_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "language",
    "country",
    "avatar_url",
    "assignee_id",
)
KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED_KEYS = frozenset(STANDARD_FIELDS) | {
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
    cleaned = " ".join(value.split())
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
