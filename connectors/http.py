"""The one HTTP layer every HTTP connector talks through.

- :func:`build_client`: an ``httpx.AsyncClient`` with timeouts, auth, base URL and user agent. Connectors receive
  a client (injected), so tests pass a real local server's URL, respx, or ``httpx.MockTransport``.
- :func:`raise_for_status`: status classification in one place (429/5xx → retryable except 501/505,
  401/403 → auth, 404 → not found, 409 → conflict, other 4xx → permanent). A 403 whose body names a rate-limit
  reason (Google's ``userRateLimitExceeded``/``rateLimitExceeded``/``quotaExceeded``, sent without Retry-After)
  is retryable with backoff. The vendor's error code (:func:`vendor_error_code`) rides on the error as ``code``.
- :class:`APIClient`: send with a client-side rate limit (requests/second and max concurrency per target), tenacity
  retries with exponential backoff and jitter that honour ``Retry-After`` and ``X-Rate-Limit-Reset``, and
  redaction of secrets in every log line, exception and repr. Non-idempotent requests (POST) are not retried
  here: see :func:`create_idempotently`, which looks the object up before trying again.
- :func:`next_link` and :class:`LoopGuard`: pagination helpers with loop detection.
- Connector plumbing: :func:`api_client_from` (an :class:`APIClient` from a settings object's HTTP tuning),
  :func:`parse_model` (a response body into a pydantic model, or ResponseValidationError) and :class:`ClosesAPI`
  (``aclose`` and ``async with`` for a connector holding ``self.api``).

Redaction is the one scrubber of :mod:`connectors.redaction`: each :class:`APIClient` registers its secrets
there for its lifetime, which covers our own messages, every exception we raise (message and ``args``), an
error body (scrubbed *before* it is cut to 300 characters) and every log record, httpx's own included (it logs
each request's full URL, userinfo and query, at INFO).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from connectors.errors import (
    AuthenticationError,
    ConflictError,
    ConnectorError,
    NetworkError,
    NotFoundError,
    PermanentAPIError,
    ResponseValidationError,
    RetryableAPIError,
)
from connectors.redaction import (
    RedactingFilter,
    Redactor,
    cut,
    install_log_redaction,
    register_secrets,
    scrub,
)

__all__ = [
    "USER_AGENT",
    "ERROR_DETAIL_LENGTH",
    "TokenAuth",
    "build_client",
    "redact_url",
    "Redactor",
    "RedactingFilter",
    "basic_auth_secrets",
    "install_log_redaction",
    "retry_after_seconds",
    "raise_for_status",
    "vendor_error_code",
    "json_body",
    "RateLimiter",
    "APIClient",
    "create_idempotently",
    "next_link",
    "LoopGuard",
    "HTTPOptions",
    "api_client_from",
    "parse_model",
    "AsyncClosing",
    "ClosesAPI",
]

log = logging.getLogger("tenure.http")
USER_AGENT = "tenure/0.1 (+https://github.com/tenure-dev/tenure)"
MAX_RETRY_AFTER_SECONDS = 120.0
_SENSITIVE_QUERY = re.compile(r"(token|key|secret|password|passwd|sig|signature|auth|code)", re.IGNORECASE)
ERROR_DETAIL_LENGTH = 300  # characters of an error body kept in the error (after scrubbing)
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
# 501 Not Implemented / 505 HTTP Version Not Supported (RFC 9110 §15.6.2, §15.6.6) will not get better by waiting.
_PERMANENT_5XX = frozenset({501, 505})
# Google APIs answer an exhausted per-user or per-project rate with 403 and one of these reasons, and no
# Retry-After: retry with exponential backoff (https://developers.google.com/workspace/admin/directory/v1/limits,
# https://developers.google.com/workspace/admin/directory/v1/guides/troubleshoot-error-codes). ``dailyLimitExceeded``
# is left out: the quota returns the next day, not after a backoff.
RATE_LIMIT_REASONS = frozenset({"userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"})


class TokenAuth(httpx.Auth):
    """``Authorization: <scheme> <token>`` on every request (``Bearer`` for SCIM, RFC 6750; ``SSWS`` for Okta).

    An ``httpx.Auth`` rather than a default header, so the token is not part of the client's headers and
    never shows in a repr."""

    def __init__(self, token: str, scheme: str = "Bearer") -> None:
        self._value = f"{scheme} {token}"
        self.scheme = scheme

    def auth_flow(self, request: httpx.Request):  # type: ignore[no-untyped-def]
        request.headers["Authorization"] = self._value
        yield request

    def __repr__(self) -> str:
        return f"TokenAuth(scheme={self.scheme!r}, token=***)"


def build_client(
    base_url: str,
    *,
    auth: httpx.Auth | tuple[str, str] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    verify: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An async client for one target. Connect timeout is capped at 10 s; the rest use ``timeout``."""
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        verify=verify,
        transport=transport,
        follow_redirects=False,
    )


