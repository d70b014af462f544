"""Secrets never leak: distinctive secrets (SCIM token, RT password, BambooHR key, webhook secret) are configured,
representative operations run (a sync through faults, RT calls, BambooHR with a 429, failing authentication, the
CLI), and every log record (DEBUG on root, ``prefect``, ``httpx``), exception str/repr, CLI output, audit export and
report markdown is scanned for each secret: any 8-character run of it, plain, JSON-escaped, URL- or
base64-encoded (Basic auth included), in any case.

Also: a hostile peer echoing the bearer token in every form (JSON-escaped, case-folded, encoded, in pieces,
straddling the error cut) leaves no 8-character run of it in CLI output, the raw SQLite file or ``audit export``;
hostile userNames against a real scim2-server (filter injection) and tampering with a real run's audit trail,
detected by ``tenure audit verify``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from connectors.errors import AuthenticationError, ConnectorError
from connectors.hris.csv_export import CSVExportHRIS
from engine.auditor import Auditor
from engine.sync import SyncEngine, SyncOptions
from lifecycle.policy import Policy
from models.domain import TicketRequest
from tenure.cli import app
from tenure.compose import build_hris, build_identity_provider, build_ticketing
from tenure.settings import HRISSettings, IdPSettings, TicketingSettings
from tests.reliability.helpers import REPO, audit_verify_cli
from tests.support.fault_proxy import FaultProxy
from tests.support.hris_data import fake_people, write_csv
from tests.support.leaks import hostile_echo, leaked_runs
from tests.support.rt_server import RT_ROOT_PASSWORD, RT_ROOT_USER, RTServer
from tests.support.scim_server import SCIMServer, create_group, running_scim_server

pytestmark = pytest.mark.slow

SCIM_TOKEN = "scimTOKEN-q7Zr2Lx9-neverlog"
BAMBOO_KEY = "bhrKEY-Vw3s8Jq1-neverlog"
WEBHOOK_SECRET = "whSECRET-Mm4t0Pc6-neverlog"
WRONG_TOKEN = "wrongTOKEN-Xy5Ee3-neverlog"
WRONG_RT_PASSWORD = "wrongRTpw-Hh8Kk2-neverlog"
POLICY = Policy.model_validate(
    {
        "naming": {"username": "{given}.{last}", "email_domain": "example.com"},
        "birthright": [{"groups": ["all-staff"]}],
        "brake": {"max_disable_count": 1000, "max_disable_percent": 100},
    }
)


SECRETS = (SCIM_TOKEN, BAMBOO_KEY, WEBHOOK_SECRET, WRONG_TOKEN, RT_ROOT_PASSWORD, WRONG_RT_PASSWORD)


@pytest.fixture(scope="module")
def scim_server() -> Iterator[SCIMServer]:
    """A scim2-server whose bearer token is the distinctive secret."""
    with running_scim_server(token=SCIM_TOKEN) as server:
        yield server


class Haystack:
    """Everything produced that a secret could leak into."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []

    def add(self, where: str, text: object) -> None:
        self.texts.append((where, str(text)))

    def exception(self, where: str, exc: BaseException) -> None:
        self.add(f"{where} str", exc)
        self.add(f"{where} repr", repr(exc))
        self.add(f"{where} args", exc.args)
        if exc.__cause__ is not None:
            self.exception(f"{where} cause", exc.__cause__)

    def leaks(self) -> list[str]:
        """Each place holding an 8-character run of a secret, in any form or case (tests.support.leaks)."""
        return [
            f"{where}: {runs}"
            for where, text in self.texts
            for secret in SECRETS
            if (runs := leaked_runs(text, secret))
        ]


@pytest.fixture
def capture(caplog: pytest.LogCaptureFixture) -> Iterator[tuple[Haystack, pytest.LogCaptureFixture]]:
    """Every log record at DEBUG on root, ``prefect``, ``httpx`` and ``httpcore``."""
    caplog.set_level(logging.DEBUG)
    extra = [logging.getLogger(n) for n in ("prefect", "httpx", "httpcore")]
    saved = [(lg, lg.level) for lg in extra]
    for lg in extra:
        lg.setLevel(logging.DEBUG)
        if caplog.handler not in lg.handlers:
            lg.addHandler(caplog.handler)
    yield Haystack(), caplog
    for lg, level in saved:
        lg.setLevel(level)
        lg.removeHandler(caplog.handler)


