"""A checkpoint folder (DESIGN.md contract 3), read in one place and described by itself.

- ``config.json``: what loading needs and nothing else: the model (backbone, head, input size) and how it
  preprocesses an image (resize, crop, normalisation), with a format number. The training schema may change
  without changing the checkpoint format.
- ``config.yaml``: the training arguments (the resolved ``train:`` section): how the model was made, for resuming
  and for the model card. Checkpoints written before ``config.json`` existed have only this file; their model is
  its ``train.model`` block, so they still load.
- ``model.safetensors`` (merged weights: loading never needs peft), ``metrics.json``, and for LoRA runs
  ``adapter/``.

``Checkpoint.read`` checks the folder once and gives every reader (the model loader, the model card, the
provenance warning) the same view of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from img2prompt.config import RESOLVED_NAME, read_yaml
from img2prompt.errors import fail
from img2prompt.files import write_text_atomic
from img2prompt.provenance import sources_in

MODEL_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
METRICS_NAME = "metrics.json"
ADAPTER_DIR = "adapter"
FORMAT = 1
FILES = (MODEL_NAME, RESOLVED_NAME, WEIGHTS_NAME, METRICS_NAME)  # what a checkpoint holds, adapter/ aside


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint folder's contents, read once: the model's settings (unvalidated: ``ModelConfig`` validates them),
    the training arguments ({} when unknown), the metrics ({} when none) and where the weights are."""

    path: Path
    model: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def sources(self) -> tuple[str, ...]:
        """The prompt sources the model was validated on (``provenance``)."""
        return sources_in(self.metrics)

    @classmethod
    def read(cls, path: str | Path) -> Checkpoint:
        """Read a checkpoint folder; a missing folder, config or weights file is a one-line error naming it."""
        root = Path(path)
        if not root.exists():
            raise fail(root, "not found")
        if not root.is_dir():
            raise fail(root, f"not a checkpoint folder (expected {MODEL_NAME} and {WEIGHTS_NAME} inside)")
        training = _training(root / RESOLVED_NAME)
        model = _model(root / MODEL_NAME, training, root / RESOLVED_NAME)
        if not (root / WEIGHTS_NAME).exists():
            raise fail(root / WEIGHTS_NAME, "missing: the checkpoint has no weights")
        return cls(root, model, training, _metrics(root / METRICS_NAME))


def write_model_config(folder: Path, model: dict[str, Any], preprocess: dict[str, Any]) -> Path:
    """Write ``config.json``: the model and its preprocessing, what ``Regressor.from_pretrained`` reads."""
    text = json.dumps({"format": FORMAT, "library": "img2prompt", "model": model, "preprocess": preprocess,
                       "output": {"dim": 384, "space": "all-MiniLM-L6-v2 prompt embeddings, L2-normalised"}},
                      indent=2)
    return write_text_atomic(folder / MODEL_NAME, text + "\n")


def _training(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    section = read_yaml(path).get("train")
    return section if isinstance(section, dict) else {}


def _model(path: Path, training: dict[str, Any], legacy: Path) -> dict[str, Any]:
    """``config.json``'s model, or for a checkpoint written before it, ``config.yaml``'s ``train.model``."""
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise fail(path, f"not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("model"), dict):
            raise fail(path, f"not an img2prompt model config (format {FORMAT} with a model section)")
        return data["model"]
    if isinstance(training.get("model"), dict):
        return training["model"]
    if legacy.exists():
        raise fail(legacy, "no train.model section: not a regressor checkpoint config")
    raise fail(path, "missing: the checkpoint has no config")


def _metrics(path: Path) -> dict[str, Any]:
    """``metrics.json``, or {} when it is missing or unreadable (a model loads without its metrics)."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return metrics if isinstance(metrics, dict) else {}
