"""The ``tenure`` command line: :mod:`tenure.cli.app` assembles the subcommands."""

from __future__ import annotations

from tenure.cli.app import app, main

__all__ = ["app", "main"]
