"""CSV import of contacts, shared by the command line and the web app's background import job.

`import_contacts(session, actor, source, options, on_progress=..., on_batch_written=...)` reads a
binary file, validates every row with the same rules as the API (`service.clean_contact_values`) and
writes set-based, batch by batch.

Decisions worth knowing:

- Decoding: UTF-8 with or without a BOM; if any byte sequence is not UTF-8, the whole file is read as
  Windows-1252 (bytes that code page leaves undefined fall back to Latin-1, so decoding never fails).
  The separator is the one of `,` `;` or tab that occurs most often, outside quotes, in the header line
  (ties go to `,`). Quoted cells may hold separators and newlines.
- Transactions: the importer never commits. It flushes one batch at a time and then calls
  `on_batch_written(report)`; the caller commits there (the CLI does), so each batch is atomic, other
  writers interleave between batches, and after a crash `report.written_through_line` tells which rows
  are stored. Rerunning the same file with `update_existing` is then safe. A caller that passes no
  callback gets one transaction for the whole file.
- Matching (update mode): by `id`, then email, then phone. An `id` that names no contact of this
  workspace falls through to email and phone; a row matching nothing is created. Empty cells never
  clear a value; tags are only ever added.
- Duplicates inside the file (same id, email or phone as an earlier row): in create mode the later row
  is rejected as a duplicate of that line; in update mode it is applied on top of the contact the
  earlier line creates or updates, and counted as `merged`. The outcome of every row depends only on
  the file and the database as it was before the import, so a dry run reports exactly what a real run
  does, whatever the batch size.
- A row is rejected with every reason at once (each bad field); a row whose email or phone belongs
  to another contact than the one it targets is rejected too.
- A leading `'` before `=`, `+`, `-`, `@`, tab or CR is removed: that is how our exporter (and many
  spreadsheets) protect cells from formula injection, so an exported file imports back unchanged.
- Speed (100,000 rows is the yardstick): per batch, one lookup query per key (id, email, phone), ids
  allocated up front, then contacts, contact_tags and one "imported" activity per contact go in through
  the driver (COPY on PostgreSQL, executemany on SQLite). Validation is most of the CPU time, so for
  large files it runs in worker processes (`ImportOptions.workers`) while this process writes.
  On PostgreSQL the lookups probe the unique indexes value by value, and the importer refreshes the
  table statistics while it grows the table, so the planner never falls back to scanning the workspace.
- Concurrency: a contact created elsewhere between a batch's lookup and its insert (same email or
  phone) makes that batch fail with an IntegrityError; earlier batches stay written (see above).
"""

import codecs
import csv
import io
import multiprocessing
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO

from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Table, func, select, text
from sqlalchemy.orm import Session

from tertulia.contacts.exporter import safe_cell
from tertulia.contacts.fields import SETTABLE_COLUMNS, STANDARD_FIELDS
from tertulia.contacts.models import Contact, ContactActivity, ContactTag, CustomField, FieldType, Tag
from tertulia.contacts.repository import custom_fields as load_custom_fields
from tertulia.contacts.service import (
    CleanedContact,
    FieldContext,
    activity_row,
    apply_cleaned,
    check_tag_names,
    clean_contact_values,
    ensure_tags,
    folded_custom,
)
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.models import Base
from tertulia.kit.text import UNSAFE_TEXT_MESSAGE, fold, has_unsafe_characters, replace_unsafe_characters
from tertulia.users.models import Membership, User
from tertulia.users.permissions import Actor, Permission
from tertulia.workspaces.models import Workspace
from tertulia.workspaces.service import get_workspace

ProgressCallback = Callable[[int, int], None]

# What a CSV column can be mapped to: an importable standard field, or nothing.
TARGETS = (*(field.name for field in STANDARD_FIELDS if field.importable), "ignore")
CUSTOM_PREFIX = "custom:"
DEFAULT_BATCH_SIZE = 2000
PARALLEL_FROM_ROWS = 20_000
# A cell larger than this means the file is not the CSV it claims to be.
MAX_CELL_CHARS = 1_000_000
# Columns a file may have: each is a select on the mapping page and a field of its form.
MAX_COLUMNS = 500
_UNIQUE = ("email", "phone")
_TAG_SPLIT = re.compile(r"[,;|]")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SNIFF_CHARS = 64 * 1024
_LATIN1_FALLBACK = "tertulia-latin1-fallback"

if csv.field_size_limit() < MAX_CELL_CHARS:
    csv.field_size_limit(MAX_CELL_CHARS)


