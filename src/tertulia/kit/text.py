"""Text rules shared by every domain: folding for case- and accent-insensitive matching ("jose"
finds "José"), the one rule for NUL and unpaired surrogates in text from outside, and clean names."""

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from tertulia.kit.errors import ValidationFailed


def fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def fold_or_none(value: str | None) -> str | None:
    return None if value is None else fold(value)


# ----- text from outside: one rule for every input boundary ---------------------------------------
#
# NUL and surrogate code points are refused wherever text comes in (API bodies, query strings, forms,
# the widget's requests and socket frames, CSV rows): PostgreSQL's text cannot hold NUL while SQLite
# would store it, so the databases would disagree; and a surrogate that survives JSON decoding is an
# unpaired one, which no UTF-8 encoder accepts. Text nobody can correct any more (a provider's callback,
# already accepted) has them replaced by U+FFFD instead, so no message is lost over them.

_UNSAFE = re.compile("[\x00\ud800-\udfff]")
UNSAFE_TEXT_MESSAGE = "must not contain NUL characters or unpaired surrogates"
REPLACEMENT_CHARACTER = "\ufffd"


def has_unsafe_characters(value: str) -> bool:
    return _UNSAFE.search(value) is not None


def unsafe_text_path(value: Any, path: str = "") -> str | None:
    """The path (`tags[2]`, `custom_fields.plan`) of the first string in a JSON-like value, keys
    included, that holds NUL or an unpaired surrogate; None when there is none."""
    if isinstance(value, str):
        return (path or "request") if has_unsafe_characters(value) else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and has_unsafe_characters(key):
                return path or "request"
            found = unsafe_text_path(item, item_path)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = unsafe_text_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def check_input_text(value: Any, path: str = "") -> None:
    """Raise ValidationFailed (422) naming where `value` holds NUL or an unpaired surrogate."""
    found = unsafe_text_path(value, path)
    if found is not None:
        raise ValidationFailed.field(found, UNSAFE_TEXT_MESSAGE)


def replace_unsafe_characters(value: Any) -> Any:
    """`value` (a string, or JSON-like data, keys included) with NUL and unpaired surrogates
    replaced by U+FFFD."""
    if isinstance(value, str):
        return _UNSAFE.sub(REPLACEMENT_CHARACTER, value)
    if isinstance(value, Mapping):
        return {replace_unsafe_characters(key): replace_unsafe_characters(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [replace_unsafe_characters(item) for item in value]
    return value


# ----- names: what people see and compare ----------------------------------------------------------
#
# Names (contacts, tags, segments, teams, categories, channels) and file names drop Unicode format
# characters (category Cf: zero-width spaces, bidi embeddings, overrides and isolates, marks, BOM)
# before they are checked for emptiness and uniqueness: `v\u200bip` is the tag `vip`, a contact named
# only U+200B has no name, and `photo\u202egnp.exe` is `photognp.exe`. The zero-width joiner and
# non-joiner stay only between two visible characters, where they shape emoji sequences and Persian or
# Indic words; comparison keys drop them too.

_JOINERS = "\u200c\u200d"


def _is_format(ch: str) -> bool:
    return unicodedata.category(ch) == "Cf"


def tidy_name(value: str) -> str:
    """`value` without format characters and with runs of whitespace collapsed to one space."""
    kept: list[str] = []
    for index, ch in enumerate(value):
        if not _is_format(ch):
            kept.append(ch)
        elif ch in _JOINERS and 0 < index < len(value) - 1:
            before, after = value[index - 1], value[index + 1]
            if not (before.isspace() or after.isspace() or _is_format(before) or _is_format(after)):
                kept.append(ch)
    return " ".join("".join(kept).split())


def name_key(value: str) -> str:
    """The comparison key of a cleaned name: folded, with joiners dropped too."""
    return fold("".join(ch for ch in value if ch not in _JOINERS))
