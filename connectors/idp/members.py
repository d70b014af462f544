"""Membership writes for vendors without a bulk form: one call per member, a few at a time, judged per member.

:meth:`connectors.protocols.IdentityProvider.add_members` asks for many members of one group at once. Where the
vendor's API has no request that writes several memberships (Okta's Groups API; Google's Directory API outside
its multipart batch endpoint), the connector sends one idempotent call per member through this helper; the
client's own rate limit and concurrency cap still apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from connectors.errors import ConnectorError

__all__ = ["one_by_one"]

CONCURRENCY = 8


async def one_by_one(
    account_ids: Sequence[str], write: Callable[[str], Awaitable[None]], *, concurrency: int = CONCURRENCY
) -> dict[str, ConnectorError]:
    """``write(account_id)`` for each distinct id, at most ``concurrency`` at once; the ids that failed."""
    semaphore = asyncio.Semaphore(concurrency)
    failed: dict[str, ConnectorError] = {}

    async def one(account_id: str) -> None:
        async with semaphore:
            try:
                await write(account_id)
            except ConnectorError as exc:
                failed[account_id] = exc

    await asyncio.gather(*(one(a) for a in dict.fromkeys(account_ids)))
    return failed
