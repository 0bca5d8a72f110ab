"""Embedding -> readable prompt: compose bank phrases and modifiers until the text's embedding hits the target.

all-MiniLM-L6-v2 mean-pools its token states, so the pooled (unnormalised) vector of ``"a, b, c"`` is close
to the sum of the pooled vectors of ``a``, ``b`` and ``c`` embedded alone, each about its token count times
its unit embedding. That makes a cheap surrogate: the cosine to the target of any set of phrases can be
scored for thousands of candidates at once with a few matrix-vector products, without running the model.

``decode`` runs a beam search on that surrogate, starting from the nearest bank prompts (a subject) and
from the best single phrases, adding phrases from a dictionary: comma-separated segments and words of the
bank prompts, and the clip-interrogator term lists (artists, mediums, movements, flavors). The dictionary
(``img2prompt.phrases``) only screens candidates: it is embedded once (``dictionary_backend``) and kept, with the
tokens of every phrase and bank prompt, in one file beside its bank (``img2prompt.dictionary``). A phrase is never added
to a text that already says it: not the same phrase, not one that differs only in case, spacing or punctuation,
not one a part of the text contains or that contains a part of the text (the surrogate would happily repeat a
phrase the target likes: "film grain" four times in one prompt). The surrogate flatters
long texts, so each token must buy ``token_penalty`` of surrogate cosine, and only the most promising texts
are embedded exactly, a small batch at a time. The best exactly scored text not grown yet starts the next
round with its exact vector in place of its surrogate (which corrects the surrogate's error). A mode
(``fast``, ``best``) fixes the amount of search work, so the same target gives the same text on any machine;
an optional time cap only cuts the search short, and the answer is always the best *exactly* scored text,
so its cosine is the true one.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from img2prompt.config import StrictModel
from img2prompt.embedding import TextEmbedder
from img2prompt.errors import Img2PromptError
from img2prompt.phrases import phrase_key, repeats, segment_keys
from img2prompt.space import EMBEDDING_DIM
from img2prompt.term_lists import TERM_LISTS


class SearchEffort(StrictModel):
    """How much one decode searches. A fixed amount of work, never a time: the same embedding gives the same
    prompt on any machine under any load."""

    neighbours: int = Field(8, ge=1)  # bank prompts used as starting points
    pool: int = Field(4096, ge=1)  # dictionary phrases kept per query (most similar to the target)
    beam: int = Field(4, ge=1)
    max_phrases: int = Field(16, ge=0)  # phrases added to a starting prompt per round
    verify: int = Field(8, ge=1)  # candidate texts embedded exactly per round, most promising first
    batch: int = Field(2, ge=1)  # texts embedded exactly at once: a budget cap is checked between batches
    patience: int = Field(4, ge=1)  # rounds without a better text before the search stops
    rounds: int = Field(32, ge=1)  # rounds at most


def default_modes() -> dict[str, SearchEffort]:
    """``fast`` answers in about a fifth of ``best``'s work (benchmarks/RESULTS.md, issue 15)."""
    return {"fast": SearchEffort(neighbours=4, pool=1024, beam=2, max_phrases=8, verify=4, patience=2, rounds=4),
            "best": SearchEffort()}


