"""Two channels behind one :class:`~connectors.protocols.Notifier`: e-mail for addresses, the incoming webhook
for the recipient address ``webhook`` (a team channel, e.g. ``recipients: {ops: webhook}``).

A channel everyone in it reads is no place for a report's name: manager messages go by e-mail to the manager
alone, and only a recipient the policy names as ``webhook`` is posted to the channel.
"""

from __future__ import annotations

from typing import Self

from connectors.errors import PermanentAPIError
from connectors.protocols import Notifier
from models.domain import Notice

__all__ = ["WEBHOOK_ADDRESS", "RoutedNotifier"]

WEBHOOK_ADDRESS = "webhook"


class RoutedNotifier:
    """Send each notice by the channel its address names; a channel not configured fails that notice."""

    source = "notify"

    def __init__(self, *, email: Notifier | None, webhook: Notifier | None) -> None:
        self.email, self.webhook = email, webhook

    def __repr__(self) -> str:
        return f"RoutedNotifier(email={self.email!r}, webhook={self.webhook!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in (self.email, self.webhook):
            if channel is not None:
                await channel.__aexit__(*exc)

    async def send(self, notice: Notice) -> str:
        by_webhook = notice.to == WEBHOOK_ADDRESS
        channel = self.webhook if by_webhook else self.email
        if channel is None:
            wanted = "TENURE_NOTIFY__WEBHOOK_URL" if by_webhook else "TENURE_NOTIFY__SMTP_HOST"
            raise PermanentAPIError(f"no channel for this recipient: set {wanted}", source=self.source)
        return await channel.send(notice)
