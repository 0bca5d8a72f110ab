"""``img2prompt download`` against local stand-ins of its hosts (tests/hub_server.py), through the real clients:
httpx with range requests for HTTPS files, huggingface_hub for hub datasets, the kaggle client for the competition.
A cut connection resumes from the partial file, a wrong checksum is one line naming the file and leaves nothing in
the target's place, and the catalog's targets are exactly the paths the recipe's curate config reads."""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub_server import LocalHosts, kaggle_local
from img2prompt.cli import app
from img2prompt.curate.config import CurateConfig
from img2prompt.download.catalog import DownloadConfig, corpora_for, targets
from img2prompt.download.http import fetch, part_path
from img2prompt.download.run import download
from img2prompt.errors import Img2PromptError
from img2prompt.sections import load_section
from tiny_corpora import kaggle_zip

URL = "https://example.org/corpus/big.bin"
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()
REVISION = "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c"
HUB_CHUNK = 10 * 1024 * 1024  # huggingface_hub's DOWNLOAD_CHUNK_SIZE: it keeps what it received in such blocks


@pytest.fixture
def online(monkeypatch):
    """The hub client is offline for the rest of the suite (conftest); these tests talk to 127.0.0.1 only."""
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_a_cut_download_resumes_from_the_partial_file_on_the_next_run(hosts, tmp_path):
    hosts.add_web(URL, PAYLOAD)
    mirrored = f"{hosts.url}/example.org/corpus/big.bin"
    hosts.cut_after("/example.org/corpus/big.bin", 30_000)
    target = tmp_path / "big.bin"
    with pytest.raises(Img2PromptError, match=r"big.bin: download cut at 30000 bytes .*run again to resume"):
        fetch(mirrored, target, size=len(PAYLOAD), checksum=f"sha256:{SHA}", progress=False, retries=0)
    assert not target.exists() and part_path(target).stat().st_size == 30_000
    before = len(hosts.requests)
    fetch(mirrored, target, size=len(PAYLOAD), checksum=f"sha256:{SHA}", progress=False)
    assert target.read_bytes() == PAYLOAD and not part_path(target).exists()
    assert hosts.requests[before:] == [("GET", "/example.org/corpus/big.bin", "bytes=30000-")]


def test_a_connection_cut_twice_in_one_run_is_resumed_in_that_run(hosts, tmp_path):
    hosts.add_web(URL, PAYLOAD)
    hosts.cut_after("/example.org/corpus/big.bin", 10_000)
    target = tmp_path / "big.bin"
    fetch(f"{hosts.url}/example.org/corpus/big.bin", target, size=len(PAYLOAD), checksum=f"md5:"
          f"{hashlib.md5(PAYLOAD, usedforsecurity=False).hexdigest()}", progress=False)
    assert target.read_bytes() == PAYLOAD


@pytest.mark.parametrize(("size", "checksum", "message"), [
    (len(PAYLOAD), "sha256:" + "0" * 64, "sha256 mismatch: expected 0000"),
    (len(PAYLOAD) + 1, None, f"size mismatch: expected {len(PAYLOAD) + 1} bytes, got {len(PAYLOAD)}"),
])
def test_a_wrong_checksum_or_size_is_one_line_naming_the_file_and_keeps_nothing(hosts, tmp_path, size, checksum,
                                                                                message):
    hosts.add_web(URL, PAYLOAD)
    target = tmp_path / "big.bin"
    with pytest.raises(Img2PromptError) as info:
        fetch(f"{hosts.url}/example.org/corpus/big.bin", target, size=size, checksum=checksum, progress=False)
    assert str(info.value).startswith(f"{target}: {message}") and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def hub_catalog(hosts: LocalHosts, root: Path, parts: int = 3) -> DownloadConfig:
    names = {f"data/part-{i:05d}.parquet": bytes([i]) * (50_000 + i) for i in range(4)}
    names["data/part-00001.parquet"] = bytes([1]) * (HUB_CHUNK + 5_000)  # the client writes 10 MB blocks
    hosts.add_repo("org/captions", {"README.md": b"# captions\n", **names}, commit=REVISION)
    return DownloadConfig.model_validate({
        "root": root, "hub_endpoint": hosts.url, "progress": False,
        "corpora": {"captions": {"to": "captions", "licence": "CC0", "hub": {
            "repo": "org/captions", "revision": REVISION,
            "files": ["data/part-{part:05d}.parquet"], "parts": parts}}}})


def test_a_hub_dataset_comes_at_its_pinned_revision_by_parts_resumed_and_verified(hosts, tmp_path, online, capsys):
    config = hub_catalog(hosts, tmp_path / "data")
    hosts.cut_after("/datasets/org/captions/resolve/1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c/data/part-00001.parquet",
                    HUB_CHUNK + 1_000)
    before = len(hosts.requests)
    assert download(config, parts=2) == ["captions"]
    folder = tmp_path / "data" / "captions" / "data"
    assert sorted(p.name for p in folder.iterdir()) == ["part-00000.parquet", "part-00001.parquet"]
    assert (folder / "part-00001.parquet").read_bytes() == bytes([1]) * (HUB_CHUNK + 5_000)
    ranges = [r for _, path, r in hosts.requests[before:] if path.endswith("part-00001.parquet") and r]
    assert ranges == [f"bytes={HUB_CHUNK}-"]  # the client went on from the last block it had kept
    before = len(hosts.requests)
    assert download(config, parts=2) == ["captions"]
    assert hosts.requests[before:] == [] and "captions: present and verified" in capsys.readouterr().out
    download(config, parts=3)  # one more part: only it is fetched
    fetched = {path.rsplit("/", 1)[1] for method, path, _ in hosts.requests[before:] if method == "GET"
               and "/resolve/" in path}
    assert fetched == {"part-00002.parquet"}


