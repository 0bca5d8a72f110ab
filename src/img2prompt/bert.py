"""The target embedder's network, all-MiniLM-L6-v2 (a 6-layer BERT), in plain torch: the same operations as
transformers' ``BertModel`` in the same order, so the token states are bit-identical to it
(tests/test_embedding.py checks that, and the host's embeddings).

Why not ``transformers.AutoModel``: importing transformers' model code pulls in ``torch._dynamo``,
``torch.distributed.tensor`` and sympy, ~3.5 s of every start-up of ``interrogate``, ``decode`` and ``serve``,
for a network this small. The weights are read from the model folder's ``model.safetensors`` (never a pickle).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from img2prompt.errors import Img2PromptError


class BertLayer(nn.Module):
    """Self-attention then the feed-forward block, each added to its input and layer-normalised (post-LN)."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.attention_out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.out = nn.Linear(intermediate, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, hidden = states.shape
        head_size = hidden // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:  # (b, l, h*d) -> (b, h, l, d)
            return x.view(batch, length, -1, head_size).transpose(1, 2)

        attended = F.scaled_dot_product_attention(split(self.query(states)), split(self.key(states)),
                                                  split(self.value(states)), attn_mask=mask, dropout_p=0.0,
                                                  scale=head_size**-0.5, is_causal=False)
        attended = attended.reshape(batch, -1, length, head_size).transpose(1, 2).contiguous()
        attended = attended.reshape(batch, length, -1).contiguous()
        states = self.attention_norm(self.attention_out(attended) + states)
        return self.out_norm(self.out(F.gelu(self.intermediate(states))) + states)


class BertEncoder(nn.Module):
    """Token ids and attention mask -> the last layer's token states ``(batch, length, hidden)``."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden, padding_idx=config.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.embedding_norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(BertLayer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))

    @classmethod
    def from_folder(cls, folder: str | Path) -> BertEncoder:
        """Read ``config.json`` and ``model.safetensors`` of a Hugging Face BERT folder (its pooler is not read)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        root = Path(folder)
        try:
            config = json.loads((root / "config.json").read_text(encoding="utf-8"))
            weights = load_file(root / "model.safetensors")
        except (OSError, UnicodeDecodeError, ValueError, SafetensorError) as exc:
            raise Img2PromptError(f"{root}: cannot load the text embedding model ({exc})") from None
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu" or config.get(
                "position_embedding_type", "absolute") != "absolute":
            raise Img2PromptError(f"{root}: the text embedder runs BERT models with GELU and absolute positions "
                                  f"(this is {config.get('model_type')!r})")
        encoder = cls(config)
        try:
            encoder.load_state_dict(_our_names(weights), strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise Img2PromptError(f"{root / 'model.safetensors'}: weights do not match the BERT of its config "
                                  f"({first})") from None
        return encoder.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, length = input_ids.shape
        positions = torch.arange(length, device=input_ids.device)[None]
        types = torch.zeros_like(positions).expand(batch, length)
        states = self.word_embeddings(input_ids) + self.token_type_embeddings(types)
        states = self.embedding_norm(states + self.position_embeddings(positions))
        # transformers' SDPA path: no mask when nothing is padded, else a boolean (b, 1, l, l) "attend" mask
        keep = attention_mask.bool()
        mask = None if keep.all() else keep[:, None, None, :].expand(batch, 1, length, length)
        for layer in self.layers:
            states = layer(states, mask)
        return states


# transformers' module names -> ours, in the embeddings and in each encoder layer
_EMBEDDING_NAMES = {"word_embeddings": "word_embeddings", "position_embeddings": "position_embeddings",
                    "token_type_embeddings": "token_type_embeddings", "LayerNorm": "embedding_norm"}
_LAYER_NAMES = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                "attention.output.dense": "attention_out", "attention.output.LayerNorm": "attention_norm",
                "intermediate.dense": "intermediate", "output.dense": "out", "output.LayerNorm": "out_norm"}


def _our_names(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' ``BertModel`` parameter names (``bert.``-prefixed in task checkpoints) -> ours; the pooler
    and unknown names are dropped here and reported as missing by ``load_state_dict``."""
    renamed = {}
    for name, tensor in weights.items():
        module, _, kind = name.removeprefix("bert.").rpartition(".")
        if module.startswith("embeddings."):
            ours = _EMBEDDING_NAMES.get(module.removeprefix("embeddings."))
        elif module.startswith("encoder.layer."):
            index, _, inner = module.removeprefix("encoder.layer.").partition(".")
            ours = f"layers.{index}.{_LAYER_NAMES[inner]}" if inner in _LAYER_NAMES else None
        else:
            ours = None
        if ours is not None:
            renamed[f"{ours}.{kind}"] = tensor
    return renamed