def _latin1_fallback(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return exc.object[exc.start : exc.end].decode("latin-1"), exc.end


codecs.register_error(_LATIN1_FALLBACK, _latin1_fallback)


# ----- header guessing ----------------------------------------------------------------------

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "first_name": (
        "first name",
        "firstname",
        "first",
        "given name",
        "name",
        "full name",
        "contact name",
        "nombre",
        "nombres",
        "primer nombre",
        "nombre completo",
        "nombre de pila",
    ),
    "last_name": (
        "last name",
        "lastname",
        "last",
        "surname",
        "surnames",
        "family name",
        "apellido",
        "apellidos",
        "primer apellido",
        "apellido paterno",
    ),
    "email": (
        "email",
        "e mail",
        "email address",
        "e mail address",
        "mail",
        "correo",
        "correo electronico",
        "correo e",
        "email correo",
        "direccion de correo",
    ),
    "phone": (
        "phone",
        "phone number",
        "telephone",
        "tel",
        "mobile",
        "mobile phone",
        "mobile number",
        "cell",
        "cell phone",
        "cellphone",
        "whatsapp",
        "telefono",
        "numero de telefono",
        "telefono movil",
        "celular",
        "movil",
        "numero",
    ),
    "language": ("language", "lang", "locale", "idioma", "lengua"),
    "country": ("country", "country code", "pais", "codigo de pais", "nacionalidad"),
    "avatar_url": ("avatar", "avatar url", "picture", "photo", "profile picture", "image", "foto", "imagen"),
    "assignee_email": ("assignee", "assignee email", "owner", "agent", "asignado", "asignado a", "agente"),
    "assignee_id": ("assignee id",),
    "tags": ("tags", "tag", "labels", "label", "etiquetas", "etiqueta"),
    "id": ("id", "contact id", "id contacto", "id de contacto"),
}
_GUESS = {synonym: target for target, synonyms in _SYNONYMS.items() for synonym in synonyms}


def _header_key(header: str) -> str:
    """'Apellido(s)' -> 'apellidos', 'E-mail' -> 'e mail', 'first_name' -> 'first name'."""
    text = fold(header).replace("(", "").replace(")", "")
    text = re.sub(r"[\s_\-./:#]+", " ", text)
    return text.strip()


def guess_mapping(headers: Sequence[str], custom_fields: Sequence[CustomField]) -> dict[str, str]:
    """Header -> target for every header; `ignore` where nothing fits. Each target is used once:
    the first header that fits takes it."""
    custom_by_key: dict[str, str] = {}
    for definition in custom_fields:
        custom_by_key.setdefault(_header_key(definition.key), definition.key)
        custom_by_key.setdefault(_header_key(definition.label), definition.key)
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for header in headers:
        if header in mapping:
            continue
        stripped = header.strip()
        target = "ignore"
        if stripped.lower().startswith(CUSTOM_PREFIX):
            key = stripped[len(CUSTOM_PREFIX) :].strip()
            if any(d.key == key for d in custom_fields):
                target = CUSTOM_PREFIX + key
        else:
            normalised = _header_key(stripped)
            if normalised in custom_by_key:
                target = CUSTOM_PREFIX + custom_by_key[normalised]
            elif normalised in _GUESS:
                target = _GUESS[normalised]
        assignee_taken = target.startswith("assignee_") and {"assignee_id", "assignee_email"} & taken
        if target in taken or assignee_taken:
            target = "ignore"
        if target != "ignore":
            taken.add(target)
        mapping[header] = target
    return mapping


