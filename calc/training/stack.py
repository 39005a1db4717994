"""The training stack (framework) a run uses: its attention kernel, its fp8 recipe, and its fitted efficiency.

Named stacks (``--stack``), and what each runs by default, from the frameworks' own sources:
  megatron     Megatron-LM / NeMo / Megatron-Bridge: Transformer Engine DotProductAttention, whose fused backend on
               Hopper and Blackwell is cuDNN's flash attention (FlashAttention-2 on Ampere); fp8 through TE's
               DelayedScaling recipe (amax history; the NeMo 2 default) unless the recipe says otherwise.
  fsdp         PyTorch FSDP / FSDP2 stacks (torchtitan, torchtune, HF Trainer + FSDP): F.scaled_dot_product_attention,
               whose flash backend is FlashAttention-2 (PyTorch 2.2+); fp8 by torchao Float8Linear, tensorwise dynamic
               (current) scaling.
  llm-foundry  MosaicML llm-foundry / Composer FSDP as its MPT benchmark sweep runs it (scripts/train/benchmarking/
               submit_benchmarks.py: ``--attn_impl`` default 'triton', the FlashAttention-1-era Triton kernel); fp8
               through TE (``amp_fp8``, DelayedScaling).
  deepspeed    DeepSpeed (ZeRO, pipeline engine): FlashAttention-2 via the model code; fp8 through TE, delayed.

The stack efficiency e_stack scales every compute kernel's time by 1 / e_stack (launch gaps, unfused small ops,
framework overhead between kernels that the kernel-level rates do not see). Megatron is the reference (1 by
definition: the GEMM plateau per generation is the Megatron-class rate); the others are read from
calc/data/fitted_defaults.json ("stack_efficiency", fitted by benchmarks/fit_corpus.py where the fit split holds
rows of that stack from at least two source groups and the fit beats 1 in cross-validation; otherwise 1).
"""

from __future__ import annotations

from calc.fitted import fitted

STACKS = ("megatron", "fsdp", "llm-foundry", "deepspeed")
REFERENCE_STACK = "megatron"
# Attention kernel (calc.hardware.attention.KERNELS) per stack on an sm90+ part; Ampere-class parts run FA2 (or triton).
ATTENTION_KERNEL = {"megatron": "cudnn", "fsdp": "fa2", "llm-foundry": "triton", "deepspeed": "fa2"}
FP8_RECIPE = {"megatron": "delayed", "fsdp": "tensorwise", "llm-foundry": "delayed", "deepspeed": "delayed"}
# Corpus / user spellings of a stack, mapped to the named stack whose defaults they run.
ALIASES = {"nemo": "megatron", "megatron-bridge": "megatron", "megatron-lm": "megatron", "megatron-core": "megatron",
           "torchtitan": "fsdp", "torchtune": "fsdp", "pytorch-fsdp": "fsdp", "fsdp2": "fsdp", "composer": "llm-foundry"}


def stack_key(name: str | None) -> str:
    """The named stack a framework name runs as ("other" for one the engine does not know; its efficiency is 1)."""
    if not name:
        return REFERENCE_STACK
    name = name.lower()
    name = ALIASES.get(name, name)
    return name if name in STACKS else "other"


def band_stack(name: str | None) -> str:
    """The stack key a run's band is read by (calc.bands.band ``stack``), as benchmarks/fit_corpus.row_stack keys a
    training row: the named stack the framework runs as (torchtitan -> fsdp; none given: megatron), else its own name
    in lower case (two unknown frameworks are not one)."""
    key = stack_key(name)
    return key if key != "other" or not name else name.lower()


def default_efficiency(stack: str) -> float:
    """e_stack of a named stack from the fitted defaults (1 for the reference, an unfitted or unknown stack)."""
    try:
        values = fitted()["parameters"]["stack_efficiency"]
    except KeyError:
        return 1.0
    entry = values.get(stack_key(stack)) or values.get("other")
    return float(entry["value"]) if entry else 1.0


# The value the fit replaces while it searches (benchmarks/fit_corpus.py through corpus_predict): {stack: e}.
OVERRIDES: dict[str, float] = {}


def stack_efficiency(stack: str) -> float:
    """e_stack in force: an override of the fit's search, else the shipped default."""
    key = stack_key(stack)
    return OVERRIDES.get(key, default_efficiency(key))
