"""An HRIS that is a CSV export on disk (the lowest common denominator of every HR system).

Format: RFC 4180 quoting, one header row, in the configured ``encoding`` (``TENURE_HRIS__ENCODING``, default
UTF-8 with or without a byte-order mark; any encoding that spells quote, comma and line break as ASCII, e.g.
``latin-1`` or ``cp1252``). Default columns are our field names (:data:`connectors.hris.parsing.EMPLOYEE_FIELDS`);
``column_map`` maps our field → the export's column for exports that name them differently. Columns we do not
know are ignored; a missing *optional* column reads as empty; a missing *required* column (employee_id,
first_name, last_name) makes the whole file unusable (:class:`~connectors.errors.ResponseValidationError`).

**The export loses no good row.** A bad row is yielded as an :class:`~connectors.errors.InvalidRecordError`
with ``row`` = its first line in the file (header = line 1), ``field`` and a reason, and the rest goes on:

- a row that cannot be decoded in the configured encoding (each physical line is decoded on its own; the
  reason names the columns holding the undecodable bytes, never the bytes);
- a field longer than :data:`MAX_FIELD_CHARS` (1 MiB; no HR field is that long). Python's csv module refuses a
  field over 131,072 characters with an error that ends the whole read, so the parser's own limit is raised to
  :data:`CSV_PARSER_LIMIT` (64 MiB) and the bound is enforced per row instead;
- an unclosed quote: a field running over several lines in a row that lacks cells (a quoted line break in a
  complete row is valid CSV and is kept); the reason says which lines it swallowed;
- missing id or name, a date that is not a real ``YYYY-MM-DD`` (2026-02-30), a termination before the hire
  date, an unknown status word (:mod:`connectors.hris.parsing`);
- a duplicate ``employee_id`` (the second and later occurrences; the first one wins);
- a manager loop (A→B→A, A→A): each employee on the loop, once.

Change detection (:meth:`CSVExportHRIS.changed_since`): a file has no per-row timestamps, so the cursor is the
file's modification time. If the file changed after the cursor (or there is no cursor) every employee id in it
is reported; otherwise none. ``next_cursor`` is the file's mtime. Deletions are not visible in an export: an
employee who disappears from the file is found by the nightly sync, which compares the HRIS with the IdP.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

from connectors.errors import ConnectorError, InvalidRecordError, NotFoundError, ResponseValidationError
from connectors.hris.parsing import (
    EMPLOYEE_FIELDS,
    REQUIRED_FIELDS,
    build_employee,
    clean,
    reject_manager_loops,
)
from connectors.http import AsyncClosing
from models.domain import ChangeSet, Employee

__all__ = ["CSVExportHRIS", "MAX_FIELD_CHARS", "CSV_PARSER_LIMIT"]

SOURCE = "csv"
MAX_FIELD_CHARS = 1_048_576  # the stated per-field bound: a longer field fails its row
CSV_PARSER_LIMIT = 64 * 1_048_576  # csv.field_size_limit while reading, so the bound above decides
_UTF8_BOM = codecs.BOM_UTF8
_SURROGATES = range(0xDC80, 0xDD00)  # what surrogateescape makes of undecodable bytes


def _today() -> date:
    return datetime.now(UTC).date()


def _check_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    if '",\r\n'.encode(name, errors="replace") != b'",\r\n':
        raise ValueError(f"encoding {name} does not write quote, comma and line break as ASCII")
    return name


@dataclass
class _Lines:
    """Physical lines of the file, each decoded on its own; remembers which lines did not decode."""

    handle: object
    encoding: str
    count: int = 0
    undecodable: set[int] = field(default_factory=set)

    def __iter__(self) -> Iterator[str]:
        for raw in self.handle:  # type: ignore[attr-defined]
            self.count += 1
            if self.count == 1 and raw.startswith(_UTF8_BOM) and self.encoding == "utf-8":
                raw = raw[len(_UTF8_BOM) :]
            try:
                yield raw.decode(self.encoding)
            except UnicodeDecodeError:
                self.undecodable.add(self.count)
                yield raw.decode(self.encoding, errors="surrogateescape")


def _undecodable_columns(cells: Mapping[str, str]) -> list[str]:
    return [name for name, value in cells.items() if any(ord(ch) in _SURROGATES for ch in value)]


class CSVExportHRIS(AsyncClosing):
    """Employees from a CSV export file; satisfies :class:`connectors.protocols.HRIS`."""

    source = SOURCE

    def __init__(
        self,
        path: str | Path,
        column_map: Mapping[str, str] | None = None,
        *,
        encoding: str = "utf-8",
        today: Callable[[], date] = _today,
    ) -> None:
        self.path = Path(path)
        unknown = set(column_map or {}) - set(EMPLOYEE_FIELDS)
        if unknown:
            raise ValueError(f"column_map names unknown fields: {', '.join(sorted(unknown))}")
        self.columns = {name: (column_map or {}).get(name, name) for name in EMPLOYEE_FIELDS}
        self.field_of = {column: name for name, column in self.columns.items()}
        self.encoding = _check_encoding(encoding)
        self._today = today

    def __repr__(self) -> str:
        return f"CSVExportHRIS(path={str(self.path)!r}, encoding={self.encoding!r})"

    # -- reading ------------------------------------------------------------------------------------------

    def read(self) -> list[Employee | InvalidRecordError]:
        """Parse the whole file (sync); one item per data row, in file order."""
        if csv.field_size_limit() < CSV_PARSER_LIMIT:
            csv.field_size_limit(CSV_PARSER_LIMIT)
        try:
            with self.path.open("rb") as handle:
                return self._parse(_Lines(handle, self.encoding))
        except FileNotFoundError:
            raise ConnectorError(f"export file {self.path} does not exist", source=SOURCE) from None

    def _parse(self, lines: _Lines) -> list[Employee | InvalidRecordError]:
        today = self._today()
        reader = csv.reader(lines)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise ResponseValidationError(
                f"export file {self.path} has no readable header: {exc}", source=SOURCE
            ) from None
        self._check_header(header)
        assert header is not None
        results: list[Employee | InvalidRecordError] = []
        first_row_of: dict[str, int] = {}
        end = lines.count
        while True:
            start = end + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:  # the record cannot be split into fields: it fails alone
                end = lines.count
                results.append(InvalidRecordError(f"not valid CSV ({exc})", source=SOURCE, row=start))
                continue
            end = lines.count
            if not any(cell.strip() for cell in cells):
                continue  # blank line inside the file: not a record
            row = {column: cells[i] if i < len(cells) else "" for i, column in enumerate(header)}
            record = {name: row.get(column) for name, column in self.columns.items()}
            short = len(cells) < len(header)
            item = self._check_row(row, record, start=start, end=end, short=short, lines=lines, today=today)
            employee_id = clean(record["employee_id"])
            if employee_id is not None:
                if employee_id in first_row_of:
                    item = InvalidRecordError(
                        f"duplicate employee_id (first seen at row {first_row_of[employee_id]})",
                        source=SOURCE,
                        row=start,
                        record_id=employee_id,
                        field="employee_id",
                    )
                else:
                    first_row_of[employee_id] = start
            results.append(item)
        return reject_manager_loops(results, source=SOURCE, rows=first_row_of)

    def _check_row(
        self,
        row: Mapping[str, str],
        record: Mapping[str, str | None],
        *,
        start: int,
        end: int,
        short: bool,
        lines: _Lines,
        today: date,
    ) -> Employee | InvalidRecordError:
        """The row's own defects (encoding, field size, an unclosed quote), then :func:`build_employee`.
        ``short``: the row has fewer cells than the header."""
        employee_id = clean(record["employee_id"])
        known = {self.field_of[c]: v for c, v in row.items() if c in self.field_of}

        def invalid(reason: str, name: str | None) -> InvalidRecordError:
            record_id = employee_id if name != "employee_id" else None
            return InvalidRecordError(reason, source=SOURCE, row=start, record_id=record_id, field=name)

        if lines.undecodable.intersection(range(start, end + 1)):
            bad = _undecodable_columns(known) or _undecodable_columns(row)
            return invalid(
                f"not valid {lines.encoding} ({', '.join(bad) or 'unknown column'}); "
                f"is the export in another encoding?",
                bad[0] if bad and bad[0] in EMPLOYEE_FIELDS else None,
            )
        for name, value in known.items():
            if len(value) > MAX_FIELD_CHARS:
                return invalid(f"{name} longer than {MAX_FIELD_CHARS} characters", name)
        if short and end > start:
            for name, value in known.items():
                if "\n" in value or "\r" in value:
                    reason = (
                        f"{name} runs over lines {start}-{end} and the row lacks cells: an unclosed quote?"
                    )
                    return invalid(reason, name)
        return build_employee(record, source=SOURCE, today=today, row=start, raw=dict(row))

    def _check_header(self, header: list[str] | None) -> None:
        present = set(header or ())
        missing = [self.columns[f] for f in REQUIRED_FIELDS if self.columns[f] not in present]
        if missing:
            raise ResponseValidationError(
                f"export file {self.path} lacks required column(s): {', '.join(missing)}", source=SOURCE
            )

    # -- HRIS protocol ------------------------------------------------------------------------------------

    async def iter_employees(self) -> AsyncIterator[Employee | InvalidRecordError]:
        """Every row as an Employee, or an InvalidRecordError for a bad row (parsed off the event loop)."""
        for item in await asyncio.to_thread(self.read):
            yield item

    async def get_employee(self, employee_id: str) -> Employee:
        """The first row with this id; NotFoundError if none, the row's InvalidRecordError if it is bad."""
        for item in await asyncio.to_thread(self.read):
            item_id = item.record_id if isinstance(item, InvalidRecordError) else item.employee_id
            if item_id != employee_id:
                continue
            if isinstance(item, InvalidRecordError):
                raise item
            return item
        raise NotFoundError(f"employee {employee_id} is not in the export", source=SOURCE)

    async def changed_since(self, cursor: datetime | None) -> ChangeSet:
        """All ids in the file if it was modified after ``cursor`` (or no cursor), else none;
        next_cursor = the file's mtime."""
        try:
            mtime = datetime.fromtimestamp(self.path.stat().st_mtime, UTC)
        except FileNotFoundError:
            raise ConnectorError(f"export file {self.path} does not exist", source=SOURCE) from None
        if cursor is not None and cursor.tzinfo is None:
            cursor = cursor.replace(tzinfo=UTC)
        if cursor is not None and mtime <= cursor:
            return ChangeSet(employee_ids=[], next_cursor=mtime)
        ids: list[str] = []
        seen: set[str] = set()
        for item in await asyncio.to_thread(self.read):
            item_id = item.record_id if isinstance(item, InvalidRecordError) else item.employee_id
            if item_id and item_id not in seen:
                seen.add(item_id)
                ids.append(item_id)
        return ChangeSet(employee_ids=ids, next_cursor=mtime)
