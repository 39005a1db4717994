"""Time of one engine step (a forward pass over decode tokens plus a prefill chunk) on one replica.

    GEMMs   = sum over the weight GEMMs [M, K] @ [K, N/t] of calc.hardware.efficiency.gemm_time:
              max(FLOPs / (peak x wave x plateau x tile quantisation), bytes / bandwidth) + launch
              (weights are read once per step whatever M: that is why batching pays)
              with a calibration that measured GEMMs (`bench MODEL --save`, `calibrate --from-runs`), each GEMM
              at its own measured fraction of peak e(F), interpolated at its FLOPs F (Calibration.interpolate):
              max(F / (peak x e(F) x SERVING_SUSTAINED), weight bytes / measured bandwidth) + launch
    attention = max(score FLOPs / (peak x e_attn), KV read by every sequence / bandwidth), e_attn the flash-attention
              default (FLASH_ATTENTION_PEAK) or the calibration's "attention" points at one layer's FLOPs;
              the decode KV read x ServingAssumptions.decode_kv_reads (calc.serving.decode_attention);
              bandwidth = HBM x the default 0.9 or the calibration's "memory" points (its largest: the copy)
    comm    = L x 2 all-reduces (ring or tree, the faster) of M x H x 2 bytes (Megatron TP, arXiv 1909.08053 sec. 3), with
              their per-step latency, on the node link or across nodes (calc.hardware.collectives); with expert
              parallelism + MoE layers x dispatch/combine (calc.serving.moe.moe_comm_s: all-to-all or all-gather +
              reduce-scatter by ServingAssumptions.dispatcher)
    MLA decode attention runs absorbed over the cached latent (calc.model.flops.mla_decode_dims)
    routing = MoE router / top-k / permute / unpermute traffic per MoE layer / bandwidth (moe_routing_s)
    step    = GEMMs + attention + routing + comm + per-step overhead (ServingAssumptions.step_overhead_s
              + step_overhead_per_seq_s x the step's sequences)
    eager (ServingAssumptions.eager: no CUDA / HIP graph; eager_prefill: every step holding prompt tokens, as vLLM V0
              runs them): step = max(forward, kernels x launch) + overhead, the host issuing every kernel (calc.serving.eager)
A calibration fitted by `calibrate --from-runs` (time_model "roofline") holds two efficiencies fitted to
whole steps: the step is then exactly the model they were fitted to (calc.hardware.fit), so `latency`
reproduces the fitted predictions:
    step    = max(FLOPs / (peak x e_c), bytes read / (HBM x e_m)) + MoE routing + comm + per-step overhead
              (routing at the uncalibrated bandwidth, comm and overhead: the fit's fixed time K, no efficiency scales them)
Pipeline parallelism: a micro-batch of B/p sequences traverses all p stages, so its step
is the TP-only step at B/p tokens plus (p-1) stage-to-stage sends; p micro-batches are in flight.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import (
    DEFAULT_COMPUTE_EFFICIENCY,
    DEFAULT_MEMORY_EFFICIENCY,
    Calibration,
    Efficiency,
    efficiency_for,
)
from calc.hardware.collectives import chain_p2p_time, fastest_allreduce_time
from calc.hardware.efficiency import (
    GEMM_LAUNCH_S,
    collective_efficiency,
    flash_attention_rate,
    gemm_plateau,
    gemm_time,
    measured_pcie_factor,
    memory_efficiency,
)
from calc.hardware.peaks import peak_tflops
from calc.memory.kv import kv_bytes_read, kv_cache_bytes_for_tokens, state_bytes_per_request
from calc.model.flops import attention_dims, indexer_pair_flops, mixer_scan_flops, mla_decode_dims
from calc.model.layers import attention_layers, decode_keys_read, keys_seen, sparse_layers
from calc.model.layers import prefill_keys as prompt_keys
from calc.model.moe_routing import PERMUTE_BYTES_PER_COPY, moe_routing_bytes
from calc.model.parallel import tp_activation_bytes, tp_shard
from calc.serving.act_quant import act_quant_seconds
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.eager import forward_kernels, launch_s
from calc.serving.fp8_fallback import UNFUSED_DQ_BYTES
from calc.serving.gemms import model_gemms
from calc.serving.moe import (
    attention_ranks,
    expert_gemm_rate,
    expert_row_tile,
    moe_comm_s,
    moe_serving_rate,
)
from calc.serving.weights import weight_format
from calc.serving.windows import model_as_run
from calc.specs import GPUSpec, ModelSpec
from calc.specs.system import SystemSpec
from calc.units import TERA

ACT_BYTES = 2  # activations and all-reduce payloads in 16 bits


class StepTime(BaseModel):
    tokens: int
    flops: float
    bytes_read: float
    gemm_s: float
    compute_s: float
    memory_s: float
    comm_s: float
    overhead_s: float
    total_s: float
    bound: str
    launch_s: float = 0.0  # eager: the host's kernel launches (calc.serving.eager); 0 with a graph
    attention_s: float = 0.0  # attention: the longer of its compute and its KV / state read
    attention_flops: float = 0.0  # of ``flops``, the attention's (run at the attention dtype's peak, not the GEMMs')
    routing_s: float = 0.0  # MoE routing and permutation (calc.serving.moe_routing)


# A calibration's GEMM efficiency is what the kernel reached in isolation, as a serving step runs it (one
# forward, no optimizer or gradient traffic beside it): used as measured, unlike the training step's derate
# (calc.hardware.efficiency.SUSTAINED_FRACTION).
SERVING_SUSTAINED = 1.0
TILE = 128  # output tile of one CTA (as calc.hardware.efficiency's tile quantisation)
_SCALED: dict[tuple[int, float], tuple[GPUSpec, GPUSpec]] = {}


SPLIT_K_MIN = 1024  # K per split when a GEMM is split along K to fill the SMs (cuBLAS split-K heuristics)


def experts_touched(experts: int, top_k: int, tokens: float) -> float:
    """Expected distinct experts a step's ``tokens`` tokens route to, each picking ``top_k`` of ``experts``:
        E x (1 - (1 - k/E)^B)
    One token misses a given expert with probability 1 - k/E (k of E chosen uniformly), B independent tokens
    with (1 - k/E)^B: the expectation of the occupancy (balls-into-bins) problem (Feller, "An Introduction to
    Probability Theory and Its Applications", vol. I, ch. II.5 and IV.2). B = 1 gives exactly k (only the
    top-k experts' weights are read), large B all E. Uniform routing is what the load-balancing loss trains
    toward (Switch Transformer, Fedus et al. 2021, sec. 2.2); real routers are somewhat skewed, which touches
    fewer experts, so this is the upper end at small B.

    >>> experts_touched(8, 2, 1), experts_touched(8, 2, 2), round(experts_touched(8, 2, 64), 3)
    (2.0, 3.5, 8.0)
    """
    if top_k >= experts:
        return float(experts)
    return experts * (1 - (1 - top_k / experts) ** tokens)


def wave_efficiency(gpu: GPUSpec, m: float, n: float, k: float, groups: float = 1) -> float:
    """Share of the SMs a GEMM's CTAs keep busy: CTAs / (waves x SMs), CTAs = ceil(M/128) x ceil(N/128)
    x splits, split-K up to K/1024 ways while CTAs < SMs (NVIDIA "Matrix Multiplication Background
    User's Guide", wave quantisation). At serving token counts (M of a few hundred, N or K sliced by TP)
    a GEMM fills one partial wave: the small-GEMM inefficiency. ``groups`` > 1: a grouped GEMM (the routed
    experts) launches every group's tiles in one kernel (vLLM fused_moe's grid is the sum of the experts'
    tiles, CUTLASS / DeepGEMM grouped GEMMs a persistent scheduler over all groups), so the CTAs of all
    ceil(groups) GEMMs share the waves; no split-K.

    >>> wave_efficiency(type("G", (), {"sms": 132})(), 256, 256, 2048, groups=33)
    1.0
    """
    if not gpu.sms or m < TILE:
        return 1.0  # below one tile of rows the kernels are GEMV / split-K: streaming-bound, SMs all busy
    tiles = math.ceil(m / TILE) * math.ceil(n / TILE)
    if groups > 1:
        ctas = tiles * math.ceil(groups)
        return ctas / (math.ceil(ctas / gpu.sms) * gpu.sms)
    ctas = tiles * max(min(math.ceil(gpu.sms / tiles), int(k // SPLIT_K_MIN)), 1)
    return ctas / (math.ceil(ctas / gpu.sms) * gpu.sms)


def _at_wave(gpu: GPUSpec, wave: float) -> GPUSpec:
    """The GPU with its dense peaks scaled by the wave efficiency (gemm_time then sees the busy SMs only)."""
    key = (id(gpu), round(wave, 4))
    hit = _SCALED.get(key)
    if hit is None or hit[0] is not gpu:
        peaks = {k: v * key[1] for k, v in gpu.datasheet_peak_tflops.items()}
        hit = _SCALED[key] = (gpu, gpu.model_copy(update={"datasheet_peak_tflops": peaks}))
    return hit[1]


def serving_bandwidth(gpu: GPUSpec, a: ServingAssumptions, calibration: Any = None) -> float:
    """Bytes/s a serving step streams weights and KV at: HBM x --hbm-efficiency (ServingAssumptions.hbm_efficiency),
    else the calibration's measured fraction, else the generation's (calc.hardware.efficiency.memory_efficiency)."""
    return gpu.hbm_tb_s * TERA * (a.hbm_efficiency or memory_efficiency(gpu, calibration))


def weight_gemm_time(m: ModelSpec, gpu: GPUSpec, tokens: int, logit_rows: int, tp: int, dtype: str | None,
                     calibration: Any = None, ep: int = 1,
                     a: ServingAssumptions | None = None, experts_only: bool = False) -> tuple[float, float, float]:
    """(seconds, FLOPs, weight bytes read) of every weight GEMM of one step on one TP rank: each GEMM
    [M, K] @ [K, N/t] timed by calc.hardware.efficiency.gemm_time (tile quantisation, roofline, launch).
    Routed experts: experts_touched(E, k, M) distinct experts read, each seeing M x k / touched tokens (at
    M = 1 the top-k alone); the head sees only the rows whose logits are sampled. Expert parallelism over
    ``ep`` = d x t ranks (calc.serving.moe: d data-parallel attention groups of t, each with ``tokens``): the
    d x M x k token-expert pairs over the experts_touched(E, k, d x M) experts they reach, 1/ep of them whole
    on this rank, the busiest rank seeing expert_imbalance x the mean tokens per expert. TP slices every other
    matrix (and the experts without EP) as calc.model.parallel.tp_shard (column / row parallel, the latent
    projections and router whole). A routed expert runs as a grouped GEMM on the dense GEMM's roofline with a
    rate on each side, both times the fitted moe_serving_rate (calc.serving.moe.moe_serving_rate):

        t = max(compute / (r_c x msr), weights read / (grouped_gemm_efficiency x msr)) + launch

    r_c = calc.serving.moe.expert_gemm_rate (grouped_gemm_efficiency below 128 tokens per expert, the format's
    grouped rate above); the weight stream is at grouped_gemm_efficiency at every size, so the time is continuous
    where the compute rate changes (one rate on the whole time jumped there: Mixtral 8x7B TP4 TPOT 23.0 / 19.9 /
    23.2 ms at batch 511 / 512 / 513). Below 128 tokens the rows are padded to the fused-MoE kernel's row tile,
    not 128 (calc.serving.moe.expert_row_tile). A dense fp8 (W8A8) GEMM first quantizes its
    [M, K] bf16 input (calc.serving.act_quant: M x K x ServingAssumptions.fp8_act_quant_bytes / bandwidth).
    ``dtype`` None: each group's weights as the checkpoint ships them (calc.serving.weights). ``experts_only``: the
    routed experts' GEMMs alone (the MoE layer's share, as per-op kernel tables time it).
    A calibration with GEMM points: each GEMM at its measured efficiency (module docstring), no wave or tile
    penalty on top (the measurement has them), never faster than streaming its weights at the measured bandwidth."""
    a = a or DEFAULT_ASSUMPTIONS
    fmt = weight_format(m, gpu, dtype)
    measured = _measured(calibration, "gemm", 1.0) is not None
    bandwidth = serving_bandwidth(gpu, a, calibration)
    seconds = flops = moved = 0.0
    for g in model_gemms(m)[0]:
        rows = logit_rows if g.name == "lm_head" else tokens
        if rows <= 0 or (experts_only and not g.expert):
            continue
        sharded = g.expert and ep > 1
        group = attention_ranks(tp, ep) if sharded else 1  # attention groups feeding the experts
        pairs = rows * group * g.used  # token-copy products over the EP group
        touched = experts_touched(g.copies, g.used, rows * group)
        per = pairs / touched  # rows each touched copy multiplies
        if sharded:  # whole experts, 1/ep of them here; the busiest rank gets the imbalance
            touched /= ep
            per *= a.imbalance(ep)
            k, n = g.k, g.n
        else:
            k, n = tp_shard(g.name, g.k, g.n, tp)
        seen, gemm_dtype = fmt.gemm(gpu, g.component, per)
        weights = touched * k * n * fmt.elem(g.component)
        rc = rs = 1.0  # a grouped GEMM: the fused-MoE kernel's rates against a dense GEMM (calc.serving.moe)
        if g.expert:
            msr = moe_serving_rate(gpu, gemm_dtype, a)
            rc = expert_gemm_rate(per, a, gemm_dtype, gpu.arch, fmt.int4_experts, min(k, n)) * msr
            rs = a.grouped_gemm_efficiency * msr
        if measured:
            t = max(gemm_time(seen, per, n, k, gemm_dtype, calibration, batch=touched, sustained=SERVING_SUSTAINED,
                              compute_rate=rc, plateau=a.gemm_plateau, hbm=a.hbm_efficiency),
                    weights / bandwidth / rs + GEMM_LAUNCH_S)
        else:
            wave = wave_efficiency(gpu, per, n, k, touched if g.expert else 1)
            if g.expert and not (fmt.weight_only and g.component in fmt.storage):  # Marlin's 16-row tile is in seen
                wave *= expert_row_tile(per, rows * group, g.copies)
            t = gemm_time(_at_wave(seen, wave), per, n, k, gemm_dtype, calibration, batch=touched, compute_rate=rc,
                          memory_rate=rs, plateau=a.gemm_plateau, hbm=a.hbm_efficiency)
        if not g.expert and gemm_dtype.startswith("fp8"):
            if not fmt.weight_only:  # W8A8: the bf16 input cast first (calc.serving.act_quant)
                t += act_quant_seconds(per, k, bandwidth, a.fp8_act_quant_bytes)
            if a.fp8_unfused_dequant:  # fp32 out + rescale passes (fp8_fallback)
                t += UNFUSED_DQ_BYTES * touched * per * n / bandwidth
        seconds += g.layers * t
        flops += g.layers * 2 * touched * per * k * n
        moved += g.layers * weights
    return seconds, flops, moved


def _measured(calibration: Any, op_kind: str, size: float) -> float | None:
    """The calibration's efficiency for an op of this kind and size, None without one (or without such points)."""
    interpolate = getattr(calibration, "interpolate", None)
    return interpolate(op_kind, size) if interpolate is not None else None


