"""Settings from the environment (prefix ``TENURE_``, nested delimiter ``__``) and an optional ``.env``.

Secrets are ``SecretStr``. A secret may also name a Prefect Secret block as ``prefect-block:NAME``;
:func:`reveal` resolves either form at the moment of use, never earlier. :func:`secret_values` (with the
database URL's password, :func:`database_password`) is what the composition root registers with the scrubber.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "IdPSettings",
    "HRISSettings",
    "TicketingSettings",
    "WebhookSettings",
    "AuditSettings",
    "Settings",
    "reveal",
    "secret_values",
    "database_password",
    "load_settings",
]

PREFECT_BLOCK_PREFIX = "prefect-block:"
MIN_MASKED_PASSWORD_LENGTH = 8  # the scrubber's run length (connectors.redaction.RUN_LENGTH)


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's value; ``prefect-block:NAME`` is read from the Prefect Secret block NAME."""
    if secret is None:
        return None
    value = secret.get_secret_value()
    if value.startswith(PREFECT_BLOCK_PREFIX):
        from prefect.blocks.system import Secret

        return str(Secret.load(value.removeprefix(PREFECT_BLOCK_PREFIX)).get())
    return value


def secret_values(model: BaseModel) -> list[str]:
    """Every secret value ``model`` holds (nested models included; ``prefect-block:`` names left out)."""
    found: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, SecretStr):
                secret = item.get_secret_value()
                if secret and not secret.startswith(PREFECT_BLOCK_PREFIX):
                    found.append(secret)
            elif isinstance(item, BaseModel):
                found += secret_values(item)
    return found


def database_password(url: str) -> str | None:
    """The password in a database URL, if it has one of at least 8 characters (a shorter one would mask
    ordinary words everywhere; it is still masked wherever it appears inside a URL)."""
    password = urlsplit(url).password
    return unquote(password) if password and len(password) >= MIN_MASKED_PASSWORD_LENGTH else None


