"""Tiny copies of every corpus of the shipped catalog (configs/download/recipe.yaml), in each publisher's format
and packaging (COCO's and VizWiz's zips, Flickr30k's tar.gz, JSONL, JSON, Parquet on the hub with COYO-700M's real
columns, the Kaggle competition zip), served by ``LocalHosts``; and the shipped catalog with its pins swapped for
the tiny files' own, pointed at the local hosts."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hub_server import LocalHosts
from img2prompt.config import read_with_bases

CATALOG = "configs/download/recipe.yaml"
COYO_COLUMNS = ("id", "url", "text", "width", "height", "image_phash", "text_length", "word_count", "num_tokens_bert",
                "num_tokens_gpt", "num_faces", "clip_similarity_vitb32", "clip_similarity_vitl14",
                "nsfw_score_opennsfw2", "nsfw_score_gantman", "watermark_score", "aesthetic_score_laion_v2")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def coyo_part(texts: list[str], similarity: list[float]) -> pd.DataFrame:
    """A COYO-700M part: every column of the real schema, ``text`` and ``clip_similarity_vitb32`` as given."""
    n = len(texts)
    rng = np.random.default_rng(n)
    return pd.DataFrame({
        "id": np.arange(n, dtype=np.int64), "url": [f"https://example.com/{i}.jpg" for i in range(n)], "text": texts,
        "width": np.full(n, 640, np.int32), "height": np.full(n, 480, np.int32), "image_phash": ["0" * 16] * n,
        "text_length": np.array([len(t) for t in texts], np.int32),
        "word_count": np.array([len(t.split()) for t in texts], np.int32),
        "num_tokens_bert": np.full(n, 10, np.int32), "num_tokens_gpt": np.full(n, 10, np.int32),
        "num_faces": np.zeros(n, np.int32), "clip_similarity_vitb32": np.array(similarity, np.float32),
        "clip_similarity_vitl14": np.array(similarity, np.float32) - 0.05,
        "nsfw_score_opennsfw2": rng.random(n, np.float32) * 0.1, "nsfw_score_gantman": rng.random(n, np.float32) * 0.1,
        "watermark_score": rng.random(n, np.float32), "aesthetic_score_laion_v2": np.full(n, 5.0, np.float32),
    })


def corpus_contents(prompts: list[str], coyo_parts: int) -> dict[str, dict[str, bytes]]:
    """Corpus -> {url or repo path: bytes}, each in its publisher's format, the captions drawn from ``prompts``."""
    take = iter(prompts)
    pick = lambda n: [next(take) for _ in range(n)]  # noqa: E731
    lines = lambda items, key: "".join(json.dumps({key: c}) + "\n" for c in items).encode()  # noqa: E731
    narratives = "https://storage.googleapis.com/localized-narratives/annotations/"
    coyo = {}
    for part in range(coyo_parts):
        texts = pick(20)
        similarity = [0.35 if i % 4 else 0.2 for i in range(len(texts))]  # one in four below the 0.3 cut
        name = f"data/part-{part:05d}-17da4908-939c-46e5-91d0-15f256041956-c000.snappy.parquet"
        coyo[name] = _parquet(coyo_part(texts, similarity))
    return {
        "diffusiondb": {"metadata.parquet": _parquet(pd.DataFrame({"prompt": pick(24), "seed": np.arange(24)}))},
        "coco": {"http://images.cocodataset.org/annotations/annotations_trainval2017.zip": _zip({
            "annotations/captions_train2017.json": json.dumps({"annotations": [
                {"image_id": i, "id": i, "caption": c} for i, c in enumerate(pick(6))]}).encode(),
            "annotations/captions_val2017.json": json.dumps({"annotations": [
                {"image_id": i, "id": i, "caption": c} for i, c in enumerate(pick(2))]}).encode(),
            "annotations/instances_val2017.json": b"{}"})},
        "vizwiz": {"https://vizwiz.cs.colorado.edu/VizWiz_final/caption/annotations.zip": _zip({
            f"annotations/{split}.json": json.dumps({"annotations": [
                {"caption": c, "is_precanned": False, "is_rejected": False} for c in pick(4)]}).encode()
            for split in ("train", "val")} | {"annotations/test.json": b'{"images": []}'})},
        "open_images_narratives": {
            f"{narratives}open_images_train_v6_captions.jsonl": lines(pick(4), "caption"),
            f"{narratives}open_images_validation_captions.jsonl": lines(pick(1), "caption"),
            f"{narratives}open_images_test_captions.jsonl": lines(pick(1), "caption")},
        "ade20k_narratives": {f"{narratives}ade20k_train_captions.jsonl": lines(pick(3), "caption"),
                              f"{narratives}ade20k_validation_captions.jsonl": lines(pick(1), "caption")},
        "flickr30k": {"http://shannon.cs.illinois.edu/DenotationGraph/data/flickr30k.tar.gz": _tar_gz({
            "flickr30k/results_20130124.token": "".join(f"{i}.jpg#0\t{c}\n" for i, c in enumerate(pick(6))).encode(),
            "flickr30k/readme.txt": b"tiny"})},
        "textcaps": {f"https://dl.fbaipublicfiles.com/textvqa/data/textcaps/TextCaps_0.1_{split}.json": json.dumps(
            {"data": [{"caption_str": c} for c in pick(2)]}).encode() for split in ("train", "val")},
        "coyo": coyo,
    }


def kaggle_zip(images: Path) -> bytes:
    """The competition's zip: images/*.png, prompts.csv, sample_submission.csv (header only: the rehearsal
    validates its own submission)."""
    files = {f"images/{p.name}": p.read_bytes() for p in sorted(images.glob("*.png"))}
    prompts = "imgId,prompt\n" + "".join(f"{p.stem},a picture\n" for p in sorted(images.glob("*.png")))
    return _zip({**files, "prompts.csv": prompts.encode(), "sample_submission.csv": b"imgId_eId,val\n"})


def serve_tiny_catalog(hosts: LocalHosts, out: Path, prompts: list[str], *, coyo_parts: int = 2,
                       kaggle_images: Path | None = None) -> Path:
    """Serve every corpus's tiny copy and write the shipped catalog, pins swapped and pointed at ``hosts``."""
    data = read_with_bases(CATALOG)
    section = data["download"]
    section.update(mirror=hosts.url, hub_endpoint=hosts.url, progress=False)
    for name, content in corpus_contents(prompts, coyo_parts).items():
        corpus = section["corpora"][name]
        if "hub" in corpus:
            hosts.add_repo(corpus["hub"]["repo"], content, commit=corpus["hub"]["revision"])
            if corpus["hub"].get("parts"):
                corpus["hub"]["parts"] = coyo_parts
            continue
        for remote in corpus["files"]:
            payload = content[remote["url"]]
            hosts.add_web(remote["url"], payload)
            algorithm = (remote.get("checksum") or "sha256:").split(":")[0]
            remote.update(size=len(payload), checksum=f"{algorithm}:{hashlib.new(algorithm, payload).hexdigest()}")
    if kaggle_images is not None:
        hosts.add_competition(section["corpora"]["kaggle"]["kaggle"]["competition"], kaggle_zip(kaggle_images))
    path = out / "catalog.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
