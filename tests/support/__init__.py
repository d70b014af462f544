"""Helpers shared by the contract and e2e tests (throwaway local peers, never a remote host)."""

from __future__ import annotations

__all__: list[str] = []
