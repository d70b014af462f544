"""An HRIS that is a CSV export on disk (the lowest common denominator of every HR system).

Format: UTF-8 with or without a byte-order mark, RFC 4180 quoting, one header row. Default columns are our
field names (:data:`connectors.hris.parsing.EMPLOYEE_FIELDS`); ``column_map`` maps our field → the export's
column for exports that name them differently. Columns we do not know are ignored; a missing *optional* column
reads as empty; a missing *required* column (employee_id, first_name, last_name) makes the whole file unusable
(:class:`~connectors.errors.ResponseValidationError`).

Bad rows are yielded as :class:`~connectors.errors.InvalidRecordError` with ``row`` = the file line number
(header = line 1) and the rest goes on: missing id or name, a date that is not ``YYYY-MM-DD``, an unknown status
word, and a duplicate ``employee_id`` (the second and later occurrences; the first one wins).

Change detection (:meth:`CSVExportHRIS.changed_since`): a file has no per-row timestamps, so the cursor is the
file's modification time. If the file changed after the cursor (or there is no cursor) every employee id in it
is reported; otherwise none. ``next_cursor`` is the file's mtime. Deletions are not visible in an export: an
employee who disappears from the file is found by the nightly sync, which compares the HRIS with the IdP.
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path

from connectors.errors import InvalidRecordError, NotFoundError, ResponseValidationError
from connectors.hris.parsing import EMPLOYEE_FIELDS, REQUIRED_FIELDS, build_employee, clean
from connectors.http import AsyncClosing
from models.domain import ChangeSet, Employee

__all__ = ["CSVExportHRIS"]

SOURCE = "csv"


def _today() -> date:
    return datetime.now(UTC).date()


class CSVExportHRIS(AsyncClosing):
    """Employees from a CSV export file; satisfies :class:`connectors.protocols.HRIS`."""

    source = SOURCE

    def __init__(
        self,
        path: str | Path,
        column_map: Mapping[str, str] | None = None,
        *,
        today: Callable[[], date] = _today,
    ) -> None:
        self.path = Path(path)
        unknown = set(column_map or {}) - set(EMPLOYEE_FIELDS)
        if unknown:
            raise ValueError(f"column_map names unknown fields: {', '.join(sorted(unknown))}")
        self.columns = {field: (column_map or {}).get(field, field) for field in EMPLOYEE_FIELDS}
        self._today = today

    def __repr__(self) -> str:
        return f"CSVExportHRIS(path={str(self.path)!r})"

    # -- reading ------------------------------------------------------------------------------------------

    def read(self) -> list[Employee | InvalidRecordError]:
        """Parse the whole file (sync); one item per data row, in file order."""
        today = self._today()
        results: list[Employee | InvalidRecordError] = []
        first_row_of: dict[str, int] = {}
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as handle:
                reader = csv.DictReader(handle)
                self._check_header(reader.fieldnames)
                for raw in reader:
                    line = reader.line_num
                    if not any(clean(v) for v in raw.values() if isinstance(v, str)):
                        continue  # blank line inside the file: not a record
                    record = {field: raw.get(column) for field, column in self.columns.items()}
                    cells = {k: v for k, v in raw.items() if k is not None}  # extra cells land under None
                    item = build_employee(record, source=SOURCE, today=today, row=line, raw=cells)
                    employee_id = clean(record["employee_id"])
                    if employee_id is not None:
                        if employee_id in first_row_of:
                            item = InvalidRecordError(
                                f"duplicate employee_id (first seen at row {first_row_of[employee_id]})",
                                source=SOURCE,
                                row=line,
                                record_id=employee_id,
                            )
                        else:
                            first_row_of[employee_id] = line
                    results.append(item)
        except FileNotFoundError:
            raise NotFoundError(f"export file {self.path} does not exist", source=SOURCE) from None
        except UnicodeDecodeError as exc:
            raise ResponseValidationError(f"export file {self.path} is not UTF-8", source=SOURCE) from exc
        except csv.Error as exc:
            raise ResponseValidationError(
                f"export file {self.path} is not valid CSV: {exc}", source=SOURCE
            ) from exc
        return results

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
            raise NotFoundError(f"export file {self.path} does not exist", source=SOURCE) from None
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
