"""The fault proxy itself, against a real scim2-server: each fault kind does what the harness relies on."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy, FaultRule, normalise_path
from tests.support.scim_server import SCIMServer

pytestmark = pytest.mark.slow

USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "proxy.probe",
    "externalId": "P1",
}


def _users(server: SCIMServer, base_url: str) -> int:
    response = httpx.get(
        f"{base_url}Users", headers=server.headers(), params={"filter": 'externalId eq "P1"'}
    )
    return int(response.json()["totalResults"])


def test_normalise_path_replaces_ids() -> None:
    """Ids (hex, uuid, numbers) become {id}; names and the query are kept out."""
    assert normalise_path("/t1/Users/0f3c9a2b44e1?x=1") == "/t1/Users/{id}"
    assert normalise_path("/rt/REST/2.0/ticket/42") == "/rt/REST/2.0/ticket/{id}"
    assert normalise_path("/Groups/6a1f0d8e-3c2b-4b8e-9a7f-1e2d3c4b5a69") == "/Groups/{id}"


async def test_passes_through_and_counts(scim_server: SCIMServer, fault_proxy: FaultProxy) -> None:
    """Without faults the proxy answers exactly as the peer and counts by method and normalised path."""
    base = fault_proxy.proxied(scim_server.tenant_url())
    async with httpx.AsyncClient(headers=scim_server.headers()) as client:
        created = await client.post(f"{base}Users", json=USER)
        read = await client.get(f"{base}Users/{created.json()['id']}")
    assert created.status_code == 201 and read.json()["userName"] == "proxy.probe"
    assert fault_proxy.count("POST", "/Users") == 1 and fault_proxy.count("GET", "/Users/{id}") == 1
    assert fault_proxy.forwarded_writes == 1


@pytest.mark.parametrize(
    ("kind", "check"),
    [
        ("429", lambda r: r.status_code == 429 and r.headers["Retry-After"] in {"0", "1"}),
        ("503", lambda r: r.status_code == 503),
    ],
    ids=["429", "503"],
)
async def test_answered_faults_do_not_reach_the_peer(
    scim_server: SCIMServer, fault_proxy: FaultProxy, kind: str, check
) -> None:  # type: ignore[no-untyped-def]
    """429 and 503 are answered by the proxy; the write never reaches the peer."""
    tenant = scim_server.tenant_url()
    fault_proxy.rules.append(FaultRule(kind, "POST", times=1))
    async with httpx.AsyncClient(headers=scim_server.headers()) as client:
        response = await client.post(f"{fault_proxy.proxied(tenant)}Users", json=USER)
    assert check(response)
    assert _users(scim_server, tenant) == 0 and fault_proxy.faults[kind] == 1


async def test_reset_fails_the_request_without_applying_it(
    scim_server: SCIMServer, fault_proxy: FaultProxy
) -> None:
    """A reset is a transport error for the client and nothing for the peer."""
    tenant = scim_server.tenant_url()
    fault_proxy.rules.append(FaultRule("reset", "POST", times=1))
    async with httpx.AsyncClient(headers=scim_server.headers()) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{fault_proxy.proxied(tenant)}Users", json=USER)
    assert _users(scim_server, tenant) == 0


async def test_drop_applies_the_write_then_fails(scim_server: SCIMServer, fault_proxy: FaultProxy) -> None:
    """A drop forwards the write (the peer applies it) and then fails the client: a timeout after the write."""
    tenant = scim_server.tenant_url()
    fault_proxy.rules.append(FaultRule("drop", "POST", times=1))
    async with httpx.AsyncClient(headers=scim_server.headers()) as client:
        with pytest.raises(httpx.TransportError):
            await client.post(f"{fault_proxy.proxied(tenant)}Users", json=USER)
    assert _users(scim_server, tenant) == 1


async def test_slow_request_times_out_and_is_not_applied(
    scim_server: SCIMServer, fault_proxy: FaultProxy
) -> None:
    """A slow fault outlasts the client timeout; the abandoned request never reaches the peer."""
    tenant = scim_server.tenant_url()
    fault_proxy.slow_seconds = 1.0
    fault_proxy.rules.append(FaultRule("slow", "POST", times=1))
    async with httpx.AsyncClient(headers=scim_server.headers(), timeout=0.3) as client:
        with pytest.raises(httpx.TimeoutException):
            await client.post(f"{fault_proxy.proxied(tenant)}Users", json=USER)
    assert _users(scim_server, tenant) == 0


def test_seeded_draws_do_not_depend_on_order() -> None:
    """The n-th occurrence of one request draws the same fault whatever else was requested in between."""
    from tests.support.fault_proxy import _Request

    def draws(proxy: FaultProxy, order: list[str]) -> dict[str, list[str | None]]:
        seen: dict[str, list[str | None]] = {}
        for target in order:
            seen.setdefault(target, []).append(
                proxy.choose_fault(_Request("GET", target, "HTTP/1.1", [], b""))
            )
        return seen

    targets = [f"/Users/{n}" for n in range(50)] * 3
    first = draws(FaultProxy(upstream="http://127.0.0.1:1", rate=0.5, seed=3), targets)
    second = draws(FaultProxy(upstream="http://127.0.0.1:1", rate=0.5, seed=3), list(reversed(targets)))
    assert first == second
    assert 0 < sum(k is not None for v in first.values() for k in v) < len(targets)


def test_in_thread_proxy_serves(scim_server: SCIMServer) -> None:
    """The thread mode serves requests (for benchmarks) and adds the configured latency."""
    proxy = FaultProxy(upstream=f"http://127.0.0.1:{scim_server.port}", latency=0.05)
    with proxy.in_thread():
        response = httpx.get(f"{proxy.url}/ServiceProviderConfig", headers=scim_server.headers())
        assert response.status_code == 200 and response.elapsed.total_seconds() >= 0.05
    assert proxy.count("GET") == 1
