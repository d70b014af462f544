"""Many writes for vendors without a bulk form: one call per item, a few at a time, judged per item.

:meth:`connectors.protocols.IdentityProvider.add_members` asks for many members of one group at once and
``create_users`` for many accounts. Where the vendor's API has no request that writes several (Okta's Users
and Groups APIs; Google's Directory API outside its multipart batch endpoint; LDAP adds; Graph creates, which
need a look-up each), the connector sends one idempotent call per item through these helpers; the client's own
rate limit and concurrency cap still apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from connectors.errors import ConnectorError
from models.domain import Account, AccountAttributes

__all__ = ["one_by_one", "create_one_by_one"]

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


async def create_one_by_one(
    attributes: Sequence[AccountAttributes],
    create: Callable[[AccountAttributes], Awaitable[Account]],
    *,
    concurrency: int = CONCURRENCY,
) -> list[Account | ConnectorError]:
    """``create(a)`` for each, at most ``concurrency`` at once; the account or the error, in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item: AccountAttributes) -> Account | ConnectorError:
        async with semaphore:
            try:
                return await create(item)
            except ConnectorError as exc:
                return exc

    return list(await asyncio.gather(*(one(a) for a in attributes)))