def redact_url(url: str | httpx.URL) -> str:
    """The URL without userinfo and with sensitive query values (token, api_key, sig, ...) masked."""
    parts = urlsplit(str(url))
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, "***" if _SENSITIVE_QUERY.search(k) else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def basic_auth_secrets(user: str, password: str | None) -> list[str]:
    """What to redact for HTTP Basic auth: the password and ``user:password`` (whose base64 is the header)."""
    return [password, f"{user}:{password}"] if password else []


def retry_after_seconds(response: httpx.Response, *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: ``Retry-After`` (seconds or HTTP-date, RFC 9110 §10.2.3), else
    ``X-Rate-Limit-Reset``/``X-RateLimit-Reset`` (epoch seconds) when the remaining budget is 0. Capped."""
    now = time.time() if now is None else now
    value = response.headers.get("Retry-After")
    seconds: float | None = None
    if value:
        value = value.strip()
        try:
            seconds = float(value)  # delay-seconds (a few servers send a decimal)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
            except (TypeError, ValueError, IndexError):
                seconds = None
    if seconds is None:
        remaining = response.headers.get(
            "X-Rate-Limit-Remaining", response.headers.get("X-RateLimit-Remaining")
        )
        reset = response.headers.get("X-Rate-Limit-Reset", response.headers.get("X-RateLimit-Reset"))
        if (
            reset
            and reset.isdigit()
            and (remaining is None or remaining.strip() == "0" or response.status_code == 429)
        ):
            seconds = float(reset) - now
    if seconds is None:
        return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_SECONDS))


def vendor_error_code(response: httpx.Response) -> str | None:
    """The machine-readable error code of an error body, in the shapes the vendors document: OData/Graph
    ``{"error": {"code": "..."}}``, Google ``{"error": {"errors": [{"reason": "..."}]}}``, OAuth 2.0 token
    endpoints ``{"error": "invalid_client"}`` (RFC 6749 §5.2) and Okta ``{"errorCode": "E0000001"}``."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        for item in error.get("errors") or []:
            reason = item.get("reason") if isinstance(item, dict) else None
            if isinstance(reason, str):
                return reason
        odata_code = error.get("code")
        if isinstance(odata_code, str):
            return odata_code
    code = body.get("errorCode")
    return code if isinstance(code, str) else None


def raise_for_status(response: httpx.Response, *, source: str, detail: str = "") -> None:
    """Classify a response: return on 2xx/3xx, else raise the matching typed error (redacted URL only)."""
    code = response.status_code
    if code < 400:
        return
    where = f"{response.request.method} {redact_url(response.request.url)}"
    message = f"{where} failed{': ' + detail if detail else ''}"
    vendor = vendor_error_code(response)
    if (
        code == 429
        or (code >= 500 and code not in _PERMANENT_5XX)
        or (code == 403 and vendor in RATE_LIMIT_REASONS)
    ):
        raise RetryableAPIError(
            message,
            source=source,
            status_code=code,
            retry_after=retry_after_seconds(response),
            code=vendor,
        )
    if code in (401, 403):
        raise AuthenticationError(message, source=source, status_code=code, code=vendor)
    if code == 404:
        raise NotFoundError(message, source=source, status_code=code, code=vendor)
    if code == 409:
        raise ConflictError(message, source=source, status_code=code, code=vendor)
    raise PermanentAPIError(message, source=source, status_code=code, code=vendor)


def json_body(response: httpx.Response, *, source: str) -> Any:
    """The response's JSON, or ResponseValidationError if it is HTML, empty or garbage."""
    try:
        return response.json()
    except ValueError as exc:
        kind = response.headers.get("Content-Type", "unknown content type").split(";")[0]
        raise ResponseValidationError(
            f"{response.request.method} {redact_url(response.request.url)} answered {kind}, not JSON",
            source=source,
            status_code=response.status_code,
        ) from exc


class RateLimiter:
    """Client-side limit per target: at most ``requests_per_second`` starts and ``max_concurrency`` in flight."""

    def __init__(self, requests_per_second: float = 20.0, max_concurrency: int = 8) -> None:
        self.interval = 1.0 / requests_per_second
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._lock = asyncio.Lock()
        self._next_start = 0.0

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()
        try:
            async with self._lock:
                now = time.monotonic()
                wait = self._next_start - now
                self._next_start = max(now, self._next_start) + self.interval
            if wait > 0:
                await asyncio.sleep(wait)
        except BaseException:  # cancelled while waiting: give the slot back
            self._semaphore.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


def _backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And Jitter")."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


class APIClient:
    """A rate-limited, retrying, redacting sender for one target system.

    ``sleep`` is injectable so tests run retries at zero wait. ``secrets`` are the values to redact from every
    message (tokens, passwords, API keys) in addition to URL query secrets. ``auth_hint`` (e.g. "check
    TENURE_HRIS__TOKEN") is appended to every AuthenticationError so the operator knows which setting to fix.
    ``classify`` lets a protocol whose errors are not in the status code (a SOAP fault is HTTP 500 whatever
    its cause) turn a response into the right typed error first; it returns None to fall back to
    :func:`raise_for_status`.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        source: str,
        max_attempts: int = 5,
        requests_per_second: float = 20.0,
        max_concurrency: int = 8,
        secrets: Iterable[str | None] = (),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        backoff_base: float = 0.5,
        auth_hint: str = "",
        classify: Callable[[httpx.Response], ConnectorError | None] | None = None,
    ) -> None:
        self.client = client
        self.auth_hint = auth_hint
        self.classify = classify
        self.source = source
        self.max_attempts = max_attempts
        self.limiter = RateLimiter(requests_per_second, max_concurrency)
        self._secrets: list[str | None] = list(secrets)
        self.redact = register_secrets(self._secrets)  # registered while this client lives
        self.sleep = sleep
        self.backoff_base = backoff_base
        self.calls: dict[str, int] = {}  # "METHOD" -> count of requests actually sent (for benchmarks/tests)
        self._paused_until = 0.0  # wall-clock time before which the server told us not to send (quota spent)

    async def aclose(self) -> None:
        await self.client.aclose()

    def __repr__(self) -> str:
        return f"APIClient(source={self.source!r}, base_url={redact_url(self.client.base_url)!r})"

    def add_secrets(self, *secrets: str | None) -> None:
        """Also redact ``secrets`` from now on (a bearer token obtained at run time)."""
        self._secrets = [*self._secrets, *secrets]
        self.redact = register_secrets(self._secrets)

    @property
    def writes(self) -> int:
        """Requests sent that may change state (POST, PUT, PATCH, DELETE)."""
        return sum(n for method, n in self.calls.items() if method in {"POST", "PUT", "PATCH", "DELETE"})

    async def send_once(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request, no retry: rate-limited, classified, errors redacted. When an earlier answer said the
        quota is spent (``X-Rate-Limit-Remaining: 0``), waits for ``X-Rate-Limit-Reset`` first (Okta's advice)."""
        pause = self._paused_until - time.time()
        if pause > 0:
            await self.sleep(min(pause, MAX_RETRY_AFTER_SECONDS))
        async with self.limiter:
            self.calls[method] = self.calls.get(method, 0) + 1
            started = time.monotonic()
            try:
                response = await self.client.request(method, url, **kwargs)
            except httpx.TimeoutException:
                raise NetworkError(
                    scrub(f"{method} {redact_url(self.client.base_url.join(url))} timed out"),
                    source=self.source,
                ) from None  # httpx's own text can carry the full URL: never chain it
            except httpx.TransportError as exc:
                raise NetworkError(
                    scrub(
                        f"{method} {redact_url(self.client.base_url.join(url))} failed: {type(exc).__name__}"
                    ),
                    source=self.source,
                ) from None
        if log.isEnabledFor(logging.DEBUG):  # redact_url is not free: only for a log that is written
            log.debug(
                "%s %s -> %s in %.0f ms",
                method,
                redact_url(response.request.url),
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
        self._note_quota(response)
        problem = self.classify(response) if self.classify is not None else None
        if problem is not None:
            raise self.scrub(problem) from None
        try:
            raise_for_status(response, source=self.source, detail=self._error_detail(response))
        except ConnectorError as exc:
            raise self.scrub(exc) from None  # the same error, its secrets scrubbed
        return response

    def scrub(self, exc: ConnectorError) -> ConnectorError:
        """The same error with its message (and ``args``) scrubbed, and the ``auth_hint`` on an
        AuthenticationError; returns it for ``raise``."""
        if isinstance(exc, AuthenticationError) and self.auth_hint and self.auth_hint not in exc.message:
            exc.message = f"{exc.message}; {self.auth_hint}"
        exc.message = scrub(exc.message)
        exc.args = (exc.message,)
        return exc

    def _note_quota(self, response: httpx.Response) -> None:
        remaining = response.headers.get(
            "X-Rate-Limit-Remaining", response.headers.get("X-RateLimit-Remaining")
        )
        if response.status_code < 400 and remaining is not None and remaining.strip() == "0":
            wait = retry_after_seconds(response)
            if wait:
                self._paused_until = time.time() + wait

    async def request(
        self, method: str, url: str, *, retry: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send with retries for retryable failures. POST is sent once unless ``retry=True`` is given by a
        caller that knows the request is idempotent (e.g. a search expressed as POST)."""
        method = method.upper()
        if retry is None:
            retry = method != "POST"
        if not retry:
            return await self.send_once(method, url, **kwargs)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            retry=retry_if_exception(lambda exc: isinstance(exc, ConnectorError) and exc.retryable),
            wait=self._wait,
            sleep=self.sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.send_once(method, url, **kwargs)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def request_json(self, method: str, url: str, **kwargs: Any) -> Any:
        """``request`` and then the JSON body (ResponseValidationError if it is not JSON)."""
        response = await self.request(method, url, **kwargs)
        try:
            return json_body(response, source=self.source)
        except ConnectorError as exc:
            raise self.scrub(exc) from exc.__cause__

    def _wait(self, retry_state: Any) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RetryableAPIError) and exc.retry_after is not None:
            return exc.retry_after
        return _backoff(retry_state.attempt_number, base=self.backoff_base)

    def _error_detail(self, response: httpx.Response) -> str:
        if response.status_code < 400:
            return ""
        text = cut(response.text.replace("\n", " "), ERROR_DETAIL_LENGTH)
        if "<html" in text.lower() or "<!doctype html" in text.lower():
            return "HTML error page (is the base URL right?)"
        return text


async def create_idempotently(
    create: Callable[[], Awaitable[T]],
    lookup: Callable[[], Awaitable[T | None]],
    *,
    attempts: int = 3,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    backoff_base: float = 0.5,
    existed: Callable[[T], T] = lambda obj: obj,
    known_absent: bool = False,
) -> T:
    """Create an object with a non-idempotent POST, safely: before every retry, ``lookup`` checks whether the
    earlier attempt took effect (a timeout after the server applied the write) and returns what it finds.
    An object that existed before the first attempt is passed through ``existed`` (to mark it as not created).
    ``known_absent``: the caller has just read the whole collection and it was not there, so the look-up
    before the first attempt is skipped (the look-ups after an ambiguous failure stay)."""
    existing = None if known_absent else await lookup()
    if existing is not None:
        return existed(existing)
    for attempt in range(1, attempts + 1):
        try:
            return await create()
        except ConnectorError as exc:
            if not exc.retryable:
                raise
            found = await lookup()
            if found is not None:
                return found
            if attempt == attempts:
                raise
            wait = (
                exc.retry_after
                if isinstance(exc, RetryableAPIError) and exc.retry_after is not None
                else None
            )
            await sleep(wait if wait is not None else _backoff(attempt, base=backoff_base))
    raise AssertionError("unreachable")  # pragma: no cover


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (Okta paging), or None."""
    link = response.links.get("next")
    return link.get("url") if link else None


class LoopGuard:
    """Raises if a paginator hands back a page token (URL, cursor, offset) it already handed out."""

    def __init__(self, source: str, max_pages: int = 100_000) -> None:
        self.source = source
        self.max_pages = max_pages
        self._seen: set[str] = set()

    def check(self, token: object) -> None:
        key = str(token)
        if key in self._seen:
            raise ResponseValidationError(
                f"pagination loop: page {redact_url(key)} returned twice", source=self.source
            )
        if len(self._seen) >= self.max_pages:
            raise ResponseValidationError(f"pagination exceeded {self.max_pages} pages", source=self.source)
        self._seen.add(key)


# --------------------------------------------------------------------------------------------- connector plumbing


@dataclass(frozen=True)
class HTTPOptions:
    """One target's HTTP behaviour as plain values (the composition root fills it from the settings)."""

    timeout_seconds: float = 30.0
    max_attempts: int = 5
    requests_per_second: float = 20.0
    max_concurrency: int = 8
    verify_tls: bool = True


def api_client_from(
    tuning: HTTPOptions,
    *,
    base_url: str,
    source: str,
    auth: httpx.Auth | tuple[str, str] | None = None,
    secrets: Iterable[str | None] = (),
    transport: httpx.AsyncBaseTransport | None = None,
    headers: dict[str, str] | None = None,
    **api_options: Any,
) -> APIClient:
    """An :class:`APIClient` for one target, its client built by :func:`build_client` with the timeout and TLS
    check of ``tuning`` and sending with its attempts, rate and concurrency. ``secrets`` are registered for
    redaction; ``api_options`` (``sleep``, ``backoff_base``) go to the APIClient."""
    client = build_client(
        base_url,
        auth=auth,
        headers=headers,
        timeout=tuning.timeout_seconds,
        verify=tuning.verify_tls,
        transport=transport,
    )
    return APIClient(
        client,
        source=source,
        max_attempts=tuning.max_attempts,
        requests_per_second=tuning.requests_per_second,
        max_concurrency=tuning.max_concurrency,
        secrets=secrets,
        **api_options,
    )


def parse_model(model: type[M], data: Any, *, source: str, vendor: str, what: str) -> M:
    """``data`` validated as ``model``; a mismatch is ResponseValidationError "<vendor> answered an unexpected
    <what>" with the pydantic error as ``__cause__``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ResponseValidationError(f"{vendor} answered an unexpected {what}", source=source) from exc


class AsyncClosing:
    """``async with`` for a connector: ``__aexit__`` calls ``aclose`` (a no-op unless overridden)."""

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ClosesAPI(AsyncClosing):
    """``aclose`` and ``async with`` for a connector that talks through ``self.api`` (an :class:`APIClient`)."""

    api: APIClient

    async def aclose(self) -> None:
        await self.api.aclose()
