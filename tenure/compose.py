"""The composition root: the one place that reads settings, resolves secrets and builds connectors.

Connectors take plain values (URLs, names, :class:`connectors.http.HTTPOptions`, secrets as ``SecretStr``) and
know nothing of Tenure's settings or of Prefect; this module maps ``TENURE_*`` settings onto them. Secrets are
resolved here (:func:`tenure.settings.reveal`: the value, or a ``prefect-block:NAME`` Secret block) at build
time and registered with the connector's HTTP client for redaction; :func:`register_settings_secrets` registers
all of a run's secrets with the scrubber (:mod:`connectors.redaction`), as :func:`open_connectors` does for the
time the connectors are open.

Each builder imports its vendor's module when that vendor is configured, so a command pays only for the
connectors it uses (scim2-models, google-auth and ldap3 alone cost most of a second). A process that runs flows
imports every vendor module when it loads them (:func:`load_vendor_connectors`, called by :mod:`flows`), never on
first use inside a running flow: CPython 3.11 can fail an ``ast.parse`` (pydantic's docstring extraction while
scim2-models is imported) made while another thread of the run compiles code. The CLI builds its connectors
before it starts any thread, and imports the SCIM connector's scim2-models half
(:mod:`connectors.idp.scim_resources`) only when a run needs it (a write, an error body, a resource in another
shape than the plain one): a no-drift sync never does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import AsyncIterator, Collection
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx
from pydantic import SecretStr

from connectors.http import APIClient, HTTPOptions, TokenAuth, api_client_from, basic_auth_secrets
from connectors.notify import RoutedNotifier, SMTPNotifier, WebhookNotifier
from connectors.oauth import BearerTokenAuth, client_credentials_fetcher, jwt_bearer_fetcher
from connectors.protocols import HRIS, Connectors, IdentityProvider, Notifier, Ticketing
from connectors.redaction import Redactor, register_secrets
from tenure.settings import (
    PREFECT_BLOCK_PREFIX,
    HRISSettings,
    HTTPTuning,
    IdPSettings,
    NotifySettings,
    Settings,
    TicketingSettings,
    database_password,
    reveal,
    secret_values,
)

__all__ = [
    "Connectors",
    "http_options",
    "build_hris",
    "build_identity_provider",
    "build_ticketing",
    "build_notifier",
    "open_connectors",
    "open_notifier",
    "TargetMismatch",
    "check_targets",
    "register_settings_secrets",
    "VENDOR_MODULES",
    "load_vendor_connectors",
]

DEFAULT_SERVICENOW_TABLE = "incident"
GRAPH_BASE_URL = "https://graph.microsoft.com/v1.0"
DEFAULT_ENTRA_EMPLOYEE_ID = "employeeId"
ENTRA_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
GOOGLE_BASE_URL = "https://admin.googleapis.com"
VENDOR_MODULES = (
    "connectors.hris.bamboohr",
    "connectors.hris.csv_export",
    "connectors.hris.hibob",
    "connectors.hris.personio",
    "connectors.hris.workday",
    "connectors.idp.entra",
    "connectors.idp.google",
    "connectors.idp.ldap",
    "connectors.idp.okta",
    "connectors.idp.scim",
    "connectors.idp.scim_resources",
    "connectors.ticketing.jira",
    "connectors.ticketing.rt",
    "connectors.ticketing.servicenow",
)


def load_vendor_connectors() -> None:
    """Import every vendor connector module now (a process that runs flows, when it loads them: see the module
    docstring); the builders' own imports then find them loaded."""
    for module in VENDOR_MODULES:
        importlib.import_module(module)


def http_options(tuning: HTTPTuning) -> HTTPOptions:
    """The settings' per-target HTTP tuning as the plain value the connectors take."""
    return HTTPOptions(
        timeout_seconds=tuning.timeout_seconds,
        max_attempts=tuning.max_attempts,
        requests_per_second=tuning.requests_per_second,
        max_concurrency=tuning.max_concurrency,
        verify_tls=tuning.verify_tls,
    )


_FROM_BLOCKS: list[Redactor] = []  # values read from Prefect Secret blocks: registered for the process's life


def register_settings_secrets(settings: Settings) -> Redactor:
    """Register every secret ``settings`` holds, and the database URL's password, with the scrubber
    (:mod:`connectors.redaction`); they stay registered while the returned Redactor is held."""
    return register_secrets([*secret_values(settings), database_password(settings.database_url)])


