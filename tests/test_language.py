"""The English-only rule on real prompts: English ones full of non-English names are kept, non-English ones dropped.
The rates over all of ../shared's prompts, and the other detectors tried, are in benchmarks/bench_language.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from img2prompt.curate.language import is_english
from img2prompt.curate.rules import PromptRules, RulesConfig, words

FIXTURES = Path(__file__).parent / "fixtures" / "language"
SAMURAI = ("poster of donald trump as a samurai, wearing cyberpunk japanese armor, by yoichi hatakenaka, masamune "
           "shirow, josan gonzales and dan mumford, ayami kojima, takato yamamoto, barclay shaw, karol bak, yukito "
           "kishiro")


def prompts(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def english(text: str, min_foreign: int = 2) -> bool:
    return is_english(text, [w.lower() for w in words(text)], min_foreign)


@pytest.fixture(scope="module")
def rules() -> PromptRules:
    """The language and word-count rules (the CLIP-token and modifier rules would load open_clip's tokenizer)."""
    return PromptRules(RulesConfig(max_clip_tokens=0, drop_only_modifiers=False))


def test_english_prompts_that_name_non_english_artists_are_kept(rules):
    """The 55 real English prompts the langdetect rule dropped, the Japanese-name one among them."""
    kept = prompts("english_sd.txt")
    assert len(kept) == 55 and SAMURAI in kept
    assert [p for p in kept if not english(p)] == []
    assert rules.apply(SAMURAI) == SAMURAI


def test_real_non_english_prompts_are_dropped(rules):
    """24 of the 40 real ones (the langdetect rule: 0); the others hold more English words and well-known names
    than common foreign words, or a single one ("clint eastwood paseando por jumilla")."""
    real = prompts("non_english_sd.txt")
    assert len(real) == 40 and sum(not english(p) for p in real) == 24
    for text in ("EL NOMBRE DE CLAU EN UNA NUBE", "Souris assis mangeant une carotte",
                 'blog themen bild zum thema "abmahnung" google fonts'):
        assert rules.first_failure(text) == "non_english", text


def test_hand_written_non_english_prompts_are_dropped():
    """All but one of 95, in 25 languages and scripts; the Polish one has a single common Polish word."""
    kept = [p for p in prompts("non_english.txt") if english(p)]
    assert kept == ["smok lecący nad górami, ilustracja fantasy"]


def test_a_word_votes_only_when_a_language_uses_it_often():
    """Names vote nothing, well-known ones vote English; "de", "el", "un" vote foreign, two of them are needed."""
    assert english("a castle by giorgio de chirico")  # one foreign vote ("de")
    assert english("la familia peluche by tim burton")  # two foreign votes, three English ones
    assert not english("el castillo de un rey")  # three foreign votes, two English ("castillo", "rey": names)
    assert english("clint eastwood paseando por jumilla")  # "por" alone...
    assert not english("paseando por jumilla", min_foreign=1)  # ...drops it when one foreign word is enough


def test_other_scripts_and_no_letters_are_not_english():
    assert not english("東京の夜景、ネオンが光る街並み, 8k")
    assert not english("кот сидит на подоконнике, digital art")
    assert not english("3404097961, 2534303350, 1448669609")
    assert english("portrait of 半 藏 森 林 on bed, intricate, elegant, illustration, matte, art by wlop")