def parse_mapping_option(text: str) -> dict[str, str]:
    """`"Nombre=first_name,Correo=email"` -> {"Nombre": "first_name", "Correo": "email"}."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        header, sep, target = part.partition("=")
        if not sep or not header.strip() or not target.strip():
            raise ValidationFailed.field("mapping", f"{part.strip()!r} is not Header=field")
        mapping[header.strip()] = target.strip()
    return mapping


def resolve_mapping(
    headers: Sequence[str], custom_fields: Sequence[CustomField], explicit: Mapping[str, str] | None
) -> list[str]:
    """The target of each column, by position. Explicit entries override the guess; every error
    (unknown header, unknown target, a target used twice) is reported before anything is written."""
    known_custom = {d.key for d in custom_fields}
    guessed = guess_mapping(headers, custom_fields)
    explicit = dict(explicit or {})
    errors: dict[str, str] = {}
    stripped_headers = [h.strip() for h in headers]
    for header, target in explicit.items():
        if header.strip() not in stripped_headers:
            errors[f"mapping.{header}"] = "no such column in the file"
        elif stripped_headers.count(header.strip()) > 1:
            errors[f"mapping.{header}"] = "the file has more than one column with this header"
        if target.startswith(CUSTOM_PREFIX):
            if target[len(CUSTOM_PREFIX) :] not in known_custom:
                errors[f"mapping.{header}"] = f"no custom field {target[len(CUSTOM_PREFIX) :]!r}"
        elif target not in TARGETS:
            errors[f"mapping.{header}"] = f"unknown field {target!r}; use one of {', '.join(TARGETS)} or custom:<key>"
    explicit_targets = {t for t in explicit.values() if t != "ignore"}
    targets: list[str] = []
    seen_headers: set[str] = set()
    for header, stripped in zip(headers, stripped_headers, strict=True):
        if stripped in explicit:
            target = explicit[stripped]
        elif header in explicit:
            target = explicit[header]
        elif stripped in seen_headers:
            target = "ignore"
        else:
            target = guessed.get(header, "ignore")
            # An explicit mapping takes a target away from a guessed column.
            if target in explicit_targets:
                target = "ignore"
        seen_headers.add(stripped)
        targets.append(target)
    used = [t for t in targets if t != "ignore"]
    for target in set(used):
        if used.count(target) > 1:
            errors[f"mapping.{target}"] = "more than one column maps to this field"
    if "assignee_id" in used and "assignee_email" in used:
        errors["mapping.assignee_email"] = "map either assignee_id or assignee_email, not both"
    if not errors and not used:
        errors["mapping"] = "no column maps to a contact field"
    if errors:
        raise ValidationFailed("The column mapping is not valid.", details=errors)
    return targets


# ----- reading the file ---------------------------------------------------------------------


@dataclass
class ImportOptions:
    mapping: Mapping[str, str] | None = None  # header -> target; overrides the guess
    update_existing: bool = False
    dry_run: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    encoding: str | None = None  # None: detect
    delimiter: str | None = None  # None: sniff
    # Processes that validate rows alongside the one writing. None: one, on a machine with more than
    # one CPU, for files of PARALLEL_FROM_ROWS rows or more (starting a process costs about a second);
    # one worker balances the writer best on two cores: a second one measured slower under load.
    workers: int | None = None
    # Data rows an interrupted run of the same job already committed: read past, not imported again.
    skip_rows: int = 0


@dataclass
class _Source:
    binary: IO[bytes]
    encoding: str
    errors: str
    delimiter: str
    owned: bool

    def text(self) -> io.TextIOWrapper:
        self.binary.seek(0)
        return io.TextIOWrapper(self.binary, encoding=self.encoding, errors=self.errors, newline="")

    def rows(self) -> Generator[tuple[int, list[str]], None, None]:
        """(first line of the record, cells), blank records skipped."""
        wrapper = self.text()
        try:
            reader = csv.reader(wrapper, delimiter=self.delimiter, strict=False)
            previous = 0
            while True:
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise ValidationFailed.field("file", f"line {reader.line_num}: {exc}") from exc
                start, previous = previous + 1, reader.line_num
                if any(cell.strip() for cell in cells):
                    yield start, cells
        finally:
            if not self.binary.closed:
                wrapper.detach()

    def close(self) -> None:
        if self.owned:
            self.binary.close()


def _open_binary(source: str | Path | bytes | IO[bytes]) -> tuple[IO[bytes], bool]:
    if isinstance(source, bytes):
        return io.BytesIO(source), True
    if isinstance(source, str | Path):
        try:
            return Path(source).open("rb"), True
        except OSError as exc:
            raise ValidationFailed.field("file", f"cannot be read: {exc.strerror or exc}") from exc
    if source.seekable():
        return source, False
    spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115 (closed by _Source)
    while chunk := source.read(1024 * 1024):
        spooled.write(chunk)
    return spooled, True


def _detect_encoding(binary: IO[bytes]) -> tuple[str, str]:
    binary.seek(0)
    head = binary.read(3)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "strict"
    binary.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := binary.read(1024 * 1024):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return "cp1252", _LATIN1_FALLBACK
    return "utf-8", "strict"


def _sniff_delimiter(sample: str) -> str:
    """The candidate seen most often outside quotes in the first record (ties: comma)."""
    counts = {",": 0, ";": 0, "\t": 0}
    quoted = False
    for char in sample:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "\r\n":
            break
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(counts.values())
    return "," if best == 0 or counts[","] == best else max(counts, key=lambda c: counts[c])


def open_source(
    source: str | Path | bytes | IO[bytes], *, encoding: str | None = None, delimiter: str | None = None
) -> _Source:
    binary, owned = _open_binary(source)
    try:
        detected, errors = (encoding, "strict") if encoding else _detect_encoding(binary)
        binary.seek(0)
        wrapper = io.TextIOWrapper(binary, encoding=detected, errors=errors, newline="")
        try:
            sample = wrapper.read(_SNIFF_CHARS)
        except UnicodeDecodeError as exc:
            raise ValidationFailed.field("file", f"is not valid {detected}") from exc
        finally:
            wrapper.detach()
        if not sample.strip():
            raise ValidationFailed.field("file", "is empty")
        if delimiter is not None and len(delimiter) != 1:
            raise ValidationFailed.field("delimiter", "must be one character")
        return _Source(binary, detected, errors, delimiter or _sniff_delimiter(sample), owned)
    except BaseException:
        if owned:
            binary.close()
        raise


# ----- the report ---------------------------------------------------------------------------

Outcome = Literal["created", "updated", "unchanged", "merged"]


@dataclass
class RejectedRow:
    line: int  # 1-based line in the file where the record starts
    values: list[str]  # the cells as read, aligned with ImportReport.headers
    reasons: dict[str, str]  # field -> why

    @property
    def error(self) -> str:
        return "; ".join(f"{name}: {reason}" for name, reason in self.reasons.items())


@dataclass
class ImportReport:
    headers: list[str]
    targets: list[str]  # target of each column, by position
    encoding: str
    delimiter: str
    dry_run: bool
    update_existing: bool
    total_rows: int = 0
    processed_rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0  # later rows of the file applied to the contact an earlier row targets
    rejected: list[RejectedRow] = field(default_factory=list)
    # Every row up to this line is stored once the caller commits the batch it was told about.
    written_through_line: int = 0

    @property
    def mapping(self) -> dict[str, str]:
        return {h: t for h, t in zip(self.headers, self.targets, strict=True) if t != "ignore"}

    @property
    def ignored_headers(self) -> list[str]:
        return [h for h, t in zip(self.headers, self.targets, strict=True) if t == "ignore"]

    def count(self, outcome: Outcome) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)


def write_rejected_csv(report: ImportReport, out: TextIO | Path) -> int:
    """The rejected rows as read, plus an `error` column (`line N: field: reason; ...`). Returns the count.

    Every cell goes through the export's formula neutralisation (a spreadsheet opening the file must
    not run a formula from someone else's CSV), and NUL or unpaired surrogates, which got the row
    rejected, are shown as U+FFFD."""
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="") as handle:
            return write_rejected_csv(report, handle)

    def cell(value: str) -> str:
        return safe_cell(replace_unsafe_characters(value))

    writer = csv.writer(out)
    writer.writerow([cell(header) for header in [*report.headers, "error"]])
    for row in report.rejected:
        cells = list(row.values[: len(report.headers)])
        cells += [""] * (len(report.headers) - len(cells))
        writer.writerow([cell(value) for value in [*cells, f"line {row.line}: {row.error}"]])
    return len(report.rejected)


def check_headers(cells: Sequence[str]) -> list[str]:
    """The header row's column names, or ValidationFailed for a file this importer cannot take."""
    if len(cells) > MAX_COLUMNS:
        raise ValidationFailed.field("file", f"has {len(cells)} columns; at most {MAX_COLUMNS} can be imported")
    headers = [header.strip() for header in cells]
    for index, header in enumerate(headers):
        if has_unsafe_characters(header):
            raise ValidationFailed.field("file", f"column {index + 1} of the header {UNSAFE_TEXT_MESSAGE}")
    return headers


