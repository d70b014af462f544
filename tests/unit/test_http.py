"""The shared HTTP layer: status classification, retries, rate limits, idempotent create, paging, redaction."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx

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
from connectors.http import (
    APIClient,
    LoopGuard,
    RateLimiter,
    TokenAuth,
    basic_auth_secrets,
    build_client,
    create_idempotently,
    next_link,
    redact_url,
    retry_after_seconds,
    vendor_error_code,
)

BASE = "https://api.test/"
TOKEN = "tok-3f9a8b7c6d5e4f3a2b1c"


class Sleeps(list[float]):
    """An injectable zero-wait sleep that records what it was asked to wait."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def api(sleeps: Sleeps) -> AsyncIterator[APIClient]:
    client = build_client(BASE, auth=TokenAuth(TOKEN))
    yield APIClient(client, source="test", sleep=sleeps, requests_per_second=10_000, secrets=[TOKEN])
    await client.aclose()


@respx.mock
async def test_429_retry_after_is_waited_out(api: APIClient, sleeps: Sleeps) -> None:
    """A 429 with Retry-After: 1 makes the client wait exactly 1 s and then succeed."""
    route = respx.get(f"{BASE}items").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    assert await api.request_json("GET", "items") == {"ok": True}
    assert route.call_count == 2 and sleeps == [1.0]


@respx.mock
async def test_503_503_200_succeeds(api: APIClient, sleeps: Sleeps) -> None:
    """Two transient 503s are retried with backoff; the third answer is used."""
    route = respx.get(f"{BASE}items").mock(
        side_effect=[httpx.Response(503), httpx.Response(503), httpx.Response(200, json=[1])]
    )
    assert await api.request_json("GET", "items") == [1]
    assert route.call_count == 3 and len(sleeps) == 2 and all(0 <= s <= 30 for s in sleeps)


@respx.mock
async def test_five_503_fail_retryable_after_max_attempts(api: APIClient) -> None:
    """Five consecutive 503s raise RetryableAPIError after exactly max_attempts=5 requests."""
    route = respx.get(f"{BASE}items").respond(503)
    with pytest.raises(RetryableAPIError, match="GET https://api.test/items failed") as info:
        await api.request("GET", "items")
    assert route.call_count == 5 and info.value.status_code == 503 and info.value.retryable


@respx.mock
async def test_401_is_not_retried(api: APIClient, sleeps: Sleeps) -> None:
    """A 401 is an AuthenticationError after one request, no waiting."""
    route = respx.get(f"{BASE}items").respond(401, json={"error": "bad token"})
    with pytest.raises(AuthenticationError):
        await api.request("GET", "items")
    assert route.call_count == 1 and sleeps == []


@respx.mock
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (403, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (400, PermanentAPIError),
        (422, PermanentAPIError),
        (501, PermanentAPIError),
    ],
    ids=["403", "404", "409", "400", "422", "501"],
)
async def test_permanent_statuses_are_typed_and_not_retried(api: APIClient, status: int, error: type) -> None:
    """Each permanent status maps to its error class after one request."""
    route = respx.get(f"{BASE}items").respond(status, text="nope")
    with pytest.raises(error) as info:
        await api.request("GET", "items")
    assert type(info.value) is error and not info.value.retryable
    assert route.call_count == 1 and info.value.status_code == status


def _google_error(status: int, reason: str) -> httpx.Response:
    message = "Rate Limit Exceeded"
    errors = [{"domain": "usageLimits", "reason": reason, "message": message}]
    return httpx.Response(status, json={"error": {"code": status, "message": message, "errors": errors}})


@respx.mock
@pytest.mark.parametrize("reason", ["userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"])
async def test_google_rate_limit_403_is_retried_with_backoff(
    api: APIClient, sleeps: Sleeps, reason: str
) -> None:
    """Google answers an exhausted rate with 403 and a reason, without Retry-After: backoff, then success."""
    route = respx.get(f"{BASE}items").mock(
        side_effect=[_google_error(403, reason), httpx.Response(200, json=[])]
    )
    assert await api.request_json("GET", "items") == []
    assert route.call_count == 2 and len(sleeps) == 1 and 0 <= sleeps[0] <= 30


