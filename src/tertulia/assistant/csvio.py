"""CSV import and export of knowledge entries.

Format: `;`-separated, UTF-8 (a BOM is accepted; a file that is not UTF-8 is read as Latin-1),
header `question;alternatives;answer;topic;language`, and optionally `buttons;active`. Several
alternatives (or buttons) in one cell are separated by `|`. Import matches entries by language
and question (case, accents and spacing aside): a known question is updated, a new one created.

Every row is checked with the same rules as the API; a bad row is reported with every reason
(line number and field) and skipped, the good rows are written. Two rows with the same question
in one file: the later is reported as a duplicate of the earlier line.

Export neutralises formulas: a cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets
a leading `'` (the contacts export's rule), which the import removes again; a cell that already
starts with quotes before such a character gets one more. So a file exported and imported back is
unchanged.
"""

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from tertulia.assistant import repository, service
from tertulia.assistant.models import KnowledgeEntry
from tertulia.contacts.exporter import safe_cell
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import has_unsafe_characters
from tertulia.users.permissions import Actor, Permission

REQUIRED = ("question", "alternatives", "answer", "topic", "language")
OPTIONAL = ("buttons", "active")
COLUMNS = (*REQUIRED, *OPTIONAL)
SEPARATOR = "|"
MAX_ROWS = 5000
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TRUE = {"true", "1", "yes", "si", "sí", "y", "s"}
_FALSE = {"false", "0", "no", "n"}


@dataclass
class RowError:
    line: int
    errors: dict[str, str]


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    rejected: list[RowError] = field(default_factory=list)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _unprotect(value: str) -> str:
    if value.startswith("'") and value.lstrip("'").startswith(_FORMULA_START):
        return value[1:]
    return value


def _protect(value: str) -> str:
    """The export's cell: never a formula (`safe_cell`), and a cell that already starts with the
    quote the import would remove keeps it (one more quote), so the import gives it back as it was."""
    if value.startswith("'") and value.lstrip("'").startswith(_FORMULA_START):
        return "'" + value
    return safe_cell(value)


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(SEPARATOR) if part.strip()]


def _active(cell: str) -> Any:
    value = cell.strip().lower()
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return cell  # not a boolean: refused by the entry's check


def read_rows(data: bytes) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and each data row as a dict (with its line number in the file)."""
    text = _decode(data)
    if has_unsafe_characters(text):
        raise ValidationFailed.field("file", "The file contains NUL characters or unpaired surrogates.")
    try:
        return _read(text)
    except csv.Error as exc:  # a cell over the csv module's size limit, a stray quote at the end
        raise ValidationFailed.field("file", "The file is not a CSV file this page can read.") from exc


def _read(text: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=";", strict=False)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ValidationFailed.field("file", "The file is empty.") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ValidationFailed.field(
            "file",
            "The first line must name the columns question;alternatives;answer;topic;language.",
        )
    rows: list[tuple[int, dict[str, str]]] = []
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise ValidationFailed.field("file", "A file can have at most 5,000 rows.")
        values = {name: _unprotect(cells[i]) if i < len(cells) else "" for i, name in enumerate(header)}
        rows.append((reader.line_num, values))
    return header, rows


def do_import(session: Session, actor: Actor, data: bytes, *, dry_run: bool = False) -> ImportReport:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    _, rows = read_rows(data)
    report = ImportReport(rows=len(rows))
    good: list[service.EntryValues] = []
    first_line: dict[tuple[str, str], int] = {}
    for line, values in rows:
        raw: dict[str, Any] = {
            "question": values.get("question", ""),
            "alternatives": _split(values.get("alternatives", "")),
            "answer": values.get("answer", ""),
            "topic": values.get("topic", ""),
            "language": values.get("language", ""),
            "buttons": _split(values.get("buttons", "")),
            "active": _active(values.get("active", "")),
        }
        try:
            checked = service.check_entry_values(session, actor.workspace_id, raw)
        except ValidationFailed as exc:
            details = exc.details if isinstance(exc.details, dict) else {}
            report.rejected.append(RowError(line, {str(k): str(v) for k, v in details.items()}))
            continue
        key = (checked.language, checked.question_key)
        if key in first_line:
            report.rejected.append(RowError(line, {"question": f"same question as line {first_line[key]}"}))
            continue
        first_line[key] = line
        good.append(checked)
    if dry_run:
        existing = repository.entries_by_key(session, actor.workspace_id, [(v.language, v.question_key) for v in good])
        report.updated = sum(1 for v in good if (v.language, v.question_key) in existing)
        report.created = len(good) - report.updated
        return report
    result = service.do_upsert_entries(session, actor, good)
    report.created, report.updated = len(result.created), len(result.updated)
    return report


def export_csv(entries: Sequence[KnowledgeEntry]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        cells = [
            entry.question,
            SEPARATOR.join(entry.alternatives or []),
            entry.answer,
            entry.topic,
            entry.language,
            SEPARATOR.join(entry.buttons or []),
            "true" if entry.active else "false",
        ]
        writer.writerow([_protect(c) for c in cells])
    return out.getvalue()


def export_entries(session: Session, actor: Actor) -> str:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    return export_csv(repository.all_entries(session, actor.workspace_id))
