"""Start-up: how long ``img2prompt interrogate`` takes, start to answer, once its phrase dictionary is cached.

Runs the command once (which may build the dictionary: not timed), then ``--runs`` more times, each a fresh
process, and prints every wall time and their median. ``--src`` runs another source tree (``PYTHONPATH``), so a
before/after pair is two calls on the same machine; ``--imports`` adds one run under ``-X importtime`` and lists
the slowest top-level imports. After ``make quickstart``:

    PYTHONPATH=src flock -x /tmp/cpu.lock .venv/bin/python benchmarks/bench_startup.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

IMAGE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kaggle_sample" / "images" / "20057f34d.png"


def command(args: argparse.Namespace, *python: str) -> list[str]:
    overrides = [arg for item in args.set for arg in ("--set", item)]
    return [sys.executable, *python, "-m", "img2prompt", "interrogate", str(args.image), "--model", args.model,
            "--bank", args.bank, *overrides]


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return seconds, done


def slowest_imports(stderr: str, count: int) -> list[tuple[float, str]]:
    """Top-level modules of a ``-X importtime`` listing by cumulative seconds."""
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.removeprefix("import time:").split("|")
            if name.startswith(" ") and not name.startswith("  "):  # one space: imported at the top level
                rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/quickstart/ensemble.yaml")
    parser.add_argument("--bank", default="runs/quickstart/bank/prompts.parquet")
    parser.add_argument("--image", type=Path, default=IMAGE)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--src", type=Path, help="the source tree to run (default: the installed package)")
    parser.add_argument("--set", action="append", default=[], help="a decode.KEY=VALUE override for every call")
    parser.add_argument("--imports", type=int, default=0, help="list this many slowest imports of one more run")
    args = parser.parse_args()

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.src is not None:
        env["PYTHONPATH"] = str(args.src.resolve())
    first, done = run(command(args), env)
    print(f"first call (may build the phrase dictionary): {first:.2f} s; answer: {done.stdout.strip()[:100]}")
    seconds = [run(command(args), env)[0] for _ in range(args.runs)]
    print(f"later calls: {', '.join(f'{s:.2f}' for s in seconds)} s; median {statistics.median(seconds):.2f} s")
    if args.imports:
        _, done = run(command(args, "-X", "importtime"), env)
        imports = slowest_imports(done.stderr, args.imports)
        print(f"slowest imports: {', '.join(f'{name} {s:.2f} s' for s, name in imports)}")


if __name__ == "__main__":
    main()
