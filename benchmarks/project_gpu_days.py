"""GPU-days of a chained recipe (configs/recipe/full.yaml by default), step by step, from its own configs.

Images per shard set come from the recipe's generate configs (their tier and images per prompt) and the number
of hq and lq prompts; samples per training stage from the shard set the stage reads (one image per prompt per
epoch) and its epochs. FLOPs are counted, never guessed: per image for SD2 at the config's size and steps
(``bench_generate_sd``'s counter on the meta device) and per training sample for each stage config, by building
the real-size model of the config with random weights, applying its LoRA / frozen blocks as the trainer does,
and running one forward + backward under ``torch.utils.flop_counter`` on fake tensors (no compute, no GPU),
plus the forward again where the config recomputes activations (``grad_checkpointing``). Two of torch's
formulas are replaced (``FORMULAS``): it counts a grouped (depthwise) convolution's backward as a dense one (a
768-channel 7x7 depthwise conv: 43 MFLOP forward, 33 GFLOP backward), and it has none for the CPU attention
kernel that open_clip's ``nn.MultiheadAttention`` reaches on fake tensors, so ViT attention went uncounted.
The rate that turns FLOPs into days is the measured one where a benchmark's JSON is given
(``bench_generate_sd.py --out``; ``bench_train_gpu.py --configs <the recipe's train configs> --json``), else an
assumed fraction of the card's dense bf16 peak, and the table says which.

    python benchmarks/project_gpu_days.py                          # assumed 40% of an H100's bf16 peak
    python benchmarks/project_gpu_days.py --recipe configs/recipe/one_gpu.yaml --hq-prompts 5e5 --lq-prompts 0
    python benchmarks/project_gpu_days.py --generate-json gen.json --train-json train.jsonl   # measured
    python benchmarks/project_gpu_days.py --set generate.size=768 --set generate.diffusion.save_size=512  # options

Each training row also gives the stage's trained share (the parameters that train, LoRA adapters counted, over
all parameters), as ``img2prompt train`` prints it at the start of the run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from bench_generate_sd import flops_per_image
from img2prompt.generate.run import GenerateConfig
from img2prompt.models.heads import cosine_loss
from img2prompt.models.regressor import Regressor
from img2prompt.recipe.config import RecipeConfig
from img2prompt.sections import load_section
from img2prompt.train.config import TrainConfig
from img2prompt.train.optim import apply_finetune, trainable_summary

ROOT = Path(__file__).resolve().parents[1]
H100_BF16_PEAK = 989.4e12
SECONDS_PER_DAY = 86400


def _conv_backward(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                   _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """Each gradient asked for (input, weight) costs what the forward did; the weight's shape already holds the
    grouping (a depthwise conv's weight is [C, 1, k, k])."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def _cpu_attention(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


ATEN = torch.ops.aten
FORMULAS = {ATEN.convolution_backward: _conv_backward,
            ATEN._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
            ATEN._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward}


def train_flops_per_sample(config) -> tuple[float, float]:
    """Model FLOPs of one training sample for a stage's ``train`` section (forward + backward, plus the recomputed
    forward under gradient checkpointing), and its trained share."""
    model = Regressor(config.model, pretrained=False).train()
    apply_finetune(model, config.finetune)
    trained, total = trainable_summary(model)
    size = model.image_size
    forward, backward = FlopCounterMode(display=False, custom_mapping=FORMULAS), FlopCounterMode(
        display=False, custom_mapping=FORMULAS)
    batch = 2  # BatchNorm in the FC block needs more than one sample
    with FakeTensorMode(allow_non_fake_inputs=True):
        with forward:
            loss = cosine_loss(model(torch.randn(batch, 3, size, size)), torch.randn(batch, 384))
        with backward:
            loss.backward()
    passes = forward.get_total_flops() * (2 if config.grad_checkpointing else 1) + backward.get_total_flops()
    return passes / batch, trained / total


def section_overrides(overrides: list[str], section: str) -> list[str]:
    """The ``--set`` items of one config section (each config gets those of the section it has)."""
    return [item for item in overrides if item.split(".", 1)[0] == section]


def measured_train_rates(path: Path | None) -> dict[tuple[str, str], float]:
    """samples/s per (backbone, train config) from ``bench_train_gpu.py --configs ... --json`` lines (the mode of
    such a line is the config's path, as the recipe names it)."""
    if path is None:
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(row["backbone"], row["mode"]): row["samples_per_s"] for row in rows}


