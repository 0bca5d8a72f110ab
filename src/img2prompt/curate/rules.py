"""The cleaning rules: each one configurable, each one counted, applied to every prompt in a fixed order.

Normalisers rewrite a prompt and count how many they changed: mojibake repair (ftfy), prompt-weight syntax
(``(anime:1.5)`` -> ``anime``, ``[[castle]]`` -> ``castle``, ``<lora:x:0.8>`` and ``--ar 16:9`` dropped),
whitespace. Filters drop a prompt and count it under the first rule it fails: unreadable characters, URLs
and e-mail addresses, non-English (judged by word frequencies, so artists' names do not count: curate.language),
word and CLIP-token length bounds (Stable Diffusion reads at most 77 CLIP tokens, so a longer prompt's tail never
reached the image), prompts made only of modifiers ("highly detailed, 8k, trending on artstation"), and an
optional blocked-word list.
"""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Annotated

import ftfy
from pydantic import Field, model_validator

from img2prompt.config import INPUT, StrictModel
from img2prompt.curate.language import is_english
from img2prompt.errors import fail
from img2prompt.term_lists import clip_interrogator_terms

# Order matters: a dropped prompt is counted under the first rule it fails.
FILTERS = ("unreadable", "url_or_email", "non_english", "too_short", "too_long", "too_many_tokens",
           "only_modifiers", "blocked_word")
NORMALISERS = ("encoding_fixed", "weights_normalised")
EXAMPLES_PER_RULE = 5

_URL = re.compile(
    r"(https?://|www\.)\S+|\b[\w.+-]+@[\w-]+\.[\w.-]+\b|\b\S+\.(com|net|org|io|ly)(/\S*)?\b", re.IGNORECASE
)
_WEIGHTED = re.compile(r"\(([^():]*):\s*[-+]?\d*\.?\d+\s*\)")  # (anime:1.5)
_MJ_WEIGHT = re.compile(r"::\s*-?\d*\.?\d*")  # castle::2
_LORA = re.compile(r"<[^<>]*:[^<>]*>")  # <lora:name:0.8>
_MJ_PARAM = re.compile(r"(^|\s)--[a-z]+(\s+[\w:.]+)?", re.IGNORECASE)  # --ar 16:9 --v 5
_BRACKETS = re.compile(r"[()\[\]{}]")
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?])")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_MODIFIER_PREFIXES = ("by ", "in the style of ", "style of ", "trending on ", "featured on ", "art by ")


class RulesConfig(StrictModel):
    """Bounds and switches of the rules; a filter is off when its bound is 0 or its switch is false."""

    fix_encoding: bool = True
    normalise_weights: bool = True
    drop_urls: bool = True
    min_words: int = Field(3, ge=0)
    max_words: int = Field(80, ge=0)
    max_clip_tokens: int = Field(77, ge=0)
    english_only: bool = True
    min_foreign_words: int = Field(2, ge=1)  # non-English: at least this many foreign words, more than English ones
    drop_only_modifiers: bool = True
    modifier_flavors: int = Field(150, ge=0)  # the most frequent clip-interrogator "flavors" counted as modifiers
    blocked_words: list[str] = Field(default_factory=list)
    blocked_words_file: Annotated[Path | None, INPUT] = None
    hq_min_words: int = Field(5, ge=0)  # prompts from hq sources shorter than this are kept but moved to the lq tier

    @model_validator(mode="after")
    def _words_in_order(self) -> RulesConfig:
        if self.max_words and self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words}): every prompt "
                             "would be dropped")
        return self


