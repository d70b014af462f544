"""Summarise a py-spy collapsed-stack file (``py-spy record --format raw``): where the CPU samples went.

    .venv/bin/py-spy record --format raw -r 200 -o sync.raw -- .venv/bin/python -m tenure.cli sync --full
    .venv/bin/python bench/flame_summary.py sync.raw [--top 25] [--prefix engine/ --prefix connectors/]

Prints the functions with the most samples *inclusive* (the function or anything it calls) and *self* (the
function's own code), as shares of all samples; ``--prefix`` keeps inclusive rows whose file starts with one of
the prefixes (Tenure's own code, say), so the summary reads as "what of ours costs what".
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        if match:
            path = match.group("file")
            for marker in ("site-packages/", "python3.11/", "wt-19/"):
                if marker in path:
                    path = path.split(marker, 1)[1]
            out.append((match.group("func"), path))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--prefix", action="append", default=[])
    args = parser.parse_args()
    inclusive: Counter[tuple[str, str]] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in args.raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        seen = frames(stack)
        for frame in set(seen):
            inclusive[frame] += n
        if seen:
            own[seen[-1]] += n
    print(f"{total} samples")
    print("inclusive (the function and what it calls):")
    shown = 0
    for (func, path), n in inclusive.most_common():
        if args.prefix and not any(path.startswith(p) for p in args.prefix):
            continue
        print(f"  {n / total:6.1%}  {func}  ({path})")
        shown += 1
        if shown >= args.top:
            break
    print("self (own code):")
    for (func, path), n in own.most_common(args.top):
        print(f"  {n / total:6.1%}  {func}  ({path})")


if __name__ == "__main__":
    main()
