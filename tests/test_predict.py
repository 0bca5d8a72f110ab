"""Batch prediction: every model kind behind one interface, bad images skipped, valid Kaggle output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps
from typer.testing import CliRunner

from img2prompt.cli import app
from img2prompt.errors import Img2PromptError
from img2prompt.kaggle import validate_submission
from img2prompt.models.baselines import NearestNeighbour
from img2prompt.models.embedder import FlipTTA, ImageEmbedder
from img2prompt.models.load import LOADERS, load_model
from img2prompt.models.regressor import ModelConfig, Regressor
from img2prompt.models.specs import KINDS
from img2prompt.predict import run_predict
from img2prompt.predictions import read_predictions, write_predictions
from img2prompt.prompt_table import write_table
from img2prompt.space import normalise


def noise_image(seed: int, size: int = 40) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    vectors = normalise(rng.standard_normal((6, 384)))
    frame = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(6)], "prompt": [f"prompt {i}" for i in range(6)],
                          "source": "test", "tier": "hq", "cluster": range(6),
                          "split": ["train"] * 4 + ["val"] * 2})
    return write_table(frame, vectors, tmp_path_factory.mktemp("table") / "prompts.parquet")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True))
    return model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")


def image_folder(root: Path) -> Path:
    folder = root / "images"
    (folder / "sub").mkdir(parents=True)
    noise_image(1).save(folder / "a1.png")
    noise_image(2).save(folder / "sub" / "b2.jpg")
    noise_image(3).save(folder / "c3.webp")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_mean_baseline_is_the_normalised_train_mean(table: Path) -> None:
    from img2prompt.prompt_table import read_table

    _, vectors = read_table(table)
    model = load_model(f"mean:{table}")
    assert isinstance(model, ImageEmbedder) and model.name == f"mean:{table}"
    out = model.embed([noise_image(0), noise_image(1)])
    assert np.allclose(out, normalise(vectors[:4].mean(axis=0))[None], atol=1e-6)


def test_predict_skips_unreadable_images_and_writes_a_valid_submission(tmp_path: Path, table: Path) -> None:
    folder = image_folder(tmp_path)
    ids, vectors, skipped = run_predict(f"mean:{table}", [folder], out=tmp_path / "p.parquet",
                                        kaggle=tmp_path / "sub.csv")
    assert ids == ["a1", "c3", "b2"]  # sorted paths: a1.png, c3.webp, sub/b2.jpg
    assert len(skipped) == 1 and skipped[0].startswith(str(folder / "broken.png"))
    submitted_ids, submitted = validate_submission(tmp_path / "sub.csv", expected_ids=ids)
    assert submitted_ids == ids and np.allclose(submitted, vectors, atol=1e-7)
    frame, stored = read_predictions(tmp_path / "p.parquet")
    assert list(frame.image_id) == ids and set(frame.model) == {f"mean:{table}"}
    assert np.array_equal(stored, vectors)


def test_checkpoint_predictions_match_the_regressor(checkpoint: Path) -> None:
    images = [noise_image(5), noise_image(6)]
    reference = Regressor.from_pretrained(checkpoint).embed(images)
    assert np.array_equal(load_model(checkpoint).embed(images), reference)
    assert isinstance(load_model(checkpoint, tta=True), FlipTTA)


class LeftColumn:
    """A toy embedder that sees only the left pixel column, so mirroring changes its output."""

    name = "left"
    sources = ()

    def embed(self, images: list[Image.Image]) -> np.ndarray:
        columns = [np.asarray(im, np.float32)[:, 0].ravel() for im in images]
        return normalise(np.stack([np.resize(c, 384) for c in columns]))


def test_tta_is_the_normalised_sum_of_the_image_and_its_mirror() -> None:
    images = [noise_image(5), noise_image(6)]
    inner = LeftColumn()
    expected = normalise(inner.embed(images) + inner.embed([ImageOps.mirror(im) for im in images]))
    assert np.allclose(FlipTTA(inner).embed(images), expected, atol=1e-6)
    assert not np.allclose(expected, inner.embed(images), atol=1e-2)


def test_nearest_neighbour_returns_the_prompt_of_the_most_similar_bank_image() -> None:
    torch.manual_seed(0)
    bank = [noise_image(s, size=64) for s in range(5)]
    targets = normalise(np.random.default_rng(9).standard_normal((5, 384)))
    model = NearestNeighbour(bank, targets, tiny=True)
    assert np.allclose(model.embed([bank[3], bank[1]]), targets[[3, 1]], atol=1e-6)
    averaged = NearestNeighbour(bank, targets, tiny=True, k=5).embed([bank[0]])
    assert np.allclose(averaged[0], normalise(targets.mean(axis=0)), atol=1e-5)


def test_unknown_models_and_colliding_ids_are_one_line_errors(tmp_path: Path, table: Path) -> None:
    with pytest.raises(Img2PromptError, match=r"nope: not found \(a model is a checkpoint folder, an ensemble YAML"):
        load_model(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(Img2PromptError, match=r"notes\.txt: not a checkpoint folder or an ensemble YAML"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(Img2PromptError, match="mean: needs a source after the colon: a baseline"):
        load_model("mean:")
    with pytest.raises(Img2PromptError, match=r"mean: takes no \?parameters \(got k\)"):
        load_model(f"mean:{tmp_path}?k=5")
    assert set(LOADERS) == set(KINDS)  # every kind a spec may name has a loader
    (tmp_path / "x").mkdir()
    noise_image(1).save(tmp_path / "x" / "same.png")
    noise_image(2).save(tmp_path / "same.jpg")
    with pytest.raises(Img2PromptError, match="image id 'same' also used"):
        run_predict(f"mean:{table}", [tmp_path / "x", tmp_path / "same.jpg"], out=tmp_path / "p.parquet")


def test_predict_fails_when_no_image_is_readable(tmp_path: Path, table: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"")
    with pytest.raises(Img2PromptError, match=r"none of the 1 images could be read \(.*bad\.png: empty file"):
        run_predict(f"mean:{table}", [tmp_path / "bad.png"], kaggle=tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_a_corrupt_predictions_table_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "p.parquet"
    bad.write_bytes(b"PAR1 nonsense")
    with pytest.raises(Img2PromptError, match=r"p\.parquet: not a readable Parquet"):
        read_predictions(bad)
    vectors = np.full((1, 384), np.nan, np.float32)
    write_predictions(["a"], "m", vectors, bad)
    with pytest.raises(Img2PromptError, match="row 0: non-finite"):
        read_predictions(bad)


def test_cli_predict_with_a_checkpoint_writes_a_submission_that_validates(tmp_path: Path, checkpoint: Path) -> None:
    folder = image_folder(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(checkpoint), str(folder), "--kaggle", str(tmp_path / "s.csv")])
    assert result.exit_code == 0, result.output
    assert f"predicted 3 images, skipped 1: wrote {tmp_path / 's.csv'}" in result.output  # says where it wrote
    assert "broken.png" in result.output
    check = runner.invoke(app, ["validate-submission", str(tmp_path / "s.csv")])
    assert check.exit_code == 0 and "ok, 3 images x 384 dims" in check.output


def test_nearest_baseline_indexes_only_the_training_samples_of_a_shard_folder(tmp_path: Path) -> None:
    from img2prompt.shards import Manifest, Sample, write_shard

    images = [noise_image(s, size=64) for s in range(6)]
    targets = normalise(np.random.default_rng(3).standard_normal((6, 384)))
    splits = [{"split": "train"}, {}, {"split": "train"}, {"split": "train"}, {"split": "val"}, {"split": "test"}]
    samples = [Sample(key=f"p{i}-0", image=im, meta={"prompt_id": f"p{i}", **split}, embedding=t)
               for i, (im, t, split) in enumerate(zip(images, targets, splits, strict=True))]
    Manifest(tmp_path / "shards").record(write_shard(tmp_path / "shards" / "000000.tar", samples, "png"))
    model = load_model(f"nearest:{tmp_path / 'shards'}")
    assert model.name == f"nearest:{tmp_path / 'shards'}"
    assert np.allclose(model.embed([images[2], images[0], images[1]]), targets[[2, 0, 1]], atol=1e-6)
    held_out = model.embed([images[4], images[5]])  # a held-out image must not find itself
    assert not np.isclose(held_out @ targets[4:].T, 1.0, atol=1e-3).any()
    small = load_model(f"nearest:{tmp_path / 'shards'}?size=64")  # the shards' own size: the same neighbours here
    assert np.allclose(small.embed([images[2], images[0], images[1]]), targets[[2, 0, 1]], atol=1e-6)
    for bad, why in [("size=8", "size must be a whole number of pixels from 32 to 1024"),
                     ("k=3", "unknown parameter")]:
        with pytest.raises(Img2PromptError, match=why):
            load_model(f"nearest:{tmp_path / 'shards'}?{bad}")


def test_nearest_baseline_needs_training_samples(tmp_path: Path) -> None:
    from img2prompt.shards import Manifest, Sample, write_shard

    sample = Sample(key="p0-0", image=noise_image(0), meta={"prompt_id": "p0", "split": "test"},
                    embedding=np.ones(384, np.float32))
    Manifest(tmp_path / "shards").record(write_shard(tmp_path / "shards" / "000000.tar", [sample], "png"))
    with pytest.raises(Img2PromptError, match="no training samples"):
        load_model(f"nearest:{tmp_path / 'shards'}")


def test_batch_size_reaches_the_forward_pass(tmp_path: Path, checkpoint: Path) -> None:
    """``--batch-size`` (and serve's ``batch_size``) sets the images per forward pass, not only per read."""
    model = load_model(checkpoint, batch_size=5)
    sizes: list[int] = []
    model.model.register_forward_hook(lambda _m, inputs, _o: sizes.append(len(inputs[0])))
    model.embed([noise_image(i) for i in range(12)])
    assert sizes == [5, 5, 2]
    ensemble = tmp_path / "ens.yaml"
    ensemble.write_text(f"ensemble:\n  members:\n  - {{model: {checkpoint}, weight: 1.0}}\n")
    member = load_model(ensemble, batch_size=64).members[0]
    assert member.batch_size == 64


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from generate_tables import write_scenes_table
    from img2prompt.generate.run import GenerateConfig, generate

    root = tmp_path_factory.mktemp("shards")
    write_scenes_table(root / "prompts.parquet", 16)
    return generate(GenerateConfig(prompts=root / "prompts.parquet", out=root / "out", size=32, samples_per_shard=5))


def test_predict_reads_one_split_straight_from_the_shards(tmp_path: Path, shards: Path, checkpoint: Path,
                                                          monkeypatch) -> None:
    """Val/test predictions need no exported images, and shard truth is the targets the shards carry."""
    from img2prompt import embedding
    from img2prompt.evaluate.run import run_evaluate
    from img2prompt.shards import find_shards, iter_samples

    samples = {s.key: s for s in iter_samples(find_shards(shards))}
    val = sorted(k for k, s in samples.items() if s.meta["split"] == "val")
    ids, vectors, skipped = run_predict(str(checkpoint), [shards], out=tmp_path / "val.parquet", splits=["val"],
                                        batch_size=3)
    assert sorted(ids) == val and not skipped
    direct = load_model(checkpoint).embed([samples[k].image for k in ids])
    assert np.allclose(vectors, direct, atol=1e-5)
    monkeypatch.setattr(embedding, "TextEmbedder", None)  # shard truth embeds nothing
    summary = run_evaluate([tmp_path / "val.parquet"], shards, tmp_path / "report")
    expected = np.mean([float(v @ samples[k].embedding) for k, v in zip(ids, vectors, strict=True)])
    assert summary[str(checkpoint)]["mean_cosine"] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(Img2PromptError, match="give either shards or image files"):
        run_predict(str(checkpoint), [shards, tmp_path], out=tmp_path / "x.parquet")
    with pytest.raises(Img2PromptError, match=r"none of the samples of splits \['nope'\] in 6 shards"):
        run_predict(str(checkpoint), [shards], out=tmp_path / "x.parquet", splits=["nope"])


def test_an_extreme_aspect_image_in_a_folder_is_skipped_and_the_rest_predicted(tmp_path: Path, table: Path) -> None:
    from test_images import elongated_png

    folder = tmp_path / "mixed"
    folder.mkdir()
    noise_image(1).save(folder / "good.png")
    (folder / "long.png").write_bytes(elongated_png(1, 2_000_000))
    ids, _, skipped = run_predict(f"mean:{table}", [folder], out=tmp_path / "p.parquet")
    assert ids == ["good"] and len(skipped) == 1 and "too elongated" in skipped[0]
    assert read_predictions(tmp_path / "p.parquet")[0].image_id.tolist() == ["good"]
