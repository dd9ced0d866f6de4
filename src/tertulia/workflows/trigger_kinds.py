"""The configs of the shortcut, incoming-webhook and date triggers, their checks and the
`trigger.*` variables each gives a run. language.py lists them beside the other triggers; the code
that fires them is in shortcuts.py, hooks.py and dates.py.

- shortcut: a person runs the workflow on a contact by hand, answering its form (at most
  `MAX_FORM_FIELDS` fields); each answer is `trigger.<name>`, beside `trigger.user_id` and
  `trigger.conversation_id`.
- incoming_webhook: a POST to the workflow's URL; the JSON body's fields, flattened, are the
  variables (`trigger.order.total`), so any name is accepted when the definition is checked.
- date: N days or hours before or after a date in a contact field, in the workspace's time zone,
  once or every year; `trigger.field`, `trigger.date` (the occurrence's date) and `trigger.value`.
"""

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tertulia.contacts.models import FieldType

MAX_FORM_FIELDS = 5
MAX_FORM_OPTIONS = 10
MAX_OFFSET_DAYS = 365
FORM_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Shortcut variables every run has besides the form's answers.
SHORTCUT_VARIABLES = frozenset({"user_id", "conversation_id"})
DATE_VARIABLES = frozenset({"field", "date", "value"})
# Standard contact fields a date trigger may watch (custom date and date-time fields too).
STANDARD_DATE_FIELDS = ("created_at",)
# A webhook variable: dotted lower-case names (what the inbox's variable syntax accepts).
WEBHOOK_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")


class _Strict(BaseModel):
    # No NaN or infinity in a number: PostgreSQL's JSON cannot store them, and no step means them.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FormField(_Strict):
    name: str = Field(min_length=1, max_length=50)
    label: str = Field(min_length=1, max_length=100)
    kind: Literal["text", "number", "choice"] = "text"
    options: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=MAX_FORM_OPTIONS
    )
    required: bool = False


class ShortcutConfig(_Strict):
    form: list[FormField] = Field(default_factory=list, max_length=MAX_FORM_FIELDS)


class WebhookConfig(_Strict):
    pass


class Offset(_Strict):
    amount: int = Field(default=0, ge=0, le=MAX_OFFSET_DAYS * 24)
    unit: Literal["days", "hours"] = "days"


class DateConfig(_Strict):
    # A custom field key of type date or datetime, or created_at.
    field: str = Field(min_length=1, max_length=100)
    direction: Literal["before", "after"] = "before"
    offset: Offset = Field(default_factory=Offset)
    # The local time of day a date field fires at (date-time fields fire at their own time).
    time: str = "09:00"
    # once: on the date; yearly: on every anniversary of it (date fields only).
    repeat: Literal["once", "yearly"] = "once"


CONFIGS: dict[str, type[BaseModel]] = {
    "shortcut": ShortcutConfig,
    "incoming_webhook": WebhookConfig,
    "date": DateConfig,
}
VARIABLES: dict[str, frozenset[str]] = {
    "shortcut": SHORTCUT_VARIABLES,
    "incoming_webhook": frozenset(),  # any name: the body's fields
    "date": DATE_VARIABLES,
}


def date_field_kind(name: str, custom_fields: Mapping[str, FieldType]) -> str | None:
    """ "date" or "datetime" for a field a date trigger may watch; None for any other name."""
    if name in STANDARD_DATE_FIELDS:
        return "datetime"
    found = custom_fields.get(name)
    if found == FieldType.DATE:
        return "date"
    if found == FieldType.DATETIME:
        return "datetime"
    return None


def check(config: Any, custom_fields: Mapping[str, FieldType]) -> dict[str, str]:
    """What is wrong with a validated config of one of these triggers, by path."""
    errors: dict[str, str] = {}
    if isinstance(config, ShortcutConfig):
        seen: set[str] = set()
        for index, item in enumerate(config.form):
            path = f"trigger.config.form[{index}]"
            if not FORM_NAME.match(item.name):
                errors[f"{path}.name"] = "lower-case letters, digits and _ (at most 50)"
            elif item.name in SHORTCUT_VARIABLES:
                errors[f"{path}.name"] = f"{item.name!r} is taken by the shortcut's own variables"
            elif item.name in seen:
                errors[f"{path}.name"] = f"another field is already named {item.name!r}"
            seen.add(item.name)
            if item.kind == "choice" and len(item.options) < 2:
                errors[f"{path}.options"] = "a choice needs 2 to 10 options"
            if item.kind != "choice" and item.options:
                errors[f"{path}.options"] = "only a choice has options"
    if isinstance(config, DateConfig):
        kind = date_field_kind(config.field, custom_fields)
        if kind is None:
            errors["trigger.config.field"] = f"{config.field!r} is not a date or date-time contact field"
        elif config.repeat == "yearly" and kind != "date":
            errors["trigger.config.repeat"] = "only a date field (not a date-time) can repeat every year"
        if not TIME.match(config.time):
            errors["trigger.config.time"] = "must be a time HH:MM"
        if config.offset.unit == "days" and config.offset.amount > MAX_OFFSET_DAYS:
            errors["trigger.config.offset.amount"] = f"at most {MAX_OFFSET_DAYS} days"
    return errors


def known_variable(trigger_type: str, config: Any) -> Callable[[str], bool] | None:
    """Which `trigger.<name>` exist for these triggers (None: not one of them)."""
    if trigger_type == "incoming_webhook":
        return lambda name: bool(WEBHOOK_NAME.match(name))
    if trigger_type == "shortcut":
        names = set(SHORTCUT_VARIABLES)
        if isinstance(config, ShortcutConfig):
            names.update(item.name for item in config.form)
        return lambda name: name in names
    if trigger_type == "date":
        return lambda name: name in DATE_VARIABLES
    return None
