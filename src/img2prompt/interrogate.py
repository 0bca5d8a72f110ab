"""``img2prompt interrogate`` and ``Interrogator``: one call from an image to a readable prompt.

``Interrogator(model, bank).prompt(image)`` loads any model kind (a checkpoint, an ensemble, ``hf-hub:...``, the
zero-shot ``clip:MODEL/PRETRAINED``) and a prompt bank once (a pushed model carries its own: no bank needed), then
for each image predicts the prompt embedding and decodes it into text. ``interrogate`` returns the
``answers.Answer`` the CLI prints and the server sends. The decoder's mode is a fixed amount of search work, so the
same image gives the same prompt on any machine and under any load (a time cap, when configured, is reported when it
bites). A model that learned only the quickstart's synthetic scenes says so: a ``SyntheticModelWarning`` when it
loads and in every answer.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from img2prompt.answers import Answer, Timings, describe
from img2prompt.decode import DecodeConfig
from img2prompt.dictionary import load_decoder
from img2prompt.errors import Img2PromptError
from img2prompt.images import check_size, load_image, to_rgb
from img2prompt.models.hub import Bank
from img2prompt.models.load import check_spec, load_model, model_bank
from img2prompt.models.specs import Spec, parse
from img2prompt.provenance import model_warning

ImageInput = str | Path | Image.Image


class SyntheticModelWarning(UserWarning):
    """The model learned only synthetic scenes (the quickstart): it is not useful on real images."""


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Interrogator:
    """Image -> prompt with any img2prompt model and a prompt bank (a prompt table, e.g. from ``curate``)."""

    def __init__(self, model: str | Path | Spec, bank: str | Path | Bank | None = None, *, mode: str | None = None,
                 top_k: int = 5, device: str | None = None, batch_size: int = 16, decode: DecodeConfig | None = None):
        """``bank`` None: the bank the model carries (``models.load.model_bank``); a model without one needs it."""
        config = decode or DecodeConfig()
        config.effort(mode)  # an unknown mode fails before anything heavy is loaded
        self.mode, self.top_k = mode, top_k
        self.bank = decoding_bank(model, bank)
        self.model = load_model(model, device=device or default_device(), batch_size=batch_size, bank=self.bank.table)
        self.decoder = load_decoder(self.bank.table, config, dictionary=self.bank.dictionary)
        # What a user must be told about the model's answers (the quickstart's models learned only synthetic scenes)
        self.warning = model_warning(self.model.sources)
        if self.warning:
            warnings.warn(self.warning, SyntheticModelWarning, stacklevel=2)

    def embed(self, images: Sequence[ImageInput]) -> np.ndarray:
        """Predicted prompt embeddings (n, 384) of images given as paths or PIL images."""
        return np.asarray(self.model.embed([_as_image(image) for image in images]), dtype=np.float32)

    def prompt(self, image: ImageInput) -> str:
        """The decoded prompt of one image."""
        return str(self.interrogate([image])[0].prompt)

    def interrogate(self, images: Iterable[ImageInput]) -> list[Answer]:
        """The answer for each image, in order: prompt, cosine, nearest bank prompts, embedding, timings."""
        answers = []
        for image in images:
            started = time.perf_counter()
            picture = _as_image(image)
            read = time.perf_counter()
            vector = self.model.embed([picture])[0]
            embedded = time.perf_counter()
            fields = describe(vector, self.decoder, top_k=self.top_k, decode=True, mode=self.mode)
            timings = Timings(read_ms=0.0, image_ms=round((read - started) * 1000, 2), queue_ms=0.0,
                              embed_ms=round((embedded - read) * 1000, 2), decode_ms=round(fields.pop("decode_ms"), 2),
                              total_ms=round((time.perf_counter() - started) * 1000, 2), batch_size=1)
            name = str(image) if not isinstance(image, Image.Image) else "<image>"
            answers.append(Answer(image=name, model=self.model.name, warning=self.warning, timings=timings,
                                  **fields))
        return answers


def decoding_bank(model: str | Path | Spec, bank: str | Path | Bank | None) -> Bank:
    """The bank given, else the one the model carries; a model that carries none is told to give one."""
    if isinstance(bank, Bank):
        return bank
    if bank is not None:
        return Bank(Path(bank))
    carried = model_bank(model)
    if carried is None:
        raise Img2PromptError(f"{model}: this model carries no prompt bank: give one (--bank PROMPTS.parquet; the "
                              "quickstart writes runs/quickstart/bank/prompts.parquet, img2prompt curate makes others)")
    return carried


def _as_image(image: ImageInput) -> Image.Image:
    """A path goes through ``load_image`` (every check); an in-memory image gets the same size bound."""
    if isinstance(image, Image.Image):
        check_size(*image.size, label="<image>")
        return to_rgb(image)
    return load_image(image)


def run_interrogate(inputs: Sequence[str | Path], model: str, bank: Path | None, *, mode: str | None,
                    decode: DecodeConfig, top_k: int = 5) -> tuple[list[Answer], list[str]]:
    """Interrogate every image under ``inputs``; unreadable ones are skipped and returned as one-line reasons. The
    inputs are listed and checked and the bank read before the model and the phrase dictionary load, so a wrong
    input fails in a second, not after the model has loaded."""
    from img2prompt.images import list_images
    from img2prompt.prompt_table import read_table

    readable, skipped = [], []
    for path in list_images(list(inputs)):
        try:
            load_image(path)
            readable.append(path)
        except Img2PromptError as exc:
            skipped.append(str(exc))
    if not readable:
        raise Img2PromptError(f"interrogate: none of the images under {', '.join(map(str, inputs))} could be read"
                              + (f" ({skipped[0]})" if skipped else ""))
    check_spec(parse(model))  # a missing model fails now too
    found = decoding_bank(model, bank)
    read_table(found.table, columns=["prompt"])  # a wrong bank fails now, not after minutes of loading
    with warnings.catch_warnings():  # the CLI says it once, on stderr, and in every answer
        warnings.simplefilter("ignore", SyntheticModelWarning)
        interrogator = Interrogator(model, found, mode=mode, top_k=top_k, decode=decode)
    return interrogator.interrogate(readable), skipped
