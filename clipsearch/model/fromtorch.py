"""Reading open_clip's torch modules into float32 arrays, for the torch-free exports.

Only plain pre-LN attention + MLP blocks are accepted (what `blocks.Blocks` and the ONNX graph
reproduce); anything else makes the export decline, and that tower stays on torch.  Torch and
open_clip are imported inside the functions: this runs only when the model is loaded anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np


class BlockSpec(NamedTuple):
    """Tensors of a block stack (`blocks.{i}.` names) and the settings `Blocks` needs."""

    tensors: dict[str, np.ndarray]
    activation: str
    eps: float


def block_tensors(blocks: Iterable[Any]) -> BlockSpec | None:
    """Per-block tensors, or None if any block is not a plain pre-LN MHA + MLP block or the
    blocks disagree on activation or layer-norm eps."""
    tensors: dict[str, np.ndarray] = {}
    kinds = set()
    for i, block in enumerate(blocks):
        found = _one_block(block)
        if found is None:
            return None
        kinds.add((found.activation, found.eps))
        tensors.update({f"blocks.{i}.{k}": v for k, v in found.tensors.items()})
    if len(kinds) != 1:
        return None
    ((activation, eps),) = kinds
    return BlockSpec(tensors, activation, eps)


def _one_block(block: Any) -> BlockSpec | None:
    from open_clip.transformer import ResidualAttentionBlock
    from torch import nn

    if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
        return None
    if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
        return None
    attn, mlp = block.attn, block.mlp
    if type(attn) is not nn.MultiheadAttention or not _plain_attention(attn):
        return None
    activation = _activation_name(mlp.gelu)
    norms = (block.ln_1, block.ln_2)
    if activation is None or not all(is_layer_norm(n) for n in norms):
        return None
    if block.ln_1.eps != block.ln_2.eps or not all(_is_linear(m) for m in (mlp.c_fc, mlp.c_proj)):
        return None
    tensors = {
        "ln_1.weight": to_numpy(block.ln_1.weight),
        "ln_1.bias": to_numpy(block.ln_1.bias),
        "qkv.weight": to_numpy(attn.in_proj_weight),
        "qkv.bias": to_numpy(attn.in_proj_bias),
        "out.weight": to_numpy(attn.out_proj.weight),
        "out.bias": to_numpy(attn.out_proj.bias),
        "ln_2.weight": to_numpy(block.ln_2.weight),
        "ln_2.bias": to_numpy(block.ln_2.bias),
        "fc.weight": to_numpy(mlp.c_fc.weight),
        "fc.bias": to_numpy(mlp.c_fc.bias),
        "proj.weight": to_numpy(mlp.c_proj.weight),
        "proj.bias": to_numpy(mlp.c_proj.bias),
    }
    return BlockSpec(tensors, activation, float(block.ln_1.eps))


def _plain_attention(attn: Any) -> bool:
    """Packed q/k/v with biases, no extra key/value tokens."""
    return bool(
        attn._qkv_same_embed_dim
        and attn.in_proj_bias is not None
        and attn.bias_k is None
        and not attn.add_zero_attn
        and attn.out_proj.bias is not None
    )


def _activation_name(act: Any) -> str | None:
    from open_clip.transformer import QuickGELU
    from torch import nn

    if type(act) is QuickGELU:
        return "quick_gelu"
    if type(act) is nn.GELU and act.approximate == "none":
        return "gelu"
    return None


def is_layer_norm(norm: Any) -> bool:
    """An affine layer norm over the last dimension, which `layer_norm` reproduces."""
    from open_clip.transformer import LayerNorm, LayerNormFp32
    from torch import nn

    return (
        type(norm) in (nn.LayerNorm, LayerNorm, LayerNormFp32)
        and norm.weight is not None
        and norm.bias is not None
        and len(norm.normalized_shape) == 1
    )


def _is_linear(layer: Any) -> bool:
    from torch import nn

    return type(layer) is nn.Linear and layer.bias is not None


def to_numpy(tensor: Any) -> np.ndarray:
    """A float32 CPU copy of a parameter, whatever the model's device and precision."""
    return tensor.detach().to("cpu").float().numpy()
