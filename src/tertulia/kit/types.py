"""Bounded integer types for API parameters and bodies.

Integers from a request are unbounded in Python but not in the database: SQLite raises OverflowError
above 64 bits and PostgreSQL "bigint out of range" (or "integer out of range" for 32-bit columns).
These types refuse such values with a 422 at the boundary, and the schema shows the bounds.
"""

from typing import Annotated

from annotated_types import Ge, Le

MAX_ID = 2**63 - 1
MAX_POSITION = 2**31 - 1

ID = Annotated[int, Ge(1), Le(MAX_ID)]
"""A row id (BIGINT): path, query and body ids, and the id inside a keyset cursor."""

Position = Annotated[int, Ge(0), Le(MAX_POSITION)]
"""A sort position stored in a 32-bit INTEGER column."""


def is_id(value: object) -> bool:
    """Whether `value` (say, decoded from a cursor) is a possible row id."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID
