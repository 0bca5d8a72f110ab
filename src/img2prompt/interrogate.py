"""``img2prompt interrogate`` and ``Interrogator``: one call from an image to a readable prompt.

``Interrogator(model, bank).prompt(image)`` loads any model kind (a checkpoint, an ensemble, ``hf-hub:...``,
the zero-shot ``clip:MODEL/PRETRAINED``) and a prompt bank once, then for each image predicts the prompt
embedding and decodes it into text. The decoder's mode is a fixed amount of search work, so the same image
gives the same prompt on any machine and under any load (a time cap, when configured, is reported when it bites).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from img2prompt.decode import DecodeConfig, PromptDecoder
from img2prompt.errors import Img2PromptError
from img2prompt.images import check_size, load_image, to_rgb
from img2prompt.models.load import load_model
from img2prompt.provenance import MODEL_WARNING, synthetic

ImageInput = str | Path | Image.Image


@dataclass
class Interrogation:
    """One image's answer: the prompt, its cosine to the image's predicted embedding (how well the text matches
    the prediction; not a confidence), the nearest bank prompts, whether the time cap cut the search short,
    and the seconds each step took."""

    image: str
    prompt: str
    cosine: float
    nearest: list[tuple[str, float]] = field(default_factory=list)
    capped: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        data = asdict(self)
        data["nearest"] = [{"prompt": p, "cosine": s} for p, s in self.nearest]
        return data


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Interrogator:
    """Image -> prompt with any img2prompt model and a prompt bank (a prompt table, e.g. from ``curate``)."""

    def __init__(self, model: str | Path, bank: str | Path, *, mode: str | None = None, top_k: int = 5,
                 device: str | None = None, batch_size: int = 16, decode: DecodeConfig | None = None):
        config = decode or DecodeConfig()
        config.effort(mode)  # an unknown mode fails before anything heavy is loaded
        self.mode, self.top_k = mode, top_k
        self.model = load_model(model, device=device or default_device(), batch_size=batch_size, bank=bank)
        self.decoder = PromptDecoder.from_table(bank, config=config)
        # What a user must be told about the model's answers (the quickstart's models learned only synthetic scenes)
        self.warning = f"{model}: {MODEL_WARNING}" if synthetic(self.model.sources) else None

    def embed(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Predicted prompt embeddings (n, 384) of images given as paths or PIL images."""
        return np.asarray(self.model.embed([_as_image(image) for image in images]), dtype=np.float32)

    def prompt(self, image: ImageInput) -> str:
        """The decoded prompt of one image."""
        return self.interrogate([image])[0].prompt

    def interrogate(self, images: Iterable[ImageInput]) -> list[Interrogation]:
        """Prompt, cosine, nearest bank prompts and timings for each image, in order."""
        answers = []
        for image in images:
            started = time.perf_counter()
            picture = _as_image(image)
            loaded = time.perf_counter()
            vector = self.model.embed([picture])[0]
            embedded = time.perf_counter()
            result = self.decoder.decode(vector, mode=self.mode)
            nearest = self.decoder.nearest(vector, self.top_k) if self.top_k else []
            done = time.perf_counter()
            answers.append(Interrogation(
                image=str(image) if not isinstance(image, Image.Image) else "<image>", prompt=result.text,
                cosine=round(result.cosine, 6), nearest=[(p, round(s, 6)) for p, s in nearest], capped=result.capped,
                seconds={"load": round(loaded - started, 4), "embed": round(embedded - loaded, 4),
                         "decode": round(done - embedded, 4)}))
        return answers


def _as_image(image: ImageInput) -> Image.Image:
    """A path goes through ``load_image`` (every check); an in-memory image gets the same size bound."""
    if isinstance(image, Image.Image):
        check_size(*image.size, label="<image>")
        return to_rgb(image)
    return load_image(image)


def run_interrogate(inputs: Sequence[str | Path], model: str, bank: Path, *, mode: str | None,
                    decode: DecodeConfig, top_k: int = 5) -> tuple[list[Interrogation], list[str], str | None]:
    """Interrogate every image under ``inputs``; unreadable ones are skipped and returned as one-line reasons,
    with the model's warning (``Interrogator.warning``). The inputs are listed and the bank read before the model
    and the phrase dictionary are built."""
    from img2prompt.images import list_images
    from img2prompt.prompt_table import read_table

    paths = list_images(list(inputs))
    read_table(bank, columns=["prompt"])  # a wrong bank fails now, not after minutes of loading
    interrogator = Interrogator(model, bank, mode=mode, top_k=top_k, decode=decode)
    answers, skipped = [], []
    for path in paths:
        try:
            answers.extend(interrogator.interrogate([path]))
        except Img2PromptError as exc:
            skipped.append(str(exc))
    if not answers:
        raise Img2PromptError(f"interrogate: none of the {len(paths)} images could be read"
                              + (f" ({skipped[0]})" if skipped else ""))
    return answers, skipped, interrogator.warning
