"""The generation stage: k images per prompt into shards, reproducible bytes, resume after SIGKILL under torchrun."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
import pytest
import yaml

from generate_tables import write_scenes_table
from img2prompt.errors import Img2PromptError
from img2prompt.generate.run import GenerateConfig, generate
from img2prompt.generate.seeds import sample_seed
from img2prompt.shards import Manifest, find_shards, index_path, iter_samples, read_index

CLI = Path(sys.executable).with_name("img2prompt")


def config(tmp_path: Path, out: str = "out", **changes) -> GenerateConfig:
    base = {"prompts": tmp_path / "prompts.parquet", "out": tmp_path / out, "backend": "scenes", "size": 32,
            "samples_per_shard": 4}
    return GenerateConfig(**{**base, **changes})


def test_seeds_are_a_stable_hash_of_prompt_id_and_k():
    # sha256("salt:prompt_id:k"), first 8 bytes, 63 bits: the same on every machine, rank and restart.
    assert sample_seed("0123456789abcdef", 0) == 1754166207442159937
    assert sample_seed("0123456789abcdef", 1) == 2473124127515334537
    assert sample_seed("0123456789abcdef", 0, salt=1) == 3600075771661498188


def test_k_images_per_prompt_with_derived_seeds_and_the_table_targets(tmp_path):
    frame, vectors = write_scenes_table(tmp_path / "prompts.parquet", 12)
    out = generate(config(tmp_path, splits=["train", "val"]))
    samples = list(iter_samples(find_shards(out)))
    chosen = frame[frame.split.isin(["train", "val"])]
    assert len(samples) == sum(2 if t == "hq" else 1 for t in chosen.tier) == Manifest(out).total()
    per_prompt = Counter(s.meta["prompt_id"] for s in samples)
    for _, row in chosen.iterrows():
        assert per_prompt[row.prompt_id] == (2 if row.tier == "hq" else 1)
    row_of = {pid: i for i, pid in enumerate(frame.prompt_id)}
    for sample in samples:
        meta, i = sample.meta, row_of[sample.meta["prompt_id"]]
        assert sample.key == f"{meta['prompt_id']}-{meta['k']}"
        assert meta["seed"] == sample_seed(meta["prompt_id"], meta["k"])
        assert (meta["prompt"], meta["split"], meta["source"]) == (frame.prompt[i], frame.split[i], "scenes")
        assert meta["generator"]["backend"] == "scenes"
        np.testing.assert_array_equal(sample.embedding, vectors[i])
        assert sample.image.size == (32, 32)
    assert len({s.meta["seed"] for s in samples}) == len(samples)
    assert (out / "config.yaml").exists() and (out / "plan.json").exists()
    # Every finished shard has its index beside it, made from the bytes the manifest's sha256 describes.
    for entry in Manifest(out).entries():
        columns = read_index(index_path(out / entry["shard"]))
        assert columns.meta["sha256"] == entry["sha256"] and columns.meta["count"] == entry["count"]
        assert entry["bytes"] == (out / entry["shard"]).stat().st_size == columns.meta["bytes"]


def test_runs_are_reproducible_to_the_byte_and_a_finished_run_is_a_no_op(tmp_path):
    write_scenes_table(tmp_path / "prompts.parquet", 10)
    one, two = generate(config(tmp_path, "a")), generate(config(tmp_path, "b"))
    hashes = {e["shard"]: e["sha256"] for e in Manifest(one).entries()}
    assert hashes == {e["shard"]: e["sha256"] for e in Manifest(two).entries()}
    for name in hashes:
        assert (one / name).read_bytes() == (two / name).read_bytes()
    before = (one / "manifest.jsonl").read_text()
    generate(config(tmp_path, "a"))
    assert (one / "manifest.jsonl").read_text() == before


def test_resume_refuses_other_settings_or_another_table(tmp_path):
    write_scenes_table(tmp_path / "prompts.parquet", 6)
    generate(config(tmp_path))
    with pytest.raises(Img2PromptError, match=r"plan\.json: this folder was generated with other size"):
        generate(config(tmp_path, size=48))
    write_scenes_table(tmp_path / "prompts.parquet", 6, seed=1)
    with pytest.raises(Img2PromptError, match="another prompt table"):
        generate(config(tmp_path))


def test_bad_tables_fail_with_one_line_naming_the_file(tmp_path):
    with pytest.raises(Img2PromptError, match=r"prompts\.parquet: generate\.prompts: no such file or folder"):
        generate(config(tmp_path))
    write_scenes_table(tmp_path / "prompts.parquet", 6)
    with pytest.raises(Img2PromptError, match=r"tier\(s\) hq have no generate\.images_per_prompt entry"):
        generate(config(tmp_path, images_per_prompt={"lq": 1}))
    with pytest.raises(Img2PromptError, match="no prompts in splits"):
        generate(config(tmp_path, splits=["holdout"]))
    bad = tmp_path / "bad.yaml"
    bad.write_text("generate:\n  sise: 64\n")
    result = subprocess.run([str(CLI), "generate", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: generate.sise: Extra inputs are not permitted (did you mean 'size'?)"]


def _kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL torchrun and its workers (it starts them in their own sessions, so kill each one)."""
    parent = psutil.Process(process.pid)
    for proc in [parent, *parent.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_two_torchrun_ranks_killed_mid_shard_resume_with_nothing_lost_or_duplicated(tmp_path):
    write_scenes_table(tmp_path / "prompts.parquet", 120)
    settings = {"prompts": str(tmp_path / "prompts.parquet"), "out": str(tmp_path / "run"), "backend": "scenes",
                "size": 96, "samples_per_shard": 8}
    cfg_path = tmp_path / "generate.yaml"
    cfg_path.write_text(yaml.safe_dump({"generate": settings}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "--no-python", str(CLI), "generate", str(cfg_path)]
    out = tmp_path / "run"
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # kill once a shard is finished and another is half written
            if len(Manifest(out).entries()) >= 2 and list(out.glob(".*.tar.*.tmp")):
                break
            assert first.poll() is None, "the run ended before it could be killed"
            time.sleep(0.01)
    finally:
        _kill_tree(first)
    killed_manifest = Manifest(out).entries()
    assert list(out.glob(".*.tar.*.tmp")), "the kill did not land in the middle of a shard"
    planned = json.loads((out / "plan.json").read_text())["samples"]
    total_shards = -(-planned // 8)
    assert len(killed_manifest) < total_shards

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    entries = Manifest(out).entries()
    names = [e["shard"] for e in entries]
    assert len(names) == len(set(names)) == total_shards  # every shard once
    assert entries[: len(killed_manifest)] == killed_manifest  # finished shards were not redone
    assert not list(out.glob("*.tmp"))
    reference = generate(GenerateConfig(**{**settings, "out": str(tmp_path / "reference")}))
    assert {e["shard"]: e["sha256"] for e in entries} == {
        e["shard"]: e["sha256"] for e in Manifest(reference).entries()
    }
    keys = [s.key for s in iter_samples(find_shards(out))]
    assert len(keys) == len(set(keys)) == planned


def test_a_tier_filter_writes_the_hq_and_lq_shard_sets_apart(tmp_path):
    frame, _ = write_scenes_table(tmp_path / "prompts.parquet", 12)
    sets = {tier: generate(config(tmp_path, out=tier, tiers=[tier])) for tier in ("hq", "lq")}
    for tier, out in sets.items():
        samples = list(iter_samples(find_shards(out)))
        assert samples and {s.meta["tier"] for s in samples} == {tier}
        assert len(samples) == (2 if tier == "hq" else 1) * int((frame.tier == tier).sum())
    with pytest.raises(Img2PromptError, match=r"tier\(s\) mq have no generate.images_per_prompt entry"):
        generate(config(tmp_path, out="mq", tiers=["mq"]))
