"""Every cleaning rule: what it rewrites, what it drops, and that it counts exactly what it did."""

from __future__ import annotations

import pytest

from img2prompt.curate.rules import PromptRules, RulesConfig, has_unreadable, strip_weights
from img2prompt.errors import Img2PromptError


@pytest.fixture(scope="module")
def rules() -> PromptRules:
    return PromptRules(RulesConfig())


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a castle, (anime:1.5), ((masterpiece))", "a castle, anime, masterpiece"),
        ("[[dark forest]] at night , {glowing} eyes", "dark forest at night, glowing eyes"),
        ("portrait of a knight::2 in armor --ar 16:9 --v 5", "portrait of a knight in armor"),
        ("<lora:epiNoiseoffset_v2:0.8> a red fox in snow", "a red fox in snow"),
        ("a photo of a cat (1990)", "a photo of a cat 1990"),
        ("plain prompt,  with   spaces ,", "plain prompt, with spaces"),
    ],
)
def test_weight_syntax_is_normalised_not_dropped(raw, clean):
    assert strip_weights(raw) == clean


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("a cat \ufffd sitting on a mat", "unreadable"),
        ("a cat sitting\x07 on a mat", "unreadable"),
        ("a cat sitting on a mat, see https://x.org/cat", "url_or_email"),
        ("commission a cat portrait: mail me at artist@example.com", "url_or_email"),
        ("cat", "too_short"),
        ("cat " * 81, "too_long"),
        (", ".join(["a red cat"] * 25), "too_many_tokens"),  # 75 words, 99 tokens
        ("Un chat noir dort dans une cuisine avec des pommes", "non_english"),
        ("Ein schwarzer Hund spielt mit der Katze und dem Ball", "non_english"),
        ("東京の夜景、ネオンが光る街並み", "non_english"),
        ("highly detailed, 8k, trending on artstation, by greg rutkowski", "only_modifiers"),
    ],
)
def test_each_filter_drops_and_counts(text, rule):
    rules = PromptRules(RulesConfig())
    assert rules.apply(text) is None
    assert rules.counts[rule] == 1
    assert sum(rules.counts[k] for k in rules.examples) == 1
    assert rules.examples[rule] == [rules.normalise(text)]


@pytest.mark.parametrize(
    "text",
    [
        "A man riding a wave on top of a surfboard.",
        "los angeles at night, neon lights, cinematic",
        "A dog swims.",
        "portrait of a cyberpunk samurai, neon lights, artstation, 8k",
        "a castle on a hill, by greg rutkowski",
        "Café terrace at night in the style of van gogh",
    ],
)
def test_english_prompts_with_content_are_kept(rules, text):
    assert rules.apply(text) == strip_weights(text)


def test_blocked_words_from_config_and_file(tmp_path):
    words = tmp_path / "blocked.txt"
    words.write_text("gore\n\nBlood\n", encoding="utf-8")
    rules = PromptRules(RulesConfig(blocked_words=["nsfw"], blocked_words_file=words))
    kept = rules.apply("a knight in shining armor at dawn")
    dropped = [rules.apply(t) for t in ["nsfw art of a knight", "a knight covered in blood", "gore everywhere now"]]
    assert kept == "a knight in shining armor at dawn" and dropped == [None, None, None]
    assert rules.counts["blocked_word"] == 3


def test_missing_blocked_word_file_names_it(tmp_path):
    with pytest.raises(Img2PromptError, match=r"nope\.txt: cannot read the blocked-word list"):
        PromptRules(RulesConfig(blocked_words_file=tmp_path / "nope.txt"))


def test_rules_switch_off():
    rules = PromptRules(RulesConfig(min_words=0, english_only=False, drop_only_modifiers=False, drop_urls=False,
                                    normalise_weights=False))
    assert rules.apply("cat") == "cat"
    assert rules.apply("highly detailed, 8k") == "highly detailed, 8k"
    assert rules.apply("Un chat noir dort dans une cuisine") == "Un chat noir dort dans une cuisine"
    assert rules.apply("(anime:1.5) girl") == "(anime:1.5) girl"
    assert rules.counts["weights_normalised"] == 0


def test_mojibake_is_repaired_and_counted():
    rules = PromptRules(RulesConfig())
    assert rules.apply("a cafÃ© on a rainy street in paris") == "a café on a rainy street in paris"
    assert rules.counts["encoding_fixed"] == 1


def test_hq_prompts_shorter_than_hq_min_words_move_to_lq(rules):
    assert rules.tier("a dog swims", "hq") == "lq"
    assert rules.tier("a brown dog swims across a lake", "hq") == "hq"
    assert rules.tier("a brown dog swims across a lake", "lq") == "lq"


def test_unreadable_detection():
    assert not has_unreadable("naïve café, 東京, emoji 🦊")
    assert has_unreadable("private \ue000 use") and has_unreadable("nul \x00 byte")


def test_a_missing_clip_interrogator_is_a_one_line_error(monkeypatch):
    from importlib import metadata

    def not_installed(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    rules = PromptRules(RulesConfig())
    with pytest.raises(Img2PromptError, match=r"^clip-interrogator==0\.6\.0 is not installed") as err:
        rules.only_modifiers("highly detailed, 8k")
    assert "\n" not in str(err.value)
    assert PromptRules(RulesConfig(drop_only_modifiers=False)).apply("a red fox, highly detailed, 8k") is not None


def test_clip_tokens_are_counted_by_open_clips_own_tokenizer():
    """The rule's tokenizer is open_clip's module loaded on its own: the same tokens as the package's."""
    from open_clip.tokenizer import SimpleTokenizer

    from img2prompt.curate.rules import clip_bpe_tokenizer

    texts = ["a photo of a cat, highly detailed, 8k, by greg rutkowski", "Émile Zola, ümlaut, 東京!!", "", "(red:1.3)"]
    ours, reference = clip_bpe_tokenizer(), SimpleTokenizer()
    assert [ours.encode(t) for t in texts] == [reference.encode(t) for t in texts]
