"""The scenes renderer: every phrase of a grammar prompt is visible, and the image is a function of (prompt, seed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from img2prompt.errors import Img2PromptError
from img2prompt.generate.pictographs import FolderPictographs, load_pictographs
from img2prompt.generate.scenes import ScenesGenerator, render
from img2prompt.scene_grammar import BACKGROUNDS, MODIFIERS, SIZES, STYLES, SUBJECTS, parse

SIZE = 128


@pytest.fixture(scope="module")
def openmoji():
    return load_pictographs("openmoji")


def draw(prompt: str, pictographs, seed: int = 0, size: int = SIZE) -> np.ndarray:
    return np.asarray(render(parse(prompt), seed, size, pictographs))


def ink(image: np.ndarray) -> np.ndarray:
    """Pixels that are not the white background."""
    return np.any(image < 235, axis=2)


def test_same_prompt_and_seed_give_a_bit_identical_image(openmoji):
    prompt = "two small red foxes and a bicycle on a beach at sunset, watercolor painting, film grain"
    first = draw(prompt, openmoji, seed=3)
    fresh = ScenesGenerator(SIZE).generate([prompt], [3])[0]  # another generator, its own glyph cache
    assert np.array_equal(first, draw(prompt, openmoji, seed=3))
    assert np.array_equal(first, np.asarray(fresh))
    assert not np.array_equal(first, draw(prompt, openmoji, seed=4))


def test_every_grammar_subject_is_drawable_from_the_packaged_set(openmoji):
    for codepoint in SUBJECTS.values():
        glyph = openmoji.glyph(codepoint)
        alpha = np.asarray(glyph.getchannel("A"))
        assert alpha.max() == 255 and (alpha > 0).mean() > 0.05, hex(codepoint)


def test_sizes_counts_and_positions_are_visible(openmoji):
    ordered = (SIZES[0], SIZES[1], None, SIZES[2], SIZES[3])  # tiny, small, (unsaid), large, giant
    areas = [ink(draw(" ".join(filter(None, ("a", size, "fox on a white background"))), openmoji)).sum()
             for size in ordered]
    assert areas == sorted(areas) and areas[-1] > 8 * areas[0]
    assert ink(draw("three foxes on a white background", openmoji)).sum() > 1.5 * areas[2]
    for position, axis, side in [("on the left", 1, -1), ("on the right", 1, 1),
                                 ("at the top", 0, -1), ("at the bottom", 0, 1)]:
        mask = ink(draw(f"a fox {position} on a white background", openmoji))
        centre = np.argwhere(mask)[:, axis].mean() / SIZE
        assert (centre - 0.5) * side > 0.12, position


def test_colours_tint_the_subject(openmoji):
    for channel, colour in enumerate(("red", "green", "blue")):
        image = draw(f"a giant {colour} ghost on a black background", openmoji)
        lit = image[np.any(image > 40, axis=2)].astype(float)
        assert int(np.argmax(lit.mean(axis=0))) == channel, colour


def test_backgrounds_are_distinct_and_look_like_their_names(openmoji):
    means = {b: draw(f"a fox {b}", openmoji).reshape(-1, 3).mean(axis=0) for b in BACKGROUNDS}
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(means[a] - means[b]).max() > 3, (a, b)
    assert means["on a white background"].min() > 200 and means["on a black background"].max() < 60
    assert means["in outer space"].max() < 70
    r, g, b = means["under the sea"]
    assert b > r and b > g
    r, g, b = means["in a forest"]
    assert g > r and g > b


def test_every_style_and_modifier_is_a_real_effect(openmoji):
    base_prompt = "a fox and a red car on a grassy meadow"
    plain = draw(base_prompt, openmoji, seed=1)
    for effect in (*STYLES, *MODIFIERS):
        styled = draw(f"{base_prompt}, {effect}", openmoji, seed=1)
        assert np.abs(styled.astype(int) - plain).mean() > 2, effect
    grey = draw(f"{base_prompt}, black and white photo", openmoji, seed=1)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    sepia = draw(f"{base_prompt}, sepia photograph", openmoji, seed=1).reshape(-1, 3).mean(axis=0)
    assert sepia[0] > sepia[1] > sepia[2]
    assert set(np.unique(draw(f"{base_prompt}, line art", openmoji, seed=1))) <= {0, 255}
    pixels = draw(f"{base_prompt}, pixel art", openmoji, seed=1)
    grid = SIZE // 7  # drawn at 18 x 18 pixels in 16 colours, then enlarged
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) <= 16
    assert np.unique(pixels, axis=0).shape[0] <= grid and np.unique(pixels, axis=1).shape[1] <= grid


def test_free_text_renders_what_it_names(openmoji):
    image = draw("an abstract thought about nothing", openmoji)
    assert image.shape == (SIZE, SIZE, 3)
    assert ink(draw("a photo of a cat on a white background", openmoji)).sum() > 200


def _disc(colour: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGBA", (72, 72))
    ImageDraw.Draw(image).ellipse((4, 4, 68, 68), fill=(*colour, 255))
    return image


def test_a_folder_of_pngs_named_by_code_point_swaps_the_art_style(tmp_path):
    _disc((255, 0, 255)).save(tmp_path / "1f98a.png")  # fox
    _disc((0, 255, 0)).save(tmp_path / "emoji_u1f415.png")  # dog, Noto's naming
    _disc((0, 0, 255)).save(tmp_path / "U+1F6B2.png")  # bicycle
    (tmp_path / "1f468-200d-1f373.png").write_bytes(b"a sequence: ignored")
    folder = load_pictographs(str(tmp_path))
    assert isinstance(folder, FolderPictographs) and sorted(folder.files) == [0x1F415, 0x1F6B2, 0x1F98A]
    image = draw("a fox, a dog and a bicycle on a white background", folder)
    colours = {tuple(c) for c in image.reshape(-1, 3)}
    assert {(255, 0, 255), (0, 255, 0), (0, 0, 255)} <= colours
    with pytest.raises(Img2PromptError, match=r"no pictograph for U\+1F408"):
        draw("a cat", folder)


def test_bad_pictograph_sets_fail_with_one_line_naming_the_path(tmp_path):
    with pytest.raises(Img2PromptError, match="pictographs must be"):
        load_pictographs(str(tmp_path / "missing.svg"))
    with pytest.raises(Img2PromptError, match="no PNG named by a code point"):
        load_pictographs(str(tmp_path))
    (tmp_path / "broken.ttf").write_bytes(b"not a font")
    with pytest.raises(Img2PromptError, match=r"broken\.ttf: cannot open"):
        load_pictographs(str(tmp_path / "broken.ttf"))
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "1f98a.png").write_bytes(b"not a png")
    with pytest.raises(Img2PromptError, match=r"1f98a\.png: unreadable PNG"):
        draw("a fox", load_pictographs(str(tmp_path / "pngs")))
