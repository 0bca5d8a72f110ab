"""The CPU quickstart, measured: wall time, training samples/s and held-out score vs the constant baseline.

Trains ``configs/train/cpu_quickstart.yaml`` (EfficientNet-Lite0, real ImageNet weights) on scenes shards
made by ``img2prompt generate`` and reports what the acceptance criterion asks: minutes on this machine and
the held-out mean cosine over the constant mean-embedding baseline (mean of the training targets).

    python benchmarks/bench_train_cpu.py --shards runs/generate/scenes --out runs/bench/cpu_quickstart
    python benchmarks/bench_train_cpu.py --shards ... --set train.optim.epochs=1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig
from img2prompt.train.trainer import train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train" / "cpu_quickstart.yaml"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="scenes shard folder (img2prompt generate output)")
    parser.add_argument("--out", required=True, help="run folder (a fresh one: an existing state.pt resumes)")
    parser.add_argument("--config", default=str(CONFIG))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="train.x=y override")
    args = parser.parse_args(argv)
    overrides = [f"train.data.shards=[{args.shards}]", f"train.out={args.out}", *args.overrides]
    config = load_section(args.config, "train", TrainConfig, overrides)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = train(config)
    minutes = (time.perf_counter() - start) / 60
    cpu_minutes = (time.process_time() - cpu_start) / 60
    metrics = json.loads((out / "metrics.json").read_text())
    report = {
        "wall_minutes": round(minutes, 2),
        # CPU time of all threads: on 2 idle cores the wall time is at least half of this.
        "cpu_minutes": round(cpu_minutes, 2),
        "train_samples_per_s": round(metrics["samples_per_second"], 2),
        "steps": metrics["step"],
        "val_mean_cosine": round(metrics["val_mean_cosine"], 4),
        "baseline_mean_cosine": round(metrics["baseline_mean_cosine"], 4),
        "gain_over_baseline": round(metrics["val_mean_cosine"] - metrics["baseline_mean_cosine"], 4),
        "val_count": metrics["val_count"],
        "val_per_source": metrics["val_per_source"],
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
