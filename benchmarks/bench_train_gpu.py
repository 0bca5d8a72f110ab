"""Training throughput and model FLOP utilisation (MFU) per real-size backbone, bf16, full FT and LoRA.

Random weights, synthetic pixels (the data pipeline is not measured): per step one forward, the cosine loss,
backward and an AdamW step, exactly the components ``img2prompt train`` uses. FLOPs per step are counted by
``torch.utils.flop_counter`` on one real step (matmuls, convolutions, attention); MFU is achieved FLOP/s over
the card's dense bf16 peak (H100 SXM: 989 TFLOP/s; pass --peak-tflops for another card).

    python benchmarks/bench_train_gpu.py                       # every backbone, full + lora, on cuda
    python benchmarks/bench_train_gpu.py --only vit_l_14_336 --modes full --batch 64
    python benchmarks/bench_train_gpu.py --tiny --device cpu   # the tiny twins on the CPU: proves it runs
    python benchmarks/bench_train_gpu.py --configs configs/train/vit_l_14_336_stage1.yaml --json train.jsonl

``--configs`` measures stage configs as they train (their resolution, head, fine-tuning and per-GPU batch; the
mode is the config's path): ``project_gpu_days.py --train-json`` takes those rates for those stages.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass

import torch

from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig
from img2prompt.train.optim import FinetuneConfig, OptimConfig, apply_finetune, build_optimizer, trainable_summary

# backbone -> (resolution, per-GPU batch that fits an 80 GB H100 in bf16 without checkpointing)
BACKBONES = {
    "vit_l_14_336": (336, 64),
    "convnext_xxlarge": (384, 32),
    "eva02_large_336": (336, 48),
    "blip2_qformer": (364, 32),
    "efficientnet_lite2": (336, 128),
}


@dataclass
class Result:
    backbone: str
    mode: str
    resolution: int
    batch: int
    params_m: float
    trainable_m: float
    step_ms: float
    samples_per_s: float
    tflop_per_step: float
    achieved_tflops: float
    mfu: float
    device: str


def build(backbone: str, mode: str, *, resolution: int, tiny: bool) -> tuple[Regressor, FinetuneConfig]:
    """A backbone with the 2048-wide FC block, fully trained or under LoRA r16 on every block."""
    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, pretrained=False, tiny=tiny, image_size=None if tiny else resolution,
                         fc_dim=2048)
    model = Regressor(config)
    finetune = FinetuneConfig(method="lora" if mode == "lora" else "full", lora_rank=16)
    apply_finetune(model, finetune)
    return model, finetune


def build_from_config(path: str, *, tiny: bool) -> tuple[Regressor, FinetuneConfig, int]:
    """A stage config's model as it trains (tiny: its tiny twin), its fine-tuning and its per-GPU batch."""
    torch.manual_seed(0)
    train = load_section(path, "train", TrainConfig, ["train.model.pretrained=false", *(
        ["train.model.tiny=true", "train.model.image_size=null"] if tiny else [])])
    model = Regressor(train.model)
    apply_finetune(model, train.finetune)
    model.set_grad_checkpointing(train.grad_checkpointing)
    return model, train.finetune, train.data.batch_size


def measure(model: Regressor, finetune: FinetuneConfig, backbone: str, mode: str, *, batch: int, steps: int,
            warmup: int, device: torch.device, peak_tflops: float, compile_model: bool) -> Result:
    from torch.utils.flop_counter import FlopCounterMode

    model.to(device).train()
    if backbone in ("convnext_xxlarge", "efficientnet_lite2"):  # convnets run faster channels-last
        model.to(memory_format=torch.channels_last)
    optimizer, _ = build_optimizer(model, OptimConfig(lr=1e-5), finetune, steps + warmup)
    trainable, total = trainable_summary(model)
    size = model.image_size
    pixels = torch.randn(batch, 3, size, size, device=device)
    targets = torch.randn(batch, 384, device=device)
    forward = torch.compile(model) if compile_model else model
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def step() -> None:
        with autocast:
            loss = cosine_loss(forward(pixels), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = counter.get_total_flops()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / steps
    achieved = flops / seconds / 1e12
    return Result(backbone, mode, size, batch, total / 1e6, trainable / 1e6, seconds * 1e3, batch / seconds,
                  flops / 1e12, achieved, achieved / peak_tflops, str(device))


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--modes", nargs="*", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--configs", nargs="*", default=[], help="measure these train configs instead")
    parser.add_argument("--batch", type=int, default=None, help="override the per-backbone batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random twins (a CPU smoke run)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the card")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--json", default=None, help="append one JSON line per result to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    results = []
    print("| backbone | mode | px | batch | params (M) | trainable (M) | ms/step | samples/s | TFLOP/step "
          "| TFLOP/s | MFU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [(path, "config") for path in args.configs] or [(b, mode) for b in args.only for mode in args.modes]
    for name, mode in runs:
        if mode == "config":
            model, finetune, batch = build_from_config(name, tiny=args.tiny)
            backbone, mode = model.config.backbone, name
        else:
            backbone, (resolution, batch) = name, BACKBONES[name]
            model, finetune = build(backbone, mode, resolution=resolution, tiny=args.tiny)
        result = measure(model, finetune, backbone, mode, batch=args.batch or (2 if args.tiny else batch),
                         steps=args.steps, warmup=args.warmup, device=device, peak_tflops=args.peak_tflops,
                         compile_model=args.compile)
        results.append(result)
        print(f"| {backbone} | {mode} | {result.resolution} | {result.batch} | {result.params_m:.1f} "
              f"| {result.trainable_m:.1f} | {result.step_ms:.1f} | {result.samples_per_s:.1f} "
              f"| {result.tflop_per_step:.3f} | {result.achieved_tflops:.1f} | {100 * result.mfu:.1f}% |", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(asdict(result)) + "\n")
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return results


if __name__ == "__main__":
    main()
