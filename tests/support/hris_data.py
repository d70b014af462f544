"""Realistic, seeded fake people for tests, the demo and benchmarks — and a CSV writer for them.

Everything is made up and deterministic for a given seed: names from small international lists (with
non-ASCII letters, to exercise UTF-8), unique ``firstname.lastname[N]@example.com`` work emails, a manager
hierarchy (every manager is an earlier employee), departments with matching titles, and a status mix of
active, pending (future hire date), leave and terminated (past termination date).

Usage::

    people = fake_people(10_000, seed=7)
    broken = break_rows(people, count=100, seed=7)   # {file line: kind of breakage}
    write_csv(tmp_path / "hris.csv", people, bom=True)

    defects = plant_defects(people, count=500, seed=7)   # + one Latin-1 row and one huge field
    write_csv(tmp_path / "hris.csv", people, latin1_lines={l for l, k in defects.items() if k == "latin1"})
"""

from __future__ import annotations

import codecs
import csv
import io
import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path

from connectors.hris.parsing import EMPLOYEE_FIELDS

__all__ = [
    "COLUMNS",
    "BREAKAGES",
    "fake_people",
    "break_rows",
    "write_csv",
    "line_of",
    "DEFECTS",
    "plant_defects",
    "all_active",
    "staff_in_three_departments",
]

# The CSV export connector's default columns: our field names, in one place.
COLUMNS: tuple[str, ...] = EMPLOYEE_FIELDS

FIRST_NAMES = (
    "Ada",
    "Alan",
    "Amara",
    "Anders",
    "Aroha",
    "Beatriz",
    "Bongani",
    "Camille",
    "Chen",
    "Chiara",
    "Dagny",
    "Dmitri",
    "Elif",
    "Emeka",
    "Fatima",
    "François",
    "Grace",
    "Hamid",
    "Hana",
    "Ingrid",
    "Isabel",
    "Jamal",
    "José",
    "Kai",
    "Kenji",
    "Lars",
    "Leila",
    "Lucía",
    "Maja",
    "Mateo",
    "Mei",
    "Nia",
    "Noor",
    "Olu",
    "Øyvind",
    "Priya",
    "Rafael",
    "Ravi",
    "Sakura",
    "Siobhán",
    "Sven",
    "Tariq",
    "Thandiwe",
    "Tomás",
    "Valentina",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoë",
    "Zainab",
)
LAST_NAMES = (
    "Abara",
    "Andersen",
    "Bauer",
    "Bianchi",
    "Chatterjee",
    "Costa",
    "Da Silva",
    "Dubois",
    "Eriksson",
    "Fernández",
    "García",
    "Haddad",
    "Hansen",
    "Ito",
    "Jansen",
    "Kim",
    "Kowalski",
    "Larsen",
    "Li",
    "Mbeki",
    "Müller",
    "Nakamura",
    "Nguyen",
    "Novak",
    "O'Brien",
    "Okafor",
    "Patel",
    "Pereira",
    "Petrov",
    "Quispe",
    "Rossi",
    "Sato",
    "Schmidt",
    "Singh",
    "Smith",
    "Suzuki",
    "Tanaka",
    "Van der Berg",
    "Wang",
    "Weiß",
    "Yılmaz",
    "Zhang",
)
PREFERRED = {
    "Alan": "Al",
    "Beatriz": "Bia",
    "Dmitri": "Dima",
    "Isabel": "Isa",
    "Valentina": "Vale",
    "Rafael": "Rafa",
    "Siobhán": "Shiv",
    "Thandiwe": "Thandi",
    "Tomás": "Tom",
}
DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Engineering": ("Software Engineer", "Senior Software Engineer", "Staff Engineer", "Engineering Manager"),
    "Sales": ("Account Executive", "Sales Development Representative", "Sales Manager"),
    "Finance": ("Accountant", "Financial Analyst", "Controller"),
    "People": ("HR Generalist", "Recruiter", "People Partner"),
    "Support": ("Support Engineer", "Support Lead"),
    "Marketing": ("Marketing Manager", "Content Strategist", "Designer"),
    "IT": ("IT Administrator", "Security Engineer"),
}
LOCATIONS = ("Berlin", "Lisbon", "London", "Nairobi", "New York", "São Paulo", "Singapore", "Tokyo", "Remote")
EMPLOYMENT_TYPES = ("Full-Time", "Full-Time", "Full-Time", "Part-Time", "Contractor", "Intern")
BREAKAGES = (
    "missing_id",
    "bad_hire_date",
    "bad_termination_date",
    "unknown_status",
    "duplicate_id",
    "missing_first_name",
    "missing_last_name",
)