class DecodeConfig(StrictModel):
    """The ``decode:`` section: dictionary sources and the search modes."""

    mode: str = "fast"  # the mode used when a caller names none
    modes: dict[str, SearchEffort] = Field(default_factory=default_modes)
    budget_s: float | None = Field(None, ge=0)  # a cap on one decode's seconds; None: none. A result says when it bit
    max_tokens: int = Field(77, ge=1)  # stop growing a text at this many tokens (SD prompts are at most 77 CLIP tokens)
    token_penalty: float = Field(0.002, ge=0)  # surrogate cosine a token must buy (the surrogate flatters long texts)
    threads: int = Field(1, ge=1)  # torch/faiss threads while decoding (more stall on shared cores; see _threads)
    min_segment_count: int = Field(2, ge=1)  # a bank segment/word joins the dictionary if it occurs this often
    modifiers: list[str] = Field(default_factory=lambda: list(TERM_LISTS))
    # int8 builds the dictionary 4-18% faster and decodes as well (benchmarks/RESULTS.md, issue 15), but loads a
    # second model beside the exact one; the one-time build is not worth it by default
    dictionary_backend: Literal["exact", "int8"] = "exact"
    # The target embedder's cache of embedded texts ($IMG2PROMPT_CACHE overrides the default folder). None keeps
    # nothing: no embedding cache, and no phrase dictionary written beside the bank (img2prompt.dictionary).
    cache_dir: str | None = Field(default_factory=lambda: os.environ.get("IMG2PROMPT_CACHE", "~/.cache/img2prompt"))

    @model_validator(mode="before")
    @classmethod
    def _modes_over_the_defaults(cls, data: Any) -> Any:
        """``modes`` given in a config or ``--set decode.modes.best.beam=8`` change only what they name: the
        other modes and the other fields of a named mode keep their defaults."""
        if not isinstance(data, dict) or not isinstance(data.get("modes"), dict):
            return data
        merged: dict[str, Any] = {name: effort.model_dump() for name, effort in default_modes().items()}
        for name, effort in data["modes"].items():
            merged[name] = {**merged.get(name, {}), **effort} if isinstance(effort, dict) else effort
        return {**data, "modes": merged}

    @model_validator(mode="after")
    def _known_mode(self) -> DecodeConfig:
        if self.mode not in self.modes:
            raise ValueError(f"mode {self.mode!r} is not one of the modes ({', '.join(self.modes)})")
        return self

    def effort(self, mode: str | None = None) -> SearchEffort:
        """The search effort of ``mode`` (the configured default when None); an unknown mode is a user error."""
        name = mode or self.mode
        if name not in self.modes:
            raise Img2PromptError(f"unknown decode mode {name!r} (choose from {', '.join(self.modes)})")
        return self.modes[name]


@dataclass(frozen=True)
class DecodeResult:
    """The best exactly scored text, its cosine to the target embedding, and whether the time cap cut the search
    short (then a faster machine could have found a better text)."""

    text: str
    cosine: float
    capped: bool = False