@respx.mock
async def test_other_403_reasons_stay_permanent_and_carry_the_code(api: APIClient, sleeps: Sleeps) -> None:
    route = respx.get(f"{BASE}items").mock(side_effect=[_google_error(403, "dailyLimitExceeded")])
    with pytest.raises(AuthenticationError) as info:
        await api.request("GET", "items")
    assert info.value.code == "dailyLimitExceeded" and route.call_count == 1 and sleeps == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}},
            "Authorization_RequestDenied",
        ),
        ({"error": {"code": 403, "errors": [{"reason": "forbidden"}]}}, "forbidden"),
        ({"error": "invalid_client", "error_description": "AADSTS7000215"}, "invalid_client"),
        ({"errorCode": "E0000011", "errorSummary": "Invalid token"}, "E0000011"),
        ([1, 2], None),
    ],
    ids=["odata", "google", "oauth", "okta", "other"],
)
def test_vendor_error_codes(body: Any, code: str | None) -> None:
    response = httpx.Response(400, json=body, request=httpx.Request("GET", BASE))
    assert vendor_error_code(response) == code
    assert vendor_error_code(httpx.Response(500, text="<html>", request=httpx.Request("GET", BASE))) is None


@respx.mock
async def test_html_error_page_has_a_clear_message(api: APIClient) -> None:
    """A proxy's HTML error page is named as such, not dumped into the message."""
    respx.get(f"{BASE}items").respond(404, html="<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>")
    with pytest.raises(NotFoundError, match="HTML error page") as info:
        await api.request("GET", "items")
    assert "<h1>" not in str(info.value)


@respx.mock
async def test_html_instead_of_json_is_a_validation_error(api: APIClient) -> None:
    """A 200 HTML login page where JSON was expected raises ResponseValidationError naming the content type."""
    respx.get(f"{BASE}items").respond(200, html="<html>sign in</html>")
    with pytest.raises(ResponseValidationError, match="answered text/html, not JSON"):
        await api.request_json("GET", "items")


@respx.mock
async def test_garbage_json_is_a_validation_error(api: APIClient) -> None:
    """A truncated JSON body raises ResponseValidationError with the decode error as cause."""
    respx.get(f"{BASE}items").respond(
        200, content=b'{"items": [1, 2', headers={"Content-Type": "application/json"}
    )
    with pytest.raises(ResponseValidationError) as info:
        await api.request_json("GET", "items")
    assert isinstance(info.value.__cause__, ValueError)


@respx.mock
async def test_post_is_not_retried(api: APIClient) -> None:
    """A POST that hits a 503 is sent once: retrying a create could duplicate it."""
    route = respx.post(f"{BASE}items").respond(503)
    with pytest.raises(RetryableAPIError):
        await api.request("POST", "items", json={})
    assert route.call_count == 1


@respx.mock
async def test_network_errors_are_retried_for_get(api: APIClient) -> None:
    """A connect error then success: GET is retried and NetworkError is what a dead peer raises."""
    route = respx.get(f"{BASE}items").mock(
        side_effect=[httpx.ConnectError("boom"), httpx.Response(200, json=1)]
    )
    assert await api.request_json("GET", "items") == 1
    assert route.call_count == 2
    respx.get(f"{BASE}dead").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(NetworkError, match="timed out"):
        await api.request("GET", "dead")


async def test_create_idempotently_finds_the_object_after_a_timeout(sleeps: Sleeps) -> None:
    """A create that timed out after the server applied it is found by the lookup, not created twice."""
    store: list[str] = []

    async def create() -> str:
        store.append("obj-1")  # the write lands...
        raise NetworkError("POST timed out", source="test")  # ...but the answer is lost

    async def lookup() -> str | None:
        return store[0] if store else None

    assert await create_idempotently(create, lookup, sleep=sleeps) == "obj-1"
    assert store == ["obj-1"] and sleeps == []


async def test_create_idempotently_retries_then_gives_up(sleeps: Sleeps) -> None:
    """A create that keeps failing retryably is attempted ``attempts`` times, looking up before each retry."""
    calls = {"create": 0, "lookup": 0}

    async def create() -> str:
        calls["create"] += 1
        raise RetryableAPIError("503", source="test", status_code=503, retry_after=2.0)

    async def lookup() -> str | None:
        calls["lookup"] += 1
        return None

    with pytest.raises(RetryableAPIError):
        await create_idempotently(create, lookup, attempts=3, sleep=sleeps)
    assert calls == {"create": 3, "lookup": 4} and sleeps == [2.0, 2.0]


