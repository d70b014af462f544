"""Connectors to HRIS, identity-provider and ticketing systems, behind one Protocol per kind."""

from __future__ import annotations

__all__: list[str] = []
