"""FSDP through the shipped accelerate config, on the CPU: two gloo processes of torch's ``fully_shard``.

One run is killed after its first checkpoint and started again; it must resume from the gathered state and end
on the loss curve of one process with the same data slots (2 loader workers accumulating 2 batches of 8: the
same two slots' batches per optimizer step as the two ranks', see test_train_ddp.py; only float summation order
differs), with the weight EMA sharded alongside, and its ``model.safetensors`` must reproduce the validation score
that the sharded in-memory model reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml

from img2prompt.errors import Img2PromptError
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.train.config import TrainConfig
from img2prompt.train.index import ShardIndex
from img2prompt.train.sharding import check_lora_shardable, enable_fsdp_on_cpu
from img2prompt.train.trainer import train
from img2prompt.train.validation import validate
from learning import Bar, assert_learned, loss_drop
from test_train_data import make_color_shards

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"
STEPS = 12


@pytest.fixture(autouse=True)
def no_sharded_state_outlives_a_test():
    """accelerate's state is one per process, shared by every later training here: no test may leave it FSDP."""
    yield
    from accelerate.state import AcceleratorState, is_initialized
    from accelerate.utils import DistributedType

    assert not is_initialized() or AcceleratorState().distributed_type != DistributedType.FSDP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def losses(run: Path) -> list[float]:
    return [loss for _, loss in json.loads((run / "metrics.json").read_text())["train_loss"]]


def section(shards: Path, seed: int = 0) -> dict:
    return {
        "seed": seed, "log_with": [], "plots": False, "save_every": 2, "grad_checkpointing": True,
        "model": {"backbone": "vit_l_14_336", "pretrained": False, "tiny": True, "image_size": 28},
        "data": {"shards": [str(shards)], "batch_size": 16, "shuffle_buffer": 32},
        "optim": {"lr": 3e-3, "max_steps": STEPS, "warmup_steps": 1},
        "finetune": {"ema_decay": 0.8},
    }


def one_process(shards: Path, out: Path, seed: int = 0) -> Path:
    """The sharded run's reference: 2 loader workers accumulating 2 batches of 8 (the two ranks' slots)."""
    base = section(shards, seed)
    return train(TrainConfig.model_validate({**base, "out": str(out), "data": {**base["data"], "batch_size": 8,
                                                                                "num_workers": 2},
                                             "optim": {**base["optim"], "grad_accum": 2}}))


# The runs learn (the sharded run follows this one to 1e-4). Bar: the worst of 5 seeds x {1, 2} threads
# (benchmarks/learning_margins.py), minus a margin; start and end losses are means of 3 of the 12 steps.
LEARNING = {"start loss - end loss": Bar(0.1, worst=0.1834)}


def measure(seed: int, root: Path) -> dict[str, float]:
    shards = make_color_shards(root / "shards", n_prompts=120, size=28, seed=seed)
    return {"start loss - end loss": loss_drop(one_process(shards, root / "one", seed), 3)}


