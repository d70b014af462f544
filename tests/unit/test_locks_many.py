"""A sync batch holds all its employees' locks at once; one held elsewhere is refused alone, in time."""

from __future__ import annotations

from pathlib import Path

from engine.locks import Locks


async def test_hold_many_refuses_only_the_locks_held_elsewhere(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    webhook = Locks(url, holder="flow-run:webhook", timeout=0.2)
    batch = Locks(url, holder="flow-run:sync", timeout=0.2)
    async with webhook.hold("E2"), batch.hold_many(["E3", "E1", "E2"]) as refused:
        assert set(refused) == {"E2"}
        assert "flow-run:webhook" in str(refused["E2"]) and "nothing was changed" in str(refused["E2"])
        async with webhook.hold_many(["E1"]) as blocked:  # the batch holds E1 and E3 meanwhile
            assert set(blocked) == {"E1"}
    async with webhook.hold_many(["E1", "E2", "E3"]) as refused:  # all released at the end of the block
        assert refused == {}
