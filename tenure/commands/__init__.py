"""``tenure`` sub-commands that live in their own modules (registered in :mod:`tenure.cli`)."""

from __future__ import annotations

__all__: list[str] = []
