"""A tiny Request-Tracker-shaped ticketing API, for the demo on machines without Request Tracker 5.

It speaks the subset of RT's REST2 (``/rt/REST/2.0``, RT 5.0 ``RT::REST2``) that
:class:`connectors.ticketing.rt.RTTicketing` uses, so the real connector runs unchanged against it:

- ``GET  queue/{name}``                         -> 200 ``{"id", "Name"}`` or 404
- ``POST ticket``                               -> 201 ``{"id", "type": "ticket", "_url"}``
- ``GET  tickets?query=Subject STARTSWITH '…'`` -> ``{"items": [...], "page", "pages", "count", "total"}``
- ``GET  ticket/{id}`` / ``PUT ticket/{id}`` (Status) / ``POST ticket/{id}/comment``

HTTP Basic auth as RT does (401 otherwise). Tickets live in memory. Run it with
``python -m sandbox.ticketing --port 8043 --user root --password …``.
Where RT 5 is installed (``scripts/install-peers.sh``), the demo uses the real RT instead.
"""

from __future__ import annotations

import argparse
import base64
import re
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["create_app", "main"]

STATUSES = {"new", "open", "stalled", "resolved", "rejected", "deleted"}
_STARTSWITH = re.compile(r"^\s*Subject\s+STARTSWITH\s+'((?:[^'\\]|\\.)*)'\s*$", re.IGNORECASE)


def _unescape(literal: str) -> str:
    return re.sub(r"\\(.)", r"\1", literal)


def create_app(
    *, user: str, password: str, queues: tuple[str, ...] = ("General",), web_path: str = "/rt"
) -> Starlette:
    """The ASGI app; ``tickets`` (a list of dicts) is exposed as ``app.state.tickets`` for the demo."""
    tickets: dict[int, dict[str, Any]] = {}
    root = f"{web_path}/REST/2.0"

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            name, _, given = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(name, user) and secrets.compare_digest(given, password)

    def guard(handler):  # type: ignore[no-untyped-def]
        async def wrapped(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"message": "Unauthorized"}, status_code=401)
            return await handler(request)

        return wrapped

    def ticket_or_404(request: Request) -> dict[str, Any] | Response:
        try:
            ticket = tickets.get(int(request.path_params["id"]))
        except ValueError:
            ticket = None
        return ticket if ticket is not None else JSONResponse({"message": "Resource does not exist"}, 404)

    async def get_queue(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in queues:
            return JSONResponse({"message": "Resource does not exist"}, status_code=404)
        return JSONResponse({"id": queues.index(name) + 1, "Name": name})

    async def create_ticket(request: Request) -> Response:
        body = await request.json()
        if body.get("Queue") not in queues:
            return JSONResponse({"message": "No permission to create tickets in the queue"}, status_code=403)
        ticket_id = len(tickets) + 1
        tickets[ticket_id] = {
            "id": ticket_id,
            "Queue": body["Queue"],
            "Subject": str(body.get("Subject", "")),
            "Status": "new",
            "Content": str(body.get("Content", "")),
            "Comments": [],
        }
        return JSONResponse(
            {"id": ticket_id, "type": "ticket", "_url": f"{request.base_url}{root[1:]}/ticket/{ticket_id}"},
            status_code=201,
        )

    async def search(request: Request) -> Response:
        match = _STARTSWITH.match(request.query_params.get("query", ""))
        if match is None:
            return JSONResponse({"message": "this sandbox only searches Subject STARTSWITH '…'"}, 400)
        prefix = _unescape(match.group(1)).lower()
        items = [
            {"id": t["id"], "type": "ticket", "Subject": t["Subject"], "Status": t["Status"]}
            for t in sorted(tickets.values(), key=lambda t: t["id"])
            if t["Subject"].lower().startswith(prefix)
        ]
        return JSONResponse(
            {
                "items": items,
                "page": 1,
                "pages": 1 if items else 0,
                "per_page": 100,
                "count": len(items),
                "total": len(items),
            }
        )

    async def get_ticket(request: Request) -> Response:
        ticket = ticket_or_404(request)
        if isinstance(ticket, Response):
            return ticket
        return JSONResponse({k: v for k, v in ticket.items() if k != "Comments"})

    async def update_ticket(request: Request) -> Response:
        ticket = ticket_or_404(request)
        if isinstance(ticket, Response):
            return ticket
        status = (await request.json()).get("Status")
        if status is not None:
            if status not in STATUSES:
                return JSONResponse({"message": f"Status '{status}' isn't a valid status"}, status_code=400)
            ticket["Status"] = status
        return JSONResponse([f"Ticket {ticket['id']}: Status changed"])

    async def comment(request: Request) -> Response:
        ticket = ticket_or_404(request)
        if isinstance(ticket, Response):
            return ticket
        ticket["Comments"].append(str((await request.json()).get("Content", "")))
        return JSONResponse(["Comments added"], status_code=201)

    app = Starlette(
        routes=[
            Route(f"{root}/queue/{{name}}", guard(get_queue), methods=["GET"]),
            Route(f"{root}/ticket", guard(create_ticket), methods=["POST"]),
            Route(f"{root}/tickets", guard(search), methods=["GET"]),
            Route(f"{root}/ticket/{{id}}", guard(get_ticket), methods=["GET"]),
            Route(f"{root}/ticket/{{id}}", guard(update_ticket), methods=["PUT"]),
            Route(f"{root}/ticket/{{id}}/comment", guard(comment), methods=["POST"]),
        ]
    )
    app.state.tickets = tickets
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the sandbox ticketing API on 127.0.0.1."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8043)
    parser.add_argument("--user", default="root")
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(user=args.user, password=args.password),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
