"""The ``tenure`` command line: :mod:`tenure.cli.app` assembles the subcommands."""

from __future__ import annotations

import gc

# A command keeps most of what it builds until it ends — the imports, then a sync's pages, records and plans, some
# hundreds of thousands of objects, almost none of them cyclic garbage. At CPython's default threshold (700) the
# cycle collector traverses them over and over: a quarter of the CPU of a 10,000-employee sync. Collect the young
# generation every 50,000 allocations instead (set before the imports below, which it pays for too).
gc.set_threshold(50_000, 20, 20)

from tenure.cli.app import app, main  # noqa: E402

__all__ = ["app", "main"]