def calibrated_gpu(gpu: GPUSpec, dtype: str, calibration: Calibration | None,
                   a: ServingAssumptions | None = None) -> tuple[GPUSpec, Any, Efficiency]:
    """(GPU, calibration hook, summary): the calibration (checked against this GPU and dtype by
    efficiency_for) is handed to the step as is; the step reads it op by op, by size (module docstring). Without
    one, the generation's GEMM plateau and HBM efficiency, or ``a``'s given ones (--gemm-plateau, --hbm-efficiency)."""
    eff = efficiency_for(gpu, dtype, calibration)
    for field, value, kind in (("--gemm-plateau", a and a.gemm_plateau, "gemm"), ("--hbm-efficiency", a and a.hbm_efficiency,
                                                                                  "memory")):
        if value and calibration is not None and (calibration.ops.get(kind) or calibration.time_model == "roofline"):
            # the measured curve times those ops (a roofline fit, every op)
            raise LLMCalcError(field, f"the --calibration file's measured {kind} points set that rate, so {field} would "
                                      "change nothing: give one of them")
    # the rates a kind runs at where nothing measured it: the one given, else the generation's
    plateau, hbm = (a and a.gemm_plateau) or gemm_plateau(gpu, dtype), (a and a.hbm_efficiency) or memory_efficiency(gpu)
    if calibration is None:
        given = [f for f, v in (("--gemm-plateau", a and a.gemm_plateau), ("--hbm-efficiency", a and a.hbm_efficiency)) if v]
        return gpu, None, Efficiency(compute=plateau, memory=hbm, source=(
            f"defaults (calc.hardware.efficiency): GEMM plateau {plateau:.0%} of peak on {gpu.arch}, HBM {hbm:.0%}"
            + (f" ({' and '.join(given)} given)" if given else "")))
    if calibration.time_model == "roofline":
        return gpu, calibration, eff.model_copy(update={"source": (
            f"{eff.source}; fitted to whole steps (calibrate --from-runs): step = max(FLOPs / (peak x {eff.compute:.3f}), "
            f"bytes / (bandwidth x {eff.memory:.3f})) + communication + overhead")})
    attention = "measured attention points by FLOPs" if calibration.interpolate("attention", 1.0) else "flash-attention default"
    source = (f"{eff.source}; serving: each weight GEMM at the measured fraction of peak at its own FLOPs "
              f"(sustained {SERVING_SUSTAINED:g}: no training derate), never faster than streaming its weights; "
              f"attention: {attention}; KV and weight streaming at {memory_efficiency(gpu, calibration):.0%} of bandwidth"
              + ("; collectives at the measured all-reduce efficiency, the PCIe factor not applied on top (the link "
                 "was measured: calc.hardware.efficiency.measured_pcie_factor)" if measured_pcie_factor(calibration)
                 else ""))
    # a kind the file did not measure runs at the generation's rate (or the one given): say that one, not a default
    unmeasured = {**({} if calibration.ops.get("gemm") else {"compute": plateau}),
                  **({} if calibration.ops.get("memory") else {"memory": hbm})}
    if unmeasured:
        source += "; not measured, at " + ", ".join(f"{k} {v:.0%}" for k, v in unmeasured.items())
    return gpu, calibration, eff.model_copy(update={"source": source, **unmeasured})


