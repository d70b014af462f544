"""Microsoft Graph call budget at connector level, against the stateful Graph fake (tests/support/graph_fake.py).

A tenant of N users (default 5,000) in G groups; then:

1. full read: ``iter_users`` (``$top=999``) and ``list_groups`` (members paged at 999), counting HTTP calls;
2. 1% drift: each mover changes group (one remove + one add) and title, written with the bulk methods
   (``change_members``, ``update_users``): ``$batch`` calls vs ⌈changes/20⌉;
3. the next night: ``iter_user_changes`` from the delta link taken before the full read, plus ``get_users`` for the
   changed ids.

Prints the figures (no assertions; tests/contract/test_idp_entra.py asserts the same budget at 5,000). The fake runs
in-process behind ``httpx.MockTransport``: times are this machine's CPU for both sides, not network latency.

    .venv/bin/python bench/graph_bench.py [--users 5000] [--groups 10] [--drift 0.01]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.idp.entra import EntraIdentityProvider, MembershipChange  # noqa: E402
from tenure.compose import build_identity_provider  # noqa: E402
from tenure.settings import IdPSettings  # noqa: E402
from tests.support.graph_fake import CLIENT_ID, CLIENT_SECRET, TENANT_ID, FakeGraph  # noqa: E402


async def run(users: int, groups: int, drift: float) -> None:
    graph = FakeGraph()
    seeded = [
        graph.add_user(userPrincipalName=f"u{n}@example.com", employeeId=f"E{n:06d}", displayName=f"User {n}")
        for n in range(users)
    ]
    teams = [graph.add_group(f"team-{n}") for n in range(groups)]
    for n, user in enumerate(seeded):
        graph.members[teams[n % groups]["id"]].append(user["id"])
    settings = IdPSettings(
        kind="entra",
        tenant_id=TENANT_ID,
        client_id=CLIENT_ID,
        client_secret=SecretStr(CLIENT_SECRET),
        requests_per_second=10_000,
    )
    idp = build_identity_provider(settings, transport=httpx.MockTransport(graph.handle))
    assert isinstance(idp, EntraIdentityProvider)
    async with idp:
        link = await idp.latest_user_delta_link()
        mark, started = len(graph.http_calls), time.perf_counter()
        accounts = [a async for page in idp.iter_users() for a in page]
        listed = await idp.list_groups()
        read_time = time.perf_counter() - started
        read = graph.http_calls[mark:]
        user_pages = sum(1 for m, p in read if (m, p) == ("GET", "users"))
        print(f"tenant: {users} users, {groups} groups, {sum(len(g.member_ids) for g in listed)} memberships")
        print(
            f"full read: {len(accounts)} accounts in {user_pages} user pages (bound ⌈{users}/999⌉ = "
            f"{math.ceil(users / 999)}) + {len(read) - user_pages} group pages "
            f"(1 + {groups} × ⌈{users // groups}/999⌉ = {1 + groups * math.ceil(users / groups / 999)}), "
            f"{read_time:.2f} s"
        )

        movers = seeded[: max(1, int(users * drift))]
        changes = [MembershipChange("remove", teams[n % groups]["id"], u["id"]) for n, u in enumerate(movers)]
        changes += [
            MembershipChange("add", teams[(n + 1) % groups]["id"], u["id"]) for n, u in enumerate(movers)
        ]
        mark, started = len(graph.http_calls), time.perf_counter()
        failed = await idp.change_members(changes)
        failed_users = await idp.update_users([(u["id"], {"title": "Moved"}) for u in movers])
        write_time = time.perf_counter() - started
        written = graph.http_calls[mark:]
        batches = sum(1 for m, p in written if (m, p) == ("POST", "$batch"))
        total = len(changes) + len(movers)
        print(
            f"drift {drift:.0%}: {len(movers)} movers → {len(changes)} membership changes + {len(movers)} user "
            f"updates = {total} writes in {batches} $batch calls (bound ⌈{len(changes)}/20⌉ + "
            f"⌈{len(movers)}/20⌉ = {math.ceil(len(changes) / 20) + math.ceil(len(movers) / 20)}), "
            f"other calls {len(written) - batches}, failed {len(failed) + len(failed_users)}, {write_time:.2f} s"
        )

        mark, started = len(graph.http_calls), time.perf_counter()
        pages = [page async for page in idp.iter_user_changes(link)]
        changed = [i for p in pages for i in p.changed_ids]
        fresh = await idp.get_users(changed)
        delta_time = time.perf_counter() - started
        delta = graph.http_calls[mark:]
        print(
            f"next night: {len(pages)} delta page(s) with {len(changed)} changed users, re-read in "
            f"{sum(1 for m, p in delta if p == '$batch')} $batch calls ({len(fresh)} accounts), "
            f"{len(delta)} calls in all instead of {user_pages}+ for a full read, {delta_time:.2f} s"
        )
        print(f"token requests: {graph.token_requests}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--drift", type=float, default=0.01)
    args = parser.parse_args()
    asyncio.run(run(args.users, args.groups, args.drift))


if __name__ == "__main__":
    main()
