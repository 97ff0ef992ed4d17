"""Run every benchmark in sequence, each in a fresh interpreter, then write ``results/RESULTS.md``.

    python benchmarks/run.py [--only caller,burst]

Each script also runs alone (``python benchmarks/bench_caller.py``) and keeps RESULTS.md current.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _common import BENCH_DIR, RESULTS_DIR, write_markdown

NAMES = ("caller", "request", "throughput", "burst", "latency", "exit", "redis")


def script_path(name: str) -> str:
    """The script as a path relative to the working directory when it can be, for the record."""
    path = BENCH_DIR / f"bench_{name}.py"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(NAMES)}")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(NAMES)
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    failed = []
    started = time.monotonic()
    for name in names:
        print(f"\n### bench_{name}.py", flush=True)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, script_path(name)], check=False)
        print(f"### bench_{name}.py: exit {done.returncode} in {time.monotonic() - t0:.1f} s")
        if done.returncode != 0:
            failed.append(name)
    path = write_markdown()

    missed = []
    for name in names:
        result = RESULTS_DIR / f"{name}.json"
        if name in failed or not result.exists():
            continue
        for t in json.loads(result.read_text(encoding="utf-8"))["targets"]:
            if not t["met"]:
                missed.append(f"{name}: {t['what']} (target {t['target']}, got {t['measured']})")
    print(f"\nAll done in {time.monotonic() - started:.0f} s; wrote {path}")
    for line in missed:
        print(f"target missed: {line}")
    for name in failed:
        print(f"benchmark failed: bench_{name}.py", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
