"""MoE serving terms of one engine step: expert parallelism with data-parallel attention, and MLA decode.

Layout (vLLM `--tensor-parallel-size t --data-parallel-size d --enable-expert-parallel`, SGLang `--tp t*d --dp d
--enable-dp-attention --ep-size t*d`, TensorRT-LLM `--tp_size t*d --ep_size t*d` with attention DP): d attention
ranks, each a TP group of t GPUs with its own batch; the routed experts whole on the EP = d x t GPUs, E / EP each.
t = 1 is pure data-parallel attention; d = 1 is attention TP with the experts spread over the same t GPUs.

Named terms (defaults in calc.serving.assumptions, each with its source):
- all-to-all dispatch + combine per MoE layer (a2a_s);
- the busiest EP rank's tokens: expert_imbalance x the mean (at most EP: ServingAssumptions.imbalance);
- the fused-MoE grouped GEMM's rate against a dense GEMM of the same per-expert shape: grouped_gemm_efficiency
  below one 128-row tile of tokens per expert (decode), grouped_gemm_plateau above (expert_gemm_rate);
- the fixed latency of the fused-MoE kernel chain per MoE layer (moe_kernel_floor_s, in calc.serving.step's
  routing term);
- the fused-MoE kernel's row tile below one 128-row tile per expert (expert_row_tile);
- fp8 per-tensor vs block-scaled grouped GEMMs (ServingAssumptions.fp8_moe_scales); 16-bit grouped GEMMs on
  Ampere (ServingAssumptions.ampere_grouped_gemm_rate);
- the routed experts' rate in a whole serving step against the per-op tables above, per GPU generation and expert
  dtype (moe_serving_rate: fitted on the corpus, calc/data/fitted_defaults.json; ServingAssumptions.moe_serving_rate
  overrides it);
- the collective that carries tokens to the experts under data-parallel attention (ServingAssumptions.dispatcher, the
  values of calc.hardware.moe_ops.DISPATCHERS): DeepEP dispatch + combine (a2a_s), a plain NCCL all-to-all
  (nccl_alltoall_s), an AllGather + ReduceScatter (allgather_reducescatter_s) or vLLM's naive broadcasts + all-reduce
  (naive_broadcast_s); moe_comm_s picks.
MLA (DeepSeek-V2/V3) decode runs absorbed (calc.model.flops.mla_decode_dims).
"""

from __future__ import annotations

import math

from calc.fitted import parameter
from calc.hardware.collectives import collective_time, fastest_allreduce_time
from calc.hardware.efficiency import GROUPED_GEMM_TILE_ROWS, collective_efficiency, measured_pcie_factor, plateau_key
from calc.serving.assumptions import ServingAssumptions
from calc.specs import GPUSpec, ModelSpec
from calc.specs.system import SystemSpec

# DeepEP README, normal kernels on H800: dispatch / combine reach 153 / 158 GB/s of the ~160 GB/s NVLink inside a
# node, 43-58 GB/s of the ~50 GB/s CX7 NIC across nodes (EP16-64): the bandwidth share a dispatch reaches.
A2A_EFFICIENCY_NVLINK = 153 / 160
A2A_EFFICIENCY_NIC = 43 / 50
LOW_LATENCY_MAX_TOKENS = 256  # DeepEP: low-latency mode for num_max_dispatch_tokens_per_rank below 256 (decode)
DISPATCH_BYTES, COMBINE_BYTES = 1, 2  # FP8 dispatch, BF16 combine (DeepEP / DeepSeek-V3 inference)


# The routed experts' rate in a serving step relative to the per-op kernel tables expert_gemm_rate reads, per GPU
# generation and expert GEMM dtype (the keys of calc.hardware.efficiency.plateau_key): 1 = as the tables time the
# fused-MoE op in isolation. READ from calc/data/fitted_defaults.json, the output of benchmarks/fit_corpus.py, fitted
# on the fit split's MoE serving rows jointly with the GEMM plateaus (a generation without two sources of MoE serving
# rows keeps 1, "unfitted: no data"). What it stands for: whatever a whole step's MoE layer costs beyond the balanced,
# isolated kernel (routing skew of the served tokens, the kernels' cache and clock state beside attention); the
# corpus does not tell these apart, so it is one factor, printed by --explain.
MOE_SERVING_RATE: dict[str, float] = parameter("moe_serving_rate")