# ----- planning and writing -----------------------------------------------------------------

Ref = tuple[str, int]  # ("db", contact id) or ("new", line of the row that creates it)


@dataclass
class _Row:
    line: int
    cells: list[str]
    contact_id: int | None = None
    cleaned: CleanedContact = field(default_factory=CleanedContact)
    tags: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class _PendingCreate:
    line: int
    cleaned: CleanedContact
    tags: list[str]


@dataclass
class _PendingUpdate:
    contact: Contact
    cleaned: CleanedContact
    tags: list[str]


@dataclass
class _Batch:
    by_id: dict[int, Contact] = field(default_factory=dict)
    by_value: dict[str, dict[str, Contact]] = field(default_factory=lambda: {"email": {}, "phone": {}})
    tag_keys: dict[int, set[str]] = field(default_factory=dict)
    creates: dict[Ref, _PendingCreate] = field(default_factory=dict)
    updates: dict[Ref, _PendingUpdate] = field(default_factory=dict)


def _merge(into: CleanedContact, other: CleanedContact) -> None:
    into.columns.update(other.columns)
    into.custom.update(other.custom)


def _is_number(cell: str) -> bool:
    # str.isdigit() alone accepts "²", which int() refuses.
    return cell.isascii() and cell.isdigit() and len(cell) < 19


def _unescape(cell: str) -> str:
    if len(cell) > 1 and cell[0] == "'" and cell[1] in _FORMULA_START:
        return cell[1:]
    return cell


@dataclass(frozen=True)
class _ParserSpec:
    """Everything needed to validate rows without a database, plain data so it can go to a worker process."""

    headers: int
    targets: tuple[str, ...]
    default_country: str | None
    custom_fields: tuple[tuple[str, str, str, tuple[str, ...] | None], ...]  # key, label, type, options
    member_ids: frozenset[int]
    member_by_email: tuple[tuple[str, int], ...]


class _RowParser:
    """Turns the cells of one record into cleaned values or reasons, with the API's validation."""

    def __init__(self, spec: _ParserSpec) -> None:
        self.spec = spec
        self.member_by_email = dict(spec.member_by_email)
        definitions = {
            key: CustomField(key=key, label=label, type=FieldType(kind), options=list(options) if options else None)
            for key, label, kind, options in spec.custom_fields
        }

        def check_assignee(user_id: int) -> None:
            if user_id not in spec.member_ids:
                raise ValidationFailed.field("assignee_id", f"no active user {user_id} in this workspace")

        # Only the default country of the workspace is read while validating.
        workspace = Workspace(default_country=spec.default_country)
        self.ctx = FieldContext(workspace=workspace, definitions=definitions, check_assignee=check_assignee)

    def parse_many(self, records: Sequence[tuple[int, list[str]]]) -> list[_Row]:
        return [self.parse(line, cells) for line, cells in records]

    def parse(self, line: int, cells: list[str]) -> _Row:
        row = _Row(line=line, cells=cells)
        headers = self.spec.headers
        if len(cells) > headers and any(cell.strip() for cell in cells[headers:]):
            row.errors["row"] = f"has {len(cells)} cells but the header has {headers}"
            return row
        values: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for target, raw in zip(self.spec.targets, cells, strict=False):
            if target == "ignore":
                continue
            cell = _unescape(raw).strip()
            if not cell:
                continue
            if has_unsafe_characters(cell):  # the one rule for text from outside (kit.text)
                row.errors[target.removeprefix(CUSTOM_PREFIX)] = UNSAFE_TEXT_MESSAGE
                continue
            if target.startswith(CUSTOM_PREFIX):
                custom[target[len(CUSTOM_PREFIX) :]] = cell
            elif target == "id":
                if _is_number(cell):
                    row.contact_id = int(cell)
                else:
                    row.errors["id"] = "must be a contact id (a number)"
            elif target == "tags":
                names = [name for name in _TAG_SPLIT.split(cell) if name.strip()]
                try:
                    row.tags = check_tag_names(names)
                except ValidationFailed as exc:
                    row.errors.update(exc.details or {"tags": exc.message})
            elif target == "assignee_id":
                values["assignee_id"] = int(cell) if _is_number(cell) else cell
            elif target == "assignee_email":
                user_id = self.member_by_email.get(cell.lower())
                if user_id is None:
                    row.errors["assignee_email"] = "no active user with this email in this workspace"
                else:
                    values["assignee_id"] = user_id
            else:
                values[target] = cell
        if custom:
            values["custom_fields"] = custom
        try:
            row.cleaned = clean_contact_values(values, self.ctx)
        except ValidationFailed as exc:
            row.errors.update(exc.details or {"row": exc.message})
        return row


