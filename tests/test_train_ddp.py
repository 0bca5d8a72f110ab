"""Two-process DDP on the CPU (torchrun + gloo) follows the one-process loss curve.

The loader deals every global batch across ranks, so two ranks of 8 see exactly the one-process batch of
16; the tiny ViT has no BatchNorm or dropout, so the only difference left is float summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from img2prompt.train.config import TrainConfig
from img2prompt.train.trainer import train
from test_train_data import make_color_shards

REPO = Path(__file__).resolve().parents[1]


def test_two_process_ddp_follows_the_one_process_loss_curve(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("img2prompt")
    if not cli.exists():
        pytest.skip("the img2prompt console script is not installed beside this Python (pip install -e .)")
    shards = make_color_shards(tmp_path / "shards", n_prompts=120, size=28)
    section = {
        "seed": 0, "log_with": [], "plots": False,
        "model": {"backbone": "vit_l_14_336", "pretrained": False, "tiny": True, "image_size": 28},
        "data": {"shards": [str(shards)], "batch_size": 16, "shuffle_buffer": 32},
        "optim": {"lr": 3e-3, "max_steps": 5, "warmup_steps": 1},
    }
    single = train(TrainConfig.model_validate({**section, "out": str(tmp_path / "one")}))
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**section, "out": str(tmp_path / "two")}}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", str(cli), "train", str(cfg), "--set", "train.data.batch_size=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=420, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert [s for s, _ in two["train_loss"]] == [1, 2, 3, 4, 5]
    for (_, a), (_, b) in zip(one["train_loss"], two["train_loss"], strict=True):
        assert abs(a - b) < 1e-4
    assert abs(one["val_mean_cosine"] - two["val_mean_cosine"]) < 1e-3
