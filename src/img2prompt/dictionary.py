"""A prompt bank's phrase dictionary as a file, so the decoder's one slow step happens once per bank.

The decoder composes prompts from a dictionary of phrases (``img2prompt.phrases``: the bank's frequent segments
and words, and the clip-interrogator term lists: ~135k phrases with all four) embedded with all-MiniLM-L6-v2,
minutes of work on a CPU. ``load_decoder`` writes it beside its bank the first time (``prompts.parquet`` ->
``prompts.dictionary.parquet``: ``phrase``, ``embedding``, ``tokens``) and reads it from there afterwards, in a
fraction of a second; the quickstart's evaluation builds it, and ``push`` uploads it with the bank, so a pushed
model decodes at once. The token counts of the bank's prompts, which the decoder's surrogate also needs, ride in
the file's metadata (a bank of millions of prompts takes tens of seconds to tokenize).

The file records how it was built (``SETTINGS``: the term lists, the minimum segment count, the screening backend;
the embedder; ``FORMAT``) and a digest of its bank's prompts. A dictionary of another bank, another embedder or
another format is never used. One built with other settings is used when the caller left those settings at their
defaults (the bank's dictionary decides what a plain ``interrogate`` composes with); a caller who names them
(``--set decode.modifiers=[...]``) gets them, built in memory without touching the file.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from img2prompt.decode import DecodeConfig, PromptDecoder, token_counts
from img2prompt.embedding import TextEmbedder
from img2prompt.errors import fail
from img2prompt.files import atomic_path, unwritable
from img2prompt.phrases import dictionary_phrases, modifier_terms
from img2prompt.prompt_table import read_table
from img2prompt.space import column_matrix, embedding_column

SUFFIX = ".dictionary.parquet"
SETTINGS = ("modifiers", "min_segment_count", "dictionary_backend")  # the decode keys that change the dictionary
FORMAT = 2  # change it when what the file holds or means changes: an older file is then built again
_META = b"img2prompt"


@dataclass(frozen=True)
class Dictionary:
    """Phrases, their (screening) embeddings and token counts, the bank prompts' token counts, how they were built
    (settings, embedder) and the digest of their bank."""

    phrases: list[str]
    vectors: np.ndarray
    phrase_tokens: np.ndarray
    bank_tokens: np.ndarray
    settings: dict
    embedder: str
    bank_digest: str


def dictionary_path(bank: str | Path) -> Path:
    """Where a bank's dictionary lives: ``prompts.parquet`` -> ``prompts.dictionary.parquet`` beside it."""
    bank = Path(bank)
    return bank.with_name(bank.name.removesuffix(".parquet") + SUFFIX)


def settings_of(config: DecodeConfig) -> dict:
    return {key: getattr(config, key) for key in SETTINGS}


def digest(prompts: Sequence[str]) -> str:
    """A bank's identity for its dictionary: the sha256 of its prompts, in order."""
    return hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()


def phrases_for(prompts: Sequence[str], config: DecodeConfig, bank: str | Path) -> list[str]:
    """The dictionary's phrases (``dictionary_phrases``); none at all is a one-line error naming the bank."""
    phrases = dictionary_phrases(prompts, config.min_segment_count, [modifier_terms(n) for n in config.modifiers])
    if not phrases:
        raise fail(bank, f"no phrases to compose prompts from: no segment or word of the bank occurs "
                         f"{config.min_segment_count} times and decode.modifiers is empty (add a term list, e.g. "
                         "mediums)")
    return phrases


