"""Pure decisions: policy, the joiner/mover/leaver planner, access-review findings. No I/O."""

from __future__ import annotations

__all__: list[str] = []