@respx.mock
async def test_x_rate_limit_reset_is_honoured(api: APIClient, sleeps: Sleeps) -> None:
    """A 429 without Retry-After but with X-Rate-Limit-Reset waits until that epoch second."""
    reset = int(time.time()) + 5
    respx.get(f"{BASE}items").mock(
        side_effect=[
            httpx.Response(429, headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(reset)}),
            httpx.Response(200, json=[]),
        ]
    )
    assert await api.request_json("GET", "items") == []
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 5.0


@respx.mock
async def test_spent_quota_pauses_the_next_request(api: APIClient, sleeps: Sleeps) -> None:
    """A 200 saying X-Rate-Limit-Remaining: 0 makes the next request wait for the reset (Okta's advice)."""
    reset = int(time.time()) + 10
    respx.get(f"{BASE}a").respond(
        200, json=1, headers={"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(reset)}
    )
    respx.get(f"{BASE}b").respond(200, json=2)
    await api.request("GET", "a")
    assert sleeps == []
    await api.request("GET", "b")
    assert len(sleeps) == 1 and 8.0 <= sleeps[0] <= 10.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "0.5"}, 0.5),
        ({"Retry-After": "99999"}, 120.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, 10.0),
    ],
    ids=["seconds", "decimal", "capped", "garbage", "absent", "http-date"],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    """Retry-After as seconds or HTTP-date (RFC 9110 §10.2.3), capped at 120 s, garbage ignored."""
    now = 1445412480.0  # 07:28:00 on that date
    response = httpx.Response(429, headers=headers, request=httpx.Request("GET", BASE))
    assert retry_after_seconds(response, now=now) == expected


async def test_rate_limiter_bounds_concurrency() -> None:
    """No more than max_concurrency requests are ever in flight at once."""
    limiter = RateLimiter(requests_per_second=100_000, max_concurrency=3)
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        async with limiter:
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1

    await asyncio.gather(*(one() for _ in range(12)))
    assert peak == 3


async def test_rate_limiter_spaces_starts() -> None:
    """Five starts at 50 requests/second take at least 4 intervals (80 ms)."""
    limiter = RateLimiter(requests_per_second=50, max_concurrency=10)
    started = time.monotonic()
    for _ in range(5):
        async with limiter:
            pass
    assert time.monotonic() - started >= 0.075


def test_loop_guard_detects_a_repeated_page() -> None:
    """A page token handed out twice is a pagination loop; the token's secrets are not echoed."""
    guard = LoopGuard("test")
    guard.check("https://api.test/users?after=1")
    guard.check("https://api.test/users?after=2")
    with pytest.raises(ResponseValidationError, match="pagination loop") as info:
        guard.check("https://api.test/users?after=1")
    assert "after=1" in str(info.value)
    secret_guard = LoopGuard("test")
    secret_guard.check("https://api.test/users?token=abc123secret")
    with pytest.raises(ResponseValidationError) as secret_info:
        secret_guard.check("https://api.test/users?token=abc123secret")
    assert "abc123secret" not in str(secret_info.value)


def test_loop_guard_caps_pages() -> None:
    """More pages than max_pages is refused."""
    guard = LoopGuard("test", max_pages=2)
    guard.check(1)
    guard.check(2)
    with pytest.raises(ResponseValidationError, match="exceeded 2 pages"):
        guard.check(3)


def test_next_link_reads_the_rfc8288_header() -> None:
    """The rel=next URL is taken from a Link header holding self and next (Okta's shape)."""
    response = httpx.Response(
        200,
        headers=[
            ("Link", '<https://o.test/api/v1/users?limit=2>; rel="self"'),
            ("Link", '<https://o.test/api/v1/users?after=00u2&limit=2>; rel="next"'),
        ],
    )
    assert next_link(response) == "https://o.test/api/v1/users?after=00u2&limit=2"
    assert next_link(httpx.Response(200)) is None


# ------------------------------------------------------------------------------------------ redaction


def assert_clean(secret: str, *texts: Any) -> None:
    for text in texts:
        assert secret not in str(text), f"secret leaked into: {text!r}"