class PromptDecoder:
    """Nearest prompts and composed prompts for a target embedding, from a prompt bank and term lists."""

    def __init__(
        self,
        prompts: Sequence[str],
        embeddings: np.ndarray,
        phrases: Sequence[str],
        phrase_embeddings: np.ndarray,
        embedder: TextEmbedder,
        config: DecodeConfig | None = None,
        token_weights: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        """``token_weights``: the tokens each bank prompt and each phrase adds to a prompt (counted when None)."""
        import faiss

        self.config = config or DecodeConfig()
        self.embedder = embedder
        self.clock = time.perf_counter  # read between search steps; tests swap in a virtual clock
        self.prompts = list(prompts)
        self.phrases = list(phrases)
        self._bank = faiss.IndexFlatIP(EMBEDDING_DIM)
        self._bank.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._phrase_index = faiss.IndexFlatIP(EMBEDDING_DIM)
        self._phrase_index.add(np.ascontiguousarray(phrase_embeddings, dtype=np.float32))
        self._phrase_vectors = np.ascontiguousarray(phrase_embeddings, dtype=np.float32)
        self._bank_vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        self._bank_weights, self._phrase_weights = token_weights or (
            token_counts(embedder, self.prompts), token_counts(embedder, self.phrases))

    def nearest(self, vec: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` bank prompts closest to ``vec`` with their cosines, best first."""
        scores, ids = self._bank.search(_unit(vec)[None], min(k, len(self.prompts)))
        return [(self.prompts[i], float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]

    def decode(self, vec: np.ndarray, mode: str | None = None, budget_s: float | None = None) -> DecodeResult:
        """The best text ``mode``'s search finds and its exact cosine to ``vec``.

        The search is a fixed sequence of small steps (a faiss query, one beam-search step, one exact batch of
        ``batch`` texts), set by the mode alone, so the answer never depends on the clock. A time cap
        (``budget_s``, else the config's) only cuts that sequence short: between steps the clock is read and the
        search stops unless the longest step so far would still end in time, and the result says it was capped.
        A larger cap runs the same sequence further, so it never returns a worse text.
        """
        effort = self.config.effort(mode)
        budget = self.config.budget_s if budget_s is None else budget_s
        last = self.clock()
        deadline, longest = last + (budget if budget is not None else float("inf")), 0.0
        target = _unit(vec)
        best: DecodeResult | None = None
        capped = False
        with _threads(self.config.threads):
            for found in self._search(target, effort):
                if found is not None and (best is None or found.cosine > best.cosine):
                    best = found
                now = self.clock()
                longest, last = max(longest, now - last), now
                if now + longest >= deadline:
                    capped = True
                    break
        assert best is not None  # the search yields the nearest bank prompt first
        return DecodeResult(best.text, best.cosine, capped)

    def _search(self, target: np.ndarray, effort: SearchEffort) -> Iterator[DecodeResult | None]:
        """Yield the nearest bank prompt, then the best text of every exact batch (``None`` between steps).

        Each round grows its start phrase by phrase on the surrogate, then embeds the most promising
        candidates exactly, best first. The next round starts from the best exactly scored text not yet
        grown (the winner if the round improved, else the runner-up), with its exact vector in place of
        its surrogate; the search stops after ``patience`` rounds without a better text, or ``rounds`` in all.
        """
        cfg = effort
        _, bank_ids = self._bank.search(target[None], min(cfg.neighbours, len(self.prompts)))
        bank_ids = bank_ids[0][bank_ids[0] >= 0]
        best = float(self._bank_vectors[bank_ids[0]] @ target)
        yield DecodeResult(self.prompts[bank_ids[0]], best)
        _, pool_ids = self._phrase_index.search(target[None], min(cfg.pool, len(self.phrases)))
        yield None
        pool = _Pool(pool_ids[0][pool_ids[0] >= 0], self._phrase_vectors, self._phrase_weights, target)
        # Start from the nearest bank prompts (a subject) and from the best single phrases (no subject).
        starts = [_State(self.prompts[i], frozenset(), segment_keys(self.prompts[i]),
                         self._bank_vectors[i] * self._bank_weights[i], float(self._bank_weights[i]))
                  for i in bank_ids]
        starts += [_State(self.phrases[pool.ids[j]], frozenset({int(pool.ids[j])}),
                          (phrase_key(self.phrases[pool.ids[j]]),), pool.vectors[j], float(pool.weights[j]))
                   for j in range(min(cfg.neighbours, len(pool.ids)))]
        scored = {self.prompts[i]: float(self._bank_vectors[i] @ target) for i in bank_ids}
        frontier: list[tuple[float, int, _State]] = []  # exactly scored, not grown yet: a max-heap on cosine
        stale = 0
        for _ in range(cfg.rounds):
            candidates = yield from self._beam_search(starts, target, pool, cfg)
            fresh = [state for state in candidates if state.text not in scored][: cfg.verify]
            round_best = -1.0
            for first in range(0, len(fresh), cfg.batch):
                chunk = fresh[first:first + cfg.batch]
                exact = self.embedder.encode([state.text for state in chunk])
                cosines = exact @ target
                for state, vector, cosine in zip(chunk, exact, cosines, strict=True):
                    scored[state.text] = float(cosine)
                    # The exact direction replaces the surrogate: a round grown from here starts from the truth.
                    grown = _State(state.text, state.used, state.keys, vector * float(np.linalg.norm(state.vector)),
                                   state.tokens)
                    heapq.heappush(frontier, (-float(cosine), len(scored), grown))
                top = int(np.argmax(cosines))
                round_best = max(round_best, float(cosines[top]))
                yield DecodeResult(chunk[top].text, float(cosines[top]))
            stale = 0 if round_best > best else stale + 1
            best = max(best, round_best)
            if stale >= cfg.patience or not frontier:
                return
            starts = [heapq.heappop(frontier)[2]]

    def _beam_search(
        self, starts: list[_State], target: np.ndarray, pool: _Pool, cfg: SearchEffort
    ) -> Generator[None, None, list[_State]]:
        """Grow the starts one phrase at a time, keeping the ``beam`` best by penalised surrogate cosine.

        The surrogate flatters long texts, so every token costs ``token_penalty``; a phrase is added only if
        it pays for its tokens, and never when it repeats a part of the text (``repeats``). Returns the best
        state of every length, most promising first; yields between steps so that ``decode`` can read the clock.
        """
        position = {int(p): j for j, p in enumerate(pool.ids)}
        beam = starts
        seen = {s.text for s in starts}
        best_per_step = [max(starts, key=lambda s: self._merit(s, target))]
        for _ in range(cfg.max_phrases):
            vectors = np.stack([s.vector for s in beam])  # (b, 384)
            dots = vectors @ target
            norms2 = np.einsum("ij,ij->i", vectors, vectors)
            cross = pool.vectors @ vectors.T  # (pool, b)
            grown: list[tuple[float, _State, int]] = []
            for k, state in enumerate(beam):
                scores = (dots[k] + pool.dot_target) / np.sqrt(norms2[k] + 2 * cross[:, k] + pool.norms2)
                scores -= self.config.token_penalty * pool.weights
                scores[[position[u] for u in state.used if u in position]] = -np.inf
                scores[pool.weights > self.config.max_tokens - state.tokens] = -np.inf
                floor = dots[k] / np.sqrt(norms2[k])  # what the text scores without another phrase
                taken = 0
                while taken < cfg.beam:  # the best phrases that raise the score and say something new
                    j = int(np.argmax(scores))
                    if not scores[j] > floor:
                        break
                    score, scores[j] = float(scores[j]), -np.inf
                    if not repeats(phrase_key(self.phrases[pool.ids[j]]), state.keys):
                        grown.append((score, state, j))
                        taken += 1
            grown.sort(key=lambda item: -item[0])
            beam = []
            for _, state, j in grown:
                phrase = self.phrases[pool.ids[j]]
                text = f"{state.text}, {phrase}"
                if text not in seen:
                    seen.add(text)
                    beam.append(_State(text, state.used | {int(pool.ids[j])}, (*state.keys, phrase_key(phrase)),
                                       state.vector + pool.vectors[j], state.tokens + float(pool.weights[j])))
                if len(beam) == cfg.beam:
                    break
            if not beam:
                break
            best_per_step.append(beam[0])
            yield None
        return sorted(best_per_step, key=lambda s: -self._merit(s, target))

    def _merit(self, state: _State, target: np.ndarray) -> float:
        """Surrogate cosine less the token penalty: how the search ranks texts before embedding them."""
        surrogate = float(state.vector @ target) / float(np.linalg.norm(state.vector))
        return surrogate - self.config.token_penalty * state.tokens


class _Pool:
    """The dictionary phrases kept for one query, token-weighted, with their products precomputed."""

    def __init__(self, ids: np.ndarray, unit_vectors: np.ndarray, weights: np.ndarray, target: np.ndarray):
        self.ids = ids
        self.weights = weights[ids]
        self.vectors = unit_vectors[ids] * self.weights[:, None]
        self.dot_target = self.vectors @ target
        self.norms2 = np.einsum("ij,ij->i", self.vectors, self.vectors)


@dataclass(frozen=True)
class _State:
    text: str
    used: frozenset[int]  # dictionary phrases added to the text: masked out at once, before any key is compared
    keys: tuple[str, ...]  # what each part of the text says (``phrase_key``): no phrase may repeat one
    vector: np.ndarray  # surrogate pooled vector: sum of token-weighted unit embeddings
    tokens: float  # tokens in the text, roughly


@contextmanager
def _threads(count: int) -> Iterator[None]:
    """Run torch and faiss on ``count`` threads for one query, then restore their settings.

    A query's batches are small, so a second thread gains little, and on shared cores it costs a lot: every
    OpenMP barrier waits for the busier core (a 50 ms exact batch took 0.2-0.9 s with 2 threads under load).
    """
    import faiss
    import torch

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(count)
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


def token_counts(embedder: TextEmbedder, texts: Sequence[str]) -> np.ndarray:
    """Tokens each text adds to a comma-joined prompt (its own tokens plus one comma, no [CLS]/[SEP])."""
    ids = embedder.token_ids(texts)
    return np.asarray([len(x) - 1 for x in ids], dtype=np.float32)


def _unit(vec: np.ndarray) -> np.ndarray:
    vec = np.asarray(vec, dtype=np.float32).reshape(-1)
    if vec.shape != (EMBEDDING_DIM,):
        raise Img2PromptError(f"expected a {EMBEDDING_DIM}-d embedding, got shape {vec.shape}")
    norm = float(np.linalg.norm(vec))
    if not np.isfinite(norm) or norm == 0:
        raise Img2PromptError("cannot decode a zero or non-finite embedding")
    return vec / norm
