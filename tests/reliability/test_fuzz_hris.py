"""Hypothesis fuzzing of HR records: CSV export rows and BambooHR payloads. No unhandled exception; every bad record
is an InvalidRecordError whose reason names a field and never a value; valid records come through intact; through
the sync path (dry run against a real scim2-server) each bad row is audited with its reason.

Sizes: CI ~600 examples in this module; ``TENURE_STRESS=1``: 10× that.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import re
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlmodel import select

from connectors.errors import ConnectorError, InvalidRecordError
from connectors.hris.bamboohr import FIELD_MAP, BambooHRHRIS
from connectors.hris.csv_export import CSVExportHRIS
from connectors.hris.parsing import STATUS_WORDS
from connectors.http import APIClient
from engine.auditor import Auditor
from engine.sync import SyncEngine, SyncOptions
from lifecycle.policy import Policy
from models.audit import AuditEvent
from models.db import reset_engines, session_scope
from models.domain import Employee
from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings
from tests.reliability.conftest import size
from tests.support.hris_data import COLUMNS
from tests.support.scim_server import SCIMServer, create_group

TODAY = date(2026, 1, 15)
FIELD = r"(employee_id|first_name|last_name|preferred_name|work_email|personal_email|department|title|manager_id|location|employment_type|status|hire_date|termination_date)"
REASON = re.compile(
    r"^(missing (employee_id|first_name|last_name)|invalid (hire_date|termination_date) \(expected YYYY-MM-DD\)"
    r"|unknown status|duplicate employee_id \(first seen at row \d+\)|employee entry is not an object"
    r"|termination_date before hire_date|manager loop: [^ ]+( -> [^ ]+)+"
    rf"|not valid utf-8 \(({FIELD}|unknown column)(, {FIELD})*\); is the export in another encoding\?"
    rf"|{FIELD} runs over lines \d+-\d+ and the row lacks cells: an unclosed quote\?|not valid CSV \(.*\))$",
    re.DOTALL,
)
FUZZ = settings(
    max_examples=size(200, 2000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

any_text = st.text(max_size=30)
iso_date = st.dates(min_value=date(1990, 1, 1), max_value=date(2035, 12, 31)).map(date.isoformat)
date_cell = st.one_of(
    st.just(""),
    iso_date,
    st.just("0000-00-00"),
    any_text,
    st.sampled_from(["31/12/2023", "2023-13-01", "2023-02-30", "20230101", " 2023-01-01 "]),
)
status_cell = st.one_of(
    st.just(""), st.sampled_from(sorted(STATUS_WORDS)), st.sampled_from(["Active", " LEAVE "]), any_text
)
name = st.text(alphabet=st.characters(categories=["L", "M", "Zs", "Pd"]), min_size=1, max_size=20).filter(
    str.strip
)
fuzzed_row = st.fixed_dictionaries(
    {c: any_text for c in COLUMNS}
    | {
        "hire_date": date_cell,
        "termination_date": date_cell,
        "status": status_cell,
        "employee_id": st.one_of(st.just(""), st.from_regex(r"E[0-9]{1,3}", fullmatch=True), any_text),
    }
)
valid_row = st.fixed_dictionaries(
    {c: st.just("") for c in COLUMNS}
    | {
        "first_name": name,
        "last_name": name,
        "department": any_text,
        "title": any_text,
        "hire_date": st.one_of(st.just(""), iso_date),
        "termination_date": st.one_of(st.just(""), iso_date),
        "status": st.one_of(st.just(""), st.sampled_from(sorted(STATUS_WORDS))),
    }
).map(lambda row: _in_order(row))


def _in_order(row: dict[str, str]) -> dict[str, str]:
    """A valid row's termination date is never before its hire date (that is an invalid record)."""
    if row["hire_date"] and row["termination_date"] and row["termination_date"] < row["hire_date"]:
        row = {**row, "hire_date": row["termination_date"], "termination_date": row["hire_date"]}
    return row


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def _mixed(
    draw_valid: list[dict[str, str]], draw_fuzzed: list[dict[str, str]]
) -> tuple[list[dict[str, str]], set[str]]:
    """Valid rows get unique ids V1…; fuzzed rows keep theirs (never starting with V). Returns rows, valid ids."""
    rows: list[dict[str, str]] = []
    valid_ids: set[str] = set()
    for index, row in enumerate(draw_valid):
        row = {**row, "employee_id": f"V{index + 1}"}
        valid_ids.add(row["employee_id"])
        rows.append(row)
    for row in draw_fuzzed:
        if row["employee_id"].strip().upper().startswith("V"):
            row = {**row, "employee_id": "X" + row["employee_id"]}
        rows.append(row)
    return rows, valid_ids


def _check_items(
    items: list[Employee | InvalidRecordError], rows: list[dict[str, str]], valid_ids: set[str]
) -> None:
    nonblank = [r for r in rows if any(v.strip() for v in r.values())]
    assert len(items) == len(nonblank)
    parsed = {i.employee_id: i for i in items if isinstance(i, Employee)}
    for item in items:
        if isinstance(item, InvalidRecordError):
            assert REASON.match(item.reason), item.reason
            assert item.row is not None and item.row >= 2
    for row in rows:
        if row["employee_id"] in valid_ids:
            employee = parsed[row["employee_id"]]
            assert (employee.first_name, employee.last_name) == (
                row["first_name"].strip(),
                row["last_name"].strip(),
            )


