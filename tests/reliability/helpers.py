"""Shared by the reliability tests: the IdP's end state read straight from scim2-server (never through the
proxy), audit tallies, and the ``tenure audit verify`` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlmodel import select

from models.audit import AuditEvent, Outcome
from models.db import session_scope

__all__ = ["REPO", "Snapshot", "snapshot", "applied_changes", "audit_verify_cli"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Snapshot:
    """What the IdP holds: users by externalId and group memberships by externalId, with duplicates counted."""

    users: dict[str, tuple[str, bool]]  # externalId -> (userName, active)
    users_per_external_id: Counter[str]
    members: dict[str, frozenset[str]]  # group name -> externalIds of its members
    duplicate_members: dict[str, int]  # group name -> member values listed more than once
    groups_per_name: Counter[str]

    def duplicates(self) -> dict[str, object]:
        """Everything that exists more than once (empty when all is well)."""
        return {
            "users": {k: n for k, n in self.users_per_external_id.items() if n > 1},
            "members": {k: n for k, n in self.duplicate_members.items() if n},
            "groups": {k: n for k, n in self.groups_per_name.items() if n > 1},
        }


def _pages(base_url: str, token: str, resource: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    start = 1
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        while True:
            data = client.get(f"{base_url}{resource}", params={"startIndex": start, "count": 500}).json()
            page = data.get("Resources") or []
            found += page
            start += len(page)
            if not page or start > int(data.get("totalResults", 0)):
                return found


def snapshot(base_url: str, token: str) -> Snapshot:
    """The tenant's users and groups, read directly from the peer."""
    users = _pages(base_url, token, "Users")
    by_id = {str(u["id"]): str(u.get("externalId") or "") for u in users}
    groups = _pages(base_url, token, "Groups")
    members: dict[str, frozenset[str]] = {}
    duplicates: dict[str, int] = {}
    for group in groups:
        values = [str(m["value"]) for m in group.get("members") or []]  # type: ignore[union-attr]
        name = str(group["displayName"])
        duplicates[name] = len(values) - len(set(values))
        members[name] = frozenset(by_id.get(v, f"<gone {v}>") for v in values)
    return Snapshot(
        users={str(u.get("externalId")): (str(u["userName"]), u.get("active") is not False) for u in users},
        users_per_external_id=Counter(str(u.get("externalId")) for u in users),
        members=members,
        duplicate_members=duplicates,
        groups_per_name=Counter(str(g["displayName"]) for g in groups),
    )


def applied_changes(
    database_url: str, prefix: str = "idp.", *, outcome: Outcome = Outcome.APPLIED
) -> Counter[tuple[str, str, str]]:
    """Audit rows with ``outcome`` (default applied) as (employee id, action, target) → count."""
    with session_scope(database_url) as session:
        rows = session.exec(select(AuditEvent).where(AuditEvent.outcome == outcome.value)).all()
    return Counter(
        (r.employee_id or "", r.action, str(r.details.get("target", r.target_id)))
        for r in rows
        if r.action.startswith(prefix)
    )


def audit_verify_cli(database_url: str) -> subprocess.CompletedProcess[str]:
    """``tenure audit verify`` as a user runs it (a subprocess)."""
    env = {
        **os.environ,
        "TENURE_DATABASE_URL": database_url,
        "TENURE_POLICY_FILE": str(REPO / "examples" / "policy.yaml"),
    }
    return subprocess.run(
        [sys.executable, "-m", "tenure.cli", "audit", "verify"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