def attention_dtype(act: str, kv_dtype: str, gpu: GPUSpec | None = None) -> str:
    """The dtype the attention kernel's tensor-core math runs in: the KV cache's, not the weights'. vLLM's
    FlashAttention backend (vllm/v1/attention/backends/flash_attn.py) quantizes the query to fp8 and runs FA3's fp8
    path (q/k/v descales) only when kv_cache_dtype is fp8; with a 16-bit cache (the ``auto`` default, also for an
    FP8 weight checkpoint) Q K^T and P V run in 16 bits. TensorRT-LLM's fp8 context FMHA likewise needs the fp8 KV
    cache. So: fp8 KV -> fp8, else the 16-bit activation dtype (bf16 for fp8 / int8 / int4 weights). On a ``gpu``
    without fp8 tensor cores (A100) an fp8 cache is stored in fp8 and dequantized in the kernel, whose math runs in
    16 bits (vLLM's paged attention / FlashInfer on sm80 with kv_cache_dtype fp8).

    >>> attention_dtype("fp8", "bf16"), attention_dtype("fp8", "fp8"), attention_dtype("fp16", "fp16")
    ('bf16', 'fp8', 'fp16')
    >>> from calc.sources.catalog import load_gpu
    >>> attention_dtype("bf16", "fp8", load_gpu("a100")), attention_dtype("bf16", "fp8", load_gpu("h100"))
    ('bf16', 'fp8')
    """
    if kv_dtype.startswith("fp8") and (gpu is None or "fp8" in gpu.datasheet_peak_tflops):
        return "fp8"
    return act if act in ("bf16", "fp16", "fp32") else "bf16"


