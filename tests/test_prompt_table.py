"""The prompt table contract: stable ids, exact embeddings round trip, clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from img2prompt.errors import Img2PromptError
from img2prompt.prompt_table import normalise_text, prompt_id, read_table, write_table


def test_prompt_id_is_stable_and_normalised():
    assert prompt_id("A  Red fox, ") == prompt_id("a red fox")
    assert prompt_id("a red fox") != prompt_id("a red fax")
    assert prompt_id("a red fox") == "ab2574f552b7211a"  # sha1 of the normalised text: must never change
    assert normalise_text("Ｆｕｌｌwidth\tTEXT ,") == "fullwidth text"


def test_round_trip(tmp_path):
    frame = pd.DataFrame(
        {
            "prompt_id": ["a", "b"],
            "prompt": ["x", "y"],
            "source": ["coco", "diffusiondb"],
            "tier": ["hq", "lq"],
            "cluster": [0, 1],
            "split": ["train", "val"],
        }
    )
    vectors = np.random.default_rng(0).normal(size=(2, 384)).astype(np.float32)
    path = write_table(frame, vectors, tmp_path / "t.parquet")
    back, emb = read_table(path)
    pd.testing.assert_frame_equal(back, frame)
    np.testing.assert_array_equal(emb, vectors)
    only, none = read_table(path, columns=["prompt"])
    assert list(only.columns) == ["prompt"] and none is None


def test_errors(tmp_path):
    with pytest.raises(Img2PromptError, match="prompt table not found"):
        read_table(tmp_path / "none.parquet")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(Img2PromptError, match="not a readable Parquet"):
        read_table(bad)
