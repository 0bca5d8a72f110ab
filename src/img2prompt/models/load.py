"""``load_model(spec)``: the one way every verb turns a user's model string into an ``ImageEmbedder``.

A spec is a trained checkpoint directory, an ensemble YAML (written by ``img2prompt ensemble``) or a
``KIND:SOURCE`` string: the baselines ``mean:PROMPTS.parquet`` and ``nearest:SHARDS``. The model is named by
its spec, so predictions and ensemble YAMLs can point back at it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from img2prompt.errors import fail
from img2prompt.models.embedder import CheckpointEmbedder, FlipTTA, ImageEmbedder

KindLoader = Callable[[str, str, int], ImageEmbedder]  # (source, device, batch_size) -> model


def _mean(source: str, device: str, batch_size: int) -> ImageEmbedder:
    from img2prompt.models.baselines import MeanEmbedding

    return MeanEmbedding.from_table(source)


def _nearest(source: str, device: str, batch_size: int) -> ImageEmbedder:
    from img2prompt.models.baselines import NearestNeighbour

    return NearestNeighbour.from_shards(source, batch_size=batch_size)


KINDS: dict[str, KindLoader] = {"mean": _mean, "nearest": _nearest}
USAGE = {"mean": "mean:TABLE", "nearest": "nearest:SHARDS"}


def load_model(spec: str | Path, *, tta: bool = False, device: str = "cpu", batch_size: int = 32) -> ImageEmbedder:
    """Load the model ``spec`` names, on ``device``, embedding ``batch_size`` images per forward pass."""
    text = str(spec)
    kind, sep, source = text.partition(":")
    target = Path(text)
    model: ImageEmbedder
    if sep and kind in KINDS and not target.exists():
        if not source:
            raise fail(text, f"a baseline is {' or '.join(USAGE.values())}")
        model = KINDS[kind](source, device, batch_size)
        model.name = text
    elif target.is_dir():
        model = CheckpointEmbedder(target, device=device, batch_size=batch_size)
    elif target.suffix in (".yaml", ".yml") and target.is_file():
        model = _ensemble(target, device, batch_size)
    else:
        raise fail(text, f"not a checkpoint directory, ensemble YAML, or baseline ({', '.join(USAGE.values())})")
    return FlipTTA(model) if tta else model


def _ensemble(path: Path, device: str, batch_size: int) -> ImageEmbedder:
    """Every member (paths relative to the YAML's folder) blended with the fitted weights."""
    import numpy as np

    from img2prompt.models.ensemble import Ensemble, member_spec, read_spec

    spec = read_spec(path)
    members = [load_model(member_spec(m.model, path.parent), tta=m.tta, device=device, batch_size=batch_size)
               for m in spec.members]
    return Ensemble(members, np.asarray([m.weight for m in spec.members], np.float32), name=str(path))
