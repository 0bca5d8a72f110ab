"""Issue 13: the training data path at 10.6M images, measured on the CPU.

1. Index: RSS and load time of a rank's ``ShardIndex`` over a synthetic 10.6M-sample shard set (2M HQ prompts x 2
   images + 6.6M LQ prompts x 1, 1,000 samples a shard: fake index files beside sparse tars of the real size, no
   images), then one epoch's plan for 8 ranks x 8 loader workers. Measured in a fresh process, so RSS is the
   index's and the imports', nothing else's.
2. A missing index (a shard written before index files): building it, sha256 and member scan, per shard.
3. Decode + transform per CPU core: 512 px lossless WebP (``shards.encode_image(..., fast=True)``, the recipe's
   format) of the Kaggle sample images (SD2 at 512 px; from ../shared when present), read back by byte range,
   decoded and put through the train transform at 336 px, one thread: the loader worker's whole job per sample.
4. Cores per H100: the samples/s of one H100 training ``configs/train/vit_l_14_336_stage1.yaml`` from the FLOPs
   per sample that ``project_gpu_days.py`` counts, at an ASSUMED 40% of the 989 TFLOP/s bf16 peak (no GPU here),
   divided by (3).

    python benchmarks/bench_train_data.py                # all four (the 10.6M fake shard set needs ~340 MB disk)
    python benchmarks/bench_train_data.py --flops 1.047e12 --hq-prompts 2e5 --lq-prompts 6.6e5   # quicker
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT.parent / "shared" / "data" / "kaggle_sample" / "images"
STAGE1 = ROOT / "configs" / "train" / "vit_l_14_336_stage1.yaml"
H100_BF16_PEAK = 989.4e12
PER_SHARD = 1000


def fake_shard_set(folder: Path, prompts: int, images: int, splits: dict[str, float], seed: int) -> int:
    """Index files, a manifest and sparse tars of the real size for ``prompts`` x ``images`` samples; no images."""
    from img2prompt.shards import MANIFEST, ShardColumns, index_path, save_index

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    names, p = list(splits), np.array(list(splits.values()))
    lines, per_shard = [], PER_SHARD // images
    for shard, start in enumerate(range(0, prompts, per_shard)):
        n = min(per_shard, prompts - start)
        size = rng.integers(320_000, 480_000, n * images).astype(np.uint32)  # lossless WebP at 512 px + members
        offset = np.concatenate([[0], np.cumsum(size[:-1], dtype=np.uint64)]).astype(np.uint64)
        name = f"shard-{shard:06d}.tar"
        sha = hashlib.sha256(name.encode()).hexdigest()
        columns = ShardColumns(
            {"version": 1, "shard": name, "bytes": int(size.sum()) + 10240, "sha256": sha, "count": n * images,
             "splits": names, "sources": ["diffusiondb", "coyo", "laion", "llm"]},
            pid=np.repeat(rng.integers(0, 2**63, n, dtype=np.uint64), images),
            k=np.tile(np.arange(images, dtype=np.uint16), n),
            split=np.repeat(rng.choice(len(names), n, p=p).astype(np.uint8), images),
            source=np.repeat(rng.integers(0, 4, n).astype(np.uint16), images),
            offset=offset, size=size, sums=rng.normal(size=(len(names), 384)))
        with index_path(folder / name).open("wb") as handle:  # plain writes: a benchmark's setup need not be atomic
            save_index(columns, handle)
        with (folder / name).open("wb") as handle:
            handle.truncate(columns.meta["bytes"])  # sparse: the size check sees the real size
        lines.append(json.dumps({"shard": name, "count": n * images, "bytes": columns.meta["bytes"], "sha256": sha}))
    (folder / MANIFEST).write_text("\n".join(lines) + "\n")
    return len(lines)


def measure_index(folders: list[str]) -> dict:
    """In a fresh process: RSS before and after the index and one epoch's plan for 8 ranks x 8 workers."""
    import psutil

    from img2prompt.train.epochs import TrainPlan
    from img2prompt.train.index import ShardIndex

    process = psutil.Process()
    before = process.memory_info().rss
    started = time.perf_counter()
    index = ShardIndex.build(folders)
    loaded = time.perf_counter()
    after = process.memory_info().rss
    peak_index = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    plan = TrainPlan(index, batch_size=64, shuffle_buffer=5000, seed=0, world_size=8, num_workers=8)
    dealt = time.perf_counter()
    steps, left_out = plan.steps(0), plan.deal(0).left_out
    dealt = time.perf_counter() - dealt
    streamed = time.perf_counter()
    stream = plan.stream(0, 0, 0, lambda image: image, "skip")
    streamed = time.perf_counter() - streamed
    return {"samples": len(index), "shards": len(index.urls), "load_s": loaded - started,
            "rss_before": before, "rss_index": after, "peak_index": peak_index, "columns": index.nbytes_per_sample(),
            "train_prompts": plan.prompts, "steps": steps, "left_out": left_out, "deal_s": dealt,
            "stream_s": streamed, "rss_plan": process.memory_info().rss,
            "stream_bytes": sum(getattr(r, c).nbytes for r in stream.reads for c in ("shard", "offset", "size", "pid",
                                                                                    "k")),
            "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def sample_images() -> tuple[list, str]:
    """The Kaggle sample images (SD2, 512 px), or a stand-in when ../shared is absent (then say so)."""
    from PIL import Image

    paths = sorted(KAGGLE.glob("*.png"))
    if paths:
        return [Image.open(p).convert("RGB") for p in paths], f"{len(paths)} Kaggle sample images (SD2, 512 px)"
    rng = np.random.default_rng(0)
    smooth = rng.normal(size=(16, 16, 3)).repeat(32, 0).repeat(32, 1) * 40 + 128
    noise = rng.normal(size=(512, 512, 3)) * 12
    return [Image.fromarray(np.clip(smooth + noise, 0, 255).astype(np.uint8))], "a synthetic 512 px stand-in"


def measure_decode(folder: Path, samples: int) -> dict:
    """Index build of one real shard, then read + decode + train transform at 336 px on one thread."""
    import torch

    from img2prompt.models.backbones import build_backbone
    from img2prompt.shards import Sample, index_path, sample_key, scan_shard, sha256_file, write_shard
    from img2prompt.train.data import AugmentConfig, build_train_transform
    from img2prompt.train.epochs import Reads
    from img2prompt.train.index import ShardIndex

    torch.set_num_threads(1)
    images, what = sample_images()
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    shard = folder / "shard-000000.tar"
    write_shard(shard, [Sample(sample_key(f"p{i:05d}", 0), images[i % len(images)],
                               {"prompt_id": f"p{i:05d}", "split": "train"}, vector) for i in range(samples)],
                image_format="webp", fast=True)
    index_path(shard).unlink()
    built = []
    for _ in range(3):
        started = time.perf_counter()
        scan_shard(shard, sha256_file(shard))
        built.append(time.perf_counter() - started)
    _, spec = build_backbone("vit_l_14_336", pretrained=False, tiny=True)
    transform = build_train_transform(336, spec.mean, spec.std, AugmentConfig())
    index = ShardIndex.build([shard])
    reads = Reads.of(index, np.arange(len(index)))
    batch, rates, parts = 32, [], {"read": [], "decode": [], "transform": []}
    from img2prompt.shards import record_embedding, record_image

    for _ in range(3):
        for start in range(0, len(reads) - batch + 1, batch):
            began = time.perf_counter()
            reads.decode(range(start, start + batch), transform, "fail")
            rates.append(batch / (time.perf_counter() - began))
    for i in range(len(reads)):  # the same work, timed per step
        t0 = time.perf_counter()
        raw = reads.record(i)
        t1 = time.perf_counter()
        image, _ = record_image(raw), record_embedding(raw)
        t2 = time.perf_counter()
        transform(image)
        t3 = time.perf_counter()
        for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            parts[name].append(seconds)
    return {"images": what, "samples": samples, "shard_mb": shard.stat().st_size / 1e6,
            "build_s": statistics.median(built), "images_per_s": statistics.median(rates),
            **{f"{name}_ms": 1e3 * statistics.median(values) for name, values in parts.items()}}


def stage1_flops_per_sample() -> float:
    """``project_gpu_days.py``'s count for the stage-1 config (its real-size model on fake tensors)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from project_gpu_days import train_flops_per_sample

    return train_flops_per_sample(STAGE1)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hq-prompts", type=float, default=2.0e6)
    parser.add_argument("--lq-prompts", type=float, default=6.6e6)
    parser.add_argument("--decode-samples", type=int, default=224)
    parser.add_argument("--flops", type=float, help="FLOPs per training sample (default: counted, ~1 min)")
    parser.add_argument("--mfu", type=float, default=0.40, help="assumed fraction of the H100's bf16 peak")
    parser.add_argument("--work", type=Path, help="folder for the fake shard set (default: a temporary one)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_index(args.child)))
        return

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        shards = (fake_shard_set(work / "hq", int(args.hq_prompts), 2, {"train": 0.9, "val": 0.05, "test": 0.05}, 0)
                  + fake_shard_set(work / "lq", int(args.lq_prompts), 1, {"train": 1.0}, 1))
        print(f"fake shard set: {shards} shards written in {time.perf_counter() - started:.0f} s", flush=True)
        child = subprocess.run([sys.executable, __file__, "--child", str(work / "hq"), str(work / "lq")],
                               capture_output=True, text=True, check=True)
        index = json.loads(child.stdout.splitlines()[-1])
        decode = measure_decode(work / "decode", args.decode_samples)
    if args.flops is None:
        args.flops = stage1_flops_per_sample()
    h100 = args.mfu * H100_BF16_PEAK / args.flops

    mb, n = 1e6, index["samples"]
    print(f"\n### Index: {n / 1e6:.1f}M samples in {index['shards']:,} shards (fake index files, no images)\n")
    print("| measure | value |\n|---|---|")
    print(f"| index columns | {index['columns']:.0f} bytes/sample ({index['columns'] * n / mb:.0f} MB) |")
    print(f"| RSS after imports | {index['rss_before'] / mb:.0f} MB |")
    grown = (index["rss_index"] - index["rss_before"]) / n
    print(f"| RSS with the index | {index['rss_index'] / mb:.0f} MB (+{grown:.0f} bytes/sample); peak while loading "
          f"{index['peak_index'] / mb:.0f} MB |")
    print(f"| load (index files -> ShardIndex) | {index['load_s']:.1f} s |")
    print(f"| one epoch's deal, 8 ranks x 8 workers | {index['deal_s']:.2f} s: {index['train_prompts'] / 1e6:.2f}M "
          f"training prompts, {index['steps']} steps/rank, {index['left_out']} samples left out "
          f"({index['left_out'] / index['train_prompts']:.3%}) |")
    print(f"| rank 0's reads of that epoch | {index['stream_s']:.2f} s, {index['stream_bytes'] / mb:.0f} MB |")
    print(f"| RSS with the index and the epoch's reads | {index['rss_plan'] / mb:.0f} MB "
          f"(+{(index['rss_plan'] - index['rss_before']) / n:.0f} bytes/sample); peak {index['peak'] / mb:.0f} MB |")
    print(f"\n### Decode + transform, one core ({decode['images']}, 336 px train transform)\n")
    print("| measure | value |\n|---|---|")
    print(f"| building a missing index ({decode['samples']} samples, {decode['shard_mb']:.0f} MB) | "
          f"{decode['build_s'] * 1e3:.0f} ms ({decode['build_s'] / decode['shard_mb'] * 1e3:.1f} s per GB) |")
    print(f"| read by byte range / decode WebP / transform | {decode['read_ms']:.2f} / {decode['decode_ms']:.1f} / "
          f"{decode['transform_ms']:.1f} ms per image |")
    print(f"| read + decode + transform | **{decode['images_per_s']:.1f} images/s per core** |")
    print("\n### Cores to feed one H100 (vit_l_14_336 stage 1)\n")
    print(f"{args.flops / 1e12:.3f} TFLOP per sample; ASSUMED {args.mfu:.0%} of {H100_BF16_PEAK / 1e12:.0f} TFLOP/s "
          f"-> {h100:.0f} samples/s -> **{h100 / decode['images_per_s']:.1f} cores** per H100")


if __name__ == "__main__":
    main()
