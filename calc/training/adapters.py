"""LoRA on a frozen base, as a training step runs it (train-step --method lora): what changes in the step time.

A rank-r adapter on a frozen weight W [k, n] adds y += (x A) B s, A [k, r], B [r, n] (Hu et al. 2021, arXiv
2106.09685 sec. 4.1; Megatron-Bridge / NeMo LoRA: ParallelLinearAdapter, the same two linears beside each adapted
projection; PEFT: lora.Linear). Per adapted matrix and token rows T on one GPU (k, n after TP slicing):

  forward    the base GEMM as before; two adapter GEMMs, [T, k] x [k, r] and [T, r] x [r, n], and the scaled add of
             their output into the base output (read 2 x T n, write T n: ADD_PASSES elements of HBM traffic)
  backward   the frozen base weight gets no gradient: only its input gradient (dgrad), one GEMM of the forward's
             size instead of two (dgrad + wgrad); the adapters train: 2x their forward GEMMs (dgrad + wgrad) and the
             output gradient read once more for them (1 x T n). The attention core, norms and activations run their
             backward as in full training (they sit between adapted layers: the input gradient must pass through).
  head       frozen: its backward is the input gradient only (one GEMM of the forward's size).
  DP / ZeRO  gradients, their reduction and the optimizer step cover the adapters only; a ZeRO-3 run still gathers
             the frozen weights for forward and backward.
  model FLOPs  the run's useful work: forward (2 N per token + attention) + input gradients (2 N) + the attention
             backward + 3 x the adapters' forward, i.e. about 4 N per token where full training is 6 N (Megatron-Bridge's
             LoRA "Model TFLOP/s" reads the same: 735 TFLOP/s at 2,643 tokens/s/GPU on Llama 3 70B = 278 GFLOP per
             token = 3.94 x 70.6B parameters; docs/performance-summary-archive.md, 26.06).

QLoRA (Dettmers et al. 2023, arXiv 2305.14314): the frozen base in NF4 (bitsandbytes Linear4bit, double-quantized
absmax). bitsandbytes' MatMul4Bit (bitsandbytes/autograd/_functions.py) dequantizes the whole weight to the activation
dtype before each use, forward (``F.dequantize_4bit(B, quant_state).to(A.dtype)`` then ``linear``) and again for the
input gradient in backward (``torch.matmul(grad_output, F.dequantize_4bit(B, ctx.state)...)``); the GEMMs then run in
bf16 as LoRA's. Each pass of a quantized weight adds a memory-bound dequantization reading 4 bits, one uint8 absmax
per 64 weights and one fp32 per 256 absmax blocks, and writing 2 B: NF4_DEQUANT_BYTES per weight, one kernel per
weight; a full recompute dequantizes once more.

Memory comes from the fine-tuning engine (calc.memory.finetune.finetune_memory, method lora / qlora), the one the
`memory --mode finetune` command prices, with the layout and stack of the step.
"""

from __future__ import annotations

from dataclasses import dataclass

from calc.memory.finetune import NF4_BLOCK, NF4_SCALE_BLOCK, nf4_bytes
from calc.model.lora import adapted_matrices, lora_params, parse_targets
from calc.specs import ModelSpec

ADD_PASSES = 3  # scaled add of the adapter output into the base output: read both, write one (T x n each)
ADD_BWD_PASSES = 1  # the output gradient read once more for the adapter branch
ADAPTER_LAUNCHES = 3  # forward kernels per adapted matrix: two GEMMs and the add (host launch model)
DEFAULT_RANK = 8  # as memory --mode finetune (--lora-rank)
DEFAULT_TARGETS = "q,v"  # as memory --mode finetune (--lora-targets)
# read the NF4 storage per weight (calc.memory.finetune.nf4_bytes, double-quantized absmax: 1/2 + 1/64 + 4/(64 x 256)
# B, exact over one second-level block of 64 x 256 weights), write bf16 (2 B)
NF4_DEQUANT_BYTES = nf4_bytes(NF4_BLOCK * NF4_SCALE_BLOCK) / (NF4_BLOCK * NF4_SCALE_BLOCK) + 2


@dataclass(frozen=True)
class Lora:
    """The adapters of a LoRA run: rank and target groups (calc.model.lora.GROUPS: q,k,v,o,gate,up,down,experts)."""

    rank: int = DEFAULT_RANK
    targets: tuple[str, ...] = ("q", "v")
    base: str = "bf16"  # the frozen base: the run's 16-bit dtype (lora), or nf4 (qlora: bitsandbytes, double quant)

    @classmethod
    def of(cls, rank: int | None, targets: str | None, base: str = "bf16") -> Lora:
        return cls(DEFAULT_RANK if rank is None else rank, parse_targets(DEFAULT_TARGETS if targets is None else targets),
                   base)  # an empty --lora-targets is refused by parse_targets, never read as the default

    @property
    def method(self) -> str:
        return "qlora" if self.base == "nf4" else "lora"

    def label(self) -> str:
        return f"{'QLoRA (NF4 base)' if self.base == 'nf4' else 'LoRA'} r={self.rank} on {','.join(self.targets)}"


def adapter_params(m: ModelSpec, lora: Lora) -> tuple[int, int]:
    """(adapter parameters outside the routed experts, on the routed experts) (calc.model.lora.lora_params)."""
    count = lora_params(m, lora.rank, lora.targets)
    experts = count.by_group.get("experts", 0)
    return count.trainable_params - experts, experts


def adapted_by_kind(m: ModelSpec, lora: Lora) -> list[set[str]]:
    """For each layer kind (calc.model.params.layer_kinds order): the adapted matrices as "component.name" (the names
    calc.training.cost.ModelCost.layer_gemms lists)."""
    return [{f"{a.component}.{a.name}" for a in mats} for _count, mats in adapted_matrices(m, lora.targets)]


def lora_flops_per_seq(m: ModelSpec, lora: Lora, forward: float, attention: float, seq: int) -> float:
    """Model FLOPs of one sequence of a frozen-base step (module docstring): forward + input gradients + the attention
    backward + 3 x the adapters' forward = 2 ``forward`` + ``attention`` + 3 x adapter_forward_flops_per_seq, with
    ``forward`` and ``attention`` a sequence's forward FLOPs and its attention share (calc.model.flops.forward_flops)."""
    return 2 * forward + attention + 3 * adapter_forward_flops_per_seq(m, lora, seq)


def adapter_forward_flops_per_seq(m: ModelSpec, lora: Lora, seq: int) -> float:
    """Forward FLOPs of every adapter for one sequence: 2 s r (d_in + d_out) per adapted matrix, the routed experts' for
    the k experts a token visits (their adapters are counted once per copy, each used by k/E of the tokens)."""
    total = 0.0
    for count, mats in adapted_matrices(m, lora.targets):
        for a in mats:
            used = (m.moe.experts_per_token if a.copies > 1 and m.moe else 1)
            total += count * used * 2 * seq * lora.rank * (a.d_in + a.d_out)
    return total
