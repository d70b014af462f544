"""userName and email from the policy's naming template. Pure.

A name is ASCII-folded (Unicode NFKD with combining marks dropped, plus a table for letters NFKD
does not decompose such as ß, æ, ø, ł, đ), lower-cased, reduced to ``[a-z0-9._-]``, with runs of
separators collapsed and trimmed, cut to ``max_length``; collisions get the suffixes 2, 3, ...
Example: "Zoë" "Ångström-Łukasz" with ``{given}.{last}`` → ``zoe.angstrom-lukasz``.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator

from lifecycle.policy import NamingPolicy
from models.compact import EmployeeFacts

__all__ = [
    "fold_ascii",
    "clean_user_name",
    "base_user_name",
    "user_name_candidates",
    "unique_user_name",
    "email_for",
]

# Letters that NFKD leaves alone (they are not "letter + combining mark").
_FOLD_TABLE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "TH",
        "ı": "i",
        "ħ": "h",
        "Ħ": "H",
        "ŋ": "ng",
        "Ŋ": "NG",
        "ſ": "s",
        "ŀ": "l",
        "Ŀ": "L",
        "ƒ": "f",
        "ĸ": "k",
        "ŧ": "t",
        "Ŧ": "T",
    }
)
_SEPARATORS = "._-"
_DISALLOWED = re.compile(r"[^a-z0-9._-]+")
_SEPARATOR_RUN = re.compile(r"[._-]{2,}")


def fold_ascii(text: str) -> str:
    """ASCII-fold ``text``: table letters first, then NFKD without combining marks; other
    non-ASCII characters (e.g. CJK) are dropped."""
    if text.isascii():  # nothing to fold: the table and NFKD leave ASCII as it is
        return text
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD_TABLE))
    # NFKD can produce table letters again from compatibility forms; translate once more.
    decomposed = decomposed.translate(_FOLD_TABLE)
    kept = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return kept.encode("ascii", "ignore").decode("ascii")


def clean_user_name(text: str, max_length: int) -> str:
    """Lower-case, keep ``[a-z0-9._-]``, collapse separator runs to their first character, strip
    separators at both ends, cut to ``max_length``. Returns "" when no letter or digit is left."""
    value = _DISALLOWED.sub("", fold_ascii(text).lower())
    value = _SEPARATOR_RUN.sub(lambda m: m.group(0)[0], value).strip(_SEPARATORS)
    value = value[:max_length].rstrip(_SEPARATORS)
    return value if any(ch.isalnum() for ch in value) else ""


def _name_fields(employee: EmployeeFacts, max_length: int) -> dict[str, str]:
    """The template fields (``NAME_FIELDS``), each already folded and cleaned. Spaces and
    apostrophes inside a name are dropped ("van der Berg" → "vanderberg", "O'Brien" → "obrien")."""
    first = clean_user_name(employee.first_name, max_length)
    return {
        "first": first,
        "last": clean_user_name(employee.last_name, max_length),
        "preferred": clean_user_name(employee.preferred_name or "", max_length),
        "given": clean_user_name(employee.given_name, max_length),
        "first_initial": first[:1],
        "employee_id": clean_user_name(employee.employee_id, max_length),
    }


def base_user_name(employee: EmployeeFacts, naming: NamingPolicy) -> str:
    """The userName the template gives before collision handling ("" if the name yields nothing)."""
    rendered = naming.username.format_map(_name_fields(employee, naming.max_length))
    return clean_user_name(rendered, naming.max_length)


def _is_taken(candidate: str, taken: frozenset[str], email_domain: str) -> bool:
    # IdPs whose login is an email (Okta) report "john.smith@example.com" as the user name.
    return candidate in taken or f"{candidate}@{email_domain}" in taken


def user_name_candidates(employee: EmployeeFacts, naming: NamingPolicy) -> Iterator[str]:
    """``base``, ``base2``, ``base3``, ... (endless; nothing when the name yields no userName). The base
    is shortened so the suffix fits ``max_length``: probe the IdP with exactly these names."""
    base = base_user_name(employee, naming)
    if not base:
        return
    yield base
    for n in itertools.count(2):
        suffix = str(n)
        yield base[: naming.max_length - len(suffix)].rstrip(_SEPARATORS) + suffix


def unique_user_name(employee: EmployeeFacts, naming: NamingPolicy, taken: Iterable[str] = ()) -> str:
    """The first of :func:`user_name_candidates` not in ``taken`` (the names of *other* accounts,
    compared case-insensitively). Returns "" when the name yields no userName at all."""
    taken_lower = frozenset(name.lower() for name in taken)
    domain = naming.email_domain.lower()
    # At most len(taken) candidates can collide, so this ends within len(taken) + 1 candidates.
    for candidate in user_name_candidates(employee, naming):
        if not _is_taken(candidate, taken_lower, domain):
            return candidate
    return ""


def email_for(user_name: str, naming: NamingPolicy) -> str:
    """``userName@email_domain``."""
    return f"{user_name}@{naming.email_domain}"
