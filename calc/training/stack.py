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
  deepspeed    DeepSpeed (ZeRO, pipeline engine): FlashAttention-2 via the model code; fp8 through TE, delayed. Its
               fitted efficiency rests on 2021-2022 Megatron-DeepSpeed runs (BLOOM-176B, GLM-130B, BigScience
               tr1-13B: unfused attention, no sequence parallelism, fp16 / bf16 on A100 and V100).
  hf           Hugging Face transformers Trainer / PEFT / TRL in eager PyTorch (fine-tuning's stack): SDPA, whose flash
               backend is FlashAttention-2; fp8 by torchao Float8Linear (accelerate's AORecipeKwargs), tensorwise.

What each stack decides in the memory engine (``MEMORY``, a calc.memory.training.StackMemory; the flags --loss, --compile,
--fragmentation override one field each), the same in `memory --mode train`, train-step and `memory --mode finetune
--method full`:
  megatron     MEGATRON_MEMORY: Megatron-Core vocab-parallel cross-entropy (6 B/logit), fused norm and bias-SwiGLU,
               expandable segments (no fragmentation), the persistent gradient buffer (param_and_grad_buffer.py), a
               Megatron-FSDP unit's gradient in bf16 (grad_reduce_in_fp32 False).
  fsdp, llm-foundry, deepspeed
               as train-step has priced them: Megatron's loss, fusions, allocator and buffer (their own losses are a
               corpus row's knob), an FSDP unit's gradient in fp32 (FSDP_REDUCE_BYTES); fsdp also counts PyTorch's
               caching-allocator blocks (calc.memory.training.caching_allocator_cached) and prices ZeRO-3 as FSDP2
               mixed precision: the fp32 shard is the master, gradients fp32 shards (calc.memory.training.fsdp2_states).
  hf           HF_MEMORY, fine-tuning's defaults (calc.memory.finetune.finetune_memory): torch cross-entropy on fp32
               logits (12 B/logit), no torch.compile, 5% allocator fragmentation, gradients from the first backward,
               fp32 FSDP gradients.
`--mode finetune` defaults to hf, `--mode train` / train-step to megatron (DEFAULT_STACK): each mode its users' stack.

The stack efficiency e_stack scales every compute kernel's time by 1 / e_stack (launch gaps, unfused small ops,
framework overhead between kernels that the kernel-level rates do not see). Megatron is the reference (1 by
definition: the GEMM plateau per generation is the Megatron-class rate); the others are read from
calc/data/fitted_defaults.json ("stack_efficiency", fitted by benchmarks/fit_corpus.py where the fit split holds
rows of that stack from at least two source groups and the fit beats 1 in cross-validation; otherwise 1).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from calc.fitted import fitted
from calc.memory.training import FSDP_PP, FSDP_REDUCE_BYTES, HF_MEMORY, MEGATRON_MEMORY, ZERO_SHARDING, StackMemory

STACKS = ("megatron", "fsdp", "llm-foundry", "deepspeed", "hf")
REFERENCE_STACK = "megatron"
HF_STACK = "hf"
# The stack each memory mode prices by default: its users' (train-step's Megatron plans; fine-tuning's HF Trainer / PEFT).
DEFAULT_STACK = {"train": REFERENCE_STACK, "finetune": HF_STACK}
# Attention kernel (calc.hardware.attention.KERNELS) per stack on an sm90+ part; Ampere-class parts run FA2 (or triton).
ATTENTION_KERNEL = {"megatron": "cudnn", "fsdp": "fa2", "llm-foundry": "triton", "deepspeed": "fa2", "hf": "fa2"}
FP8_RECIPE = {"megatron": "delayed", "fsdp": "tensorwise", "llm-foundry": "delayed", "deepspeed": "delayed", "hf": "tensorwise"}
# Stacks that overlap the TP all-gathers / reduce-scatters with the GEMMs by default (TP >= 2 with sequence parallelism,
# full-weight training; calc.training.cost.Efficiencies.resolved_tp_overlap): Megatron-class as NeMo 2 and
# Megatron-Bridge recipes run it. NeMo's llama3_70b / llama31_405b pretrain_performance_optimizations (NVIDIA/NeMo
# @ 8cfedd7, nemo/collections/llm/recipes/) pass MegatronCommOverlapCallback(tp_comm_overlap=True, tp_comm_overlap_cfg=
# userbuffers_bf16_h100_h8192_tp4_mbs1_seqlen8192 ...), which scripts/performance/llm/pretrain_*.py (the published
# performance tables, DGX Cloud recipes) start from; Megatron-Bridge's llama3 70B / 405B recipes pass CommOverlapConfig(
# tp_comm_overlap=True, ...) (NVIDIA-NeMo/Megatron-Bridge @ 067f987, src/megatron/bridge/recipes/llama/h100/llama3.py);
# both callbacks switch it off below TP 2 or without sequence parallelism (megatron_comm_overlap.py / comm_overlap.py:
# "Disabling tensor parallel communication overlap due to TP size < 2", "... due to sequence_parallel=False"), and
# NeMo's PEFT fine-tuning recipes pass tp_comm_overlap=False. Megatron-LM's own default is off (megatron/core/
# model_parallel_config.py ``tp_comm_overlap: bool = False``; --tp-comm-overlap): a bare Megatron-LM run says so with
# --tp-overlap 0. PyTorch FSDP stacks: torchtitan's async TP is off unless asked (--tp-overlap).
TP_COMM_OVERLAP = frozenset({"megatron"})
# The memory engine's settings per stack (module docstring); a stack the engine does not know ("other") prices as
# the non-Megatron stacks do.
_NON_MEGATRON = replace(MEGATRON_MEMORY, fsdp_reduce_bytes=FSDP_REDUCE_BYTES)
MEMORY: dict[str, StackMemory] = {
    "megatron": MEGATRON_MEMORY, "fsdp": replace(_NON_MEGATRON, caching_allocator=True, fp32_shards=True), "llm-foundry": _NON_MEGATRON,
    "deepspeed": _NON_MEGATRON, "hf": HF_MEMORY, "other": _NON_MEGATRON,
}
# Corpus / user spellings of a stack, mapped to the named stack whose defaults they run.
ALIASES = {"nemo": "megatron", "megatron-bridge": "megatron", "megatron-lm": "megatron", "megatron-core": "megatron",
           "torchtitan": "fsdp", "torchtune": "fsdp", "pytorch-fsdp": "fsdp", "fsdp2": "fsdp",
           "kempnerforge": "fsdp",  # KempnerInstitute/KempnerForge: torchtitan-style FSDP2 + DTensor TP, eager ops, SDPA
           "nemo-automodel": "fsdp", "composer": "llm-foundry",
           "transformers": "hf", "hf-trainer": "hf", "peft": "hf", "peft-hf-trainer": "hf", "trl": "hf"}
# Frameworks that run as a named stack's defaults (memory engine, attention kernel, fp8 recipe, TP overlap) but whose
# kernel efficiency is not that stack's fitted one: they read OWN_EFFICIENCY's key instead ("other": 1, the reference,
# until the fit split holds two source groups of them to fit their own).
#   nemo-automodel  NVIDIA NeMo AutoModel shards with FSDP2 (so its memory is fsdp's: the caching allocator, fp32 FSDP
#                   gradients), but its layers run Transformer Engine's kernels (te.Linear, TE RMSNorm, TE
#                   DotProductAttention on cuDNN) and DeepEP's dispatch, the Megatron-Core kernel set, where the fsdp
#                   factor prices eager-PyTorch stacks (torchtitan, torchtune) whose small ops are unfused. The fit
#                   split's AutoModel rows (one source group, docs/performance-summary.md: six MoE runs on H100) read
#                   1.15-1.61 of their measured step time at the fsdp factor 0.81 (pass 28), 0.97-1.44 at 1 (pass 29).
OWN_EFFICIENCY = {"nemo-automodel": "other"}


# Stacks without a pipeline schedule, and what they run instead: HF Trainer / accelerate shard with DDP, FSDP or DeepSpeed
# ZeRO (and, since accelerate 1.10's ParallelismConfig, TP and CP over DTensor), but run no pipeline stages (the Trainer
# does not drive DeepSpeed's PipelineEngine); LLM Foundry trains through Composer's FSDP (its parallelism_config: fsdp,
# tp), with no pipeline engine. train-step refuses --pp > 1 under them; train-plan searches PP 1 only.
NO_PIPELINE = {HF_STACK: "HF Trainer / accelerate: DDP, FSDP, DeepSpeed ZeRO, TP",
               "llm-foundry": "Composer: FSDP and TP"}
# Stacks whose pipeline runs 1F1B without interleaving: DeepSpeed's PipelineEngine executes TrainSchedule
# (deepspeed/runtime/pipe/schedule.py), one model chunk a stage. train-step refuses --vpp > 1; train-plan tries VPP 1.
NO_INTERLEAVING = {"deepspeed": "DeepSpeed's PipelineEngine runs TrainSchedule, 1F1B with one chunk a stage"}


# Stacks whose MoE layers loop over the experts in Python: Hugging Face transformers' eager MoE blocks (before the
# grouped-GEMM ``_moe_implementation`` of transformers 5; e.g. Qwen3MoeSparseMoeBlock / Qwen2MoeSparseMoeBlock.forward:
# ``expert_hit = torch.greater(expert_mask.sum(dim=(-1, -2)), 0).nonzero()`` then, per expert hit,
# ``torch.where(expert_mask[expert_idx])``, its own gate / up / down GEMMs and an ``index_add_``). Each torch.where is a
# nonzero, a device-to-host sync, so the host cannot run ahead of the GPU across experts, and each expert's GEMMs see
# only its own tokens. The engine times routed experts as Megatron-Core / torchtitan run them (one grouped GEMM, the
# host ahead of the GPU), so under these stacks an MoE step time is a lower bound: train-step says so, and the corpus
# does not time such rows (benchmarks/corpus_predict).
LOOPED_EXPERTS = frozenset({HF_STACK})


def loops_experts(name: str | None) -> bool:
    """Whether the stack runs an MoE model's experts one by one in a Python loop (LOOPED_EXPERTS), which the step
    model does not time.

    >>> loops_experts("hf-trainer"), loops_experts("megatron"), loops_experts("torchtitan")
    (True, False, False)
    """
    return stack_key(name) in LOOPED_EXPERTS


LOOPED_EXPERTS_WARNING = ("{name} runs an MoE model's experts one by one in a Python loop with a host sync per expert "
                          "(transformers' eager MoE blocks); the step is timed as Megatron-Core's grouped GEMMs, so "
                          "read the time as a lower bound (--stack megatron or fsdp for a grouped-GEMM stack)")


# What a stack's pipeline cannot run, option by option: the stacks that cannot (with what they run instead), what the
# refusal says they lack, and the fix it offers. train-step, memory --mode train / finetune and report refuse the
# option above 1 under those stacks (check_stack_runs); train-plan searches 1 only (stack_runs).
CANNOT_RUN = {
    "pp": (NO_PIPELINE, "runs no pipeline schedule", "a stack with one (--stack megatron, deepspeed or fsdp)"),
    "vpp": (NO_INTERLEAVING, "runs no interleaved pipeline schedule", "--stack megatron or fsdp for an interleaved schedule"),
}


def stack_runs(name: str | None, option: str) -> bool:
    """Whether the stack can run ``option`` ("pp" or "vpp", CANNOT_RUN) above 1.

    >>> stack_runs("megatron", "pp"), stack_runs("peft", "pp"), stack_runs("megatron", "vpp"), stack_runs("deepspeed", "vpp")
    (True, False, True, False)
    """
    return stack_key(name) not in CANNOT_RUN[option][0]


def check_stack_runs(name: str | None, *, zero: int, offload: str | None = None, **values: int) -> None:
    """Refuse, naming the flag, what the stack cannot run: a pipeline option above 1 (``pp=``, ``vpp=``; CANNOT_RUN),
    a ZeRO stage it has none of (``check_stack_zero``), or Megatron-Core's activation offloading (``offload``: the flag
    given, --cpu-offload-layers or --offload-modules) off Megatron. One call for train-step and every `memory` mode."""
    check_stack_zero(name, zero)
    if offload and stack_key(name) != "megatron":
        from calc.errors import LLMCalcError

        raise LLMCalcError(offload, f"Megatron-Core's activation offloading; --stack {name} does not run it: "
                                    "drop it, or give --stack megatron")
    for option, value in values.items():
        if value > 1 and not stack_runs(name, option):
            from calc.errors import LLMCalcError

            stacks, lacks, fix = CANNOT_RUN[option]
            raise LLMCalcError(f"--{option}", f"--stack {name} {lacks} ({stacks[stack_key(name)]}); give --{option} 1, or {fix}")


# The ZeRO stages the plan search tries under a stack (every other stack 0-3): torchtitan (fsdp) shards with FSDP2 or
# replicates with DDP, and has no ZeRO-1/2 optimizer (torchtitan/distributed/parallel_dims.py: dp_replicate, dp_shard).
ZERO_STAGES = {"fsdp": (0, 3)}
# How a ZeRO-3 layout with pipeline stages shards under a stack (every other stack: ZeRO as its stage says):
# torchtitan's FSDP2 with pipeline stages (calc.memory.training.FSDP_PP, --sharding fsdp-pp).
ZERO3_PP_SHARDING = {"fsdp": FSDP_PP}


def stack_zero_stages(name: str | None) -> tuple[int, ...]:
    """The ZeRO stages the plan search tries under the stack (ZERO_STAGES).

    >>> stack_zero_stages("torchtitan"), stack_zero_stages("megatron")
    ((0, 3), (0, 1, 2, 3))
    """
    return ZERO_STAGES.get(stack_key(name), (0, 1, 2, 3))


def check_stack_zero(name: str | None, zero: int) -> None:
    """Refuse ZeRO-1 under a stack that has none: PyTorch FSDP shards gradients with the states (SHARD_GRAD_OP, ZeRO-2)
    or also the parameters (FULL_SHARD, ZeRO-3), or replicates (NO_SHARD / DDP, ZeRO-0), and torchtitan (--stack fsdp)
    has no optimizer-only sharding.

    >>> check_stack_zero("megatron", 1), check_stack_zero("fsdp", 2)
    (None, None)
    """
    if zero == 1 and stack_key(name) == "fsdp":
        from calc.errors import LLMCalcError

        raise LLMCalcError("--zero", f"--stack {name} has no ZeRO-1 (FSDP shards the gradients with the optimizer states, "
                                     "SHARD_GRAD_OP, or the parameters too, FULL_SHARD): give --zero 0, 2 or 3, or a "
                                     "stack with a distributed optimizer (--stack megatron or deepspeed)")


def pp_sharding(name: str | None, zero: int, pp: int) -> str:
    """How a searched layout of ZeRO stage ``zero`` over ``pp`` pipeline stages shards under the stack
    (ZERO3_PP_SHARDING for ZeRO-3 with PP, else ZeRO as its stage says).

    >>> pp_sharding("fsdp", 3, 4), pp_sharding("fsdp", 3, 1), pp_sharding("megatron", 3, 4)
    ('fsdp-pp', 'zero', 'zero')
    """
    return ZERO3_PP_SHARDING.get(stack_key(name), ZERO_SHARDING) if zero == 3 and pp > 1 else ZERO_SHARDING


# Stacks whose tensor parallelism shards the KV heads without replicating them: Megatron-Core's attention sets
# num_query_groups_per_partition = divide(num_query_groups, world_size) (megatron/core/transformer/attention.py), and
# divide() asserts an exact split, so TP must divide the KV heads (NeMo and Megatron-Bridge run it).
SHARDS_KV_HEADS = ("megatron",)


def tp_places_kv_heads(name: str | None, m: Any, tp: int) -> bool:
    """Whether the stack can place the model's KV heads on ``tp`` ranks: Megatron-Core only when TP divides them
    (SHARDS_KV_HEADS); other stacks as calc.model.parallel.tp_splits_kv_heads (divide, or replicate each head on
    t/g ranks). MLA's latent is replicated on every rank either way.

    >>> from calc.sources.catalog import load_model
    >>> tp_places_kv_heads("megatron", load_model("llama3-8b"), 16), tp_places_kv_heads("fsdp", load_model("llama3-8b"), 16)
    (False, True)
    """
    from calc.model.parallel import tp_divides_kv_heads, tp_splits_kv_heads

    return tp_divides_kv_heads(m, tp) if stack_key(name) in SHARDS_KV_HEADS else tp_splits_kv_heads(m, tp)


def check_tp(name: str | None, m: Any, tp: int) -> None:
    """Refuse, naming --tp, a TP the model cannot be split by (calc.model.parallel.check_tp_split, with the degrees
    that pass), then one the stack cannot place the KV heads on (tp_places_kv_heads: Megatron-Core's divide-only rule)."""
    from calc.model.parallel import check_tp_split

    check_tp_split(m, tp)
    if not tp_places_kv_heads(name, m, tp):
        from calc.errors import LLMCalcError
        from calc.units import plural

        raise LLMCalcError("--tp", f"{tp} does not divide the {plural(m.kv_heads, 'KV head')} of {m.name}, and --stack "
                                   f"{name or 'megatron'} shards them without replicating (Megatron-Core's attention: "
                                   "num_query_groups / TP); give a TP dividing them")


def stack_key(name: str | None) -> str:
    """The named stack a framework name runs as ("other" for one the engine does not know; its efficiency is 1)."""
    if not name:
        return REFERENCE_STACK
    name = name.lower()
    name = ALIASES.get(name, name)
    return name if name in STACKS else "other"


def memory_defaults(name: str | None) -> StackMemory:
    """The memory engine's settings of a stack (``MEMORY``; none given: the reference stack's)."""
    return MEMORY[stack_key(name)]


def band_stack(name: str | None) -> str:
    """The stack key a run's band is read by (calc.bands.band ``stack``), as benchmarks/fit_corpus.row_stack keys a
    training row: the named stack the framework runs as (torchtitan -> fsdp; none given: megatron), else its own name
    in lower case (two unknown frameworks are not one)."""
    key = stack_key(name)
    return key if key != "other" or not name else name.lower()


def efficiency_key(name: str | None) -> str:
    """The fitted stack_efficiency key a framework reads: its named stack's (stack_key), unless OWN_EFFICIENCY sets it
    apart (benchmarks/corpus_predict.parameter_keys keys a corpus row by the same).

    >>> efficiency_key("torchtitan"), efficiency_key("nemo-automodel"), stack_key("nemo-automodel")
    ('fsdp', 'other', 'fsdp')
    """
    return OWN_EFFICIENCY.get((name or "").lower(), stack_key(name))


def default_efficiency(stack: str) -> float:
    """e_stack of a stack from the fitted defaults (1 for the reference, an unfitted or unknown stack)."""
    try:
        values = fitted()["parameters"]["stack_efficiency"]
    except KeyError:
        return 1.0
    entry = values.get(efficiency_key(stack)) or values.get("other")
    return float(entry["value"]) if entry else 1.0


# The value the fit replaces while it searches (benchmarks/fit_corpus.py through corpus_predict): {stack: e}.
OVERRIDES: dict[str, float] = {}


def stack_efficiency(stack: str) -> float:
    """e_stack in force: an override of the fit's search, else the shipped default."""
    key = efficiency_key(stack)
    return OVERRIDES.get(key, default_efficiency(stack))
