"""The audit checkpoint of a run (``tenure.checkpoint``) published in Prefect too: a second place, outside the
audit database and the checkpoint file, where the chain's signed end can be found."""

from __future__ import annotations

from prefect.artifacts import acreate_markdown_artifact
from prefect.logging import get_run_logger

from tenure.checkpoint import Checkpoint

__all__ = ["ARTIFACT_KEY", "publish_checkpoint"]

ARTIFACT_KEY = "tenure-audit-checkpoint"


async def publish_checkpoint(checkpoint: Checkpoint | None) -> None:
    """The checkpoint (None: none was written, no key) as the run's markdown artifact ``tenure-audit-checkpoint``;
    a failure is a warning (the file holds the checkpoint, the artifact a copy)."""
    if checkpoint is None:
        return
    try:
        await acreate_markdown_artifact(
            markdown=f"Audit chain end: seq {checkpoint.seq}, head `{checkpoint.head}`, at {checkpoint.at}.\n\n"
            f"```json\n{checkpoint.line()}\n```\n",
            key=ARTIFACT_KEY,
            description=f"signed audit checkpoint, seq {checkpoint.seq}",
        )
    except Exception as exc:
        get_run_logger().warning("audit checkpoint artifact not published: %s", type(exc).__name__)
