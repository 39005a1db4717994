"""Activation memory: the inference constant c of the seed's B*S*H*c, and training activations per
layer (Korthikanti et al. 2022, arXiv 2205.05198, section 4 and table 2)."""

from __future__ import annotations

from typing import Literal

from calc.specs import ModelSpec

Recompute = Literal["none", "selective", "full"]


def activation_factor(m: ModelSpec) -> float:
    """c in the seed's B*S*H*c: live values per token of one layer's forward, divided by H:
    residual + norm output (2H), QKV ((h+2g)*d), attention output (h*d), MLP up/gate
    (I, or 2I gated) and the activation output (I)."""
    d = m.dim_per_head
    width = m.moe.expert_intermediate_size * m.moe.experts_per_token if m.moe else m.intermediate_size
    live = 2 * m.hidden_size + (m.num_heads + 2 * m.kv_heads) * d + m.num_heads * d
    live += width * (3 if m.gated_mlp else 2)
    return live / m.hidden_size


def korthikanti_layer_bytes(
    seq: int, micro_batch: int, hidden: int, heads: int, tp: int = 1,
    sequence_parallel: bool = False, recompute: Recompute = "none", flash: bool = False,
) -> float:
    """Activation bytes one transformer layer keeps for backward (Korthikanti et al. 2022, table 2;
    fp16, with dropout). With s, b, h, a, t:
      none, no TP       s*b*h*(34 + 5*a*s/h)
      TP                s*b*h*(10 + 24/t + 5*a*s/(h*t))
      TP + SP           s*b*h/t*(34 + 5*a*s/h)
      selective (or FlashAttention, which never stores the s x s scores): drop the 5*a*s/h term
      full recompute    2*s*b*h (only the layer input; /t with SP)
    """
    s, b, h, a, t = seq, micro_batch, hidden, heads, tp
    if recompute == "full":
        return 2 * s * b * h / (t if sequence_parallel else 1)
    scores = 0.0 if recompute == "selective" or flash else 5 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34 + scores)
    return s * b * h * (10 + 24 / t + scores / t)
