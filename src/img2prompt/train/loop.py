"""``train(config) -> checkpoint dir``: the accelerate training loop (one process per device, DDP under
``torchrun`` or ``accelerate launch``), with validation each epoch, atomic checkpoints and exact resume.

The run folder is itself a checkpoint (``config.yaml``, ``model.safetensors``, ``metrics.json``) plus
``state.pt`` (model, optimizer, schedule, EMA and RNG state, position in the epoch), ``curves.png`` and
TensorBoard logs under ``tb/``. ``state.pt`` is replaced atomically every ``save_every`` optimizer steps and
at each epoch end; a killed run started again with the same config resumes from it and produces the same
loss curve as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from img2prompt.config import StrictModel, load_section
from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.train.data import DataConfig, ShardIndex, TrainStream, build_train_transform, iter_eval_batches
from img2prompt.train.data import train_loader as make_loader
from img2prompt.train.optim import FinetuneConfig, OptimConfig, build_optimizer, freeze_blocks, trainable_summary
from img2prompt.train.sharding import (
    check_lora_shardable,
    enable_fsdp_on_cpu,
    full_model_state,
    full_state,
    is_sharded,
    load_full_model_state,
    load_full_state,
    shard_like_model,
)

STATE_NAME = "state.pt"


class TrainConfig(StrictModel):
    """The ``train:`` section of a config file."""

    out: str = "runs/train"
    init_from: str | None = None  # a stage-1 checkpoint dir to start from (stage 2: LQ -> HQ)
    seed: int = 0
    precision: Literal["no", "bf16", "fp16"] = "no"
    grad_checkpointing: bool = False
    # NHWC weights and activations: CNNs run several times faster on the CPU (oneDNN) and with AMP on GPUs.
    channels_last: bool = False
    save_every: int = 0  # optimizer steps between checkpoints; 0: at each epoch end only
    log_every: int = 10
    eval_batch_size: int = 64
    tensorboard: bool = True
    plots: bool = True
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    finetune: FinetuneConfig = FinetuneConfig()


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    return load_section(TrainConfig, "train", path, overrides)


def init_from_checkpoint(model: Regressor, path: str | Path) -> None:
    """Stage 2 starts from the stage-1 weights; the architectures must match."""
    source = Regressor.from_pretrained(path)
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    if missing or unexpected:
        raise fail(path, f"stage-1 weights do not fit this model (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}): use the same model section")


@torch.no_grad()
def evaluate(model: Regressor, index: ShardIndex, split: str, batch_size: int, device: torch.device,
             baseline: np.ndarray | None = None) -> dict[str, Any]:
    """Mean cosine of ``model`` on one image per prompt of ``split``, overall and per source."""
    was_training = model.training
    model.eval()
    cosines, sources = [], []
    base = []
    for pixels, targets, names in iter_eval_batches(index, split, model.image_transform, batch_size):
        pred = model(pixels.to(device)).float().cpu()
        targets = F.normalize(targets, dim=-1)
        cosines.append((pred * targets).sum(dim=-1))
        if baseline is not None:
            base.append(targets @ torch.from_numpy(baseline))
        sources += names
    model.train(was_training)
    if not cosines:
        return {}
    scores = torch.cat(cosines).numpy()
    per_source = {s: float(scores[[n == s for n in sources]].mean()) for s in sorted(set(sources))}
    result = {"val_mean_cosine": float(scores.mean()), "val_per_source": per_source, "val_count": len(scores)}
    if baseline is not None:
        result["baseline_mean_cosine"] = float(torch.cat(base).mean())
    return result


class Run:
    """Position and curves of a run: what ``state.pt`` needs beyond the tensors."""

    def __init__(self) -> None:
        self.epoch = 0
        self.batch = 0  # micro-batches done in the current epoch
        self.step = 0  # optimizer steps done
        self.losses: list[list[float]] = []  # [step, mean train loss]
        self.vals: list[list[float]] = []  # [step, val mean cosine]
        self.metrics: dict[str, Any] = {}

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batch": self.batch, "step": self.step, "losses": self.losses,
                "vals": self.vals}

    def load(self, data: dict[str, Any]) -> None:
        self.epoch, self.batch, self.step = int(data["epoch"]), int(data["batch"]), int(data["step"])
        self.losses, self.vals = data["losses"], data["vals"]


def train(config: TrainConfig) -> Path:
    """Train a regressor as configured; returns the checkpoint directory (``config.out``)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import broadcast_object_list, set_seed
    from tqdm.auto import tqdm

    if not config.data.shards:
        raise fail("train.data.shards", "no shard folders given")
    if config.precision == "fp16" and not torch.cuda.is_available():
        # accelerate would quietly train in fp32 and the run would be mislabelled.
        raise fail("train.precision", "fp16 needs a CUDA GPU; use bf16 or no on the CPU")
    out = Path(config.out)
    # One process may train several times (stage 1 then stage 2, tests): drop the previous run's precision
    # settings but keep the distributed state.
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision=config.precision, cpu=not torch.cuda.is_available())
    enable_fsdp_on_cpu(accelerator, config.precision)
    sharded = is_sharded(accelerator)
    main = accelerator.is_main_process
    set_seed(config.seed)
    index = ShardIndex.build(config.data.shards)
    val_index = ShardIndex.build(config.data.val_shards) if config.data.val_shards else index
    baseline = index.mean_embedding("train")
    # Stage 2 overwrites every weight with stage 1's, so the pretrained weights are not even read.
    model = Regressor(config.model, pretrained=False if config.init_from else None)
    if config.init_from:
        init_from_checkpoint(model, config.init_from)
    else:
        model.head.start_at(torch.from_numpy(baseline))
    ft = config.finetune
    if ft.method == "lora":
        model.add_lora(ft.lora_rank, ft.lora_alpha, ft.lora_dropout)
        if sharded:
            check_lora_shardable(model)
    freeze_blocks(model, ft.freeze_blocks)
    if config.grad_checkpointing:
        model.set_grad_checkpointing(True)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=layout)

    transform = build_train_transform(model.image_size, model.spec.mean, model.spec.std, config.data.augment)
    stream = TrainStream(index, transform, batch_size=config.data.batch_size,
                         shuffle_buffer=config.data.shuffle_buffer, seed=config.seed,
                         rank=accelerator.process_index, world_size=accelerator.num_processes,
                         num_workers=config.data.num_workers)
    accum = config.optim.grad_accum
    per_epoch = stream.steps_per_epoch
    steps_per_epoch = math.ceil(per_epoch / accum)
    total = config.optim.max_steps or config.optim.epochs * steps_per_epoch
    raw_optimizer, scheduler = build_optimizer(model, config.optim, ft, total)
    ema = None
    if ft.ema_decay > 0:  # copied before sharding (FSDP cannot copy a sharded model), then sharded alike
        from timm.utils import ModelEmaV3

        # foreach updates would mix sharded parameters (DTensors) and plain buffers in one call
        ema = ModelEmaV3(model, decay=ft.ema_decay, device=accelerator.device, foreach=not sharded)
    ddp_model, optimizer = accelerator.prepare(model, raw_optimizer)
    model = accelerator.unwrap_model(ddp_model)
    if ema is not None and sharded:
        ema.module = shard_like_model(accelerator, ema.module)

    run = Run()
    resolved = config.model_dump(mode="json")
    _resume(out / STATE_NAME, resolved, run, model, raw_optimizer, scheduler, ema)
    writer = _tensorboard(out, config) if main else None
    trainable, n_params = trainable_summary(model)
    if main:
        print(f"train: {n_params:,} parameters ({trainable:,} trainable), {len(stream.images)} training prompts,"
              f" {per_epoch} batches/epoch x {accelerator.num_processes} process(es)"
              f"{' (FSDP-sharded)' if sharded else ''}, {total} optimizer steps")
        if run.step:
            print(f"train: resumed at optimizer step {run.step} (epoch {run.epoch}, batch {run.batch})")

    def save() -> None:
        accelerator.wait_for_everyone()
        # Every rank: gathering is a collective under FSDP; rank 0 gets the full tensors.
        model_state, optimizer_state = full_state(model, raw_optimizer)
        ema_state = full_model_state(ema.module) if ema is not None else None
        if main:
            _save_state(out / STATE_NAME, resolved, run, model_state, optimizer_state, scheduler, ema_state)
            exported = ema.module if ema is not None else model
            if sharded:
                exported = _unsharded_copy(config, ema_state if ema is not None else model_state)
            exported.save_pretrained(out, metrics={**run.metrics, "step": run.step, "epoch": run.epoch,
                                                 "train_loss": run.losses, "val_curve": run.vals},
                                   train_config={k: v for k, v in resolved.items() if k != "model"})
            if config.plots:
                _plot(out / "curves.png", run)
        accelerator.wait_for_everyone()

    def validate() -> None:
        accelerator.wait_for_everyone()
        result: dict[str, Any] = {}
        if main or sharded:  # sharded weights: every rank takes part in each forward pass
            scored = ema.module if ema is not None else model
            result = evaluate(scored, val_index, "val", config.eval_batch_size, accelerator.device, baseline)
        if accelerator.num_processes > 1:  # every rank keeps the same record, so all make the same decisions
            result = broadcast_object_list([result])[0]
        if result:
            run.metrics.update(result)
            run.vals.append([run.step, result["val_mean_cosine"]])
        if main and result:
            print(f"epoch {run.epoch}: val mean cosine {result['val_mean_cosine']:.4f} "
                  f"(constant-mean baseline {result['baseline_mean_cosine']:.4f}, n={result['val_count']})")
            if writer is not None:
                writer.add_scalar("val/mean_cosine", result["val_mean_cosine"], run.step)
                for source, score in result["val_per_source"].items():
                    writer.add_scalar(f"val/{source}", score, run.step)

    bar = tqdm(total=total, initial=run.step, disable=not main, desc="train", unit="step")
    started, seen = time.perf_counter(), 0
    running, micro = torch.zeros((), device=accelerator.device), 0
    while run.step < total:
        stream.set_position(run.epoch, run.batch)
        ddp_model.train()
        for pixels, targets in make_loader(stream, config.data.num_workers):
            group_start = (run.batch // accum) * accum
            group = min(accum, per_epoch - group_start)
            sync = run.batch + 1 == group_start + group
            with nullcontext() if sync else accelerator.no_sync(ddp_model):
                pred = ddp_model(pixels.to(accelerator.device, memory_format=layout))
                loss = cosine_loss(pred, targets.to(accelerator.device), config.optim.mse_weight)
                accelerator.backward(loss / group)
            running += loss.detach()
            micro += 1
            run.batch += 1
            seen += pixels.shape[0] * accelerator.num_processes
            if not sync:
                continue
            if config.optim.clip_grad > 0:
                accelerator.clip_grad_norm_(ddp_model.parameters(), config.optim.clip_grad)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model, step=run.step)
            run.step += 1
            mean_loss = accelerator.reduce(running / micro, "mean").item()
            running.zero_()
            micro = 0
            run.losses.append([run.step, mean_loss])
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}", epoch=run.epoch)
            if writer is not None and (run.step % config.log_every == 0 or run.step == total):
                writer.add_scalar("train/loss", mean_loss, run.step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[-1], run.step)
            if run.step >= total:
                break
            if config.save_every and run.step % config.save_every == 0 and run.batch < per_epoch:
                save()
        if run.batch >= per_epoch:
            validate()
            run.epoch, run.batch = run.epoch + 1, 0
            save()
    bar.close()
    elapsed = time.perf_counter() - started
    if run.batch > 0 or not run.vals or run.vals[-1][0] != run.step:
        validate()
    if seen:  # a finished run started again trains nothing and keeps its measured rate
        run.metrics["samples_per_second"] = seen / elapsed
    save()
    if writer is not None:
        writer.close()
    accelerator.end_training()
    return out


