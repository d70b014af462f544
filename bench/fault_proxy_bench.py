"""Benchmark a full sync through the proxy (``tests/support/fault_proxy.py``) with added latency per request, the
way a remote IdP behaves, against a naive sequential script. Figures are printed, never asserted.

    .venv/bin/python bench/fault_proxy_bench.py [N] [--latency 0.02] [--drift 0.01] [--naive-sample 500]

1. Seeds N employees' accounts and memberships into a fresh scim2-server (``bench/sync_bench.py: seed_idp``,
   directly, no latency), applies ``--drift`` to the CSV.
2. Full sync through the proxy (its own thread) adding ``--latency`` to every request: calls counted by the
   proxy vs the minimum (pages read + one write per change), wall time vs the bound
   ``calls × latency ÷ concurrency``.
3. The same sync again without drift: writes (0 expected).
4. A naive sequential script through the same proxy: one GET (filter by externalId) and one PUT per employee,
   run over ``--naive-sample`` employees and extrapolated linearly to N; the ratio to the sync's wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from sync_bench import drift, engine, make_idp, seed_idp  # noqa: E402

from lifecycle.policy import load_policy  # noqa: E402
from tests.support.fault_proxy import FaultProxy  # noqa: E402
from tests.support.hris_data import fake_people, write_csv  # noqa: E402
from tests.support.scim_server import running_scim_server  # noqa: E402

CONCURRENCY = 16  # make_idp's max_concurrency


async def naive(base_url: str, token: str, employee_ids: list[str]) -> float:
    """One GET by externalId and one PUT of the same user per employee, sequentially; seconds taken."""
    started = time.perf_counter()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for employee_id in employee_ids:
            found = (
                await client.get(f"{base_url}Users", params={"filter": f'externalId eq "{employee_id}"'})
            ).json()
            for user in found.get("Resources", [])[:1]:
                user.pop("meta", None)
                await client.put(f"{base_url}Users/{user['id']}", json=user)
    return time.perf_counter() - started


async def main(count: int, latency: float, fraction: float, sample: int, seed: int) -> int:
    policy = load_policy(ROOT / "examples" / "policy.yaml")
    print(
        f"machine: {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB RAM; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; N={count}, latency {latency * 1000:.0f} ms, drift {fraction:.1%}"
    )
    with tempfile.TemporaryDirectory(prefix="tenure-bench-") as tmp, running_scim_server() as server:
        csv_path, database_url = Path(tmp) / "hris.csv", f"sqlite:///{tmp}/tenure.db"
        rows = fake_people(count, seed=seed, today=datetime.now(UTC).date())
        write_csv(csv_path, rows)
        base_url = server.tenant_url("bench")
        started = time.perf_counter()
        seeded = await seed_idp(server, base_url, csv_path, policy, database_url)
        print(
            f"seeded {seeded['accounts']} accounts, {seeded['memberships']} memberships in "
            f"{time.perf_counter() - started:.1f} s"
        )
        kinds = drift(rows, fraction, seed)
        write_csv(csv_path, rows)
        print(f"drift: {kinds}")

        proxy = FaultProxy(upstream=f"http://127.0.0.1:{server.port}", latency=latency)
        with proxy.in_thread():
            idp = make_idp(proxy.proxied(base_url), server.token)
            try:
                report = await engine(csv_path, idp, policy, database_url).run()
                calls = sum(proxy.requests.values())
                minimum = report.pages_read + report.changes
                bound = calls * latency / CONCURRENCY
                print("\n== full sync with drift, through the proxy")
                print(
                    f"   wall time       {report.duration_seconds:9.1f} s   bound calls×latency÷concurrency "
                    f"{bound:.1f} s (read phase is sequential paging: {report.pages_read} pages × latency = "
                    f"{report.pages_read * latency:.1f} s)"
                )
                print(
                    f"   API calls       {calls:9d}   minimum (pages + one write per change) {minimum}; "
                    f"writes {proxy.forwarded_writes} for {report.changes} changes"
                )
                print(f"   by endpoint     {dict(sorted(proxy.requests.items()))}")
                print(f"   failed          {report.failed:9d}")
                sync_seconds = report.duration_seconds
                proxy.reset_counts()
                steady = await engine(csv_path, idp, policy, database_url).run()
                print("\n== full sync again, no drift")
                print(
                    f"   wall time       {steady.duration_seconds:9.1f} s   API calls {sum(proxy.requests.values())}"
                    f" (pages {steady.pages_read}); writes {proxy.forwarded_writes}"
                )
            finally:
                await idp.aclose()
            ids = [r["employee_id"] for r in rows[:sample]]
            naive_seconds = await naive(proxy.proxied(base_url), server.token, ids)
            per = naive_seconds / max(1, len(ids))
            print(f"\n== naive sequential script (GET + PUT per employee), {len(ids)} employees")
            print(
                f"   wall time       {naive_seconds:9.1f} s   → {per * 1000:.1f} ms per employee, "
                f"{per * len(rows):.0f} s extrapolated to {len(rows)}; the sync is "
                f"{per * len(rows) / sync_seconds:.1f}× faster"
            )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--drift", type=float, default=0.01)
    parser.add_argument("--naive-sample", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.count, args.latency, args.drift, args.naive_sample, args.seed)))
