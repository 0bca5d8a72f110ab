"""``Trainer``: one training run with accelerate (one process per device; DDP under ``torchrun`` or ``accelerate
launch``, FSDP2 with an FSDP accelerate config), with validation each epoch, atomic checkpoints and exact resume.

``Trainer(config)`` builds the run: accelerator, data, model surgery, optimizer, EMA, ``prepare``. ``fit()``
resumes from ``state.pt`` when the run folder has one, then loops over ``step`` (one micro-batch), ``validate``
(each epoch end) and ``save``. ``train(config)`` is ``Trainer(config).fit()``.

The run folder is itself a checkpoint (``config.yaml``, ``model.safetensors``, ``metrics.json``) plus ``state.pt``
(model, optimizer, schedule, EMA and RNG state, position in the epoch), ``curves.png`` and the trackers' logs
(TensorBoard under ``tb/``). ``state.pt`` is replaced atomically every ``save_every`` optimizer steps and at each
epoch end; a killed run started again resumes from it and ends with the same weights, bit for bit, as a run
that was never stopped. A resumed run may change only the settings in ``config.RESUMABLE``, and needs the same
number of processes and the same training shards (``config.layout_changes``).

Data (``index``, ``epochs``, ``data``): each (loader worker, rank) slot reads its own shards, so every sample is read
once per epoch; every rank validates its share of the val split and all ranks gather the same scores (``validation``).

accelerate keeps its state once per process, so one process trains with one precision: the CLI runs one
training per process, and a second training in the same process that asks for another precision is refused.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from img2prompt.errors import fail
from img2prompt.files import atomic_path
from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import Regressor
from img2prompt.train.config import TrainConfig, layout_changes
from img2prompt.train.data import (
    BadSamples,
    build_train_transform,
    checked_batches,
    train_loader,
)
from img2prompt.train.epochs import TrainPlan
from img2prompt.train.index import ShardIndex
from img2prompt.train.optim import apply_finetune, build_optimizer, trainable_summary
from img2prompt.train.setup import build_accelerator, check_config, init_from_checkpoint
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
from img2prompt.train.state import STATE_NAME, Run, plot_curves, read_state
from img2prompt.train.validation import validate

# The W&B project and MLflow experiment; TensorBoard writes to <out>/tb/<this>.
TRACKER_PROJECT = "img2prompt"


def train(config: TrainConfig) -> Path:
    """Train a regressor as configured; returns the checkpoint directory (``config.out``)."""
    return Trainer(config).fit()


class Trainer:
    """One training run: ``Trainer(config).fit()``."""

    def __init__(self, config: TrainConfig):
        from accelerate.utils import set_seed

        check_config(config)
        self.config = config
        self.out = Path(config.out)
        self._saved = read_state(self.out / STATE_NAME, config)  # checked before the (slow) build, loaded after
        self.resolved = config.model_dump(mode="json")
        self.accelerator = build_accelerator(config)
        enable_fsdp_on_cpu(self.accelerator, config.precision)
        self.sharded = is_sharded(self.accelerator)
        self.device = self.accelerator.device
        set_seed(config.seed)
        self.index, self.val_index = self._build_indexes()
        self.baseline = self.index.mean_embedding("train")
        self.layout = torch.channels_last if config.channels_last else torch.contiguous_format
        self.plan = TrainPlan(self.index, batch_size=config.data.batch_size, shuffle_buffer=config.data.shuffle_buffer,
                              seed=config.seed, world_size=self.accelerator.num_processes,
                              num_workers=config.data.num_workers)
        accum = config.optim.grad_accum
        self.total = config.optim.max_steps or sum(math.ceil(self.plan.steps(epoch) / accum)
                                                   for epoch in range(config.optim.epochs))
        model = self._build_model()
        self.transform = build_train_transform(model.image_size, model.spec.mean, model.spec.std,
                                               config.data.augment)
        # The raw optimizer holds the state that state.pt keeps; accelerate's wrapper of it takes the steps.
        self.raw_optimizer, self.scheduler = build_optimizer(model, config.optim, config.finetune, self.total,
                                                             steps_per_epoch=math.ceil(self.plan.steps(0) / accum))
        self.ema = self._build_ema(model)
        self.ddp_model, self.optimizer = self.accelerator.prepare(model, self.raw_optimizer)
        self.model: Regressor = self.accelerator.unwrap_model(self.ddp_model)
        if self.ema is not None and self.sharded:
            self.ema.module = shard_like_model(self.accelerator, self.ema.module)
        self.run = Run()
        self.bad = BadSamples(config.data.max_bad_share)  # this rank's skipped samples
        self._rng: dict[str, Any] | None = None  # a resumed run's saved RNG state, until put back
        self._loss_sum = torch.zeros((), device=self.device)  # summed micro-batch losses of the open group
        self._micro = 0  # micro-batches in the open accumulation group
        self.seen = 0  # training samples (all ranks) this process has trained on, for samples/s

    # ------------------------------------------------------------------ build

    def _build_indexes(self) -> tuple[ShardIndex, ShardIndex]:
        """The training index and the validation one (the val rows of ``val_shards``, or the training index).

        Every rank must plan from the same shards; a resumed run from the shards and processes it started with.
        """
        data, accelerator = self.config.data, self.accelerator
        rank, world = accelerator.process_index, accelerator.num_processes
        index = ShardIndex.build(data.shards, verify=data.verify, rank=rank, world_size=world)
        val_index = (ShardIndex.build(data.val_shards, splits={"val"}, verify=data.verify, rank=rank,
                                      world_size=world) if data.val_shards else index)
        self.launch = {"processes": world, "train_shards": index.fingerprint()}
        if world > 1:
            from accelerate.utils import gather_object

            if len(set(gather_object([self.launch["train_shards"]]))) > 1:
                raise fail(data.shards[0], "the ranks found different shards (is a generate run still adding some?)")
        if self._saved is not None:
            changed = layout_changes(self._saved.get("layout"), self.launch)
            if changed:
                raise fail(self.out / STATE_NAME, f"written by a run of another layout ({', '.join(changed)}): a "
                           "resumed run needs the same processes and training shards; use a new out or delete state.pt")
        return index, val_index

    def _build_model(self) -> Regressor:
        """The regressor after its surgery: start weights, LoRA, frozen blocks, checkpointing, memory layout."""
        config, ft = self.config, self.config.finetune
        # Stage 2 overwrites every weight with stage 1's, so the pretrained weights are not even read.
        model = Regressor(config.model, pretrained=False if config.init_from else None)
        if config.init_from:
            init_from_checkpoint(model, config.init_from)
        else:
            model.head.start_at(torch.from_numpy(self.baseline))
        apply_finetune(model, ft)
        if ft.method == "lora" and self.sharded:
            check_lora_shardable(model)
        if config.grad_checkpointing:
            model.set_grad_checkpointing(True)
        return model.to(memory_format=self.layout)

    def _build_ema(self, model: Regressor):
        """timm's weight EMA, copied before ``prepare`` (FSDP cannot copy a sharded model) and sharded alike."""
        if self.config.finetune.ema_decay <= 0:
            return None
        from timm.utils import ModelEmaV3

        # foreach updates would mix sharded parameters (DTensors) and plain buffers in one call
        return ModelEmaV3(model, decay=self.config.finetune.ema_decay, device=self.device, foreach=not self.sharded)

    # ------------------------------------------------------------------ the loop

    @property
    def per_epoch(self) -> int:
        """Micro-batches of each rank in the current epoch (the plan caches each epoch's deal)."""
        return self.plan.steps(self.run.epoch)

    def fit(self) -> Path:
        """Resume when ``state.pt`` is there, train to the last optimizer step, validate and save; returns ``out``."""
        from tqdm.auto import tqdm

        config, run = self.config, self.run
        self.resume()
        self.accelerator.init_trackers(
            TRACKER_PROJECT, init_kwargs={"wandb": {"name": self.out.name}, "mlflow": {"run_name": self.out.name}})
        self._announce()
        started = time.perf_counter()
        # closed on an error too, so the one-line error is not printed at the end of the bar
        with tqdm(total=self.total, initial=run.step, disable=not self.accelerator.is_main_process, desc="train",
                  unit="step") as bar:
            while run.step < self.total:
                self.ddp_model.train()
                for pixels, targets in self._epoch_batches():
                    loss = self.step(pixels, targets)
                    if loss is None:  # inside an accumulation group
                        continue
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", epoch=run.epoch)
                    if run.step % config.log_every == 0 or run.step == self.total:
                        self.accelerator.log({"train/loss": loss, "train/lr": self.scheduler.get_last_lr()[-1]},
                                             step=run.step)
                    if run.step >= self.total:
                        break
                    if config.save_every and run.step % config.save_every == 0 and run.batch < self.per_epoch:
                        self.save()
                if run.batch >= self.per_epoch:
                    self.validate()
                    run.epoch, run.batch = run.epoch + 1, 0
                    self.bad.in_epoch = 0
                    self.save()
        elapsed = time.perf_counter() - started
        if run.batch > 0 or not run.vals or run.vals[-1][0] != run.step:
            self.validate()
        if self.seen:  # a finished run started again trains nothing and keeps its measured rate
            run.metrics["samples_per_second"] = self.seen / elapsed
        self.save()
        self.accelerator.end_training()
        return self.out

    def _epoch_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of this epoch's micro-batches of this rank.

        Starting a DataLoader iterator draws its base seed from torch's global RNG. A resumed run puts its saved
        RNG state back where the saved run took it: after that draw when it was saved mid-epoch, before it when
        it was saved at an epoch end. Every later draw (dropout, drop-connect) is then the uninterrupted run's.
        The epoch's plan draws from numpy generators of its own, never from torch's.
        """
        run, data = self.run, self.config.data
        stream = self.plan.stream(run.epoch, self.accelerator.process_index, run.batch, self.transform,
                                  data.on_bad_sample)
        loader = train_loader(stream, data.num_workers)
        if run.batch == 0:
            self._restore_rng()
        batches = iter(loader)
        self._restore_rng()
        return checked_batches(batches, self.bad, self.per_epoch * data.batch_size)

    def step(self, pixels: torch.Tensor, targets: torch.Tensor) -> float | None:
        """One micro-batch: forward and backward, then the optimizer step if it closes its accumulation group.

        An epoch's micro-batches form groups of ``grad_accum`` (its last group may be shorter). Each loss is
        divided by its group's size, so the group's summed gradients are those of one batch of all its samples;
        DDP all-reduces only on a group's last micro-batch. Returns the group's mean loss after an optimizer step.
        """
        run, accum = self.run, self.config.optim.grad_accum
        group_start = (run.batch // accum) * accum
        group = min(accum, self.per_epoch - group_start)
        sync = run.batch + 1 == group_start + group
        with nullcontext() if sync else self.accelerator.no_sync(self.ddp_model):
            pred = self.ddp_model(pixels.to(self.device, memory_format=self.layout))
            loss = cosine_loss(pred, targets.to(self.device), self.config.optim.mse_weight)
            self.accelerator.backward(loss / group)
        self._loss_sum += loss.detach()
        self._micro += 1
        run.batch += 1
        self.seen += pixels.shape[0] * self.accelerator.num_processes
        return self._optimizer_step() if sync else None

    def _optimizer_step(self) -> float:
        """Clip, step the optimizer, the schedule and the EMA; record the group's loss (mean over ranks)."""
        clip = self.config.optim.clip_grad
        if clip > 0:
            self.accelerator.clip_grad_norm_(self.ddp_model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model, step=self.run.step)
        self.run.step += 1
        mean_loss = self.accelerator.reduce(self._loss_sum / self._micro, "mean").item()
        self._loss_sum.zero_()
        self._micro = 0
        self.run.losses.append([self.run.step, mean_loss])
        return mean_loss

    def validate(self) -> dict[str, Any]:
        """Score the model (its EMA when there is one) on the val split, each rank its share; every rank records
        the same gathered result, so all make the same decisions."""
        accelerator, run = self.accelerator, self.run
        accelerator.wait_for_everyone()
        scored = self.ema.module if self.ema is not None else self.model
        result = validate(scored, self.val_index, "val", self.config.eval_batch_size, self.device, self.baseline,
                          on_bad_sample=self.config.data.on_bad_sample)
        if not result:
            return result
        run.metrics.update(result)
        run.vals.append([run.step, result["val_mean_cosine"]])
        if accelerator.is_main_process:
            print(f"epoch {run.epoch}: val mean cosine {result['val_mean_cosine']:.4f} "
                  f"(constant-mean baseline {result['baseline_mean_cosine']:.4f}, n={result['val_count']})")
        accelerator.log({"val/mean_cosine": result["val_mean_cosine"],
                         **{f"val/{source}": score for source, score in result["val_per_source"].items()}},
                        step=run.step)
        return result

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> None:
        """Write ``state.pt`` and the checkpoint (the EMA weights when there is an EMA, LoRA merged), atomically.

        Every rank takes part: gathering the state is a collective under FSDP; rank 0 writes.
        """
        from accelerate.utils import gather_object

        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        self.run.bad = gather_object([[self.bad.total, self.bad.in_epoch]])
        self.run.metrics["bad_samples"] = sum(total for total, _ in self.run.bad)
        # Each rank's own generators (its dropout and drop-path masks), put back on that rank on resume.
        cuda = self.device.type == "cuda"
        rng = gather_object([{"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(self.device) if cuda
                              else None}])
        model_state, optimizer_state = full_state(self.model, self.raw_optimizer)
        ema_state = full_model_state(self.ema.module) if self.ema is not None else None
        if accelerator.is_main_process:
            state = {
                "config": self.resolved,
                "layout": self.launch,
                "run": self.run.to_dict(),
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(),
                "ema": ema_state,
                "rng": rng,  # one entry per rank
                "metrics": self.run.metrics,
            }
            # through a Python file, so a failed write (a full disk) surfaces as its OSError, not torch's bare
            # "enforce fail at inline_container.cc", and atomic_path names the file and the cause
            with atomic_path(self.out / STATE_NAME) as tmp, tmp.open("wb") as handle:
                torch.save(state, handle)
            self._export(ema_state if self.ema is not None else model_state)
        accelerator.wait_for_everyone()

    def _export(self, gathered: dict[str, Any]) -> None:
        """The checkpoint files: config.yaml, model.safetensors, metrics.json (and adapter/), curves.png."""
        run = self.run
        exported = self.ema.module if self.ema is not None else self.model
        if self.sharded:
            exported = self._unsharded_copy(gathered)
        exported.save_pretrained(self.out, metrics={**run.metrics, "step": run.step, "epoch": run.epoch,
                                                    "train_loss": run.losses, "val_curve": run.vals},
                                 train_config={k: v for k, v in self.resolved.items() if k != "model"})
        if self.config.plots:
            plot_curves(self.out / "curves.png", run)

    def _unsharded_copy(self, model_state: dict[str, Any]) -> Regressor:
        """A plain model holding the gathered weights of a sharded one, to write ``model.safetensors`` from.

        Built under a forked RNG: its random init must not move the run's RNG, or saving would change the run.
        """
        with torch.random.fork_rng(devices=[]):
            plain = Regressor(self.config.model, pretrained=False)
            apply_finetune(plain, self.config.finetune)
        plain.load_state_dict(model_state)
        return plain.eval()

    def resume(self) -> None:
        """Continue from ``state.pt`` when the run folder had one: weights, optimizer, schedule, EMA, position and
        curves; its RNG state is put back when the loop reaches the saved position (``_epoch_batches``)."""
        state, self._saved = self._saved, None
        if state is None:
            return
        load_full_state(self.model, self.raw_optimizer, state["model"], state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            load_full_model_state(self.ema.module, state["ema"])
        self.run.load(state["run"])
        self.run.metrics = dict(state["metrics"])
        if self.run.bad:
            self.bad.total, self.bad.in_epoch = self.run.bad[self.accelerator.process_index]
        self._rng = state["rng"][self.accelerator.process_index]

    def _restore_rng(self) -> None:
        """Put a resumed run's saved RNG state back (once)."""
        if self._rng is None:
            return
        torch.set_rng_state(self._rng["cpu"])
        if self._rng["cuda"] is not None:
            torch.cuda.set_rng_state(self._rng["cuda"], self.device)
        self._rng = None

    def _announce(self) -> None:
        if not self.accelerator.is_main_process:
            return
        trained, n_params = trainable_summary(self.model)
        processes, plan = self.accelerator.num_processes, self.plan
        print(f"train: trained share {trained / n_params:.1%} ({trained:,} of {n_params:,} parameters train: LoRA "
              "adapters count, frozen weights do not)")
        print(f"train: {plan.prompts} training prompts,"
              f" {plan.steps(self.run.epoch)} batches/epoch x {processes} process(es)"
              f"{' (FSDP-sharded)' if self.sharded else ''},"
              f" {self.total} optimizer steps")
        print(f"train: {len(self.index.urls)} shards dealt to {plan.workers} loader worker(s) x {processes} "
              f"process(es); {plan.deal(self.run.epoch).left_out} of epoch {self.run.epoch}'s samples left out, so "
              "every rank takes the same steps")
        run = self.run
        if run.step:
            print(f"train: resumed at optimizer step {run.step} (epoch {run.epoch}, batch {run.batch})")


