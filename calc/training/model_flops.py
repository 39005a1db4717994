"""Model FLOPs of one training sequence: what MFU divides a step's time by, in one place for train-step / train-plan
(calc.training.cost.ModelCost), `mfu` and `train-time` (calc.training.mfu), so a measured step time fed back to `mfu`
reads the MFU train-step printed for the same run.

Full convention (PaLM arXiv 2204.02311 appendix B, Megatron-LM's MFU): the forward of a sequence of s tokens counts
every (query, key) pair of its attention, s x s; a training step is 3 x the forward (the backward twice the forward).

- Packed documents (``doc_tokens`` d < s: SFT examples packed into each sequence, the attention masked to each one,
  THD cu_seqlens / varlen flash attention): the s/d documents each count a d-token forward's attention, in the same
  full convention, and the rest of the forward is unchanged:
      F = F_s - A_s + (s / d) A_d
  (counting the s x s pairs never computed would put MFU above 1 for short documents in long sequences).
- LoRA on a frozen base (calc.training.adapters.lora_flops_per_seq): 2 F + A + 3 x the adapters' forward (the base
  GEMMs back-propagate their input gradient only: no weight gradients).
- Causal: the same with S(S+1)/2 pairs per sequence (or document), what a causal flash kernel computes.
- Full recomputation (HFU): the layers' forward once more, causal, without the output head (which is not
  recomputed): R = F_causal - 2 s N_head (calc.model.flops training_flops_full_recompute = 4 F - 2 s N_head).

Llama 3 8B (vocabulary 128,256, hidden 4,096, 32 layers of 32 heads of 128) at s = 4,096: the head's forward is
2 x 4,096 x 128,256 x 4,096; packed into 256-token documents the attention is 16 documents of 256 tokens'; causal, a
full-attention layer's pairs are s(s+1)/2 of s x s.

>>> from calc.sources.catalog import load_model
>>> m = load_model("llama3-8b")
>>> f, packed = sequence_flops(m, 4096), sequence_flops(m, 4096, doc_tokens=256)
>>> f.head == 2 * 4096 * 128_256 * 4096, f.model == 3 * f.forward, f.attention == 2 * 32 * 32 * 256 * 4096 * 4096
(True, True, True)
>>> packed.attention == 16 * sequence_flops(m, 256).attention
True
>>> f.causal == 3 * (f.forward - f.attention + f.attention * 4097 / 8192)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calc.errors import LLMCalcError
from calc.model.flops import forward_flops
from calc.specs import ModelSpec


@dataclass(frozen=True)
class SequenceFlops:
    """One training sequence's FLOPs (module docstring): ``forward`` and its ``attention`` (full convention, within
    each packed document), ``model`` the step's model FLOPs (3 x forward, or a LoRA frozen base's), ``causal`` the
    same with causal pairs (``causal_attention`` its attention part), ``recompute`` the causal layers' forward a full
    recomputation adds, ``head`` the output head's forward (2 s N_head)."""

    forward: float
    attention: float
    model: float
    causal: float
    recompute: float
    head: float
    causal_attention: float = 0.0


def sequence_flops(m: ModelSpec, seq: int, doc_tokens: int | None = None, lora: Any = None) -> SequenceFlops:
    """FLOPs of one training sequence of ``seq`` tokens (module docstring); ``doc_tokens``: mean tokens per packed
    document (None or >= seq: one document per sequence); ``lora``: a calc.training.adapters.Lora (None: every weight
    trains)."""
    if doc_tokens is not None and doc_tokens < 1:
        raise LLMCalcError("--doc-tokens", f"is the mean tokens per packed document, >= 1; got {doc_tokens}")
    span = seq if doc_tokens is None else min(doc_tokens, seq)
    f = forward_flops(m, 1, seq)
    attn = f.forward_attention_flops if span >= seq else seq / span * forward_flops(m, 1, span).forward_attention_flops
    fwd = f.forward_flops - f.forward_attention_flops + attn
    c = forward_flops(m, 1, seq, causal=True)
    head = 4 * c.forward_flops - c.training_flops_full_recompute  # 2 s N_head, exact
    causal_attn = seq / span * (c if span >= seq else forward_flops(m, 1, span, causal=True)).forward_attention_flops
    causal_fwd = f.forward_flops - f.forward_attention_flops + causal_attn
    model, causal = 3 * fwd, 3 * causal_fwd
    if lora is not None:
        from calc.model.lora import lora_params
        from calc.training.adapters import lora_flops_per_seq

        lora_params(m, lora.rank, lora.targets)  # a rank past every adapted matrix's, or no such target, refused
        model = lora_flops_per_seq(m, lora, fwd, attn, seq)
        causal = lora_flops_per_seq(m, lora, causal_fwd, causal_attn, seq)
    return SequenceFlops(forward=fwd, attention=attn, model=model, causal=causal, recompute=causal_fwd - head, head=head,
                         causal_attention=causal_attn)
