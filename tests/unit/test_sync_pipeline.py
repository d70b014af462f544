"""A sync applies two batches at once, but never a batch beside the one creating its employees' managers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from engine.sync import BATCHES_IN_FLIGHT, SyncEngine

Batches = list[list[tuple[str, str | None]]]  # per batch: (employee id, the manager whose account it awaits)


def _stub(batches: Batches) -> Any:
    return SimpleNamespace(
        _prepared=True,
        batches=[
            [SimpleNamespace(plan=SimpleNamespace(employee_id=e), awaits=m) for e, m in batch]
            for batch in batches
        ],
        report=SimpleNamespace(phase_seconds={}),
        finish=lambda: "finished",
        apply_batch=None,
    )


async def _run(batches: Batches) -> tuple[list[tuple[str, int]], list[int], int]:
    events: list[tuple[str, int]] = []
    progress: list[int] = []
    running = peak = 0

    async def runner(number: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        events.append(("start", number))
        await asyncio.sleep(0.01 * (3 - number % 3))  # later batches may finish first
        events.append(("end", number))
        running -= 1

    result = await SyncEngine.run(
        _stub(batches), batch_runner=runner, on_progress=lambda done, total: progress.append(done)
    )
    assert result == "finished"
    return events, progress, peak


async def test_independent_batches_overlap_two_at_a_time() -> None:
    events, progress, peak = await _run([[(f"E{b}{i}", None) for i in range(2)] for b in range(4)])
    assert peak == BATCHES_IN_FLIGHT == 2
    assert [n for kind, n in events if kind == "start"] == [0, 1, 2, 3]
    assert progress == [0, 2, 4, 6, 8]  # in batch order, whichever finished first


async def test_a_batch_waits_for_the_batch_creating_its_managers_and_no_other() -> None:
    events, progress, _ = await _run(
        [
            [("M1", None), ("M2", None)],
            [("R1", "M1"), ("R2", None)],  # R1's manager is created by batch 0
            [("R3", "M2")],  # batch 0 is done by the time batch 2 may start: no wait beyond the pair limit
            [("R4", "R1"), ("R5", "M2")],  # R4's manager is created by batch 1
        ]
    )
    position = {event: i for i, event in enumerate(events)}
    assert position[("start", 1)] > position[("end", 0)]
    assert position[("start", 2)] < position[("end", 1)]  # a later wave, yet beside batch 1
    assert position[("start", 3)] > position[("end", 1)]
    assert progress == [0, 2, 4, 5, 7]


async def test_a_failed_batch_cancels_the_one_beside_it_and_raises() -> None:
    cancelled: list[int] = []

    async def runner(number: int) -> None:
        if number == 0:
            await asyncio.sleep(0)
            raise RuntimeError("boom")
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(number)
            raise

    try:
        await SyncEngine.run(_stub([[("A", None)], [("B", None)], [("C", None)]]), batch_runner=runner)
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:  # pragma: no cover - the failure must surface
        raise AssertionError("the failed batch did not raise")
    assert cancelled == [1]