W4A16 = "w4a16"  # the key suffix of 4-bit weight-only experts
W4A16_GENERATIONS = ("Ampere", "Hopper", "Ada", "CDNA3")  # no fp4 peak: 4-bit experts are dequantised to 16 bits


def moe_rate_key(gpu: GPUSpec, dtype: str) -> str:
    """The MOE_SERVING_RATE key of an expert GEMM of ``dtype`` (its storage key, calc.serving.weights.WeightFormat.gemm)
    on ``gpu``: the plateau's key (calc.hardware.efficiency.plateau_key), except that 4-bit weights multiplied at
    16 bits ("int4": MXFP4 experts on a GPU without an fp4 peak, which vLLM and SGLang run through OpenAI's Triton
    matmul_ogs kernels, and GPTQ / AWQ experts through Marlin MoE) on the W4A16_GENERATIONS read
    "<generation>/w4a16" (another generation reads its plateau's key, the fit holding no other): a dequantising kernel,
    not the 16-bit grouped GEMM the generation's own key prices. Chosen on the fit split (pass 21): under one
    Hopper key the fit rows of MXFP4 gpt-oss on H100 / H200 came out 1.12-1.36x optimistic while the 16-bit MoE rows
    of the same generation came out 0.83-0.88x, so one factor could not serve both."""
    return f"{gpu.arch}/{W4A16}" if dtype == "int4" and gpu.arch in W4A16_GENERATIONS else plateau_key(gpu, dtype)


def moe_serving_rate(gpu: GPUSpec, dtype: str, a: ServingAssumptions) -> float:
    """The factor on the routed experts' grouped-GEMM rate: ServingAssumptions.moe_serving_rate when given, else the
    fitted default for this GPU's generation and the expert GEMM's dtype (MOE_SERVING_RATE at moe_rate_key, "other"
    for a key it lacks)."""
    if a.moe_serving_rate is not None:
        return a.moe_serving_rate
    return MOE_SERVING_RATE.get(moe_rate_key(gpu, dtype), MOE_SERVING_RATE["other"])


# Generations without a warp-group (wgmma / tcgen05) tensor-core path: mma.sync, which Marlin issues, is their
# peak instruction (Volta, Turing, Ampere, Ada). Every other GPU takes the Hopper-measured int4 rate.
MMA_SYNC_ARCHS = ("Volta", "Turing", "Ampere", "Ada")


