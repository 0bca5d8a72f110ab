"""The phrases a decoded prompt is made of: the bank's frequent comma-separated segments and words, and the
clip-interrogator term lists; and what a phrase *says* (``phrase_key``), so the decoder never repeats one."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from img2prompt.term_lists import clip_interrogator_terms

_SEGMENT_SPLIT = re.compile(r"[,;|\n]+")
_WEIGHT_SYNTAX = re.compile(r"[()\[\]{}]|:\d+(\.\d+)?")
_WORD = re.compile(r"[a-z][a-z'-]+")
_KEY_WORD = re.compile(r"[^\W_]+")  # letters and digits: what a phrase says, without case, spacing or punctuation


def modifier_terms(name: str) -> list[str]:
    """One clip-interrogator term list, artists phrased ``by <name>`` as Stable Diffusion prompts write them."""
    terms = clip_interrogator_terms(name)
    return [f"by {t}" for t in terms] if name == "artists" else terms


def prompt_segments(prompt: str) -> list[str]:
    """Comma-separated pieces of a prompt, lower case, without SD weighting syntax like ``(word:1.2)``."""
    pieces = []
    for piece in _SEGMENT_SPLIT.split(prompt.lower()):
        piece = " ".join(_WEIGHT_SYNTAX.sub(" ", piece).split()).strip(" .!-_\"'")
        if piece and len(piece) <= 80:
            pieces.append(piece)
    return pieces


def bank_phrases(prompts: Iterable[str], min_count: int) -> list[str]:
    """Segments and words that occur in at least ``min_count`` bank prompts, most frequent first (then A-Z)."""
    counts: Counter[str] = Counter()
    for prompt in prompts:
        segments = set(prompt_segments(prompt))
        counts.update(segments | {w for s in segments for w in _WORD.findall(s)})
    return sorted((text for text, n in counts.items() if n >= min_count), key=lambda text: (-counts[text], text))


def phrase_key(text: str) -> str:
    """What a phrase says, for spotting repeats: its words in lower case, single-spaced, without punctuation."""
    return " ".join(_KEY_WORD.findall(text.lower()))


def segment_keys(text: str) -> tuple[str, ...]:
    """The keys of a text's comma-separated parts (the parts a decoded prompt is made of)."""
    return tuple(key for key in (phrase_key(part) for part in _SEGMENT_SPLIT.split(text)) if key)


def repeats(key: str, keys: Sequence[str]) -> bool:
    """Whether a phrase (``key``) repeats a text's parts (``keys``): a part says it, or it says a part, word for
    word (``"film grain"`` repeats ``"heavy film grain"`` and the reverse; ``"grain"`` does not repeat
    ``"grainy"``)."""
    padded = f" {key} "
    return any(padded in f" {part} " or f" {part} " in padded for part in keys)


def dictionary_phrases(prompts: Iterable[str], min_count: int, term_lists: Iterable[Sequence[str]]) -> list[str]:
    """The bank's segments and words found in ``min_count`` prompts, then the term lists: one phrase per key (the
    first spelling kept), so the dictionary never offers the same phrase twice."""
    phrases = bank_phrases(prompts, min_count)
    for terms in term_lists:
        phrases.extend(terms)
    unique: dict[str, str] = {}
    for phrase in phrases:
        unique.setdefault(phrase_key(phrase), phrase)
    unique.pop("", None)  # punctuation alone says nothing
    return list(unique.values())
