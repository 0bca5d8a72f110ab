"""Two-process DDP on the CPU (torchrun + gloo): the ranks train on disjoint samples, stay identical, follow the
curve of the one-process run with the same slots, and validate in halves that gather to the one-process score.

Each (loader worker, rank) slot reads its own shards, so a 2-process run no longer sees the 1-process batches of
16 (it did when every rank read every tar and kept half of each global batch). What is true now, and as strong:
the data plan depends only on the number of slots, slot = worker * processes + rank. One process with 2 loader
workers has the same two slots as two processes without workers, and accumulating 2 micro-batches of 8 makes each
of its optimizer steps the mean over the same two slots' batches that the two ranks all-reduce. So the 2-process
loss curve follows that run's to float summation order (the tiny ViT has no BatchNorm or dropout).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from img2prompt.models.regressor import Regressor
from img2prompt.train.config import TrainConfig
from img2prompt.train.index import ShardIndex
from img2prompt.train.trainer import train
from img2prompt.train.validation import validate
from learning import Bar, assert_learned, loss_drop
from test_train_data import make_color_shards
from test_train_datapath import (
    READ_LOGGER,
    one_thread,  # noqa: F401 (autouse: in-process training on one thread)
    prompt_of,
    read_log,
    torchrun,
)


def section(shards: Path, seed: int = 0) -> dict:
    return {
        "seed": seed, "log_with": [], "plots": False,
        "model": {"backbone": "vit_l_14_336", "pretrained": False, "tiny": True, "image_size": 28},
        "data": {"shards": [str(shards)], "batch_size": 8, "shuffle_buffer": 32},
        "optim": {"lr": 3e-3, "epochs": 1, "warmup_steps": 1},
    }


def one_process(shards: Path, out: Path, seed: int = 0) -> Path:
    """The 2-process run's reference: 2 loader workers accumulating 2 micro-batches (the same two slots)."""
    base = section(shards, seed)
    return train(TrainConfig.model_validate({**base, "out": str(out), "data": {**base["data"], "num_workers": 2},
                                             "optim": {**base["optim"], "grad_accum": 2}}))


# The runs learn (the 2-process run follows this one to 1e-4). Bar: the worst of 5 seeds x {1, 2} threads
# (benchmarks/learning_margins.py), minus a margin; start and end losses are means of 2 of the 6 steps.
LEARNING = {"start loss - end loss": Bar(0.05, worst=0.1474)}


def measure(seed: int, root: Path) -> dict[str, float]:
    shards = make_color_shards(root / "shards", n_prompts=120, size=28, seed=seed)
    return {"start loss - end loss": loss_drop(one_process(shards, root / "one", seed), 2)}


def test_two_process_ddp_splits_the_data_and_follows_the_run_with_the_same_slots(tmp_path: Path) -> None:
    shards = make_color_shards(tmp_path / "shards", n_prompts=120, size=28)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("READS", str(tmp_path / "one_reads"))
        (tmp_path / "one_reads").mkdir()
        logger: dict = {}
        exec(READ_LOGGER, logger)
        patch.setattr("img2prompt.train.epochs.read_record", logger["logged_read"])
        single = one_process(shards, tmp_path / "one")
    cfg = tmp_path / "ddp.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**section(shards), "out": str(tmp_path / "two")}}))
    result = torchrun(tmp_path, cfg, tmp_path / "two_reads")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    steps = len(one["train_loss"])
    assert steps >= 4 and [s for s, _ in two["train_loss"]] == list(range(1, steps + 1))
    for (_, a), (_, b) in zip(one["train_loss"], two["train_loss"], strict=True):
        assert abs(a - b) < 1e-4
    assert_learned({"start loss - end loss": loss_drop(single, 2)}, LEARNING)
    assert len({(tmp_path / "two_reads" / f"weights-{rank}.txt").read_text() for rank in "01"}) == 1

    # The ranks trained on disjoint samples that are together the 1-process run's: one image of each prompt read.
    log = read_log(tmp_path / "two_reads")
    trained = {rank: [k for k in log[(rank, "main")][0] if int(prompt_of(k)[1:]) % 5] for rank in "01"}
    assert len(trained["0"]) == len(trained["1"]) == steps * 8
    keys = trained["0"] + trained["1"]
    assert len(keys) == len(set(keys)) == len({prompt_of(k) for k in keys})
    assert sorted(keys) == sorted(k for (_, w), runs in read_log(tmp_path / "one_reads").items() if w != "main"
                                  for k in runs[0])

    # Each rank scored half of the val split; gathered, the scores are those of one process scoring all of it.
    val = {rank: {k for k in log[(rank, "main")][0] if int(prompt_of(k)[1:]) % 5 == 0} for rank in "01"}
    assert len(val["0"]) == len(val["1"]) == 12 and not val["0"] & val["1"]
    rescored = validate(Regressor.from_pretrained(tmp_path / "two"), ShardIndex.build([shards]), "val", 64,
                        torch.device("cpu"))
    assert two["val_count"] == rescored["val_count"] == 24
    assert two["val_mean_cosine"] == pytest.approx(rescored["val_mean_cosine"], abs=1e-6)
    assert two["val_per_source"] == pytest.approx(rescored["val_per_source"], abs=1e-6)
    assert abs(one["val_mean_cosine"] - two["val_mean_cosine"]) < 1e-3