def _reveal(secret: SecretStr | None) -> str | None:
    """:func:`reveal`, and a value read from a Secret block registered with the scrubber (the settings hold
    only the block's name)."""
    value = reveal(secret)
    if value and secret is not None and secret.get_secret_value().startswith(PREFECT_BLOCK_PREFIX):
        _FROM_BLOCKS.append(register_secrets([value]))
    return value


def _resolved(secret: SecretStr | None) -> SecretStr | None:
    value = _reveal(secret)
    return SecretStr(value) if value is not None else None


def _required(settings: HRISSettings, *names: str) -> None:
    """A configuration error naming every missing ``TENURE_HRIS__*`` setting the kind needs."""
    missing = [n for n in names if not getattr(settings, n)]
    if missing:
        listed = ", ".join(f"TENURE_HRIS__{n.upper()}" for n in missing)
        raise ValueError(f"hris.kind={settings.kind} needs {listed}")


def _hint(*names: str) -> str:
    return "check " + " and ".join(f"TENURE_HRIS__{n}" for n in names)


def build_hris(
    settings: HRISSettings, *, transport: httpx.AsyncBaseTransport | None = None, **api_options: Any
) -> HRIS:
    """The HRIS named by ``settings.kind``; ``transport`` and ``api_options`` (``sleep``) are for tests. Each
    vendor's AuthenticationError names the settings to check (``auth_hint``)."""
    if settings.kind == "csv":
        from connectors.hris.csv_export import CSVExportHRIS

        return CSVExportHRIS(settings.path, settings.column_map or None, encoding=settings.encoding)
    if settings.kind == "bamboohr":
        from connectors.hris import bamboohr

        api_key = _reveal(settings.api_key)
        if not settings.subdomain:
            raise ValueError("hris.subdomain (the BambooHR company domain) is required for kind=bamboohr")
        if not api_key:
            raise ValueError("hris.api_key is required for kind=bamboohr")
        api = api_client_from(
            http_options(settings),
            base_url=bamboohr.bamboohr_base_url(
                settings.base_url or bamboohr.DEFAULT_BASE_URL, settings.subdomain
            ),
            source="bamboohr",
            auth=(api_key, "x"),
            secrets=[api_key],
            transport=transport,
            auth_hint=_hint("API_KEY", "SUBDOMAIN"),
            **api_options,
        )
        return bamboohr.BambooHRHRIS(api)
    if settings.kind == "hibob":
        return _build_hibob(settings, transport, api_options)
    if settings.kind == "personio":
        return _build_personio(settings, transport, api_options)
    if settings.kind == "workday":
        return _build_workday(settings, transport, api_options)
    raise ValueError(f"unknown HRIS kind {settings.kind!r}")  # pragma: no cover - Literal guards it


def _build_hibob(
    settings: HRISSettings, transport: httpx.AsyncBaseTransport | None, api_options: dict[str, Any]
) -> HRIS:
    """HiBob: the service user's id and token as Basic auth; ~50 requests/min unless the rate is set."""
    from connectors.hris import hibob

    token = reveal(settings.token)
    _required(settings, "service_user_id")
    if not token:
        raise ValueError("hris.kind=hibob needs TENURE_HRIS__TOKEN")
    assert settings.service_user_id is not None
    options = http_options(settings)
    if "requests_per_second" not in settings.model_fields_set:
        options = dataclasses.replace(options, requests_per_second=hibob.REQUESTS_PER_MINUTE / 60)
    api = api_client_from(
        options,
        base_url=settings.base_url or hibob.DEFAULT_BASE_URL,
        source="hibob",
        auth=(settings.service_user_id, token),
        secrets=basic_auth_secrets(settings.service_user_id, token),
        transport=transport,
        auth_hint=_hint("SERVICE_USER_ID", "TOKEN"),
        **api_options,
    )
    return hibob.HiBobHRIS(api)


def _build_personio(
    settings: HRISSettings, transport: httpx.AsyncBaseTransport | None, api_options: dict[str, Any]
) -> HRIS:
    """Personio: the client id and secret, exchanged by the connector for a bearer token."""
    from connectors.hris import personio

    secret = reveal(settings.client_secret)
    _required(settings, "client_id")
    if not secret:
        raise ValueError("hris.kind=personio needs TENURE_HRIS__CLIENT_SECRET")
    assert settings.client_id is not None
    api = api_client_from(
        http_options(settings),
        base_url=settings.base_url or personio.DEFAULT_BASE_URL,
        source="personio",
        secrets=[secret],
        transport=transport,
        auth_hint=_hint("CLIENT_ID", "CLIENT_SECRET"),
        **api_options,
    )
    return personio.PersonioHRIS(
        api, client_id=settings.client_id, client_secret=secret, api_version=settings.api_version
    )


