"""@mentions written by name in internal comments: "@Ana María ¿lo ves?" mentions Ana María.

The web composer sends the ids of the people it offered; API users may instead write teammates as
`@Full Name` and the server finds them. Rules of `resolve_mentions`:

- matching is case- and accent-insensitive (`kit.text.fold`), and runs of spaces inside a name
  do not matter ("@ana  maria" is Ana María), but a name never spans a line break;
- the longest name wins: with both "Ana" and "Ana María" in the workspace, "@Ana María" is Ana
  María and "@Ana, ..." is Ana;
- a name ends at a word boundary: "@Anabel" does not mention Ana;
- the `@` starts the text or follows a character that is not a letter, digit or `_`, so an
  e-mail address ("ana@example.com") mentions no one;
- a name shared by several members mentions each of them (nothing in the text tells them apart).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.kit.text import fold
from tertulia.users.models import Membership, User

_SPACES = re.compile(r"[^\S\n]+")


@dataclass(frozen=True)
class Mentionable:
    user_id: int
    name: str


def name_key(name: str) -> str:
    """The comparison form of a name: folded, inner whitespace collapsed to one space."""
    return " ".join(fold(name).split())


def _is_word(character: str) -> bool:
    return character.isalnum() or character == "_"


def resolve_mentions(text: str, members: Iterable[Mentionable]) -> list[int]:
    """The ids of the members written as `@Full Name` in `text`: in order of first appearance,
    each once. Pure: the caller decides who may be mentioned (active members of the workspace)."""
    by_key: dict[str, list[int]] = {}
    for member in members:
        key = name_key(member.name)
        if key:
            by_key.setdefault(key, []).append(member.user_id)
    if not by_key or "@" not in text:
        return []
    keys = sorted(by_key, key=len, reverse=True)
    # Folding may lengthen a character (NFKD), never more than a few times; the window only
    # needs to hold the longest name plus the character after it.
    span = 4 * len(keys[0]) + 8
    found: dict[int, None] = {}
    for match in re.finditer("@", text):
        at = match.start()
        if at > 0 and _is_word(text[at - 1]):
            continue
        after = text[at + 1 : at + 1 + span]
        if not after or after[0].isspace():
            continue
        window = _SPACES.sub(" ", fold(after))
        for key in keys:
            if window.startswith(key) and (len(window) == len(key) or not _is_word(window[len(key)])):
                for user_id in by_key[key]:
                    found.setdefault(user_id, None)
                break
    return list(found)


def mentionable_members(session: Session, workspace_id: int) -> list[Mentionable]:
    """The workspace's active members, by the name the inbox shows for them."""
    rows = session.execute(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.workspace_id == workspace_id, Membership.active.is_(True))
    ).scalars()
    return [Mentionable(user.id, user.full_name) for user in rows]
