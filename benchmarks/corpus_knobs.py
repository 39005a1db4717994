"""A corpus row's knobs in the engine's vocabulary: what the source gives (``config``) over what the collector
assumed (``assumed``, each with its why), and the translations from a stack's own names to llmcalc's.

    knobs(row)                  {knob: value}: config over assumed, only values the engine can take
    training_layout(row, k)     calc.training.layout.Layout keywords and the global batch (derived when missing)
    finetune_kwargs(row, k)     calc.memory.finetune.finetune_memory keywords (litgpt/torchtune/PEFT names mapped)

A knob the engine cannot represent faithfully raises corpus_predict.CannotPredict with the reason (never a guess).
"""

from __future__ import annotations

from typing import Any

from calc.memory.training import FSDP_PP
from calc.training.stack import memory_defaults, stack_key

INT_KNOBS = ("tp", "pp", "dp", "cp", "ep", "etp", "vpp", "micro_batch", "global_batch", "seq", "zero", "batch", "prompt",
             "output", "grad_accum", "max_model_len", "max_num_seqs", "block_size", "lora_rank", "max_batch_size",
             "max_num_batched_tokens", "chunked_prefill_size", "cpu_offload_layers", "num_requests", "pp_microbatch_group",
             "rocm_custom_pa_max_seq_len", "num_scheduler_steps", "output_cap", "doc_tokens")
FLOAT_KNOBS = ("gpu_memory_utilization", "mem_fraction_static", "capacity_gib", "tokens", "dropout", "rate",
               "kv_cache_free_gpu_mem_fraction")
STR_KNOBS = ("recompute", "recompute_modules", "offload_modules", "kv_dtype", "attention", "flop_convention", "method",
             "precision", "optimizer", "loss", "lora_targets", "quantization", "fp8_recipe", "system", "fp8_scales",
             "adapter_inputs", "dispatcher", "moe_collective", "cp_comm", "usage_context", "output_lengths",
             "training_recipe", "moe_routing", "attention_windows", "sharding")
BOOL_KNOBS = ("sp", "fsdp", "fused", "optimizer_in_backward", "weights_as_shipped", "enable_chunked_prefill", "compile",
              "vllm_flashinfer_sampler",
              "enforce_eager", "burst", "offload_params", "offload_optimizer", "offload_activations",
              "shard_embeddings_separately", "kv_repeated", "ep_overlap_1f1b", "pp_embedding", "pp_loss",
              "pp_p2p_overlap", "enable_expert_parallel", "enable_dp_attention", "tp_comm_overlap", "async_scheduling")


class Unrepresentable(Exception):
    """The engine has no faithful representation of this row's setting (the message says which)."""


def _typed(key: str, value: Any) -> Any | None:
    """The value as the engine takes it, or None where it is not one (a prose note; training_layout refuses a prose
    vpp rather than dropping it)."""
    if key in INT_KNOBS:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value == int(value) else None
    if key in FLOAT_KNOBS:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if key in STR_KNOBS:
        return value if isinstance(value, str) else None
    if key in BOOL_KNOBS:
        return value if isinstance(value, bool) else None
    return None


def _raw(row: Any, key: str) -> Any | None:
    """The row's value of ``key`` as written (config over assumed), typed or not; None when absent."""
    if key in row.config:
        return row.config[key]
    return row.assumed[key].value if key in row.assumed else None


def knobs(row: Any) -> dict[str, Any]:
    """The row's knobs: ``assumed`` values, overridden by ``config`` (what the source gives), typed; prose dropped.
    Rounded prompt/output means (a workload's average lengths) are rounded to whole tokens."""
    out: dict[str, Any] = {}
    for key, a in row.assumed.items():
        if key in ("prompt", "output") and isinstance(a.value, float):
            out[key] = max(round(a.value), 1)
            continue
        v = _typed(key, a.value)
        if v is not None:
            out[key] = v
    for key, value in row.config.items():
        if key in ("prompt", "output") and isinstance(value, float):
            out[key] = max(round(value), 1)
            continue
        v = _typed(key, value)
        if v is not None:
            out[key] = v
    if out.get("kv_dtype") == "auto":
        out["kv_dtype"] = auto_kv_dtype(row.dtype)
    return out