def _attention_rate(gpu: GPUSpec, act: str, calibration: Any, layer_flops: float) -> float:
    """FLOP/s of one layer's attention: the calibration's "attention" efficiency at that layer's FLOPs
    times the peak, else the flash-attention default (calc.hardware.efficiency.flash_attention_rate)."""
    measured = _measured(calibration, "attention", layer_flops)
    return peak_tflops(gpu, act) * TERA * measured if measured else flash_attention_rate(gpu, act)


def prefill_span(prompt: float, causal: bool = True) -> float:
    """Keys one prompt token attends on average: (P + 1)/2 for a causal prefill (token i sees i keys, the
    mean of 1..P), what every engine and torch's SDPA with is_causal run; P when every token sees the whole
    prompt (non-causal, an upper bound)."""
    return (prompt + 1) / 2 if causal else prompt


def decode_context(prompt: int, output: int) -> int:
    """The context of a request's mean decode step: its O - 1 decode steps attend P + 1 ... P + O - 1 keys
    (the first token comes out of the prefill), mean P + O/2, held in whole tokens: P + ceil(O/2)
    (O = 1: P + 1, the one decode step `validate` times)."""
    return prompt + (output + 1) // 2


def decode_range(prompt: int, output: int) -> tuple[int, int]:
    """The contexts of a request's decode steps, (P + 1, P + O - 1) (decode_context is their mean); (P + 1, P + 1)
    for O <= 2. Chunked-attention layers average their reads over it (calc.model.layers.LayerAttention.keys_read)."""
    return prompt + 1, prompt + max(output - 1, 1)


def request_seconds(ttft_s: float, tpot_s: float, output: int) -> float:
    """A request's time from arrival at the engine to its last token (end-to-end latency; a slot's busy time):
        e2e = TTFT + (O - 1) x TPOT
    the prefill step samples the first output token, so O - 1 decode steps follow (vLLM's benchmark_serving
    defines TPOT = (e2e - TTFT) / (O - 1)). One formula for `latency`'s e2e and `serve`'s service time.

    >>> request_seconds(0.5, 0.02, 101)
    2.5
    """
    return ttft_s + (output - 1) * tpot_s


