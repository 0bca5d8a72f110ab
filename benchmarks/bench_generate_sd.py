"""Stable Diffusion 2 generation speed: naive vs each speed switch vs all together, FLOPs and GPU-days.

The SD2 architecture at real size (865M-parameter UNet, 84M VAE, 340M OpenCLIP-H text encoder) is built
from configs with random weights: speed and FLOPs depend on the architecture only. For each variant the
script times whole pipeline calls (text encoder, denoising loop with classifier-free guidance, VAE decode)
through the stage's own ``DiffusionGenerator``; FLOPs per image are counted with
``torch.utils.flop_counter`` on the meta device; the UNet is also timed alone to get the fraction of the
card's bf16 dense peak it reaches. The last lines project GPU-days for the 10.6M images of the winning
recipe.

On an H100:  python benchmarks/bench_generate_sd.py --arch sd2 --device cuda --sizes 512 768
On a CPU (a tiny twin, to prove the script runs):  python benchmarks/bench_generate_sd.py --arch tiny --device cpu
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from img2prompt.generate.diffusion import DiffusionConfig, DiffusionGenerator, configure_pipeline
from img2prompt.generate.random_sd import ARCHITECTURES, build_random_pipeline

IMAGES_TO_MAKE = 10_600_000
# Dense bf16 tensor-core peaks (no sparsity), from NVIDIA's data sheets.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "H100 NVL": 835.0,
                    "H200": 989.4, "A100": 312.0, "L40S": 362.0}
NAIVE = "naive (fp32, eager attention, DDIM, batch 1)"
PROMPT = "two red foxes and a bicycle on a beach at sunset, pixel art, highly detailed"


def variants(args: argparse.Namespace, half: str) -> dict[str, tuple[dict, int]]:
    """name -> (DiffusionConfig changes over the naive recipe, batch size)."""
    naive = {"dtype": "fp32", "attention": "eager", "scheduler": "ddim", "steps": args.naive_steps}
    fast_steps = {"scheduler": "dpmsolver++", "steps": args.fast_steps}
    together = {"dtype": half, "attention": "sdpa", **fast_steps, "channels_last": True, "compile": args.compile}
    table = {
        NAIVE: (naive, 1),
        f"{half}": ({**naive, "dtype": half}, 1),
        "SDPA attention": ({**naive, "attention": "sdpa"}, 1),
        f"DPM-Solver++ {args.fast_steps} steps": ({**naive, **fast_steps}, 1),
        f"batch {args.batch}": (naive, args.batch),
        "channels_last": ({**naive, "channels_last": True}, 1),
        "torch.compile": ({**naive, "compile": True}, 1),
        f"VAE slicing (batch {args.batch})": ({**naive, "vae_slicing": True}, args.batch),
        "VAE tiling": ({**naive, "vae_tiling": True}, 1),
        "tiny VAE decoder": ({**naive, "tiny_vae": "TINY_VAE"}, 1),
        "all, full VAE": (together, args.batch),
        "all + tiny VAE": ({**together, "tiny_vae": "TINY_VAE"}, args.batch),
    }
    if not args.compile:
        table.pop("torch.compile")
    return table


def save_tiny_vae(arch: str, folder: Path) -> str:
    """A TAESD-shaped ``AutoencoderTiny`` (random weights; the real one is ``madebyollin/taesd``)."""
    from diffusers import AutoencoderTiny

    kwargs = {} if arch == "sd2" else {"encoder_block_out_channels": (16, 16), "decoder_block_out_channels": (16, 16),
                                       "num_encoder_blocks": (1, 1), "num_decoder_blocks": (1, 1)}
    AutoencoderTiny(**kwargs).save_pretrained(folder)
    return str(folder)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(base, changes: dict, batch: int, size: int, device: torch.device, repeats: int,
                      tiny_vae: str) -> float:
    changes = {k: (tiny_vae if v == "TINY_VAE" else v) for k, v in changes.items()}
    cfg = DiffusionConfig(**changes, batch_size=batch, device=str(device))
    pipe = configure_pipeline(copy.deepcopy(base), cfg, device)
    generator = DiffusionGenerator(cfg, size, pipe=pipe)
    prompts, seeds = [PROMPT] * batch, list(range(batch))
    generator.generate(prompts, seeds)  # warm-up: kernels, autotuning, compilation
    synchronize(device)
    began = time.perf_counter()
    for _ in range(repeats):
        generator.generate(prompts, seeds)
    synchronize(device)
    rate = batch * repeats / (time.perf_counter() - began)
    del generator, pipe
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def flops_per_image(arch: str, size: int, steps: int) -> dict[str, float]:
    """FLOPs of one image with classifier-free guidance (UNet and text encoder see a batch of 2)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_cfg, vae_cfg, text_cfg = ARCHITECTURES[arch]
    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**unet_cfg).eval(), AutoencoderKL(**vae_cfg).eval()
        text = CLIPTextModel(CLIPTextConfig(**text_cfg)).eval()
    latent = size // 2 ** (len(vae_cfg["block_out_channels"]) - 1)
    width = unet_cfg["cross_attention_dim"]
    counts = {}
    with torch.no_grad():
        for name, run in [
            ("unet_step", lambda: unet(torch.empty(2, 4, latent, latent, device="meta"),
                                       torch.tensor([500, 500], device="meta"),
                                       encoder_hidden_states=torch.empty(2, 77, width, device="meta"))),
            ("vae_decode", lambda: vae.decode(torch.empty(1, 4, latent, latent, device="meta"))),
            ("text_encoder", lambda: text(torch.zeros(2, 77, dtype=torch.long, device="meta"))),
        ]:
            with FlopCounterMode(display=False) as counter:
                run()
            counts[name] = float(counter.get_total_flops())
    counts["image"] = steps * counts["unet_step"] + counts["vae_decode"] + counts["text_encoder"]
    return counts


