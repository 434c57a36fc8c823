"""Time ``maxent.cli.robustness.parse_grid`` on grid specs of growing length, to show it is linear.

Three shapes of spec per size: a valid list of values, and two that fail after a long run (a run
of digits, which made the former number regex try every split of the run, and a run of blanks).
With ``--reference-up-to`` the former regexes are timed as well, on sizes up to that many bytes
(they are quadratic: keep it small).

    python benchmarks/parse_grid.py
    python benchmarks/parse_grid.py --sizes 8000 64000 512000 --reference-up-to 8000
"""

from __future__ import annotations

import argparse
import re
import time

from maxent.cli.robustness import parse_grid

# The patterns parse_grid used before it split specs into pieces (for --reference-up-to only).
_OLD_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def old_parse(spec: str) -> bool:
    match = re.fullmatch(r"\s*(\w+)\s*=\s*(.+?)\s*", spec)
    if match is None:
        return False
    body = match.group(2)
    return bool(re.fullmatch(rf"{_OLD_NUMBER}:{_OLD_NUMBER}:\d+", body)
                or re.fullmatch(rf"{_OLD_NUMBER}(?:,{_OLD_NUMBER})*", body))


def specs(size: int) -> dict[str, str]:
    n = max(size - len("mass="), 2)
    values = ",".join(["1.25"] * (n // 5 + 1))[:n].rstrip(",")
    return {"list of values": "mass=" + values,
            "digit run, then x": "mass=" + "1" * (n - 1) + "x",
            "blank run, then x": "mass=1" + " " * (n - 2) + "x"}


def seconds(parse, spec: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            parse([spec]) if parse is parse_grid else parse(spec)
        except ValueError:
            pass
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8_000, 64_000, 512_000],
                        help="spec lengths in bytes")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--reference-up-to", type=int, default=0,
                        help="also time the former quadratic regexes on sizes up to this many bytes")
    args = parser.parse_args()
    print(f"{'spec':<20} {'bytes':>9} {'parse_grid s':>13} {'former s':>10}")
    for size in args.sizes:
        for name, spec in specs(size).items():
            new = seconds(parse_grid, spec, args.repeats)
            old = (f"{seconds(old_parse, spec, 1):10.4f}" if size <= args.reference_up_to
                   else f"{'-':>10}")
            print(f"{name:<20} {len(spec):>9} {new:13.4f} {old}")


if __name__ == "__main__":
    main()
