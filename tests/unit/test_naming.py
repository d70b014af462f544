"""userName/email formation: ASCII folding, cleaning, templates, collisions (lifecycle.naming)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifecycle.naming import (
    base_user_name,
    clean_user_name,
    email_for,
    fold_ascii,
    unique_user_name,
)
from lifecycle.policy import NamingPolicy
from models.domain import Employee, EmployeeStatus


def person(first: str, last: str, preferred: str | None = None, employee_id: str = "E1") -> Employee:
    return Employee(
        employee_id=employee_id,
        first_name=first,
        last_name=last,
        preferred_name=preferred,
        status=EmployeeStatus.ACTIVE,
    )


NAMING = NamingPolicy(username="{given}.{last}", email_domain="example.com", max_length=64)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Zoë", "Zoe"),
        ("Ångström", "Angstrom"),
        ("Łukasz", "Lukasz"),
        ("Straße", "Strasse"),
        ("Ærø", "AEro"),
        ("Đorđe", "Dorde"),
        ("Þórður", "THordur"),
        ("Œuvre", "OEuvre"),
        ("ﬁne", "fine"),  # compatibility ligature, NFKD
        ("李", ""),
    ],
    ids=[
        "diaeresis",
        "ring",
        "l-stroke",
        "eszett",
        "ae-o-slash",
        "d-stroke",
        "thorn",
        "oe",
        "ligature",
        "cjk",
    ],
)
def test_fold_ascii(text: str, folded: str) -> None:
    """Letters fold to ASCII via NFKD plus the table; what cannot fold is dropped."""
    assert fold_ascii(text) == folded


def test_issue_example_zoe() -> None:
    """The issue's example name folds to zoe.angstrom-lukasz."""
    assert base_user_name(person("Zoë", "Ångström-Łukasz"), NAMING) == "zoe.angstrom-lukasz"


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("Mary Ann", "van der Berg", "maryann.vanderberg"),
        ("Seán", "O'Brien", "sean.obrien"),
        ("Jean--Luc", "Picard", "jean-luc.picard"),
        ("-Anna-", "..Smith..", "anna.smith"),
        ("  Bob ", " Lee ", "bob.lee"),
    ],
    ids=["spaces", "apostrophe", "repeated-separator", "edge-separators", "whitespace"],
)
def test_cleaning(first: str, last: str, expected: str) -> None:
    """Only [a-z0-9._-] survive, separator runs collapse, ends are trimmed."""
    assert base_user_name(person(first, last), NAMING) == expected


def test_preferred_name_is_given() -> None:
    """{given} uses the preferred name when there is one; {first} stays the legal name."""
    employee = person("Robert", "Smith", preferred="Bob")
    assert base_user_name(employee, NAMING) == "bob.smith"
    assert base_user_name(employee, NamingPolicy(username="{first}.{last}")) == "robert.smith"


def test_first_initial_and_employee_id_fields() -> None:
    """{first_initial} is the folded first letter; {employee_id} is cleaned like a name."""
    policy = NamingPolicy(username="{first_initial}{last}-{employee_id}")
    assert base_user_name(person("Åsa", "Berg", employee_id="E-042"), policy) == "aberg-e-042"


def test_max_length_trims_and_strips_separator() -> None:
    """A long name is cut to max_length without a trailing separator."""
    policy = NamingPolicy(username="{given}.{last}", max_length=8)
    assert base_user_name(person("Alexandra", "Smith"), policy) == "alexandr"
    assert base_user_name(person("Alexandr", "Smith"), policy) == "alexandr"  # "alexandr." stripped


@pytest.mark.parametrize(
    ("first", "last"), [("", ""), ("李", "王"), ("---", "'''")], ids=["empty", "cjk-only", "punctuation-only"]
)
def test_empty_user_name(first: str, last: str) -> None:
    """A name with nothing foldable yields "" (the planner then skips the employee)."""
    assert base_user_name(person(first, last), NAMING) == ""
    assert unique_user_name(person(first, last), NAMING, {"x"}) == ""


def test_collision_suffixes() -> None:
    """Taken names get 2, 3, ...; comparison is case-insensitive."""
    employee = person("John", "Smith")
    assert unique_user_name(employee, NAMING) == "john.smith"
    assert unique_user_name(employee, NAMING, {"John.Smith"}) == "john.smith2"
    assert unique_user_name(employee, NAMING, {"john.smith", "john.smith2"}) == "john.smith3"
    assert unique_user_name(employee, NAMING, {"john.smith2"}) == "john.smith"


def test_collision_with_email_style_user_names() -> None:
    """An IdP that reports logins as emails (Okta) still counts as a collision."""
    assert unique_user_name(person("John", "Smith"), NAMING, {"john.smith@example.com"}) == "john.smith2"


def test_collision_suffix_fits_max_length() -> None:
    """The suffix never pushes a name over max_length."""
    policy = NamingPolicy(username="{given}.{last}", max_length=8)
    taken = {"alexandr"} | {f"alexand{n}" for n in range(2, 10)}
    name = unique_user_name(person("Alexandra", "Smith"), policy, taken)
    assert name == "alexan10"
    assert len(name) <= 8


def test_email_for() -> None:
    """Email is userName@email_domain."""
    assert email_for("zoe.angstrom-lukasz", NAMING) == "zoe.angstrom-lukasz@example.com"


@settings(max_examples=200, deadline=None)
@given(
    first=st.text(max_size=20),
    last=st.text(max_size=20),
    taken=st.sets(st.from_regex(r"[a-z]{1,3}\.[a-z]{1,3}[0-9]?", fullmatch=True), max_size=20),
    max_length=st.integers(min_value=8, max_value=20),
)
def test_user_name_always_valid_and_free(first: str, last: str, taken: set[str], max_length: int) -> None:
    """Any name gives "" or a free userName of [a-z0-9._-], within max_length, with clean ends."""
    naming = NamingPolicy(username="{given}.{last}", max_length=max_length)
    name = unique_user_name(person(first, last), naming, taken)
    if name:
        assert re.fullmatch(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?", name)
        assert not re.search(r"[._-]{2}", name)
        assert len(name) <= max_length
        assert name not in taken
    assert clean_user_name(name, max_length) == name  # cleaning is idempotent


def test_candidates_match_unique_user_name() -> None:
    """user_name_candidates lists exactly the names unique_user_name tries, truncated ones included."""
    from itertools import islice

    from lifecycle.naming import user_name_candidates

    policy = NamingPolicy(username="{given}.{last}", max_length=8)
    candidates = list(islice(user_name_candidates(person("Alexandra", "Smith"), policy), 11))
    assert candidates[:3] == ["alexandr", "alexand2", "alexand3"]
    assert candidates[10] == "alexan11"
    assert unique_user_name(person("Alexandra", "Smith"), policy, candidates[:10]) == "alexan11"
    assert list(user_name_candidates(person("李", "王"), policy)) == []