def _build_workday(
    settings: HRISSettings, transport: httpx.AsyncBaseTransport | None, api_options: dict[str, Any]
) -> HRIS:
    """Workday: the ISU (``user@tenant``) and password, Basic for RaaS and WS-Security for SOAP."""
    from connectors.hris.workday import WorkdayHRIS, workday_fault, workday_user

    password = reveal(settings.password)
    _required(settings, "base_url", "tenant", "username", "report")
    if not password:
        raise ValueError("hris.kind=workday needs TENURE_HRIS__PASSWORD")
    assert settings.base_url and settings.tenant and settings.username and settings.report
    user = workday_user(settings.username, settings.tenant)
    api = api_client_from(
        http_options(settings),
        base_url=settings.base_url.rstrip("/") + "/",
        source="workday",
        auth=(user, password),
        secrets=[*basic_auth_secrets(user, password), escape(password)],
        transport=transport,
        auth_hint=_hint("USERNAME", "PASSWORD"),
        classify=workday_fault,
        **api_options,
    )
    return WorkdayHRIS(
        api,
        tenant=settings.tenant,
        report=settings.report,
        user=user,
        password=password,
        version=settings.workday_version,
        column_map=settings.column_map or None,
    )


def _token_api(
    settings: IdPSettings,
    source: str,
    scheme: str,
    transport: httpx.AsyncBaseTransport | None,
    api_options: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
) -> APIClient:
    """An API client that sends ``settings.token`` as ``Authorization: <scheme> <token>`` (SCIM, Okta)."""
    token = _reveal(settings.token)
    return api_client_from(
        http_options(settings),
        base_url=settings.base_url,
        source=source,
        auth=TokenAuth(token, scheme) if token else None,
        secrets=[token],
        transport=transport,
        headers=headers,
        **api_options,
    )


def build_identity_provider(
    settings: IdPSettings, *, transport: httpx.AsyncBaseTransport | None = None, **api_options: Any
) -> IdentityProvider:
    """The identity provider named by ``settings.kind``; ``transport`` and ``api_options`` (``sleep``) are for
    tests."""
    if settings.kind == "scim":
        from connectors.idp.scim import SCIM_MEDIA_TYPE, SCIMIdentityProvider

        api = _token_api(
            settings,
            "scim",
            "Bearer",
            transport,
            api_options,
            headers={"Accept": f"{SCIM_MEDIA_TYPE}, application/json"},
        )
        return SCIMIdentityProvider(api)
    if settings.kind == "okta":
        from connectors.idp.okta import OktaIdentityProvider

        return OktaIdentityProvider(_token_api(settings, "okta", "SSWS", transport, api_options))
    if settings.kind == "ldap":
        from connectors.idp.ldap import LDAPIdentityProvider

        if not settings.base_dn or not settings.bind_dn:
            raise ValueError("LDAP identity provider needs TENURE_IDP__BASE_DN and TENURE_IDP__BIND_DN")
        return LDAPIdentityProvider(
            settings.base_url,
            bind_dn=settings.bind_dn,
            password=_resolved(settings.password),
            base_dn=settings.base_dn,
            users_ou=settings.users_ou,
            groups_ou=settings.groups_ou,
            disabled_ou=settings.disabled_ou,
            deactivation_method=settings.deactivation_method,
            allow_delete=settings.allow_delete,
            id_attribute=settings.id_attribute,
            employee_id_attribute=settings.employee_id_attribute,
            user_name_attribute=settings.user_name_attribute,
            upn_suffix=settings.upn_suffix,
            timeout_seconds=settings.timeout_seconds,
            verify_tls=settings.verify_tls,
        )
    if settings.kind == "entra":
        return _build_entra(settings, transport=transport, **api_options)
    if settings.kind == "google":
        return _build_google(settings, transport=transport, **api_options)
    raise ValueError(f"unknown identity provider kind: {settings.kind!r}")


def _vendor_base_url(settings: IdPSettings, default: str) -> str:
    """The configured base URL, or the vendor's when ``TENURE_IDP__BASE_URL`` was not set (its own default is
    the local SCIM service's)."""
    return settings.base_url if "base_url" in settings.model_fields_set else default


