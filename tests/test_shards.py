"""Shards: atomic writes, a manifest that survives a torn line, exact round trips of every member, an index
beside each shard whose byte ranges read back exactly what streaming the tar gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from img2prompt.errors import Img2PromptError
from img2prompt.shards import (
    Manifest,
    Sample,
    find_shards,
    index_path,
    iter_records,
    iter_samples,
    prompt_hash,
    read_index,
    read_record,
    sample_key,
    write_shard,
)


def samples(n: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [
        Sample(
            key=sample_key(f"p{i:03d}", i % 2),
            image=Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)),
            meta={"prompt_id": f"p{i:03d}", "prompt": f"prompt {i}", "seed": i},
            embedding=rng.normal(size=384).astype(np.float32),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("fmt", ["webp", "png"])
def test_lossless_round_trip(tmp_path, fmt):
    written = samples(3)
    entry = write_shard(tmp_path / "000000.tar", written, image_format=fmt)
    Manifest(tmp_path).record(entry)
    assert entry["count"] == 3 and not list(tmp_path.glob("*.tmp"))
    read = list(iter_samples(find_shards(tmp_path)))
    assert [s.key for s in read] == [s.key for s in written]
    for a, b in zip(read, written, strict=True):
        assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
        np.testing.assert_array_equal(a.embedding, b.embedding)
        assert a.meta == b.meta


def test_same_samples_give_identical_bytes(tmp_path):
    one = write_shard(tmp_path / "a.tar", samples(2))
    two = write_shard(tmp_path / "b.tar", samples(2))
    assert one["sha256"] == two["sha256"]


def test_manifest_ignores_torn_last_line_and_lists_only_finished(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.record(write_shard(tmp_path / "000000.tar", samples(2)))
    (tmp_path / "000001.tar.tmp").write_bytes(b"half a shard")
    with manifest.path.open("a") as handle:
        handle.write('{"shard": "000001.tar", "cou')
    assert manifest.finished() == {"000000.tar"}
    assert manifest.total() == 2
    assert [p.name for p in find_shards(tmp_path)] == ["000000.tar"]


def test_missing_or_empty_shard_folders_fail_cleanly(tmp_path):
    with pytest.raises(Img2PromptError, match="no finished shards"):
        find_shards(tmp_path)
    Manifest(tmp_path).record({"shard": "gone.tar", "count": 1, "sha256": "x"})
    with pytest.raises(Img2PromptError, match="missing"):
        find_shards(tmp_path)
    with pytest.raises(Img2PromptError, match="not a shard folder"):
        find_shards(tmp_path / "nothing.tar")


def test_the_index_beside_a_shard_reads_each_sample_by_its_byte_range(tmp_path):
    written = samples(5)
    for sample, split in zip(written, ["train", "val", "train", "test", "train"], strict=True):
        sample.meta.update(split=split, source="a" if split == "train" else "b")
    entry = write_shard(tmp_path / "000000.tar", written, image_format="webp")
    assert entry["bytes"] == (tmp_path / "000000.tar").stat().st_size
    index = read_index(index_path(tmp_path / "000000.tar"))
    assert index.meta == {"version": 1, "shard": "000000.tar", "bytes": entry["bytes"], "sha256": entry["sha256"],
                          "count": 5, "splits": ["train", "val", "test"], "sources": ["a", "b"]}
    assert index.pid.tolist() == [prompt_hash(s.meta["prompt_id"]) for s in written]
    assert index.k.tolist() == [0, 1, 0, 1, 0] and index.split.tolist() == [0, 1, 0, 2, 0]
    np.testing.assert_allclose(index.sums[0], sum(s.embedding.astype(np.float64) for s in written[::2]))
    streamed = list(iter_records([tmp_path / "000000.tar"]))
    for raw, offset, size in zip(streamed, index.offset, index.size, strict=True):
        assert read_record(tmp_path / "000000.tar", int(offset), int(size)) == raw
