"""A stateful Personio API fake (developer.personio.de), for the HRIS contract suite and the connector's tests.

What it enforces, from the docs:

- ``POST /v2/auth/token`` (form-encoded OAuth 2.0 client credentials: ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``) → ``{"access_token": "papi-...", "token_type": "Bearer", "expires_in"}``;
  wrong credentials → 401 ``{"error": "invalid_client"}``. Tokens expire (:meth:`PersonioFake.expire_tokens`,
  or ``expires_in``); an expired or unknown token on a data request → 401 with Personio's error body;
- ``GET /v2/persons``: ``limit`` 1..50 (default 10; otherwise 400), **cursor paging** through
  ``_meta.links.next.href`` (absolute, opaque cursor), filters ``id`` and ``updated_at.gt``;
- ``GET /v2/persons/{id}/employments``: the person's employments, most recent first (a rehire is a new
  employment); ``GET /v2/org-units/{id}``: the org unit's name;
- ``v2_available = False`` makes ``/v2/persons`` answer 404 (the v1 fallback then serves);
- ``GET /v1/company/employees``: ``limit`` at most 100 (otherwise 400), ``offset`` = index of the first
  employee, ``updated_since``; attributes as ``{"label", "value"}`` objects, dates as date-times with an
  offset; ``GET /v1/company/employees/{id}``.
"""

from __future__ import annotations

import base64
import itertools
import time
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx

from tests.support.hris_fake import FakeHRIS, Person, list_id

__all__ = ["PersonioFake"]

ERROR_401 = {
    "personio_trace_id": "fake-trace",
    "timestamp": "2026-01-01T00:00:00Z",
    "errors": [{"title": "Unauthorized", "detail": "The access token is invalid or expired"}],
}


def _v1_id(value: str) -> int | str:
    """v1 employee ids are integers."""
    return int(value) if value.isdigit() else value