@FUZZ
@given(valid=st.lists(valid_row, max_size=4), fuzzed=st.lists(fuzzed_row, max_size=6))
def test_csv_rows_parse_or_are_invalid_with_a_reason(
    valid: list[dict[str, str]], fuzzed: list[dict[str, str]]
) -> None:
    """Any CSV rows: each is an Employee or an InvalidRecordError naming a field; valid rows parse intact."""
    rows, valid_ids = _mixed(valid, fuzzed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hris.csv"
        _write(path, rows)
        items = CSVExportHRIS(path, today=lambda: TODAY).read()
    _check_items(items, rows, valid_ids)


@FUZZ
@given(raw=st.binary(max_size=400))
def test_csv_garbage_files_fail_as_connector_errors(raw: bytes) -> None:
    """Arbitrary bytes after a valid header: rows or InvalidRecordErrors (an undecodable row fails alone);
    never an exception."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hris.csv"
        path.write_bytes((",".join(COLUMNS) + "\r\n").encode() + raw)
        items = CSVExportHRIS(path, today=lambda: TODAY).read()
    for item in items:
        assert isinstance(item, Employee) or REASON.match(item.reason), item


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
bamboo_payload = st.dictionaries(
    st.sampled_from([*FIELD_MAP, "status", "employmentStatus", "extra"]),
    st.one_of(json_value, date_cell, st.sampled_from(["Active", "Inactive", "active", "Terminated"])),
)


@FUZZ
@given(payload=st.one_of(bamboo_payload, json_value))
def test_bamboohr_payloads_parse_or_are_invalid_with_a_reason(payload: Any) -> None:
    """Any BambooHR employee object (or non-object): an Employee or an InvalidRecordError naming a field."""
    result = BambooHRHRIS(api=None, today=lambda: TODAY).to_employee(payload)  # type: ignore[arg-type]
    if isinstance(result, InvalidRecordError):
        assert REASON.match(result.reason), result.reason
    else:
        assert isinstance(result, Employee) and result.employee_id == str(payload["id"]).strip()


def _bamboohr(body: bytes) -> BambooHRHRIS:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers={"Content-Type": "application/json"})
    )
    client = httpx.AsyncClient(base_url="https://api.bamboohr.test/acme/v1/", transport=transport)
    return BambooHRHRIS(APIClient(client, source="bamboohr", max_attempts=1), today=lambda: TODAY)


@settings(max_examples=size(100, 1000), deadline=None)
@given(
    body=st.one_of(
        json_value.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=60),
        st.lists(bamboo_payload, max_size=4).map(lambda e: json.dumps({"employees": e}).encode()),
    )
)
def test_bamboohr_answers_of_any_shape_fail_as_connector_errors(body: bytes) -> None:
    """Whatever BambooHR answers, the report and the single read yield records or raise ConnectorErrors."""

    async def read() -> None:
        hris = _bamboohr(body)
        try:
            async for item in hris.iter_employees():
                assert isinstance(item, Employee) or REASON.match(item.reason)
        except ConnectorError:
            pass
        with contextlib.suppress(ConnectorError):
            await hris.get_employee("7")
        await hris.api.aclose()

    asyncio.run(read())


POLICY = Policy.model_validate(
    {
        "naming": {"username": "{given}.{last}", "email_domain": "example.com"},
        "birthright": [{"groups": ["all-staff"]}],
    }
)


@pytest.mark.slow
@settings(
    max_examples=size(15, 150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(valid=st.lists(valid_row, max_size=3), fuzzed=st.lists(fuzzed_row, min_size=1, max_size=4))
def test_fuzzed_rows_through_the_sync_are_audited(
    scim_server: SCIMServer, valid: list[dict[str, str]], fuzzed: list[dict[str, str]]
) -> None:
    """Through the sync (dry run, real scim2-server): every bad row has one ``hris.record.invalid`` audit row
    with its reason and line; the valid rows are planned."""
    rows, valid_ids = _mixed(valid, fuzzed)
    with tempfile.TemporaryDirectory() as tmp:
        path, url = Path(tmp) / "hris.csv", f"sqlite:///{tmp}/audit.db"
        _write(path, rows)
        items = CSVExportHRIS(path).read()
        tenant = scim_server.tenant_url()
        asyncio.run(
            create_group(tenant, scim_server.token, "all-staff")
        )  # the policy's one group (preflight)
        idp = build_identity_provider(IdPSettings(base_url=tenant, token=SecretStr(scim_server.token)))

        async def run() -> Any:
            try:
                return await SyncEngine(
                    hris=CSVExportHRIS(path),
                    idp=idp,
                    ticketing=None,
                    policy=POLICY,
                    auditor=Auditor(url, actor="fuzz"),
                    options=SyncOptions(full=True, dry_run=True),
                ).run()
            finally:
                await idp.aclose()

        report = asyncio.run(run())
        with session_scope(url) as session:
            audited = session.exec(select(AuditEvent).where(AuditEvent.action == "hris.record.invalid")).all()
        reset_engines()
    invalid = [i for i in items if isinstance(i, InvalidRecordError)]
    assert report.invalid_records == len(invalid) == len(audited)
    assert sorted((e.reason, e.details.get("row")) for e in audited) == sorted(
        (i.reason, i.row) for i in invalid
    )
    planned = {e.employee_id for e in items if isinstance(e, Employee)}
    assert valid_ids <= planned
