"""A fast in-memory SCIM 2.0 service provider, for benchmarks only (scim2-server stays the correctness peer).

    .venv/bin/python bench/fast_scim.py --port 0 --token T [--latency 0.02]

It exists so that a benchmark measures Tenure, not the peer: scim2-server re-validates whole resources with
pydantic on every request (a group of 10,000 members costs it hundreds of milliseconds per PATCH), so on a
shared 2-core machine its CPU hides Tenure's. This one answers from dicts on plain asyncio streams (HTTP/1.1,
keep-alive), with a fixed ``--latency`` slept before every answer (no CPU), and counts every call. Run it as
its own process (``running_fast_scim``) so its CPU is not Tenure's.

What it implements (RFC 7644), and no more than the benchmarks use:

- ``GET /ServiceProviderConfig``: PATCH and Bulk supported (``maxOperations`` 1000, ``maxPayloadSize`` 1 MiB),
  no ETags, filter supported;
- ``/Users``: ``GET`` paged (``startIndex``/``count``, §3.4.2.4) or filtered by ``externalId eq "…"`` /
  ``userName eq "…"`` (case-insensitive, RFC 7643 §4.1.1), ``GET /Users/{id}``, ``POST`` (409 ``uniqueness`` on
  a taken userName), ``PATCH`` (``replace``/``remove``/``add`` of simple and enterprise paths, 204),
  ``DELETE``;
- ``/Groups``: ``GET`` paged with members, ``POST``, ``PATCH`` ``add`` of ``members`` values (an unknown user
  id is 400 ``invalidValue``, as strict providers answer) and ``remove`` of ``members[value eq "…" or …]``
  (no match: 400 ``noTarget``, §3.5.2.2);
- ``POST /Bulk`` (§3.7) of the above, ``bulkId:`` references resolved in ``data``;
- ``GET /_stats`` (calls per method and route, not counted) and ``POST /_reset`` (zero the counts).

Errors use the SCIM Error schema (§3.12). Authorization is ``Bearer <token>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
REASONS = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
           404: "Not Found", 409: "Conflict"}  # fmt: skip
_EQ = re.compile(r'^\s*(\w+)\s+eq\s+("(?:[^"\\]|\\.)*")\s*$', re.IGNORECASE)
_MEMBER_VALUE = re.compile(r'value\s+eq\s+("(?:[^"\\]|\\.)*")', re.IGNORECASE)


class SCIMError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


class Store:
    """Users and groups as plain dicts, indexed by externalId and lower-cased userName."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.by_external: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        self.groups: dict[str, dict[str, Any]] = {}  # id -> {"displayName", "members": dict[str, None]}

    # users
    def create_user(self, data: dict[str, Any]) -> dict[str, Any]:
        name = str(data.get("userName") or "")
        if not name:
            raise SCIMError(400, "userName is required", "invalidValue")
        if name.lower() in self.by_name:
            raise SCIMError(409, "userName is taken", "uniqueness")
        user = {k: v for k, v in data.items() if k not in ("id", "meta")}
        user["id"] = uuid.uuid4().hex
        user["meta"] = {"resourceType": "User"}
        self.users[user["id"]] = user
        self._index(user)
        return user

    def _index(self, user: dict[str, Any]) -> None:
        self.by_name[str(user.get("userName") or "").lower()] = user["id"]
        if user.get("externalId"):
            self.by_external[str(user["externalId"])] = user["id"]

    def _unindex(self, user: dict[str, Any]) -> None:
        self.by_name.pop(str(user.get("userName") or "").lower(), None)
        if user.get("externalId"):
            self.by_external.pop(str(user["externalId"]), None)

    def user(self, user_id: str) -> dict[str, Any]:
        if user_id not in self.users:
            raise SCIMError(404, "no such user")
        return self.users[user_id]

    def patch_user(self, user_id: str, operations: list[dict[str, Any]]) -> None:
        user = self.user(user_id)
        self._unindex(user)
        try:
            for op in operations:
                kind = str(op.get("op", "")).lower()
                path = str(op.get("path") or "")
                container, key = _locate(user, path)
                if kind == "remove":
                    container.pop(key, None)
                elif kind in ("replace", "add"):
                    container[key] = op.get("value")
                else:
                    raise SCIMError(400, f"unknown op {kind!r}", "invalidSyntax")
        finally:
            self._index(user)

    def delete_user(self, user_id: str) -> None:
        user = self.users.pop(user_id, None)
        if user is None:
            raise SCIMError(404, "no such user")
        self._unindex(user)
        for group in self.groups.values():
            group["members"].pop(user_id, None)

    def find(self, filter_: str) -> list[dict[str, Any]]:
        match = _EQ.match(filter_)
        if not match:
            raise SCIMError(400, "only 'attr eq \"value\"' filters", "invalidFilter")
        attr, value = match.group(1).lower(), json.loads(match.group(2))
        if attr == "externalid":
            found = self.by_external.get(value)
        elif attr == "username":
            found = self.by_name.get(str(value).lower())
        else:
            raise SCIMError(400, f"cannot filter on {attr}", "invalidFilter")
        return [self.users[found]] if found else []

    # groups
    def create_group(self, data: dict[str, Any]) -> dict[str, Any]:
        members = {str(m["value"]): None for m in data.get("members") or []}
        unknown = [m for m in members if m not in self.users]
        if unknown:
            raise SCIMError(400, "unknown member", "invalidValue")
        group_id = uuid.uuid4().hex
        self.groups[group_id] = {"displayName": data.get("displayName"), "members": members}
        return self.group_json(group_id)

    def group_json(self, group_id: str) -> dict[str, Any]:
        group = self.groups[group_id]
        return {
            "schemas": [GROUP],
            "id": group_id,
            "displayName": group["displayName"],
            "members": [{"value": m} for m in group["members"]],
            "meta": {"resourceType": "Group"},
        }

    def patch_group(self, group_id: str, operations: list[dict[str, Any]]) -> None:
        if group_id not in self.groups:
            raise SCIMError(404, "no such group")
        members: dict[str, None] = self.groups[group_id]["members"]
        for op in operations:  # all or nothing (RFC 7644 §3.5.2): check first, then write
            kind, path = str(op.get("op", "")).lower(), str(op.get("path") or "")
            if kind == "add" and path == "members":
                if any(str(v.get("value")) not in self.users for v in op.get("value") or []):
                    raise SCIMError(400, "a member value names no user", "invalidValue")
            elif kind == "remove" and path.startswith("members["):
                wanted = {json.loads(v) for v in _MEMBER_VALUE.findall(path)}
                if not wanted & members.keys():
                    raise SCIMError(400, "no member matched", "noTarget")
            else:
                raise SCIMError(400, f"unsupported group operation {kind} {path}", "invalidPath")
        for op in operations:
            if str(op.get("op", "")).lower() == "add":
                for value in op.get("value") or []:
                    members[str(value["value"])] = None
            else:
                for value in _MEMBER_VALUE.findall(str(op["path"])):
                    members.pop(json.loads(value), None)


