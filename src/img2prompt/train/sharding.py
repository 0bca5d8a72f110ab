"""FSDP through accelerate, and the one way training state is gathered and restored (sharded or not).

``accelerate launch --config_file configs/accelerate/fsdp_<backbone>.yaml`` sets ``ACCELERATE_USE_FSDP`` and
the plugin's settings (FSDP2 ``fully_shard``, auto-wrap on the backbone's block class, full state dict);
``Accelerator.prepare`` then shards the model. accelerate turns FSDP on only for accelerator devices, but
torch's FSDP2 also runs on the CPU over gloo, so ``enable_fsdp_on_cpu`` switches the same code path on there
(that is how the tests run it).

Checkpoints are rank-independent: ``full_state`` gathers the whole model and optimizer state to rank 0
(``torch.distributed.checkpoint.state_dict``, which also handles plain and DDP models), so ``state.pt`` and
``model.safetensors`` have one format whatever the number of processes or the sharding.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn
from torch.optim import Optimizer

from img2prompt.errors import Img2PromptError


def fsdp_requested() -> bool:
    """True when the launcher asked for FSDP (``accelerate launch`` with an FSDP config)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def enable_fsdp_on_cpu(accelerator, precision: str) -> None:
    """Switch accelerate's FSDP2 path on for a multi-process CPU (gloo) run when the launcher asked for FSDP."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    if not fsdp_requested() or accelerator.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise Img2PromptError("FSDP on the CPU needs fsdp_version: 2 (torch's fully_shard) in the accelerate config")
    if precision != "no":
        plugin.set_mixed_precision(precision)
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin


def check_lora_shardable(model: nn.Module) -> None:
    """peft's LoRA for ``nn.MultiheadAttention`` (open_clip's ViTs) keeps weights outside the module tree that
    ``fully_shard`` walks, so FSDP2 rejects it; say so in one line instead of a rank traceback."""
    from peft.tuners.lora.layer import MultiheadAttention

    if any(isinstance(module, MultiheadAttention) for module in model.modules()):
        raise Img2PromptError("train.finetune.method=lora adapts nn.MultiheadAttention here (open_clip ViT), which "
                              "FSDP cannot shard: train it with DDP, or fine-tune fully under FSDP")


def is_sharded(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def shard_like_model(accelerator, module: nn.Module) -> nn.Module:
    """Shard a second copy of the model (the weight EMA) exactly as ``prepare`` sharded the model."""
    from accelerate.utils import fsdp2_prepare_model

    return fsdp2_prepare_model(accelerator, module)


def _options(**kwargs):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def full_state(model: nn.Module, optimizer: Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Whole (model, optimizer) state dicts on CPU, keyed by parameter name; a collective under FSDP.

    Rank 0 gets the tensors, other ranks of a sharded run get empty dicts.
    """
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(model, optimizer, options=_options(cpu_offload=True))


def full_model_state(module: nn.Module) -> dict[str, Any]:
    """``full_state`` for a model without an optimizer (the weight EMA)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(module, options=_options(cpu_offload=True))


def load_full_model_state(module: nn.Module, state: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(module, state, options=_options())


def load_full_state(model: nn.Module, optimizer: Optimizer, model_state: dict[str, Any],
                    optimizer_state: dict[str, Any]) -> None:
    """Load ``full_state``'s output on every rank; each rank keeps its own shard of it."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    set_state_dict(model, optimizer, model_state_dict=model_state, optim_state_dict=optimizer_state,
                   options=_options())