def prompt_chunks(tokens: int, budget: int | None) -> list[tuple[int, int]]:
    """(count, tokens) of the engine steps ``tokens`` prompt tokens run in under a per-step token ``budget``
    (a chunked engine's max_num_batched_tokens, less the decode tokens sharing the step): floor(T / C) full chunks,
    then one chunk of the T mod C left over, billed for its own tokens (vLLM V1's and SGLang's schedulers take a
    prompt's last chunk as it is); ``budget`` None or >= T: one step of T. One rule for `latency`'s TTFT and
    `serve`'s (a 12,000-token prompt under 8,192 is a step of 8,192 and one of 3,808, not two of 8,192).

    >>> prompt_chunks(12000, 8192)
    [(1, 8192), (1, 3808)]
    >>> prompt_chunks(16384, 8192), prompt_chunks(500, None)
    ([(2, 8192)], [(1, 500)])
    """
    size = budget if budget and budget < tokens else tokens
    full, rest = divmod(tokens, size)
    return [(n, t) for n, t in ((full, size), (1 if rest else 0, rest)) if n]


def pipelined(times: list[float], counts: list[int], pp: int) -> float:
    """When the last of a batch's prefill steps leaves a pipeline of ``pp`` identical stages, each step taking
    time / pp on a stage: (sum of count x time + (pp - 1) x the longest time) / pp. One stage: the steps' sum. One
    rule for `latency`'s TTFT and `serve`'s at batch 1 (a prompt's chunks, each scheduled as the one before leaves the
    first stage: vLLM V1 advances a request's computed tokens at schedule time, v1/core/sched/scheduler.py
    _update_after_schedule, "allowing us to schedule the prefill request again immediately").

    >>> pipelined([0.5], [2], 2)   # two equal micro-batches on 2 stages: 0.5 x (2 + 2 - 1) / 2
    0.75
    """
    return (sum(n * t for n, t in zip(counts, times, strict=True)) + (pp - 1) * max(times)) / pp


def _system(gpu: GPUSpec, a: ServingAssumptions) -> SystemSpec:
    """The node this GPU ships in (system_specs/), else one built from the GPU's own link figure."""
    from calc.sources.catalog import system_for_gpu

    found = system_for_gpu(gpu)
    if found is not None:
        return found
    link = gpu.interconnect_gb_s / 2 if gpu.interconnect_gb_s > 0 else a.internode_gb_s
    # a GPU whose own link is at most PCIe Gen5 x16 (128 GB/s both ways: L40, A10, L20, RTX 6000 Ada, T4) has no NVLink:
    # its node is a PCIe server, priced as pcie-l40s is (SystemSpec.pcie_link: the fitted PCIe collective factor)
    pcie = 0 < gpu.interconnect_gb_s <= PCIE5_X16_GB_S
    return SystemSpec(name=f"{gpu.name}-node", gpu=gpu.name, gpus_per_node=a.gpus_per_node, intra_node_gb_s=link,
                      inter_node_gb_s=a.internode_gb_s,
                      **({"intra_node_link": f"PCIe (the GPU's own {gpu.interconnect_gb_s:g} GB/s link, no NVLink)",
                          "intra_node_latency_s": PCIE_LATENCY_S} if pcie else {}))


PCIE5_X16_GB_S = 128  # PCIe Gen5 x16 both directions (PCI-SIG: 32 GT/s x 16 lanes ~ 63 GB/s each way)
PCIE_LATENCY_S = 5e-6  # the per-step latency every PCIe node type of system_specs/ takes (pcie-l40s, pcie-h100 ...)


# Bytes per element of each routed copy an all-gather-fed rank moves (ServingAssumptions.moe_permute_scope):
# (over every copy of the EP x T gathered rows, over the copies routed to this rank's experts). Each sums to
# PERMUTE_BYTES_PER_COPY (6: write the copy, write its expert output, read it back to sum), so at EP 1 all are the same.
MOE_PERMUTE_SCOPES: dict[str, tuple[float, float]] = {
    "gathered": (PERMUTE_BYTES_PER_COPY, 0.0),
    "zero-fill": (4.0, PERMUTE_BYTES_PER_COPY - 4.0),
    "local": (0.0, PERMUTE_BYTES_PER_COPY),
}
DEEPGEMM_MIN_ROWS = 128  # vLLM _valid_deep_gemm_shape: M >= get_mk_alignment_for_contiguous_layout()[0] (128)
DEEPGEMM_ARCHS = ("Hopper", "Blackwell")  # DeepGEMM's sm90 / sm100 kernels


def permute_scope(a: ServingAssumptions, gathered_rows: float, deepgemm: bool) -> str:
    """The MOE_PERMUTE_SCOPES row an all-gather-fed rank runs: ServingAssumptions.moe_permute_scope, with vLLM's
    "deepgemm" resolved as vLLM's fused_experts does (vllm/model_executor/layers/fused_moe/fused_moe.py fused_experts:
    DeepGEMM when allowed (VLLM_USE_DEEP_GEMM, block-fp8 experts), N > 512 and _valid_deep_gemm(M >= 128 rows),
    else the Triton kernels): "local" for block-scaled fp8 experts on Hopper / Blackwell at >= 128 gathered rows,
    "zero-fill" otherwise.

    >>> from calc.serving.assumptions import ServingAssumptions
    >>> a = ServingAssumptions(moe_permute_scope="deepgemm")
    >>> permute_scope(a, 128, True), permute_scope(a, 127, True), permute_scope(a, 4096, False)
    ('local', 'zero-fill', 'zero-fill')
    """
    if a.moe_permute_scope != "deepgemm":
        return a.moe_permute_scope
    return "local" if deepgemm and gathered_rows >= DEEPGEMM_MIN_ROWS else "zero-fill"


