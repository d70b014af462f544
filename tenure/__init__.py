"""Tenure: joiner/mover/leaver automation between HRIS, identity provider and ticketing, on Prefect."""

from __future__ import annotations

__all__ = ["__version__"]
__version__ = "0.1.0"