@respx.mock
async def test_bearer_token_never_in_logs_or_errors(caplog: pytest.LogCaptureFixture, sleeps: Sleeps) -> None:
    """The Authorization token appears in no DEBUG record, exception str/repr, or client repr."""
    caplog.set_level(logging.DEBUG)
    respx.get(f"{BASE}items").respond(403, text=f"token {TOKEN} is not allowed here")
    client = build_client(BASE, auth=TokenAuth(TOKEN, "SSWS"))
    api = APIClient(client, source="test", sleep=sleeps, secrets=[TOKEN])
    with pytest.raises(AuthenticationError) as info:
        await api.request("GET", "items")
    await client.aclose()
    assert respx.calls.last.request.headers["Authorization"] == f"SSWS {TOKEN}"  # it was sent...
    assert caplog.records
    assert_clean(
        TOKEN, caplog.text, info.value, repr(info.value), info.value.args, repr(api), repr(client.auth)
    )
    assert "***" in str(info.value)  # ...and the echo in the body was masked


@respx.mock
async def test_token_in_url_query_never_in_logs_or_errors(
    caplog: pytest.LogCaptureFixture, sleeps: Sleeps
) -> None:
    """A secret passed as a query parameter is masked in httpx's own INFO line, our DEBUG line and errors."""
    caplog.set_level(logging.DEBUG)
    secret = "q-secret-77aa88bb99cc"
    respx.get(f"{BASE}items").respond(500)
    client = build_client(BASE)
    api = APIClient(client, source="test", sleep=sleeps, max_attempts=2, secrets=[secret])
    with pytest.raises(RetryableAPIError) as info:
        await api.request("GET", "items", params={"api_key": secret, "page": "2"})
    await client.aclose()
    assert any(r.name == "httpx" for r in caplog.records)  # httpx did log the request line
    assert_clean(secret, caplog.text, info.value, repr(info.value))
    assert "page=2" in str(info.value)


@respx.mock
async def test_unregistered_query_secret_is_masked_by_name(caplog: pytest.LogCaptureFixture) -> None:
    """Even a secret nobody registered is masked when its parameter name says token/key/secret."""
    caplog.set_level(logging.DEBUG)
    respx.get(f"{BASE}items").respond(200, json=[])
    async with httpx.AsyncClient() as plain:  # a client that does not even use APIClient
        from connectors.http import install_log_redaction

        install_log_redaction()
        await plain.get(f"{BASE}items", params={"access_token": "unregistered-value-123"})
    assert "unregistered-value-123" not in caplog.text and "access_token=***" in caplog.text


@respx.mock
async def test_basic_auth_never_in_logs_or_errors(caplog: pytest.LogCaptureFixture, sleeps: Sleeps) -> None:
    """Basic credentials (password, base64 header, URL userinfo) never reach a record or an error."""
    caplog.set_level(logging.DEBUG)
    user, password = "svc-tenure", "B4sic-Pa55word!"
    route = respx.get("https://rt.test/REST/2.0/ticket/1").respond(401, text="denied")
    client = build_client(f"https://{user}:{password}@rt.test/REST/2.0/", auth=(user, password))
    api = APIClient(client, source="test", sleep=sleeps, secrets=basic_auth_secrets(user, password))
    with pytest.raises(AuthenticationError) as info:
        await api.request("GET", "ticket/1")
    await client.aclose()
    header = route.calls.last.request.headers["Authorization"]
    assert header.startswith("Basic ")
    for secret in (password, header.removeprefix("Basic ").rstrip("=")):
        assert_clean(secret, caplog.text, info.value, repr(info.value), repr(api))


def test_redact_url_masks_userinfo_and_sensitive_query() -> None:
    """redact_url drops userinfo and masks token-like query values, keeping the rest."""
    url = "https://u:p@h.test/x?token=abc&page=2&X-Amz-Signature=zz"
    assert redact_url(url) == "https://h.test/x?token=%2A%2A%2A&page=2&X-Amz-Signature=%2A%2A%2A"


async def test_connector_error_without_source_still_renders() -> None:
    """A bare ConnectorError renders its message and status (sanity for the tree the layer raises)."""
    assert str(ConnectorError("boom", status_code=500)) == "boom (HTTP 500)"