def _locate(user: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """The dict holding ``path`` in ``user`` (created on the way) and the key in it."""
    if path.lower().startswith("urn:"):
        schema, _, attribute = path.rpartition(":")
        container = user.setdefault(schema, {})
        if schema not in user.get("schemas", []):
            user.setdefault("schemas", [USER]).append(schema)
        return container, attribute
    head, _, tail = path.partition(".")
    if tail:
        return user.setdefault(head, {}), tail
    if not head:
        raise SCIMError(400, "a path is required", "noTarget")
    return user, head


def _page(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    return {"schemas": [LIST], "totalResults": total, "startIndex": start, "itemsPerPage": len(resources),
            "Resources": resources}  # fmt: skip


@dataclass
class Answer:
    status: int
    body: Any = None
    location: str | None = None


class FastSCIM:
    def __init__(self, token: str, latency: float) -> None:
        self.token, self.latency = token, latency
        self.store = Store()
        self.calls: Counter[str] = Counter()
        self.config = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": True},
            "bulk": {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1_048_576},
            "filter": {"supported": True, "maxResults": 1000},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [],
        }

    def route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Answer:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if parts and parts[0] == "v2":
            parts = parts[1:]
        if not parts:
            raise SCIMError(404, "no such endpoint")
        head, rest = parts[0], parts[1:]
        store = self.store
        if head == "ServiceProviderConfig" and method == "GET":
            return Answer(200, self.config)
        if head == "Users":
            if not rest and method == "GET":
                if "filter" in query:
                    found = store.find(query["filter"][0])
                    return Answer(200, _page(found, len(found), 1))
                start = max(1, int(query.get("startIndex", ["1"])[0]))
                count = max(0, int(query.get("count", ["100"])[0]))
                ids = list(store.users)[start - 1 : start - 1 + count]
                return Answer(200, _page([store.users[i] for i in ids], len(store.users), start))
            if not rest and method == "POST":
                user = store.create_user(body)
                return Answer(201, user, f"/Users/{user['id']}")
            if len(rest) == 1:
                if method == "GET":
                    return Answer(200, store.user(rest[0]))
                if method == "PATCH":
                    store.patch_user(rest[0], body.get("Operations") or [])
                    return Answer(204)
                if method == "DELETE":
                    store.delete_user(rest[0])
                    return Answer(204)
        if head == "Groups":
            if not rest and method == "GET":
                start = max(1, int(query.get("startIndex", ["1"])[0]))
                count = max(0, int(query.get("count", ["100"])[0]))
                ids = list(store.groups)[start - 1 : start - 1 + count]
                return Answer(200, _page([store.group_json(i) for i in ids], len(store.groups), start))
            if not rest and method == "POST":
                group = store.create_group(body)
                return Answer(201, group, f"/Groups/{group['id']}")
            if len(rest) == 1 and method == "GET":
                if rest[0] not in store.groups:
                    raise SCIMError(404, "no such group")
                return Answer(200, store.group_json(rest[0]))
            if len(rest) == 1 and method == "PATCH":
                store.patch_group(rest[0], body.get("Operations") or [])
                return Answer(204)
        if head == "Bulk" and method == "POST":
            return Answer(200, self.bulk(body))
        raise SCIMError(404, f"no such endpoint {method} {path}")

    def bulk(self, body: dict[str, Any]) -> dict[str, Any]:
        ids: dict[str, str] = {}
        answers = []
        for op in body.get("Operations") or []:
            data = _resolve_bulk_ids(op.get("data"), ids)
            path = str(op.get("path") or "")
            try:
                answer = self.route(str(op.get("method", "")).upper(), path, {}, data)
                result: dict[str, Any] = {"method": op.get("method"), "status": str(answer.status)}
                if answer.location:
                    result["location"] = answer.location
                    if op.get("bulkId"):
                        ids[str(op["bulkId"])] = answer.location.rsplit("/", 1)[-1]
            except SCIMError as exc:
                result = {"method": op.get("method"), "status": str(exc.status), "response": exc.body()}
            if op.get("bulkId"):
                result["bulkId"] = op["bulkId"]
            answers.append(result)
        return {"schemas": [BULK_RESPONSE], "Operations": answers}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                length = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(length) if length else b""
                status, payload = self.answer(method, target, headers, raw)
                if self.latency and not target.startswith("/_"):
                    await asyncio.sleep(self.latency)
                out = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}", f"Content-Length: {len(payload)}"]
                if payload:
                    out.append("Content-Type: application/scim+json")
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
        writer.close()

    def answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, bytes]:
        split = urlsplit(target)
        if split.path == "/_stats":
            return 200, json.dumps(dict(self.calls)).encode()
        if split.path == "/_reset":
            self.calls.clear()
            return 204, b""
        route = re.sub(r"/[0-9a-f]{32}(?=/|$)", "/{id}", split.path)
        self.calls[f"{method} {route}{'?filter' if 'filter=' in split.query else ''}"] += 1
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, json.dumps(SCIMError(401, "bad token").body()).encode()
        try:
            body = json.loads(raw) if raw else None
            answer = self.route(method, split.path, parse_qs(split.query), body)
        except SCIMError as exc:
            return exc.status, json.dumps(exc.body()).encode()
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return 400, json.dumps(SCIMError(400, f"bad request: {type(exc).__name__}").body()).encode()
        return answer.status, (b"" if answer.body is None else json.dumps(answer.body).encode())