class PersonioFake(FakeHRIS):
    source = "personio"
    base_url = "https://api.personio.de/"
    client_id = "papi-client-8c1d"
    client_secret = "papi-secret-0a9b8c7d6e5f4a3b"
    expires_in = 86_400

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tokens: dict[str, float] = {}
        self.v2_available = True
        self._serial = itertools.count(1)

    def expire_tokens(self) -> None:
        self.tokens = {token: 0.0 for token in self.tokens}

    def is_auth_request(self, request: httpx.Request) -> bool:
        return request.url.path == "/v2/auth/token"

    # -- rendering ----------------------------------------------------------------------------------------

    def _status(self, person: Person) -> str:
        today = self.today
        if person.terminated(today):
            return "INACTIVE"
        if person.future_hire(today):
            return "ONBOARDING"
        return "LEAVE" if person.on_leave else "ACTIVE"

    def employments(self, person: Person) -> list[dict[str, Any]]:
        current = {
            "id": f"emp-{person.employee_id}-2"
            if person.previous_hire_date
            else f"emp-{person.employee_id}-1",
            "person": {"id": person.employee_id},
            "status": self._status(person),
            "employment_start_date": person.hire_date,
            "termination": {"termination_date": person.termination_date} if person.termination_date else None,
            "supervisor": {"id": person.manager_id} if person.manager_id else None,
            "position": {"title": person.title},
            "org_units": [{"id": list_id(person.department), "type": "DEPARTMENT"}]
            if person.department
            else [],
            "type": person.employment_type,
            "updated_at": person.changed_at.isoformat(),
        }
        if not person.previous_hire_date:
            return [current]
        earlier = {
            **current,
            "id": f"emp-{person.employee_id}-1",
            "status": "INACTIVE",
            "employment_start_date": person.previous_hire_date,
            "termination": {"termination_date": person.previous_termination_date},
        }
        return [current, earlier]  # most recent first

    def person(self, person: Person) -> dict[str, Any]:
        return {
            "id": person.employee_id,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "preferred_name": None,
            "email": person.work_email,
            "created_at": person.created_at.isoformat(),
            "updated_at": person.changed_at.isoformat(),
            "employments": [{"id": e["id"]} for e in self.employments(person)],
            "_meta": {"links": {"employments": {"href": f"{self.base_url}v2/persons/{person.employee_id}"}}},
        }

    @staticmethod
    def _when(value: str | None) -> str | None:
        return f"{value}T00:00:00+01:00" if value else None

    def v1_employee(self, person: Person) -> dict[str, Any]:
        def attr(label: str, value: Any) -> dict[str, Any]:
            return {"label": label, "value": value}

        supervisor = (
            {"type": "Employee", "attributes": {"id": attr("ID", _v1_id(person.manager_id))}}
            if person.manager_id
            else None
        )
        attributes = {
            "id": attr("ID", _v1_id(person.employee_id)),
            "first_name": attr("First name", person.first_name),
            "last_name": attr("Last name", person.last_name),
            "email": attr("Email", person.work_email),
            "status": attr("Status", self._status(person).lower()),
            "position": attr("Position", person.title),
            "supervisor": attr("Supervisor", supervisor),
            "employment_type": attr("Employment type", person.employment_type),
            "hire_date": attr("Hire date", self._when(person.hire_date)),
            "termination_date": attr("Termination date", self._when(person.termination_date)),
            "department": attr(
                "Department", {"type": "Department", "attributes": {"name": person.department}}
            ),
            "office": attr("Office", {"type": "Office", "attributes": {"name": person.location}}),
            "last_modified_at": attr("Last modified", person.changed_at.isoformat()),
        }
        return {"type": "Employee", "attributes": attributes}

    # -- routes -------------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v2/auth/token" and request.method == "POST":
            return self._token(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token, 0.0) <= time.monotonic():
            return httpx.Response(401, json=ERROR_401)
        params = request.url.params
        if path == "/v2/persons":
            return self._persons(request) if self.v2_available else httpx.Response(404, json={"errors": []})
        parts = path.strip("/").split("/")
        if parts[:2] == ["v2", "persons"] and len(parts) == 4 and parts[3] == "employments":
            person = self.people.get(parts[2])
            if person is None:
                return httpx.Response(404, json={"errors": [{"title": "Person not found"}]})
            return httpx.Response(200, json={"_data": self.employments(person), "_meta": {"links": {}}})
        if parts[:2] == ["v2", "org-units"] and len(parts) == 3:
            names = {list_id(p.department): p.department for p in self.people.values() if p.department}
            if parts[2] not in names:
                return httpx.Response(404, json={"errors": [{"title": "Org unit not found"}]})
            return httpx.Response(200, json={"id": parts[2], "name": names[parts[2]], "type": "DEPARTMENT"})
        if path == "/v1/company/employees":
            return self._v1_list(params)
        if parts[:3] == ["v1", "company", "employees"] and len(parts) == 4:
            person = self.people.get(parts[3])
            if person is None:
                return httpx.Response(404, json={"success": False, "error": {"message": "not found"}})
            return httpx.Response(200, json={"success": True, "data": self.v1_employee(person)})
        return httpx.Response(404, json={"errors": [{"title": "Not found"}]})

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return httpx.Response(400, json={"error": "unsupported_grant_type"})
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return httpx.Response(401, json={"error": "invalid_client"})
        token = "papi-" + base64.urlsafe_b64encode(f"tok{next(self._serial)}-{time.time()}".encode()).decode()
        self.tokens[token] = time.monotonic() + self.expires_in
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": "personio:persons:read",
            },
        )

    def _persons(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        try:
            limit = int(params.get("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 50:
            return httpx.Response(400, json={"errors": [{"title": "Provided value for limit is not valid"}]})
        people = sorted(self.people.values(), key=lambda p: p.employee_id)
        if "id" in params:
            people = [p for p in people if p.employee_id in params.get_list("id")]
        if "updated_at.gt" in params:
            since = datetime.fromisoformat(params["updated_at.gt"].replace("Z", "+00:00"))
            people = [p for p in people if p.changed_at > since]
        start = int(base64.urlsafe_b64decode(params["cursor"]).decode()) if "cursor" in params else 0
        page = people[start : start + limit]
        links: dict[str, Any] = {}
        if start + limit < len(people):
            keep = [(k, v) for k, v in params.multi_items() if k not in ("cursor", "limit")]
            cursor = base64.urlsafe_b64encode(str(start + limit).encode()).decode()
            query = urlencode([*keep, ("cursor", cursor), ("limit", limit)])
            links["next"] = {"href": f"{self.base_url}v2/persons?{query}"}
        return httpx.Response(200, json={"_data": [self.person(p) for p in page], "_meta": {"links": links}})

    def _v1_list(self, params: httpx.QueryParams) -> httpx.Response:
        limit, offset = int(params.get("limit", "200")), int(params.get("offset", "0"))
        if limit > 100:
            return httpx.Response(
                400, json={"success": False, "error": {"message": "limit must be at most 100"}}
            )
        people = sorted(self.people.values(), key=lambda p: p.employee_id)
        if "updated_since" in params:
            since = datetime.fromisoformat(params["updated_since"].replace("Z", "+00:00"))
            people = [p for p in people if p.changed_at > since]
        page = people[offset : offset + limit]
        body = {
            "success": True,
            "metadata": {
                "total_elements": len(people),
                "current_page": offset // max(limit, 1),
                "total_pages": -(-len(people) // max(limit, 1)),
            },
            "offset": offset,
            "limit": limit,
            "data": [self.v1_employee(p) for p in page],
        }
        return httpx.Response(200, json=body)

    def roster_requests(self) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path in ("/v2/persons", "/v1/company/employees")
            and r.url.params.get("limit") != "1"
            and "id" not in r.url.params
        ]
