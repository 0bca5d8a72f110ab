"""``img2prompt write-prompts`` through its real transformers path on a tiny random-init LM (tests/tiny_llm.py):
the requests mix bank and earlier examples, replies go through the stricter rules and dedup, batches resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from img2prompt.curate.rules import PromptRules
from img2prompt.curate.write_prompts import StrictRulesConfig, WritePromptsConfig, reply_prompts, request, write_prompts
from img2prompt.errors import Img2PromptError
from img2prompt.prompt_table import prompt_id
from tiny_llm import build_tiny_llm

BANK = ["a red fox in a snowy forest at night, detailed oil painting",
        "portrait of an old sailor with a pipe, dramatic lighting, by rembrandt",
        "a tiny robot reading a book under a tree, soft watercolor illustration",
        "ancient stone bridge over a misty river at sunrise, cinematic landscape"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Iterator[Path]:
    """The tiny LM, run on one thread: its tiny matrices gain nothing from two and lose ~20x on a shared machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield build_tiny_llm(tmp_path_factory.mktemp("tiny_llm"))
    torch.set_num_threads(threads)


def settings(tmp_path: Path, model: Path, count: int) -> WritePromptsConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(BANK) + "\n", encoding="utf-8")
    return WritePromptsConfig(out=tmp_path / "llm" / "prompts.jsonl", count=count, model=str(model), revision=None,
                              backend="transformers", device="cpu", dtype="float32", bank=[bank], per_request=3,
                              batch_size=4, max_new_tokens=30, progress=False)


def read(path: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_prompts_pass_the_strict_rules_are_unique_and_new_and_a_killed_run_resumes_to_the_same_file(tiny_llm,
                                                                                                    tmp_path):
    whole = write_prompts(settings(tmp_path / "whole", tiny_llm, 12))
    prompts = read(whole)
    assert len(prompts) == 12 and len({prompt_id(p) for p in prompts}) == 12
    assert not {prompt_id(p) for p in prompts} & {prompt_id(p) for p in BANK}
    rules = PromptRules(StrictRulesConfig())
    assert all(rules.apply(p) == p and len(p.split()) >= 8 for p in prompts)
    # a run stopped early (its finished batches on disk) and started again writes what the whole run wrote
    first = settings(tmp_path / "resumed", tiny_llm, 5)
    write_prompts(first)
    batches = sorted(first.out.with_name("prompts.jsonl.batches").glob("batch-*.jsonl"))
    assert 0 < len(batches) < len(sorted(whole.with_name("prompts.jsonl.batches").glob("batch-*.jsonl")))
    resumed = write_prompts(settings(tmp_path / "resumed", tiny_llm, 12))
    assert resumed.read_bytes() == whole.read_bytes()


def test_each_request_shows_bank_examples_then_earlier_outputs_too():
    import numpy as np

    config = WritePromptsConfig(bank=[Path("bank.txt")], from_bank=3, from_outputs=2, per_request=7)
    chat = request(BANK, [], config, np.random.default_rng(0))
    shown = [line[2:] for line in chat[1]["content"].splitlines() if line.startswith("- ")]
    assert len(shown) == 5 and set(shown) <= set(BANK) and "Write 7 new prompts" in chat[1]["content"]
    earlier = ["a quiet harbor village in winter with small wooden boats, warm light"] * 1 + [
        "a golden dragon flying over a desert city at sunset, digital art"]
    shown = [line[2:] for line in request(BANK, earlier, config, np.random.default_rng(0))[1]["content"].splitlines()
             if line.startswith("- ")]
    assert len(shown) == 5 and sorted(set(shown) & set(earlier)) == sorted(earlier)


def test_a_reply_loses_its_numbering_chatter_and_what_the_rules_drop():
    reply = ("Sure! Here are 4 prompts:\n1. \"A lighthouse on a rocky island during a violent storm, oil painting\"\n"
             "2) A cat\n- a snowy mountain village at dawn with warm lights in every window, watercolor\n"
             "Prompt 4: visit https://example.com for a castle in the clouds with flying ships\n"
             "I hope these help!")
    assert reply_prompts(reply, PromptRules(StrictRulesConfig())) == [
        "A lighthouse on a rocky island during a violent storm, oil painting",
        "a snowy mountain village at dawn with warm lights in every window, watercolor"]


def test_a_missing_bank_or_model_is_one_line(tmp_path):
    config = WritePromptsConfig(bank=[tmp_path / "none.parquet"], out=tmp_path / "p.jsonl", progress=False)
    with pytest.raises(Img2PromptError, match=r"none.parquet: bank file not found"):
        write_prompts(config)


def test_a_damaged_batch_is_one_line_naming_it_before_the_model_loads(tmp_path):
    bank = tmp_path / "bank.txt"
    bank.write_text("a photo of a cat on a sofa, soft light\n")
    batches = tmp_path / "p.jsonl.batches"
    batches.mkdir()
    (batches / "batch-000000.jsonl").write_text('{"prompt": "a red fox"}\n{"no prompt": 1}\n')
    config = WritePromptsConfig(bank=[bank], out=tmp_path / "p.jsonl", model=str(tmp_path / "no-model"),
                                progress=False)
    with pytest.raises(Img2PromptError, match=r"batch-000000\.jsonl: not a batch of written prompts \(KeyError"):
        write_prompts(config)
