"""The Ticketing contract against a real Request Tracker 5 (Debian ``request-tracker5``), plus RT specifics:
a timeout after RT applied the create, an unknown queue, permissions, and TicketSQL escaping."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from connectors.errors import AuthenticationError, NetworkError, NotFoundError
from connectors.http import APIClient, build_client
from connectors.ticketing.rt import RTTicketing, reference_matches, reference_query
from models.domain import TicketStatus
from tests.contract.ticketing_suite import TicketingContract, new_request
from tests.support.rt_server import RTServer

pytestmark = pytest.mark.slow

NO_RIGHTS_USER, NO_RIGHTS_PASSWORD = "tenure-norights", "norights-secret-pw"


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture(scope="module")
def rt(rt: RTServer) -> RTServer:
    """The module's RT 5 (tests/conftest.py) with a user that has no rights on any queue."""
    rt.create_user(NO_RIGHTS_USER, NO_RIGHTS_PASSWORD)
    return rt


def _connector(
    rt: RTServer,
    *,
    auth: tuple[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    queue: str = "General",
) -> RTTicketing:
    client = build_client(
        rt.rest_url, auth=auth or (rt.username, rt.password), transport=transport, timeout=30
    )
    api = APIClient(client, source="rt", secrets=[rt.password, NO_RIGHTS_PASSWORD], sleep=_no_sleep)
    return RTTicketing(api, queue=queue)


class RTPeer:
    """Reads RT directly through REST2 as root."""

    def __init__(self, rt: RTServer) -> None:
        self.client = httpx.AsyncClient(base_url=rt.rest_url, auth=(rt.username, rt.password), timeout=30)

    async def tickets_with_reference(self, reference: str) -> list[str]:
        response = await self.client.get(
            "tickets", params={"query": reference_query(reference), "fields": "Subject", "per_page": "100"}
        )
        response.raise_for_status()
        return [str(i["id"]) for i in response.json()["items"] if reference_matches(i["Subject"], reference)]

    async def count_with_reference(self, reference: str) -> int:
        return len(await self.tickets_with_reference(reference))

    async def comments(self, ticket_id: str) -> list[str]:
        history = await self.client.get(
            f"ticket/{ticket_id}/history", params={"fields": "Type", "per_page": "100"}
        )
        history.raise_for_status()
        texts: list[str] = []
        for txn in (i for i in history.json()["items"] if i["Type"] == "Comment"):
            attachments = await self.client.get(
                f"transaction/{txn['id']}/attachments", params={"fields": "Content"}
            )
            attachments.raise_for_status()
            for item in attachments.json()["items"]:
                content = item.get("Content") or ""
                # some RT versions return attachment content base64-encoded
                with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                    content = base64.b64decode(content, validate=True).decode()
                texts.append(content)
        return texts


@pytest.fixture
async def ticketing(rt: RTServer) -> AsyncIterator[RTTicketing]:
    connector = _connector(rt)
    yield connector
    await connector.aclose()


@pytest.fixture
async def ticketing_peer(rt: RTServer) -> AsyncIterator[RTPeer]:
    peer = RTPeer(rt)
    yield peer
    await peer.client.aclose()


@pytest.fixture
async def wrong_secret_ticketing(rt: RTServer) -> AsyncIterator[tuple[RTTicketing, str]]:
    connector = _connector(rt, auth=(rt.username, "wrong-password-123"))
    yield connector, "wrong-password-123"
    await connector.aclose()


class TestRTContract(TicketingContract):
    """The shared Ticketing contract against real RT 5."""


class TimeoutAfterCreate(httpx.AsyncBaseTransport):
    """Forwards every request to RT, but after RT answered the first ``POST .../ticket`` it raises
    ReadTimeout instead of returning the answer: the write happened, the client never hears of it."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.creates_forwarded = 0
        self.timeouts_raised = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/REST/2.0/ticket"):
            self.creates_forwarded += 1
            if self.timeouts_raised == 0:
                await response.aread()
                await response.aclose()
                assert response.status_code == 201, response.text
                self.timeouts_raised += 1
                raise httpx.ReadTimeout("timed out after the server applied the write", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_timeout_after_create_does_not_duplicate(rt: RTServer, ticketing_peer: RTPeer) -> None:
    """A create whose answer is lost after RT applied it is found by the lookup: one ticket, not two."""
    transport = TimeoutAfterCreate()
    connector = _connector(rt, transport=transport)
    request = new_request("timeout")
    try:
        ticket = await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert transport.timeouts_raised == 1
    assert transport.creates_forwarded == 1  # the lookup found it; no second POST was sent
    assert await ticketing_peer.tickets_with_reference(request.reference) == [ticket.id]
    assert ticket.status is TicketStatus.OPEN


async def test_timeout_without_lookup_would_duplicate(rt: RTServer, ticketing_peer: RTPeer) -> None:
    """Control: the same lost answer, retried blindly, leaves two tickets — so the test above can fail."""
    transport = TimeoutAfterCreate()
    connector = _connector(rt, transport=transport)
    request = new_request("blind-retry")
    payload = {
        "Queue": "General",
        "Subject": f"[{request.reference}] {request.title}",
        "Content": "x",
        "ContentType": "text/plain",
    }
    try:
        with pytest.raises(NetworkError, match="timed out"):
            await connector.api.request("POST", "ticket", json=payload)
        await connector.api.request("POST", "ticket", json=payload)
    finally:
        await connector.aclose()
    assert await ticketing_peer.count_with_reference(request.reference) == 2


async def test_unknown_queue_is_not_found(rt: RTServer, ticketing_peer: RTPeer) -> None:
    """A queue RT does not have raises NotFoundError naming the queue, and creates nothing."""
    connector = _connector(rt)
    request = new_request(queue="No Such Queue")
    try:
        with pytest.raises(NotFoundError, match="RT queue 'No Such Queue' does not exist"):
            await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert await ticketing_peer.count_with_reference(request.reference) == 0


async def test_forbidden_is_authentication_error(rt: RTServer, ticketing: RTTicketing) -> None:
    """A user without rights gets 403 from RT, raised as AuthenticationError without the password."""
    ticket = await ticketing.create_ticket(new_request())
    connector = _connector(rt, auth=(NO_RIGHTS_USER, NO_RIGHTS_PASSWORD))
    try:
        with pytest.raises(AuthenticationError) as info:
            await connector.get_status(ticket.id)
        assert info.value.status_code == 403
        with pytest.raises(AuthenticationError):
            await connector.create_ticket(new_request())
    finally:
        await connector.aclose()
    assert NO_RIGHTS_PASSWORD not in str(info.value)


async def test_reference_with_quotes_and_backslashes(ticketing: RTTicketing, ticketing_peer: RTPeer) -> None:
    """TicketSQL escaping: a reference with ' \" and \\ is created once and found again."""
    request = new_request(employee_id="O'Brien\\\"x")
    created = await ticketing.create_ticket(request)
    again = await ticketing.create_ticket(request)
    assert again.id == created.id
    assert await ticketing_peer.count_with_reference(request.reference) == 1


async def test_like_wildcards_do_not_match(ticketing: RTTicketing) -> None:
    """``_`` is a LIKE wildcard in RT's SQL: a reference with it does not find a ticket it resembles."""
    existing = await ticketing.create_ticket(new_request(employee_id="EwildXcard1"))
    assert (await ticketing.find_ticket(existing.reference)) is not None
    assert await ticketing.find_ticket(existing.reference.replace("EwildXcard1", "Ewild_card1")) is None


async def test_ticket_url_points_at_rt(rt: RTServer, ticketing: RTTicketing) -> None:
    """The ticket URL is RT's display page for that ticket and answers (login page or ticket)."""
    ticket = await ticketing.create_ticket(new_request())
    assert ticket.url == f"{rt.base_url}Ticket/Display.html?id={ticket.id}"
    async with httpx.AsyncClient() as client:
        response = await client.get(ticket.url)
    assert response.status_code in (200, 302)


async def test_factory_builds_working_connector(rt: RTServer, ticketing_peer: RTPeer) -> None:
    """build_ticketing(kind=rt) accepts RT's web root, finds REST2 under it and creates a ticket."""
    from pydantic import SecretStr

    from tenure.compose import build_ticketing
    from tenure.settings import TicketingSettings

    settings = TicketingSettings(
        kind="rt",
        base_url=rt.base_url,
        username=rt.username,
        password=SecretStr(rt.password),
        queue="General",
    )
    connector = build_ticketing(settings)
    assert isinstance(connector, RTTicketing)
    request = new_request("factory")
    try:
        ticket = await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert await ticketing_peer.tickets_with_reference(request.reference) == [ticket.id]
