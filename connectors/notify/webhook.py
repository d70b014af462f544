"""A Slack- or Teams-style incoming webhook: ``POST {"text": …}`` as JSON to a secret URL.

Slack: https://api.slack.com/messaging/webhooks (``text`` is the message; the URL itself is the credential, so
it is registered with the scrubber). Microsoft Teams workflows accept the same ``text`` payload. Retries,
rate limits and error classification are the HTTP layer's (:mod:`connectors.http`).
"""

from __future__ import annotations

from typing import Self

from connectors.http import APIClient
from models.domain import Notice

__all__ = ["WebhookNotifier"]


class WebhookNotifier:
    """Post each notice to the webhook ``path`` of ``api`` (whose base URL is the webhook's origin)."""

    source = "webhook"

    def __init__(self, api: APIClient, path: str) -> None:
        self.api = api
        self._path = path
        api.add_secrets(path)

    def __repr__(self) -> str:
        return "WebhookNotifier()"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.api.aclose()

    async def send(self, notice: Notice) -> str:
        text = f"*{notice.subject}*\n{notice.body}"
        response = await self.api.request("POST", self._path, json={"text": text})
        return response.headers.get("x-slack-req-id") or notice.key
