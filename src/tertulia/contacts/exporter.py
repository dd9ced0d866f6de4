"""CSV export of contacts, streamed: keyset batches (`WHERE id > last ORDER BY id LIMIT n`), one text
chunk per batch, so a million contacts never sit in memory at once.

The header row uses the field names (`first_name`, `custom:plan`, `tags`), which the importer maps
back without a mapping, so export -> import round-trips.

Formula injection: a cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading `'`,
so a spreadsheet shows it as text instead of evaluating it. Two shapes are left alone because they
cannot hold a formula and must stay recognisable: a phone number (`+` then digits, optionally spaced,
as E.164 and most raw phone input) and a plain negative number (`-12`, `-3.5`). The importer removes
the `'` again.
"""

import bisect
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.orm import Session

from tertulia.contacts.fields import STANDARD_FIELDS
from tertulia.contacts.models import Contact
from tertulia.contacts.repository import custom_fields as load_custom_fields
from tertulia.contacts.repository import tag_names_by_contact
from tertulia.kit.errors import ValidationFailed
from tertulia.users.models import Membership, User
from tertulia.users.permissions import Actor, Permission

STANDARD_EXPORT_FIELDS = tuple(field.name for field in STANDARD_FIELDS if field.exported)
# The id leads, so a file exported, edited and imported again updates the same contacts.
DEFAULT_FIELDS = (
    "id",
    *(field.name for field in STANDARD_FIELDS if field.exported_by_default and field.name != "id"),
)
CUSTOM_PREFIX = "custom:"
DEFAULT_BATCH_SIZE = 1000
TAG_SEPARATOR = ", "
_SAFE_SHAPES = re.compile(r"^(\+[0-9][0-9 ]*|-[0-9]+(\.[0-9]+)?)$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """The cell as a spreadsheet should see it: never a formula (see the module docstring)."""
    if value.startswith(_FORMULA_START) and not _SAFE_SHAPES.match(value):
        return "'" + value
    return value


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)


def check_fields(session: Session, workspace_id: int, fields: Sequence[str] | None) -> list[str]:
    """The chosen fields, validated; default: the standard fields, every custom field, then tags."""
    keys = [d.key for d in load_custom_fields(session, workspace_id)]
    if not fields:
        return [*DEFAULT_FIELDS, *(CUSTOM_PREFIX + key for key in keys), "tags"]
    chosen: list[str] = []
    errors: dict[str, str] = {}
    for raw in fields:
        name = raw.strip()
        if name.startswith(CUSTOM_PREFIX):
            if name[len(CUSTOM_PREFIX) :] not in keys:
                errors[f"fields.{name}"] = "no such custom field"
        elif name not in (*STANDARD_EXPORT_FIELDS, "tags"):
            errors[f"fields.{name}"] = "unknown field"
        if name in chosen:
            errors[f"fields.{name}"] = "listed twice"
        chosen.append(name)
    if errors:
        raise ValidationFailed("Unknown export fields.", details=errors)
    return chosen


def export_contacts(
    session: Session,
    actor: Actor,
    *,
    fields: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    where: ColumnElement[bool] | None = None,
    bom: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[str]:
    """Text chunks of a CSV file: the header, then one chunk per batch of contacts.

    Permission and fields are checked now, before the first chunk is asked for. `ids` and `where`
    narrow the workspace's contacts (a segment passes its compiled clause); the workspace scope is
    always applied.
    """
    actor.require(Permission.EXPORT_CONTACTS)
    if batch_size < 1:
        raise ValidationFailed.field("batch_size", "must be at least 1")
    chosen = check_fields(session, actor.workspace_id, fields)
    return _chunks(session, actor.workspace_id, chosen, ids, where, bom, batch_size)


def _chunks(
    session: Session,
    workspace_id: int,
    fields: list[str],
    ids: Sequence[int] | None,
    where: ColumnElement[bool] | None,
    bom: bool,
    batch_size: int,
) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(fields)
    yield ("\ufeff" if bom else "") + buffer.getvalue()
    wants_tags = "tags" in fields
    assignee_emails: dict[int, str] = {}
    if "assignee_email" in fields:
        members = session.execute(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id)
        )
        for user_id, email in members:
            assignee_emails[user_id] = email
    # Plain rows, not ORM objects: nothing lands in the session's identity map, and it is faster.
    base = select(Contact.__table__).where(Contact.workspace_id == workspace_id)
    if where is not None:
        base = base.where(where)
    id_list = sorted(set(ids)) if ids is not None else None
    last_id = 0
    while True:
        query = base.where(Contact.id > last_id)
        if id_list is not None:
            # Each batch asks for its own slice of ids, so the IN list stays small.
            position = bisect.bisect_right(id_list, last_id)
            slice_ids = id_list[position : position + batch_size]
            if not slice_ids:
                return
            query = query.where(Contact.id.in_(slice_ids))
        contacts = session.execute(query.order_by(Contact.id).limit(batch_size)).all()
        if not contacts:
            if id_list is None:
                return
            last_id = slice_ids[-1]
            continue
        tags = tag_names_by_contact(session, [c.id for c in contacts]) if wants_tags else {}
        buffer.seek(0)
        buffer.truncate()
        cells = _cell_functions(fields, tags, assignee_emails)
        writer.writerows([[safe_cell(cell(contact)) for cell in cells] for contact in contacts])
        last_id = contacts[-1].id if id_list is None else max(contacts[-1].id, slice_ids[-1])
        yield buffer.getvalue()


def _cell_functions(
    fields: list[str], tags: dict[int, list[str]], assignee_emails: dict[int, str]
) -> list[Callable[[Row[Any]], str]]:
    """One function per field, decided once per batch instead of once per cell."""
    functions: list[Callable[[Row[Any]], str]] = []
    for name in fields:
        if name == "tags":
            functions.append(lambda row: TAG_SEPARATOR.join(tags.get(row.id, ())))
        elif name.startswith(CUSTOM_PREFIX):
            key = name[len(CUSTOM_PREFIX) :]
            functions.append(lambda row, key=key: _text((row.custom or {}).get(key)))  # type: ignore[misc]
        elif name == "assignee_email":
            functions.append(lambda row: assignee_emails.get(row.assignee_id, "") if row.assignee_id else "")
        else:
            functions.append(lambda row, get=attrgetter(name): _text(get(row)))  # type: ignore[misc]
    return functions
