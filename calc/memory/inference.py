"""Serving memory: weights + KV cache + activations + reserve, per GPU under TP/PP (reference section 3)."""

from __future__ import annotations

import math

from calc.errors import LLMCalcError
from calc.memory.activations import activation_factor
from calc.memory.kv import (
    _kv_explain,
    kv_bytes_for_layer_tokens,
    kv_cache_bytes_per_token,
    model_auto_kv_dtype,
    request_cache_bytes,
    sparse_mla,
)
from calc.memory.result import DEFAULT_RESERVE_GIB, MemoryResult, _verdict
from calc.memory.weights import (
    LOW_BIT_DTYPES,
    check_group_size,
    requantize,
    sixteen_bit,
    weight_bytes_by_group,
    weights_as_priced,
    weights_class,
    weights_per_gpu,
    weights_stored_bytes,
)
from calc.model.parallel import check_layout, inference_layout, kv_heads_per_gpu
from calc.model.params import count_params
from calc.sanity import check_context
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.specs.serving import check_accounting
from calc.units import GIB, check_count, check_positive, dtype_bytes, gb, gib


def inference_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, dtype: str | None = "bf16",
    kv_dtype: str | None = None, batch: int = 1, seq: int = 2048, group_size: int | None = None,
    act_factor: float | None = None, reserve_gib: float = DEFAULT_RESERVE_GIB, with_mtp: bool = False,
    accounting: str = "vllm-v1",
) -> MemoryResult:
    """Serving memory of ``batch`` requests of ``seq`` tokens each (input + output).

    per GPU = weights of the busiest stage / t (calc.memory.weights.weights_per_gpu: vLLM's stages, the
    embedding on the first, the head on the last) + KV(S tokens; local layers capped at their window; g/t
    heads, the busiest stage's layers)*B + B*S*H*c*bytes/t + reserve. ``dtype`` None = the checkpoint as
    shipped (quantization_config); nvfp4 / mxfp4 / awq / gptq price the model as that checkpoint
    (calc.memory.weights.requantize), as `memory --dtype` does. min_gpus: the fewest GPUs whose serving layout (inference_layout, the
    layout `memory --num-gpus N` places) fits.
    ``with_mtp``: the multi-token-prediction modules are loaded too (an engine speculating with them).
    """
    m, dtype = requantize(m, dtype)  # nvfp4 / mxfp4 / awq / gptq: that checkpoint as shipped, as the CLI's --dtype
    plan = check_layout(m, plan or Parallelism())
    if with_mtp and not m.mtp_layers:
        raise LLMCalcError("--mtp", f"{m.name} has no multi-token-prediction layers (DeepSeek-V3, GLM-4.5 and Qwen3-Next have one)")
    shipped = dtype is None and m.quantization is not None  # unquantized: as shipped = the checkpoint dtype
    dtype = None if shipped else dtype or m.checkpoint_dtype
    dtype = dtype or m.checkpoint_dtype
    if group_size is not None:
        check_group_size(m, dtype, check_count(group_size, "--group-size"))
    groups = weight_bytes_by_group(m, None if shipped else dtype, with_mtp=with_mtp, group_size=group_size)
    # the engine's "auto" (``accounting``: calc.specs.serving.EngineSettings.accounting; the default engine's for
    # `memory --mode infer`), as serving prices it
    kv_dtype = kv_dtype or model_auto_kv_dtype(m, dtype, m.checkpoint_dtype, accounting)
    if act_factor is not None:  # live activation values per token / H
        check_positive(act_factor, "--act-factor", allow_zero=True)
    for name, value in (("--batch", batch), ("--seq", seq)):
        check_count(value, name)
    check_positive(reserve_gib, "--reserve-gib", allow_zero=True)
    check_accounting(accounting)
    counted = count_params(m)
    params = counted.total_params_with_mtp if with_mtp else counted.total_params
    shards = plan.tp * plan.pp
    weights = sum(groups.values())
    # --mtp: each MTP module is a full attention layer whose draft tokens' K and V take the same pool (vLLM's drafter
    # layers register their own KV cache specs); on the last pipeline stage, counted on the busiest GPU (exact at PP 1)
    mtp_layers = m.mtp_layers if with_mtp else 0

    def mtp_kv(tp: int) -> int:
        return kv_bytes_for_layer_tokens(m, mtp_layers, kv_dtype, tp) if mtp_layers else 0

    kv_token = kv_cache_bytes_per_token(m, kv_dtype) + mtp_kv(1)
    c = activation_factor(m) if act_factor is None else act_factor
    act_elem = dtype_bytes("fp16" if dtype in ("int4", "int8", "fp8") else dtype)
    activations = math.ceil(batch * seq * m.hidden_size * c * act_elem)
    reserve = int(reserve_gib * GIB)

    def per_gpu_for(layout: Parallelism) -> dict[str, int]:
        return {
            "weights": weights_per_gpu(m, None if shipped else dtype, layout.tp, layout.pp, with_mtp=with_mtp,
                                       group_size=group_size),
            "kv_cache": (request_cache_bytes(m, seq, kv_dtype, layout.tp, layout.pp) + mtp_kv(layout.tp) * seq) * batch,
            "activations": math.ceil(activations / layout.tp),
            "reserve": reserve,
        }

    def fits_on(n: int) -> bool | None:
        layout = inference_layout(m, n)
        return None if layout is None or gpu is None else sum(per_gpu_for(layout).values()) <= gpu.cuda_total_bytes

    per_gpu = per_gpu_for(plan)
    per_gpu_bytes = sum(per_gpu.values())
    # every count to 64 (12 = TP 4 x PP 3 is a layout), then whole nodes
    verdict = _verdict(gpu, per_gpu_bytes, lambda: next((n for n in (*range(1, 65), *range(72, 4097, 8)) if fits_on(n)), None))
    kv_seq = request_cache_bytes(m, seq, kv_dtype) + mtp_kv(1) * seq
    kv_total = kv_seq * batch
    # every TP rank's cache over the whole model's layers, summed over the TP ranks (PP stages split the layers)
    kv_stored = (request_cache_bytes(m, seq, kv_dtype, plan.tp) + mtp_kv(plan.tp) * seq) * plan.tp * batch
    # the weights likewise: each stage's rank bytes x its TP ranks (replicated tensors once a rank: weights_stored_bytes)
    weights_stored = weights_stored_bytes(m, None if shipped else dtype, plan.tp, plan.pp, with_mtp=with_mtp,
                                          group_size=group_size)
    return MemoryResult(
        warnings=check_context(m, seq, "--seq"),
        model=m.name, mode="infer", dtype=m.quantization.label() if shipped else dtype,  # shipped: a quantization_config to label
        weights_dtype=weights_class(m, None if shipped else dtype), kv_dtype=kv_dtype, batch=batch, seq=seq,
        tp=plan.tp, pp=plan.pp, dp=plan.dp, cp=plan.cp, num_gpus=shards * plan.dp * plan.cp,
        weights_bytes=weights, kv_cache_bytes_per_token=kv_token, kv_cache_bytes=kv_total,
        activation_bytes=activations, gradient_bytes=0, optimizer_bytes=0, reserve_bytes=reserve * shards,
        total_bytes=weights_stored + kv_stored + activations + reserve * shards, kv_cache_stored_bytes=kv_stored,
        weights_stored_bytes=weights_stored,
        per_gpu=per_gpu, per_gpu_bytes=per_gpu_bytes, **verdict, weight_bytes_by_group=groups,
        assumptions=[
            (weights_as_priced(m) if shipped else f"weights in {dtype}"
             + (f" (the blocks' weight matrices; embeddings, output head, routers and norms in {sixteen_bit(m)}, as "
                "engines quantize a checkpoint)" if dtype in LOW_BIT_DTYPES else ""))
            + (f" with one fp16 scale per {group_size} weights" if group_size else ""),
            f"KV cache in {kv_dtype}; " + ("MLA latent (r_kv + d_rope per layer and token) replicated on every TP rank"
                                           if m.mla else f"KV heads per GPU = max(g/t, 1) = {kv_heads_per_gpu(m, plan.tp)}")
            + ("; DeepSeek-V3.2 sparse MLA: the lightning indexer's key cached beside it"
               + ("; fp8, vLLM's auto for this model (--kv-dtype bf16 for 16-bit)" if kv_dtype == "fp8"
                  and accounting == "vllm-v1" else "")
               if sparse_mla(m) else ""),
            f"activations B*S*H*c with c = {c:.2f} (one layer's live values per token / H), split by TP",
            f"reserve {reserve_gib:g} GiB per GPU for CUDA context and allocator slack",
            *([f"MTP modules loaded for speculative decoding: +{counted.mtp_params:,} parameters, and their "
               f"{mtp_layers} attention layer{'s' if mtp_layers > 1 else ''}' KV cache, +{mtp_kv(1):,} B a token"
               + (" (on the last pipeline stage, counted on the busiest GPU: an upper bound under PP)"
                  if plan.pp > 1 else "")] if with_mtp else []),
        ],
        explain=[
            ("weights as shipped = " + " + ".join(f"{k} {gb(v):.2f}" for k, v in groups.items()) + f" = {gb(weights):.2f} GB"
             if shipped else f"weights = N*bytes = {params:,}*{dtype_bytes(dtype)} = {weights:,} B ({gb(weights):.2f} GB)"
             if dtype not in LOW_BIT_DTYPES else
             f"weights = the blocks' matrices at {dtype_bytes(dtype)} B" + (f" + 2 B per {group_size}" if group_size else "")
             + f", the rest at {sixteen_bit(m)} = " + " + ".join(f"{k} {gb(v):.2f}" for k, v in groups.items())
             + f" = {weights:,} B ({gb(weights):.2f} GB)"),
            _kv_explain(m, kv_dtype, kv_token - mtp_kv(1)) + (
                f"; + {mtp_layers} MTP attention layer{'s' if mtp_layers > 1 else ''} x {mtp_kv(1) // mtp_layers:,} B = "
                f"{kv_token:,} B a token" if mtp_layers else ""),
            f"KV cache = {kv_seq:,} B/sequence of {seq} tokens (local layers capped at their window"
            f"{'; + constant mixer state' if m.mixer else ''}) x {batch}"
            f" = {kv_total:,} B ({gb(kv_total):.2f} GB)",
            f"activations = B*S*H*c*bytes = {batch}*{seq}*{m.hidden_size}*{c:.2f}*{act_elem} = {activations:,} B",
            f"per GPU (TP {plan.tp}, PP {plan.pp}) = " + " + ".join(f"{k} {gib(v):.2f}" for k, v in per_gpu.items())
            + f" = {gib(per_gpu_bytes):.2f} GiB",
        ],
    )
