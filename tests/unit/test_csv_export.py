"""The CSV export HRIS: parsing, bad rows as InvalidRecordErrors with line numbers, mtime cursor."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from connectors.errors import ConnectorError, InvalidRecordError, NotFoundError, ResponseValidationError
from connectors.hris.csv_export import MAX_FIELD_CHARS, CSVExportHRIS
from connectors.protocols import HRIS
from models.domain import Employee, EmployeeStatus
from tests.support.hris_data import break_rows, fake_people, write_csv

TODAY = date(2026, 1, 15)


def hris(path: Path, column_map: dict[str, str] | None = None) -> CSVExportHRIS:
    return CSVExportHRIS(path, column_map, today=lambda: TODAY)


async def collect(source: CSVExportHRIS) -> list[Employee | InvalidRecordError]:
    return [item async for item in source.iter_employees()]


def write_text(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


HEADER = (
    "employee_id,first_name,last_name,preferred_name,work_email,personal_email,department,title,"
    "manager_id,location,employment_type,status,hire_date,termination_date\n"
)


def test_satisfies_hris_protocol(tmp_path: Path) -> None:
    """CSVExportHRIS is structurally an HRIS."""
    assert isinstance(hris(tmp_path / "x.csv"), HRIS)


@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
async def test_reads_utf8_with_and_without_bom(tmp_path: Path, bom: bool) -> None:
    """A row with non-ASCII names parses identically with or without a byte-order mark."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + "E1,Zoë,Weiß,,zoe.weiss@example.com,,IT,Security Engineer,,Berlin,Full-Time,active,2020-02-03,\n",
        bom=bom,
    )
    [employee] = await collect(hris(path))
    assert isinstance(employee, Employee)
    assert (employee.employee_id, employee.first_name, employee.last_name) == ("E1", "Zoë", "Weiß")
    assert employee.status is EmployeeStatus.ACTIVE
    assert employee.hire_date == date(2020, 2, 3)
    assert employee.termination_date is None
    assert employee.preferred_name is None  # blank cell → None


async def test_column_map_renames_export_columns(tmp_path: Path) -> None:
    """column_map maps our field names to the export's own headers."""
    column_map = {
        "employee_id": "Employee #",
        "first_name": "First Name",
        "last_name": "Last Name",
        "status": "Employment Status",
        "hire_date": "Start",
    }
    rows = fake_people(3, seed=1)
    path = write_csv(tmp_path / "hris.csv", rows, column_map=column_map)
    items = await collect(hris(path, column_map))
    assert [e.employee_id for e in items if isinstance(e, Employee)] == ["E00001", "E00002", "E00003"]
    assert all(isinstance(e, Employee) and e.hire_date is not None for e in items)


def test_column_map_rejects_unknown_field(tmp_path: Path) -> None:
    """A column_map key that is not one of our fields is a configuration error."""
    with pytest.raises(ValueError, match="unknown fields: salary"):
        CSVExportHRIS(tmp_path / "x.csv", {"salary": "Pay"})


async def test_missing_required_column_is_an_unusable_file(tmp_path: Path) -> None:
    """Without an employee_id column the file is rejected as a whole."""
    path = write_text(tmp_path / "hris.csv", "first_name,last_name\nAda,Lovelace\n")
    with pytest.raises(ResponseValidationError, match="lacks required column"):
        await collect(hris(path))


async def test_latin1_row_fails_alone_with_its_line_number(tmp_path: Path) -> None:
    """One Latin-1 row in a UTF-8 export is an InvalidRecordError at its line; the rows around it survive."""
    path = tmp_path / "hris.csv"
    path.write_bytes(
        HEADER.encode()
        + b"G1,Grace,Hopper,,,,,,,,,active,2019-05-06,\n"
        + "E1,Zoë,Weiß,,,,,,,,,active,2020-01-01,\n".encode("latin-1")
        + "G2,Zoë,Turing,,,,,,,,,active,2018-01-01,\n".encode()
    )
    first, bad, last = await collect(hris(path))
    assert isinstance(first, Employee) and isinstance(last, Employee) and last.first_name == "Zoë"
    assert isinstance(bad, InvalidRecordError)
    assert (bad.row, bad.record_id, bad.field) == (3, "E1", "first_name")
    assert bad.reason.startswith("not valid utf-8 (first_name, last_name)")
    assert "Zo" not in str(bad)


