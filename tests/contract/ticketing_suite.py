"""The shared contract every :class:`connectors.protocols.Ticketing` implementation must pass.

Subclass :class:`TicketingContract` in a ``test_ticketing_<vendor>.py`` module and provide three fixtures:
``ticketing`` (the connector under test, talking to its real local peer or a stateful fake),
``ticketing_peer`` (a :class:`TicketingPeer` that inspects the peer directly, not through the connector) and
``wrong_secret_ticketing`` (a connector to the same peer with a wrong password/token, and that secret).
Every test uses a fresh reference, so one peer can serve the whole module.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import pytest

from connectors.errors import AuthenticationError, ConnectorError
from connectors.protocols import Ticketing
from models.domain import Ticket, TicketRequest, TicketStatus

__all__ = ["TicketingContract", "TicketingPeer", "Sleeps", "new_request"]


class TicketingPeer(Protocol):
    """Read-only access to the peer's own state, bypassing the connector."""

    async def count_with_reference(self, reference: str) -> int: ...

    async def comments(self, ticket_id: str) -> list[str]: ...


class Sleeps(list[float]):
    """A zero-wait ``sleep`` for connectors that records each wait it was asked for."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def new_request(
    purpose: str = "laptop",
    *,
    queue: str | None = None,
    employee_id: str | None = None,
    occasion: str = "2027-03-01",
) -> TicketRequest:
    """A request with a reference no other test uses: ``tenure:<employee>:<purpose>:<occasion>``."""
    employee_id = employee_id or f"E{uuid.uuid4().hex[:10]}"
    return TicketRequest(
        reference=f"tenure:{employee_id}:{purpose}:{occasion}",
        purpose=purpose,
        title=f"Prepare a laptop for {employee_id}",
        body=f"Joiner {employee_id} starts Monday.\nDepartment: Engineering",
        queue=queue,
    )


class TicketingContract:
    """Create (idempotent by reference), find, comment, status and close, as the Protocol promises."""

    async def test_satisfies_protocol(self, ticketing: Ticketing) -> None:
        """The connector structurally satisfies the Ticketing Protocol and names its source."""
        assert isinstance(ticketing, Ticketing)
        assert ticketing.source

    async def test_create_returns_open_ticket(
        self, ticketing: Ticketing, ticketing_peer: TicketingPeer
    ) -> None:
        """A new ticket is open, carries the reference and title, and exists once in the peer."""
        request = new_request()
        ticket = await ticketing.create_ticket(request)
        assert isinstance(ticket, Ticket)
        assert ticket.id
        assert ticket.reference == request.reference
        assert ticket.title == request.title
        assert ticket.status is TicketStatus.OPEN
        assert await ticketing_peer.count_with_reference(request.reference) == 1

    async def test_create_twice_returns_same_ticket(
        self, ticketing: Ticketing, ticketing_peer: TicketingPeer
    ) -> None:
        """Creating with the same reference again returns the first ticket and creates nothing."""
        request = new_request()
        first = await ticketing.create_ticket(request)
        second = await ticketing.create_ticket(request.model_copy(update={"title": "A retitled retry"}))
        assert second.id == first.id
        assert await ticketing_peer.count_with_reference(request.reference) == 1

    async def test_find_by_reference(self, ticketing: Ticketing) -> None:
        """find_ticket returns the ticket created with that reference, not one with a similar reference."""
        request = new_request()
        other = await ticketing.create_ticket(new_request(employee_id=request.reference.split(":")[1] + "0"))
        created = await ticketing.create_ticket(request)
        found = await ticketing.find_ticket(request.reference)
        assert found is not None
        assert found.id == created.id != other.id
        assert found.reference == request.reference
        assert found.status is TicketStatus.OPEN

    async def test_new_occasion_is_a_new_ticket(
        self, ticketing: Ticketing, ticketing_peer: TicketingPeer
    ) -> None:
        """References differing only in the occasion (a rehire's new hire date) are separate tickets."""
        first = new_request()
        rehire = new_request(employee_id=first.reference.split(":")[1], occasion="2027-09-01")
        created = await ticketing.create_ticket(first)
        again = await ticketing.create_ticket(rehire)
        assert again.id != created.id
        for request, ticket in ((first, created), (rehire, again)):
            found = await ticketing.find_ticket(request.reference)
            assert found is not None and found.id == ticket.id
            assert await ticketing_peer.count_with_reference(request.reference) == 1

    async def test_unknown_reference_is_none(self, ticketing: Ticketing) -> None:
        """An unknown reference is None, not an error."""
        assert await ticketing.find_ticket(new_request().reference) is None

    async def test_comment_is_recorded(self, ticketing: Ticketing, ticketing_peer: TicketingPeer) -> None:
        """A comment lands on the ticket with its text intact."""
        ticket = await ticketing.create_ticket(new_request())
        await ticketing.add_comment(ticket.id, "Laptop ordered: asset 4711")
        assert any("Laptop ordered: asset 4711" in c for c in await ticketing_peer.comments(ticket.id))

    async def test_close_resolves(self, ticketing: Ticketing) -> None:
        """Open before, resolved after close; closing again is harmless."""
        ticket = await ticketing.create_ticket(new_request())
        assert await ticketing.get_status(ticket.id) is TicketStatus.OPEN
        await ticketing.close_ticket(ticket.id)
        assert await ticketing.get_status(ticket.id) is TicketStatus.RESOLVED
        await ticketing.close_ticket(ticket.id)
        assert await ticketing.get_status(ticket.id) is TicketStatus.RESOLVED
        found = await ticketing.find_ticket(ticket.reference)
        assert found is not None and found.status is TicketStatus.RESOLVED

    async def test_wrong_secret_is_authentication_error(
        self, wrong_secret_ticketing: tuple[Ticketing, str]
    ) -> None:
        """Wrong credentials give 401, raised as AuthenticationError whose text and repr hold no secret."""
        ticketing, secret = wrong_secret_ticketing
        with pytest.raises(AuthenticationError) as info:
            await ticketing.find_ticket("tenure:E1:laptop:2027-03-01")
        assert info.value.status_code == 401
        assert secret not in str(info.value) + repr(info.value)

    async def test_unknown_ticket_status_is_typed_error(self, ticketing: Ticketing) -> None:
        """Asking for a ticket that does not exist raises a ConnectorError, not a KeyError or httpx error."""
        with pytest.raises(ConnectorError):
            await ticketing.get_status("999999")
