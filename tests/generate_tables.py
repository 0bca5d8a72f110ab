"""A small prompt table of scenes-grammar prompts for the generation tests (random unit targets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from img2prompt.prompt_table import prompt_id, write_table
from img2prompt.scene_grammar import random_prompts


def write_scenes_table(path: Path, n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``n`` prompts, every third LQ, splits cycling train/train/val/test; returns the frame and targets."""
    prompts = random_prompts(n, seed)
    frame = pd.DataFrame({
        "prompt_id": [prompt_id(p) for p in prompts],
        "prompt": prompts,
        "source": "scenes",
        "tier": ["lq" if i % 3 == 0 else "hq" for i in range(n)],
        "cluster": list(range(n)),
        "split": [("train", "train", "val", "test")[i % 4] for i in range(n)],
    })
    vectors = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    write_table(frame, vectors, path)
    return frame, vectors
