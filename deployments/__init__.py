"""How flows are deployed and triggered: the HRIS webhook receiver (:mod:`deployments.webhook`)."""

from __future__ import annotations

__all__: list[str] = []
