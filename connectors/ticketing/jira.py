"""Jira Service Management (Cloud), satisfying :class:`connectors.protocols.Ticketing`.

Endpoints (Atlassian REST references, "Jira Service Management Cloud REST API" and
"Jira Cloud platform REST API v3"):

- ``POST /rest/servicedeskapi/request`` with ``serviceDeskId``, ``requestTypeId`` and ``requestFieldValues``
  (``summary``, ``description``, ``labels``) creates a customer request;
- ``GET /rest/servicedeskapi/servicedesk/{id}/requesttype`` resolves a request type name to its id;
- ``GET /rest/api/3/search/jql?jql=labels = "..."`` (the enhanced JQL search, ``nextPageToken`` paging)
  finds a request by its Tenure reference, stored as a label;
- ``GET /rest/servicedeskapi/request/{key}``: ``currentStatus.statusCategory`` (NEW / INDETERMINATE / DONE);
- ``POST /rest/servicedeskapi/request/{key}/comment`` with ``public: false`` adds an internal comment;
- ``GET``/``POST /rest/api/3/issue/{key}/transitions`` closes it through a transition into the DONE category.

Labels cannot hold spaces, so whitespace in a reference becomes ``_`` (:func:`label_for`).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from connectors.errors import ConnectorError, NotFoundError, PermanentAPIError
from connectors.http import APIClient, ClosesAPI, LoopGuard, create_idempotently, json_body, parse_model
from models.domain import Ticket, TicketRequest, TicketStatus

__all__ = [
    "JiraServiceManagement",
    "label_for",
    "jql_string",
    "reference_jql",
    "map_status",
    "create_payload",
]

SOURCE = "jira"
SERVICEDESK = "rest/servicedeskapi"
PLATFORM = "rest/api/3"
# Status names that end a request without doing it; their category is DONE too.
REJECTED_STATUS_NAMES = frozenset({"declined", "rejected", "canceled", "cancelled", "won't do", "wont do"})


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _CurrentStatus(_Loose):
    status: str = ""
    status_category: str = Field(default="UNDEFINED", alias="statusCategory")


class _Links(_Loose):
    web: str | None = None


class _Request(_Loose):
    issue_key: str = Field(alias="issueKey")
    current_status: _CurrentStatus = Field(default_factory=_CurrentStatus, alias="currentStatus")
    links: _Links = Field(default_factory=_Links, alias="_links")


class _StatusCategory(_Loose):
    key: str = "undefined"


class _Status(_Loose):
    name: str = ""
    status_category: _StatusCategory = Field(default_factory=_StatusCategory, alias="statusCategory")


class _IssueFields(_Loose):
    summary: str = ""
    labels: list[str] = Field(default_factory=list)
    status: _Status = Field(default_factory=_Status)


class _Issue(_Loose):
    key: str
    fields: _IssueFields


class _SearchPage(_Loose):
    issues: list[_Issue] = Field(default_factory=list)
    next_page_token: str | None = Field(default=None, alias="nextPageToken")


class _RequestType(_Loose):
    id: str
    name: str


class _RequestTypePage(_Loose):
    values: list[_RequestType] = Field(default_factory=list)
    is_last_page: bool = Field(default=True, alias="isLastPage")
    start: int = 0
    size: int = 0


class _Transition(_Loose):
    id: str
    name: str = ""
    to: _Status = Field(default_factory=_Status)


class _Transitions(_Loose):
    transitions: list[_Transition] = Field(default_factory=list)


# "Jira answered an unexpected <what>" (ResponseValidationError, pydantic error as __cause__)
_parse = partial(parse_model, source=SOURCE, vendor="Jira")


def label_for(reference: str) -> str:
    """The Jira label carrying a reference (labels may not contain whitespace)."""
    return re.sub(r"\s", "_", reference)


def jql_string(value: str) -> str:
    """A JQL string literal: double-quoted with ``\\`` and ``"`` backslash-escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reference_jql(reference: str) -> str:
    return f"labels = {jql_string(label_for(reference))} ORDER BY created ASC"


def map_status(category: str, name: str = "") -> TicketStatus:
    """DONE → resolved (or rejected for a declining status name); NEW/INDETERMINATE/other → open."""
    if category.upper() != "DONE":
        return TicketStatus.OPEN
    return TicketStatus.REJECTED if name.strip().lower() in REJECTED_STATUS_NAMES else TicketStatus.RESOLVED


def create_payload(request: TicketRequest, *, service_desk_id: str, request_type_id: str) -> dict[str, Any]:
    return {
        "serviceDeskId": service_desk_id,
        "requestTypeId": request_type_id,
        "requestFieldValues": {
            "summary": request.title,
            "description": request.body or request.title,
            "labels": [label_for(request.reference)],
        },
    }


