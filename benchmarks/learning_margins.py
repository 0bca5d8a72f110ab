"""Learning margins: rerun every learning test's training over seeds and thread counts, and print, per asserted
quantity, the worst value against the test's bar.

A learning test asserts that a model learned (a score over a baseline, a loss drop) against a bar. Another CPU takes
other SIMD kernels and another thread count another summation order, so the same seed lands elsewhere; a bar tuned
on one machine fails on the next. Each learning test module therefore has ``LEARNING`` ({quantity: Bar(bar, worst)})
and ``measure(seed, root) -> {quantity: value}``, the very function its test asserts on; this script calls it for
every seed in a fresh process per thread count and reports the room left under each bar.

    python benchmarks/learning_margins.py                          # every learning test, seeds 0-4, threads 1 and 2
    python benchmarks/learning_margins.py --only test_ensemble --seeds 10
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
MODULES = ("test_train_loop", "test_quickstart", "test_ensemble", "test_decode", "test_train_datapath",
           "test_train_ddp", "test_train_fsdp")


def worker(module: str, threads: int, seeds: list[int]) -> None:
    """In a fresh process (its thread count set before torch starts): one JSON line of quantities per seed."""
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(TESTS))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    measure = importlib.import_module(module).measure
    for seed in seeds:
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            values = measure(seed, Path(root))
        print(json.dumps({"seed": seed, "threads": threads, "seconds": round(time.perf_counter() - started, 1),
                          "values": {k: float(v) for k, v in values.items()}}), flush=True)


def run(module: str, threads: int, seeds: list[int]) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "OPENBLAS_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, __file__, "--worker", module, "--threads", str(threads),
                           "--seeds", ",".join(map(str, seeds))], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{module} with {threads} thread(s) failed:\n{done.stderr[-3000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith('{"seed"')]


def report(module: str, runs: list[dict]) -> list[str]:
    sys.path.insert(0, str(TESTS))
    bars = importlib.import_module(module).LEARNING
    rows = []
    for quantity, bar in bars.items():
        values = [(r["values"][quantity], r["seed"], r["threads"]) for r in runs]
        worst, seed, threads = min(values)
        flag = "ok" if worst >= bar.bar else "BELOW THE BAR"
        rows.append(f"| {module} | {quantity} | {bar.bar:+.4f} | {worst:+.4f} (seed {seed}, {threads} thr) | "
                    f"{statistics.median(v for v, _, _ in values):+.4f} | {worst - bar.bar:+.4f} | "
                    f"{bar.worst:+.4f} | {flag} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(MODULES), help="test modules to measure")
    parser.add_argument("--seeds", default="5", help="a count (seeds 0..N-1) or a comma list (worker mode)")
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if "," in args.seeds or args.worker else list(
        range(int(args.seeds)))
    if args.worker:
        worker(args.worker, args.threads[0], seeds)
        return
    print("| test | quantity | bar | worst measured | median | room (worst - bar) | worst recorded in the test | |")
    print("|---|---|---|---|---|---|---|---|")
    for module in args.only:
        runs = [r for threads in args.threads for r in run(module, threads, seeds)]
        for row in report(module, runs):
            print(row, flush=True)
        seconds = statistics.median(r["seconds"] for r in runs)
        print(f"<!-- {module}: {len(runs)} runs, median {seconds} s a run -->", flush=True)


if __name__ == "__main__":
    main()