def _build_entra(
    settings: IdPSettings, *, transport: httpx.AsyncBaseTransport | None, **api_options: Any
) -> IdentityProvider:
    """Microsoft Graph with a client-credentials token of the app registration."""
    from connectors.idp.entra import GRAPH_SCOPE, EntraIdentityProvider

    if not settings.tenant_id:
        raise ValueError("TENURE_IDP__TENANT_ID (the Entra tenant id) is required for kind=entra")
    if not settings.client_id:
        raise ValueError(
            "TENURE_IDP__CLIENT_ID (the app registration's client id) is required for kind=entra"
        )
    secret = reveal(settings.client_secret)
    if not secret:
        raise ValueError(
            "TENURE_IDP__CLIENT_SECRET (the app registration's secret) is required for kind=entra"
        )
    token_url = settings.token_url or ENTRA_TOKEN_URL.format(tenant=quote(settings.tenant_id, safe=""))
    token_api = api_client_from(
        http_options(settings),
        base_url=token_url,
        source="entra",
        secrets=[secret],
        transport=transport,
        **api_options,
    )
    fetch = client_credentials_fetcher(
        token_api,
        token_url=token_url,
        client_id=settings.client_id,
        client_secret=SecretStr(secret),
        scope=GRAPH_SCOPE,
    )
    auth = BearerTokenAuth(fetch, closers=(token_api.aclose,))
    api = api_client_from(
        http_options(settings),
        base_url=_vendor_base_url(settings, GRAPH_BASE_URL),
        source="entra",
        auth=auth,
        secrets=[secret],
        transport=transport,
        **api_options,
    )
    return EntraIdentityProvider(
        api, auth=auth, employee_id_attribute=settings.employee_id_attribute or DEFAULT_ENTRA_EMPLOYEE_ID
    )


def _build_google(
    settings: IdPSettings, *, transport: httpx.AsyncBaseTransport | None, **api_options: Any
) -> IdentityProvider:
    """The Admin SDK Directory API with a service account acting for ``subject`` (domain-wide delegation)."""
    from connectors.idp.google import (
        DIRECTORY_SCOPES,
        GoogleWorkspaceIdentityProvider,
        ServiceAccountAssertion,
    )

    if not settings.credentials_file:
        raise ValueError(
            "TENURE_IDP__CREDENTIALS_FILE (the service account's JSON key) is required for kind=google"
        )
    if not settings.subject:
        raise ValueError("TENURE_IDP__SUBJECT (the admin to act as) is required for kind=google")
    assertion = ServiceAccountAssertion.from_file(
        settings.credentials_file, subject=settings.subject, scopes=DIRECTORY_SCOPES
    )
    token_url = settings.token_url or assertion.token_uri
    token_api = api_client_from(
        http_options(settings),
        base_url=token_url,
        source="google",
        secrets=assertion.secrets,
        transport=transport,
        **api_options,
    )
    auth = BearerTokenAuth(
        jwt_bearer_fetcher(token_api, token_url=token_url, assertion=assertion.sign),
        closers=(token_api.aclose,),
    )
    api = api_client_from(
        http_options(settings),
        base_url=_vendor_base_url(settings, GOOGLE_BASE_URL),
        source="google",
        auth=auth,
        secrets=assertion.secrets,
        transport=transport,
        **api_options,
    )
    return GoogleWorkspaceIdentityProvider(
        api, auth=auth, customer=settings.customer, domain=settings.domain, leaver_ou=settings.leaver_ou
    )


def _ticketing_credentials(
    settings: TicketingSettings,
) -> tuple[httpx.Auth | tuple[str, str] | None, dict[str, str], list[str]]:
    """(auth, extra headers, secrets to redact) for the configured vendor.

    - RT 5 REST2: ``username`` + ``password`` (HTTP Basic), or ``token`` as ``Authorization: token <t>``
      (RT::Authen::Token, core in RT 5);
    - Jira Service Management: ``username`` (account e-mail) + ``token`` (API token) as Basic (Cloud),
      ``token`` alone as a Bearer personal access token (Data Center), or ``username`` + ``password``;
    - ServiceNow: ``username`` + ``password`` (Basic), or ``token`` alone as an OAuth Bearer token.
    """
    password, token = _reveal(settings.password), _reveal(settings.token)
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
    from connectors.ticketing.rt import rt_rest_url

    auth, headers, secrets = _ticketing_credentials(settings)
    base_url = (
        rt_rest_url(settings.base_url) if settings.kind == "rt" else settings.base_url.rstrip("/") + "/"
    )
    api = api_client_from(
        http_options(settings),
        base_url=base_url,
        source=settings.kind,
        auth=auth,
        secrets=secrets,
        transport=transport,
        headers=headers,
    )
    if settings.kind == "rt":
        from connectors.ticketing.rt import RTTicketing

        return RTTicketing(api, queue=settings.queue)
    if settings.kind == "jira":
        from connectors.ticketing.jira import JiraServiceManagement

        assert settings.service_desk_id  # checked above, before a client was opened
        return JiraServiceManagement(
            api, service_desk_id=settings.service_desk_id, request_type=settings.queue
        )
    if settings.kind == "servicenow":
        from connectors.ticketing.servicenow import ServiceNowTicketing

        # ``queue`` names the table; the generic default ("General", an RT queue) means the incident table.
        default_queue = TicketingSettings.model_fields["queue"].default
        return ServiceNowTicketing(
            api, table=DEFAULT_SERVICENOW_TABLE if settings.queue == default_queue else settings.queue
        )
    raise ValueError(f"unknown ticketing kind {settings.kind!r}")  # pragma: no cover - Literal guards it