def test_a_hub_file_that_does_not_match_the_hub_checksum_is_deleted_and_named(hosts, tmp_path, online):
    config = hub_catalog(hosts, tmp_path / "data", parts=1)
    download(config)
    part = tmp_path / "data" / "captions" / "data" / "part-00000.parquet"
    part.write_bytes(b"tampered")
    with pytest.raises(Img2PromptError, match=rf"^captions: {re.escape(str(part))}: sha256 mismatch with the hub at "
                                              "1f2e3d4: expected "):
        download(config)
    assert not part.exists()


def test_an_unknown_revision_or_dataset_is_one_line(hosts, tmp_path, online):
    config = hub_catalog(hosts, tmp_path)
    config.corpora["captions"].hub.revision = "0" * 40
    with pytest.raises(Img2PromptError, match=r"^captions: org/captions@0000000: no such revision on the hub$"):
        download(config)
    config.corpora["captions"].hub.repo = "org/missing"
    with pytest.raises(Img2PromptError, match=r"^captions: org/missing@0000000: no such dataset on the hub"):
        download(config)


def test_a_host_that_refuses_says_what_to_do_by_hand_and_an_optional_corpus_only_warns(hosts, tmp_path, capsys):
    url = "https://example.org/form/only.tar.gz"
    hosts.refuse(url)
    config = DownloadConfig.model_validate({"root": tmp_path, "mirror": hosts.url, "progress": False, "corpora": {
        "formed": {"to": "formed", "licence": "research", "by_hand": "fill in the form, then put x in data/formed/",
                   "files": [{"url": url}]}}})
    with pytest.raises(Img2PromptError, match=r"^formed: .*only.tar.gz: HTTP 403 from .*; by hand: fill in the form"):
        download(config)
    assert download(config, optional=frozenset({"formed"})) == []
    assert "warning: formed: " in capsys.readouterr().err


def test_the_kaggle_competition_comes_through_the_kaggle_client(hosts, tmp_path, monkeypatch, shared_data):
    kaggle_local(monkeypatch, hosts.url)
    hosts.add_competition("stable-diffusion-image-to-prompts", kaggle_zip(shared_data / "kaggle_sample" / "images"))
    config = load_section("configs/download/recipe.yaml", "download", DownloadConfig,
                          [f"download.root={tmp_path}", "download.progress=false"])
    for name, value in (("KAGGLE_USERNAME", "me"), ("KAGGLE_KEY", "k"), ("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))):
        monkeypatch.setenv(name, value)
    assert download(config, ["kaggle"]) == ["kaggle"]
    assert len(list((tmp_path / "kaggle" / "images").glob("*.png"))) == 7
    assert (tmp_path / "kaggle" / "prompts.csv").is_file()


def test_without_a_kaggle_key_the_competition_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path))
    config = load_section("configs/download/recipe.yaml", "download", DownloadConfig, [f"download.root={tmp_path}"])
    with pytest.raises(Img2PromptError) as info:
        download(config, ["kaggle"])
    assert str(info.value).startswith("kaggle: kaggle competition stable-diffusion-image-to-prompts: no Kaggle API "
                                      "key: create one at https://www.kaggle.com/settings/api")
    assert "accept the rules at https://www.kaggle.com/competitions/stable-diffusion-image-to-prompts/rules" in str(
        info.value)


def test_every_curate_source_of_the_recipe_is_a_catalog_target_and_lands_where_curate_reads_it():
    curate = load_section("configs/curate/recipe.yaml", "curate", CurateConfig)
    catalog = load_section("configs/download/recipe.yaml", "download", DownloadConfig)
    llm = {s.name for s in curate.sources if s.name.startswith("llm")}
    for source in curate.sources:
        paths = source.path if isinstance(source.path, list) else [source.path]
        found = corpora_for(paths, catalog)
        assert bool(found) != (source.name in llm), source.name  # the LLM prompts are written, not downloaded
        for name in found:
            landed = [t.as_posix() for t in targets(catalog.corpora[name], catalog.root)]
            assert any(Path(t).match(p) for t in landed for p in paths), (source.name, landed)
    assert corpora_for(["data/kaggle/images"], catalog) == ["kaggle"]


def test_the_dry_run_lists_every_file_its_size_and_the_total():
    result = CliRunner().invoke(app, ["download", "coco", "coyo", "--parts", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].split()[:3] == ["coco", "252.9", "MB"] and "data/coco/annotations_trainval2017.zip" in lines[0]
    assert len(lines) == 4 and lines[1].split()[:2] == ["coyo", "~1.1"]
    assert lines[-1] == "total: 3 files, ~2.4 GB"


def test_an_archive_without_a_member_the_readers_need_is_named(tmp_path):
    from img2prompt.download.archives import extract

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("annotations/train.json", json.dumps({"annotations": []}))
    assert extract(archive, ["annotations/train.json"], tmp_path / "out") == [tmp_path / "out/annotations/train.json"]
    with pytest.raises(Img2PromptError, match=r"a.zip: no member 'annotations/val.json' in the archive"):
        extract(archive, ["annotations/train.json", "annotations/val.json"], tmp_path / "out")