def moe_routing_s(m: ModelSpec, tokens: int, tp: int, ep: int, bandwidth: float,
                  a: ServingAssumptions | None = None, deepgemm: bool = False) -> float:
    """Seconds of every MoE layer's router, top-k and permute / unpermute on one rank (memory-bound kernels beside
    the grouped GEMM; bytes from calc.model.moe_routing, dropless: capacity factor 1):
        (L - L_dense) x moe_routing_bytes(T_rank, copy bytes c) / (HBM x memory efficiency)
    T_rank: the rows this rank routes: the group's ``tokens`` under TP alone (vLLM's fused_moe routes and permutes
    every token on every TP rank), tokens / t with expert parallelism (each TP rank of a data-parallel attention
    group dispatches its 1/t share, as calc.serving.moe.a2a_s counts; c = 6 B); EP x tokens / t when the experts
    are fed by an all-gather (ServingAssumptions.dispatcher "allgather" or "naive": calc.serving.moe
    allgather_reducescatter_s / naive_broadcast_s). The router / top-k (E x 12 B) and the output write (H x 2 B)
    then cover every gathered row, and of the 6 B per element of a routed copy g cover every gathered copy and l
    only the copies routed to this rank's E / EP experts (ServingAssumptions.moe_permute_scope, MOE_PERMUTE_SCOPES;
    ``deepgemm``: the experts are block-scaled fp8, which vLLM runs on DeepGEMM: permute_scope):
        c = g + l / EP
      local     (0, 6)  TensorRT-LLM's CUTLASS MoE (cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu
                        @ 000dea27: fusedBuildExpertMapsSortFirstTokenKernel sorts experts outside
                        [start_expert, end_expert) past expert_first_token_offset[num_experts_per_node];
                        expandInputRowsKernel copies only permuted rows below that count; under all-gather +
                        reduce-scatter finalizeMoeRoutingKernelLauncher runs finalizeMoeRoutingKernel, one block per
                        gathered row, which skips non-local experts (reads local copies only) and writes every row,
                        "must fill invalid output tokens with zeros"); vLLM's DeepGEMM experts (deep_gemm_moe.py:
                        ep_scatter copies only local pairs, ep_gather sums them into each gathered row's output).
      zero-fill (4, 2)  vLLM's Triton fused_experts_impl (fused_moe.py, current main): moe_align_block_size(...,
                        expert_map, ignore_invalid_experts=True) hands the GEMMs only local (token, expert) pairs and
                        they read A rows in place, but ``if expert_map is not None: intermediate_cache3.zero_()``
                        writes [M, k, H] (2 B every copy), ops.moe_sum reads it all (2 B every copy) and the w2 GEMM
                        writes the local copies (2 B). SGLang's fused_moe_triton (python/sglang/srt/layers/moe/
                        fused_moe_triton/fused_moe.py, adapted from vLLM a6221a14): fused_moe_kernel with filter_expert
                        writes zeros for every non-local block (write_zeros_to_output) and moe_sum_reduce reads every
                        [M, k, H] copy: 4 B every copy, within 2 / EP B of this row.
      deepgemm          vLLM's choice between the two (permute_scope).
      gathered  (6, 0)  every gathered copy permuted and read back: the upper bound this term priced before; no engine
                        read here runs it.
    Not counted, as for dense MLPs: the activation (silu_and_mul), which the Triton kernels run over all M x k rows of
    the w1 output ([M x k, 2I] read, [M x k, I] written) local or not, and SGLang's zero write of the non-local w1
    rows. TensorRT-LLM routes before its all-gather (top-k over T, not EP x T: E x 12 B per row, under 1% here).
    Plus, per MoE layer, the fixed latency of the fused-MoE kernel chain (ServingAssumptions.moe_kernel_floor_s)."""
    if not m.moe or tokens <= 0:
        return 0.0
    a = a or DEFAULT_ASSUMPTIONS
    per_rank = tokens / tp if ep > 1 else tokens
    copy_bytes = PERMUTE_BYTES_PER_COPY
    if ep > 1 and a.dispatcher in ("allgather", "naive"):
        per_rank *= ep
        every, local = MOE_PERMUTE_SCOPES[permute_scope(a, per_rank, deepgemm)]
        copy_bytes = every + local / ep
    layers = m.num_layers - m.moe.num_dense_layers
    return layers * (moe_routing_bytes(m, per_rank, copy_bytes=copy_bytes) / bandwidth + a.moe_kernel_floor_s)


def runs_deepgemm(gpu: GPUSpec, compute_dtype: str, a: ServingAssumptions) -> bool:
    """Block-scaled fp8 experts on a GPU DeepGEMM serves (DEEPGEMM_ARCHS): what vLLM's Fp8MoEMethod hands to
    DeepGEMM (allow_deep_gemm: VLLM_USE_DEEP_GEMM, default "1" in current vllm/envs.py, and a block-quantised
    checkpoint; ServingAssumptions.fp8_moe_scales "block")."""
    return compute_dtype.startswith("fp8") and a.fp8_moe_scales == "block" and gpu.arch in DEEPGEMM_ARCHS


def allreduce_s(system: SystemSpec, payload: float, tp: int, calibration: Any = None) -> float:
    """One TP all-reduce: the faster of ring and tree, as NCCL's tuner (and vLLM's custom all-reduce for
    small messages) picks per size; at decode sizes the per-step latency decides."""
    if tp == 1:
        return 0.0
    eff = collective_efficiency(calibration)
    return fastest_allreduce_time(system, payload, tp, eff, measured_pcie_factor(calibration))


