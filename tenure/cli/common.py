"""What every ``tenure`` subcommand shares: exit codes, consoles, loading the configuration, running with
connectors. Exit codes: 0 ok, 1 some work failed (and said what), 2 usage or configuration error."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from connectors.errors import AuthenticationError, ConnectorError
from connectors.redaction import Redactor
from engine.preflight import MissingGroups
from lifecycle.policy import Policy, PolicyError, load_policy
from models.db import DatabaseUnavailable
from tenure.settings import Settings, load_settings

if TYPE_CHECKING:
    from engine.auditor import Auditor
    from tenure.compose import Connectors

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "console",
    "out",
    "fail",
    "load_config",
    "run_async",
    "run_with_connectors",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")

console = Console(stderr=True, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)
_scrubber: Redactor | None = (
    None  # the loaded settings' secrets (connectors.redaction), one command at a time
)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def load_config(*, with_policy: bool = True) -> tuple[Settings, Policy | None]:
    """Settings and policy, or exit 2 with a message naming the bad field. Nothing is written. The settings'
    secrets are registered with the scrubber for the rest of the command."""
    global _scrubber
    try:
        settings = load_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"TENURE_{'__'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        fail(f"invalid settings: {problems}")
    from tenure.compose import (  # the vendor modules load only when needed
        TargetMismatch,
        check_targets,
        register_settings_secrets,
    )

    _scrubber = register_settings_secrets(settings)
    policy = None
    if with_policy:
        try:
            policy = load_policy(settings.policy_file, adopt_before=settings.adopt_before)
            check_targets(settings, policy.targets)
        except (PolicyError, TargetMismatch) as exc:
            fail(str(exc))
    return settings, policy


def run_async(coro: Any) -> Any:
    """Run ``coro``; a connector failure exits 1; an unreachable database, a policy group the IdP lacks (the
    preflight) or a refused credential (the message names the setting) exits 2."""
    try:
        return asyncio.run(coro)
    except MissingGroups as exc:
        fail(str(exc))
    except AuthenticationError as exc:  # a refused credential is a configuration error
        fail(f"{exc}")
    except ConnectorError as exc:
        fail(f"{exc}", EXIT_FAILED)
    except DatabaseUnavailable as exc:
        fail(str(exc))


def run_with_connectors(
    settings: Settings, work: Callable[[Connectors | None, Auditor], Awaitable[T]], *, connect: bool = True
) -> T:
    """Run ``work(connectors, auditor)`` with the configured connectors open (``None`` when ``connect`` is false)
    and closed afterwards. A factory refusing its settings or a refused credential exits 2, another connector
    failure exits 1, an unreachable database exits 2."""
    from engine.auditor import Auditor
    from tenure.compose import open_connectors

    async def _run() -> T:
        async with contextlib.AsyncExitStack() as stack:
            connectors = None
            if connect:
                try:
                    connectors = await stack.enter_async_context(open_connectors(settings))
                except (
                    ValueError
                ) as exc:  # the composition root refused the configuration (missing URL, key, ...)
                    fail(f"invalid configuration: {exc}")
            return await work(connectors, Auditor(settings.database_url))

    result: T = run_async(_run())
    return result
