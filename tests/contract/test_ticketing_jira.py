"""The Ticketing contract against a respx-backed stateful fake of Jira Service Management Cloud.

The fake answers with the payload shapes Atlassian documents (CustomerRequestDTO for servicedeskapi requests,
SearchAndReconcileResults for ``/rest/api/3/search/jql``, the transitions list of
``/rest/api/3/issue/{key}``),
keeps issues in memory, and enforces what matters: known service desk and request type, valid transitions.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx

from connectors.errors import NotFoundError, PermanentAPIError, ResponseValidationError
from connectors.http import APIClient, build_client
from connectors.ticketing.jira import JiraServiceManagement, jql_string, label_for
from models.domain import TicketStatus
from tests.contract.ticketing_suite import Sleeps, TicketingContract, new_request

BASE = "https://tenure-test.atlassian.net/"
SERVICE_DESK = "4"
REQUEST_TYPES = [("10", "Get IT help"), ("11", "New joiner hardware"), ("12", "Access request")]
OPEN = ("Waiting for support", "NEW", "new")
IN_PROGRESS = ("In Progress", "INDETERMINATE", "indeterminate")
RESOLVED = ("Resolved", "DONE", "done")
DECLINED = ("Declined", "DONE", "done")
TRANSITIONS = {
    "11": ("Start progress", IN_PROGRESS),
    "21": ("Decline", DECLINED),
    "31": ("Resolve", RESOLVED),
}
VALID_AUTH = "Basic " + base64.b64encode(b"bot@tenure.test:jira-api-token").decode()
_JQL_LABEL = re.compile(r'^labels = "((?:[^"\\]|\\.)*)"(?: ORDER BY created ASC)?$')


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"errorMessage": message, "i18nErrorMessage": {"i18nKey": "x"}})


@dataclass
class _Issue:
    key: str
    summary: str
    description: str
    labels: list[str]
    status: tuple[str, str, str] = OPEN
    comments: list[dict[str, Any]] = field(default_factory=list)


class FakeJSM:
    """In-memory JSM Cloud behind respx routes; ``fail_next`` queues canned responses for chosen routes."""

    def __init__(self) -> None:
        self.issues: dict[str, _Issue] = {}
        self.page_size = 50
        self._ids = itertools.count(1001)
        self.fail_next: dict[str, list[Callable[[httpx.Request], httpx.Response]]] = {}
        self.router = respx.MockRouter(base_url=BASE, assert_all_called=False, assert_all_mocked=True)
        r = self.router
        r.get(path=f"/rest/servicedeskapi/servicedesk/{SERVICE_DESK}/requesttype", name="types").mock(
            side_effect=self._guard("types", self.request_types)
        )
        r.post(path="/rest/servicedeskapi/request", name="create").mock(
            side_effect=self._guard("create", self.create)
        )
        r.get(path="/rest/api/3/search/jql", name="search").mock(
            side_effect=self._guard("search", self.search)
        )
        r.get(path__regex=r"^/rest/servicedeskapi/request/(?P<key>[^/]+)$", name="get").mock(
            side_effect=self._guard("get", self.get)
        )
        r.post(path__regex=r"^/rest/servicedeskapi/request/(?P<key>[^/]+)/comment$", name="comment").mock(
            side_effect=self._guard("comment", self.comment)
        )
        r.get(path__regex=r"^/rest/api/3/issue/(?P<key>[^/]+)/transitions$", name="transitions").mock(
            side_effect=self._guard("transitions", self.transitions)
        )
        r.post(path__regex=r"^/rest/api/3/issue/(?P<key>[^/]+)/transitions$", name="transition").mock(
            side_effect=self._guard("transition", self.transition)
        )

    def _guard(self, name: str, handler: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
        def route(request: httpx.Request, **kwargs: Any) -> httpx.Response:
            queued = self.fail_next.get(name)
            if queued:
                return queued.pop(0)(request)
            if request.headers.get("Authorization") != VALID_AUTH:
                return _error(401, "Client must be authenticated to access this resource.")
            return handler(request, **kwargs)

        return route

    def _dto(self, issue: _Issue) -> dict[str, Any]:
        name, category, _ = issue.status
        return {
            "_expands": [
                "participant",
                "status",
                "sla",
                "requestType",
                "serviceDesk",
                "attachment",
                "action",
                "comment",
            ],
            "issueId": issue.key.split("-")[1],
            "issueKey": issue.key,
            "requestTypeId": "11",
            "serviceDeskId": SERVICE_DESK,
            "createdDate": {"iso8601": "2026-11-26T10:00:00+0000", "epochMillis": 1795600000000},
            "reporter": {"accountId": "5b10a2844c20165700ede21g", "displayName": "Tenure Bot"},
            "requestFieldValues": [
                {"fieldId": "summary", "label": "What do you need?", "value": issue.summary},
                {"fieldId": "description", "label": "Why do you need this?", "value": issue.description},
            ],
            "currentStatus": {
                "status": name,
                "statusCategory": category,
                "statusDate": {"iso8601": "2026-11-26T10:00:00+0000"},
            },
            "_links": {
                "jiraRest": f"{BASE}rest/api/2/issue/{issue.key.split('-')[1]}",
                "web": f"{BASE}servicedesk/customer/portal/{SERVICE_DESK}/{issue.key}",
                "self": f"{BASE}rest/servicedeskapi/request/{issue.key.split('-')[1]}",
            },
        }

    def request_types(self, request: httpx.Request) -> httpx.Response:
        start = int(request.url.params.get("start", "0"))
        limit = 2  # small pages, so the connector must follow them
        values = [
            {"id": i, "name": n, "serviceDeskId": SERVICE_DESK, "groupIds": ["1"]}
            for i, n in REQUEST_TYPES[start : start + limit]
        ]
        return httpx.Response(
            200,
            json={
                "size": len(values),
                "start": start,
                "limit": limit,
                "isLastPage": start + limit >= len(REQUEST_TYPES),
                "values": values,
            },
        )

    def create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body.get("serviceDeskId") != SERVICE_DESK:
            return _error(404, "The service desk does not exist")
        if body.get("requestTypeId") not in {i for i, _ in REQUEST_TYPES}:
            return _error(400, "The request type does not exist")
        values = body["requestFieldValues"]
        if any(re.search(r"\s", label) for label in values.get("labels", [])):
            return _error(400, "The label can't contain spaces.")
        issue = _Issue(
            key=f"IT-{next(self._ids)}",
            summary=values["summary"],
            description=values.get("description", ""),
            labels=list(values.get("labels", [])),
        )
        self.issues[issue.key] = issue
        return httpx.Response(201, json=self._dto(issue))

    def search(self, request: httpx.Request) -> httpx.Response:
        match = _JQL_LABEL.match(request.url.params["jql"])
        if not match:
            return httpx.Response(400, json={"errorMessages": ["Error in the JQL Query"], "errors": {}})
        label = re.sub(r"\\(.)", r"\1", match.group(1))
        # Matches labels ignoring case (so a search can return near misses); the connector must match exactly.
        hits = [i for i in self.issues.values() if label.lower() in (x.lower() for x in i.labels)]
        max_results = min(int(request.url.params.get("maxResults", "50")), self.page_size)
        start = int(request.url.params.get("nextPageToken", "0"))
        page = hits[start : start + max_results]
        body: dict[str, Any] = {
            "issues": [
                {
                    "id": i.key.split("-")[1],
                    "key": i.key,
                    "self": f"{BASE}rest/api/3/issue/{i.key}",
                    "fields": {
                        "summary": i.summary,
                        "labels": i.labels,
                        "status": {"name": i.status[0], "statusCategory": {"key": i.status[2]}},
                    },
                }
                for i in page
            ]
        }
        if start + max_results < len(hits):
            body["nextPageToken"] = str(start + max_results)
        return httpx.Response(200, json=body)

    def get(self, request: httpx.Request, key: str) -> httpx.Response:
        issue = self.issues.get(key)
        return httpx.Response(200, json=self._dto(issue)) if issue else _error(404, "Request does not exist")

    def comment(self, request: httpx.Request, key: str) -> httpx.Response:
        issue = self.issues.get(key)
        if not issue:
            return _error(404, "Request does not exist")
        body = json.loads(request.content)
        issue.comments.append(
            {"id": str(len(issue.comments) + 1), "body": body["body"], "public": body["public"]}
        )
        return httpx.Response(201, json=issue.comments[-1])

    def transitions(self, request: httpx.Request, key: str) -> httpx.Response:
        issue = self.issues.get(key)
        if not issue:
            return httpx.Response(404, json={"errorMessages": ["Issue does not exist"], "errors": {}})
        available = (
            []
            if issue.status[1] == "DONE"
            else [
                {
                    "id": tid,
                    "name": name,
                    "hasScreen": False,
                    "to": {"name": to[0], "statusCategory": {"key": to[2], "name": to[0]}},
                }
                for tid, (name, to) in TRANSITIONS.items()
            ]
        )
        return httpx.Response(200, json={"expand": "transitions", "transitions": available})

    def transition(self, request: httpx.Request, key: str) -> httpx.Response:
        issue = self.issues.get(key)
        tid = json.loads(request.content)["transition"]["id"]
        if not issue:
            return httpx.Response(404, json={"errorMessages": ["Issue does not exist"], "errors": {}})
        if issue.status[1] == "DONE" or tid not in TRANSITIONS:
            return httpx.Response(
                400, json={"errorMessages": [f"Transition id '{tid}' is not valid"], "errors": {}}
            )
        issue.status = TRANSITIONS[tid][1]
        return httpx.Response(204)


def _connector(
    fake: FakeJSM,
    sleeps: Sleeps | None = None,
    *,
    password: str = "jira-api-token",
    request_type: str = "New joiner hardware",
) -> JiraServiceManagement:
    client = build_client(
        BASE, auth=("bot@tenure.test", password), transport=httpx.MockTransport(fake.router.handler)
    )
    api = APIClient(
        client,
        source="jira",
        secrets=[password],
        requests_per_second=1000,
        sleep=sleeps if sleeps is not None else Sleeps(),
    )
    return JiraServiceManagement(api, service_desk_id=SERVICE_DESK, request_type=request_type)


class JSMPeer:
    def __init__(self, fake: FakeJSM) -> None:
        self.fake = fake

    async def count_with_reference(self, reference: str) -> int:
        return sum(label_for(reference) in i.labels for i in self.fake.issues.values())

    async def comments(self, ticket_id: str) -> list[str]:
        return [c["body"] for c in self.fake.issues[ticket_id].comments]


@pytest.fixture
def fake() -> FakeJSM:
    return FakeJSM()


@pytest.fixture
async def ticketing(fake: FakeJSM) -> AsyncIterator[JiraServiceManagement]:
    connector = _connector(fake)
    yield connector
    await connector.aclose()


@pytest.fixture
def ticketing_peer(fake: FakeJSM) -> JSMPeer:
    return JSMPeer(fake)


@pytest.fixture
async def wrong_secret_ticketing(fake: FakeJSM) -> AsyncIterator[tuple[JiraServiceManagement, str]]:
    connector = _connector(fake, password="wrong-token-value")
    yield connector, "wrong-token-value"
    await connector.aclose()


class TestJiraContract(TicketingContract):
    """The shared Ticketing contract against the JSM fake."""


async def test_request_is_labelled_and_typed(fake: FakeJSM, ticketing: JiraServiceManagement) -> None:
    """The request goes to the configured desk with the label; its request type is resolved by name."""
    request = new_request()
    ticket = await ticketing.create_ticket(request.model_copy(update={"queue": "access request"}))
    body = json.loads(fake.router.routes["create"].calls.last.request.content)
    assert body["serviceDeskId"] == SERVICE_DESK and body["requestTypeId"] == "12"
    assert body["requestFieldValues"]["labels"] == [request.reference]
    assert ticket.url == f"{BASE}servicedesk/customer/portal/{SERVICE_DESK}/{ticket.id}"


async def test_comment_is_internal(fake: FakeJSM, ticketing: JiraServiceManagement) -> None:
    """Comments are posted with public=false, so the customer is not notified."""
    ticket = await ticketing.create_ticket(new_request())
    await ticketing.add_comment(ticket.id, "asset 4711")
    assert fake.issues[ticket.id].comments == [{"id": "1", "body": "asset 4711", "public": False}]


async def test_declined_is_rejected(fake: FakeJSM, ticketing: JiraServiceManagement) -> None:
    """A request an agent declined (DONE, status Declined) reads as rejected; close leaves it alone."""
    ticket = await ticketing.create_ticket(new_request())
    fake.issues[ticket.id].status = DECLINED
    assert await ticketing.get_status(ticket.id) is TicketStatus.REJECTED
    await ticketing.close_ticket(ticket.id)
    assert fake.issues[ticket.id].status == DECLINED


async def test_close_picks_done_transition_not_decline(
    fake: FakeJSM, ticketing: JiraServiceManagement
) -> None:
    """Closing uses the transition into DONE that is not a decline."""
    ticket = await ticketing.create_ticket(new_request())
    await ticketing.close_ticket(ticket.id)
    assert json.loads(fake.router.routes["transition"].calls.last.request.content) == {
        "transition": {"id": "31"}
    }


async def test_no_closing_transition_is_permanent_error(
    fake: FakeJSM, ticketing: JiraServiceManagement
) -> None:
    """A workflow without a transition into DONE raises a PermanentAPIError listing what is available."""
    ticket = await ticketing.create_ticket(new_request())
    fake.fail_next["transitions"] = [
        lambda r: httpx.Response(
            200,
            json={
                "transitions": [
                    {
                        "id": "11",
                        "name": "Start progress",
                        "to": {"name": "In Progress", "statusCategory": {"key": "indeterminate"}},
                    }
                ]
            },
        )
    ]
    with pytest.raises(PermanentAPIError, match=r"no transition closes .*Start progress"):
        await ticketing.close_ticket(ticket.id)


async def test_unknown_request_type_is_not_found(fake: FakeJSM, ticketing: JiraServiceManagement) -> None:
    """A request type name the desk does not have raises NotFoundError naming it; nothing is created."""
    with pytest.raises(NotFoundError, match="request type 'Coffee machine' does not exist"):
        await ticketing.create_ticket(new_request(queue="Coffee machine"))
    assert fake.issues == {}


async def test_search_429_is_retried_after_retry_after(fake: FakeJSM) -> None:
    """A 429 on the search is retried after the Retry-After the server sent."""
    sleeps = Sleeps()
    connector = _connector(fake, sleeps)
    fake.fail_next["search"] = [lambda r: httpx.Response(429, headers={"Retry-After": "7"}, json={})]
    try:
        assert await connector.find_ticket(new_request().reference) is None
    finally:
        await connector.aclose()
    assert sleeps == [7.0]
    assert fake.router.routes["search"].call_count == 2


async def test_create_429_looks_up_then_creates_once(fake: FakeJSM) -> None:
    """A 429 on the create is retried via create_idempotently: one request exists afterwards."""
    sleeps = Sleeps()
    connector = _connector(fake, sleeps)
    fake.fail_next["create"] = [lambda r: httpx.Response(429, headers={"Retry-After": "2"}, json={})]
    request = new_request()
    try:
        ticket = await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert sleeps == [2.0]
    assert [i.key for i in fake.issues.values() if request.reference in i.labels] == [ticket.id]


async def test_timeout_after_create_does_not_duplicate(fake: FakeJSM) -> None:
    """Jira applied the create; the answer is lost (ReadTimeout): the lookup finds it, no second request."""
    connector = _connector(fake)

    def apply_then_time_out(request: httpx.Request) -> httpx.Response:
        fake.create(request)
        raise httpx.ReadTimeout("lost answer", request=request)

    fake.fail_next["create"] = [apply_then_time_out]
    request = new_request()
    try:
        ticket = await connector.create_ticket(request)
    finally:
        await connector.aclose()
    assert fake.router.routes["create"].call_count == 1
    assert [i.key for i in fake.issues.values() if request.reference in i.labels] == [ticket.id]


async def test_html_error_page_is_response_validation_error(
    fake: FakeJSM, ticketing: JiraServiceManagement
) -> None:
    """A 200 HTML page (a proxy's or the site's maintenance page) raises ResponseValidationError."""
    fake.fail_next["search"] = [
        lambda r: httpx.Response(
            200,
            headers={"Content-Type": "text/html"},
            text="<html><body>Atlassian is down for maintenance</body></html>",
        )
    ]
    with pytest.raises(ResponseValidationError, match="text/html, not JSON"):
        await ticketing.find_ticket(new_request().reference)


async def test_wrong_shape_is_response_validation_error(
    fake: FakeJSM, ticketing: JiraServiceManagement
) -> None:
    """JSON of the wrong shape (issues not a list) raises ResponseValidationError with the pydantic cause."""
    fake.fail_next["search"] = [lambda r: httpx.Response(200, json={"issues": "nope"})]
    with pytest.raises(ResponseValidationError) as info:
        await ticketing.find_ticket(new_request().reference)
    assert info.value.__cause__ is not None


async def test_search_follows_next_page_token(fake: FakeJSM, ticketing: JiraServiceManagement) -> None:
    """find_ticket follows nextPageToken past near-miss label matches until the exact label turns up."""
    request = new_request()
    for n in range(3):
        key = f"IT-{n}"
        fake.issues[key] = _Issue(key=key, summary="x", description="", labels=[request.reference.upper()])
    fake.page_size = 1
    created = await ticketing.create_ticket(request)
    before = fake.router.routes["search"].call_count
    found = await ticketing.find_ticket(request.reference)
    assert found is not None and found.id == created.id
    assert fake.router.routes["search"].call_count - before == 4


def test_jql_string_escapes_quotes_and_backslashes() -> None:
    """JQL literals escape backslash and double quote."""
    assert jql_string('a"b\\c') == '"a\\"b\\\\c"'


def test_label_has_no_whitespace() -> None:
    """Whitespace in a reference becomes underscores in its label."""
    assert label_for("tenure:E 1:lap\ttop") == "tenure:E_1:lap_top"


async def test_factory_builds_working_connector(fake: FakeJSM) -> None:
    """build_ticketing(kind=jira) wires e-mail + API token as Basic auth and the desk and request type."""
    from pydantic import SecretStr

    from tenure.compose import build_ticketing
    from tenure.settings import TicketingSettings

    settings = TicketingSettings(
        kind="jira",
        base_url=BASE.rstrip("/"),
        username="bot@tenure.test",
        token=SecretStr("jira-api-token"),
        service_desk_id=SERVICE_DESK,
        queue="New joiner hardware",
        requests_per_second=1000,
    )
    connector = build_ticketing(settings, transport=httpx.MockTransport(fake.router.handler))
    assert isinstance(connector, JiraServiceManagement)
    try:
        ticket = await connector.create_ticket(new_request())
    finally:
        await connector.aclose()
    assert json.loads(fake.router.routes["create"].calls.last.request.content)["requestTypeId"] == "11"
    assert fake.issues[ticket.id].summary == ticket.title
    assert "jira-api-token" not in repr(connector)


def test_factory_requires_service_desk() -> None:
    """kind=jira without service_desk_id is a clear configuration error."""
    from pydantic import SecretStr

    from tenure.compose import build_ticketing
    from tenure.settings import TicketingSettings

    with pytest.raises(ValueError, match="service_desk_id is required"):
        build_ticketing(TicketingSettings(kind="jira", base_url=BASE, token=SecretStr("t0ken")))