_worker_parser: _RowParser | None = None


def _init_worker(spec: _ParserSpec) -> None:
    global _worker_parser
    _worker_parser = _RowParser(spec)


def _parse_in_worker(records: list[tuple[int, list[str]]]) -> list[_Row]:
    assert _worker_parser is not None
    return _worker_parser.parse_many(records)


class _Importer:
    def __init__(self, session: Session, actor: Actor, options: ImportOptions, report: ImportReport) -> None:
        self.session = session
        self.actor = actor
        self.options = options
        self.report = report
        workspace_id = actor.workspace_id
        members = session.execute(
            select(User.id, User.email)
            .join(Membership, Membership.user_id == User.id)
            .where(Membership.workspace_id == workspace_id, Membership.active.is_(True))
        ).all()
        self.spec = _ParserSpec(
            headers=len(report.headers),
            targets=tuple(report.targets),
            default_country=get_workspace(session, workspace_id).default_country,
            custom_fields=tuple(
                (d.key, d.label, d.type.value, tuple(d.options) if d.options else None)
                for d in load_custom_fields(session, workspace_id)
            ),
            member_ids=frozenset(user_id for user_id, _ in members),
            member_by_email=tuple((email.lower(), user_id) for user_id, email in members),
        )
        # File-wide state, so a row's outcome never depends on where batches start.
        self.owners: dict[str, dict[str, Ref | None]] = {"email": {}, "phone": {}}  # None: released
        # Target -> its current email / phone. Two flat dicts, not one small dict per contact: fewer
        # objects for the garbage collector to walk on a large file.
        self.current: dict[str, dict[Ref, str | None]] = {"email": {}, "phone": {}}
        self.new_ids: dict[int, int] = {}  # line -> id of the contact it created
        self.new_refs: dict[int, Ref] = {}  # id -> ("new", line)
        self.created_since_analyze = 0

    def parsed_batches(self, records: Iterator[tuple[int, list[str]]], workers: int) -> Iterator[list[_Row]]:
        """Batches of parsed rows, in file order. With workers, validation (most of an import's CPU
        time) runs in other processes while this one writes; a few batches are read ahead, no more."""
        chunks = _batches(records, self.options.batch_size)
        if workers < 1:
            parser = _RowParser(self.spec)
            for chunk in chunks:
                yield parser.parse_many(chunk)
            return
        # spawn, not fork: forking a process that runs threads (the web app's job consumers) can deadlock.
        context = multiprocessing.get_context("spawn")
        local: _RowParser | None = None
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(self.spec,)) as pool:
            pending: deque[tuple[list[tuple[int, list[str]]], Future[list[_Row]] | None]] = deque()

            def next_done() -> list[_Row]:
                nonlocal local
                chunk, future = pending.popleft()
                if future is not None:
                    try:
                        return future.result()
                    except BrokenExecutor:
                        # Workers could not start (e.g. a __main__ without the `if __name__` guard):
                        # validate here instead, nothing is lost.
                        pass
                local = local or _RowParser(self.spec)
                return local.parse_many(chunk)

            for chunk in chunks:
                future: Future[list[_Row]] | None = None
                if local is None:
                    try:
                        future = pool.submit(_parse_in_worker, chunk)
                    except BrokenExecutor:
                        future = None
                pending.append((chunk, future))
                if len(pending) > workers * 2:
                    yield next_done()
            while pending:
                yield next_done()

    # -- a batch --

    def _ref_id(self, ref: Ref) -> int | None:
        kind, number = ref
        return number if kind == "db" else self.new_ids.get(number)

    def _id_ref(self, contact_id: int) -> Ref:
        return self.new_refs.get(contact_id, ("db", contact_id))

    def load(self, rows: Sequence[_Row]) -> _Batch:
        """One query per kind of key for the whole batch."""
        batch = _Batch()
        ws = self.actor.workspace_id
        wanted: dict[str, set[str]] = {"email": set(), "phone": set()}
        ids: set[int] = set()
        for row in rows:
            if row.contact_id is not None:
                ids.add(row.contact_id)
            for column in _UNIQUE:
                value = row.cleaned.columns.get(column)
                if not value:
                    continue
                wanted[column].add(value)
                ref = self.owners[column].get(value)
                if ref is not None and (known := self._ref_id(ref)) is not None:
                    ids.add(known)
        if ids:
            for contact in self.session.scalars(select(Contact).where(Contact.workspace_id == ws, Contact.id.in_(ids))):
                batch.by_id[contact.id] = contact
        if wanted["email"] or wanted["phone"]:
            self._refresh_planner_statistics()
        for column in _UNIQUE:
            if wanted[column]:
                for contact in self.session.scalars(_by_values_query(self.session, ws, column, wanted[column])):
                    batch.by_value[column][getattr(contact, column)] = contact
                    batch.by_id[contact.id] = contact
        if batch.by_id:
            pairs = self.session.execute(
                select(ContactTag.contact_id, Tag.name_key)
                .join(Tag, Tag.id == ContactTag.tag_id)
                .where(ContactTag.contact_id.in_(list(batch.by_id)))
            )
            for contact_id, key in pairs:
                batch.tag_keys.setdefault(contact_id, set()).add(key)
        return batch

    def _refresh_planner_statistics(self) -> None:
        """ANALYZE contacts on PostgreSQL when its statistics are missing or far behind what this import
        has added. Without them the planner serves the lookups with whichever `(workspace_id, ...)`
        index looks cheapest and filters every contact of the workspace once per value: measured at
        0.9 s for one batch against 2,000 contacts, 1.6 s against 4,000. (Counted here, not read from
        pg_stat: those counters reach the catalog only about a second after a commit.)"""
        if self.session.get_bind().dialect.name != "postgresql":
            return
        estimated = float(self.session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = 'contacts'::regclass")))
        if estimated < 0 or self.created_since_analyze > max(1000.0, estimated / 2):
            self.session.execute(text("ANALYZE contacts"))
            self.created_since_analyze = 0

    def _owner(self, batch: _Batch, column: str, value: str) -> Ref | None:
        owners = self.owners[column]
        if value in owners:
            return owners[value]
        contact = batch.by_value[column].get(value)
        return None if contact is None else self._id_ref(contact.id)

    def _describe(self, ref: Ref) -> str:
        kind, number = ref
        return f"line {number} of this file" if kind == "new" else f"contact id:{number}"

    def _target(self, batch: _Batch, row: _Row) -> Ref | None:
        if row.contact_id is not None:
            ref = self._id_ref(row.contact_id)
            # A contact created by this import is found by id only once written; ignoring it keeps a
            # dry run and a real run in agreement.
            if ref[0] == "db" and (ref in self.current["email"] or row.contact_id in batch.by_id):
                return ref
        for column in _UNIQUE:
            value = row.cleaned.columns.get(column)
            if value and (owner := self._owner(batch, column, value)) is not None:
                return owner
        return None

    def plan(self, batch: _Batch, row: _Row) -> Outcome | None:
        """Decide what this row does (None: rejected, reasons in row.errors) and record it."""
        update_mode = self.options.update_existing
        target = self._target(batch, row) if update_mode else None
        if not update_mode and row.contact_id is not None:
            ref = self._id_ref(row.contact_id)
            if ref[0] == "db" and (ref in self.current["email"] or row.contact_id in batch.by_id):
                row.errors["id"] = f"contact id:{row.contact_id} already exists"
        for column in _UNIQUE:
            value = row.cleaned.columns.get(column)
            owner = self._owner(batch, column, value) if value else None
            if owner is not None and owner != target:
                prefix = "already used by" if update_mode else "duplicate: already used by"
                row.errors[column] = f"{prefix} {self._describe(owner)}"
        if row.errors:
            return None
        outcome: Outcome
        if target is None:
            if not any(row.cleaned.columns.get(n) for n in ("first_name", "last_name", "email", "phone")):
                row.errors["first_name"] = "a name, email or phone is required"
                return None
            target = ("new", row.line)
            self.current["email"][target] = self.current["phone"][target] = None
            outcome = "created"
        elif target in self.current["email"]:
            outcome = "merged"
        else:
            contact = batch.by_id[target[1]]
            self.current["email"][target] = contact.email
            self.current["phone"][target] = contact.phone
            for column in _UNIQUE:
                if getattr(contact, column):
                    self.owners[column][getattr(contact, column)] = target
            changed = bool(apply_cleaned(copy_contact(contact), row.cleaned))
            new_tags = {fold(name) for name in row.tags} - batch.tag_keys.get(contact.id, set())
            outcome = "updated" if changed or new_tags else "unchanged"
        for column in _UNIQUE:
            value = row.cleaned.columns.get(column)
            previous = self.current[column][target]
            if value and value != previous:
                if previous:
                    self.owners[column][previous] = None
                self.owners[column][value] = target
                self.current[column][target] = value
        if not self.options.dry_run:
            self._stage(batch, target, row)
        return outcome

    def _stage(self, batch: _Batch, target: Ref, row: _Row) -> None:
        if target in batch.creates:
            pending_create = batch.creates[target]
            _merge(pending_create.cleaned, row.cleaned)
            pending_create.tags += row.tags
        elif target in batch.updates:
            pending_update = batch.updates[target]
            _merge(pending_update.cleaned, row.cleaned)
            pending_update.tags += row.tags
        elif target == ("new", row.line):
            # The row is not read again after planning, so its cleaned values become the pending write.
            batch.creates[target] = _PendingCreate(row.line, row.cleaned, row.tags)
        else:
            contact_id = self._ref_id(target)
            assert contact_id is not None, "a target from an earlier batch has been written"
            batch.updates[target] = _PendingUpdate(batch.by_id[contact_id], row.cleaned, row.tags)

    def write(self, batch: _Batch) -> None:
        session, actor = self.session, self.actor
        now = utcnow()
        activities: list[dict[str, Any]] = []
        for pending in batch.updates.values():
            contact = pending.contact
            changes = apply_cleaned(contact, pending.cleaned)
            if changes:
                contact.updated_at = now
                activities += [activity_row(actor, contact.id, "updated", n, o, v) for n, o, v in changes]
                # Flushed in file order: a row may take an email or phone an earlier row released.
                if any(name in _UNIQUE for name, _, _ in changes):
                    session.flush()
        session.flush()
        names: dict[str, str] = {}
        tag_lists = [item.tags for item in batch.creates.values()] + [item.tags for item in batch.updates.values()]
        for tag_list in tag_lists:
            for name in tag_list:
                names.setdefault(fold(name), name)
        tag_ids = {tag.name_key: tag.id for tag in ensure_tags(session, actor.workspace_id, list(names.values()))}
        creates = list(batch.creates.values())
        # On PostgreSQL new contacts carry their tag_count in the COPY and the trigger is told not to
        # count their links again: its UPDATE of each just-inserted row was the import's largest cost
        # (migration 0600). SQLite's row trigger counts them as it does for every other writer.
        precounted = session.get_bind().dialect.name == "postgresql"
        new_links: list[dict[str, Any]] = []
        if creates:
            ids = _allocate_contact_ids(session, len(creates))
            rows: list[dict[str, Any]] = []
            for item, contact_id in zip(creates, ids, strict=True):
                keys = dict.fromkeys(fold(name) for name in item.tags)
                new_links += [{"contact_id": contact_id, "tag_id": tag_ids[key], "created_at": now} for key in keys]
                row = self._insert_values(contact_id, item.cleaned, now)
                if precounted:
                    row["tag_count"] = len(keys)
                rows.append(row)
                self.new_ids[item.line] = contact_id
                self.new_refs[contact_id] = ("new", item.line)
                activities.append({**activity_row(actor, contact_id, "imported"), "created_at": now})
            _bulk_insert(session, _table(Contact), rows)
            self.created_since_analyze += len(rows)
        links: list[dict[str, Any]] = []
        if batch.updates:
            updated_ids = [p.contact.id for p in batch.updates.values()]
            present: set[tuple[int, int]] = {
                (c, t)
                for c, t in session.execute(
                    select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(updated_ids))
                )
            }
            for pending in batch.updates.values():
                contact = pending.contact
                added = False
                for key in dict.fromkeys(fold(name) for name in pending.tags):
                    if (contact.id, tag_ids[key]) in present:
                        continue
                    present.add((contact.id, tag_ids[key]))
                    links.append({"contact_id": contact.id, "tag_id": tag_ids[key], "created_at": now})
                    activities.append(activity_row(actor, contact.id, "tag_added", "tags", None, names[key]))
                    added = True
                if added:
                    contact.updated_at = now
            session.flush()
        if precounted and new_links:
            _set_tag_links_precounted(session, True)
            _bulk_insert(session, _table(ContactTag), new_links)
            _set_tag_links_precounted(session, False)
        else:
            links = new_links + links
        _bulk_insert(session, _table(ContactTag), links)
        _bulk_insert(session, _table(ContactActivity), activities)

    def _insert_values(self, contact_id: int, cleaned: CleanedContact, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = dict.fromkeys(SETTABLE_COLUMNS)
        values.update(cleaned.columns)
        values["id"] = contact_id
        values["workspace_id"] = self.actor.workspace_id
        values["custom"] = {k: v for k, v in cleaned.custom.items() if v is not None}
        values["custom_folded"] = folded_custom(values["custom"])
        values["created_at"] = now
        values["updated_at"] = now
        return values


def _by_values_query(session: Session, workspace_id: int, column: str, values: set[str]) -> Any:
    """Contacts of the workspace whose email (or phone) is one of `values`.

    PostgreSQL gets one unique-index probe per value (LATERAL ... LIMIT 1): with `IN (2000 values)`
    its planner, misled by statistics that lag behind a growing import, scans every contact of the
    workspace on each batch, which made a 100k import quadratic. SQLite always probes the index."""
    if session.get_bind().dialect.name == "postgresql":
        statement = text(
            "SELECT c.* FROM unnest(CAST(:values AS text[])) AS v(value) CROSS JOIN LATERAL "
            f"(SELECT * FROM contacts WHERE workspace_id = :ws AND {column} = v.value LIMIT 1) AS c"
        ).bindparams(values=sorted(values), ws=workspace_id)
        return select(Contact).from_statement(statement)
    attribute = Contact.email if column == "email" else Contact.phone
    return select(Contact).where(Contact.workspace_id == workspace_id, attribute.in_(values))


def _allocate_contact_ids(session: Session, count: int) -> list[int]:
    """Ids for `count` new contacts, so rows, tags and activity go in without RETURNING (about twice
    as fast). PostgreSQL takes them from the table's sequence. On SQLite the write transaction holds the
    database's only write lock (BEGIN IMMEDIATE), so nobody else can take max(id) + 1 meanwhile; in a
    deferred transaction a concurrent writer makes our insert fail, never duplicate."""
    if session.get_bind().dialect.name == "postgresql":
        query = text("SELECT nextval(pg_get_serial_sequence('contacts', 'id')) FROM generate_series(1, :n)")
        return [int(value) for value in session.scalars(query, {"n": count})]
    start = int(session.scalar(select(func.max(Contact.id))) or 0) + 1
    return list(range(start, start + count))


def _set_tag_links_precounted(session: Session, on: bool) -> None:
    """Tell PostgreSQL's tag_count trigger (migration 0600) whether the links inserted next belong to
    contacts whose tag_count is already written. Local to the transaction, so a failed COPY that rolls
    it back cannot leave it on for anyone else."""
    session.execute(
        text("SELECT set_config('tertulia.tag_links_precounted', :value, true)"), {"value": "on" if on else "off"}
    )


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys, straight through the driver: COPY on PostgreSQL,
    executemany on SQLite. Values still go through each column type's own bind processing (done once
    per distinct value where it can be), so what is stored is what the ORM would store; skipping
    SQLAlchemy's per-row statement machinery makes the write phase about three times faster."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    columns = list(rows[0])
    raw = connection.connection.driver_connection
    assert raw is not None
    if dialect.name == "postgresql":
        json_columns = {column.name for column in table.columns if isinstance(column.type, JSON)}
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([Jsonb(row[c]) if c in json_columns and row[c] is not None else row[c] for c in columns])
        return
    processors = [table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns]
    values: list[list[Any]] = [[row[name] for name in columns] for row in rows]
    for index, processor in enumerate(processors):
        if processor is None:
            continue
        memo: dict[Any, Any] = {}
        for row_values in values:
            value = row_values[index]
            if value is None:
                continue
            if isinstance(value, dict | list):
                row_values[index] = processor(value)
            else:
                if value not in memo:
                    memo[value] = processor(value)
                row_values[index] = memo[value]
    placeholders = ", ".join("?" for _ in columns)
    cursor = raw.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", values)
    finally:
        cursor.close()


