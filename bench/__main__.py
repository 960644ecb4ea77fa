"""Benchmark harness: ``python -m bench run --suite NAME|all [--reps N] [--quick]``.

Every module ``bench/suite_<name>.py`` exposes ``run(reps: int, quick: bool) -> dict``
(JSON-able: raw samples, medians, p99s and ratios to the suite's baseline) and prints
its own table. The harness writes ``bench-results/<suite>-<utc>.json``. Suites are not
tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def suites() -> list[str]:
    return sorted(
        m.name.removeprefix("suite_")
        for m in pkgutil.iter_modules([str(HERE)])
        if m.name.startswith("suite_")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run one suite or all")
    run.add_argument("--suite", default="all", help=f"one of: all, {', '.join(suites())}")
    run.add_argument("--reps", type=int, default=5)
    run.add_argument("--quick", action="store_true", help="small sizes (CI smoke)")
    run.add_argument("--out", type=Path, default=Path("bench-results"))
    sub.add_parser("list", help="list the suites")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        print("\n".join(suites()))
        return 0
    names = suites() if args.suite == "all" else [args.suite]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for name in names:
        if name not in suites():
            print(f"unknown suite {name!r}; suites: {', '.join(suites())}", file=sys.stderr)
            return 1
        module = importlib.import_module(f"bench.suite_{name}")
        print(f"== suite {name} (reps={args.reps}, quick={args.quick})", flush=True)
        result = module.run(args.reps, args.quick)
        path = args.out / f"{name}-{stamp}.json"
        path.write_text(json.dumps(result, indent=2, default=str))
        print(f"   -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
