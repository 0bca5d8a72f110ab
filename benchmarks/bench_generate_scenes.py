"""Throughput of the offline ``scenes`` generator through the real stage: prompt table -> WebDataset shards.

Runs ``img2prompt generate`` on a table of grammar prompts with 1 process and with 2 processes under
``torchrun`` and reports images/s by wall clock (process start to exit, so imports and startup count),
plus the CPU seconds the run used: images per CPU-second is what the cores give when nobody else shares
them (the wall figure drops when they are shared). The issue's target: >= 50 images/s at 224 px on 2 cores.

    .venv/bin/python benchmarks/bench_generate_scenes.py --prompts 2000 --size 224
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.scene_grammar import random_prompts
from img2prompt.shards import Manifest


def write_table_of(n: int, path: Path) -> None:
    prompts = random_prompts(n, seed=0)
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts, "source": "scenes",
                          "tier": "hq", "cluster": range(n), "split": "train"})
    vectors = np.random.default_rng(0).normal(size=(n, 384)).astype(np.float32)
    write_table(frame, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), path)


def run(procs: int, table: Path, out: Path, size: int, fast_encode: bool) -> dict:
    settings = {"prompts": str(table), "out": str(out), "backend": "scenes", "size": size,
                "samples_per_shard": 250, "fast_encode": fast_encode}
    cfg = out.with_suffix(".yaml")
    cfg.write_text(yaml.safe_dump({"generate": settings}))
    cli = str(Path(sys.executable).with_name("img2prompt"))
    command = [cli, "generate", str(cfg)]
    if procs > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
                   "--no-python", *command]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - began
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    manifest = Manifest(out)
    images = manifest.total()
    shard_bytes = sum((out / name).stat().st_size for name in manifest.finished())
    return {"procs": procs, "size": size, "fast_encode": fast_encode, "images": images,
            "wall_s": round(wall, 2), "images_per_s": round(images / wall, 1), "cpu_s": round(cpu, 2),
            "images_per_cpu_s": round(images / cpu, 1),
            "kb_per_image": round(shard_bytes / images / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2000, help="HQ prompts: 2 images each")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--slow-encode", type=int, default=0, metavar="PROMPTS",
                        help="also time WebP at effort 4 (1 process) on this many prompts")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "prompts.parquet"
        write_table_of(args.prompts, table)
        rows = [run(p, table, Path(tmp) / f"out{p}", args.size, True) for p in args.procs]
        if args.slow_encode:
            small = Path(tmp) / "small.parquet"
            write_table_of(args.slow_encode, small)
            rows.append(run(1, small, Path(tmp) / "fast", args.size, True))
            rows.append(run(1, small, Path(tmp) / "slow", args.size, False))
    print(f"load average after: {os.getloadavg()}")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
