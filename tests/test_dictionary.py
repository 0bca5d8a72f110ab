"""A bank's phrase dictionary as a file beside it: built once with the decoder's own phrases, read back without
embedding anything, used only for its own bank, and deciding the term lists unless the caller names others."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from img2prompt.decode import DecodeConfig, PromptDecoder
from img2prompt.dictionary import dictionary_path, load_decoder, read_dictionary
from img2prompt.errors import Img2PromptError
from img2prompt.phrases import modifier_terms
from img2prompt.prompt_table import prompt_id, write_table
from test_decode import BANK


def write_bank(prompts: list[str], path: Path, text_embedder) -> Path:
    frame = pd.DataFrame({"prompt_id": [prompt_id(p) for p in prompts], "prompt": prompts, "source": "test",
                          "tier": "hq", "cluster": range(len(prompts)), "split": "train"})
    return write_table(frame, text_embedder.encode(prompts), path)


@pytest.fixture(scope="module")
def built(tmp_path_factory, text_embedder) -> tuple[Path, PromptDecoder]:
    """A bank and the decoder whose first load wrote its dictionary beside it."""
    folder = tmp_path_factory.mktemp("bank")
    bank = write_bank(BANK, folder / "prompts.parquet", text_embedder)
    config = DecodeConfig(modifiers=["mediums"], cache_dir=str(folder / "cache"))
    return bank, load_decoder(bank, config, embedder=text_embedder)


def no_embedding(*_args, **_kwargs):
    raise AssertionError("the dictionary and its token counts must come from its file")


def test_the_first_load_writes_the_decoders_own_dictionary_beside_the_bank(built, text_embedder, tmp_path):
    bank, decoder = built
    assert dictionary_path(bank) == bank.parent / "prompts.dictionary.parquet"
    found = read_dictionary(dictionary_path(bank))
    copy = shutil.copy(bank, tmp_path / "prompts.parquet")  # the same bank, its dictionary built in memory
    reference = load_decoder(copy, decoder.config.model_copy(update={"cache_dir": None}), embedder=text_embedder)
    assert found.phrases == reference.phrases == decoder.phrases and not dictionary_path(copy).exists()
    for name in ("_phrase_vectors", "_phrase_weights", "_bank_weights"):
        np.testing.assert_array_equal(getattr(decoder, name), getattr(reference, name))
    assert set(modifier_terms("mediums")) <= set(found.phrases)
    target = text_embedder.encode(["a watercolor of a fox"])[0]
    assert decoder.decode(target) == reference.decode(target)  # the same vectors, the same search
    assert found.settings == {"modifiers": ["mediums"], "min_segment_count": 2, "dictionary_backend": "exact"}


def test_a_later_load_reads_it_and_its_settings_decide_unless_named(built, text_embedder, monkeypatch):
    bank, decoder = built
    monkeypatch.setattr(text_embedder, "encode", no_embedding)
    monkeypatch.setattr(text_embedder, "token_ids", no_embedding)
    plain = load_decoder(bank, DecodeConfig(cache_dir=decoder.config.cache_dir), embedder=text_embedder)
    assert plain.phrases == decoder.phrases and plain.config.modifiers == ["mediums"]  # the bank's dictionary
    for name in ("_phrase_vectors", "_phrase_weights", "_bank_weights"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(decoder, name))
    monkeypatch.undo()
    before = dictionary_path(bank).read_bytes()
    named = load_decoder(bank, DecodeConfig(modifiers=[], cache_dir=decoder.config.cache_dir), embedder=text_embedder)
    assert named.config.modifiers == [] and not set(modifier_terms("mediums")) <= set(named.phrases)
    assert dictionary_path(bank).read_bytes() == before  # the bank's own dictionary is kept


def test_a_dictionary_of_another_bank_is_rebuilt_and_none_is_kept_without_a_cache(built, text_embedder, tmp_path):
    bank, _ = built
    other = write_bank([*BANK, "a lighthouse in a storm, oil painting", "a lighthouse in a storm at dawn"],
                       tmp_path / "prompts.parquet", text_embedder)
    shutil.copy(dictionary_path(bank), dictionary_path(other))  # a stale dictionary: the bank changed since
    fresh = load_decoder(other, DecodeConfig(modifiers=["mediums"], cache_dir=str(tmp_path / "cache")),
                         embedder=text_embedder)
    assert "lighthouse" in fresh.phrases and read_dictionary(dictionary_path(other)).phrases == fresh.phrases
    dictionary_path(other).unlink()
    load_decoder(other, DecodeConfig(modifiers=["mediums"], cache_dir=None), embedder=text_embedder)
    assert not dictionary_path(other).exists()  # decode.cache_dir: null keeps nothing


def test_a_damaged_dictionary_is_one_line_naming_it(built, text_embedder, tmp_path):
    bank, _ = built
    copy = shutil.copy(bank, tmp_path / "prompts.parquet")
    dictionary_path(copy).write_bytes(b"PAR1 not a dictionary")
    with pytest.raises(Img2PromptError, match=r"prompts\.dictionary\.parquet: not a phrase dictionary written by "
                                              "img2prompt .*delete it to build it again"):
        load_decoder(copy, DecodeConfig(modifiers=["mediums"]), embedder=text_embedder)