def expert_gemm_rate(tokens_per_expert: float, a: ServingAssumptions, dtype: str = "bf16", arch: str = "",
                     int4_experts: bool = False, dim: int | None = None) -> float:
    """Compute-side rate of a serving engine's routed-expert grouped GEMM relative to a dense GEMM of the same
    per-expert shape (calc.hardware.efficiency.gemm_time, whose tile and wave quantisation it already carries); the
    weight stream runs at a.grouped_gemm_efficiency at every size (calc.serving.step.weight_gemm_time:
    max(compute / r, memory / grouped_gemm_efficiency), continuous at 128 tokens per expert):

        r(T_e) = a.grouped_gemm_efficiency        T_e < 128 tokens per expert (decode: weight streaming)
               = a.int4_grouped_gemm_rate         otherwise, integer 4-bit W4A16 experts (``int4_experts``: GPTQ /
                                                  AWQ / compressed-tensors wNa16, served by Marlin MoE kernels;
                                                  a.ampere_int4_grouped_gemm_rate on GPUs whose tensor cores
                                                  Marlin's mma.sync drives at their peak: MMA_SYNC_ARCHS)
               = min(1, (dim / a.fp4_grouped_gemm_dim) ** a.fp4_grouped_gemm_exponent)
                                                  otherwise, fp4 experts on an fp4 GPU (``dtype`` "fp4"; ``dim`` the
                                                  expert GEMM's smaller weight dimension on its rank: TensorRT-LLM's
                                                  B200 NVFP4 / MXFP4 MoE tables, benchmarks/fit_fp4_moe_rate.py)
               = a.fp8_grouped_gemm_rate          otherwise, an fp8 block-scaled grouped GEMM (prefill: compute)
               = a.fp8_tensor_grouped_gemm_rate   otherwise, fp8 with per-tensor scales (a.fp8_moe_scales "tensor")
               = a.ampere_grouped_gemm_rate       otherwise, 16-bit on an Ampere GPU (``arch``)
               = 1                                otherwise, 16-bit (the dense GEMM's rate)

    Both defaults are read off the per-op MoE tables aiconfigurator 0.12 measured on H100 / H200 SXM
    (aiconfigurator_core/systems/data/{h100_sxm,h200_sxm}/moe/vllm/0.24.0/moe_perf.parquet, balanced routing:
    vLLM's fused_moe, fp8 block-scaled and bf16; ServingAssumptions docstring has the points). The serving
    engines' fused-MoE kernels sit well below DeepGEMM's own grouped-GEMM table (deepseek-ai/DeepGEMM README,
    H800: 1,233 TFLOPS at 1,024 tokens per group, masked layout, ~0.9 of its dense GEMMs), which is what a
    DeepGEMM path reaches. The W4A16 rate: aiconfigurator's vLLM 0.14.0 and SGLang 0.5.10 int4_wo MoE tables (H100,
    Marlin kernels; calc.serving.assumptions), where decode-sized points match the weight-streaming rate above and
    prefill-sized ones run at about half a dense 16-bit GEMM; MXFP4 experts (gpt-oss on Hopper: OpenAI's Triton
    MoE kernel) keep the dense rate, as the same vLLM 0.24 tables time them. The per-tensor rate: aiconfigurator's
    TensorRT-LLM 1.3.0rc20 MoE tables
    (calc.serving.assumptions). The Ampere 16-bit rate: aiconfigurator's A100 tables (calc.serving.assumptions);
    sm80 has no TMA / warp-specialised grouped GEMM (TensorRT-LLM's sm80 MoE GEMMs are CUTLASS 2.x grouped kernels,
    vLLM / SGLang's triton fused_moe without TMA), and its grouped GEMM falls further below its dense GEMM than on Hopper.

    >>> from calc.serving.assumptions import ServingAssumptions
    >>> a = ServingAssumptions(grouped_gemm_efficiency=0.6, fp8_grouped_gemm_rate=0.4)
    >>> expert_gemm_rate(64, a, "fp8"), expert_gemm_rate(1024, a, "fp8"), expert_gemm_rate(1024, a, "bf16")
    (0.6, 0.4, 1.0)
    >>> expert_gemm_rate(1024, a.model_copy(update={"fp8_moe_scales": "tensor"}), "fp8")
    0.8
    >>> expert_gemm_rate(1024, a, "bf16", "Ampere"), expert_gemm_rate(64, a, "bf16", "Ampere")
    (0.8, 0.6)
    >>> expert_gemm_rate(1024, a, "int4", "Hopper", True) == a.int4_grouped_gemm_rate, expert_gemm_rate(64, a, "int4", "Hopper", True)
    (True, 0.6)
    >>> round(expert_gemm_rate(1024, ServingAssumptions(), "fp4", "Blackwell", dim=768), 4)  # (768 / 8192) ** 0.63
    0.2251
    """
    if tokens_per_expert < GROUPED_GEMM_TILE_ROWS:
        return a.grouped_gemm_efficiency
    if int4_experts:
        return a.ampere_int4_grouped_gemm_rate if arch in MMA_SYNC_ARCHS else a.int4_grouped_gemm_rate
    if dtype == "fp4":
        return min(1.0, ((dim or a.fp4_grouped_gemm_dim) / a.fp4_grouped_gemm_dim) ** a.fp4_grouped_gemm_exponent)
    if not dtype.startswith("fp8"):
        return a.ampere_grouped_gemm_rate if arch == "Ampere" else 1.0
    return a.fp8_tensor_grouped_gemm_rate if a.fp8_moe_scales == "tensor" else a.fp8_grouped_gemm_rate


