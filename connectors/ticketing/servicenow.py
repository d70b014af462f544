"""ServiceNow through the Table API, satisfying :class:`connectors.protocols.Ticketing`.

ServiceNow "Table API" reference (``/api/now/table/{tableName}``): ``POST`` inserts one record, ``GET`` with
``sysparm_query`` (an encoded query) lists records, ``GET .../{sys_id}`` reads one and ``PATCH .../{sys_id}``
updates the given fields. The Tenure reference goes into ``correlation_id`` (the task field meant for an
external system's id), so lookup is ``sysparm_query=correlation_id=<reference>``, matched exactly here too.
Comments are ``work_notes`` (internal journal). Rate limiting answers 429 with ``Retry-After`` /
``X-RateLimit-Reset``, honoured by :class:`connectors.http.APIClient`.

State values (``state`` choice list): incident 1 New, 2 In Progress, 3 On Hold, 6 Resolved, 7 Closed,
8 Canceled; other task tables (``sc_request``, ``sc_task``) 1 Open, 2 Work in Progress, 3 Closed Complete,
4 Closed Incomplete, 7 Closed Skipped, -5 Pending.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, field_validator

from connectors.errors import InvalidRecordError
from connectors.http import APIClient, ClosesAPI, create_idempotently, json_body, parse_model
from models.domain import Ticket, TicketRequest, TicketStatus

__all__ = ["ServiceNowTicketing", "reference_query", "map_status", "close_fields", "create_payload"]

SOURCE = "servicenow"
FIELDS = "sys_id,number,short_description,state,correlation_id"
_INCIDENT = {"6": TicketStatus.RESOLVED, "7": TicketStatus.RESOLVED, "8": TicketStatus.REJECTED}
_TASK = {"3": TicketStatus.RESOLVED, "4": TicketStatus.REJECTED, "7": TicketStatus.REJECTED}


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sys_id: str
    number: str = ""
    short_description: str = ""
    state: str = ""
    correlation_id: str = ""

    @field_validator("state", mode="before")
    @classmethod
    def _state_text(cls, value: Any) -> str:
        return "" if value is None else str(value)


class _One(BaseModel):
    result: _Record


class _Many(BaseModel):
    result: list[_Record]


# "ServiceNow answered an unexpected <what>" (ResponseValidationError, pydantic error as __cause__)
_parse = partial(parse_model, source=SOURCE, vendor="ServiceNow")


def reference_query(reference: str) -> str:
    """The encoded query for a reference. ``^`` separates encoded-query terms and cannot be quoted, so a
    reference containing it (or a line break) is refused rather than searched wrongly."""
    if "^" in reference or "\n" in reference or "\r" in reference:
        raise InvalidRecordError(
            "reference contains '^' or a line break, unusable in an encoded query",
            source=SOURCE,
            record_id=None,
        )
    return f"correlation_id={reference}^ORDERBYsys_created_on"


def map_status(table: str, state: str) -> TicketStatus:
    """Resolved/closed → resolved, canceled/incomplete/skipped → rejected, anything else → open."""
    return (_INCIDENT if table == "incident" else _TASK).get(state, TicketStatus.OPEN)


def close_fields(table: str, *, close_code: str, close_notes: str) -> dict[str, str]:
    """Incidents resolve with state 6 plus the resolution code and notes their data policy requires."""
    if table == "incident":
        return {"state": "6", "close_code": close_code, "close_notes": close_notes}
    return {"state": "3", "close_notes": close_notes}


def create_payload(request: TicketRequest) -> dict[str, str]:
    payload = {
        "short_description": request.title,
        "description": request.body or request.title,
        "correlation_id": request.reference,
        "correlation_display": "tenure",
    }
    if request.queue:
        payload["assignment_group"] = request.queue  # a group name or sys_id
    return payload


class ServiceNowTicketing(ClosesAPI):
    """Records in one ServiceNow task table (``incident`` by default, or ``sc_request``...). ``api`` wraps a
    client on the instance root (``https://x.service-now.com/``); a ticket's id is its ``sys_id``."""

    source = SOURCE

    def __init__(
        self,
        api: APIClient,
        *,
        table: str = "incident",
        close_code: str = "Solution provided",
        close_notes: str = "Closed by Tenure",
    ) -> None:
        self.api = api
        self.table = table
        self.close_code = close_code
        self.close_notes = close_notes

    def __repr__(self) -> str:
        return f"ServiceNowTicketing({self.api!r}, table={self.table!r})"

    @property
    def _path(self) -> str:
        return f"api/now/table/{quote(self.table, safe='')}"

    def _record_path(self, sys_id: str) -> str:
        return f"{self._path}/{quote(sys_id, safe='')}"

    def _ticket(self, record: _Record, reference: str) -> Ticket:
        url = f"{str(self.api.client.base_url).rstrip('/')}/{self.table}.do?sys_id={record.sys_id}"
        return Ticket(
            id=record.sys_id,
            reference=reference,
            title=record.short_description,
            status=map_status(self.table, record.state),
            url=url,
        )

    async def create_ticket(self, request: TicketRequest) -> Ticket:
        """Insert unless a record with this ``correlation_id`` exists (looked up before and after)."""
        reference_query(request.reference)  # refuse an unsearchable reference before writing anything

        async def create() -> Ticket:
            response = await self.api.request(
                "POST",
                self._path,
                json=create_payload(request),
                params={"sysparm_fields": FIELDS, "sysparm_exclude_reference_link": "true"},
            )
            created = _parse(_One, json_body(response, source=SOURCE), what="insert response")
            return self._ticket(created.result, request.reference)

        return await create_idempotently(
            create,
            lambda: self.find_ticket(request.reference),
            sleep=self.api.sleep,
            backoff_base=self.api.backoff_base,
        )

    async def check_queue(self) -> None:
        """One record of the table (``sysparm_limit=1``): the table exists and the user may read it."""
        await self.api.request_json(
            "GET", self._path, params={"sysparm_limit": "1", "sysparm_fields": "sys_id"}
        )

    async def find_ticket(self, reference: str) -> Ticket | None:
        params = {
            "sysparm_query": reference_query(reference),
            "sysparm_fields": FIELDS,
            "sysparm_limit": "20",
        }
        records = _parse(
            _Many, await self.api.request_json("GET", self._path, params=params), what="query result"
        )
        match = next((r for r in records.result if r.correlation_id == reference), None)
        return self._ticket(match, reference) if match else None

    async def add_comment(self, ticket_id: str, text: str) -> None:
        """A work note. Sent once: a retried PATCH of a journal field would add the note twice."""
        await self.api.request(
            "PATCH",
            self._record_path(ticket_id),
            json={"work_notes": text},
            params={"sysparm_fields": "sys_id"},
            retry=False,
        )

    async def get_status(self, ticket_id: str) -> TicketStatus:
        data = await self.api.request_json(
            "GET", self._record_path(ticket_id), params={"sysparm_fields": FIELDS}
        )
        return map_status(self.table, _parse(_One, data, what="record").result.state)

    async def close_ticket(self, ticket_id: str) -> None:
        """PATCH the closing state (idempotent: setting the same values again changes nothing)."""
        fields = close_fields(self.table, close_code=self.close_code, close_notes=self.close_notes)
        await self.api.request(
            "PATCH", self._record_path(ticket_id), json=fields, params={"sysparm_fields": "sys_id"}
        )
