"""The ``decode`` verb: embeddings (a predictions file's rows, or texts embedded here) -> readable prompts, in a CSV."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from img2prompt.decode import DecodeConfig
from img2prompt.dictionary import load_decoder
from img2prompt.errors import Img2PromptError
from img2prompt.files import atomic_path, check_output


def run_decode(
    bank: str | Path,
    config: DecodeConfig,
    *,
    predictions: str | Path | None = None,
    texts: Sequence[str] = (),
    out: str | Path | None = None,
    mode: str | None = None,
) -> list[dict[str, object]]:
    """Decode every row of a predictions file and/or the embeddings of ``texts``; optionally write a CSV
    (``cosine``: of the text's embedding to the decoded one; ``capped``: the time cap cut the search short).

    The inputs are read and checked before the phrase dictionary is built, which takes minutes the first time.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    from img2prompt.predictions import read_predictions

    if predictions is None and not texts:
        raise Img2PromptError("decode: give --predictions FILE and/or --text PROMPT")
    if out is not None:
        check_output(out)
    config.effort(mode)  # an unknown mode fails now, not after the dictionary build
    jobs: list[tuple[str, np.ndarray]] = []
    if predictions is not None:
        frame, vectors = read_predictions(predictions)
        jobs.extend(zip(frame.image_id, vectors, strict=True))
    decoder = load_decoder(bank, config)
    if texts:
        jobs.extend(zip(texts, decoder.embedder.encode(list(texts)), strict=True))
    rows: list[dict[str, object]] = []
    for name, vector in tqdm(jobs, desc="decode", unit="prompt", disable=None):
        result = decoder.decode(vector, mode=mode)
        rows.append({"image_id": name, "text": result.text, "cosine": result.cosine, "capped": result.capped})
    if out is not None:
        with atomic_path(out) as tmp:
            pd.DataFrame(rows, columns=["image_id", "text", "cosine", "capped"]).to_csv(tmp, index=False)
    return rows