# vLLM / SGLang fused_moe (get_default_config in vllm/model_executor/layers/fused_moe/fused_moe.py and
# sglang/srt/layers/moe/fused_moe_triton/fused_moe.py): {"BLOCK_SIZE_M": 64, ...} by default, and "A heuristic: fused
# marlin works faster with this config for small M: if M <= E ...: BLOCK_SIZE_M 16". moe_align_block_size pads each
# expert's token rows to a multiple of BLOCK_SIZE_M, so that is the row tile a decode step pays for.
FUSED_MOE_SMALL_ROWS, FUSED_MOE_ROWS = 16, 64


def expert_row_tile(tokens_per_expert: float, step_tokens: float, experts: int) -> float:
    """Compute the routed experts' grouped GEMM pays for, relative to calc.hardware.efficiency.gemm_time's 128-row
    tile quantisation, below one 128-row tile per expert (above it: 1, the GEMM's own quantisation):

        q(T_e, b) / q(T_e, 128),   q(x, t) = x / (ceil(x / t) t),   b = 16 when the step's M <= E tokens, else 64

    b is the fused-MoE kernel's BLOCK_SIZE_M (FUSED_MOE_SMALL_ROWS / FUSED_MOE_ROWS). One token through top-k experts
    multiplies 16 rows, not 128: on a GPU whose fp8/bf16 peak is low against its bandwidth (H20: 148 TFLOP/s bf16 at
    4 TB/s) a 128-row pad would make a batch-1 decode compute-bound, which the kernel is not.

    >>> expert_row_tile(1, 1, 128), expert_row_tile(20, 200, 128), expert_row_tile(200, 200, 128)
    (8.0, 2.0, 1.0)
    """
    if tokens_per_expert >= GROUPED_GEMM_TILE_ROWS:
        return 1.0
    tile = FUSED_MOE_SMALL_ROWS if step_tokens <= experts else FUSED_MOE_ROWS

    def q(x: float, t: int) -> float:
        return x / (math.ceil(x / t) * t)

    return q(tokens_per_expert, tile) / q(tokens_per_expert, GROUPED_GEMM_TILE_ROWS)


def attention_ranks(tp: int, ep: int) -> int:
    """Data-parallel attention ranks d of an EP layout: EP = d x t (module docstring); 1 without EP."""
    return ep // tp if ep > 1 else 1


def a2a_s(m: ModelSpec, system: SystemSpec, a: ServingAssumptions, tokens: int, tp: int, ep: int) -> float:
    """Seconds of one MoE layer's DeepEP dispatch + combine (ServingAssumptions.dispatcher "deepep") on a rank whose
    attention group holds ``tokens`` tokens:
        bytes   = tokens / t x k x H x (1 B dispatch + 2 B combine) x (EP - 1)/EP   (the copies leaving the GPU;
                  each of the t TP ranks sends its 1/t share of the group's tokens)
        call    = bytes / (link x efficiency) + floor
    link: the node's NVLink when the EP group fits in a node, else the NIC per GPU; efficiency from DeepEP's
    normal-kernel measurements (A2A_EFFICIENCY_*). Kernels as DeepEP/DeepSeek-V3 run them: low-latency below
    LOW_LATENCY_MAX_TOKENS tokens per rank (decode; floor a.a2a_latency_s per call), normal kernels above
    (prefill; floor one link latency per peer, (EP - 1) x the node's per-step latency).
    Two calls (dispatch, combine) per MoE layer; the bytes are counted at the busiest rank (x expert_imbalance)."""
    if ep <= 1 or not m.moe or tokens <= 0:
        return 0.0
    inside = ep <= system.gpus_per_node
    # inside a node: its link, or an NVLink bridge the EP group sits on (SystemSpec.node_link)
    bw = (system.node_link(ep)[0] * A2A_EFFICIENCY_NVLINK if inside else system.inter_node_gb_s * A2A_EFFICIENCY_NIC) * 1e9
    per_rank = tokens / tp
    sent = per_rank * m.moe.experts_per_token * m.hidden_size * (ep - 1) / ep * a.imbalance(ep)
    if per_rank <= LOW_LATENCY_MAX_TOKENS:
        floor = a.a2a_latency_s
    else:
        floor = (ep - 1) * (system.intra_node_latency_s if inside else system.inter_node_latency_s)
    return sent * (DISPATCH_BYTES + COMBINE_BYTES) / bw + 2 * floor