ASCII = str.maketrans(
    {
        "é": "e",
        "ç": "c",
        "ø": "o",
        "Ø": "O",
        "ó": "o",
        "á": "a",
        "í": "i",
        "ë": "e",
        "ü": "u",
        "ß": "ss",
        "ı": "i",
        "ã": "a",
        " ": "",
        "'": "",
    }
)


def _local_part(first: str, last: str) -> str:
    return f"{first}.{last}".translate(ASCII).lower()


def fake_people(
    count: int, *, seed: int = 0, today: date | None = None, id_prefix: str = "E"
) -> list[dict[str, str]]:
    """``count`` rows keyed by :data:`COLUMNS`; ids ``E00001``…; deterministic for ``seed`` and ``today``."""
    rng = random.Random(seed)
    today = today or date(2026, 1, 15)
    rows: list[dict[str, str]] = []
    used_locals: dict[str, int] = {}
    for index in range(count):
        employee_id = f"{id_prefix}{index + 1:05d}"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = _local_part(first, last)
        used_locals[local] = used_locals.get(local, 0) + 1
        if used_locals[local] > 1:
            local = f"{local}{used_locals[local]}"
        department = rng.choice(list(DEPARTMENTS))
        roll = rng.random()
        termination = ""
        if roll < 0.05:
            status, hire = "pending", today + timedelta(days=rng.randint(1, 60))
        elif roll < 0.08:
            status, hire = "leave", today - timedelta(days=rng.randint(200, 3000))
        elif roll < 0.15:
            hire = today - timedelta(days=rng.randint(400, 4000))
            status, termination = "terminated", (today - timedelta(days=rng.randint(1, 300))).isoformat()
        else:
            status, hire = "active", today - timedelta(days=rng.randint(1, 4000))
        manager = "" if index < 5 else f"{id_prefix}{rng.randint(1, min(index, 200)):05d}"
        rows.append(
            {
                "employee_id": employee_id,
                "first_name": first,
                "last_name": last,
                "preferred_name": PREFERRED.get(first, "") if rng.random() < 0.6 else "",
                "work_email": f"{local}@example.com",
                "personal_email": f"{local}.home@example.net" if rng.random() < 0.7 else "",
                "department": department,
                "title": rng.choice(DEPARTMENTS[department]),
                "manager_id": manager,
                "location": rng.choice(LOCATIONS),
                "employment_type": rng.choice(EMPLOYMENT_TYPES),
                "status": status,
                "hire_date": hire.isoformat(),
                "termination_date": termination,
            }
        )
    return rows


def line_of(index: int) -> int:
    """File line of data row ``index`` (0-based) when written by :func:`write_csv` (header = line 1)."""
    return index + 2


def break_rows(rows: list[dict[str, str]], *, count: int, seed: int = 0) -> dict[int, str]:
    """Break ``count`` distinct rows in place, cycling through :data:`BREAKAGES`; returns {file line: kind}.

    A duplicate takes the id of an earlier row that is left intact, so exactly the broken rows are invalid.
    """
    rng = random.Random(seed)
    candidates = list(range(1, len(rows)))  # row 0 stays intact: it can always be duplicated
    picked = sorted(rng.sample(candidates, count))
    picked_set = set(picked)
    broken: dict[int, str] = {}
    for n, index in enumerate(picked):
        kind = BREAKAGES[n % len(BREAKAGES)]
        row = rows[index]
        if kind == "missing_id":
            row["employee_id"] = ""
        elif kind == "bad_hire_date":
            row["hire_date"] = rng.choice(("2024-13-45", "31/12/2023", "yesterday", "2024-02-30"))
        elif kind == "bad_termination_date":
            row["termination_date"] = rng.choice(("2025-00-10", "12.03.2025", "soon"))
        elif kind == "unknown_status":
            row["status"] = rng.choice(("retired", "on sabbatical", "??"))
        elif kind == "duplicate_id":
            source = rng.choice([i for i in range(index) if i not in picked_set] or [0])
            row["employee_id"] = rows[source]["employee_id"]
        elif kind == "missing_first_name":
            row["first_name"] = "  "
        elif kind == "missing_last_name":
            row["last_name"] = ""
        broken[line_of(index)] = kind
    return broken


# Defects an export meets in the wild, beyond BREAKAGES: a date that does not exist, a termination before the
# hire date, two employees managing each other (one defect, two rows); plus, once each, a row in Latin-1 in a
# UTF-8 file and a field far over the CSV bound.
DEFECTS = (*BREAKAGES, "impossible_date", "termination_before_hire", "manager_loop")


