"""Seed the Graph fake with the accounts Tenure would have made for a roster (the planner's own create and
birthright groups), so a sync test or bench starts from a directory in line with the HRIS."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from connectors.hris.csv_export import CSVExportHRIS
from connectors.idp.entra import EntraIdentityProvider
from lifecycle.actions import AddMembership, CreateAccount
from lifecycle.planner import plan
from lifecycle.policy import Policy
from models.domain import Employee
from tests.support.graph_fake import FakeGraph

__all__ = ["seed_in_line"]


async def seed_in_line(
    graph: FakeGraph, entra: EntraIdentityProvider, csv_path: Path, policy: Policy, groups: tuple[str, ...]
) -> tuple[dict[str, str], dict[str, str]]:
    """Create ``groups`` and every employee's account in line with ``policy``; returns (group name → id,
    employee id → user id)."""
    async with CSVExportHRIS(csv_path) as hris:
        employees = [e async for e in hris.iter_employees() if isinstance(e, Employee)]
    now = datetime.now(UTC)
    group_ids = {name: graph.add_group(name)["id"] for name in groups}
    user_ids: dict[str, str] = {}
    for employee in employees:
        actions = plan(employee, None, policy, now).actions
        create = next(a for a in actions if isinstance(a, CreateAccount))
        body = entra._user_body(create.attributes.model_copy(update={"active": True}))
        body.pop("passwordProfile")
        user_ids[employee.employee_id] = graph.add_user(**body)["id"]
        for action in actions:
            if isinstance(action, AddMembership):
                graph.members[group_ids[action.group]].append(user_ids[employee.employee_id])
    for employee in employees:
        if employee.manager_id:
            graph.managers[user_ids[employee.employee_id]] = user_ids[employee.manager_id]
    return group_ids, user_ids
