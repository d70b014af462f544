"""The one scrubber (issue 16, item 1): a registered secret is masked in its raw, JSON-escaped, URL-encoded,
base64 and case-folded forms and as any 8+ character run of any of them, after every transformation and before
any cut; in connector errors, audit rows, log records and console output. Database URLs are secrets too."""

from __future__ import annotations

import gc
import io
import json
import logging
import secrets

import pytest
import respx
from typer.testing import CliRunner

from connectors.errors import PermanentAPIError
from connectors.http import APIClient, build_client
from connectors.redaction import Redactor, ScrubbedStream, register_secrets, scrub
from engine.auditor import Auditor
from models.audit import Outcome
from tenure.cli import app
from tests.support.leaks import hostile_echo, leaked_runs

TOKEN = "TOKv4lue/SECRET+9f8e~7d6c.5b4a_3Z"
BASE = "https://idp.test/scim/v2/"


def test_every_form_and_every_run_is_masked() -> None:
    """No 8-character run of any form survives; the text around it does."""
    redact = Redactor([TOKEN])
    text = hostile_echo(TOKEN)
    assert leaked_runs(text, TOKEN)  # the check can see a leak
    scrubbed = redact(text)
    assert leaked_runs(scrubbed, TOKEN) == []
    assert scrubbed.startswith("raw ***") and "| piece ***" in scrubbed


def test_text_without_the_secret_is_unchanged() -> None:
    redact = Redactor([TOKEN])
    text = "POST /Users failed: userName must be unique (HTTP 409) for ada.lovelace@example.com"
    assert redact(text) == text


def test_short_secrets_match_whole_only_and_tiny_ones_not_at_all() -> None:
    """A 4–7 character secret is masked where it appears whole (any case); under 4 characters is ignored."""
    redact = Redactor(["pa5sw", "x"])
    assert redact("pw=PA5SW, x marks") == "pw=***, x marks"


def test_scrub_uses_every_live_registration_and_masks_urls() -> None:
    """``scrub`` applies every registered secret while its registration is alive, plus URL credentials."""
    gc.collect()  # registrations other tests dropped (a notifier's webhook URL, say) go now, not at random
    value = "zq" + secrets.token_hex(12)  # shares no 8-character run with any other test's secret
    held = register_secrets([value])
    assert scrub(f"a {value.upper()} b") == "a *** b"
    assert scrub("postgresql://tenure:hunter2@db:5432/x") == "postgresql://tenure:***@db:5432/x"
    assert scrub("see https://ghp_tokenvalue@git.example/x") == "see https://***@git.example/x"
    del held
    assert scrub(f"a {value} b") == f"a {value} b"


@respx.mock
async def test_error_body_is_scrubbed_before_it_is_cut() -> None:
    """A token straddling the 300-character cut of an error body leaves no 8-character run in the error."""
    for offset in range(280, 300):
        respx.post(f"{BASE}Users").respond(400, text="x" * offset + TOKEN + " trailing")
        client = build_client(BASE)
        api = APIClient(client, source="scim", secrets=[TOKEN], max_attempts=1)
        with pytest.raises(PermanentAPIError) as refused:
            await api.request("POST", "Users")
        await client.aclose()
        assert leaked_runs(str(refused.value), TOKEN) == [], offset


@respx.mock
async def test_scim_error_detail_is_scrubbed_before_it_is_cut() -> None:
    """A SCIM Error body's detail (cut to 300 characters) is scrubbed first, including its JSON escapes."""
    from connectors.idp.scim import SCIMIdentityProvider

    detail = "y" * 262 + json.dumps(TOKEN)[1:-1].replace("/", "\\/")
    respx.get(f"{BASE}Users/1").respond(
        400,
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "400", "detail": detail},
    )
    idp = SCIMIdentityProvider(APIClient(build_client(BASE), source="scim", secrets=[TOKEN], max_attempts=1))
    with pytest.raises(PermanentAPIError) as refused:
        await idp._call("GET", "Users/1")
    await idp.aclose()
    assert leaked_runs(str(refused.value), TOKEN) == []


