"""Bounded integer types for API parameters, bodies and form fields, and the schema of text fields.

Integers from a request are unbounded in Python but not in the database: SQLite raises OverflowError
above 64 bits and PostgreSQL "bigint out of range" (or "integer out of range" for 32-bit columns).
These types refuse such values at the boundary (a 422 from the API; on pages an id that cannot exist
is a 404), and the schema shows the bounds.
"""

from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import AfterValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

MAX_ID = 2**63 - 1
MAX_POSITION = 2**31 - 1
MAX_ID_DIGITS = len(str(MAX_ID))
# The error type of an id outside 1..MAX_ID: the web shell answers pages that carry one with a 404.
ID_OUT_OF_RANGE = "id_out_of_range"


def is_id(value: object) -> bool:
    """Whether `value` (say, decoded from a cursor or a filter) is a possible row id."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def is_id_text(text: str) -> bool:
    """Whether `text` is the decimal form of a possible row id (ASCII digits only: str.isdigit()
    alone accepts "²", which int() refuses)."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS and is_id(int(text))


def _check_id(value: int) -> int:
    if not 1 <= value <= MAX_ID:
        raise PydanticCustomError(ID_OUT_OF_RANGE, "must be an id from 1 to {max}", {"max": MAX_ID})
    return value


ID = Annotated[
    int,
    AfterValidator(_check_id),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_ID}),
]
"""A row id (BIGINT): path, query, body and form ids, and the id inside a keyset cursor."""

Position = Annotated[int, Ge(0), Le(MAX_POSITION)]
"""A sort position stored in a 32-bit INTEGER column."""


def described(
    max_length: int | None = None,
    *,
    pattern: str | None = None,
    format: str | None = None,
    max_items: int | None = None,
) -> Any:
    """The OpenAPI schema of a text field (or a list's, with `max_items`) as its service checks it:
    lengths, patterns and formats, so clients and the schema-driven tests see the constraints. The
    service keeps checking them, with the messages that pages, imports and the API share; pydantic
    does not refuse the value first with wording of its own."""
    extra: dict[str, Any] = {}
    if max_length is not None:
        extra["maxLength"] = max_length
    if pattern is not None:
        extra["pattern"] = pattern
    if format is not None:
        extra["format"] = format
    if max_items is not None:
        extra["maxItems"] = max_items
    return Field(json_schema_extra=extra)
