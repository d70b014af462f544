"""Request Tracker 5 through REST2 (``/REST/2.0``), satisfying :class:`connectors.protocols.Ticketing`.

Endpoints as documented in ``RT::REST2`` (RT 5.0.3, "Tickets";
docs.bestpractical.com/rt/5.0.3/RT/REST2.html):
``POST /ticket`` (create), ``GET /tickets?query=<TicketSQL>`` (search), ``GET /ticket/:id``,
``PUT /ticket/:id`` (update, e.g. Status) and ``POST /ticket/:id/comment``; ``GET /queue/:name`` resolves
a queue.

The Tenure reference rides in the subject as a tag, ``[tenure:E1:laptop:2027-03-01] Laptop for Ada``: it needs no custom
field (so no admin setup in RT) and is searched with ``Subject STARTSWITH '[ref]'``, then matched exactly here
(SQL ``LIKE`` treats ``_`` and ``%`` as wildcards). Creation is idempotent through
:func:`connectors.http.create_idempotently`: look up first, and again after an ambiguous failure.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from connectors.errors import NotFoundError
from connectors.http import APIClient, ClosesAPI, create_idempotently, json_body, parse_model
from models.domain import Ticket, TicketRequest, TicketStatus

__all__ = [
    "rt_rest_url",
    "RTTicketing",
    "ticket_sql_string",
    "reference_query",
    "subject_for",
    "reference_matches",
    "map_status",
    "create_payload",
]

SOURCE = "rt"
# RT 5 default lifecycle: new/open/stalled are active; resolved/rejected/deleted inactive (RT_Config.pm
# %Lifecycles). Statuses of custom lifecycles we do not know are treated as still open.
_STATUS = {
    "new": TicketStatus.OPEN,
    "open": TicketStatus.OPEN,
    "stalled": TicketStatus.OPEN,
    "resolved": TicketStatus.RESOLVED,
    "rejected": TicketStatus.REJECTED,
    "deleted": TicketStatus.REJECTED,
}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Created(_Loose):
    id: int


class _Item(_Loose):
    id: int
    Subject: str = ""
    Status: str = ""


class _SearchPage(_Loose):
    items: list[_Item]
    page: int = 1
    pages: float = 0


class _TicketRecord(_Loose):
    id: int
    Subject: str = ""
    Status: str


# "RT answered an unexpected <what>" (ResponseValidationError, pydantic error as __cause__)
_parse = partial(parse_model, source=SOURCE, vendor="RT")


def ticket_sql_string(value: str) -> str:
    """A TicketSQL string literal: single-quoted, ``\\`` and ``'`` backslash-escaped (RT::SQL unescapes
    ``\\.``)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def subject_for(request: TicketRequest) -> str:
    return f"[{request.reference}] {request.title}"


def reference_query(reference: str) -> str:
    return f"Subject STARTSWITH {ticket_sql_string(f'[{reference}]')}"


def reference_matches(subject: str, reference: str) -> bool:
    """Exact, case-sensitive match of the subject's tag (the search itself is a case-insensitive LIKE)."""
    return subject.startswith(f"[{reference}]")


def map_status(status: str) -> TicketStatus:
    return _STATUS.get(status.lower(), TicketStatus.OPEN)


def create_payload(request: TicketRequest, queue: str) -> dict[str, Any]:
    return {
        "Queue": queue,
        "Subject": subject_for(request),
        "Content": request.body or request.title,
        "ContentType": "text/plain",
    }


def rt_rest_url(base_url: str) -> str:
    """RT's REST2 root from either the RT web root (``https://rt/rt/``) or the REST2 root itself."""
    root = base_url.rstrip("/")
    return f"{root}/" if root.endswith("/REST/2.0") else f"{root}/REST/2.0/"


class RTTicketing(ClosesAPI):
    """Tickets in Request Tracker 5. ``api`` wraps a client whose base URL is the REST2 root
    (``https://rt.example.com/rt/REST/2.0/``); ``queue`` is used when a request names none."""

    source = SOURCE

    def __init__(self, api: APIClient, *, queue: str = "General") -> None:
        self.api = api
        self.queue = queue
        self._known_queues: set[str] = set()

    def __repr__(self) -> str:
        return f"RTTicketing({self.api!r}, queue={self.queue!r})"

    def web_url(self, ticket_id: str) -> str:
        """The ticket's page in RT's web UI (the REST2 root minus ``REST/2.0/``)."""
        root = str(self.api.client.base_url).removesuffix("/").removesuffix("/REST/2.0")
        return f"{root}/Ticket/Display.html?id={ticket_id}"

    def _ticket(self, ticket_id: int | str, reference: str, subject: str, status: str) -> Ticket:
        title = subject.removeprefix(f"[{reference}]").strip()
        return Ticket(
            id=str(ticket_id),
            reference=reference,
            title=title,
            status=map_status(status),
            url=self.web_url(str(ticket_id)),
        )

    async def _check_queue(self, queue: str) -> None:
        """RT answers a create in an unknown queue with 403 "No permission"; ask first to name the problem."""
        if queue in self._known_queues:
            return
        try:
            await self.api.request("GET", f"queue/{quote(queue, safe='')}")
        except NotFoundError as exc:
            raise NotFoundError(f"RT queue {queue!r} does not exist", source=SOURCE, status_code=404) from exc
        self._known_queues.add(queue)

    async def check_queue(self) -> None:
        """``GET queue/<queue>``: the default queue exists and the user may see it."""
        self._known_queues.discard(self.queue)
        await self._check_queue(self.queue)

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        """Create the ticket unless one with ``request.reference`` exists (looked up before and after)."""
        queue = request.queue or self.queue
        await self._check_queue(queue)

        async def create() -> Ticket:
            response = await self.api.request("POST", "ticket", json=create_payload(request, queue))
            created = _parse(_Created, json_body(response, source=SOURCE), what="create response")
            return self._ticket(created.id, request.reference, subject_for(request), "new")

        return await create_idempotently(
            create,
            lambda: self.find_ticket(request.reference),
            sleep=self.api.sleep,
            backoff_base=self.api.backoff_base,
        )

    async def find_ticket(self, reference: str) -> Ticket | None:
        """The oldest ticket whose subject carries ``[reference]``, or None."""
        params = {
            "query": reference_query(reference),
            "fields": "Subject,Status",
            "orderby": "id",
            "order": "ASC",
            "per_page": "100",
        }
        page = _parse(
            _SearchPage, await self.api.request_json("GET", "tickets", params=params), what="search result"
        )
        for item in page.items:
            if reference_matches(item.Subject, reference):
                return self._ticket(item.id, reference, item.Subject, item.Status)
        return None

    async def add_comment(self, ticket_id: str, text: str) -> None:
        """A private comment (not a correspondence: requestors are not mailed)."""
        await self.api.request(
            "POST",
            f"ticket/{quote(ticket_id, safe='')}/comment",
            json={"Content": text, "ContentType": "text/plain"},
        )

    async def get_status(self, ticket_id: str) -> TicketStatus:
        data = await self.api.request_json("GET", f"ticket/{quote(ticket_id, safe='')}")
        return map_status(_parse(_TicketRecord, data, what="ticket").Status)

    async def close_ticket(self, ticket_id: str) -> None:
        """Set Status=resolved (idempotent: RT accepts the current value again)."""
        await self.api.request("PUT", f"ticket/{quote(ticket_id, safe='')}", json={"Status": "resolved"})