async def test_whole_latin1_export_fails_only_its_non_ascii_rows(tmp_path: Path) -> None:
    """A Latin-1 export read as UTF-8: rows that are plain ASCII are good, each other row fails alone."""
    path = tmp_path / "hris.csv"
    path.write_bytes(
        (HEADER + "E1,Zoë,X,,,,,,,,,active,2020-01-01,\nE2,Ada,Byron,,,,,,,,,active,2020-01-01,\n").encode(
            "latin-1"
        )
    )
    bad, good = await collect(hris(path))
    assert isinstance(bad, InvalidRecordError) and bad.row == 2
    assert isinstance(good, Employee) and good.employee_id == "E2"


async def test_configured_encoding_decodes_a_latin1_export(tmp_path: Path) -> None:
    """With encoding="latin-1" (TENURE_HRIS__ENCODING) the same bytes are read as the names they are."""
    path = tmp_path / "hris.csv"
    path.write_bytes((HEADER + "E1,Zoë,Weiß,,,,,,,,,active,2020-01-01,\n").encode("latin-1"))
    [employee] = await collect(CSVExportHRIS(path, encoding="latin-1", today=lambda: TODAY))
    assert isinstance(employee, Employee) and (employee.first_name, employee.last_name) == ("Zoë", "Weiß")


def test_encoding_must_keep_ascii_delimiters(tmp_path: Path) -> None:
    """An encoding that does not spell quote, comma and newline as ASCII cannot be split by line."""
    with pytest.raises(ValueError, match="utf-16"):
        CSVExportHRIS(tmp_path / "x.csv", encoding="utf-16")
    with pytest.raises(ValueError, match="unknown encoding"):
        CSVExportHRIS(tmp_path / "x.csv", encoding="no-such-codec")


async def test_field_over_the_bound_fails_alone_and_a_long_field_under_it_is_read(tmp_path: Path) -> None:
    """A field longer than MAX_FIELD_CHARS fails its row only; one over Python's default csv limit (131072)
    but under the bound is read."""
    long_title = "T" * 200_000
    huge_title = "x" * (MAX_FIELD_CHARS + 1)
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + f"G1,Grace,Hopper,,,,,{long_title},,,,active,2019-05-06,\n"
        + f'E1,Ada,Lovelace,,,,,"{huge_title}",,,,active,2020-01-01,\n'
        + "G2,Alan,Turing,,,,,,,,,active,2018-01-01,\n",
    )
    first, bad, last = await collect(hris(path))
    assert isinstance(first, Employee) and first.title == long_title
    assert isinstance(last, Employee)
    assert isinstance(bad, InvalidRecordError)
    assert (bad.row, bad.record_id, bad.field) == (3, "E1", "title")
    assert bad.reason == f"title longer than {MAX_FIELD_CHARS} characters"


async def test_quoted_line_break_is_kept_and_the_following_line_numbers_too(tmp_path: Path) -> None:
    """A complete record spanning two lines (a quoted line break) is valid CSV; the next row keeps its own
    line number."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + 'E1,Ada,Lovelace,,,,,"Chief\nEngineer",,,,active,2020-01-01,\n'
        + "E2,Alan,Turing,,,,,,,,,active,yesterday,\n",
    )
    multi, dated = await collect(hris(path))
    assert isinstance(multi, Employee) and multi.title == "Chief\nEngineer"
    assert isinstance(dated, InvalidRecordError) and dated.row == 4 and dated.field == "hire_date"


async def test_unclosed_quote_is_one_clear_error(tmp_path: Path) -> None:
    """An unclosed quote swallows the rest of the file into one field: reported once, with its line range."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + "G1,Grace,Hopper,,,,,,,,,active,2019-05-06,\n"
        + 'E1,"Ada,Lovelace,,,,,,,,,active,2020-01-01,\n'
        + "E2,Alan,Turing,,,,,,,,,active,2018-01-01,\n",
    )
    good, broken = await collect(hris(path))
    assert isinstance(good, Employee)
    assert isinstance(broken, InvalidRecordError)
    assert (broken.row, broken.field) == (3, "first_name")
    assert broken.reason == "first_name runs over lines 3-4 and the row lacks cells: an unclosed quote?"