def step_overhead(a: ServingAssumptions, prefill_tokens: int, seqs: int = 0) -> float:
    """Host seconds between two forward passes that a step of ``seqs`` sequences carries:
    step_overhead_s + step_overhead_per_seq_s x seqs (ServingAssumptions: a fixed part and a part per scheduled
    sequence, both read per engine family from calc/data/fitted_defaults.json: the fixed part fitted by
    benchmarks/fit_corpus.py, the per-sequence part 0 there, an input), or, for a decode-only step under vLLM V0's
    multi-step scheduling (``--num-scheduler-steps N``), that over N.

    Per sequence: vLLM V1's host step loops over the step's requests in Scheduler.schedule (vllm/v1/core/sched/
    scheduler.py), GPUModelRunner._prepare_inputs and _update_states (vllm/v1/worker/gpu_model_runner.py), the sampler
    and the output processor, so a step's host time grows with its batch; a fixed part alone, fitted on full-batch
    runs, would put a large batch's host time on every batch-1 step.

    Multi-step, source: vLLM V0 (vllm-project/vllm at cb3b2b9b, v0.6.3.dev, as mirrored in ROCm/vllm).
    vllm/engine/llm_engine.py LLMEngine.step skips Scheduler.schedule() while the scheduled sequence groups have
    remaining steps (_has_remaining_steps, "Skip the scheduler if there are any remaining steps in the seq groups");
    vllm/worker/multi_step_worker.py _get_driver_input_and_broadcast runs prepare_model_input only on the first
    step (is_first_multi_step) and afterwards advances the cached input on the GPU
    (vllm/worker/multi_step_model_runner.py _advance_step; its wait_previous_step is a stream-side Event.wait, not a
    host block). A prefill runs as an ordinary single step. The forward itself (its kernels, and every eager launch)
    is unchanged: multi-step amortises the scheduler, not the launches (calc.serving.eager).

    >>> from calc.serving.assumptions import ServingAssumptions
    >>> a = ServingAssumptions(step_overhead_s=3e-3, step_overhead_per_seq_s=0.0, scheduler_steps=15)
    >>> step_overhead(a, 0), step_overhead(a, 128)
    (0.0002, 0.003)
    >>> b = ServingAssumptions(step_overhead_s=1e-3, step_overhead_per_seq_s=10e-6)
    >>> round(step_overhead(b, 0, 100), 9)
    0.002
    """
    total = a.step_overhead_s + a.step_overhead_per_seq_s * seqs
    return total if prefill_tokens > 0 else total / a.scheduler_steps


def _indexer_step_flops(m: ModelSpec, decode_queries: int, decode_context: float, prefill_tokens: int,
                        prefill_context: float) -> float:
    """A step's DSA indexer FLOPs on one rank: 2 x n_i x d_i per (query, cached key) pair on every sparse layer, the
    decode queries against decode_context keys and the prompt tokens against their mean prefill_context (0 without
    DSA; calc.model.flops.indexer_flops counts the same exactly per sequence)."""
    return indexer_pair_flops(m) * (decode_queries * decode_context + prefill_tokens * prefill_context)