def _tensorboard(out: Path, config: TrainConfig):
    if not config.tensorboard:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tb"))


def _unsharded_copy(config: TrainConfig, model_state: dict) -> Regressor:
    """A plain model holding the gathered weights of a sharded one, to write ``model.safetensors`` from."""
    plain = Regressor(config.model, pretrained=False)
    ft = config.finetune
    if ft.method == "lora":
        plain.add_lora(ft.lora_rank, ft.lora_alpha, ft.lora_dropout)
    plain.load_state_dict(model_state)
    return plain.eval()


def _save_state(path: Path, resolved: dict, run: Run, model_state: dict, optimizer_state: dict, scheduler,
                ema_state: dict | None) -> None:
    state = {
        "config": resolved,
        "run": run.to_dict(),
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "ema": ema_state,
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "metrics": run.metrics,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _resume(path: Path, resolved: dict, run: Run, model, optimizer, scheduler, ema) -> None:
    if not path.exists():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, never unpickle arbitrary objects
        raise fail(path, f"unreadable training state ({str(exc).splitlines()[0]}); delete it to start over") from None
    if state["config"] != resolved:
        raise fail(path, "written by a different train config: use a new out or delete state.pt")
    load_full_state(model, optimizer, state["model"], state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        load_full_model_state(ema.module, state["ema"])
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"]:
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    run.load(state["run"])
    run.metrics = dict(state["metrics"])


def _plot(path: Path, run: Run) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if run.losses:
        steps, losses = zip(*run.losses, strict=True)
        left.plot(steps, losses)
    left.set(title="train loss (1 - cosine)", xlabel="optimizer step")
    if run.vals:
        steps, scores = zip(*run.vals, strict=True)
        right.plot(steps, scores, marker="o", label="model")
    if "baseline_mean_cosine" in run.metrics:
        right.axhline(run.metrics["baseline_mean_cosine"], color="grey", linestyle="--",
                      label="constant-mean baseline")
        right.legend()
    right.set(title="validation mean cosine", xlabel="optimizer step")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
