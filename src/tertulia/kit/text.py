"""Text folding for case- and accent-insensitive matching ("jose" finds "José")."""

import unicodedata


def fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def fold_or_none(value: str | None) -> str | None:
    return None if value is None else fold(value)
