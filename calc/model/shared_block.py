"""Zamba2's shared transformer blocks: weights stored once per block, multiplied at every position that runs them.

transformers modeling_zamba2 (``Zamba2AttentionDecoderLayer``, ``Zamba2Attention``, ``Zamba2MLP``,
``Zamba2HybridLayer``, ``Zamba2Model.get_layers``) and vLLM vllm/model_executor/models/zamba2.py build, per block:
input_layernorm RMSNorm(2H); q_proj 2H*(h*d), k_proj and v_proj 2H*(g*d), o_proj (h*d)*H, no bias (d = 2H/h);
pre_ff_layernorm RMSNorm(H); a gated MLP gate_up_proj H*2I, down_proj I*H (bias add_bias_linear). Per position
(hybrid layer): the block's own ``linear`` H*H, the MLP adapter Linear(H, r) + Linear(r, 2I) (built for every
position whatever use_shared_mlp_adapter says), and with use_shared_attention_adapter q/k/v adapters
Linear(2H, r) + Linear(r, 2H) each. Weights are tied across the positions of one block (``_tied_weights_keys``),
so the stored count is num_blocks x block + positions x own tensors, while the FLOPs multiply the block at every
position: the positions carry the block's matrices as used-not-stored tensors (params 0, as a tied output head).
"""

from __future__ import annotations

from dataclasses import replace

from calc.model.tensor import Tensor, linear
from calc.specs import ModelSpec


def block_tensors(m: ModelSpec) -> list[Tensor]:
    """One shared block's stored tensors (see the module docstring)."""
    from calc.model.params import mlp_tensors  # params imports this module

    assert m.shared_block is not None
    H, W, h, g, d = m.hidden_size, m.shared_block.input_width, m.num_heads, m.kv_heads, m.dim_per_head
    attention = [*linear("attention", "q_proj", W, h * d, False, "2H*h*d"), *linear("attention", "k_proj", W, g * d, False, "2H*g*d"),
                 *linear("attention", "v_proj", W, g * d, False, "2H*g*d"), *linear("attention", "o_proj", h * d, H, False, "h*d*H")]
    norms = Tensor("norms", W + H, f"input_layernorm(2H) + pre_ff_layernorm(H) = {W} + {H}")
    return [*attention, *mlp_tensors(m, m.intermediate_size), norms]


def stored_tensors(m: ModelSpec) -> list[Tensor]:
    """The num_blocks shared blocks as stored: num_blocks x each tensor, multiplied by no token here (the
    positions carry the products, ``used_tensors``)."""
    assert m.shared_block is not None
    n = m.shared_block.num_blocks
    return [replace(t, params=n * t.params, formula=f"shared blocks: {n} x {t.formula}", active=None, matmul=0)
            for t in block_tensors(m)]


def used_tensors(m: ModelSpec) -> list[Tensor]:
    """What one position multiplies with from its shared block: every matrix of the block, stored elsewhere
    (params 0, matmul = the matrix)."""
    return [replace(t, params=0, formula=f"{t.name} (shared block, stored once): {t.matmul:,} multiplied, 0 new", active=None)
            for t in block_tensors(m) if t.matmul]


def position_tensors(m: ModelSpec) -> list[Tensor]:
    """One position's own tensors: its Linear(H, H) after the block and its adapters (rank r):
    MLP gate/up H*r + r*2I; with attention adapters q, k, v: 3 x (2H*r + r*2H)."""
    assert m.shared_block is not None
    H, W, r, inter = m.hidden_size, m.shared_block.input_width, m.shared_block.adapter_rank, m.intermediate_size
    out = [*linear("attention", "linear", H, H, False, "H*H"),
           *linear("mlp", "gate_up_proj_adapter.A", H, r, False, "H*r"),
           *linear("mlp", "gate_up_proj_adapter.B", r, 2 * inter, False, "r*2I")]
    if m.shared_block.attention_adapters:
        for name in ("q", "k", "v"):
            out += [*linear("attention", f"linear_{name}_adapter.A", W, r, False, "2H*r"),
                    *linear("attention", f"linear_{name}_adapter.B", r, W, False, "r*2H")]
    return out