# TensorRT-LLM CutlassFusedMoE.forward_chunk gathers each token's top-k expert ids (int32) and routing weights
# (float32) beside its hidden state: 4 + 4 bytes per (token, expert) pair.
ROUTING_PAIR_BYTES = 4 + 4
COMBINE_OUT_BYTES = 2  # the experts' output, reduce-scattered in the activation dtype (bf16)


def allgather_reducescatter_s(m: ModelSpec, system: SystemSpec, tokens: int, tp: int, ep: int, x_bytes: int,
                              calibration: object = None) -> float:
    """Seconds of one MoE layer's AllGather + ReduceScatter over the EP group, the collective TensorRT-LLM's PyTorch
    backend runs under attention DP when no all-to-all is enabled, and vLLM's allgather_reducescatter backend
    (ServingAssumptions.dispatcher "allgather"):

        AG = all_gather(S_ag, EP),      S_ag = EP x T_r x (H x b_x + k x 8)   (hidden state + top-k ids and weights)
        RS = reduce_scatter(S_rs, EP),  S_rs = EP x T_r x H x 2               (each rank's bf16 partial sums)
        call = AG + RS,   T_r = tokens / t  (the rows each rank holds)

    timed by calc.hardware.collectives (NCCL ring: (EP - 1) steps of the node latency, (EP - 1)/EP x S per GPU at
    the collective efficiency). b_x = 1 when the experts are per-tensor fp8 (FP8 QDQ quantises x before the gather),
    else 2 (bf16; block-scaled fp8 quantises inside the fused MoE, after it). Every rank then routes all EP x T_r
    gathered rows through its local experts (calc.serving.step.moe_routing_s counts the permute traffic, by engine:
    only the local copies in TensorRT-LLM's CUTLASS MoE and vLLM's DeepGEMM, a zero-fill + sum over every gathered
    copy in the Triton kernels). No expert
    imbalance in the volume: every rank receives every token whatever the routing.

    Source: NVIDIA/TensorRT-LLM tensorrt_llm/_torch/modules/fused_moe/fused_moe_cutlass.py (the 1.0 line):
    select_alltoall_method_type returns NotEnabled without attention DP, when moe_ep_size <= top_k, and on Hopper
    unless MNNVL (GB200 NVL72) or TRTLLM_CAN_USE_DEEP_EP=1 (bf16 only); then forward_chunk quantises x
    (static_quantize_e4m3_per_tensor for FP8 QDQ) and calls allgather([x, x_sf, token_selected_slots,
    token_final_scales], mapping, dim=0), and reducescatter_or_allreduce reduce-scatters the fused_moe output.
    Against a2a_s's dispatch + combine of T_r x k x H x 3 (EP - 1)/EP bytes the volume is about EP / k as large:
    1 for Qwen3 (top-8) at EP 8, 8 for Llama 4 Maverick (top-1).

    >>> from calc.sources.catalog import load_model, load_system
    >>> round(allgather_reducescatter_s(load_model("qwen3-235b-a22b"), load_system("dgx-h100"), 0, 1, 8, 1), 9)
    0.0
    """
    if ep <= 1 or not m.moe or tokens <= 0:
        return 0.0
    eff = collective_efficiency(calibration)
    rows = ep * tokens / tp
    gathered = rows * (m.hidden_size * x_bytes + m.moe.experts_per_token * ROUTING_PAIR_BYTES)
    partial = rows * m.hidden_size * COMBINE_OUT_BYTES
    pcie = measured_pcie_factor(calibration)
    return (collective_time("all_gather", system, gathered, ep, efficiency=eff, pcie=pcie)
            + collective_time("reduce_scatter", system, partial, ep, efficiency=eff, pcie=pcie))


NCCL_A2A_BYTES = 2  # a plain all-to-all moves the bf16 activations both ways (no fp8 dispatch kernel)


