"""Membership on a provider without PATCH: the group is read and PUT back (RFC 7644 §3.5.1), each member as the
provider described it, the new one added, and If-Match sent when the provider has ETags."""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import SecretStr

from tenure.compose import build_identity_provider
from tenure.settings import IdPSettings

GROUP = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    "id": "g1",
    "displayName": "all-staff",
    "members": [{"value": "u1", "display": "Ada Lovelace", "type": "User"}],
    "meta": {"version": 'W/"3"'},
}
CONFIG = {"patch": {"supported": False}, "etag": {"supported": True}, "bulk": {"supported": False}}


async def test_a_member_added_without_patch_keeps_the_others_as_described() -> None:
    puts: list[tuple[dict[str, Any], str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/ServiceProviderConfig"):
            return httpx.Response(200, json=CONFIG)
        if request.method == "GET":
            return httpx.Response(200, json=GROUP)
        puts.append((json.loads(request.content), request.headers.get("If-Match")))
        return httpx.Response(200, json=GROUP)

    idp = build_identity_provider(
        IdPSettings(kind="scim", base_url="http://127.0.0.1:9/", token=SecretStr("t")),
        transport=httpx.MockTransport(answer),
    )
    try:
        await idp.add_member("g1", "u2")
    finally:
        await idp.aclose()
    [(body, if_match)] = puts
    assert body["members"] == [{"value": "u1", "display": "Ada Lovelace", "type": "User"}, {"value": "u2"}]
    assert (body["id"], body["displayName"], if_match) == ("g1", "all-staff", 'W/"3"')
