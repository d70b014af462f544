"""The rooms keep their jobs: imports only go down, and the applier is the one door for ledger and audit writes.

Read from the source with :mod:`ast` (every ``import``, including those inside functions), so a violation fails
here whatever runs or does not run at import time.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("models", "lifecycle", "connectors", "engine", "flows", "deployments", "tenure")

# What each room may import (besides itself, the standard library and third-party packages).
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "lifecycle": {"models"},
    "connectors": {"models"},
    "engine": {"lifecycle", "connectors", "models"},
    "tenure.settings": set(),
    "tenure.compose": {"tenure.settings", "connectors", "models"},
    "tenure.checkpoint": {"tenure.settings", "models"},
    "tenure.export": set(),
    "tenure.report": {"engine"},  # the HTML page of `tenure report`, drawn from the engine's figures
    "flows": {
        "engine",
        "lifecycle",
        "connectors",
        "models",
        "tenure.settings",
        "tenure.compose",
        "tenure.checkpoint",
    },
    "deployments": {"engine", "lifecycle", "connectors", "models", "tenure.settings", "tenure.compose"},
    "tenure.cli": {
        "engine",
        "lifecycle",
        "connectors",
        "models",
        "flows",
        "deployments",
        "tenure.settings",
        "tenure.compose",
        "tenure.checkpoint",
        "tenure.export",
        "tenure.report",
    },
}
# Prefect is glue: only the flows, the deployments, the settings (Secret blocks) and the CLI may import it.
MAY_IMPORT_PREFECT = {"flows", "deployments", "tenure.settings", "tenure.cli"}


def room_of(module: str) -> str | None:
    """The room a dotted module name belongs to (``tenure`` splits into settings, compose and cli)."""
    parts = module.split(".")
    if parts[0] == "tenure":
        if len(parts) == 1:
            return "tenure.cli"
        return "tenure.cli" if parts[1] in ("cli", "__main__") else f"tenure.{parts[1]}"
    return parts[0] if parts[0] in PACKAGES else None


def production_files() -> list[Path]:
    return sorted(
        p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts
    )


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_imports_only_go_down() -> None:
    """flows/CLI → engine → lifecycle/connectors → models; connectors and lifecycle never import the app."""
    violations = []
    for path in production_files():
        own = room_of(module_name(path))
        assert own is not None
        for imported in imports_of(path):
            if imported.split(".")[0] == "prefect" and own not in MAY_IMPORT_PREFECT:
                violations.append(f"{path.relative_to(ROOT)} imports {imported}")
            other = room_of(imported)
            if other is None or other == own:
                continue
            if other not in ALLOWED[own]:
                violations.append(f"{path.relative_to(ROOT)} ({own}) imports {imported} ({other})")
    assert violations == []


def test_no_cycle_between_rooms() -> None:
    """The room graph is acyclic (the CLI commands import the shared CLI module, never the other way round)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in production_files():
        own = room_of(module_name(path))
        for imported in imports_of(path):
            other = room_of(imported)
            if other is not None and other != own and own is not None:
                edges[own].add(other)
    seen: set[str] = set()

    def visit(node: str, stack: tuple[str, ...]) -> None:
        assert node not in stack, f"import cycle: {' → '.join((*stack, node))}"
        if node in seen:
            return
        for nxt in sorted(edges[node]):
            visit(nxt, (*stack, node))
        seen.add(node)

    for room in sorted(edges):
        visit(room, ())


WRITERS = {
    "record",
    "record_many",
    "append_events",
    "upsert_entry",
    "upsert_entries",
    "upsert_grants",
    "cursor_put",
    "roster_count_put",
    "mirror_put",
    "insert_rows",
    "insert_records",
    "update_rows",
}
TABLES = {
    "AuditEvent",
    "LedgerEntry",
    "Grant",
    "SyncCursor",
    "RosterCount",
    "DirectoryLink",
    "DirectoryAccount",
    "DirectoryGroup",
}
THE_DOOR = ROOT / "engine" / "applier.py"


@pytest.mark.parametrize("path", production_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_ledger_and_audit_rows_are_written_only_by_the_applier(path: Path) -> None:
    """Only engine/applier.py calls the ledger and audit write functions or adds/merges their rows."""
    if path == THE_DOOR or path.parent.name == "models":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module in ("models.audit", "models.ledger", "models.directory", "models.rows")
        for alias in node.names
    }
    assert not imported & WRITERS, f"{path.relative_to(ROOT)} imports a ledger/audit writer"
    if imported & TABLES:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                assert node.func.attr not in {"add", "add_all", "merge", "delete"}, (
                    f"{path.relative_to(ROOT)}:{node.lineno} writes a ledger or audit row"
                )


def test_actions_carry_no_untyped_params() -> None:
    """Action.params is gone: every action field is typed (a discriminated union on ``kind``)."""
    from lifecycle.actions import ACTION_ADAPTER, CreateAccount, Schedule

    for model in (CreateAccount, Schedule):
        assert "params" not in model.model_fields
    schema = ACTION_ADAPTER.json_schema()
    assert schema["discriminator"]["propertyName"] == "kind"


def test_deployments_are_named_by_their_job() -> None:
    """prefect.yaml names each deployment by its job (issue #18: not eight "tenure"s), each name once, and the
    names the receiver and the scheduled follow-ups start runs by exist."""
    import yaml

    from flows.orchestration import RECONCILE_DEPLOYMENT
    from tenure.settings import WebhookSettings

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = [d["name"] for d in spec["deployments"]]
    assert "tenure" not in names and len(set(names)) == len(names)
    assert {"joiner", "mover", "leaver", "nightly-sync", "weekly-full-sync"} <= set(names)
    by_flow: dict[str, set[str]] = {}
    for d in spec["deployments"]:
        by_flow.setdefault(d["entrypoint"].rsplit(".", 1)[1].replace("_", "-"), set()).add(d["name"])
    for full_name in {RECONCILE_DEPLOYMENT, *WebhookSettings().event_deployments.values()}:
        flow, name = full_name.split("/")
        assert name in by_flow.get(flow, set()), full_name
