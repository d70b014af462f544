"""A stateful HiBob public API v1 fake (apidocs.hibob.com), for the HRIS contract suite and the connector's
own tests.

What it enforces, from the docs:

- HTTP Basic with a service user's id and token ("API Service Users"), else 401;
- ``POST /v1/people/search`` ("Search for employees"; "People read API contract"): ``fields`` is a list of
  field paths and only those are answered (a path the fake does not know is silently omitted, like a field the
  service user may not read); ``filters`` at most one, ``fieldPath`` ``root.id`` or ``root.email``, operator
  ``equals``, a non-empty ``values`` list, else 400; ``showInactive`` defaults to false (active employees
  only); ``humanReadable`` ``""``, ``APPEND`` or ``REPLACE``; **no paging** (``{"employees": [...]}``, all of
  them). List fields (department, site, employment type) are list-item ids in machine format, names in
  ``humanReadable``; dates ``YYYY-MM-DD``;
- ``GET /v1/people/{id}/lifecycle`` and ``/employment`` (``{"values": [...]}`` with ``effectiveDate``), 404
  for an unknown id;
- about 50 requests per minute ("People API" rate limits): the 51st request in a rolling minute is 429 with
  ``Retry-After``.

Bob keeps the earlier employment's termination date after a rehire (the fake does, so the connector's
lifecycle check is exercised); the lifecycle history shows the rehire.
"""

from __future__ import annotations

import base64
import json
import time
from collections import deque
from typing import Any

import httpx

from tests.support.hris_fake import FakeHRIS, Person, list_id

__all__ = ["HiBobFake"]

LIST_FIELDS = {"work.department", "work.site", "payroll.employment.type"}


class HiBobFake(FakeHRIS):
    source = "hibob"
    base_url = "https://api.hibob.com/v1/"
    service_user_id = "SERVICE-7731"
    token = "hibob-fake-token-9f8e7d6c5b4a"
    per_minute = 50

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._recent: deque[float] = deque()

    def _status(self, person: Person) -> tuple[str, str]:
        today = self.today
        if person.terminated(today):
            return "Inactive", "terminated"
        if person.future_hire(today):
            return ("Inactive" if person.previous_hire_date else "Active"), "hired"
        return "Active", "leave" if person.on_leave else "employed"

    def machine(self, person: Person) -> dict[str, Any]:
        status, lifecycle = self._status(person)
        return {
            "root.id": person.employee_id,
            "root.firstName": person.first_name,
            "root.surname": person.last_name,
            "root.email": person.work_email,
            "home.privateEmail": person.personal_email,
            "work.department": list_id(person.department) if person.department else None,
            "work.title": person.title,
            "work.reportsTo.id": person.manager_id,
            "work.site": list_id(person.location) if person.location else None,
            "payroll.employment.type": list_id(person.employment_type) if person.employment_type else None,
            "work.startDate": person.hire_date,
            # Bob keeps the earlier employment's termination date after a rehire
            "internal.terminationDate": person.termination_date or person.previous_termination_date,
            "internal.status": status,
            "internal.lifecycleStatus": lifecycle,
        }

    def display(self, person: Person) -> dict[str, Any]:
        values = self.machine(person)
        values.update(
            {
                "work.department": person.department,
                "work.site": person.location,
                "payroll.employment.type": person.employment_type,
            }
        )
        return values

    @staticmethod
    def _nest(flat: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        """Field paths → Bob's nested answer (``root.x`` top level, ``work.reportsTo.id`` nested)."""
        out: dict[str, Any] = {}
        for path in fields:
            if path not in flat or flat[path] is None:
                continue  # unknown or empty: omitted
            parts = path.split(".")
            parts = parts[1:] if parts[0] == "root" else parts
            node = out
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = flat[path]
        return out

    def lifecycle(self, person: Person) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        if person.previous_hire_date:
            entries.append({"effectiveDate": person.previous_hire_date, "status": "employed"})
        if person.previous_termination_date:
            entries.append({"effectiveDate": person.previous_termination_date, "status": "terminated"})
        if person.hire_date:
            entries.append({"effectiveDate": person.hire_date, "status": "employed"})
        if person.on_leave:
            entries.append({"effectiveDate": self.today.isoformat(), "status": "leave"})
        if person.termination_date:
            entries.append({"effectiveDate": person.termination_date, "status": "terminated"})
        return [{"id": i + 1, "reason": None, **e} for i, e in enumerate(entries)]

    def _rate_limited(self) -> httpx.Response | None:
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            wait = max(1, int(60 - (now - self._recent[0])) + 1)
            return httpx.Response(
                429, headers={"Retry-After": str(wait)}, json={"error": "Too many requests"}
            )
        self._recent.append(now)
        return None

    def handle(self, request: httpx.Request) -> httpx.Response:
        expected = base64.b64encode(f"{self.service_user_id}:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"error": "Unauthorized: invalid service user credentials"})
        if (limited := self._rate_limited()) is not None:
            return limited
        path = request.url.path.removeprefix("/v1/")
        if request.method == "POST" and path == "people/search":
            return self._search(request)
        parts = path.split("/")
        if request.method == "GET" and len(parts) == 3 and parts[0] == "people":
            person = self.people.get(parts[1])
            if person is None:
                return httpx.Response(404, json={"error": "Employee not found"})
            if parts[2] == "lifecycle":
                return httpx.Response(200, json={"values": self.lifecycle(person)})
            if parts[2] == "employment":
                values = [{"id": 1, "effectiveDate": person.hire_date, "type": person.employment_type}]
                return httpx.Response(200, json={"values": values})
        return httpx.Response(404, json={"error": "Not found"})

    def _search(self, request: httpx.Request) -> httpx.Response:
        try:
            body = json.loads(request.content)
        except ValueError:
            return httpx.Response(400, json={"error": "body is not JSON"})
        fields = body.get("fields")
        filters = body.get("filters") or []
        readable = body.get("humanReadable", "")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            return httpx.Response(400, json={"error": "fields must be a list of field paths"})
        if readable not in ("", "APPEND", "REPLACE"):
            return httpx.Response(400, json={"error": "humanReadable must be APPEND or REPLACE"})
        if len(filters) > 1:
            return httpx.Response(400, json={"error": "only one filter is supported"})
        people = list(self.people.values())
        for rule in filters:
            if rule.get("fieldPath") not in ("root.id", "root.email") or rule.get("operator") != "equals":
                return httpx.Response(400, json={"error": "unsupported filter"})
            values = rule.get("values")
            if not isinstance(values, list) or not values:
                return httpx.Response(400, json={"error": "filter values must not be empty"})
            key = "root.id" if rule["fieldPath"] == "root.id" else "root.email"
            people = [p for p in people if self.machine(p)[key] in values]
        if not body.get("showInactive", False):
            people = [p for p in people if self._status(p)[0] == "Active"]
        employees = []
        for person in people:
            if readable == "REPLACE":
                employees.append(self._nest(self.display(person), fields))
                continue
            entry = self._nest(self.machine(person), fields)
            if readable == "APPEND":
                entry["humanReadable"] = self._nest(self.display(person), fields)
            employees.append(entry)
        return httpx.Response(200, json={"employees": employees})

    def roster_requests(self) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if r.url.path.endswith("/people/search") and not json.loads(r.content).get("filters")
        ]
