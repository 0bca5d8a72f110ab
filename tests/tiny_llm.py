"""A tiny random-init causal LM with a tokenizer and a chat template written here, saved as a hub-style folder, so
``write-prompts`` runs its real ``transformers`` path offline (the tokenizer is loaded with ``from_pretrained`` of
the folder: docs/STACK.md pitfall 2)."""

from __future__ import annotations

from pathlib import Path

_WORDS_TEXT = (
    "a an the of in on with and at by from under over near into while is are old new small large red blue green "
    "golden dark bright quiet busy ancient modern tall tiny wooden stone glass misty sunny rainy snowy castle forest "
    "river mountain city street village garden ocean beach desert lake bridge tower house market harbor island "
    "valley field road train ship boat car bicycle dragon cat dog horse bird fox wolf owl lion robot knight wizard "
    "girl boy woman man child painter dancer sailor farmer king queen portrait landscape painting photograph "
    "illustration sketch watercolor oil digital art light shadow sunset sunrise night morning evening winter summer "
    "autumn spring clouds sky stars moon sun fog storm fire water flowers trees leaves mist detailed cinematic "
    "dramatic soft warm cold colorful lighting style scene view close wide sitting standing walking flying reading "
    "holding looking beside behind above below system user assistant write prompts here some new"
)
WORDS = _WORDS_TEXT.split()
SPECIALS = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_llm(folder: Path) -> Path:
    """Write the tokenizer and a 2-layer OLMo-2 with random weights (seeded) into ``folder``: a model type whose
    tokenizer transformers 5 loads from tokenizer.json as written (for ``qwen2`` it rebuilds a byte-level BPE)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([*SPECIALS, "\n", *dict.fromkeys(WORDS)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"<\|im_(?:start|end)\|>|\n|[^\s<]+"), "removed", invert=True)
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # words joined by spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<|im_end|>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    config = Olmo2Config(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, eos_token_id=vocab["<|im_end|>"], pad_token_id=vocab["<pad>"],
                         bos_token_id=vocab["<|im_start|>"])
    torch.manual_seed(0)
    Olmo2ForCausalLM(config).save_pretrained(folder)
    return folder