def step_time(
    m: ModelSpec, gpu: GPUSpec, a: ServingAssumptions, *, tp: int = 1, pp: int = 1, dtype: str | None = "bf16",
    kv_dtype: str | None = None, decode_seqs: int = 0, decode_context: float = 0, prefill_tokens: int = 0,
    prefill_prompt: float = 0, prefill_causal: bool = True, prefill_seqs: int = 1, calibration: Any = None,
    system: SystemSpec | None = None, ep: int = 1, queries_per_seq: int = 1, decode_contexts: tuple[int, int] = (0, 0),
) -> StepTime:
    """One step of ``decode_seqs`` sequences (each attending ``decode_context`` keys) plus
    ``prefill_tokens`` prompt tokens of ``prefill_seqs`` sequences (prompts of ``prefill_prompt`` tokens), on a TP
    group of ``tp`` GPUs (PP: pass the micro-batch; the p - 1 stage sends are added here). ``queries_per_seq`` > 1:
    each decoding sequence verifies that many tokens (speculative decoding) while reading its KV once. ``dtype`` None: weights as shipped
    (calc.serving.weights); activations, attention and the default KV then in the checkpoint dtype.
    ``decode_contexts``: the first and last context of the request's decode steps (decode_range), over which a
    chunked-attention layer's reads are averaged when it reads only its current chunk (a.chunked_decode "chunk");
    (0, 0): at decode_context. With a.chunked_decode "window" it reads min(context, chunk), as a sliding window.
    ``prefill_prompt`` P and ``prefill_causal``: a prompt token attends the mean span s = prefill_span(P, causal) keys
    ((P + 1)/2 causal, P when every token sees the whole prompt), the span the KV read and the indexer take; causal,
    its attention keys are the exact mean over its P queries, layer by layer (calc.model.layers.prefill_keys: a
    sliding-window layer's min(i + 1, w) averaged, not min of the mean span)."""
    m = model_as_run(m, a.attention_windows)  # the windows the engine applies (calc.serving.windows)
    act = weight_format(m, gpu, dtype).act_dtype
    system = system or _system(gpu, a)
    tokens = decode_seqs * queries_per_seq + prefill_tokens
    rows = decode_seqs * queries_per_seq + (prefill_seqs if prefill_tokens else 0)
    gemm_s, gemm_flops, weight_bytes = weight_gemm_time(m, gpu, tokens, rows, tp, dtype, calibration, ep, a)
    d_qk, d_v = attention_dims(m)
    # keys one query sees, summed over the layers: L x context when every layer is full; a sliding /
    # chunked layer reaches at most its window (calc.model.layers), and holds at most that much KV.
    layers = attention_layers(m)
    chunk_reads = decode_contexts if a.chunked_decode == "chunk" else None  # else a chunked layer reads min(n, c)
    prefill_context = prefill_span(prefill_prompt, prefill_causal)
    prefill_keys = prompt_keys(m, prefill_prompt) if prefill_causal else keys_seen(m, prefill_context)
    decode_keys = keys_seen(m, decode_context) if chunk_reads is None else decode_keys_read(m, decode_context, *chunk_reads)
    d_qk_dec, d_v_dec = mla_decode_dims(m) or (d_qk, d_v)  # MLA decodes absorbed over the latent
    attn_flops = 2 * m.num_heads * ((d_qk_dec + d_v_dec) * decode_seqs * queries_per_seq * decode_keys
                                    + (d_qk + d_v) * prefill_tokens * prefill_keys) / tp
    # state-space / linear-attention layers: recurrent update per decoded token, chunked scan over the prompt
    attn_flops += (mixer_scan_flops(m, decode_seqs * queries_per_seq, decode=True) + mixer_scan_flops(m, prefill_tokens)) / tp
    # DeepSeek-V3.2's lightning indexer scores every cached key per query (calc.model.flops.indexer_flops), its weights
    # replicated on every TP rank (vLLM's Indexer: ReplicatedLinear wq_b / wk), in fp8 (DeepGEMM fp8_mqa_logits): timed
    # at the attention rate, halved on a GPU with fp8 tensor cores
    index_flops = _indexer_step_flops(m, decode_seqs * queries_per_seq, decode_context, prefill_tokens, prefill_context)
    index_scale = 0.5 if "fp8" in gpu.datasheet_peak_tflops else 1.0
    kv_dtype = kv_dtype or act
    ctx = round(decode_context)
    held = kv_cache_bytes_for_tokens(m, ctx, kv_dtype, tp) if chunk_reads is None and not sparse_layers(m) \
        else kv_bytes_read(m, ctx, kv_dtype, tp, *(chunk_reads or (0, 0)))  # a DSA layer reads its top-k latents
    kv_read = decode_seqs * held if decode_seqs else 0
    kv_read *= a.decode_kv_reads  # a kernel reading each KV head once per query head (calc.serving.decode_attention)
    kv_read += (decode_seqs + (prefill_seqs if prefill_tokens else 0)) * state_bytes_per_request(m, tp)  # constant state read
    if prefill_tokens:  # each prompt's earlier KV once, plus the chunk's own new KV
        kv_read += prefill_seqs * kv_cache_bytes_for_tokens(m, round(prefill_context), kv_dtype, tp)
        kv_read += kv_cache_bytes_for_tokens(m, prefill_tokens, kv_dtype, tp)
    bandwidth = serving_bandwidth(gpu, a, calibration)
    attn_rate = _attention_rate(gpu, attention_dtype(act, kv_dtype, gpu), calibration, attn_flops / len(layers))
    attn_compute = (attn_flops + index_scale * index_flops) / attn_rate if attn_flops else 0.0
    attn_flops += index_flops
    attn_memory = kv_read / bandwidth
    payload = tp_activation_bytes(m, tokens, ACT_BYTES)
    comm = m.num_layers * 2 * allreduce_s(system, payload, tp, calibration)
    if ep > 1 and m.moe:  # dispatch + combine (or all-gather + reduce-scatter) per MoE layer (calc.serving.moe)
        fmt = weight_format(m, gpu, dtype)
        x_bytes = 1 if fmt.compute_dtype.startswith("fp8") and a.fp8_moe_scales == "tensor" else ACT_BYTES
        comm += (m.num_layers - m.moe.num_dense_layers) * moe_comm_s(m, system, a, tokens, tp, ep, x_bytes, calibration)
    if pp > 1:
        comm += chain_p2p_time(system, payload, pp, tp)  # each stage boundary on its own link
    roofline = getattr(calibration, "time_model", None) == "roofline"  # fitted by calibrate --from-runs (module docstring)
    # MoE routing (the measured kernel tables of moe_routing_s, nearly flat in bandwidth); under a roofline calibration
    # at the uncalibrated bandwidth: a fixed time of the fit (calc.serving.phases.phase_terms puts it in K), as comm is
    compute_dtype = weight_format(m, gpu, dtype).compute_dtype
    routing = moe_routing_s(m, tokens, tp, ep, serving_bandwidth(gpu, a) if roofline else bandwidth, a,
                            runs_deepgemm(gpu, compute_dtype, a))
    compute = max(gemm_s - weight_bytes / bandwidth, 0.0) + attn_compute  # GEMM time beyond streaming its weights
    memory = weight_bytes / bandwidth + attn_memory + routing
    forward = gemm_s + max(attn_compute, attn_memory) + routing + comm
    if roofline:
        e_c = calibration.largest("gemm") or DEFAULT_COMPUTE_EFFICIENCY  # the fit's own defaults without such runs
        e_m = calibration.largest("memory") or DEFAULT_MEMORY_EFFICIENCY
        compute = (gemm_flops + attn_flops) / (peak_tflops(gpu, compute_dtype) * TERA * e_c)
        memory = (weight_bytes + kv_read) / (gpu.hbm_tb_s * TERA * e_m)
        forward = max(compute, memory) + routing + comm  # routing after the max
    eager = a.eager or (a.eager_prefill and prefill_tokens > 0)  # vLLM V0 captures decode-only steps alone
    launches = forward_kernels(m, gpu, dtype, tp, a.fp8_unfused_dequant) * launch_s(gpu, a.eager_launch_s) if eager else 0.0
    overhead = step_overhead(a, prefill_tokens, decode_seqs + (prefill_seqs if prefill_tokens else 0))
    total = max(forward, launches) + overhead  # eager: the GPU cannot run ahead of the host (calc.serving.eager)
    parts = {"compute": compute, "memory": memory, "communication": comm, "overhead": overhead}
    if launches > forward:
        parts["host launches"] = launches
    return StepTime(tokens=tokens, flops=gemm_flops + attn_flops, bytes_read=weight_bytes + kv_read,
                    gemm_s=gemm_s, compute_s=compute, memory_s=memory, comm_s=comm, overhead_s=overhead, launch_s=launches,
                    attention_s=max(attn_compute, attn_memory), routing_s=routing, attention_flops=attn_flops,
                    total_s=total, bound=max(parts, key=parts.__getitem__))