class JiraServiceManagement(ClosesAPI):
    """Requests in one JSM service desk. ``api`` wraps a client on the site root (``https://x.atlassian.net/``);
    ``request_type`` (id or name) is used when a ticket request names none; ``close_transition`` picks a
    transition by name (default: the first whose target status is in the DONE category and not a decline)."""

    source = SOURCE

    def __init__(
        self, api: APIClient, *, service_desk_id: str, request_type: str, close_transition: str | None = None
    ) -> None:
        self.api = api
        self.service_desk_id = service_desk_id
        self.request_type = request_type
        self.close_transition = close_transition
        self._request_type_ids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"JiraServiceManagement({self.api!r}, service_desk_id={self.service_desk_id!r})"

    def web_url(self, key: str) -> str:
        return f"{str(self.api.client.base_url).rstrip('/')}/browse/{key}"

    async def _request_type_id(self, name_or_id: str) -> str:
        """Digits are an id; a name is looked up among the service desk's request types (cached)."""
        if name_or_id.isdigit():
            return name_or_id
        if name_or_id in self._request_type_ids:
            return self._request_type_ids[name_or_id]
        guard = LoopGuard(SOURCE)
        start = 0
        while True:
            guard.check(start)
            page = _parse(
                _RequestTypePage,
                await self.api.request_json(
                    "GET",
                    f"{SERVICEDESK}/servicedesk/{quote(self.service_desk_id, safe='')}/requesttype",
                    params={"start": start, "limit": 50},
                ),
                what="request type page",
            )
            for request_type in page.values:
                if request_type.name.casefold() == name_or_id.casefold():
                    self._request_type_ids[name_or_id] = request_type.id
                    return request_type.id
            if page.is_last_page or not page.values:
                raise NotFoundError(
                    f"JSM request type {name_or_id!r} does not exist"
                    f" in service desk {self.service_desk_id!r}",
                    source=SOURCE,
                )
            start = page.start + len(page.values)

    async def check_queue(self) -> None:
        """The service desk's request types are readable and the default one (the queue) is among them."""
        self._request_type_ids.pop(self.request_type, None)
        if self.request_type.isdigit():  # an id needs no look-up to create with; read the desk itself
            await self.api.request_json(
                "GET", f"{SERVICEDESK}/servicedesk/{quote(self.service_desk_id, safe='')}"
            )
            return
        await self._request_type_id(self.request_type)

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        """Create the request unless one labelled with the reference exists (looked up before and after)."""
        request_type_id = await self._request_type_id(request.queue or self.request_type)
        payload = create_payload(
            request, service_desk_id=self.service_desk_id, request_type_id=request_type_id
        )

        async def create() -> Ticket:
            response = await self.api.request("POST", f"{SERVICEDESK}/request", json=payload)
            created = _parse(_Request, json_body(response, source=SOURCE), what="create response")
            status = map_status(created.current_status.status_category, created.current_status.status)
            return Ticket(
                id=created.issue_key,
                reference=request.reference,
                title=request.title,
                status=status,
                url=created.links.web or self.web_url(created.issue_key),
            )

        return await create_idempotently(
            create,
            lambda: self.find_ticket(request.reference),
            sleep=self.api.sleep,
            backoff_base=self.api.backoff_base,
        )

    async def find_ticket(self, reference: str) -> Ticket | None:
        """The oldest issue carrying the reference's label, or None."""
        label = label_for(reference)
        params: dict[str, Any] = {
            "jql": reference_jql(reference),
            "fields": "summary,labels,status",
            "maxResults": 50,
        }
        guard = LoopGuard(SOURCE)
        while True:
            page = _parse(
                _SearchPage,
                await self.api.request_json("GET", f"{PLATFORM}/search/jql", params=params),
                what="search result",
            )
            for issue in page.issues:
                if label in issue.fields.labels:
                    status = map_status(issue.fields.status.status_category.key, issue.fields.status.name)
                    return Ticket(
                        id=issue.key,
                        reference=reference,
                        title=issue.fields.summary,
                        status=status,
                        url=self.web_url(issue.key),
                    )
            if not page.next_page_token:
                return None
            guard.check(page.next_page_token)
            params["nextPageToken"] = page.next_page_token

    async def add_comment(self, ticket_id: str, text: str) -> None:
        """An internal comment (``public: false``): agents see it, the customer is not notified."""
        await self.api.request(
            "POST",
            f"{SERVICEDESK}/request/{quote(ticket_id, safe='')}/comment",
            json={"body": text, "public": False},
        )

    async def _current_status(self, ticket_id: str) -> _CurrentStatus:
        data = await self.api.request_json("GET", f"{SERVICEDESK}/request/{quote(ticket_id, safe='')}")
        return _parse(_Request, data, what="request").current_status

    async def get_status(self, ticket_id: str) -> TicketStatus:
        current = await self._current_status(ticket_id)
        return map_status(current.status_category, current.status)

    async def close_ticket(self, ticket_id: str) -> None:
        """Transition into the DONE category; a request already done is left alone."""
        if (await self._current_status(ticket_id)).status_category.upper() == "DONE":
            return
        path = f"{PLATFORM}/issue/{quote(ticket_id, safe='')}/transitions"
        options = _parse(
            _Transitions, await self.api.request_json("GET", path), what="transition list"
        ).transitions
        chosen = next((t for t in options if self._closes(t)), None)
        if chosen is None:
            names = sorted(t.name for t in options)
            raise PermanentAPIError(f"no transition closes {ticket_id} (available: {names})", source=SOURCE)
        try:
            await self.api.request("POST", path, json={"transition": {"id": chosen.id}})
        except ConnectorError as exc:  # the answer may be lost after Jira applied it: look before failing
            if not exc.retryable or (await self._current_status(ticket_id)).status_category.upper() != "DONE":
                raise

    def _closes(self, transition: _Transition) -> bool:
        if self.close_transition:
            return transition.name.casefold() == self.close_transition.casefold()
        return (
            transition.to.status_category.key.lower() == "done"
            and transition.to.name.strip().lower() not in REJECTED_STATUS_NAMES
        )
