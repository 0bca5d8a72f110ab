"""Two-process predict on the CPU equals one-process predict: same ids, same order, each image embedded once.

``accelerate launch --multi_gpu --num_processes 2`` is the multi-GPU command; on a machine without CUDA it
starts two torchrun ranks that predict joins as a gloo group. (``accelerate launch --cpu`` starts only one
process whatever ``--num_processes`` says.)

The test launches this file as the worker: each rank runs the real ``img2prompt predict`` verb, with thin
wrappers around ``embed_files`` and the two writers that record, per rank, which images it embedded and
which files it wrote, so the test can check that every image is embedded once and only rank 0 writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def worker(log_dir: Path, argv: list[str]) -> None:
    """One rank: the CLI's predict verb, recording embedded images and written files in ``rank<N>.json``."""
    import img2prompt.kaggle
    import img2prompt.predict
    import img2prompt.predictions
    from img2prompt import cli

    rank = int(os.environ["RANK"])  # set by the launcher; predict itself must set up accelerate's state
    record: dict[str, list[str]] = {"embedded": [], "wrote": []}
    embed_files = img2prompt.predict.embed_files
    write_predictions = img2prompt.predictions.write_predictions
    write_submission = img2prompt.kaggle.write_submission

    def recording_embed_files(model, paths, batch_size=32):
        done, vectors, skipped = embed_files(model, paths, batch_size)
        record["embedded"].extend(str(p) for p in done)
        return done, vectors, skipped

    def recording_write_predictions(ids, model, embeddings, path):
        record["wrote"].append(str(path))
        return write_predictions(ids, model, embeddings, path)

    def recording_write_submission(ids, vectors, path, *args, **kwargs):
        record["wrote"].append(str(path))
        return write_submission(ids, vectors, path, *args, **kwargs)

    img2prompt.predict.embed_files = recording_embed_files
    img2prompt.predictions.write_predictions = recording_write_predictions
    img2prompt.kaggle.write_submission = recording_write_submission
    sys.argv = ["img2prompt", *argv]
    try:
        cli.main()
    finally:
        (log_dir / f"rank{rank}.json").write_text(json.dumps(record))


def test_two_processes_predict_each_image_once_and_match_one_process(tmp_path: Path) -> None:
    import torch

    from img2prompt.kaggle import read_submission
    from img2prompt.models.regressor import ModelConfig, Regressor
    from img2prompt.predict import run_predict
    from img2prompt.predictions import read_predictions
    from test_predict import noise_image

    torch.manual_seed(0)
    checkpoint = Regressor(ModelConfig(backbone="efficientnet_lite0", pretrained=False, tiny=True)).save_pretrained(
        tmp_path / "tiny")
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for i in range(6):  # 7 readable images and one broken file: an uneven split across the two ranks
        noise_image(i, size=40 + 4 * i).save(images / f"img{i}.png")
    noise_image(6).save(images / "sub" / "deep.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    ids, _, skipped = run_predict(str(checkpoint), [images], out=tmp_path / "one.parquet",
                                  kaggle=tmp_path / "one.csv", batch_size=2)
    assert len(ids) == 7 and len(skipped) == 1

    logs = tmp_path / "logs"
    logs.mkdir()
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", "0", __file__, str(logs),
               "predict", str(checkpoint), str(images), "--batch-size", "2",
               "--out", str(tmp_path / "two.parquet"), "--kaggle", str(tmp_path / "two.csv")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("predicted 7 images, skipped 1") == 1  # printed by rank 0 only

    ranks = [json.loads((logs / f"rank{r}.json").read_text()) for r in (0, 1)]
    embedded = [path for rank in ranks for path in rank["embedded"]]
    assert sorted(embedded) == sorted(set(embedded)) and len(embedded) == 7  # each image once
    assert all(rank["embedded"] for rank in ranks)  # both ranks did a share
    assert sorted(ranks[0]["wrote"]) == sorted([str(tmp_path / "two.parquet"), str(tmp_path / "two.csv")])
    assert ranks[1]["wrote"] == []

    one_ids, one = read_submission(tmp_path / "one.csv")
    two_ids, two = read_submission(tmp_path / "two.csv")
    assert two_ids == one_ids == ids
    np.testing.assert_allclose(two, one, atol=1e-5)
    one_frame, one_table = read_predictions(tmp_path / "one.parquet")
    two_frame, two_table = read_predictions(tmp_path / "two.parquet")
    assert list(two_frame.image_id) == list(one_frame.image_id) == ids
    assert list(two_frame.model) == list(one_frame.model)
    np.testing.assert_allclose(two_table, one_table, atol=1e-5)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        pytest.exit("usage: test_predict_multiprocess.py LOG_DIR predict ARGS...")
    worker(Path(sys.argv[1]), sys.argv[2:])
