"""``load_model(spec)``: the one way every verb turns a user's model string into an ``ImageEmbedder``.

A spec (``models.specs``) is a trained checkpoint directory, an ensemble YAML (written by ``img2prompt
ensemble``), a checkpoint on the Hugging Face Hub (``hf-hub:ORG/NAME[@REVISION]``), a baseline
(``mean:PROMPTS.parquet``, ``nearest:SHARDS``) or the zero-shot model ``clip:MODEL/PRETRAINED`` (which needs a
prompt bank: ``?bank=PROMPTS.parquet`` in the spec, or the ``bank`` argument). The model is named by its full
spec, so predictions and ensemble YAMLs can point back at it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from img2prompt.errors import fail
from img2prompt.models.embedder import CheckpointEmbedder, FlipTTA, ImageEmbedder
from img2prompt.models.hub import Bank, carried_bank, model_folder, split_repo
from img2prompt.models.specs import Spec, parse

KindLoader = Callable[[Spec, str, int], ImageEmbedder]  # (spec, device, batch_size) -> model
KIND_USAGE = "baseline (mean:TABLE, nearest:SHARDS), clip:MODEL/PRETRAINED or hf-hub:ORG/NAME[@REVISION]"


def _mean(spec: Spec, device: str, batch_size: int) -> ImageEmbedder:
    from img2prompt.models.baselines import MeanEmbedding

    return MeanEmbedding.from_table(spec.source)


def _nearest(spec: Spec, device: str, batch_size: int) -> ImageEmbedder:
    from img2prompt.models.baselines import NearestNeighbour

    unknown = sorted(set(spec.params) - {"size"})
    if unknown:
        raise fail(str(spec), f"unknown parameter(s) {', '.join(unknown)} (a nearest baseline takes size)")
    size = spec.params.get("size")
    if size is not None and not (size.isdecimal() and size.isascii() and 32 <= int(size) <= 1024):
        raise fail(str(spec), f"size must be a whole number of pixels from 32 to 1024 (got {size!r})")
    return NearestNeighbour.from_shards(spec.source, batch_size=batch_size, image_size=int(size) if size else None)


def _clip(spec: Spec, device: str, batch_size: int) -> ImageEmbedder:
    from img2prompt.models.zero_shot import ZeroShotCLIP

    model_name, sep, pretrained = spec.source.partition("/")
    if not sep or not model_name or not pretrained:
        raise fail(str(spec), "a zero-shot model is clip:MODEL/PRETRAINED, e.g. clip:ViT-H-14/laion2b_s32b_b79k")
    if not spec.params.get("bank"):
        raise fail(str(spec), "a zero-shot model needs a prompt bank: --bank PROMPTS.parquet (or ?bank= in the spec)")
    unknown = sorted(set(spec.params) - {"bank", "k", "temperature"})
    if unknown:
        raise fail(str(spec), f"unknown parameter {unknown[0]!r} (bank, k, temperature)")
    try:
        k, temperature = int(spec.params.get("k", 32)), float(spec.params.get("temperature", 0.01))
    except ValueError:
        raise fail(str(spec), "k must be an integer and temperature a number") from None
    return ZeroShotCLIP(model_name, pretrained, spec.params["bank"], k=k, temperature=temperature, device=device,
                        batch_size=batch_size, name=str(spec))


def _hub(spec: Spec, device: str, batch_size: int) -> ImageEmbedder:
    """A checkpoint folder pushed with ``img2prompt push``, from the Hugging Face cache (downloaded once)."""
    folder = model_folder(str(spec), *split_repo(str(spec), spec.source))
    return CheckpointEmbedder(folder, device=device, batch_size=batch_size, name=str(spec))


LOADERS: dict[str, KindLoader] = {"mean": _mean, "nearest": _nearest, "clip": _clip, "hf-hub": _hub}  # specs.KINDS


def load_model(spec: str | Path | Spec, *, tta: bool = False, device: str = "cpu", batch_size: int = 32,
               bank: str | Path | None = None) -> ImageEmbedder:
    """Load the model ``spec`` names (a string, or a ``Spec`` already parsed), on ``device``, embedding
    ``batch_size`` images per forward pass; ``bank`` is the prompt table of a zero-shot model whose spec names none."""
    parsed = spec if isinstance(spec, Spec) else parse(spec)
    check_spec(parsed)
    model: ImageEmbedder
    if parsed.kind is not None:
        if parsed.kind == "clip" and bank is not None and "bank" not in parsed.params:
            parsed = Spec(parsed.kind, parsed.source, {**parsed.params, "bank": str(bank)})
        if parsed.params and parsed.kind not in ("clip", "nearest"):  # the others take no parameters
            raise fail(str(spec), f"{parsed.kind}: takes no ?parameters (got {', '.join(parsed.params)})")
        model = LOADERS[parsed.kind](parsed, device, batch_size)
        model.name = str(parsed)
    elif Path(parsed.source).is_dir():
        model = CheckpointEmbedder(parsed.source, device=device, batch_size=batch_size)
    else:
        model = _ensemble(Path(parsed.source), device, batch_size)
    return FlipTTA(model) if tta else model


def model_bank(spec: str | Path | Spec) -> Bank | None:
    """The prompt bank a model carries, to decode with when the user names none: a pushed model's (or a folder staged
    by ``push --dry-run``), a zero-shot model's ``?bank=``; None for the others."""
    parsed = spec if isinstance(spec, Spec) else parse(spec)
    if parsed.kind == "hf-hub":
        return carried_bank(model_folder(str(parsed), *split_repo(str(parsed), parsed.source)), str(parsed))
    if parsed.kind == "clip" and parsed.params.get("bank"):
        return Bank(Path(parsed.params["bank"]))
    if parsed.kind is None and Path(parsed.source).is_dir():
        return carried_bank(Path(parsed.source), str(parsed))
    return None


def check_spec(spec: Spec) -> None:
    """What can be told of a spec before anything loads: a path that is not there, a file that is not an ensemble
    YAML, a kind without its source. One line naming the spec."""
    if spec.kind is not None:
        if not spec.source:
            raise fail(str(spec), f"{spec.kind}: needs a source after the colon: a {KIND_USAGE}")
        return
    path = Path(spec.source)
    if not path.exists():
        raise fail(path, f"not found (a model is a checkpoint folder, an ensemble YAML, or a {KIND_USAGE})")
    if not path.is_dir() and path.suffix not in (".yaml", ".yml"):
        raise fail(path, f"not a checkpoint folder or an ensemble YAML (nor a {KIND_USAGE})")


def _ensemble(path: Path, device: str, batch_size: int) -> ImageEmbedder:
    """Every member (paths relative to the YAML's folder) blended with the fitted weights."""
    import numpy as np

    from img2prompt.models.ensemble import Ensemble, member_spec, read_spec

    spec = read_spec(path)
    members = [load_model(member_spec(m.model, path.parent), tta=m.tta, device=device, batch_size=batch_size)
               for m in spec.members]
    return Ensemble(members, np.asarray([m.weight for m in spec.members], np.float32), name=str(path))