def write_dictionary(found: Dictionary, path: str | Path) -> Path:
    """Write a dictionary atomically (Parquet: ``phrase``, ``embedding``; how it was built in the metadata)."""
    meta = {"format": FORMAT, "settings": found.settings, "embedder": found.embedder, "bank_digest": found.bank_digest,
            "bank_tokens": base64.b64encode(found.bank_tokens.astype("<u2").tobytes()).decode("ascii")}
    table = pa.table({"phrase": pa.array(found.phrases, pa.string()), "embedding": embedding_column(found.vectors),
                      "tokens": pa.array(found.phrase_tokens.astype(np.uint16))})
    table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_dictionary(path: str | Path) -> Dictionary | None:
    """Read a dictionary file; None for one of an older format (built again); a damaged or foreign file is a
    one-line error naming it."""
    try:
        meta = json.loads((pq.read_schema(path).metadata or {})[_META])  # the footer alone: an old file is not read
        if meta.get("format") != FORMAT:
            return None
        table = pq.read_table(path)
        bank_tokens = np.frombuffer(base64.b64decode(meta["bank_tokens"]), "<u2").astype(np.float32)
        return Dictionary(table.column("phrase").to_pylist(), column_matrix(table.column("embedding"), path),
                          table.column("tokens").to_numpy().astype(np.float32), bank_tokens,
                          dict(meta["settings"]), str(meta["embedder"]), str(meta["bank_digest"]))
    except (pa.ArrowInvalid, OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise fail(path, f"not a phrase dictionary written by img2prompt ({type(exc).__name__}: {why}); delete it "
                         "to build it again") from None


def load_decoder(bank: str | Path, config: DecodeConfig | None = None, *, dictionary: str | Path | None = None,
                 embedder: TextEmbedder | None = None) -> PromptDecoder:
    """A decoder over ``bank`` with its phrase dictionary (``bank_dictionary``)."""
    config = config or DecodeConfig()
    frame, embeddings = read_table(bank, columns=["prompt", "embedding"])
    if not len(frame):
        raise fail(bank, "the prompt table is empty")
    embedder = embedder or TextEmbedder(cache_dir=_cache_dir(config))
    found, config = bank_dictionary(bank, config, list(frame.prompt), dictionary=dictionary, embedder=embedder)
    return PromptDecoder(list(frame.prompt), embeddings, found.phrases, found.vectors, embedder, config,
                         token_weights=(found.bank_tokens, found.phrase_tokens))


def bank_dictionary(bank: str | Path, config: DecodeConfig, prompts: Sequence[str], *,
                    dictionary: str | Path | None = None, embedder: TextEmbedder | None = None
                    ) -> tuple[Dictionary, DecodeConfig]:
    """The dictionary of a bank whose prompts are ``prompts``, and the decode settings it was built with.

    Read from ``dictionary`` (default: beside the bank) when it is this bank's and its settings fit ``config``;
    else built, and written beside the bank when no dictionary of this bank is there yet, the folder is writable
    and ``config.cache_dir`` allows caching."""
    path = Path(dictionary) if dictionary is not None else dictionary_path(bank)
    found = read_dictionary(path) if path.is_file() else None
    embedder = embedder or TextEmbedder(cache_dir=_cache_dir(config))
    ours = found is not None and found.bank_digest == digest(prompts) and found.embedder == embedder.tag
    if found is not None and ours and (found.settings == settings_of(config)
                                       or not config.model_fields_set & set(SETTINGS)):
        return found, config.model_copy(update=found.settings)
    phrases = phrases_for(prompts, config, bank)
    cache_dir = _cache_dir(config)
    screen = embedder if config.dictionary_backend == "exact" else TextEmbedder(backend="int8", cache_dir=cache_dir)
    keep = cache_dir is not None and not ours and unwritable(path) is None
    vectors = screen.encode(phrases, progress=len(phrases) > 5000,
                            label=f"phrase dictionary ({f'once: kept in {path}' if keep else 'not kept'})")
    built = Dictionary(phrases, vectors, token_counts(embedder, phrases), token_counts(embedder, prompts),
                       settings_of(config), embedder.tag, digest(prompts))
    if keep:
        write_dictionary(built, path)
    return built, config


def _cache_dir(config: DecodeConfig) -> Path | None:
    return Path(config.cache_dir).expanduser() if config.cache_dir else None