SIXTEEN_BIT = ("bf16", "fp16", "fp32")


def auto_kv_dtype(weight_dtype: str) -> str:
    """vLLM/SGLang ``kv_cache_dtype="auto"``: the model's activation dtype (ModelConfig.dtype, the checkpoint's
    torch_dtype), never the weights' quantized format: an fp8, int8 or int4 checkpoint keeps a 16-bit KV cache
    (vllm/worker/cache_engine.py: ``if cache_config.cache_dtype == "auto": self.dtype = model_config.dtype``). The
    engine's own default, KV = --dtype, would store fp8 KV for an fp8 checkpoint; 16-bit rows keep their dtype, and
    quantized ones take bf16 (fp16 has the same two bytes)."""
    return weight_dtype if weight_dtype in SIXTEEN_BIT else "bf16"


# The fp8 scale granularity of a stack's FP8 weights when the row does not say (fp8_scales: block | tensor; the
# engine's calc.serving.assumptions fp8_moe_scales, default "block"): TensorRT-LLM's QuantAlgo FP8 (trtllm-bench build
# --quantization FP8, NVIDIA ModelOpt "-FP8" checkpoints, hf_quant_config quant_algo "FP8") is one scale per tensor,
# a QuantAlgo apart from FP8_BLOCK_SCALES (tensorrt_llm/quantization/mode.py; tensorrt_llm/bench/build/tuning.py
# BYTES_PER_ELEM lists both), and its MoE runs CUTLASS's per-tensor fp8 grouped GEMM.
STACK_FP8_SCALES = {"trtllm": "tensor", "nim-trtllm": "tensor"}


def fp8_scales(row: Any, k: dict[str, Any]) -> str | None:
    """The row's fp8 scale granularity (its ``fp8_scales`` knob, else its stack's STACK_FP8_SCALES) for fp8 rows;
    None: the engine's default."""
    if not row.dtype.startswith("fp8"):
        return None
    return k.get("fp8_scales") or STACK_FP8_SCALES.get(row.stack.name)




# torchtitan's activation_checkpoint mode "selective" (selective_ac_option "op" in its llama configs) is op-level SAC,
# and its tensor-parallel plan (parallelize_llama apply_tp) always runs sequence parallelism on norms and residuals.
OP_LEVEL_SAC_STACKS = ("torchtitan",)

# The cross-entropy a stack runs when the row does not say (calc.memory.activations.lm_head_buffers; the engine's
# default is Megatron-Core's vocab-parallel CE): llm-foundry's ComposerMPTCausalLM takes loss_fn "fused_crossentropy"
# (flash_attn.losses.cross_entropy) by default (llmfoundry/models/mpt/modeling_mpt.py); torchtitan's
# cross_entropy_loss runs torch cross_entropy on pred.float() (torchtitan/components/loss.py).
STACK_LOSS = {"llm-foundry": "flash-ce", "torchtitan": "fp32"}

# torchtitan runs FSDP2 under pipeline parallelism as its own sharding (calc.memory.training.fsdp_pp_states): each stage
# fully_shard-ed with reshard_after_forward=False when PP is on (torchtitan/parallelisms/parallelize_llama.py apply_fsdp),
# gradients reduce-scattered once after the last micro-batch (torch/distributed/pipelining/stage.py). NeMo AutoModel runs
# the same pair: its AutoPipeline drives torch.distributed.pipelining over stages fully_shard-ed by
# components/moe/parallelizer.py (reshard_after_forward default False; NVIDIA-NeMo/Automodel @ 8d9bfb90e).
FSDP_PP_STACKS = ("torchtitan", "nemo-automodel")

# NeMo 2 / Megatron-Bridge recipes run Megatron's distributed optimizer (ZeRO-1) unless they say otherwise.
DISTRIBUTED_OPTIMIZER_STACKS = ("nemo", "megatron-bridge")


