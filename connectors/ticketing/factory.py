"""Build the configured ticketing connector from :class:`tenure.settings.TicketingSettings`.

Secrets are revealed here, at the moment of use, and registered with the APIClient for redaction.
Authentication per vendor:

- RT 5 REST2: ``username`` + ``password`` (HTTP Basic), or ``token`` sent as ``Authorization: token <t>``
  (RT::Authen::Token, core in RT 5);
- Jira Service Management: ``username`` (account e-mail) + ``token`` (API token) as Basic (Cloud), ``token``
  alone as a Bearer personal access token (Data Center), or ``username`` + ``password``;
- ServiceNow: ``username`` + ``password`` (Basic), or ``token`` alone as an OAuth Bearer token.
"""

from __future__ import annotations

import httpx

from connectors.http import api_client_from
from connectors.protocols import Ticketing
from connectors.ticketing.jira import JiraServiceManagement
from connectors.ticketing.rt import RTTicketing
from connectors.ticketing.servicenow import ServiceNowTicketing
from tenure.settings import TicketingSettings, reveal

__all__ = ["build_ticketing", "rt_rest_url", "DEFAULT_SERVICENOW_TABLE"]

DEFAULT_SERVICENOW_TABLE = "incident"
_DEFAULT_QUEUE = TicketingSettings.model_fields["queue"].default


def rt_rest_url(base_url: str) -> str:
    """RT's REST2 root from either the RT web root (``https://rt/rt/``) or the REST2 root itself."""
    root = base_url.rstrip("/")
    return f"{root}/" if root.endswith("/REST/2.0") else f"{root}/REST/2.0/"


def _credentials(
    settings: TicketingSettings,
) -> tuple[httpx.Auth | tuple[str, str] | None, dict[str, str], list[str]]:
    """(auth, extra headers, secrets to redact) for the configured vendor."""
    password, token = reveal(settings.password), reveal(settings.token)
    secrets = [s for s in (password, token) if s]
    if settings.kind == "jira" and settings.username and token:
        return (settings.username, token), {}, secrets
    if settings.username and password:
        return (settings.username, password), {}, secrets
    if token:
        scheme = "token" if settings.kind == "rt" else "Bearer"
        return None, {"Authorization": f"{scheme} {token}"}, secrets
    raise ValueError(
        f"ticketing.kind={settings.kind} needs ticketing.username with a password/token, or a token"
    )


def build_ticketing(
    settings: TicketingSettings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Ticketing | None:
    """The connector named by ``settings.kind``; ``none`` gives None (ticket actions are only audited)."""
    if settings.kind == "none":
        return None
    if not settings.base_url:
        raise ValueError(f"ticketing.base_url is required for kind={settings.kind}")
    if settings.kind == "jira" and not settings.service_desk_id:
        raise ValueError("ticketing.service_desk_id is required for kind=jira")
    auth, headers, secrets = _credentials(settings)
    base_url = (
        rt_rest_url(settings.base_url) if settings.kind == "rt" else settings.base_url.rstrip("/") + "/"
    )
    api = api_client_from(
        settings,
        base_url=base_url,
        source=settings.kind,
        auth=auth,
        secrets=secrets,
        transport=transport,
        headers=headers,
    )
    if settings.kind == "rt":
        return RTTicketing(api, queue=settings.queue)
    if settings.kind == "jira":
        assert settings.service_desk_id  # checked above, before a client was opened
        return JiraServiceManagement(
            api, service_desk_id=settings.service_desk_id, request_type=settings.queue
        )
    if settings.kind == "servicenow":
        # ``queue`` names the table; the generic default ("General", an RT queue) means the incident table.
        table = DEFAULT_SERVICENOW_TABLE if settings.queue == _DEFAULT_QUEUE else settings.queue
        return ServiceNowTicketing(api, table=table)
    raise ValueError(f"unknown ticketing kind {settings.kind!r}")  # pragma: no cover - Literal guards it
