"""``img2prompt write-prompts``: LLM-written prompts, the recipe's third HQ tier, with a local open-weight model.

The 2nd place wrote ~1M prompts with ChatGPT, each request seeded with a few examples drawn at random from earlier
outputs so the set keeps its variety; the winner added such prompts under stricter rules. This stage does the same
with an instruct model on the hub (``transformers``, or vLLM when it is installed): every request shows
``from_bank`` examples from a prompt bank (DiffusionDB's prompts in the recipe) and ``from_outputs`` from what was
written so far, and asks for ``per_request`` new prompts. Replies are split into lines, stripped of numbering and
chatter, put through the curate rules (stricter ones: ``StrictRulesConfig``) and deduplicated against everything
written and every example shown.

Work is cut into batches of ``batch_size`` requests. Batch ``b``'s examples come from a generator seeded with
(seed, b) and the outputs of batches before it, and its sampling is seeded the same way; each finished batch is
written atomically to ``<out>.batches/batch-NNNNNN.jsonl``, so a killed run resumes after its last whole batch and
writes what an unbroken run would have (same model, backend and device). When ``count`` prompts are written, the
batches are joined into ``out`` (JSONL, ``{"prompt": ...}``, what the curate source ``llm_jsonl`` reads).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from img2prompt.config import Seed, StrictModel, write_resolved
from img2prompt.curate.rules import PromptRules, RulesConfig
from img2prompt.errors import fail
from img2prompt.files import atomic_path, write_text_atomic
from img2prompt.prompt_table import prompt_id

# Qwen2.5-7B-Instruct: Apache-2.0 (its outputs may be used for anything, training included), strong instruction
# following, 7.6B parameters: bf16 weights (15.2 GB) fit one 24 GB+ GPU with room for a large vLLM batch.
DEFAULT_MODEL = "Qwen/Qwen2.5-7B-Instruct"
DEFAULT_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
SYSTEM = ("You write prompts for the Stable Diffusion text-to-image model. A prompt describes one image: its "
          "subject, setting, composition, lighting and style, often with a few artist or medium names.")
ASK = ("Here are some prompts:\n{examples}\n\nWrite {n} new prompts in the same spirit but about different "
       "subjects, settings and styles, each between 8 and 50 words. One prompt per line, no numbering, no "
       "quotes, nothing else.")
_BULLET = re.compile(r"^\s*(?:[-*•]+|\d+\s*[.):]|prompt\s*\d*\s*:)\s*", re.IGNORECASE)
_CHATTER = re.compile(r"^(sure|here (are|is)|certainly|of course|i hope|these prompts|note:)", re.IGNORECASE)


class StrictRulesConfig(RulesConfig):
    """The curate rules, stricter for machine-written prompts (the winner's "stricter rules" for this tier): long
    enough to stay HQ, no run-on lists, and the same CLIP token budget."""

    min_words: int = Field(8, ge=0)
    max_words: int = Field(50, ge=0)
    hq_min_words: int = Field(8, ge=0)


class WritePromptsConfig(StrictModel):
    """The ``write_prompts:`` section."""

    out: Path = Path("data/llm/prompts.jsonl")
    count: int = Field(1_000_000, ge=1)  # prompts to write (the 2nd place's ~1M)
    model: str = DEFAULT_MODEL  # a hub id or a local folder
    revision: str | None = DEFAULT_REVISION  # a commit of ``model`` (None: a local folder or the hub's latest)
    backend: Literal["auto", "vllm", "transformers"] = "auto"  # auto: vLLM when it is installed
    device: str = "cuda"  # transformers only
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    bank: list[Path] = Field(min_length=1)  # prompts to draw examples from: Parquet (column ``prompt``) or text
    bank_size: int = Field(100_000, ge=1)  # examples are drawn from this many bank prompts (a seeded sample)
    from_bank: int = Field(3, ge=0)
    from_outputs: int = Field(2, ge=0)
    per_request: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)  # requests per batch (the unit of resume)
    max_new_tokens: int = Field(700, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: Seed = 0
    rules: StrictRulesConfig = Field(default_factory=StrictRulesConfig)
    progress: bool = True


Generate = Callable[[list[list[dict[str, str]]], int], list[str]]  # (chats, seed) -> replies
EMPTY_BATCHES = 10  # this many batches in a row without a new prompt: the model is not writing prompts


def write_prompts(config: WritePromptsConfig) -> Path:
    """Write ``config.count`` prompts to ``config.out`` (resuming finished batches); returns ``config.out``."""
    batches = config.out.with_name(config.out.name + ".batches")
    bank = read_bank(config.bank, config.bank_size, config.seed)
    done = sorted(batches.glob("batch-*.jsonl"))
    written = [prompt for path in done for prompt in read_batch(path)]
    seen = {prompt_id(p) for p in [*bank, *written]}
    rules = PromptRules(config.rules)
    write_resolved(config, "write_prompts", batches)  # an output that cannot be written is found before the model loads
    generate = load_generator(config)
    number = len(done)
    empty = 0
    with tqdm(total=config.count, initial=min(len(written), config.count), desc="write prompts", unit="prompt",
              disable=not config.progress) as bar:
        while len(written) < config.count:
            rng = np.random.default_rng([config.seed, number])
            chats = [request(bank, written, config, rng) for _ in range(config.batch_size)]
            fresh = []
            for reply in generate(chats, config.seed * 1_000_003 + number):
                for text in reply_prompts(reply, rules):
                    key = prompt_id(text)
                    if key not in seen:
                        seen.add(key)
                        fresh.append(text)
            with atomic_path(batches / f"batch-{number:06d}.jsonl") as tmp:
                tmp.write_text(jsonl(fresh), encoding="utf-8")
            written.extend(fresh)
            empty = 0 if fresh else empty + 1
            if empty == EMPTY_BATCHES:
                raise fail(config.model, f"{EMPTY_BATCHES} batches in a row gave no new prompt that passes the rules "
                                         f"(see {batches}); check the model and write_prompts.rules")
            bar.update(min(len(fresh), config.count - bar.n))
            number += 1
    return write_text_atomic(config.out, jsonl(written[: config.count]))


def jsonl(prompts: list[str]) -> str:
    """Prompts as JSON lines, ``{"prompt": ...}`` each: the batches and the output alike."""
    return "".join(json.dumps({"prompt": p}) + "\n" for p in prompts)


def read_batch(path: Path) -> list[str]:
    """A finished batch's prompts; a damaged one is one line naming it (delete it: the batch is written again)."""
    try:
        return [str(json.loads(line)["prompt"]) for line in path.read_text(encoding="utf-8").splitlines()]
    except (ValueError, KeyError, TypeError) as exc:
        raise fail(path, f"not a batch of written prompts ({type(exc).__name__}: {exc}); delete it to write it "
                         "again") from None


def read_bank(paths: list[Path], size: int, seed: int) -> list[str]:
    """Up to ``size`` prompts, a seeded sample of the bank files (Parquet column ``prompt``, or one per line)."""
    prompts: list[str] = []
    for path in paths:
        if not path.is_file():
            raise fail(path, "bank file not found (the prompts examples are drawn from)")
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            try:
                column = pq.read_table(path, columns=["prompt"]).column("prompt").to_pylist()
            except Exception as exc:  # pyarrow raises several unrelated types for a bad file or column
                raise fail(path, f"cannot read its prompt column ({str(exc).splitlines()[0]})") from None
            prompts.extend(p for p in column if isinstance(p, str) and p.strip())
        else:
            prompts.extend(line for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
                           if line.strip())
    if not prompts:
        raise fail(paths[0], "the bank holds no prompt")
    if len(prompts) > size:
        picks = np.random.default_rng(seed).choice(len(prompts), size, replace=False)
        prompts = [prompts[i] for i in sorted(picks)]
    return [" ".join(p.split()) for p in prompts]


def request(bank: list[str], written: list[str], config: WritePromptsConfig,
            rng: np.random.Generator) -> list[dict[str, str]]:
    """One chat: the system line and ``from_bank`` + ``from_outputs`` examples (bank only until outputs exist)."""
    from_outputs = min(config.from_outputs, len(written))
    examples = [bank[i] for i in rng.choice(len(bank), config.from_bank + config.from_outputs - from_outputs)]
    examples += [written[i] for i in rng.choice(len(written), from_outputs, replace=False)] if from_outputs else []
    rng.shuffle(examples)
    listing = "\n".join(f"- {e}" for e in examples)
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": ASK.format(examples=listing, n=config.per_request)}]


def reply_prompts(reply: str, rules: PromptRules) -> list[str]:
    """The prompts of one reply: a line each, numbering, bullets and quotes stripped, chatter dropped, then the
    rules (which count what they drop)."""
    found = []
    for line in reply.splitlines():
        text = _BULLET.sub("", line).strip().strip("\"'“”").strip()
        if not text or _CHATTER.match(text) or text.endswith(":"):
            continue
        cleaned = rules.apply(text)
        if cleaned is not None:
            found.append(cleaned)
    return found


def load_generator(config: WritePromptsConfig) -> Generate:
    """vLLM when installed (or asked for), else ``transformers``; both sample with the same settings."""
    import importlib.util

    use_vllm = config.backend == "vllm" or (config.backend == "auto" and importlib.util.find_spec("vllm"))
    return _vllm(config) if use_vllm else _transformers(config)


def _vllm(config: WritePromptsConfig) -> Generate:
    from vllm import LLM, SamplingParams

    llm = LLM(model=config.model, revision=config.revision, dtype=config.dtype, seed=config.seed)

    def generate(chats: list[list[dict[str, str]]], seed: int) -> list[str]:
        params = SamplingParams(temperature=config.temperature, top_p=config.top_p,
                                max_tokens=config.max_new_tokens, seed=seed)
        return [out.outputs[0].text for out in llm.chat(chats, params, use_tqdm=False)]

    return generate


def _transformers(config: WritePromptsConfig) -> Generate:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.model, revision=config.revision, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(config.model, revision=config.revision,
                                                     dtype=getattr(torch, config.dtype)).to(config.device).eval()
    except OSError as exc:
        raise fail(config.model, f"cannot load the model ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    @torch.inference_mode()
    def generate(chats: list[list[dict[str, str]]], seed: int) -> list[str]:
        texts = [tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) for chat in chats]
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(config.device)
        torch.manual_seed(seed)
        out = model.generate(**batch, do_sample=True, temperature=config.temperature, top_p=config.top_p,
                             max_new_tokens=config.max_new_tokens, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)

    return generate
