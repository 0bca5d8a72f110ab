"""Is a prompt English? Decided by its words: each word votes English, foreign or nothing by how often English and
the other Latin-script languages use it (wordfreq's word lists), and a prompt is dropped only when its foreign
words reach ``min_foreign`` and outnumber its English ones.

Most names, brands and typos ("by yoichi hatakenaka, masamune shirow", "kristoffer egeberg") are common in no
language, so they vote nothing (the best-known names vote English) and cannot make an English prompt foreign:
langdetect, a character n-gram detector, read such lists as Japanese or Polish and dropped 0.08% of the real SD
prompts, and it kept every real Spanish or Portuguese one it met. benchmarks/bench_language.py measures this rule
against it and the other detectors (on real prompts: 1 English one of 70,781 dropped, 24 of 40 non-English ones).
Text mostly in another script (CJK, Cyrillic, Arabic...) or without letters is never English.
"""

from __future__ import annotations

from functools import cache

# wordfreq's Latin-script languages but English, Icelandic and Serbo-Croatian: those two made English prompts foreign
# ("huginn and muninn") and caught no real non-English prompt more. Other scripts are caught by the script check.
OTHER_LANGUAGES = ("ca", "cs", "da", "de", "es", "fi", "fil", "fr", "hu", "id", "it", "lt", "lv", "ms", "nb", "nl",
                   "pl", "pt", "ro", "sk", "sl", "sv", "tr", "vi")
# Frequencies in centibels below 1, as wordfreq stores them: 300 = once per thousand words, 600 = once per million.
FOREIGN_AT_MOST = 500  # a foreign vote: a word its language uses at least 10 times per million words...
FOREIGN_OVER_ENGLISH = 250  # ...and 10**2.5 (~300) times as often as English does ("de", "una", "und", "avec")
ENGLISH_WITHIN = 200  # an English vote: a word of English's list that no other language uses 100 times as often
_ABSENT = 10**6  # not in a language's list (its "small" lists stop at once per million words)
_LATIN_END = 0x024F  # end of Latin Extended-B


def is_english(text: str, words: list[str], min_foreign: int = 2) -> bool:
    """False when ``text`` is mostly another script, has no letters, or has at least ``min_foreign`` foreign words
    and more foreign than English ones. ``words`` are its lower-cased words."""
    letters = [c for c in text if c.isalpha()]
    if not letters or sum(ord(c) > _LATIN_END for c in letters) > 0.5 * len(letters):
        return False
    english, foreign = word_votes()
    foreign_count = sum(w in foreign for w in words)
    return foreign_count < min_foreign or foreign_count <= sum(w in english for w in words)


@cache
def word_votes() -> tuple[frozenset[str], frozenset[str]]:
    """The words that vote English and those that vote foreign (~30k and ~140k; built once, in ~0.4 s)."""
    from wordfreq import available_languages, read_cBpack

    paths = available_languages("small")

    def centibels(lang: str, most: int = _ABSENT) -> dict[str, int]:
        buckets = read_cBpack(paths[lang])[: most + 1]
        return {word: cb for cb, bucket in enumerate(buckets) for word in bucket if len(word) > 1}

    english = centibels("en")
    other: dict[str, int] = {}  # each word in the other language that uses it most (rarer words never decide)
    for lang in OTHER_LANGUAGES:
        for word, cb in centibels(lang, FOREIGN_AT_MOST).items():
            other[word] = min(cb, other.get(word, _ABSENT))
    votes_english = frozenset(w for w, cb in english.items() if other.get(w, _ABSENT) >= cb - ENGLISH_WITHIN)
    votes_foreign = frozenset(w for w, cb in other.items()
                              if cb <= FOREIGN_AT_MOST and english.get(w, _ABSENT) - cb >= FOREIGN_OVER_ENGLISH)
    return votes_english, votes_foreign
