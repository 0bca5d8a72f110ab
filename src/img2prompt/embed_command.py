"""``img2prompt embed``: prompts CSV -> Kaggle submission and/or prompt-table Parquet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from img2prompt.embedding import TextEmbedder
from img2prompt.files import check_output
from img2prompt.kaggle import read_prompts_csv, write_submission
from img2prompt.prompt_table import prompt_id, write_table


def run_embed(
    prompts_csv: Path,
    *,
    kaggle: Path | None,
    out: Path | None,
    model: str = "packaged",
    backend: str = "exact",
    max_tokens: int = 1024,
    cache_dir: Path | None = None,
) -> None:
    """Embed every prompt of ``prompts_csv`` and write the requested outputs (each atomically)."""
    for target in (kaggle, out):
        if target is not None:
            check_output(target)
    frame = read_prompts_csv(prompts_csv)
    embedder = TextEmbedder(model, backend=backend, max_tokens=max_tokens, cache_dir=cache_dir)  # type: ignore[arg-type]
    vectors = embedder.encode(list(frame.prompt), progress=len(frame) > 1000)
    if kaggle is not None:
        write_submission(list(frame.imgId), vectors, kaggle)
        print(f"wrote {kaggle} ({len(frame)} images)")
    if out is not None:
        table = pd.DataFrame(
            {
                "prompt_id": [prompt_id(p) for p in frame.prompt],
                "prompt": frame.prompt,
                "source": f"csv:{Path(prompts_csv).name}",
                "tier": "hq",
                "cluster": range(len(frame)),
                "split": "test",
            }
        )
        write_table(table, vectors, out)
        print(f"wrote {out} ({len(frame)} prompts)")
