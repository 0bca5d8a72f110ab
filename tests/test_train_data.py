"""The shard loader: a compact index without decoding, one image per prompt per epoch, each sample read once per
epoch by one (worker, rank) slot, exact skips on resume, checked shards and skipped bad samples.

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
from torch.utils.data import DataLoader

from img2prompt.errors import Img2PromptError
from img2prompt.shards import Manifest, Sample, index_path, read_labels, sample_key, write_shard
from img2prompt.train.data import AugmentConfig, build_train_transform
from img2prompt.train.epochs import TrainPlan
from img2prompt.train.index import ShardIndex

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


TRANSFORM = build_train_transform(32, (0.5,) * 3, (0.5,) * 3, AugmentConfig())


def plan(index: ShardIndex, **kw) -> TrainPlan:
    args = {"batch_size": 8, "shuffle_buffer": 50, "seed": 3, "world_size": 1, "num_workers": 0}
    return TrainPlan(index, **(args | kw))


def test_index_holds_29_bytes_a_sample_and_the_targets_only_as_sums(shards: Path) -> None:
    index = ShardIndex.build([shards])
    assert len(index.urls) == 5 and len(index) == 192 and all(index_path(u).exists() for u in index.urls)
    assert len(index.first_images("train")) == 76 and len(index.first_images("val")) == 20
    assert set(index.sources) == {"small", "large"} and set(index.images.tolist()) == {2}
    # No per-sample array holds a target: the columns are 29 bytes a sample (the 384-d float32 target is 1,536).
    assert index.nbytes_per_sample() == 29
    labels = [label for url in index.urls for label in read_labels(url)]
    train = np.stack([label.embedding for label in labels if label.meta["split"] == "train"]).astype(np.float64)
    mean = train.mean(axis=0)
    np.testing.assert_allclose(index.mean_embedding("train"), mean / np.linalg.norm(mean), atol=1e-6)
    val = ShardIndex.build([shards], splits={"val"})
    assert len(val) == 40 and len(val.first_images("val")) == 20 and not val.rows_of("train").any()


def test_one_image_per_prompt_and_a_new_pick_each_epoch(shards: Path) -> None:
    index = ShardIndex.build([shards])
    training = plan(index)
    first, second = training.chosen(0), training.chosen(1)
    assert first.sum() == second.sum() == training.prompts == 76
    assert len(set(index.pid[first].tolist())) == 76 and not (first & ~index.rows_of("train")).any()
    assert (first != second).any() and (first == training.chosen(0)).all()
    # A prompt's images take turns: any 2 epochs in a row train on both images of every prompt.
    for epoch in range(3):
        picks = plan(index).chosen(epoch).astype(int) + plan(index).chosen(epoch + 1)
        assert (picks[index.rows_of("train")] == 1).all()


def rows_read(training: TrainPlan, epoch: int, rank: int, skip: int = 0) -> list[list[tuple[int, int]]]:
    """(shard, offset) of every sample each worker of ``rank`` reads in ``epoch``, in order."""
    reads = training.stream(epoch, rank, skip, TRANSFORM, "fail").reads
    return [list(zip(r.shard.tolist(), r.offset.tolist(), strict=True)) for r in reads]


def test_slots_read_disjoint_shards_and_together_the_whole_epoch(shards: Path) -> None:
    index = ShardIndex.build([shards])
    training = plan(index, batch_size=4, world_size=2, num_workers=2)
    for epoch in (0, 1):
        deal = training.deal(epoch)
        slots = [rows for rank in (0, 1) for rows in rows_read(training, epoch, rank)]
        dealt = [s for slot in deal.shards for s in slot]
        assert sorted(dealt) == list(range(5))  # every shard to exactly one slot
        assert all({s for s, _ in rows} <= set(deal.shards[i]) for i, rows in
                   zip([0, 2, 1, 3], slots, strict=True))  # slot = worker * world_size + rank
        read = [sample for rows in slots for sample in rows]
        assert len(read) == len(set(read)) == 4 * deal.batches * 4 == 76 - deal.left_out
        chosen = training.chosen(epoch)
        rows = {(int(index.shard_of(np.array([r]))[0]), int(index.offset[r])) for r in np.flatnonzero(chosen)}
        assert set(read) <= rows
    assert training.deal(0).shards != training.deal(1).shards
    assert training.steps(0) == 2 * training.deal(0).batches


def test_a_resumed_rank_skips_exactly_the_batches_it_trained_on(shards: Path) -> None:
    index = ShardIndex.build([shards])
    training = plan(index, num_workers=2, batch_size=4)
    full = list(DataLoader(training.stream(1, 0, 0, TRANSFORM, "fail"), batch_size=None, num_workers=2))
    assert len(full) == training.steps(1)
    tail = list(DataLoader(training.stream(1, 0, 3, TRANSFORM, "fail"), batch_size=None, num_workers=2))
    assert len(tail) == len(full) - 3
    for a, b in zip(full[3:], tail, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    single = plan(index, batch_size=4)
    assert len(list(single.stream(0, 0, 0, TRANSFORM, "fail"))) == single.steps(0) == 76 // 4


def test_too_few_samples_and_broken_shards_fail_naming_the_file(shards: Path, tmp_path: Path) -> None:
    index = ShardIndex.build([shards])
    with pytest.raises(Img2PromptError, match="fewer than one batch of 64"):
        plan(index, batch_size=64, world_size=2).steps(0)
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tar:
        json_path = tmp_path / "x-0.json"
        json_path.write_text('{"prompt_id": "x"}')
        tar.add(json_path, arcname="x-0.json")
    with pytest.raises(Img2PromptError, match=r"broken\.tar: sample x-0 has no emb\.npy"):
        ShardIndex.build([broken])
    with pytest.raises(Img2PromptError, match="not a shard folder"):
        ShardIndex.build([tmp_path / "nowhere"])
