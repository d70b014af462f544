"""CSV exports that a spreadsheet opens as data, never as formulas (OWASP, "CSV Injection").

HR names, IdP user names and reviewers' reasons reach ``tenure audit export`` and ``tenure review export``;
a cell such as ``=HYPERLINK("http://…"&A1,"open")`` or ``+cmd|' /C calc'!A0`` would run in Excel, LibreOffice or
Google Sheets. :func:`neutralise_cell` prefixes a single quote to every text cell starting with ``=``, ``+``,
``-``, ``@``, tab or carriage return, except a plain number (``-5``, ``3.2``), which a spreadsheet reads as a
number anyway. Every CSV export writes through :class:`NeutralCSVWriter`; JSON and JSONL exports keep the values
as they are (no spreadsheet evaluates them, and the audit trail's hashes cover the original text).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["FORMULA_STARTS", "neutralise_cell", "NeutralCSVWriter"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def neutralise_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` if it is text a spreadsheet would evaluate; anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class NeutralCSVWriter(csv.DictWriter):  # type: ignore[type-arg]
    """``csv.DictWriter`` whose every cell goes through :func:`neutralise_cell` (the header is ours)."""

    def writerow(self, rowdict: Mapping[str, Any]) -> Any:
        return super().writerow({key: neutralise_cell(value) for key, value in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, Any]]) -> None:
        for rowdict in rowdicts:
            self.writerow(rowdict)