# torchtitan compiles its loss function whenever it compiles (calc.memory.activations.lm_head_buffers, "compiled"):
# from pytorch/torchtitan e10cb9494 (2024-10-22) until e8977b007 turned it off (2024-12-18), and again from bbb1b616e
# (2025-04-02: build_cross_entropy_loss, ``if job_config.training.compile: loss_fn = torch.compile(loss_fn)``; since
# 08b8b244f, 2025-08-20, compile.components = ["model", "loss"] by default). A row is dated by its source's date, a
# month or year alone read as its last day (the runs are taken as near their publication): the 2024-12 performance
# tables ran at 9dec370 (2024-12-26), after the turn-off.
TORCHTITAN_COMPILED_LOSS = (("2024-10-22", "2024-12-18"), ("2025-04-02", "9999"))


def training_loss(row: Any, k: dict[str, Any]) -> str | None:
    """The row's cross-entropy (its ``loss`` knob, else its stack's ``STACK_LOSS``; a compiled torchtitan run of a
    release that compiles its loss, TORCHTITAN_COMPILED_LOSS, runs "compiled"); None: the engine's default."""
    if k.get("loss"):
        return k["loss"]
    if row.stack.name == "torchtitan" and k.get("compile"):
        date = str(row.source.date)
        date += "-12-31"[len(date) - 4:] if len(date) < 10 else ""  # YYYY -> YYYY-12-31, YYYY-MM -> YYYY-MM-31
        if any(lo <= date < hi for lo, hi in TORCHTITAN_COMPILED_LOSS):
            return "compiled"
    return STACK_LOSS.get(row.stack.name)


def stack_recompute(row: Any, k: dict[str, Any]) -> str | None:
    """The row's recompute level in the engine's names: torchtitan's selective AC is op-level SAC, the engine's "sac"
    (not Megatron's selective, which under FlashAttention recomputes nothing); None when the row names none."""
    if k.get("recompute") == "selective" and row.stack.name in OP_LEVEL_SAC_STACKS:
        return "sac"
    return k["recompute"] if k.get("recompute") in ("none", "selective", "full", "sac", "dots") else None


# Megatron-MoE-ModelZoo's results tables write --recompute-modules in short: "norm, act" for the H100 Qwen3-235B run
# whose command (best_practice/qwen3/run_h100_235b.sh at e8650517) passes "--recompute-modules moe_act layernorm", and
# "shared_expert" for Megatron's shared_experts; the Megatron-LM DeepSeek-V3 GB200 report writes "--recompute-modules
# mlp up_proj" for "the MLA up projection" (its own words), Megatron's mla_up_proj.
RECOMPUTE_MODULE_ALIASES = {"norm": "layernorm", "act": "moe_act", "shared_expert": "shared_experts", "up_proj": "mla_up_proj"}


def recompute_modules(k: dict[str, Any]) -> frozenset[str]:
    """The row's Megatron ``--recompute-modules`` (space- or comma-separated, ModelZoo short names mapped); a module
    the engine does not know raises Unrepresentable."""
    from calc.memory.activations import RECOMPUTE_MODULES

    names = str(k.get("recompute_modules") or "").replace(",", " ").split()
    mods = frozenset(RECOMPUTE_MODULE_ALIASES.get(n, n) for n in names)
    unknown = sorted(mods - set(RECOMPUTE_MODULES))
    if unknown:
        raise Unrepresentable(f"recompute module(s) {', '.join(unknown)} not modelled ({', '.join(RECOMPUTE_MODULES)})")
    return mods