class HTTPTuning(BaseModel):
    """Per-target HTTP behaviour shared by the HTTP-based connectors."""

    timeout_seconds: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=5, ge=1, le=20)
    requests_per_second: float = Field(default=20.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    verify_tls: bool = True


class IdPSettings(HTTPTuning):
    """The identity provider. ``scim`` serves any SCIM 2.0 service (scim2-server by default); ``entra`` is
    Microsoft Entra ID through Microsoft Graph, ``google`` Google Workspace through the Admin SDK Directory API.
    For those two an unset ``base_url`` means the vendor's (``https://graph.microsoft.com/v1.0``,
    ``https://admin.googleapis.com``)."""

    kind: Literal["scim", "okta", "ldap", "entra", "google"] = "scim"
    base_url: str = "http://127.0.0.1:8041/"
    token: SecretStr | None = None  # SCIM bearer token / Okta SSWS API token
    # Entra ID (Microsoft Graph): an app registration with a client secret
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # OAuth token endpoint; Entra default https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token,
    # Google default the service account file's token_uri
    token_url: str | None = None
    # Google Workspace (Admin SDK Directory API): a service account with domain-wide delegation.
    # The JSON key file is a secret: keep it readable by Tenure's user only.
    credentials_file: Path | None = None
    subject: str | None = None  # the admin the service account acts as
    customer: str = "my_customer"
    domain: str | None = None
    leaver_ou: str | None = None  # Google: suspended leavers are moved to this org unit (e.g. /Leavers)
    # LDAP only
    bind_dn: str | None = None
    password: SecretStr | None = None
    base_dn: str | None = None
    users_ou: str = "ou=people"
    groups_ou: str = "ou=groups"
    disabled_ou: str = "ou=disabled"
    deactivation_method: Literal["move", "ad_uac"] = "move"  # ad_uac: Active Directory userAccountControl
    allow_delete: bool = False
    # The directory's defaults when unset: entryUUID / objectGUID, employeeNumber / employeeID,
    # uid / userPrincipalName (AD may also key user names by sAMAccountName). employee_id_attribute also
    # serves Entra (default employeeId, or a directory extension attribute extension_<appId>_<name>).
    id_attribute: str | None = None
    employee_id_attribute: str | None = None
    user_name_attribute: str | None = None
    upn_suffix: str | None = None  # AD keyed by sAMAccountName: UPN = <name>@<suffix>; default from base_dn


class HRISSettings(HTTPTuning):
    """The HR system of record. ``base_url`` defaults per kind (BambooHR's gateway, api.hibob.com,
    api.personio.de); Workday needs its own (``https://{host}/ccx/service/``)."""

    kind: Literal["csv", "bamboohr", "hibob", "personio", "workday"] = "csv"
    base_url: str | None = None
    column_map: dict[str, str] = Field(default_factory=dict)  # our field name -> the export/report column
    # CSV export
    path: Path = Path("examples/hris.csv")
    encoding: str = "utf-8"  # the export's encoding (utf-8 with or without BOM, latin-1, cp1252, ...)
    # BambooHR
    subdomain: str | None = None
    api_key: SecretStr | None = None
    # HiBob: a service user's id and token (HTTP Basic)
    service_user_id: str | None = None
    token: SecretStr | None = None
    # Personio: API credentials (client id + secret -> bearer token); v2 with the v1 list as fallback
    client_id: str | None = None
    client_secret: SecretStr | None = None
    api_version: Literal["auto", "v2", "v1"] = "auto"
    # Workday: tenant, the ISU's user name and password, the custom report ("owner/report name")
    tenant: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    report: str | None = None
    workday_version: str = "v41.0"  # Workday Web Services version of Human_Resources


class TicketingSettings(HTTPTuning):
    """Where the manual parts go. ``none`` records ticket actions in the audit trail only."""

    kind: Literal["rt", "jira", "servicenow", "none"] = "none"
    base_url: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None
    queue: str = "General"  # RT queue / ServiceNow table / default JSM request type
    service_desk_id: str | None = None  # Jira Service Management


class WebhookSettings(BaseModel):
    """The HRIS webhook receiver (``tenure webhook serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8042, ge=1, le=65535)
    secret: SecretStr | None = None
    max_skew_seconds: int = Field(default=300, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # BambooHR signs with its own per-webhook "private key"; falls back to ``secret`` when unset.
    bamboohr_secret: SecretStr | None = None
    # HiBob signs with the webhook's secret key (Bob-Signature); falls back to ``secret`` when unset.
    hibob_secret: SecretStr | None = None
    # HRIS event kind -> Prefect deployment ("flow-name/deployment-name") started for it.
    event_deployments: dict[str, str] = Field(
        default_factory=lambda: {
            "hired": "joiner/joiner",
            "changed": "mover/mover",
            "terminated": "leaver/leaver",
        }
    )
    start_attempts: int = Field(
        default=3, ge=1, le=10
    )  # Prefect API tries (each ~1.5 s when down) before 503
    start_backoff_seconds: float = Field(default=0.5, ge=0)
    # Abuse limits of `tenure webhook serve` (deployments/webhook_server.py): a request's headers must arrive
    # within header_timeout_seconds, its body within body_timeout_seconds after them; at most max_connections
    # at once (lowered to fit the open-file limit).
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    keepalive_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    max_connections: int = Field(default=100, ge=1, le=10_000)


class NotifySettings(BaseModel):
    """How notifications are sent (``TENURE_NOTIFY__*``): e-mail over SMTP with STARTTLS (``smtp_host``) to
    addresses, and an incoming webhook (Slack/Teams; the URL is a secret) to the recipient ``webhook``. Neither
    configured: notifications are recorded as skipped."""

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    sender: str = "tenure@example.com"
    webhook_url: SecretStr | None = None
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)


class AuditSettings(BaseModel):
    """Anchoring the audit chain's end (``tenure/checkpoint.py``): the HMAC-SHA256 key the checkpoints are signed
    with (never stored in the audit database; may name a Prefect Secret block) and where they are appended."""

    checkpoint_key: SecretStr | None = None
    checkpoint_dir: Path = Path(".tenure/checkpoints")

    @field_validator("checkpoint_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        value = key.get_secret_value() if key is not None else ""
        if value and not value.startswith(PREFECT_BLOCK_PREFIX) and len(value) < 16:
            raise ValueError("must be at least 16 characters (32 random bytes, hex or base64, recommended)")
        return key


class Settings(BaseSettings):
    """Everything Tenure is configured with. Defaults give the embedded setup under ``.tenure/``."""

    model_config = SettingsConfigDict(
        env_prefix="TENURE_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    database_url: str = "sqlite:///.tenure/tenure.db"
    policy_file: Path = Path("examples/policy.yaml")
    adopt_before: date | None = None  # TENURE_ADOPT_BEFORE: overrides the policy's adopt_before
    idp: IdPSettings = Field(default_factory=IdPSettings)  # the target "directory"
    # more provisioning targets: TENURE_TARGETS__<NAME>__KIND / __BASE_URL / __TOKEN / ... (the keys of
    # TENURE_IDP__*) is target <name>, lower-case; the policy's ``targets:`` says what each gets
    targets: dict[str, IdPSettings] = Field(default_factory=dict)
    hris: HRISSettings = Field(default_factory=HRISSettings)
    ticketing: TicketingSettings = Field(default_factory=TicketingSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:", "postgres:")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return url


def load_settings() -> Settings:
    """Read settings now (not at import), so tests and the CLI see the current environment."""
    return Settings()