def all_active(rows: list[dict[str, str]], *, today: date) -> None:
    """Make every row an active employee hired in the past (so each good row plans a joiner)."""
    for row in rows:
        if row["status"] != "active" or row["termination_date"] or row["hire_date"] > today.isoformat():
            row.update(
                status="active", termination_date="", hire_date=(today - timedelta(days=30)).isoformat()
            )


def staff_in_three_departments(count: int, *, seed: int, today: date) -> list[dict[str, str]]:
    """Active employees hired 100 days ago, in Engineering, Sales and Finance in turn (each with that
    department's first title), with managers: a roster already in place, for the sync tests and benches."""
    rows = fake_people(count, seed=seed, today=today)
    cycle = ("Engineering", "Sales", "Finance")
    for index, row in enumerate(rows):
        department = cycle[index % 3]
        row.update(
            status="active",
            termination_date="",
            department=department,
            title=DEPARTMENTS[department][0],
            hire_date=(today - timedelta(days=100)).isoformat(),
        )
    return rows


def plant_defects(
    rows: list[dict[str, str]], *, count: int, seed: int = 0, huge_field_chars: int = 10 * 1024 * 1024
) -> dict[int, str]:
    """Break ``count`` distinct rows in place: the first is written in Latin-1 (``write_csv(latin1_lines=)``),
    the second gets a title of ``huge_field_chars`` characters, the rest cycle through :data:`DEFECTS` (a
    manager loop takes two rows). Returns {file line: kind}; every other row stays valid."""
    if count < 2:
        raise ValueError("count must leave room for the Latin-1 row and the huge field")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(1, len(rows)), count))  # row 0 stays intact: it can be duplicated
    picked_set = set(picked)
    defects: dict[int, str] = {}
    queue = list(picked)
    rng.shuffle(queue)
    kinds = iter(("latin1", "huge_field", *(DEFECTS[n % len(DEFECTS)] for n in range(count))))
    while queue:
        index, kind = queue.pop(), next(kinds)
        row = rows[index]
        if kind == "manager_loop" and not queue:
            kind = "impossible_date"
        if kind == "latin1":
            # characters Latin-1 writes as single bytes that are not UTF-8 (and nothing Latin-1 cannot write)
            row.update(first_name="Zoë", last_name="Weiß")
        elif kind == "huge_field":
            row["title"] = "x" * huge_field_chars
        elif kind == "impossible_date":
            row["hire_date"] = "2026-02-30"
        elif kind == "termination_before_hire":
            hire = date.fromisoformat(row["hire_date"])
            row.update(status="terminated", termination_date=(hire - timedelta(days=30)).isoformat())
        elif kind == "manager_loop":
            other = queue.pop()
            rows[other]["manager_id"], row["manager_id"] = row["employee_id"], rows[other]["employee_id"]
            defects[line_of(other)] = kind
        elif kind == "duplicate_id":
            source = rng.choice([i for i in range(index) if i not in picked_set] or [0])
            row["employee_id"] = rows[source]["employee_id"]
        else:
            _break_one(row, kind, rng)
        defects[line_of(index)] = kind
    return defects


def _break_one(row: dict[str, str], kind: str, rng: random.Random) -> None:
    if kind == "missing_id":
        row["employee_id"] = ""
    elif kind == "bad_hire_date":
        row["hire_date"] = rng.choice(("2024-13-45", "31/12/2023", "yesterday"))
    elif kind == "bad_termination_date":
        row["termination_date"] = rng.choice(("2025-00-10", "12.03.2025", "soon"))
    elif kind == "unknown_status":
        row["status"] = rng.choice(("retired", "on sabbatical", "??"))
    elif kind == "missing_first_name":
        row["first_name"] = "  "
    elif kind == "missing_last_name":
        row["last_name"] = ""


def write_csv(
    path: str | Path,
    rows: Iterable[Mapping[str, str]],
    *,
    columns: Sequence[str] = COLUMNS,
    column_map: Mapping[str, str] | None = None,
    bom: bool = False,
    latin1_lines: Iterable[int] = (),
) -> Path:
    """Write ``rows`` as UTF-8 CSV (optionally with a BOM); ``column_map`` renames our field → header; the rows
    at ``latin1_lines`` (file lines, header = 1) are written in Latin-1 instead, as a broken export would."""
    path = Path(path)
    header = [(column_map or {}).get(c, c) for c in columns]
    latin1 = set(latin1_lines)
    line = io.StringIO()
    writer = csv.writer(line)
    with path.open("wb") as handle:
        if bom:
            handle.write(codecs.BOM_UTF8)
        for number, cells in enumerate([header, *([row.get(c, "") for c in columns] for row in rows)], 1):
            line.seek(0)
            line.truncate()
            writer.writerow(cells)
            handle.write(line.getvalue().encode("latin-1" if number in latin1 else "utf-8"))
    return path