def training_layout(row: Any, k: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(Layout keywords, global batch). DP, when the source gives only the GPU count, is what the other axes leave
    (n / (TP x PP x CP)); FSDP is ZeRO-3 (FULL_SHARD); the global batch, when not given, is micro_batch x DP x
    grad_accum (grad_accum 1 unless given). FSDP with PP > 1 on a stack that runs it (``FSDP_PP_STACKS``) is
    the "fsdp-pp" sharding, not ZeRO-3 (which pipeline-parallel Megatron/DeepSpeed refuse); a row's ``sharding``
    knob, where it gives one, is taken as given."""
    n = row.hardware.num_gpus
    schedule = _raw(row, "vpp")
    if schedule is not None and "vpp" not in k:
        # a prose schedule ("interleaved") dropped here would silently price the non-interleaved 1F1B bubble (p - 1)
        # t_mb instead of (p - 1)/v t_mb: refuse it; the row must give the virtual-stage count
        raise Unrepresentable(f"vpp {schedule!r} is not a virtual-stage count (give V, the model chunks per pipeline rank)")
    lay = {key: k[key] for key in ("tp", "pp", "dp", "cp", "ep", "etp", "vpp", "micro_batch", "zero", "cpu_offload_layers",
                                   "pp_microbatch_group")
           if key in k}
    lay.update({key: k[key] for key in ("pp_embedding", "pp_loss") if k.get(key)})
    if k.get("sp") is not None:
        lay["sp"] = k["sp"]
    elif row.stack.name in OP_LEVEL_SAC_STACKS and lay.get("tp", 1) > 1:
        lay["sp"] = True  # torchtitan's TP plan always shards norms/residuals by sequence (SequenceParallel)
    if (recompute := stack_recompute(row, k)) is not None:
        lay["recompute"] = recompute
    if mods := recompute_modules(k):
        if lay.get("recompute") not in (None, "selective"):
            raise Unrepresentable(f"recompute_modules with recompute {lay['recompute']}: Megatron recomputes modules "
                                  "under --recompute-granularity selective")
        lay["recompute"], lay["recompute_modules"] = "selective", mods
    if k.get("offload_modules"):  # Megatron --fine-grained-activation-offloading --offload-modules
        lay["offload_modules"] = frozenset(str(k["offload_modules"]).replace(",", " ").split())
    if k.get("fsdp") and "zero" not in lay:
        lay["zero"] = 3
    if lay.get("zero") == 3 and lay.get("pp", 1) > 1 and row.stack.name in FSDP_PP_STACKS:
        lay["sharding"] = FSDP_PP
    if k.get("sharding"):  # a row's own (Llama 3's FSDP with PP: zero2-pp, calc.memory.training.zero2_pp_states)
        lay["sharding"] = k["sharding"]
    if "zero" not in lay and row.stack.name in DISTRIBUTED_OPTIMIZER_STACKS:
        lay["zero"] = 1
    if "dp" not in lay:
        shards = lay.get("tp", 1) * lay.get("pp", 1) * lay.get("cp", 1)
        if n % shards:
            raise Unrepresentable(f"{n} GPUs are not a multiple of TP x PP x CP = {shards}")
        lay["dp"] = n // shards
    if "sp" not in lay and lay.get("tp", 1) > 1 and row.stack.name in DISTRIBUTED_OPTIMIZER_STACKS:
        lay["sp"] = True  # NeMo 2 / Megatron-Bridge recipes set sequence_parallel=True whenever TP > 1
    gb = k.get("global_batch") or lay.get("micro_batch", 1) * lay["dp"] * k.get("grad_accum", 1)
    return lay, gb


# litgpt's finetune scripts on several devices build FSDPStrategy(auto_wrap_policy={Block},
# activation_checkpointing_policy={Block}, ...): every block is checkpointed (finetune/lora.py, 2023-2024). Each Block
# unit holds the frozen weights with their LoRA matrices, and Fabric's FSDPStrategy wraps with use_orig_params=True
# ("sets `use_orig_params=True` to keep the reference to the original parameters in the optimizer"): the unit's
# gradient covers its frozen weights too. Micro-batches accumulate under ``fabric.no_backward_sync(model,
# enabled=is_accumulating)`` (FSDP.no_sync: unsharded gradients). Lightning 2.1's FSDPStrategy is FSDP1, whose root
# unit (embedding, head, final norm) stays gathered from forward to backward. litgpt commit 8641822 finetune/lora.py.
FSDP_CHECKPOINTS_BLOCKS_STACKS = ("litgpt",)
# ... and load the checkpoint with fabric.load_raw into the FSDP-wrapped model: Lightning gathers every weight first
# (calc.memory.finetune._gathered_load_peak)
GATHERED_LOAD_STACKS = ("litgpt",)

# litgpt's finetune scripts (commit 8641822 finetune/lora.py): ``logits = model(input_ids, lm_head_chunk_size=128)`` then
# ``chunked_cross_entropy(logits, targets[..., 1:])``: bf16 logit chunks of 128 tokens, cross-entropy on bf16;
# ``lora_dropout = 0.05``; the block as lit_gpt/model.py and lora.py write it (finetune_memory litgpt_block).
LITGPT_STACKS = ("litgpt",)
LITGPT_LM_HEAD_CHUNK = 128
LITGPT_LORA_DROPOUT = 0.05

QUANT = {"bnb.nf4": ("nf4", False), "bnb.nf4-dq": ("nf4", True), "bnb.int8": ("int8", False)}
PRECISION = {"bf16-true": "bf16", "bf16-mixed": "mixed", "16-mixed": "mixed", "32-true": "fp32"}


def finetune_kwargs(row: Any, k: dict[str, Any]) -> dict[str, Any]:
    """finetune_memory keywords: litgpt's micro_batch is the per-step batch, its ``quantization: bnb.nf4[-dq]`` a QLoRA
    base in nf4 (with double quantization), its ``precision: bf16-true`` pure bf16 weights; Adapter (LLaMA-Adapter) is
    not a method the engine models."""
    method = k.get("method", "lora")
    if method in ("adapter", "adapter_v2"):
        raise Unrepresentable(f"method {method} (LLaMA-Adapter prompts/gates) is not modelled: lora, qlora, dora, full")
    out: dict[str, Any] = {key: k[key] for key in ("tp", "pp", "dp", "lora_rank", "lora_targets", "lora_dropout",
                                                    "optimizer", "loss", "recompute", "attention", "zero", "fused",
                                                    "optimizer_in_backward", "grad_accum", "offload_params", "offload_optimizer",
                                                    "offload_activations", "shard_embeddings_separately", "adapter_inputs",
                                                    "kv_repeated") if key in k}
    out["method"] = method
    if (recompute := stack_recompute(row, k)) is not None:
        out["recompute"] = recompute
    if "seq" not in k:
        raise Unrepresentable("no sequence length given or assumed")
    out["seq"] = k["seq"]
    out["batch"] = k.get("batch", k.get("micro_batch", 1))
    precision = k.get("precision", "mixed")
    out["precision"] = PRECISION.get(precision, precision)
    q = k.get("quantization")
    if q and q != "None":
        if q not in QUANT:
            raise Unrepresentable(f"quantization {q} is not modelled (bnb.nf4, bnb.nf4-dq, bnb.int8)")
        out["base_dtype"], out["double_quant"] = QUANT[q]
        if method == "lora":
            out["method"] = "qlora"
    if k.get("attention") == "unfused":
        out["attention"] = "eager"
    if out["method"] == "qlora" and not str(q or "").startswith("bnb.") and stack_key(row.stack.name) != "other":
        # a named stack's 4-bit linears (torchtune: torchao's LinearNF4, no input kept); bitsandbytes' otherwise
        out["bnb_linears"] = memory_defaults(row.stack.name).bnb_linears
    if row.stack.name in LITGPT_STACKS:
        out["litgpt_block"] = True
        out.setdefault("lora_dropout", LITGPT_LORA_DROPOUT)
        if "loss" not in out:
            out["loss"], out["loss_chunks"] = "bf16", -(-k["seq"] // LITGPT_LM_HEAD_CHUNK)
    if "grad_accum" not in out and k.get("global_batch"):
        out["grad_accum"] = max(k["global_batch"] // (out["batch"] * k.get("dp", 1)), 1)
    if k.get("fsdp") and "zero" not in out:
        out["zero"] = 3  # FSDP full shard is ZeRO-3, as in training_layout
        if row.stack.name in FSDP_CHECKPOINTS_BLOCKS_STACKS:
            if "recompute" not in out:
                out["recompute"] = "full"
            out["fsdp_mixed_units"] = out["fsdp_no_sync"] = out["fsdp1_root"] = True
        if row.stack.name in GATHERED_LOAD_STACKS:
            out["gathered_load"] = True
    return out
