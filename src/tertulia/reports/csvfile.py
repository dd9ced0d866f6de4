"""CSV files of report tables, safe to open in a spreadsheet: text cells follow the contacts
export's rule against formula injection (`contacts.exporter.safe_cell`: a leading `'` before
= + - @ tab or CR, phone numbers and plain negative numbers left alone); numbers are written as
numbers."""

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import IO, Any
from zoneinfo import ZoneInfo

from tertulia.contacts.exporter import safe_cell
from tertulia.kit.clock import as_utc


def cell(value: Any) -> Any:
    """One value as a CSV cell: text neutralised, numbers kept, None empty."""
    if value is None:
        return ""
    return safe_cell(value) if isinstance(value, str) else value


def render(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(c) for c in columns])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def render_rows(rows: Iterable[Sequence[Any]]) -> str:
    """Rows without the header: the next part of a CSV sent in pieces."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """A stored time (UTC) as ISO 8601 in the workspace's time zone, with its offset
    (2026-11-27T09:15:00-03:00), to the second: what a spreadsheet shows as the local time."""
    return as_utc(moment).astimezone(zone).isoformat(timespec="seconds")


# A CSV written whole before it is sent (`spooled`) is kept in memory up to this size, then in a
# temporary file; it is sent in pieces of SPOOL_CHUNK.
SPOOL_IN_MEMORY = 1024 * 1024
SPOOL_CHUNK = 64 * 1024


def spooled(columns: Sequence[str], pages: Iterable[Iterable[Sequence[Any]]]) -> tuple[IO[bytes], int]:
    """A CSV of many rows (the header, then each page's rows) written whole, UTF-8, before any of it
    is sent: an error while reading the pages is then the request's error, never a file cut short
    that looks complete. Only one page and SPOOL_IN_MEMORY bytes are held in memory at once. The
    file, at its start, and its size in bytes."""
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - the caller sends, then closes it
    try:
        file.write(render(columns, []).encode())
        for rows in pages:
            file.write(render_rows(rows).encode())
        size = file.tell()
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, size


def chunks(file: IO[bytes]) -> Iterator[bytes]:
    """A spooled file's bytes in pieces; the file is closed (and its disk copy, if any, removed) once
    sent or when the client goes away."""
    with file:
        while chunk := file.read(SPOOL_CHUNK):
            yield chunk