async def test_no_secret_in_logs_errors_outputs_or_audit(
    scim_server: SCIMServer,
    rt: RTServer,
    tmp_path: Path,
    capture: tuple[Haystack, pytest.LogCaptureFixture],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sync through faults, RT, BambooHR with a 429, failed logins, ``config check`` and ``audit export``:
    no secret, in any encoding, anywhere."""
    hay, caplog = capture
    base_url = scim_server.tenant_url()
    await create_group(base_url, SCIM_TOKEN, "all-staff")
    csv_path, database_url = tmp_path / "hris.csv", f"sqlite:///{tmp_path / 'audit.db'}"
    rows = fake_people(12, seed=5)
    write_csv(csv_path, rows)

    # A sync through a proxy faulting 30% of calls, with a short timeout.
    async with FaultProxy(
        upstream=f"http://127.0.0.1:{scim_server.port}", rate=0.3, seed=1, slow_seconds=1.5
    ) as proxy:
        idp = build_identity_provider(
            IdPSettings(
                base_url=proxy.proxied(base_url),
                token=SecretStr(SCIM_TOKEN),
                timeout_seconds=1.0,
                max_attempts=3,
            ),
            backoff_base=0.01,
        )
        hay.add("idp repr", repr(idp))
        for _ in range(3):
            try:  # with three attempts a read may fail for good: the run then raises (its error is scanned too)
                report = await SyncEngine(
                    hris=CSVExportHRIS(csv_path),
                    idp=idp,
                    ticketing=None,
                    policy=POLICY,
                    auditor=Auditor(database_url),
                    options=SyncOptions(full=True),
                ).run()
            except ConnectorError as exc:
                hay.exception("sync", exc)
                continue
            hay.add("sync summary", report.summary())
            hay.add("sync table", report.table())
            hay.add("sync failures", report.failures)
        await idp.aclose()
        assert sum(proxy.faults.values()) > 0

    # Failing authentication against SCIM.
    bad = build_identity_provider(
        IdPSettings(base_url=base_url, token=SecretStr(WRONG_TOKEN), max_attempts=1)
    )
    with pytest.raises(AuthenticationError) as refused:
        await bad.find_user_by_employee_id("E00001")
    hay.exception("scim auth", refused.value)
    await bad.aclose()

    # RT: a ticket, then a wrong password.
    rt_settings = TicketingSettings(
        kind="rt",
        base_url=rt.base_url,
        username=RT_ROOT_USER,
        password=SecretStr(RT_ROOT_PASSWORD),
        max_attempts=2,
    )
    ticketing = build_ticketing(rt_settings)
    assert ticketing is not None
    hay.add("rt repr", repr(ticketing))
    ticket = await ticketing.create_ticket(
        TicketRequest(
            reference="tenure:S1:laptop:2027-03-01",
            purpose="laptop",
            title="Laptop",
            body="for S1",
            queue="General",
        )
    )
    hay.add("rt ticket", ticket.model_dump())
    await ticketing.aclose()  # type: ignore[attr-defined]
    wrong_rt = build_ticketing(rt_settings.model_copy(update={"password": SecretStr(WRONG_RT_PASSWORD)}))
    assert wrong_rt is not None
    with pytest.raises(ConnectorError) as rt_refused:
        await wrong_rt.find_ticket("tenure:S1:laptop:2027-03-01")
    hay.exception("rt auth", rt_refused.value)
    await wrong_rt.aclose()  # type: ignore[attr-defined]

    # BambooHR: a 429 with Retry-After, then the report; then a 401.
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(
                200,
                json={
                    "employees": [
                        {
                            "id": "1",
                            "firstName": "A",
                            "lastName": "B",
                            "status": "Active",
                            "hireDate": "2020-01-01",
                        }
                    ]
                },
            ),
            httpx.Response(401, json={"error": "bad key"}),
        ]
    )
    hris = build_hris(
        HRISSettings(kind="bamboohr", subdomain="acme", api_key=SecretStr(BAMBOO_KEY)),
        transport=httpx.MockTransport(lambda request: next(answers)),
    )
    hay.add("bamboohr repr", repr(hris))
    assert [e async for e in hris.iter_employees()]
    with pytest.raises(AuthenticationError) as bamboo_refused:
        await hris.get_employee("1")
    hay.exception("bamboohr auth", bamboo_refused.value)
    await hris.api.aclose()  # type: ignore[attr-defined]

    # The CLI: config check and audit export with every secret in the environment.
    for name, value in {
        "TENURE_DATABASE_URL": database_url,
        "TENURE_POLICY_FILE": str(REPO / "examples/policy.yaml"),
        "TENURE_IDP__TOKEN": SCIM_TOKEN,
        "TENURE_HRIS__KIND": "bamboohr",
        "TENURE_HRIS__SUBDOMAIN": "acme",
        "TENURE_HRIS__API_KEY": BAMBOO_KEY,
        "TENURE_TICKETING__KIND": "rt",
        "TENURE_TICKETING__BASE_URL": rt.base_url,
        "TENURE_TICKETING__PASSWORD": RT_ROOT_PASSWORD,
        "TENURE_WEBHOOK__SECRET": WEBHOOK_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    for args in (
        ["config", "check"],
        ["audit", "export", "--format", "jsonl"],
        ["audit", "export", "--format", "csv"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        hay.add(f"cli {' '.join(args)}", result.output)
    assert "idp.user.create" in hay.texts[-1][1]

    for record in caplog.records:
        hay.add(f"log {record.name}", record.getMessage())
        if record.exc_info:
            hay.add(f"log {record.name} exc", logging.Formatter().formatException(record.exc_info))
    hay.add("log text", caplog.text)
    assert len(caplog.records) > 20
    assert hay.leaks() == []


@pytest.mark.parametrize(
    "hostile",
    [
        'x" or userName pr or userName eq "y',
        'a\\" or externalId pr or "',
        "o'brien) or (userName pr",
        'victim.user" and active eq true',
        "*",
        "victim.user%22%20or%20userName%20pr",
    ],
    ids=["quote-or", "escaped-quote", "parens", "and-clause", "star", "url-encoded"],
)
async def test_hostile_user_names_match_only_themselves(scim_server: SCIMServer, hostile: str) -> None:
    """Hostile userNames/employee ids in SCIM filters find only an exact match, never another account."""
    base_url = scim_server.tenant_url()
    async with httpx.AsyncClient(headers=scim_server.headers()) as client:
        for user_name, external_id in (("victim.user", "V1"), (hostile, "H1")):
            created = await client.post(
                f"{base_url}Users",
                json={
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                    "externalId": external_id,
                },
            )
            assert created.status_code == 201, created.text
    idp = build_identity_provider(IdPSettings(base_url=base_url, token=SecretStr(SCIM_TOKEN)))
    try:
        found = await idp.find_user_by_username(hostile)
        assert found is not None and found.employee_id == "H1"
        assert await idp.find_user_by_employee_id(hostile) is None
        assert await idp.find_user_by_username(hostile + " ") is None or hostile == "*"
    finally:
        await idp.aclose()


async def test_tampering_with_a_real_runs_audit_trail_is_detected(
    scim_server: SCIMServer, tmp_path: Path
) -> None:
    """After a real sync, editing, deleting or forging one audit row makes ``tenure audit verify`` exit 1."""
    base_url = scim_server.tenant_url()
    await create_group(base_url, SCIM_TOKEN, "all-staff")
    csv_path = tmp_path / "hris.csv"
    rows = fake_people(6, seed=3)
    for row in rows:
        row.update(
            status="active",
            termination_date="",
            hire_date=(datetime.now(UTC).date() - timedelta(days=30)).isoformat(),
        )
    write_csv(csv_path, rows)
    idp = build_identity_provider(IdPSettings(base_url=base_url, token=SecretStr(SCIM_TOKEN)))
    tampers = {
        "edit": "UPDATE audit_event SET outcome = 'failed' WHERE seq = 3",
        "delete": "DELETE FROM audit_event WHERE seq = 4",
        "forge": "UPDATE audit_event SET reason = 'nothing to see', hash = 'ab' || substr(hash, 3) WHERE seq = 2",
    }
    try:
        for kind, statement in tampers.items():
            database = tmp_path / f"{kind}.db"
            url = f"sqlite:///{database}"
            await SyncEngine(
                hris=CSVExportHRIS(csv_path),
                idp=idp,
                ticketing=None,
                policy=POLICY,
                auditor=Auditor(url),
                options=SyncOptions(full=True, dry_run=True),
            ).run()
            assert audit_verify_cli(url).returncode == 0
            with sqlite3.connect(database) as connection:
                assert connection.execute(statement).rowcount == 1
            result = audit_verify_cli(url)
            assert result.returncode == 1, (kind, result.stdout)
    finally:
        await idp.aclose()


# ----------------------------------------------------------------------------------- a hostile peer (issue 16)

HOSTILE_TOKEN = "TOKv4lue/SECRET+Hq7Wn2~Pz9.Xc4_Lm8"
CHECKPOINT_KEY = "ckptKEY-Bv6Nm3Qw8Er1-neverlog"
HOSTILE_POLICY = """
naming: {username: "{given}.{last}", email_domain: example.com}
birthright: [{groups: [all-staff]}]
brake: {max_disable_count: 1000, max_disable_percent: 100}
"""


class _HostileSCIM(BaseHTTPRequestHandler):
    """A SCIM service that lists nothing and refuses every write with an error echoing the caller's bearer
    token in every form: plain text with the token straddling the 300-character cut, and a SCIM Error whose
    detail carries it JSON-escaped (``\\/``), upper-cased, URL- and base64-encoded, and in pieces."""

    seen_tokens: ClassVar[list[str]] = []
    writes = 0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        return None

    def _answer(self, status: int, body: str, content_type: str = "application/scim+json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if "ServiceProviderConfig" in self.path:
            self._answer(404, "")
            return
        resources = (
            [
                {
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                    "id": "g1",
                    "displayName": "all-staff",
                }
            ]
            if "/Groups" in self.path
            else []
        )
        self._answer(
            200,
            json.dumps(
                {
                    "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                    "totalResults": len(resources),
                    "startIndex": 1,
                    "itemsPerPage": len(resources),
                    "Resources": resources,
                }
            ),
        )

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        type(self).seen_tokens.append(token)
        type(self).writes += 1
        if self.writes % 2:  # plain text: the token straddles the 300-character cut
            self._answer(400, "p" * (300 - len(token) // 2) + token + " " + hostile_echo(token), "text/plain")
            return
        error = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "400",
            "detail": "q" * 196 + hostile_echo(token),  # its token straddles the cut of the raw body
        }
        self._answer(400, json.dumps(error).replace("/", "\\/"))


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tenure.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_hostile_peer_echoing_the_token_leaves_no_piece_of_it_anywhere(tmp_path: Path) -> None:
    """A peer answering every write with the bearer token echoed in every form: no 8-character run of it, in
    any case or encoding, in the CLI's output, the raw SQLite file or ``tenure audit export`` (JSONL, CSV)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HostileSCIM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        csv_path, policy = tmp_path / "hris.csv", tmp_path / "policy.yaml"
        rows = fake_people(4, seed=9)
        for row in rows:
            row.update(status="active", termination_date="", hire_date="2020-01-01")
        write_csv(csv_path, rows)
        policy.write_text(HOSTILE_POLICY)
        database = tmp_path / "audit.db"
        env = {
            **os.environ,
            "TENURE_DATABASE_URL": f"sqlite:///{database}",
            "TENURE_POLICY_FILE": str(policy),
            "TENURE_HRIS__PATH": str(csv_path),
            "TENURE_IDP__BASE_URL": f"http://127.0.0.1:{server.server_address[1]}/scim/v2/",
            "TENURE_IDP__TOKEN": HOSTILE_TOKEN,
            "TENURE_IDP__MAX_ATTEMPTS": "1",
            "TENURE_AUDIT__CHECKPOINT_KEY": CHECKPOINT_KEY,
            "TENURE_AUDIT__CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        }
        outputs = {
            "sync": _cli(env, "sync", "--full"),
            "apply": _cli(env, "apply", rows[0]["employee_id"]),
            "export jsonl": _cli(env, "audit", "export", "--format", "jsonl"),
            "export csv": _cli(env, "audit", "export", "--format", "csv"),
        }
    finally:
        server.shutdown()
        server.server_close()
    assert set(_HostileSCIM.seen_tokens) == {HOSTILE_TOKEN}  # the peer did hold the token to echo
    assert outputs["sync"].returncode == 1 and outputs["apply"].returncode == 1
    assert outputs["export jsonl"].stdout.count('"idp.user.create"') >= 5
    assert "failed" in outputs["sync"].stderr
    # sync and apply each ended by anchoring the chain (tenure/checkpoint.py), the last at its full length
    checkpoints = [
        json.loads(line) for line in (tmp_path / "checkpoints/checkpoints.jsonl").read_text().splitlines()
    ]
    assert len(checkpoints) == 2
    assert checkpoints[-1]["seq"] == len(outputs["export jsonl"].stdout.splitlines())
    haystacks = {
        f"{name} {stream}": getattr(result, stream)
        for name, result in outputs.items()
        for stream in ("stdout", "stderr")
    }
    for path in database.parent.glob(database.name + "*"):  # the database and any -wal/-journal file
        if path.is_file():
            haystacks[path.name] = path.read_bytes().decode("utf-8", "replace")
    leaks = {
        f"{where} ({secret[:3]}…)": runs
        for where, text in haystacks.items()
        for secret in (HOSTILE_TOKEN, CHECKPOINT_KEY)
        if (runs := leaked_runs(text, secret))
    }
    assert leaks == {}