def copy_contact(contact: Contact) -> Contact:
    """A transient copy (never added to the session) to compute changes without writing them."""
    return Contact(
        **{name: getattr(contact, name) for name in (*SETTABLE_COLUMNS, "workspace_id")},
        custom=dict(contact.custom or {}),
    )


def _batches(rows: Iterator[tuple[int, list[str]]], size: int) -> Iterator[list[tuple[int, list[str]]]]:
    batch: list[tuple[int, list[str]]] = []
    for item in rows:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def import_contacts(
    session: Session,
    actor: Actor,
    source: str | Path | bytes | BinaryIO | IO[bytes],
    options: ImportOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
    on_batch_written: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import a CSV file into the actor's workspace. Raises ValidationFailed (field `file`,
    `mapping` or `mapping.<header>`) before writing anything when the file or mapping is unusable."""
    actor.require(Permission.IMPORT_CONTACTS)
    options = options or ImportOptions()
    if options.batch_size < 1:
        raise ValidationFailed.field("batch_size", "must be at least 1")
    custom_fields = load_custom_fields(session, actor.workspace_id)
    src = open_source(source, encoding=options.encoding, delimiter=options.delimiter)
    closing: list[Generator[tuple[int, list[str]], None, None]] = []
    try:
        # Counting first gives the progress bar its total and finds a malformed record before any write.
        total = sum(1 for _ in src.rows()) - 1
        rows = src.rows()
        closing.append(rows)
        first = next(rows, None)
        if first is None:
            raise ValidationFailed.field("file", "has no header row")
        headers = check_headers(first[1])
        targets = resolve_mapping(headers, custom_fields, options.mapping)
        report = ImportReport(
            headers=headers,
            targets=targets,
            encoding=src.encoding.removesuffix("-sig"),
            delimiter=src.delimiter,
            dry_run=options.dry_run,
            update_existing=options.update_existing,
            total_rows=total,
        )
        importer = _Importer(session, actor, options, report)
        for _ in range(options.skip_rows):
            if next(rows, None) is None:
                break
            report.processed_rows += 1
        if on_progress:
            on_progress(report.processed_rows, total)
        workers = options.workers
        if workers is None:
            workers = 1 if total >= PARALLEL_FROM_ROWS and (os.cpu_count() or 1) > 1 else 0
        for parsed in importer.parsed_batches(rows, workers):
            batch = importer.load([row for row in parsed if not row.errors])
            for row in parsed:
                outcome = None if row.errors else importer.plan(batch, row)
                if outcome is None:
                    report.rejected.append(RejectedRow(row.line, row.cells, dict(row.errors)))
                else:
                    report.count(outcome)
            report.processed_rows += len(parsed)
            if not options.dry_run:
                importer.write(batch)
                report.written_through_line = parsed[-1].line
                if on_batch_written:
                    on_batch_written(report)
            if on_progress:
                on_progress(report.processed_rows, total)
        return report
    finally:
        for generator in closing:
            generator.close()
        src.close()