async def test_manager_loops_fail_each_member_once(tmp_path: Path) -> None:
    """A→B→A and a self-manager are one error per employee on the loop; a chain into a loop is fine."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + "A1,Ada,One,,,,,,B1,,,active,2020-01-01,\n"
        + "B1,Bo,Two,,,,,,A1,,,active,2020-01-01,\n"
        + "C1,Cy,Three,,,,,,C1,,,active,2020-01-01,\n"
        + "D1,Di,Four,,,,,,A1,,,active,2020-01-01,\n",
    )
    a, b, c, d = await collect(hris(path))
    assert isinstance(d, Employee) and d.manager_id == "A1"
    for item, row in ((a, 2), (b, 3), (c, 4)):
        assert isinstance(item, InvalidRecordError)
        assert (item.row, item.field) == (row, "manager_id")
    assert {a.reason, b.reason} == {"manager loop: A1 -> B1 -> A1", "manager loop: B1 -> A1 -> B1"}
    assert c.reason == "manager loop: C1 -> C1"


async def test_termination_before_hire_and_impossible_date_fail(tmp_path: Path) -> None:
    """2026-02-30 is not a date; a termination before the hire date is not an employment."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + "E1,Ada,Lovelace,,,,,,,,,active,2026-02-30,\n"
        + "E2,Alan,Turing,,,,,,,,,terminated,2024-05-01,2024-04-30\n",
    )
    impossible, backwards = await collect(hris(path))
    assert isinstance(impossible, InvalidRecordError) and impossible.field == "hire_date"
    assert impossible.reason == "invalid hire_date (expected YYYY-MM-DD)"
    assert isinstance(backwards, InvalidRecordError) and backwards.field == "termination_date"
    assert backwards.reason == "termination_date before hire_date"


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (",Ada,Lovelace,,,,,,,,,active,2020-01-01,", "missing employee_id"),
        ("E2,,Lovelace,,,,,,,,,active,2020-01-01,", "missing first_name"),
        ("E3,Ada, ,,,,,,,,,active,2020-01-01,", "missing last_name"),
        ("E4,Ada,Lovelace,,,,,,,,,retired,2020-01-01,", "unknown status"),
        ("E5,Ada,Lovelace,,,,,,,,,active,01/02/2020,", "invalid hire_date"),
        ("E6,Ada,Lovelace,,,,,,,,,terminated,2020-01-01,2024-02-30", "invalid termination_date"),
    ],
    ids=["no-id", "no-first", "no-last", "status", "hire-date", "termination-date"],
)
async def test_bad_row_is_yielded_with_line_number(tmp_path: Path, cells: str, reason: str) -> None:
    """Each kind of bad row becomes an InvalidRecordError at its line; the good rows around it survive."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER
        + "G1,Grace,Hopper,,,,,,,,,active,2019-05-06,\n"
        + cells
        + "\n"
        + "G2,Alan,Turing,,,,,,,,,active,2018-01-01,\n",
    )
    first, bad, last = await collect(hris(path))
    assert isinstance(first, Employee) and isinstance(last, Employee)
    assert isinstance(bad, InvalidRecordError)
    assert bad.row == 3
    assert bad.reason.startswith(reason)
    assert bad.source == "csv"
    assert "Ada" not in str(bad) and "Lovelace" not in str(bad)  # no personal data in the reason


async def test_duplicate_id_second_occurrence_is_invalid(tmp_path: Path) -> None:
    """The first row with an id wins; the later one is reported with both line numbers."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER + "E1,Grace,Hopper,,,,,,,,,active,2019-05-06,\nE1,Alan,Turing,,,,,,,,,active,2018-01-01,\n",
    )
    first, second = await collect(hris(path))
    assert isinstance(first, Employee) and first.first_name == "Grace"
    assert isinstance(second, InvalidRecordError)
    assert (second.row, second.record_id) == (3, "E1")
    assert second.reason == "duplicate employee_id (first seen at row 2)"