def unet_tflops(base, size: int, batch: int, device: torch.device, half: str, compile_unet: bool,
                unet_step_flops: float, repeats: int) -> float:
    """Achieved TFLOP/s of the UNet alone (batch x 2 for guidance) in the fastest settings."""
    from img2prompt.generate.diffusion import torch_dtype

    dtype = torch_dtype(half)
    unet = copy.deepcopy(base.unet).to(device=device, dtype=dtype).to(memory_format=torch.channels_last).eval()
    if compile_unet:
        unet = torch.compile(unet)
    latent = size // base.vae_scale_factor
    x = torch.randn(2 * batch, 4, latent, latent, device=device, dtype=dtype)
    t = torch.full((2 * batch,), 500, device=device)
    context = torch.randn(2 * batch, 77, base.unet.config.cross_attention_dim, device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(2):
            unet(x, t, encoder_hidden_states=context)
        synchronize(device)
        began = time.perf_counter()
        for _ in range(repeats):
            unet(x, t, encoder_hidden_states=context)
        synchronize(device)
    seconds = (time.perf_counter() - began) / repeats
    return unet_step_flops * batch / seconds / 1e12


def cached_weights() -> list[str]:
    """Pretrained diffusion weights already on this machine (hub caches), if any."""
    roots = {Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub",
             Path(os.environ.get("HF_HUB_CACHE", Path.home() / ".cache" / "huggingface" / "hub")),
             Path.home() / ".cache" / "torch", Path("/root/.cache/huggingface/hub")}
    found = []
    for root in sorted(roots):
        if root.is_dir():
            found += sorted(str(p) for p in root.iterdir() if "diffusion" in p.name.lower() or "taesd" in p.name)
    return found


def peak_tflops(device: torch.device, given: float | None) -> tuple[str, float | None]:
    if device.type != "cuda":
        return "cpu", given
    name = torch.cuda.get_device_name(device)
    if given:
        return name, given
    return name, next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="sd2")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 768])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--naive-steps", type=int, default=50)
    parser.add_argument("--fast-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--only", nargs="*", help="substrings of the variant names to run (default: all)")
    parser.add_argument("--peak-tflops", type=float, help="bf16 dense peak, if the card is not in the table")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    parser.add_argument("--flops-only", action="store_true",
                        help="count FLOPs per image on the meta device (no timing, no GPU needed)")
    args = parser.parse_args()
    if args.flops_only:
        for size in args.sizes:
            for steps in (args.naive_steps, args.fast_steps):
                counts = flops_per_image(args.arch, size, steps)
                print(json.dumps({"arch": args.arch, "size": size, "steps": steps,
                                  **{f"tflop_{k}": round(v / 1e12, 4) for k, v in counts.items()}}))
        return

    device = torch.device(args.device)
    half = "fp16" if device.type == "cuda" else "bf16"
    card, peak = peak_tflops(device, args.peak_tflops)
    print(f"device: {card}; torch {torch.__version__}; cached diffusion weights: {cached_weights() or 'none'}")
    results: dict = {"device": card, "arch": args.arch, "bf16_peak_tflops": peak, "naive_steps": args.naive_steps,
                     "fast_steps": args.fast_steps, "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = build_random_pipeline(args.arch, Path(tmp) / "tokenizer")
        tiny_vae = save_tiny_vae(args.arch, Path(tmp) / "taesd")
        for size in args.sizes:
            rows = {}
            for name, (changes, batch) in variants(args, half).items():
                if args.only and not any(part in name for part in args.only):
                    continue
                rows[name] = images_per_second(base, changes, batch, size, device, args.repeats, tiny_vae)
                print(json.dumps({"size": size, "variant": name, "images_per_s": round(rows[name], 4)}), flush=True)
            flops = flops_per_image(args.arch, size, args.fast_steps)
            naive_flops = flops_per_image(args.arch, size, args.naive_steps)["image"]
            achieved = unet_tflops(base, size, args.batch, device, half, args.compile and device.type == "cuda",
                                   flops["unet_step"], args.repeats)
            naive = rows.get(NAIVE)
            best = max(rows.values()) if rows else None
            entry = {
                "images_per_s": rows,
                "speedup_best_vs_naive": best / naive if best and naive else None,
                "tflop_per_image_fast": flops["image"] / 1e12, "tflop_per_image_naive": naive_flops / 1e12,
                "tflop_per_unet_step": flops["unet_step"] / 1e12,
                "unet_tflops_achieved": achieved,
                "unet_fraction_of_bf16_peak": achieved / peak if peak else None,
                "gpu_days_for_10.6M_images": {k: IMAGES_TO_MAKE / v / 86400 for k, v in rows.items()},
            }
            results["sizes"][size] = entry
            print(json.dumps({"size": size, **{k: v for k, v in entry.items() if k != "images_per_s"}}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict) -> None:
    for size, entry in results["sizes"].items():
        print(f"\n{results['arch']} at {size} px on {results['device']} (DDIM {results['naive_steps']} steps, "
              f"DPM-Solver++ {results['fast_steps']})")
        print("| variant | images/s | x naive | GPU-days for 10.6M |\n|---|---|---|---|")
        rates = entry["images_per_s"]
        naive = rates.get(NAIVE)
        for name, rate in rates.items():
            ratio = f"{rate / naive:.2f}" if naive else "-"
            print(f"| {name} | {rate:.3f} | {ratio} | {entry['gpu_days_for_10.6M_images'][name]:.0f} |")
        fraction = entry["unet_fraction_of_bf16_peak"]
        print(f"TFLOP per image: {entry['tflop_per_image_naive']:.3f} (naive steps), "
              f"{entry['tflop_per_image_fast']:.3f} (fast steps); UNet {entry['unet_tflops_achieved']:.3f} TFLOP/s"
              + (f" = {100 * fraction:.1f}% of the bf16 peak" if fraction else ""))


if __name__ == "__main__":
    main()
