"""The web page's files: the example images are what the project's own scenes renderer draws from their prompts.

``IMG2PROMPT_WRITE_EXAMPLES=1 pytest tests/test_serve_page.py`` (re)draws them from ``EXAMPLES`` and rewrites
``examples.json``; without it the test checks the committed files against a fresh drawing.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from img2prompt.generate.scenes import ScenesGenerator
from img2prompt.serve.app import STATIC_DIR

FOLDER = STATIC_DIR / "examples"
SIZE = 224
EXAMPLES = [  # prompts of the scenes grammar (img2prompt.scene_grammar), each with the seed it is drawn with
    ("chickens.webp", "two large brown chickens on a beach at sunset, highly detailed", 1),
    ("raccoons.webp", "four raccoons in the sky, pop art, cinematic, soft lighting", 2),
    ("money.webp", "two pink money bags in a forest", 3),
    ("compass.webp", "a compass in the center under the sea, oil painting, muted colors", 4),
]


@pytest.fixture(scope="module")
def drawn() -> dict[str, Image.Image]:
    images = ScenesGenerator(SIZE).generate([p for _, p, _ in EXAMPLES], [s for _, _, s in EXAMPLES])
    return {name: image for (name, _, _), image in zip(EXAMPLES, images, strict=True)}


def test_example_images_are_drawn_by_the_scenes_renderer(drawn):
    if os.environ.get("IMG2PROMPT_WRITE_EXAMPLES"):
        FOLDER.mkdir(exist_ok=True)
        for name, image in drawn.items():
            image.save(FOLDER / name, format="WEBP", quality=85, method=6)
        listing = [{"file": name, "prompt": prompt, "seed": seed, "size": SIZE} for name, prompt, seed in EXAMPLES]
        (FOLDER / "examples.json").write_text(json.dumps(listing, indent=2) + "\n")
    listing = json.loads((FOLDER / "examples.json").read_text())
    assert [(e["file"], e["prompt"], e["seed"]) for e in listing] == EXAMPLES
    assert sorted(p.name for p in FOLDER.iterdir()) == sorted([*drawn, "examples.json", "prompts.csv"])
    for name, image in drawn.items():
        data = (FOLDER / name).read_bytes()
        assert len(data) < 40_000  # small enough to ship in the wheel
        committed = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float32)
        assert committed.shape == (SIZE, SIZE, 3)
        assert np.abs(committed - np.asarray(image, np.float32)).mean() < 6  # the same picture, lossy WebP