def test_audit_rows_are_scrubbed_when_built(fresh_sqlite_url: str) -> None:
    """The auditor scrubs reason and details (keys and nested values) of every event it builds."""
    held = register_secrets([TOKEN])
    event = Auditor(fresh_sqlite_url).event(
        action="idp.user.create",
        target_system="scim",
        outcome=Outcome.FAILED,
        reason=hostile_echo(TOKEN),
        details={"body": [hostile_echo(TOKEN)], "nested": {"x": TOKEN.upper()}, "n": 3},
    )
    del held
    assert leaked_runs(event.model_dump_json(), TOKEN) == []
    assert event.details["n"] == 3 and event.reason.startswith("raw ***")


def test_every_log_record_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    """Any logger, message arguments and the exception text of a record: scrubbed when the record is made."""
    held = register_secrets([TOKEN])
    caplog.set_level(logging.INFO)
    try:
        raise RuntimeError(f"peer said {hostile_echo(TOKEN)}")
    except RuntimeError:
        logging.getLogger("tenure.anything").exception("failed with %s", TOKEN.lower())
    del held
    assert leaked_runs(caplog.text, TOKEN) == []
    assert "failed with ***" in caplog.text and "RuntimeError: peer said raw ***" in caplog.text


def test_console_stream_is_scrubbed_even_across_writes() -> None:
    """The console stream scrubs each line, also when one line arrives in several writes."""
    held = register_secrets([TOKEN])
    target = io.StringIO()
    stream = ScrubbedStream(target)
    stream.write("error: " + TOKEN[:10])
    stream.write(TOKEN[10:] + " end\nnext ")
    stream.write(hostile_echo(TOKEN))
    stream.flush()
    del held
    assert leaked_runs(target.getvalue(), TOKEN) == []
    assert target.getvalue().startswith("error: *** end\nnext raw ***")


def test_config_check_masks_the_database_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TENURE_DATABASE_URL`` is shown with its password masked (the table comes before the database check)."""
    password = "Sup3r-S3cret-dbpass"
    monkeypatch.setenv("TENURE_DATABASE_URL", f"postgresql+psycopg://tenure:{password}@127.0.0.1:1/tenure")
    result = CliRunner().invoke(app, ["config", "check"])
    assert "TENURE_DATABASE_URL" in result.output
    assert "postgresql+psycopg://tenure:***@127.0.0.1:1/tenure" in result.output
    assert leaked_runs(result.output, password) == []


def test_a_commands_settings_secrets_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """The composition root registers every secret of the settings, the database password (8+ characters)
    included, while the returned handle is held (a command holds it for its run, open_connectors for its own)."""
    from tenure.compose import register_settings_secrets
    from tenure.settings import load_settings

    monkeypatch.setenv("TENURE_DATABASE_URL", "postgresql://tenure:Another-db-Pw-77@db/tenure")
    monkeypatch.setenv("TENURE_IDP__TOKEN", TOKEN)
    held = register_settings_secrets(load_settings())
    assert scrub(f"auth failed for Another-db-Pw-77 with {TOKEN}") == "auth failed for *** with ***"
    del held


def test_redactor_repr_shows_nothing() -> None:
    assert TOKEN not in repr(Redactor([TOKEN]))


def test_log_record_arguments_keep_their_shape() -> None:
    """A secret in one text argument is scrubbed in place, so formatters that unpack ``args`` (uvicorn's access
    log) still work; nothing clean is touched."""
    held = register_secrets([TOKEN])
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4", "GET", f"/x?t={TOKEN}", "1.1", 200),
        None,
    )
    clean = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "%s %d", ("plain", 3), None)
    del held
    assert isinstance(record.args, tuple) and len(record.args) == 5 and record.args[4] == 200
    assert leaked_runs(record.getMessage(), TOKEN) == [] and "GET /x?t=***" in record.getMessage()
    assert clean.args == ("plain", 3)


def test_a_remembered_text_is_scrubbed_again_when_the_secrets_change() -> None:
    """Short texts are remembered, but never past a change of the registered secrets: a secret registered
    after a text was first scrubbed is masked in it, and one dropped is no longer masked."""
    value = "zr" + secrets.token_hex(12)
    text = f"group {value} of employee E1"
    assert scrub(text) == text
    held = register_secrets([value])
    assert scrub(text) == "group *** of employee E1"
    del held
    gc.collect()
    assert scrub(text) == text
