"""A sync applies two batches at once, but never a batch of a later manager wave beside an earlier one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from engine.sync import BATCHES_IN_FLIGHT, SyncEngine


def _stub(waves_by_batch: list[list[int]]) -> Any:
    return SimpleNamespace(
        _prepared=True,
        batches=[[SimpleNamespace(wave=w) for w in waves] for waves in waves_by_batch],
        report=SimpleNamespace(phase_seconds={}),
        finish=lambda: "finished",
        apply_batch=None,
    )


async def _run(waves_by_batch: list[list[int]]) -> tuple[list[tuple[str, int]], list[int], int]:
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
        _stub(waves_by_batch), batch_runner=runner, on_progress=lambda done, total: progress.append(done)
    )
    assert result == "finished"
    return events, progress, peak


async def test_batches_of_one_wave_overlap_two_at_a_time() -> None:
    events, progress, peak = await _run([[1, 1], [1, 1], [1, 1], [1, 1]])
    assert peak == BATCHES_IN_FLIGHT == 2
    assert [n for kind, n in events if kind == "start"] == [0, 1, 2, 3]
    assert progress == [0, 2, 4, 6, 8]  # in batch order, whichever finished first


async def test_a_later_wave_waits_for_the_batches_before_it() -> None:
    events, _, _ = await _run([[0, 0], [0, 1], [1, 1], [1, 1]])
    position = {event: i for i, event in enumerate(events)}
    # batch 1 holds wave 1, whose joiners may report to batch 0's wave 0: it starts after batch 0 ends
    assert position[("start", 1)] > position[("end", 0)]
    # batch 2 (wave 1) beside batch 1 (lowest wave 0) would be the same risk: it waits too
    assert position[("start", 2)] > position[("end", 1)]
    # batch 3 (wave 1) beside batch 2 (wave 1): one wave, so they overlap
    assert position[("start", 3)] < position[("end", 2)]


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
        await SyncEngine.run(_stub([[1], [1], [1]]), batch_runner=runner)
    except RuntimeError as exc:
        assert str(exc) == "boom"
    else:  # pragma: no cover - the failure must surface
        raise AssertionError("the failed batch did not raise")
    assert cancelled == [1]
