"""Explained review recommendations at scale: every membership of a generated roster (the generator of
tests/unit/test_recommend.py: department+title teams, birthright groups, hand-granted team tools, 5 % planted
outliers) recommended by lifecycle/recommend.py; prints the outlier and birthright figures and the cost.

    .venv/bin/python bench/recommend_bench.py [--people 20000]
    /usr/bin/time -v .venv/bin/python bench/recommend_bench.py --people 50000    # whole-process figures
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lifecycle.birthright import birthright_groups  # noqa: E402
from tests.unit.test_recommend import POLICY, recommend_all, roster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20_000)
    args = parser.parse_args()
    employees, accounts, provenance, outliers = roster(people=args.people)
    memberships = sum(len(a.groups) for a in accounts.values())
    cpu, wall = os.times(), time.perf_counter()
    found = recommend_all(employees, accounts, provenance)
    after, took = os.times(), time.perf_counter() - wall
    by_id = {e.employee_id: e for e in employees}
    birthright = [k for k in found if k[1] in birthright_groups(by_id[k[0]], POLICY)]
    print(f"people {args.people}, memberships {memberships}, planted outliers {len(outliers)}")
    print(
        f"outliers recommended revoke: {sum(found[k].advice == 'revoke' for k in outliers)} of {len(outliers)}"
    )
    print(
        f"birthright grants recommended revoke: {sum(found[k].advice == 'revoke' for k in birthright)} of {len(birthright)}"
    )
    print(
        f"recommend (peers index + every membership): wall {took:.2f} s, CPU user+sys "
        f"{(after.user - cpu.user) + (after.system - cpu.system):.2f} s"
    )


if __name__ == "__main__":
    main()