def test_two_process_fsdp_resumes_after_a_kill_onto_the_one_process_curve(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "img2prompt").exists() or not (bin_dir / "accelerate").exists():
        pytest.skip("the img2prompt and accelerate console scripts are not installed beside this Python")
    shards = make_color_shards(tmp_path / "shards", n_prompts=120, size=28)
    single = one_process(shards, tmp_path / "one")

    out = tmp_path / "fsdp"
    cfg = tmp_path / "fsdp.yaml"
    cfg.write_text(yaml.safe_dump({"train": {**section(shards), "out": str(out)}}))
    command = [str(bin_dir / "accelerate"), "launch", "--config_file",
               str(ACCELERATE_CONFIGS / "fsdp_vit_l_14_336.yaml"), "--num_processes", "2",
               "--main_process_port", str(free_port()),
               str(bin_dir / "img2prompt"), "train", str(cfg), "--set", "train.data.batch_size=8"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "state.pt"
    deadline = time.monotonic() + 240
    while not state.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    launcher = psutil.Process(killed.pid)
    tree = [*launcher.children(recursive=True), launcher]  # both ranks and the launcher
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    killed.wait()
    psutil.wait_procs(tree, timeout=30)
    assert state.exists()
    stopped_at = torch.load(state, weights_only=True)["run"]["step"]
    assert 2 <= stopped_at < STEPS

    command[command.index("--main_process_port") + 1] = str(free_port())
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 process(es) (FSDP-sharded)" in done.stdout
    assert f"resumed at optimizer step {stopped_at}" in done.stdout, done.stdout

    one = json.loads((single / "metrics.json").read_text())
    two = json.loads((out / "metrics.json").read_text())
    assert [s for s, _ in two["train_loss"]] == list(range(1, STEPS + 1))
    np.testing.assert_allclose(losses(out), losses(single), atol=1e-4)
    assert_learned({"start loss - end loss": loss_drop(single, 3)}, LEARNING)
    assert abs(one["val_mean_cosine"] - two["val_mean_cosine"]) < 1e-3

    # model.safetensors (the gathered EMA weights) scores what the sharded EMA model scored in memory.
    exported = Regressor.from_pretrained(out)
    rescored = validate(exported, ShardIndex.build([shards]), "val", 64, torch.device("cpu"))
    assert rescored["val_mean_cosine"] == pytest.approx(two["val_mean_cosine"], abs=1e-6)
    probe = torch.randn(4, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(exported(probe), Regressor.from_pretrained(single)(probe), atol=1e-3, rtol=0)


@pytest.mark.parametrize("path", sorted(ACCELERATE_CONFIGS.glob("fsdp_*.yaml")), ids=lambda p: p.stem)
def test_fsdp_config_wraps_every_block_of_its_backbone(path: Path) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    from img2prompt.models.backbones import build_backbone

    settings = yaml.safe_load(path.read_text())
    fsdp = settings["fsdp_config"]
    assert settings["distributed_type"] == "FSDP" and fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT" and not fsdp["fsdp_activation_checkpointing"]
    backbone = path.stem.removeprefix("fsdp_")
    assert any((REPO / "configs" / "train" / folder / f"{backbone}_stage1.yaml").exists() for folder in ("", "plus"))
    module, spec = build_backbone(backbone, pretrained=False, tiny=True)
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=2, auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"],
        transformer_cls_names_to_wrap=fsdp["fsdp_transformer_layer_cls_to_wrap"].split(","))
    plugin.set_auto_wrap_policy(module)
    policy = fsdp2_prepare_auto_wrap_policy(plugin, module)
    wrapped = {id(m) for m in module.modules() if policy(m)}
    containers = torch.nn.ModuleList | torch.nn.Sequential
    listed = spec.blocks(module)
    top = [b for b in listed if not isinstance(b, containers)]
    kinds = {type(b) for b in top}  # a block grouped with its neighbours (a stage's downsample) is still a block
    grouped = [m for b in listed if isinstance(b, containers) for m in b if type(m) in kinds]
    blocks = {id(b) for b in top + grouped}
    assert wrapped == blocks and len(blocks) >= 2


def test_fsdp_is_switched_on_for_cpu_processes_only_when_the_launcher_asks(monkeypatch) -> None:
    from accelerate.utils import DistributedType

    class State:
        distributed_type = DistributedType.MULTI_CPU
        fsdp_plugin = None

    class FakeAccelerator:
        state = State()

        @property
        def distributed_type(self):
            return self.state.distributed_type

    accelerator = FakeAccelerator()
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    enable_fsdp_on_cpu(accelerator, "no")
    assert accelerator.distributed_type == DistributedType.MULTI_CPU
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    enable_fsdp_on_cpu(accelerator, "bf16")
    assert accelerator.distributed_type == DistributedType.FSDP
    assert accelerator.state.fsdp_plugin.mixed_precision_policy.param_dtype == torch.bfloat16


def test_lora_on_multihead_attention_is_refused_under_fsdp_in_one_line() -> None:
    def lora_model(backbone: str) -> Regressor:
        model = Regressor(ModelConfig(backbone=backbone, pretrained=False, tiny=True, image_size=28))
        model.add_lora(rank=2, alpha=32)
        return model

    with pytest.raises(Img2PromptError, match=r"nn\.MultiheadAttention"):
        check_lora_shardable(lora_model("vit_l_14_336"))
    check_lora_shardable(lora_model("blip2_qformer"))  # Linear projections: sharded fine (checked by hand)