class PromptRules:
    """Apply the rules to one prompt at a time; ``counts`` says how many prompts each rule touched."""

    def __init__(self, config: RulesConfig):
        self.config = config
        self.counts: Counter[str] = Counter({name: 0 for name in (*NORMALISERS, *FILTERS)})
        self.examples: dict[str, list[str]] = {name: [] for name in FILTERS}
        self._blocked = {w.lower() for w in config.blocked_words}
        if config.blocked_words_file is not None:
            try:
                lines = config.blocked_words_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise fail(config.blocked_words_file, f"cannot read the blocked-word list ({exc})") from None
            self._blocked |= {w.strip().lower() for w in lines if w.strip()}

    def apply(self, text: str) -> str | None:
        """The cleaned prompt, or None when a filter drops it (counted under that filter)."""
        text = self.normalise(text)
        reason = self.first_failure(text)
        if reason is not None:
            self.counts[reason] += 1
            if len(self.examples[reason]) < EXAMPLES_PER_RULE:
                self.examples[reason].append(text)
            return None
        return text

    def normalise(self, text: str) -> str:
        cfg = self.config
        if cfg.fix_encoding and not text.isascii():
            fixed = ftfy.fix_text(text, uncurl_quotes=False, fix_line_breaks=False)
            if fixed != text:
                self.counts["encoding_fixed"] += 1
                text = fixed
        if cfg.normalise_weights:
            plain = strip_weights(text)
            if plain != tidy(text):
                self.counts["weights_normalised"] += 1
            return plain
        return tidy(text)

    def first_failure(self, text: str) -> str | None:
        cfg = self.config
        if not text or has_unreadable(text):
            return "unreadable"
        if cfg.drop_urls and _URL.search(text):
            return "url_or_email"
        words = _WORD.findall(text.lower())
        # before the word counts: CJK has no spaces
        if cfg.english_only and not is_english(text, words, cfg.min_foreign_words):
            return "non_english"
        if cfg.min_words and len(words) < cfg.min_words:
            return "too_short"
        if cfg.max_words and len(words) > cfg.max_words:
            return "too_long"
        # a CLIP token covers at least one character, so short prompts need no tokenizing
        limit = cfg.max_clip_tokens
        if limit and len(text) > limit and self.clip_tokens(text) > limit:
            return "too_many_tokens"
        if cfg.drop_only_modifiers and self.only_modifiers(text):
            return "only_modifiers"
        if self._blocked and self._blocked.intersection(words):
            return "blocked_word"
        return None

    def tier(self, text: str, source_tier: str) -> str:
        """hq sources stay hq unless the prompt is shorter than ``hq_min_words``; lq sources stay lq."""
        if source_tier == "hq" and len(_WORD.findall(text)) < self.config.hq_min_words:
            return "lq"
        return source_tier

    def clip_tokens(self, text: str) -> int:
        """Tokens of Stable Diffusion's CLIP BPE tokenizer (without start/end tokens)."""
        return len(self._clip_tokenizer.encode(text))

    def only_modifiers(self, text: str) -> bool:
        """True when every comma-separated part is a style/quality modifier or an artist credit."""
        parts = [p.strip(" .").lower() for p in re.split(r"[,|]", text)]
        parts = [p for p in parts if p]
        return bool(parts) and all(p in self._modifiers or p.startswith(_MODIFIER_PREFIXES) for p in parts)

    @cached_property
    def _clip_tokenizer(self):
        return clip_bpe_tokenizer()

    @cached_property
    def _modifiers(self) -> frozenset[str]:
        """clip-interrogator's most frequent flavors plus all its mediums, movements and artists."""
        flavors = clip_interrogator_terms("flavors")[: self.config.modifier_flavors]
        others = [t for name in ("mediums", "movements", "artists") for t in clip_interrogator_terms(name)]
        return frozenset(term.lower() for term in flavors + others)


def words(text: str) -> list[str]:
    """The words of a prompt (letters, with inner apostrophes), as the length rules count them."""
    return _WORD.findall(text)


def tidy(text: str) -> str:
    """Single spaces, no space before punctuation, no outer spaces or commas."""
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text))
    return re.sub(r",(\s*,)+", ",", text).strip(" ,")


def strip_weights(text: str) -> str:
    """Remove prompt-weight syntax (A1111, NovelAI, Midjourney) but keep the words it weighted."""
    text = _LORA.sub(" ", text)
    text = _MJ_PARAM.sub(" ", text)
    text = _WEIGHTED.sub(r"\1", text)
    text = _MJ_WEIGHT.sub(" ", text)
    return tidy(_BRACKETS.sub(" ", text))


def has_unreadable(text: str) -> bool:
    """U+FFFD (undecodable bytes), control, private-use, unassigned or surrogate characters."""
    if text.isprintable():  # the fast path: no character of any "Other" category
        return "\ufffd" in text
    return any(c == "\ufffd" or (unicodedata.category(c) in ("Cc", "Co", "Cn", "Cs") and c not in "\t\n") for c in text)


def clip_bpe_tokenizer():
    """Stable Diffusion's CLIP BPE tokenizer: open_clip's ``tokenizer`` module loaded on its own (stdlib, ftfy,
    regex, numpy and torch), since importing the ``open_clip`` package first builds every model class it knows,
    ~3 s that counting tokens does not need."""
    package = importlib.util.find_spec("open_clip")
    if package is None or not package.submodule_search_locations:
        raise ModuleNotFoundError("open_clip is not installed (the curation rules count CLIP tokens with it)")
    path = Path(package.submodule_search_locations[0]) / "tokenizer.py"
    spec = importlib.util.spec_from_file_location("img2prompt_clip_bpe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer()

