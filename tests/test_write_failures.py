"""A write that fails is one line naming the output and the cause, exit 1, and nothing half-written in the output's
place (issue 23): for each verb that writes, an output under a regular file, a full disk (a real tmpfs) and a folder
the process may not write in. A report folder (evaluate) and a curation (table, stats, report) are complete or as
they were, never half of each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from disks import PAGE, UNWRITABLE, Disk, mounted_disk, unwritable
from generate_tables import write_scenes_table
from img2prompt.predictions import write_predictions
from img2prompt.space import normalise
from test_train_data import make_color_shards

Argv = Callable[[dict[str, Path], Path], list[object]]
# verb -> (its command line writing under the folder ``out``, its product under ``out``)
VERBS: dict[str, tuple[Argv, str]] = {
    "curate": (lambda i, out: ["curate", i["curate"], "--set", f"curate.out={out}"], "prompts.parquet"),
    "generate": (lambda i, out: ["generate", i["generate"], "--set", f"generate.out={out}"], "manifest.jsonl"),
    "train": (lambda i, out: ["train", i["train"], "--set", f"train.out={out}"], "model.safetensors"),
    "predict": (lambda i, out: ["predict", f"mean:{i['table']}", i["images"], "--out", out / "p.parquet"],
                "p.parquet"),
    "ensemble": (lambda i, out: ["ensemble", i["a"], i["b"], "--truth", i["table"], "--out", out / "e.yaml"],
                 "e.yaml"),
    "evaluate": (lambda i, out: ["evaluate", i["a"], "--truth", i["table"], "--out", out / "report"],
                 "report/report.html"),
    "decode": (lambda i, out: ["decode", i["table"], "--text", "a red fox", "--out", out / "d.csv", "--set",
                               "decode.modifiers=[]", "--set", "decode.cache_dir=null"], "d.csv"),
    "embed": (lambda i, out: ["embed", i["csv"], "--out", out / "e.parquet"], "e.parquet"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inputs")
    frame, vectors = write_scenes_table(root / "prompts.parquet", 24)
    ids = list(frame.prompt_id[:8])
    noisy = normalise(vectors[:8] + np.random.default_rng(1).normal(scale=0.5, size=(8, 384)))
    (root / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (40, 40), (60 * i, 30, 90)).save(root / "images" / f"{i}.png")
    (root / "prompts.csv").write_text("imgId,prompt\na,a red fox in the snow\nb,a castle on a hill at dusk\n")
    (root / "source.txt").write_text("".join(f"a photo of a red fox number {i} in the deep snow\n" for i in range(30)))
    configs = {
        "curate": {"curate": {"progress": False, "sources": [{"name": "s", "type": "text",
                                                              "path": str(root / "source.txt")}]}},
        "generate": {"generate": {"prompts": str(root / "prompts.parquet"), "size": 32}},
        "train": {"train": {"log_with": [], "plots": False, "data": {
            "shards": [str(make_color_shards(root / "shards", n_prompts=40, size=32))], "batch_size": 16},
            "model": {"backbone": "efficientnet_lite0", "pretrained": False, "tiny": True, "image_size": 32}}},
    }
    for name, config in configs.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return {"table": root / "prompts.parquet", "images": root / "images", "csv": root / "prompts.csv",
            "a": write_predictions(ids, "a", vectors[:8], root / "a.parquet"),
            "b": write_predictions(ids, "b", noisy, root / "b.parquet"),
            **{name: root / f"{name}.yaml" for name in configs}}


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory):
    with mounted_disk(tmp_path_factory.mktemp("disk"), 2 * 2**20) as mounted:
        yield mounted


def assert_refused(result: tuple[int, str], out: Path, product: str, *causes: str) -> None:
    """Exit 1, one error line naming a path under ``out`` and the cause; no product, no temporary left."""
    code, stderr = result
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert code == 1 and "Traceback" not in stderr and len(errors) == 1, stderr[-2000:]
    assert f"error: {out}" in errors[0] and "cannot write: " in errors[0], errors[0]
    assert any(errors[0].endswith(cause) for cause in causes), errors[0]
    assert not (out / product).exists()
    if out.exists():
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("verb", VERBS)
def test_an_output_under_a_regular_file_is_one_line_before_any_work(verb, inputs, tmp_path, cli):
    (tmp_path / "afile").write_text("not a folder")
    argv, product = VERBS[verb]
    out = tmp_path / "afile" / "run"
    code, stderr = cli(*argv(inputs, out))
    assert_refused((code, stderr), out, product, f"{tmp_path / 'afile'} is a file, not a folder")


@pytest.mark.parametrize("verb", VERBS)
def test_a_folder_the_process_may_not_write_in_is_one_line_before_any_work(verb, inputs, tmp_path, cli):
    argv, product = VERBS[verb]
    with unwritable(tmp_path / "locked") as locked:
        out = locked / "run"
        result = cli(*argv(inputs, out))
    assert_refused(result, out, product, *UNWRITABLE)


@pytest.mark.parametrize("verb", VERBS)
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing_half_written(verb, inputs, disk: Disk, cli):
    disk.clear()
    disk.fill(0)
    argv, product = VERBS[verb]
    out = disk.root / "run"
    assert_refused(cli(*argv(inputs, out)), out, product, "no space left on device")


def test_a_report_folder_is_complete_or_as_it_was(inputs, disk: Disk, cli):
    """evaluate writes scores.csv, metrics.json and report.html together: a disk that takes the first two but not
    the report keeps the three files of the evaluation before."""
    disk.clear()
    out = disk.root / "report"
    assert cli("evaluate", inputs["a"], "--truth", inputs["table"], "--out", out)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"scores.csv", "metrics.json", "report.html"} <= set(before)
    disk.fill(len(before["scores.csv"]) + len(before["metrics.json"]) + 8192)  # room for both, not the report
    code, stderr = cli("evaluate", inputs["b"], "--truth", inputs["table"], "--out", out)
    assert code == 1 and "no space left on device" in stderr.splitlines()[-1], stderr[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_curation_is_complete_or_absent(inputs, disk: Disk, cli):
    """curate's table, stats.json and report.html take their names together: a disk that fills while the report
    is written leaves no prompts.parquet beside a missing report."""
    disk.clear()
    out = disk.root / "curate"
    assert cli("curate", inputs["curate"], "--set", f"curate.out={out}")[0] == 0
    finals = ("prompts.parquet", "stats.json", "report.html")
    sizes = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file()}
    for name in finals:
        (out / name).unlink()
    # room for what the rerun writes before the report: its config, bad rows, the candidates' embeddings (it embeds
    # from its cache), the table and the stats; not for the report
    candidates = 30
    before_report = [sizes["config.yaml"], sizes["bad_rows.tsv"], 128 + candidates * 384 * 4,
                     sizes["prompts.parquet"], sizes["stats.json"]]
    disk.fill(sum(pages(size) for size in before_report) * PAGE)
    code, stderr = cli("curate", inputs["curate"], "--set", f"curate.out={out}")
    error = stderr.splitlines()[-1]
    assert code == 1 and error.endswith(".png: cannot write: no space left on device"), stderr[-2000:]  # a plot
    assert not set(finals) & {p.name for p in out.iterdir()}
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def pages(size: int) -> int:
    return -(-size // PAGE)


def save_with(writer: str, path: Path) -> None:
    import torch

    tensors = {"w": torch.rand(200_000, generator=torch.Generator().manual_seed(0))}  # 800 kB, incompressible
    if writer == "torch":  # as Trainer.save writes state.pt: through a Python file
        with path.open("wb") as handle:
            torch.save(tensors, handle)
    elif writer == "safetensors":  # as Regressor.save_pretrained writes model.safetensors (Rust I/O)
        from safetensors.torch import save_file

        save_file(tensors, str(path))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"w": tensors["w"].numpy()}), path)


@pytest.mark.parametrize("writer", ["torch", "safetensors", "parquet"])
def test_writers_that_wrap_the_os_error_are_named_with_its_cause(writer, disk: Disk):
    """torch raises "enforce fail at inline_container.cc" from the OSError, safetensors puts "(os error 28)" in its
    text: atomic_path finds the cause in either."""
    from img2prompt.errors import Img2PromptError
    from img2prompt.files import atomic_path

    disk.clear()
    disk.fill(PAGE)
    target = disk.root / f"out.{writer}"
    with pytest.raises(Img2PromptError) as error, atomic_path(target) as tmp:
        save_with(writer, tmp)
    assert str(error.value) == f"{target}: cannot write: no space left on device"
    assert not list(disk.root.glob("out*")) and not list(disk.root.glob(".out*"))


def test_the_embedding_cache_on_a_full_disk_is_one_line(disk: Disk):
    """SQLite reports a full disk as its own "database or disk is full"."""
    from img2prompt.embedding import EmbeddingCache
    from img2prompt.errors import Img2PromptError

    disk.clear()
    disk.fill(0)
    path = disk.root / "cache" / "embeddings.sqlite"
    with pytest.raises(Img2PromptError) as error:
        EmbeddingCache(path, "tag").put_many([f"prompt {i}" for i in range(2000)], np.ones((2000, 384), np.float32))
    assert str(error.value) == f"{path}: cannot write: no space left on device"
