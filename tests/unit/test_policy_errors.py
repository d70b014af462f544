"""A policy that would fail later fails at load, clearly (issue 16, item 6): templates allow only plain
``{field}``; duplicate YAML keys and duplicate privileged groups are refused by name; a file that does not
parse never has its content echoed; every command refuses such a policy with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.policy import PolicyError, load_policy
from tenure.cli import app

runner = CliRunner()

BAD_TEMPLATES = {
    "conversion": "Laptop for {display_name!r}",
    "format-spec": "Laptop from {hire_date:%d.%m.%Y}",
    "number-spec": "Laptop for {employee_id:d}",
    "nested": "Laptop for {display_name:{employee_id.__class__}}",
    "positional": "Laptop for {}",
    "index": "Laptop for {0}",
    "unbalanced": "Laptop for {display_name",
}


def _ticket_policy(tmp_path: Path, title: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "tickets:\n  joiner:\n    - purpose: laptop\n      title: " + repr(title).replace("\\\\", "\\") + "\n"
    )
    return path


@pytest.mark.parametrize("title", BAD_TEMPLATES.values(), ids=BAD_TEMPLATES.keys())
def test_ticket_template_allows_only_plain_fields(tmp_path: Path, title: str) -> None:
    """Conversions, format specs, nesting and positional fields are refused at load, naming the template."""
    with pytest.raises(PolicyError) as refused:
        load_policy(_ticket_policy(tmp_path, title))
    message = str(refused.value)
    assert "tickets.joiner.0" in message
    assert "plain {field}" in message


@pytest.mark.parametrize(
    "username", ["{given!r}.{last}", "{given:>40}.{last}", "{given:{last}}", "{}.{last}"]
)
def test_naming_template_allows_only_plain_fields(tmp_path: Path, username: str) -> None:
    """The userName template follows the same rule as ticket templates."""
    path = tmp_path / "policy.yaml"
    path.write_text(f"naming:\n  username: {username!r}\n")
    with pytest.raises(PolicyError, match=r"naming\.username.*plain \{field\}"):
        load_policy(path)


def test_plain_templates_and_escaped_braces_still_load(tmp_path: Path) -> None:
    """``{field}`` and literal ``{{`` / ``}}`` are fine."""
    path = _ticket_policy(tmp_path, "Laptop {{urgent}} for {display_name} ({employee_id})")
    assert load_policy(path).tickets.joiner[0].title.startswith("Laptop {{urgent}}")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("brake:\n  max_disable_count: 25\nbrake:\n  max_disable_count: 100000\n", "brake"),
        ("brake:\n  max_disable_count: 25\n  max_disable_count: 100000\n", "max_disable_count"),
        ("leaver:\n  timing: immediate\nprehire_days: 3\nleaver:\n  timing: at_termination\n", "leaver"),
    ],
    ids=["top-level", "nested", "apart"],
)
def test_duplicate_yaml_keys_are_refused(tmp_path: Path, text: str, key: str) -> None:
    """Two keys of one mapping: refused, naming the key and both lines (the last one does not win)."""
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=rf"duplicate key '{key}' .*line \d+.*line \d+"):
        load_policy(path)


def test_duplicate_privileged_groups_are_refused(tmp_path: Path) -> None:
    """Two entries for one privileged group (with different approvers) are refused, naming it."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        "privileged_groups:\n"
        "  - name: prod-admin\n    approvers: [security-lead]\n"
        "  - name: payments-approve\n"
        "  - name: prod-admin\n    approvers: [intern]\n"
    )
    with pytest.raises(PolicyError, match=r"privileged_groups.*duplicate.*'prod-admin'"):
        load_policy(path)


SHADOW_LIKE = (
    "root:$6$Qz8bY1ws$HASHVALUEnumberONE.abcdefgh:19700:0:99999:7:::\n"
    'daemon: "unterminated SECRETLINEtwo:19700:0:99999:7:::\n'
    "alice:$6$xyz$HASHVALUEnumberTHREE:19700:0:99999:7:::\n"
)


def test_unparsable_policy_never_echoes_its_content(tmp_path: Path) -> None:
    """A file that is not YAML: the error names the file, the line and the problem, never the content."""
    path = tmp_path / "shadow"
    path.write_text(SHADOW_LIKE)
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    message = str(refused.value)
    assert str(path) in message and "line 2" in message
    for fragment in ("HASHVALUE", "SECRETLINE", "root:", "daemon", "alice", "19700"):
        assert fragment not in message, message


def test_unreadable_policy_is_a_clear_error(tmp_path: Path) -> None:
    """A directory, or bytes that are not UTF-8: a PolicyError naming the file, no traceback, no content."""
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe SECRETBYTES \x00\x80")
    with pytest.raises(PolicyError, match="not UTF-8") as refused:
        load_policy(binary)
    assert "SECRETBYTES" not in str(refused.value)


def test_etc_shadow_as_policy_exits_2_without_echo(
    fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TENURE_POLICY_FILE=/etc/shadow``: exit 2, and no line of the file in the output."""
    shadow = Path("/etc/shadow")
    monkeypatch.setenv("TENURE_DATABASE_URL", fresh_sqlite_url)
    monkeypatch.setenv("TENURE_POLICY_FILE", str(shadow))
    result = runner.invoke(app, ["config", "check"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    try:
        lines = [line for line in shadow.read_text().splitlines() if line.strip()]
    except OSError:  # not readable by this user: the refusal above is all there is to see
        lines = []
    for line in lines:
        assert line.split(":", 1)[0] + ":" not in result.output, result.output


COMMANDS = [
    ["config", "check"],
    ["plan", "E1"],
    ["apply", "E1"],
    ["sync"],
    ["sync", "--full", "--dry-run"],
    ["review", "run", "--dry-run"],
    ["review", "deadline"],
    ["review", "decide", "rc-1", "i-1", "keep", "--by", "someone"],
    ["kpi"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_every_command_refuses_a_bad_template_with_exit_2(
    args: list[str], tmp_path: Path, fresh_sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template that would fail in ``plan`` stops every command before it reads or writes anything:
    exit 2 naming the template, no audit database created (so no run without an audit row)."""
    database = tmp_path / "never.db"
    monkeypatch.setenv("TENURE_DATABASE_URL", f"sqlite:///{database}")
    monkeypatch.setenv("TENURE_POLICY_FILE", str(_ticket_policy(tmp_path, "For {display_name!r}")))
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "tickets.joiner.0.title" in result.output
    assert not database.exists()