def _resolve_bulk_ids(data: Any, ids: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {k: _resolve_bulk_ids(v, ids) for k, v in data.items()}
    if isinstance(data, list):
        return [_resolve_bulk_ids(v, ids) for v in data]
    if isinstance(data, str) and data.startswith("bulkId:"):
        return ids.get(data.removeprefix("bulkId:"), data)
    return data


async def _main(port: int, token: str, latency: float) -> None:
    app = FastSCIM(token, latency)
    server = await asyncio.start_server(app.serve, "127.0.0.1", port, backlog=512)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


@dataclass
class FastSCIMProcess:
    """A running fast peer (its own process): ``base_url``, ``token``, ``pid``; :meth:`stats` reads its counts."""

    base_url: str
    token: str
    pid: int

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stats(self) -> Counter[str]:
        import httpx

        return Counter(httpx.get(f"{self.base_url}_stats", timeout=30).json())

    def reset(self) -> None:
        import httpx

        httpx.post(f"{self.base_url}_reset", timeout=30)


@contextlib.contextmanager
def running_fast_scim(latency: float = 0.0, token: str = "fast-bench-token") -> Iterator[FastSCIMProcess]:
    """Start the fast peer as a child process on a free port; stop it by its PID at the end."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "--port", "0", "--token", token, "--latency", str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("listening "):
            raise RuntimeError(f"fast SCIM peer did not start: {line!r}")
        yield FastSCIMProcess(f"http://127.0.0.1:{int(line.split()[1])}/", token, child.pid)
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(child.pid, 9)
            child.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept before every answer")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args.port, args.token, args.latency))