def nccl_alltoall_s(m: ModelSpec, system: SystemSpec, a: ServingAssumptions, tokens: int, tp: int, ep: int,
                    calibration: object = None) -> float:
    """Seconds of one MoE layer's dispatch + combine by a plain NCCL all-to-all (ServingAssumptions.dispatcher
    "alltoall", Megatron's MoEAlltoAllTokenDispatcher, calc.hardware.moe_ops): every (token, routed expert) copy
    bound for another rank is sent, bf16 both ways, the busiest rank's share:

        S = T_r x k x H x 2 B x expert_imbalance,   T_r = tokens / t
        call = all_to_all(S, EP)  (calc.hardware.collectives: (EP - 1)/EP x S over the link, one step's latency)
        dispatch + combine = 2 calls

    against a2a_s (DeepEP): no fp8 dispatch (2 + 2 B against 1 + 2 B per copy), NCCL's link efficiency in place of
    DeepEP's, no low-latency kernel at decode sizes.

    >>> from calc.sources.catalog import load_model, load_system
    >>> nccl_alltoall_s(load_model("qwen3-235b-a22b"), load_system("dgx-h100"), ServingAssumptions(), 64, 1, 1)
    0.0
    """
    if ep <= 1 or not m.moe or tokens <= 0:
        return 0.0
    sent = tokens / tp * m.moe.experts_per_token * m.hidden_size * NCCL_A2A_BYTES * a.imbalance(ep)
    return 2 * collective_time("all_to_all", system, sent, ep, efficiency=collective_efficiency(calibration),
                               pcie=measured_pcie_factor(calibration))


def naive_broadcast_s(m: ModelSpec, system: SystemSpec, tokens: int, tp: int, ep: int, x_bytes: int = 2,
                      calibration: object = None) -> float:
    """Seconds of one MoE layer under vLLM's "naive" all2all backend (ServingAssumptions.dispatcher "naive", the
    default VLLM_ALL2ALL_BACKEND before allgather_reducescatter): NaiveAll2AllManager.dispatch broadcasts each DP
    rank's hidden states and router logits to the group in turn (naive_multicast: one dp_group.broadcast per rank
    into a buffer of every rank's tokens), and combine all-reduces that whole buffer and keeps its own slice
    (vllm/distributed/device_communicators/all2all.py, v0.9.0 - v0.10.x):

        rows = EP x T_r,  T_r = tokens / t
        dispatch = all_gather(rows x (H x b_x + E x 2))   (the broadcasts move what an all-gather moves: every rank
                   receives every other rank's rows; b_x the activation bytes, E bf16 router logits per token)
        combine  = allreduce(rows x H x 2)                (ring: 2 (EP - 1)/EP of the buffer per GPU, twice the
                   reduce-scatter of allgather_reducescatter_s; or the tree, whichever is faster)

    timed by calc.hardware.collectives (NCCL ring / tree at the collective efficiency, fastest_allreduce_time).

    >>> from calc.sources.catalog import load_model, load_system
    >>> naive_broadcast_s(load_model("qwen3-235b-a22b"), load_system("dgx-h100"), 64, 1, 1)
    0.0
    """
    if ep <= 1 or not m.moe or tokens <= 0:
        return 0.0
    eff = collective_efficiency(calibration)
    rows = ep * tokens / tp
    gathered = rows * (m.hidden_size * x_bytes + m.moe.num_experts * 2)
    pcie = measured_pcie_factor(calibration)
    return (collective_time("all_gather", system, gathered, ep, efficiency=eff, pcie=pcie)
            + fastest_allreduce_time(system, rows * m.hidden_size * COMBINE_OUT_BYTES, ep, eff, pcie))


def moe_comm_s(m: ModelSpec, system: SystemSpec, a: ServingAssumptions, tokens: int, tp: int, ep: int,
               x_bytes: int = 2, calibration: object = None) -> float:
    """One MoE layer's token exchange under expert parallelism, by ServingAssumptions.dispatcher
    (calc.hardware.moe_ops.DISPATCHERS): "deepep" (a2a_s), "alltoall" (nccl_alltoall_s), "allgather"
    (allgather_reducescatter_s) or "naive" (naive_broadcast_s)."""
    if a.dispatcher == "allgather":
        return allgather_reducescatter_s(m, system, tokens, tp, ep, x_bytes, calibration)
    if a.dispatcher == "naive":
        return naive_broadcast_s(m, system, tokens, tp, ep, x_bytes, calibration)
    if a.dispatcher == "alltoall":
        return nccl_alltoall_s(m, system, a, tokens, tp, ep, calibration)
    return a2a_s(m, system, a, tokens, tp, ep)