def measured_generate_rate(path: Path | None, size: int) -> float | None:
    """Images/s of the fastest variant at ``size`` from ``bench_generate_sd.py --out``."""
    if path is None:
        return None
    entry = json.loads(path.read_text())["sizes"].get(str(size))
    return max(entry["images_per_s"].values()) if entry else None


def duration(count: float, flops: float, measured: float | None, assumed_rate: float, assumed: str,
             unit: str) -> tuple[float, str]:
    """Seconds for ``count`` items of ``flops`` each: at the measured items/s when there is one, else at the
    assumed FLOP rate; and the label that says which."""
    if measured:
        return count / measured, f"measured {measured:.2f} {unit}"
    return count * flops / assumed_rate, assumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, default=ROOT / "configs/recipe/full.yaml")
    parser.add_argument("--hq-prompts", type=float, default=2.0e6)
    parser.add_argument("--lq-prompts", type=float, default=6.6e6, help="10.6M images - 2 x hq")
    parser.add_argument("--mfu", type=float, default=0.40, help="assumed fraction of the bf16 peak")
    parser.add_argument("--peak-tflops", type=float, default=H100_BF16_PEAK / 1e12)
    parser.add_argument("--generate-json", type=Path)
    parser.add_argument("--train-json", type=Path)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override every generate or train config, e.g. generate.size=768")
    args = parser.parse_args()
    assumed_rate = args.mfu * args.peak_tflops * 1e12
    recipe = load_section(args.recipe, "recipe", RecipeConfig)
    prompts = {"hq": args.hq_prompts, "lq": args.lq_prompts}

    print("| step | samples | TFLOP per sample | trained | rate | GPU-days |\n|---|---|---|---|---|---|")
    total = 0.0
    tier_of: dict[Path, list[str]] = {}
    for path in recipe.generate:
        gen = load_section(ROOT / path, "generate", GenerateConfig, section_overrides(args.overrides, "generate"))
        tiers = gen.tiers or sorted(prompts)
        tier_of[Path(gen.out)] = tiers
        images = sum(prompts[t] * gen.images_per_prompt[t] for t in tiers)
        gen_flops = flops_per_image("sd2", gen.size, gen.diffusion.steps)["image"]
        seconds, label = duration(images, gen_flops, measured_generate_rate(args.generate_json, gen.size),
                                  assumed_rate, f"assumed {args.mfu:.0%} MFU", "img/s")
        total += seconds
        print(f"| generate {Path(gen.out).name} ({'+'.join(tiers)}): SD2 {gen.size} px, {gen.diffusion.scheduler} "
              f"{gen.diffusion.steps} steps, {gen.diffusion.dtype} "
              f"| {images / 1e6:.2f}M images | {gen_flops / 1e12:.1f} | | {label} | {seconds / SECONDS_PER_DAY:.2f} |",
              flush=True)

    rates = measured_train_rates(args.train_json)
    for name, stages in recipe.models.items():
        for number, path in enumerate(stages, start=1):
            config = load_section(ROOT / path, "train", TrainConfig, section_overrides(args.overrides, "train"))
            backbone, method = config.model.backbone, config.finetune.method
            flops, share = train_flops_per_sample(config)
            # One random image per prompt per epoch: an epoch is one pass over the prompts of its shard sets.
            samples = config.optim.epochs * sum(prompts[t] for s in config.data.shards for t in tier_of[Path(s)])
            seconds, label = duration(samples, flops, rates.get((backbone, path)),
                                      assumed_rate, f"assumed {args.mfu:.0%} MFU", "samples/s")
            total += seconds
            print(f"| train {name} stage {number} ({method}, {config.model.image_size} px, {config.optim.epochs} "
                  f"epoch(s)) | {samples / 1e6:.2f}M | {flops / 1e12:.3f} | {share:.1%} | {label} | "
                  f"{seconds / SECONDS_PER_DAY:.2f} |",
                  flush=True)
    print(f"| **total** | | | | | **{total / SECONDS_PER_DAY:.2f}** |")


if __name__ == "__main__":
    main()