@pytest.mark.parametrize(
    ("status", "hire", "termination", "expected"),
    [
        ("", "2026-02-01", "", EmployeeStatus.PENDING),
        ("", "2020-01-01", "2025-12-31", EmployeeStatus.TERMINATED),
        ("", "2020-01-01", "2026-01-15", EmployeeStatus.ACTIVE),
        ("", "2020-01-01", "", EmployeeStatus.ACTIVE),
        ("On Leave", "2020-01-01", "", EmployeeStatus.LEAVE),
        ("Inactive", "2020-01-01", "", EmployeeStatus.TERMINATED),
        ("PENDING", "2026-03-01", "", EmployeeStatus.PENDING),
    ],
    ids=["future-hire", "past-termination", "last-day", "plain", "leave-word", "inactive-word", "upper-case"],
)
async def test_status_words_and_derivation(
    tmp_path: Path, status: str, hire: str, termination: str, expected: EmployeeStatus
) -> None:
    """Status words map case-insensitively; a blank status is derived from the dates."""
    path = write_text(
        tmp_path / "hris.csv", HEADER + f"E1,Ada,Lovelace,,,,,,,,,{status},{hire},{termination}\n"
    )
    [employee] = await collect(hris(path))
    assert isinstance(employee, Employee)
    assert employee.status is expected


async def test_ten_thousand_rows_one_percent_broken(tmp_path: Path) -> None:
    """10,000 rows with 100 broken in varied ways → 9,900 employees and 100 errors at the right lines."""
    rows = fake_people(10_000, seed=42, today=TODAY)
    broken = break_rows(rows, count=100, seed=42)
    path = write_csv(tmp_path / "hris.csv", rows, bom=True)

    items = await collect(hris(path))
    employees = [i for i in items if isinstance(i, Employee)]
    errors = [i for i in items if isinstance(i, InvalidRecordError)]

    assert len(employees) == 9_900
    assert len(errors) == 100
    assert {e.row for e in errors} == set(broken)
    assert len(set(Counter(broken.values()))) == 7  # every kind of breakage is represented
    for error in errors:
        kind = broken[error.row]
        expected = {
            "missing_id": "missing employee_id",
            "bad_hire_date": "invalid hire_date",
            "bad_termination_date": "invalid termination_date",
            "unknown_status": "unknown status",
            "duplicate_id": "duplicate employee_id",
            "missing_first_name": "missing first_name",
            "missing_last_name": "missing last_name",
        }[kind]
        assert error.reason.startswith(expected), (error.row, kind, error.reason)
        row = rows[error.row - 2]
        assert row["first_name"].strip() == "" or row["first_name"] not in error.reason
    assert len({e.employee_id for e in employees}) == 9_900


async def test_get_employee_found_invalid_and_missing(tmp_path: Path) -> None:
    """get_employee returns a good row, raises the row's InvalidRecordError, or NotFoundError."""
    path = write_text(
        tmp_path / "hris.csv",
        HEADER + "E1,Grace,Hopper,,,,,,,,,active,2019-05-06,\nE2,Alan,Turing,,,,,,,,,active,yesterday,\n",
    )
    source = hris(path)
    assert (await source.get_employee("E1")).last_name == "Hopper"
    with pytest.raises(InvalidRecordError, match="row 3: invalid hire_date"):
        await source.get_employee("E2")
    with pytest.raises(NotFoundError, match="E9"):
        await source.get_employee("E9")


async def test_changed_since_follows_file_mtime(tmp_path: Path) -> None:
    """No cursor or an older cursor → every id; a cursor at/after the mtime → none; next_cursor = mtime."""
    rows = fake_people(4, seed=3)
    path = write_csv(tmp_path / "hris.csv", rows)
    stamp = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    os.utime(path, (stamp.timestamp(), stamp.timestamp()))
    source = hris(path)

    everything = await source.changed_since(None)
    assert everything.employee_ids == ["E00001", "E00002", "E00003", "E00004"]
    assert everything.next_cursor == stamp

    assert (await source.changed_since(stamp - timedelta(hours=1))).employee_ids == everything.employee_ids
    unchanged = await source.changed_since(stamp)
    assert unchanged.employee_ids == []
    assert unchanged.next_cursor == stamp
    naive = await source.changed_since(stamp.replace(tzinfo=None) + timedelta(seconds=1))
    assert naive.employee_ids == []


async def test_missing_file_is_an_error_not_an_absent_employee(tmp_path: Path) -> None:
    """A missing export raises a ConnectorError for reads, look-ups and change detection — never NotFoundError,
    which callers read as "no HR record for this employee" (an orphan)."""
    source = hris(tmp_path / "absent.csv")
    for call in (collect(source), source.changed_since(None), source.get_employee("E1")):
        with pytest.raises(ConnectorError, match="does not exist") as caught:
            await call
        assert not isinstance(caught.value, NotFoundError)
