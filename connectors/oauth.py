"""OAuth 2.0 bearer tokens for the HTTP layer: fetched on first use, cached until shortly before they expire,
refreshed once when the API answers 401 (a token revoked or expired early), never logged or shown in a repr.

:class:`BearerTokenAuth` is an ``httpx.Auth`` whose token comes from an async ``fetch`` callable; the two
fetchers here talk to a token endpoint through their own :class:`connectors.http.APIClient` (so timeouts,
retries and redaction apply there too):

- :func:`client_credentials_fetcher`: the client-credentials grant (RFC 6749 §4.4) as Microsoft's identity
  platform documents it: ``POST https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`` with ``client_id``,
  ``client_secret``, ``scope=https://graph.microsoft.com/.default`` and ``grant_type=client_credentials``
  (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
- :func:`jwt_bearer_fetcher`: the JWT bearer grant (RFC 7523) with a signed assertion, as Google's service
  accounts use it (https://developers.google.com/identity/protocols/oauth2/service-account#authorizingrequests).

Token answers are ``{"access_token", "token_type": "Bearer", "expires_in"}``; an error answer is RFC 6749 §5.2
``{"error": "invalid_client", "error_description": ...}``, which the shared classification turns into an
AuthenticationError (401) or PermanentAPIError (400) carrying ``code``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from connectors.errors import AuthenticationError, ConnectorError, ResponseValidationError
from connectors.http import APIClient, json_body

__all__ = ["AccessToken", "BearerTokenAuth", "client_credentials_fetcher", "jwt_bearer_fetcher"]

# Refresh this long before the stated expiry, so a token never expires in flight (clock skew, slow requests).
EXPIRY_MARGIN_SECONDS = 300.0


@dataclass(frozen=True)
class AccessToken:
    """A bearer token and the wall-clock time it stops being valid. Its repr never shows the value."""

    value: SecretStr
    expires_at: float


TokenFetcher = Callable[[], Awaitable[AccessToken]]


class BearerTokenAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` from ``fetch``, cached until ``EXPIRY_MARGIN_SECONDS`` before expiry.

    Concurrent requests share one fetch (a lock). A 401 answer drops the cached token and the request is sent once
    more with a fresh one; a second 401 goes back to the caller (and becomes an AuthenticationError there).
    ``fetches`` counts token requests (tests and benchmarks read it)."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        closers: tuple[Callable[[], Awaitable[None]], ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._closers = closers
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return "BearerTokenAuth(token=***)"

    async def token(self) -> str:
        """The cached token, fetched again when it is missing or about to expire."""
        async with self._lock:
            if self._token is None or self._clock() >= self._token.expires_at - EXPIRY_MARGIN_SECONDS:
                self._token = await self._fetch()
                self.fetches += 1
            return self._token.value.get_secret_value()

    async def _drop(self, value: str) -> None:
        async with self._lock:
            if self._token is not None and self._token.value.get_secret_value() == value:
                self._token = None

    def sync_auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        raise RuntimeError("BearerTokenAuth works with httpx.AsyncClient only")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        value = await self.token()
        request.headers["Authorization"] = f"Bearer {value}"
        response = yield request
        if response.status_code == 401:
            await self._drop(value)
            request.headers["Authorization"] = f"Bearer {await self.token()}"
            yield request

    async def aclose(self) -> None:
        """Close the token endpoint's client(s)."""
        for close in self._closers:
            await close()


def _token_from(response: httpx.Response, api: APIClient, *, clock: Callable[[], float]) -> AccessToken:
    try:
        data = json_body(response, source=api.source)
    except ConnectorError as exc:
        raise api.scrub(exc) from exc.__cause__
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise ResponseValidationError("token endpoint answered without an access_token", source=api.source)
    if str(data.get("token_type", "Bearer")).lower() != "bearer":
        raise ResponseValidationError("token endpoint answered a non-bearer token", source=api.source)
    try:
        lifetime = float(data.get("expires_in", 3600))
    except (TypeError, ValueError):
        raise ResponseValidationError("token endpoint answered a bad expires_in", source=api.source) from None
    return AccessToken(SecretStr(token), clock() + lifetime)


async def _post_token_request(api: APIClient, url: str, form: dict[str, str], hint: str) -> httpx.Response:
    """POST a token request (idempotent: retried on 429/5xx); a refusal names what to check, never a secret."""
    try:
        return await api.request("POST", url, data=form, retry=True)
    except AuthenticationError as exc:
        raise api.scrub(
            AuthenticationError(
                f"the token endpoint refused the credentials ({exc.code or exc.status_code}): {hint}",
                source=api.source,
                status_code=exc.status_code,
                code=exc.code,
            )
        ) from None
    except ConnectorError as exc:
        if exc.code in ("invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope"):
            raise api.scrub(
                AuthenticationError(
                    f"the token endpoint refused the request ({exc.code}): {hint}",
                    source=api.source,
                    status_code=exc.status_code,
                    code=exc.code,
                )
            ) from None
        raise


def client_credentials_fetcher(
    api: APIClient,
    *,
    token_url: str,
    client_id: str,
    client_secret: SecretStr,
    scope: str,
    clock: Callable[[], float] = time.time,
) -> TokenFetcher:
    """A fetcher for the client-credentials grant against ``token_url`` (absolute, or relative to ``api``)."""

    async def fetch() -> AccessToken:
        form = {
            "client_id": client_id,
            "client_secret": client_secret.get_secret_value(),
            "scope": scope,
            "grant_type": "client_credentials",
        }
        response = await _post_token_request(
            api, token_url, form, "check the tenant id, client id and client secret (expired?)"
        )
        return _token_from(response, api, clock=clock)

    return fetch


def jwt_bearer_fetcher(
    api: APIClient,
    *,
    token_url: str,
    assertion: Callable[[], str],
    clock: Callable[[], float] = time.time,
) -> TokenFetcher:
    """A fetcher for the JWT bearer grant: ``assertion()`` returns a freshly signed JWT for each request."""

    async def fetch() -> AccessToken:
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion()}
        response = await _post_token_request(
            api,
            token_url,
            form,
            "check the service account key, that domain-wide delegation is granted to its client id for "
            "the Directory API scopes, and that the subject is an admin of the domain",
        )
        return _token_from(response, api, clock=clock)

    return fetch
