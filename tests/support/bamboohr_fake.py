"""A stateful BambooHR API v1 fake (documentation.bamboohr.com/reference), for the HRIS contract suite.

Serves, as documented: ``POST /{company}/v1/reports/custom?format=JSON&onlyCurrent=false`` (the fields asked
for, every employee, one answer), ``GET /{company}/v1/employees/{id}/`` (404 if unknown) and ``GET
/{company}/v1/employees/changed/?since=`` (``{"latest", "employees": {id: {"id", "action",
"lastChanged"}}}``). HTTP Basic with the API key as user and any password, else 401. Status is ``Active`` /
``Inactive``; an empty date is ``0000-00-00``; a rehire clears the termination date (BambooHR's rehire
starts a new employment status).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.hris_fake import FakeHRIS, Person

__all__ = ["BambooHRFake"]


class BambooHRFake(FakeHRIS):
    source = "bamboohr"
    base_url = "https://api.bamboohr.com/api/gateway.php/"
    company = "acme"
    api_key = "bhr-fake-4f1c2d9e8a7b6c5d4e3f2a1b"

    @property
    def root(self) -> str:
        return f"/api/gateway.php/{self.company}/v1/"

    def render(self, person: Person, fields: list[str] | None = None) -> dict[str, Any]:
        today = self.today
        payload = {
            "id": person.employee_id,
            "firstName": person.first_name,
            "lastName": person.last_name,
            "preferredName": None,
            "workEmail": person.work_email,
            "homeEmail": person.personal_email,
            "department": person.department,
            "jobTitle": person.title,
            "supervisorEId": person.manager_id,
            "location": person.location,
            "employmentHistoryStatus": "Leave of Absence" if person.on_leave else person.employment_type,
            "status": "Inactive" if person.terminated(today) else "Active",
            "hireDate": person.hire_date or "0000-00-00",
            "terminationDate": person.termination_date or "0000-00-00",
        }
        return {k: v for k, v in payload.items() if fields is None or k in fields or k == "id"}

    def handle(self, request: httpx.Request) -> httpx.Response:
        expected = "Basic " + base64.b64encode(f"{self.api_key}:x".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return httpx.Response(401, text="Unauthorized")
        path = request.url.path
        if not path.startswith(self.root):
            return httpx.Response(404)
        route = path[len(self.root) :]
        if request.method == "POST" and route == "reports/custom":
            if request.url.params.get("format") != "JSON":
                return httpx.Response(200, text="<report/>", headers={"Content-Type": "text/xml"})
            fields = json.loads(request.content or b"{}").get("fields")
            if not isinstance(fields, list):
                return httpx.Response(400, json={"error": "fields required"})
            employees = [self.render(p, fields) for p in self.people.values()]
            return httpx.Response(200, json={"title": "Report", "fields": [], "employees": employees})
        if request.method == "GET" and route == "employees/changed/":
            since = datetime.fromisoformat(request.url.params["since"].replace("Z", "+00:00"))
            changed = {
                p.employee_id: {
                    "id": p.employee_id,
                    "action": "Inserted" if p.created_at > since else "Updated",
                    "lastChanged": p.changed_at.isoformat(),
                }
                for p in self.people.values()
                if p.changed_at > since
            }
            latest = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
            return httpx.Response(200, json={"latest": latest, "employees": changed or []})
        if request.method == "GET" and route.startswith("employees/"):
            person = self.people.get(route.removeprefix("employees/").strip("/"))
            if person is None:
                return httpx.Response(404)
            fields = request.url.params.get("fields", "").split(",")
            return httpx.Response(200, json=self.render(person, fields))
        return httpx.Response(404)

    def roster_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/reports/custom")]
