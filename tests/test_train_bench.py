"""The GPU training benchmark runs end to end on the CPU with a tiny twin (the H100 numbers need a GPU)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_train_gpu import main


def test_benchmark_measures_throughput_and_flops_with_tiny_twins(tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    results = main(["--tiny", "--device", "cpu", "--only", "vit_l_14_336", "--steps", "1", "--warmup", "0",
                    "--json", str(out)])
    assert [(r.backbone, r.mode) for r in results] == [("vit_l_14_336", "full"), ("vit_l_14_336", "lora")]
    full, lora = results
    assert full.tflop_per_step > 0 and full.samples_per_s > 0 and 0 < full.mfu < 1
    assert lora.trainable_m < full.trainable_m == full.params_m
    assert len(out.read_text().splitlines()) == 2


def test_a_stage_config_is_measured_as_it_trains_and_its_rate_projects_that_stage(tmp_path: Path) -> None:
    from project_gpu_days import measured_train_rates

    out, config = tmp_path / "results.jsonl", "configs/train/vit_l_14_336_stage1.yaml"
    (result,) = main(["--tiny", "--device", "cpu", "--configs", config, "--steps", "1", "--warmup", "0",
                      "--json", str(out)])
    assert (result.backbone, result.mode, result.batch) == ("vit_l_14_336", config, 2)
    assert 0 < result.trainable_m < result.params_m  # LoRA on the bottom blocks, the rest trained
    assert measured_train_rates(out) == {("vit_l_14_336", config): result.samples_per_s}
