"""The shard loader: index without decoding, one image per prompt per epoch, rank/worker/resume invariants.

``make_color_shards`` is also the fixture of the training tests: each prompt is a (colour, size) pair drawn
as a square, and its target is the normalised sum of one random vector per colour and per size, so an
image determines its target and a model can learn it while the constant-mean baseline cannot.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2prompt.errors import Img2PromptError
from img2prompt.shards import Manifest, Sample, sample_key, write_shard
from img2prompt.train.data import AugmentConfig, ShardIndex, TrainStream, build_train_transform, choose_images

COLOURS = [(230, 40, 40), (40, 200, 60), (40, 70, 230), (240, 220, 40), (200, 60, 220), (40, 220, 220)]
SIZES = [0.3, 0.5, 0.7, 0.9]  # side of the square as a fraction of the image


def color_targets(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(len(COLOURS), 384)), rng.normal(size=(len(SIZES), 384))


def draw(colour: int, extent: int, size: int, rng: np.random.Generator) -> Image.Image:
    pixels = rng.integers(90, 130, size=(size, size, 3)).astype(np.uint8)
    side = round(SIZES[extent] * size)
    x, y = rng.integers(0, size - side + 1, size=2)
    pixels[y:y + side, x:x + side] = COLOURS[colour]
    return Image.fromarray(pixels, "RGB")


def make_color_shards(folder: Path, n_prompts: int = 96, images_per_prompt: int = 2, shard_size: int = 40,
                      size: int = 48, seed: int = 0, val_every: int = 5) -> Path:
    """Shards + manifest of colour/size prompts; every ``val_every``-th prompt is in the ``val`` split."""
    colour_vecs, size_vecs = color_targets(seed)
    rng = np.random.default_rng(seed + 1)
    samples = []
    for i in range(n_prompts):
        colour, extent = i % len(COLOURS), (i // len(COLOURS)) % len(SIZES)
        target = colour_vecs[colour] + size_vecs[extent] + 0.3 * rng.normal(size=384)
        target = (target / np.linalg.norm(target)).astype(np.float32)
        prompt_id = f"p{i:05d}"
        split = "val" if i % val_every == 0 else "train"
        source = "small" if extent < 2 else "large"
        for k in range(images_per_prompt):
            meta = {"prompt_id": prompt_id, "prompt": f"colour {colour} size {extent}", "source": source,
                    "split": split, "seed": k}
            samples.append(Sample(sample_key(prompt_id, k), draw(colour, extent, size, rng), meta, target))
    manifest = Manifest(folder)
    for start in range(0, len(samples), shard_size):
        entry = write_shard(folder / f"shard-{start // shard_size:05d}.tar", samples[start:start + shard_size],
                            image_format="png")
        manifest.record(entry)
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_color_shards(tmp_path_factory.mktemp("shards"))


def stream(index: ShardIndex, **kw) -> TrainStream:
    transform = build_train_transform(32, (0.5,) * 3, (0.5,) * 3, AugmentConfig())
    args = {"batch_size": 8, "shuffle_buffer": 50, "seed": 3, "rank": 0, "world_size": 1, "num_workers": 0}
    return TrainStream(index, transform, **(args | kw))


def test_index_reads_targets_and_splits_without_decoding_images(shards: Path) -> None:
    index = ShardIndex.build([shards])
    assert len(index.urls) == 5 and len(index.records) == 192
    assert len(index.images_per_prompt("train")) == 76 and len(index.images_per_prompt("val")) == 20
    assert {r.source for r in index.records} == {"small", "large"}
    norms = np.linalg.norm(np.stack([r.embedding for r in index.records]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_one_image_per_prompt_and_a_new_pick_each_epoch(shards: Path) -> None:
    images = ShardIndex.build([shards]).images_per_prompt("train")
    first, second = choose_images(images, 0, 0), choose_images(images, 0, 1)
    assert len(first) == len(images) == len(second)
    assert {key.rsplit("-", 1)[0] for key in first} == set(images)
    assert first != second and first == choose_images(images, 0, 0)


def test_two_ranks_split_each_global_batch_of_one_rank(shards: Path) -> None:
    index = ShardIndex.build([shards])
    single = list(stream(index, batch_size=16))
    rank0 = list(stream(index, rank=0, world_size=2))
    rank1 = list(stream(index, rank=1, world_size=2))
    assert len(single) == len(rank0) == len(rank1) == 76 // 16
    for whole, a, b in zip(single, rank0, rank1, strict=True):
        assert torch.equal(whole[0], torch.cat([a[0], b[0]])) and torch.equal(whole[1], torch.cat([a[1], b[1]]))


def test_skip_resumes_the_epoch_exactly_and_epochs_differ(shards: Path) -> None:
    index = ShardIndex.build([shards])
    full = list(stream(index))
    resumed = stream(index)
    resumed.set_position(0, 3)
    tail = list(resumed)
    assert len(tail) == len(full) - 3
    for a, b in zip(full[3:], tail, strict=True):
        assert torch.equal(a[0], b[0])
    later = stream(index)
    later.set_position(1, 0)
    assert not torch.equal(next(iter(later))[1], full[0][1])


def test_workers_deal_global_batches_round_robin(shards: Path) -> None:
    from torch.utils.data import DataLoader

    index = ShardIndex.build([shards])
    reference = list(stream(index))
    two = stream(index, num_workers=2)
    batches = list(DataLoader(two, batch_size=None, num_workers=2))
    assert len(batches) == two.steps_per_epoch == 8
    for a, b in zip(reference, batches, strict=False):
        assert torch.equal(a[1], b[1])


def test_too_few_prompts_and_broken_shards_fail_naming_the_file(shards: Path, tmp_path: Path) -> None:
    index = ShardIndex.build([shards])
    with pytest.raises(Img2PromptError, match="fewer than one global batch"):
        stream(index, batch_size=64, world_size=2)
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        json_path = tmp_path / "x-0.json"
        json_path.write_text('{"prompt_id": "x"}')
        tar.add(json_path, arcname="x-0.json")
    with pytest.raises(Img2PromptError, match=r"broken\.tar: sample x-0 has no emb\.npy"):
        ShardIndex.build([broken])
    with pytest.raises(Img2PromptError, match="not a shard folder"):
        ShardIndex.build([tmp_path / "nowhere"])