def build_notifier(settings: NotifySettings) -> Notifier | None:
    """E-mail (``TENURE_NOTIFY__SMTP_HOST``) and the incoming webhook (``TENURE_NOTIFY__WEBHOOK_URL``) behind one
    router (:mod:`connectors.notify.routing`), or None when neither is set: notifications are then recorded as
    skipped. The SMTP password and the webhook URL (its path is the credential) are secrets."""
    email, webhook = _smtp(settings), _webhook(settings)
    if email is None and webhook is None:
        return None
    return RoutedNotifier(email=email, webhook=webhook)


def _smtp(settings: NotifySettings) -> SMTPNotifier | None:
    if not settings.smtp_host:
        return None
    return SMTPNotifier(
        settings.smtp_host,
        settings.smtp_port,
        sender=settings.sender,
        username=settings.smtp_username,
        password=_reveal(settings.smtp_password),
        starttls=settings.smtp_starttls,
        timeout=settings.timeout_seconds,
    )


def _webhook(settings: NotifySettings) -> WebhookNotifier | None:
    url = _reveal(settings.webhook_url)
    if not url:
        return None
    parsed = httpx.URL(url)
    origin = f"{parsed.scheme}://{parsed.netloc.decode()}"
    tuning = HTTPOptions(timeout_seconds=settings.timeout_seconds, max_attempts=1)
    api = api_client_from(tuning, base_url=origin, source="webhook", secrets=[url, parsed.raw_path.decode()])
    return WebhookNotifier(api, parsed.raw_path.decode())


@contextlib.asynccontextmanager
async def open_notifier(settings: Settings) -> AsyncIterator[Notifier | None]:
    """The notifier alone (a failed run's hook needs nothing else), its secrets registered meanwhile."""
    scrubber = register_settings_secrets(settings)
    notifier = build_notifier(settings.notify)
    if notifier is None:
        yield None
    else:
        async with notifier:
            yield notifier
    del scrubber


class TargetMismatch(ValueError):
    """The policy's ``targets:`` and the ``TENURE_TARGETS__*`` settings do not name the same targets."""


def check_targets(settings: Settings, policy_targets: Collection[str]) -> None:
    """TargetMismatch naming every target the policy (``targets:``, its names in ``policy_targets``) names
    without settings, or the settings without a policy entry (target names are lower-case:
    ``TENURE_TARGETS__GITHUB__*`` is target ``github``)."""
    configured, planned = set(settings.targets), set(policy_targets)
    problems = [
        f"target {name!r} is in the policy but has no settings (set TENURE_TARGETS__{name.upper()}__KIND, ...)"
        for name in sorted(planned - configured)
    ] + [
        f"target {name!r} has settings (TENURE_TARGETS__{name.upper()}__*) but no entry under the policy's "
        "targets:"
        for name in sorted(configured - planned)
    ]
    if problems:
        raise TargetMismatch("; ".join(problems))


@contextlib.asynccontextmanager
async def open_connectors(settings: Settings) -> AsyncIterator[Connectors]:
    """Build the configured connectors and close them afterwards (each is an async context manager); the
    settings' secrets are registered with the scrubber meanwhile. ``targets``: one identity provider per
    ``TENURE_TARGETS__<NAME>__*``, built like ``TENURE_IDP__*``."""
    scrubber = register_settings_secrets(settings)  # held while the connectors are open
    async with contextlib.AsyncExitStack() as stack:
        hris = await stack.enter_async_context(build_hris(settings.hris))
        idp = await stack.enter_async_context(build_identity_provider(settings.idp))
        targets = {
            name: await stack.enter_async_context(build_identity_provider(target))
            for name, target in sorted(settings.targets.items())
        }
        ticketing = build_ticketing(settings.ticketing)
        if ticketing is not None:
            await stack.enter_async_context(ticketing)
        notifier = build_notifier(settings.notify)
        if notifier is not None:
            await stack.enter_async_context(notifier)
        yield Connectors(hris=hris, idp=idp, ticketing=ticketing, notifier=notifier, targets=targets)
    del scrubber
