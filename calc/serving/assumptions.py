"""Serving-specific overheads: every one a named input with a default, printed by --explain.

One set of defaults serves every row of benchmarks/validate_serving.py; none is tuned to a row.
- cuda_context_gib: memory outside PyTorch's allocator on each GPU (CUDA context, cuBLAS/cuDNN
  workspaces). vLLM counts it as "non-torch" memory in its profile (worker.py / gpu_worker.py);
  typical 0.3-0.6 GiB on NVIDIA parts.
- comm_buffer_gib: NCCL communicator buffers and the engines' custom all-reduce buffers on each GPU when
  the model is split (TP, PP or EP > 1); None (default): by topology, TP width, NCCL release and engine
  (calc.serving.comm_memory: NCCL's ring / tree / NVLS buffers on NVSwitch nodes, a flat 0.25 GiB elsewhere).
- profile_non_torch_gib: the non-torch memory that appears after a vLLM release's baseline snapshot (cuBLAS /
  attention-backend workspaces created by the load and the profile run), for the releases that measure the
  non-torch term as an increase over a snapshot taken once the CUDA context exists (calc.serving.engine_memory
  vllm_counts_cuda_context). Startup logs print it: "non_torch_memory takes 0.12GiB" (V0 worker.py, one H100),
  "0.07 GiB for non-torch memory" (V1, gemma-3-4b, vllm-project/vllm PR #21489), non_torch_increase 0.11 GiB (V1,
  one A100, ovg-project/kvcached PR #448): 0.1 GiB.
- vllm_flashinfer_sampler: which top-k / top-p sampler vLLM V1's profile run uses (38 B per logit for the
  PyTorch-native sort up to 0.16, 14 B + one SMs x vocab fp32 buffer for its Triton masking from 0.17, 14 B for
  FlashInfer; calc.serving.engine_memory); None = the release's default install.
- cuda_graph_gib: vLLM V1's CUDA-graph memory estimate, subtracted inside gpu_memory_utilization from 0.20
  (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 in the 0.20.0 and 0.21.0 sdists' vllm/envs.py, 0 in
  0.19.1's; gpu_worker.py determine_available_memory subtracts cudagraph_memory_estimate_applied). The estimate is
  profiled per model (gpu_model_runner.py profile_cudagraph_memory: the first two graphs of each mode captured,
  the second's size extrapolated to the rest); logs of 0.2x releases print "Estimated CUDA graph memory:" 0.36,
  0.36, 0.43, 0.55, 0.58 GiB for one-GPU small / mid models and 1.9 - 5.0 GiB for large MoE ones: 0.5 GiB.
- step_overhead_s + step_overhead_per_seq_s x sequences: per scheduler step, the CPU work vLLM/SGLang do between
  forward passes (scheduling, input preparation, sampling, detokenisation), not hidden by CUDA graphs: a fixed part
  and a part per sequence the step schedules (vLLM V1's Scheduler.schedule, _prepare_inputs, the sampler and
  output processing each loop over the step's requests). Both defaults are read from calc/data/fitted_defaults.json
  (benchmarks/fit_corpus.py), per engine family.
  The per-engine default (engine_step_overhead: vllm for V1, vllm-v0 for releases before 0.8, sglang, trtllm; an
  MoE model reads its engine's "/moe" key, fitted on MoE rows alone) is what latency / serve / report use for
  --engine; --step-overhead-ms and --step-overhead-per-seq-us override them.
- eager / eager_launch_s: an eager step (no CUDA / HIP graph) is max(forward, kernels x launch) + overhead, the
  kernels counted from vLLM's model code and the launch cost by vendor (calc.serving.eager, its sources).
- scheduler_steps: vLLM V0's --num-scheduler-steps; a decode step carries step_overhead_s / scheduler_steps
  (calc.serving.step.step_overhead, its source).
- decode_kv_reads: how often a decode step reads each KV head; 1 unless the engine runs vLLM's generic paged
  attention (one thread block per query head), e.g. on ROCm past the custom kernel's length limit
  (calc.serving.decode_attention, its sources).
- moe_serving_rate: the routed experts' grouped-GEMM rate in a whole serving step against the per-op tables above,
  fitted per GPU generation and expert dtype on the corpus's fit split (benchmarks/fit_corpus.py; calc.serving.moe);
  None reads the fitted default, a value overrides it.
- fp8_act_quant_bytes: a dense fp8 (W8A8) linear quantizes its bf16 input before the GEMM, 3 B per input element
  (read 2, write 1) at HBM bandwidth; aiconfigurator's TensorRT-LLM quantize tables measure 2.95-3.04 B on H100
  (calc.serving.act_quant, its sources).
- fp8_unfused_dequant: vLLM's unfused fp8 fallback (ROCm before 0.7.3, per-channel / per-token scales): each fp8
  GEMM writes fp32 and is rescaled and cast by three more kernels (calc.serving.fp8_fallback, its sources).
- internode_gb_s / gpus_per_node: the node used for a GPU that ships in no system_specs/ node.
- MoE serving (calc.serving.moe):
  grouped_gemm_efficiency / fp8_grouped_gemm_rate / moe_kernel_floor_s: the serving engines' fused-MoE kernels
  (calc.serving.moe.expert_gemm_rate; the routing term of calc.serving.step). Chosen together against the MoE
  op tables aiconfigurator 0.12 measured for vLLM 0.24 (aiconfigurator_core/systems/data/{h100_sxm,h200_sxm}/
  moe/vllm/0.24.0/moe_perf.parquet, balanced routing; Qwen3-235B-A22B and Qwen3-30B-A3B expert shapes, fp8
  block-scaled and bf16, EP4 / EP8 / TP1-8, 1-16,384 tokens; 272 points): median |log(ours / measured)| 0.13
  (0.23 with the earlier 0.7 / none / 0). Points it reproduces (tests/test_serving_moe.py): one token through
  a Qwen3-235B-A22B-FP8 MoE layer on H200 EP8 takes 31.5 us (a kernel chain, not the 1/8 expert's weights);
  16,384 tokens 1.36 ms, ~0.23 of the fp8 peak where a dense fp8 GEMM reaches ~0.53 (DeepGemm
  Fp8BlockScaledMM, same database: 1.05 ms for 16,384 x 4,096 x 8,192): fp8 block-scaled grouped GEMMs at
  about half the dense rate (0.5; TensorRT-LLM 1.3's table gives 0.35, SGLang 0.5.14's 0.6); bf16 grouped
  GEMMs at the dense rate (the same fit gives 1.0: no derate). Below one 128-row tile per expert the
  kernels stream the touched experts' weights at 0.8 of a dense GEMM's stream, plus 20 us per MoE layer for
  the chain (router top-k, align / permute, activation quantisation, SiLU, unpermute: ~5 kernels at ~4 us).
  DeepGEMM's own grouped kernels are faster (README, H800: 1,233 TFLOPS at 1,024 tokens per group), which
  an engine running them reaches; the defaults follow what vLLM runs by default.
  fp8_moe_scales / fp8_tensor_grouped_gemm_rate: fp8 experts with one scale per tensor (TensorRT-LLM's QuantAlgo
  FP8: trtllm-bench --quantization FP8, NVIDIA ModelOpt "-FP8" checkpoints) run CUTLASS's plain fp8 grouped GEMM,
  not a block-scaled one (QuantAlgo FP8_BLOCK_SCALES, the 128 x 128 weight blocks of DeepSeek-V3 / Qwen3-FP8
  checkpoints: DeepGEMM, triton or CUTLASS blockwise kernels that rescale every K block). aiconfigurator 0.12's
  TensorRT-LLM 1.3.0rc20 MoE tables (systems/data/{h100_sxm,h200_sxm}/moe/trtllm/1.3.0rc20/moe_perf.parquet,
  balanced routing, the catalog's Mixtral 8x7B / 8x22B, Qwen3-235B-A22B / 30B-A3B and Llama 4 Scout / Maverick
  expert shapes, TP 1-8 or EP 2-8, >= 128 tokens per expert), timed against this model's own dense GEMM at the
  same per-expert shape after the routing term: per-tensor fp8 at a pooled median 0.82 of the dense fp8 rate (884
  points; 0.9-1.4 for Mixtral's large experts, 0.5-0.7 for Qwen3's small ones), fp8 block-scaled at 0.60 (806
  points), bf16 at 0.88 (912): per-tensor fp8 at 0.8, block-scaled at fp8_grouped_gemm_rate. Which applies:
  fp8_moe_scales, "block" by default (what vLLM / SGLang serve from shipped FP8 checkpoints).
  ampere_grouped_gemm_rate: 16-bit MoE grouped GEMMs on Ampere at >= 128 tokens per expert, against this model's
  dense GEMM (on Hopper they run at its rate, 1). aiconfigurator's A100 TensorRT-LLM 1.0.0 MoE table
  (aiconfigurator_core/systems/data/a100_sxm/moe/trtllm/1.0.0/moe_perf.parquet, bfloat16, power_law_1.01 routing,
  Mixtral 8x7B / 8x22B and Qwen3-235B-A22B expert shapes, moe_tp 1-8, 1,024-16,384 tokens; 108 points) against this
  model's expert GEMMs + routing at rate 1: a median 1.45x its time; the table holds no balanced points on A100,
  and the same table on H100 (trtllm/1.3.0rc20, same shapes, moe_tp 1-4) times power_law_1.01 at 1.16x balanced, so
  balanced routing would take 1.45 / 1.16 = 1.25x: a rate of 0.8. The A100 SGLang 0.5.10 table (balanced, triton
  fused_moe, TP 4-8) sits at 1.12-1.15x for Mixtral, 1.3-1.4x for Qwen3's small experts. The dense bf16 GEMMs of the
  same A100 TensorRT-LLM tables run at 0.81-0.84 of this model's time, as the H100 ones do (0.81-0.87): the grouped
  kernel, not the dense model, is what is slower on Ampere.
  int4_grouped_gemm_rate / ampere_int4_grouped_gemm_rate: routed experts in integer 4-bit W4A16 (GPTQ, AWQ,
  compressed-tensors wNa16 checkpoints, `--dtype awq|gptq`), which vLLM and SGLang serve with Marlin MoE kernels, at
  >= 128 tokens per expert, against this model's dense 16-bit GEMM of the expert's shape. aiconfigurator 0.12's
  int4_wo MoE tables (systems/data/h100_sxm/moe/{vllm/0.14.0 (vllm_compressedtensorswna16marlinmoe), sglang/0.5.10
  (sglang_marlin_moe)}/moe_perf.parquet, balanced routing, Mixtral 8x7B / 8x22B and Qwen3-235B-A22B / 30B-A3B expert
  shapes, TP 1-8, >= 128 tokens per expert; 232 points) against this model's expert GEMMs + routing: 2.1x its time
  at rate 1, and a rate of 0.45 brings the median to 0.98 (vLLM) / 1.04 (SGLang), q10-q90 0.84-1.13. Below 128
  tokens per expert the same tables match the weight-streaming rate (0.9-1.04). The A100 table (sglang/0.5.10, 109
  points) gives 0.71: Marlin multiplies with Ampere's mma.sync, which Hopper runs well below its wgmma peak; Ada,
  Turing and Volta (mma.sync their peak path too, calc.serving.moe.MMA_SYNC_ARCHS) take 0.7 unmeasured, Blackwell and
  non-NVIDIA GPUs Hopper's 0.45 (no table). MXFP4 experts are not Marlin-served on Hopper (gpt-oss: OpenAI's
  Triton MoE kernel, whose vLLM 0.24 table matches the dense rate, 1.0-1.1 of this model) and keep the dense rate.
  fp4_grouped_gemm_dim / fp4_grouped_gemm_exponent: routed experts in fp4 (NVFP4 checkpoints, MXFP4 ones such as
  gpt-oss) on a GPU with an fp4 peak (Blackwell) at >= 128 tokens per expert run at min(1, (d / D) ** alpha) of a
  dense fp4 GEMM of the expert's shape, d the expert GEMM's smaller weight dimension on its rank (min(K, N): the
  intermediate size over TP for Qwen3's 768-wide experts, the hidden size for Mixtral's 14,336-wide ones). Fitted
  by benchmarks/fit_fp4_moe_rate.py on aiconfigurator's TensorRT-LLM 1.3.0rc20 B200 MoE table
  (systems/data/b200_sxm/moe/trtllm/1.3.0rc20/moe_perf.parquet; the 171 kept points in
  benchmarks/data/aiconfigurator_b200_fp4_moe.csv: nvfp4 CUTLASS and w4a8_mxfp4_mxfp8, balanced, EP 1, TP 1-8, the
  Mixtral, Qwen3, DeepSeek-V3 and gpt-oss expert shapes): at rate 1 the measured layer takes a median 1.58x this
  model's time (its dense fp4 GEMM at the plateau the same aiconfigurator tables measure, 0.43, so the rate is
  grouped over dense on one silicon), 2.2-2.9x for experts 192-768 wide on their rank, 0.9-1.1x for Mixtral's; D = 8,192, alpha = 0.63
  brings the pooled median to 1.01 (median |log| 0.150, q10-q90 0.75-1.43; Qwen3-30B-A3B's points still at 1.48).
  The rate is the compute side's; the weight stream runs at grouped_gemm_efficiency (calc.serving.step.
  weight_gemm_time), as every format's does. (Before the sixteenth pass the rate divided the whole roofline time,
  which made memory-bound experts jump at 128 tokens per expert; that form fitted this table at D = 12,288,
  alpha = 0.45, median |log| 0.13, q10-q90 0.71-1.48.) Below 128 tokens per expert the fp4 experts' compute takes
  grouped_gemm_efficiency, as every format's does.
  dispatcher: how tokens reach the experts under expert parallelism, the values of calc.hardware.moe_ops.DISPATCHERS
  (the same `--dispatcher` as train-step): "deepep" (DeepEP normal / low-latency dispatch + combine,
  calc.serving.moe.a2a_s), "alltoall" (a plain NCCL all-to-all of every routed copy, nccl_alltoall_s), "allgather"
  (an AllGather of the hidden states before the experts and a ReduceScatter after, allgather_reducescatter_s) or
  "naive" (vLLM's broadcasts + all-reduce, naive_broadcast_s). Default: the engine's, by release
  (engine_dispatcher): vLLM's VLLM_ALL2ALL_BACKEND / --all2all-backend default, "naive" before 0.11 and
  "allgather_reducescatter" from it; SGLang's --moe-a2a-backend "none" (DP attention gathers the tokens:
  dp_gather, all-gather / all-reduce, then dp_scatter / reduce-scatter); TensorRT-LLM's PyTorch backend on Hopper
  without MNNVL or DeepEP, its "default fallback" (fused_moe_cutlass.py select_alltoall_method_type / forward_chunk,
  1.0 line): all three an all-gather + reduce-scatter but vLLM before 0.11.
  expert_imbalance: max / mean tokens an expert-parallel rank receives (the busiest rank gates the step);
  SGLang's large-scale EP report (lmsys.org/blog/2025-05-05-large-scale-ep) measures a "balancedness"
  (mean / max GPU load) of about 0.75-0.8 for DeepSeek-V3 without EPLB: max / mean ~ 1.3.
  a2a_latency_s: the fixed cost of one low-latency dispatch or combine call; DeepEP's README (low-latency
  kernels, H800, EP8, 128 tokens x top-8 x 7168 hidden) times dispatch (FP8, 7.34 MB) at 77 us and combine
  (BF16, 14.68 MB) at 114 us: the line through both points meets zero bytes at 77 - 7.34 x 37/7.34 = 40 us.
GEMM efficiency, HBM efficiency and collective latency/efficiency are NOT here: they come from
calc.hardware.efficiency and the node's SystemSpec (calc.hardware.collectives), shared with training.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from calc.fitted import describe, parameter
from calc.hardware.collectives import pcie_factor
from calc.serving.act_quant import ACT_QUANT_BYTES

# Replicas sized for a request rate without a TTFT target: the fewest that keep each replica's slots at most this
# busy. A planning margin, not a measurement: the M/D/c wait (calc.serving.queueing) grows without bound as rho
# nears 1, so "any stable queue" sized llama3-8b at 42 req/s on 2 H100 at rho 0.9998 with a 72 s TTFT, where a
# third GPU serves it at 49 ms. 0.9 leaves the 10% headroom capacity planners commonly keep for bursts; give
# --ttft-ms to size for latency instead, or --max-utilization to change it.
DEFAULT_MAX_UTILIZATION = 0.9


class ServingAssumptions(BaseModel):
    cuda_context_gib: float = Field(0.5, ge=0)
    router: Literal["least-loaded", "random"] = Field("least-loaded", description=(
        "how a --rate reaches the replicas (calc.serving.queueing): least-loaded, one shared queue (a load-aware "
        "router, join-the-shortest-queue), or random, a queue per replica (a router blind to load)"))
    max_utilization: float | None = Field(None, gt=0, le=1, description=(
        "the busiest share of a replica's request slots a --rate may keep occupied (rho = R x S / (n x B)); None: "
        "DEFAULT_MAX_UTILIZATION when no TTFT target bounds the queue, else the target alone"))
    comm_buffer_gib: float | None = Field(None, ge=0, description=(
        "communication buffers per GPU when split; None: calc.serving.comm_memory by topology and TP width"))
    profile_non_torch_gib: float = Field(0.1, ge=0, description=(
        "non-torch memory a vLLM release counts above its baseline snapshot (workspaces of the load and profile run)"))
    cuda_graph_gib: float = Field(0.5, ge=0, description="vLLM V1 >= 0.20: CUDA-graph memory estimate inside the utilization")
    trtllm_graph_batch: int | None = Field(None, ge=0, description=(
        "TensorRT-LLM PyTorch backend: largest CUDA-graph batch captured before the KV estimation (its pool counts as "
        "non-torch memory); None: max_batch_size (trtllm-bench sets cuda_graph_config.max_batch_size to it), 0: no graphs"))
    vllm_flashinfer_sampler: bool | None = Field(None, description=(
        "vLLM V1's profile sampler runs FlashInfer (True) or the PyTorch-native sort (False); None: the release's "
        "default install (FlashInfer from 0.21, calc.serving.engine_memory)"))
    step_overhead_s: float = Field(parameter("step_overhead_s")["vllm"], ge=0)  # fitted_defaults.json
    step_overhead_per_seq_s: float = Field(parameter("step_overhead_per_seq_s")["vllm"], ge=0, description=(
        "host seconds a step adds per sequence it schedules (scheduling, input preparation, sampling, output "
        "processing grow with the batch), on top of step_overhead_s; fitted_defaults.json"))
    step_overhead_from: str = Field("", description="where step_overhead_s came from, for --explain (set by the CLI)")
    eager: bool = Field(False, description="steps run eager, no CUDA / HIP graph (vLLM --enforce-eager): calc.serving.eager")
    eager_prefill: bool = Field(False, description=(
        "steps holding prompt tokens run eager (vLLM V0: vllm/worker/model_runner.py _use_captured_graph replays a graph "
        "for decode-only batches alone); set for --engine vllm-v0 / a release before 0.8"))
    eager_launch_s: float | None = Field(None, ge=0, description=(
        "host seconds per eager kernel launch; None: by GPU vendor (calc.serving.eager.LAUNCH_S)"))
    scheduler_steps: int = Field(1, ge=1, description=(
        "vLLM V0 --num-scheduler-steps (multi-step scheduling): the scheduler and the input preparation run once per "
        "this many decode steps, so a decode step carries step_overhead_s / scheduler_steps; a step holding prompt "
        "tokens carries all of it (calc.serving.step.step_overhead)"))
    decode_kv_reads: float = Field(1.0, ge=1, description=(
        "times a decode step reads each KV head: 1 for a GQA-grouped kernel, query heads per KV head for vLLM's generic "
        "paged attention (ROCm past the custom kernel's length limit): calc.serving.decode_attention"))
    fp8_unfused_dequant: bool = Field(False, description=(
        "fp8 GEMMs run to fp32 and are rescaled by separate elementwise passes (vLLM before 0.7.3 on ROCm with "
        "per-channel scales): calc.serving.fp8_fallback"))
    fp8_act_quant_bytes: float = Field(ACT_QUANT_BYTES, ge=0, description=(
        "HBM bytes per input element of the cast that quantizes a dense fp8 (W8A8) linear's bf16 input before its GEMM: "
        "calc.serving.act_quant"))
    internode_gb_s: float = Field(50.0, gt=0, description="per-GPU network bandwidth across nodes, GB/s (400 Gb/s NIC)")
    gpus_per_node: int = Field(8, ge=1)
    grouped_gemm_efficiency: float = Field(0.8, gt=0, le=1,
                                           description="MoE grouped GEMM rate at decode-sized tokens per expert")
    expert_imbalance: float = Field(1.3, ge=1, description="max / mean tokens per expert-parallel rank")
    moe_serving_rate: float | None = Field(None, gt=0, description=(
        "factor on the routed experts' grouped-GEMM rate in a serving step against the per-op kernel tables; None: the "
        "fitted default for the GPU generation and expert dtype (calc.serving.moe.moe_serving_rate)"))
    a2a_latency_s: float = Field(40e-6, ge=0, description="fixed cost of one low-latency dispatch / combine call")
    fp8_grouped_gemm_rate: float = Field(0.5, gt=0, le=1, description=(
        "fp8 MoE grouped GEMM rate at >= 128 tokens per expert, against a dense fp8 GEMM"))
    moe_kernel_floor_s: float = Field(20e-6, ge=0, description="fixed latency of one MoE layer's fused kernel chain")
    gemm_plateau: float | None = Field(None, gt=0, le=1, description=(
        "large-GEMM fraction of peak; None: the GPU generation's fitted plateau (calc.hardware.efficiency.gemm_plateau)"))
    hbm_efficiency: float | None = Field(None, gt=0, le=1, description=(
        "achievable fraction of HBM bandwidth; None: the generation's (calc.hardware.efficiency.memory_efficiency)"))
    fp8_moe_scales: Literal["block", "tensor"] = Field("block", description=(
        "fp8 expert weights with 128 x 128 block scales (DeepGEMM / triton block kernels) or one scale per tensor "
        "(CUTLASS fp8 grouped GEMM: TensorRT-LLM / ModelOpt FP8)"))
    ampere_grouped_gemm_rate: float = Field(0.8, gt=0, le=1, description=(
        "16-bit MoE grouped GEMM rate on Ampere at >= 128 tokens per expert, against a dense GEMM"))
    int4_grouped_gemm_rate: float = Field(0.45, gt=0, le=1, description=(
        "integer 4-bit weight-only (GPTQ / AWQ, Marlin MoE) grouped GEMM rate at >= 128 tokens per expert, against a "
        "dense 16-bit GEMM, Hopper and later"))
    ampere_int4_grouped_gemm_rate: float = Field(0.7, gt=0, le=1, description=(
        "the same on Volta, Turing, Ampere and Ada (mma.sync is their peak instruction)"))
    dispatcher: Literal["alltoall", "deepep", "allgather", "naive"] = Field("allgather", description=(
        "EP token exchange (calc.hardware.moe_ops.DISPATCHERS): NCCL all-to-all, DeepEP, all-gather + reduce-scatter, "
        "or vLLM's naive broadcasts + all-reduce; default: the engine's (engine_dispatcher)"))
    fp4_grouped_gemm_dim: float = Field(8192, gt=0, description=(
        "fp4 MoE grouped GEMM (NVFP4 / MXFP4 experts on an fp4 tensor-core GPU) at >= 128 tokens per expert: the "
        "expert GEMM's smaller weight dimension from which it runs at a dense fp4 GEMM's rate"))
    fp4_grouped_gemm_exponent: float = Field(0.63, ge=0, description=(
        "below fp4_grouped_gemm_dim the rate falls as (d / fp4_grouped_gemm_dim) ** exponent"))
    fp8_tensor_grouped_gemm_rate: float = Field(0.8, gt=0, le=1, description=(
        "per-tensor fp8 MoE grouped GEMM rate at >= 128 tokens per expert, against a dense fp8 GEMM"))
    chunked_decode: Literal["chunk", "window"] = Field("chunk", description=(
        "what a chunked-attention layer (Llama 4) reads in a decode step: its own chunk, restarting every "
        "attention_chunk_size tokens (chunk: vLLM's local-attention virtual batches, SGLang's local attention), or the "
        "last chunk-size tokens like a sliding window (window: TensorRT-LLM applies chunked attention to context "
        "requests only); default: the engine's (engine_chunked_decode)"))
    attention_windows: Literal["applied", "full"] = Field("applied", description=(
        "whether the engine runs a sliding-window layer over its window (applied: vLLM, SGLang, TensorRT-LLM's "
        "PyTorch backend) or over the whole context, attending and caching every token (full: TensorRT-LLM's engine "
        "flow, releases before 1.0, whose window is the run-time max_attention_window_size that trtllm-bench does not "
        "pass); default: the engine's (engine_attention_windows)"))
    moe_permute_scope: Literal["local", "zero-fill", "deepgemm", "gathered"] = Field("deepgemm", description=(
        "which routed copies an all-gather-fed rank's permute / unpermute touches (calc.serving.step.MOE_PERMUTE_SCOPES): "
        "only its local experts' (TensorRT-LLM CUTLASS MoE, vLLM DeepGEMM), a zero-fill + top-k sum over every gathered "
        "copy (vLLM / SGLang Triton fused MoE with an expert map), vLLM's choice between the two (deepgemm), or every "
        "gathered copy (gathered); default: the engine's (engine_permute_scope)"))

    def imbalance(self, ep: int) -> float:
        """expert_imbalance on an EP group of ``ep`` ranks: at most ep, every token on one rank (the busiest rank
        cannot receive more than all of them).

        >>> ServingAssumptions(expert_imbalance=100).imbalance(8), ServingAssumptions().imbalance(8)
        (8, 1.3)
        """
        return min(self.expert_imbalance, ep)

    def lines(self, moe: bool = True, split: bool = True, chunked: bool = False) -> list[str]:
        """The assumptions as --explain and JSON ``assumptions`` list them; those that cannot apply are left out: the
        MoE line for a model without routed experts (``moe`` False), the communication buffers for a deployment on
        one GPU (``split`` False: no communicator is built, calc.serving.engine_memory); the chunked-attention line for
        a model with chunked layers only (``chunked``)."""
        return [
            *(["chunked-attention layers in decode read "
               + ("their own chunk (restarting every chunk; half a chunk on average over a long generation)"
                  if self.chunked_decode == "chunk" else "the last chunk-size tokens, as a sliding window")
               + f" (chunked_decode {self.chunked_decode}, the engine's: calc.serving.assumptions.engine_chunked_decode)"]
              if chunked else []),
            *(["sliding-window layers attend and cache the whole context, as full attention (attention_windows full, "
               "the engine's: calc.serving.assumptions.engine_attention_windows)"] if self.attention_windows == "full"
              else []),
            f"non-torch memory per GPU (CUDA context, workspaces) = {self.cuda_context_gib:g} GiB, where the engine "
            "counts the CUDA context (SGLang, TensorRT-LLM, vLLM V1 before 0.9.1, V0 0.6.4: calc.serving."
            "engine_memory.vllm_counts_cuda_context; the concurrency answer's line says which applies)",
            *(["NCCL / custom all-reduce buffers per GPU when split = "
               + (f"{self.comm_buffer_gib:g} GiB" if self.comm_buffer_gib is not None else
                  "by topology (calc.serving.comm_memory: NCCL ring / tree / NVLS buffers on NVSwitch nodes, 0.25 GiB "
                  "elsewhere)")] if split else []),
            f"non-torch memory above a vLLM baseline snapshot (load / profile workspaces) = {self.profile_non_torch_gib:g} GiB; "
            f"vLLM V1 >= 0.20 CUDA-graph estimate = {self.cuda_graph_gib:g} GiB; TensorRT-LLM CUDA-graph pool at batch "
            + (f"{self.trtllm_graph_batch}" if self.trtllm_graph_batch is not None else "max_batch_size")
            + " (logits B x V + per-token intermediates, calc.serving.trtllm_memory)",
            f"per-step scheduling/launch overhead = {self.step_overhead_s * 1e3:g} ms + "
            f"{self.step_overhead_per_seq_s * 1e6:g} us per sequence in the step"
            + (f" ({self.step_overhead_from})" if self.step_overhead_from else ""),
            *(["eager steps (no CUDA / HIP graph): max(forward, kernels x launch) + overhead, launch "
               + (f"{self.eager_launch_s * 1e6:g} us" if self.eager_launch_s is not None else "by vendor: CUDA 5 us, HIP 11 us")
               + " per kernel (calc.serving.eager)"] if self.eager else []),
            *([f"multi-step scheduling (vLLM V0 --num-scheduler-steps {self.scheduler_steps}): a decode step carries "
               f"1/{self.scheduler_steps} of the per-step overhead (calc.serving.step.step_overhead)"]
              if self.scheduler_steps > 1 else []),
            *(["vLLM V0: steps holding prompt tokens run eager (no graph for a prefill), max(forward, kernels x launch) "
               "+ overhead (calc.serving.eager)"] if self.eager_prefill and not self.eager else []),
            *([f"decode attention reads each KV head {self.decode_kv_reads:g} times per step (vLLM's generic paged "
               "attention, one thread block per query head: calc.serving.decode_attention)"] if self.decode_kv_reads != 1 else []),
            *(["fp8 GEMMs unfused: an fp8 GEMM to fp32, two rescale passes and a cast (+24 B per output element, "
               "+3 kernels; vLLM before 0.7.3 on ROCm, per-channel scales: calc.serving.fp8_fallback)"]
              if self.fp8_unfused_dequant else []),
            "GEMM time per shape, HBM and collective efficiency: calc.hardware.efficiency defaults "
            "(tile quantisation, per-architecture plateau, launch cost); links and latencies from the node spec; "
            f"a collective over a PCIe node link (no NVLink between its GPUs) takes its time / {pcie_factor():g} "
            f"({describe('pcie_collective_factor', 'pcie')}; calc.hardware.collectives.pcie_factor)",
            f"a dense fp8 (W8A8) linear quantizes its bf16 input first: {self.fp8_act_quant_bytes:g} B per input element "
            "at HBM bandwidth (aiconfigurator's TensorRT-LLM quantize tables; calc.serving.act_quant)",
            f"{self.gpus_per_node} GPUs per node: PP and replicas cross nodes; a TP group wider than a node (serve's "
            f"TP {2 * self.gpus_per_node} layouts, flagged tp_spans_nodes, or a given --tp / --num-gpus) runs its "
            "collectives over the inter-node link",
            *([f"MoE: grouped GEMM weight stream at {self.grouped_gemm_efficiency:g} of a dense GEMM's at every size, its "
               f"compute at {self.grouped_gemm_efficiency:g} of a dense GEMM's rate below 128 tokens per expert, "
               f"fp8 at {self.fp8_grouped_gemm_rate:g} (block scales) / {self.fp8_tensor_grouped_gemm_rate:g} (per-tensor, "
               f"TensorRT-LLM's tables) above, 16-bit at {self.ampere_grouped_gemm_rate:g} on Ampere (aiconfigurator's A100 tables), "
               f"int4 W4A16 (GPTQ / AWQ, Marlin) at {self.int4_grouped_gemm_rate:g} ({self.ampere_int4_grouped_gemm_rate:g} on "
               "Ampere / Ada, aiconfigurator's int4_wo tables), "
               f"fp4 (NVFP4 / MXFP4 on an fp4 GPU) at min(1, (d / {self.fp4_grouped_gemm_dim:g}) ^ "
               f"{self.fp4_grouped_gemm_exponent:g}) for an expert GEMM's smaller dimension d (aiconfigurator's B200 "
               "TensorRT-LLM tables), "
               f"fp8 experts taken as {self.fp8_moe_scales}-scaled (--fp8-moe-scales), "
               "the routed experts in a whole step at "
               + (f"{self.moe_serving_rate:g}" if self.moe_serving_rate is not None else _fitted_moe_rates())
               + " x those rates, "
               f"{self.moe_kernel_floor_s * 1e6:g} us fused-MoE kernel chain per layer (aiconfigurator's vLLM MoE tables); "
               f"busiest expert-parallel rank at {self.expert_imbalance:g} x the mean tokens "
               f"(SGLang large-scale EP, no EPLB); "
               + DISPATCHER_LINES[self.dispatcher].format(latency_us=self.a2a_latency_s * 1e6)
               + f" (--dispatcher {self.dispatcher})"
               + (f"; permute / unpermute under an all-gather: {PERMUTE_SCOPE_LINES[self.moe_permute_scope]}"
                  if self.dispatcher in ("allgather", "naive") else "")] if moe else []),
        ]


DEFAULT_ASSUMPTIONS = ServingAssumptions()


def engine_overhead(name: str, settings: Any, moe: bool = False) -> float:
    """The data file's value of one step-overhead part (``name``: "step_overhead_s", the fixed part, or
    "step_overhead_per_seq_s") for the engine ``settings`` name (an EngineSettings) and the model's MoE-ness
    (overhead_family: vLLM releases before 0.8, V0 by EngineSettings.accounting, read "vllm-v0", later ones "vllm",
    SGLang and TensorRT-LLM their own); a key the file does not hold reads its "other" value
    (calc/data/fitted_defaults.json, benchmarks/fit_corpus.py)."""
    values = parameter(name)
    return values.get(overhead_family(settings, moe), values["other"])


DISPATCHER_LINES = {  # --explain, by ServingAssumptions.dispatcher
    "deepep": "DeepEP dispatch + combine, low-latency kernels at decode sizes ({latency_us:g} us per call)",
    "alltoall": "NCCL all-to-all of every routed copy, bf16 both ways",
    "allgather": "experts fed by all-gather + reduce-scatter over the EP group (NCCL ring)",
    "naive": "experts fed by one broadcast per DP rank + an all-reduce of the gathered rows (vLLM naive)",
}

PERMUTE_SCOPE_LINES = {  # --explain, by ServingAssumptions.moe_permute_scope
    "local": "only the local experts' routed copies are permuted and summed, every gathered row written "
             "(TensorRT-LLM CUTLASS MoE, vLLM DeepGEMM)",
    "zero-fill": "4 B per element of every gathered routed copy (zero-fill + top-k sum) and 2 B of the local experts' "
                 "(vLLM / SGLang Triton fused MoE, expert map)",
    "deepgemm": "vLLM's: local copies only on DeepGEMM (block-fp8 experts on Hopper / Blackwell, >= 128 gathered rows), "
                "else the Triton zero-fill + top-k sum over every gathered copy",
    "gathered": "every rank permutes all EP x T gathered rows' routed copies (upper bound)",
}


def engine_permute_scope(engine: str | None, version: tuple[int, ...] | None = None) -> str:
    """ServingAssumptions.moe_permute_scope an engine runs (calc.serving.step.MOE_PERMUTE_SCOPES, sources there):
    "local" for TensorRT-LLM (CUTLASS MoE: expandInputRowsKernel and finalizeMoeRoutingKernel touch only local
    copies), "zero-fill" for SGLang (fused_moe_triton with filter_expert + moe_sum_reduce over [M, k, H]) and for
    vLLM V0 and vLLM releases before VLLM_DEEPGEMM_DEFAULT_FROM (VLLM_USE_DEEP_GEMM defaulted to "0": the Triton
    kernels), "deepgemm" for vLLM from then on and any other name (DeepGEMM's ep_scatter / ep_gather for block-fp8
    experts, else Triton's zero-fill). ``version`` None: the current release.

    >>> engine_permute_scope("trtllm"), engine_permute_scope("sglang"), engine_permute_scope("vllm")
    ('local', 'zero-fill', 'deepgemm')
    >>> engine_permute_scope("vllm", (0, 10, 1)), engine_permute_scope("vllm-v0")
    ('zero-fill', 'zero-fill')
    """
    if engine == "vllm-v0" or (engine == "vllm" and version is not None and version < VLLM_DEEPGEMM_DEFAULT_FROM):
        return "zero-fill"
    return {"trtllm": "local", "sglang": "zero-fill"}.get(engine or "", "deepgemm")


# vllm/envs.py VLLM_USE_DEEP_GEMM: default "0" in the releases that introduced it (still "0" where
# VLLM_USE_DEEP_GEMM_E8M0 already existed, the 0.10 line), "1" in current main (with VLLM_MOE_USE_DEEP_GEMM "1").
# The release that flipped it was not read here; taken as 0.11, the AgRs boundary (VLLM_AGRS_DEFAULT_FROM).
VLLM_DEEPGEMM_DEFAULT_FROM = (0, 11)


# vLLM's default expert-parallel all2all backend (vllm/envs.py VLLM_ALL2ALL_BACKEND, later vllm/config/parallel.py
# ParallelConfig.all2all_backend / --all2all-backend): "naive" from its introduction (v0.9.0) through the 0.10 line
# (ROCm/vllm tags v0.9.0.1, v0.9.2 and its 2025-09-06 branches: lambda: os.getenv("VLLM_ALL2ALL_BACKEND", "naive"));
# "allgather_reducescatter" after vllm-project/vllm PR #23964 (AgRsAll2AllManager, Sept 2025: env_with_choices(...,
# "allgather_reducescatter", ...)), kept when the option moved to --all2all-backend (PR #33535); PR #33728 (Feb 2026)
# removed "naive" ("allgather_reducescatter is already the default").
VLLM_AGRS_DEFAULT_FROM = (0, 11)


def engine_chunked_decode(engine: str | None) -> str:
    """ServingAssumptions.chunked_decode an engine runs: "window" for TensorRT-LLM, whose chunked attention applies to
    context requests only (docs/source/features/long-sequence.md, 1.0: "Note that chunked attention can only be
    applied to context requests"; its generation steps attend the cached window), "chunk" otherwise: vLLM splits
    each request into attention_chunk_size virtual batches for the chunked layers (make_local_attention_virtual_batches,
    vllm/v1/attention/backends/utils.py), SGLang's FlashAttention-3 backend runs them as local attention over the
    query's chunk (flashattention_backend.py, attention_chunk_size).

    >>> engine_chunked_decode("trtllm"), engine_chunked_decode("vllm"), engine_chunked_decode("sglang")
    ('window', 'chunk', 'chunk')
    """
    return "window" if engine == "trtllm" else "chunk"


TRTLLM_WINDOWS_FROM = (1, 0)  # the PyTorch backend, TensorRT-LLM's default flow from 1.0 (calc.serving.trtllm_memory)


def engine_attention_windows(engine: str | None, version: tuple[int, ...] | None = None) -> str:
    """ServingAssumptions.attention_windows a release runs: "full" for TensorRT-LLM's TensorRT engine flow (releases
    before 1.0), "applied" otherwise.

    The engine flow takes a sliding window as a run-time setting, max_attention_window_size (the cyclic KV cache and
    the FMHA mask both follow it; NVIDIA/TensorRT-LLM issue 1404, 0.8.0: Mistral 7B v0.1's 4,096-token window applies
    once it is passed to examples/run.py), and its default is the engine's max_seq_len: without it every layer
    attends and caches the whole context, which is how trtllm-bench's throughput runs (the perf-overview tables) run
    a window the model's config.json declares. vLLM (PagedAttention's sliding_window, then V1's SlidingWindowSpec)
    and SGLang apply the config's window; the PyTorch backend passes attention_window_size to the kernel for
    Starcoder2, Gemma 3, Cohere2, EXAONE 4 and gpt-oss, but for Mistral / Mixtral only from NVIDIA/TensorRT-LLM PR
    12597 (merged 2026-03-30): a 1.x release before it runs Mistral 7B v0.1 with full attention, which is not told
    apart here (the release holding the fix is not pinned), so 1.x reads "applied".

    >>> engine_attention_windows("trtllm", (0, 17, 0)), engine_attention_windows("trtllm", (1, 0)), engine_attention_windows("vllm")
    ('full', 'applied', 'applied')
    """
    return "full" if engine == "trtllm" and version is not None and version < TRTLLM_WINDOWS_FROM else "applied"


def engine_dispatcher(engine: str | None, version: tuple[int, ...] | None = None) -> str:
    """ServingAssumptions.dispatcher an engine runs when none is asked for (calc.hardware.moe_ops.DISPATCHERS):

        vllm         "naive" before 0.11 (VLLM_ALL2ALL_BACKEND="naive"), "allgather" from 0.11
                     (allgather_reducescatter: AgRsAll2AllManager all_gatherv + reduce_scatterv over the DP group)
        sglang       "allgather": --moe-a2a-backend defaults to "none" (0.4.x --enable-deepep-moe off), so under
                     --enable-dp-attention the MoE layer gathers every DP rank's tokens (dp_gather: all_gather_into_tensor,
                     or an all-reduce of a zero-padded buffer) and scatters the reduced output back
                     (python/sglang/srt/layers/dp_attention.py dp_gather / dp_scatter)
        trtllm       "allgather": fused_moe_cutlass.py select_alltoall_method_type returns NotEnabled on Hopper
                     without MNNVL or TRTLLM_CAN_USE_DEEP_EP, and forward_chunk allgathers / reducescatters
        otherwise    "allgather" (the current vLLM's)

    ``version`` None: the engine's current release. DeepEP ("deepep") is opt-in in all three.

    >>> engine_dispatcher("vllm", (0, 10, 1)), engine_dispatcher("vllm", (0, 11, 0)), engine_dispatcher("sglang")
    ('naive', 'allgather', 'allgather')
    """
    if engine in ("vllm", "vllm-v0") and version is not None and version < VLLM_AGRS_DEFAULT_FROM:
        return "naive"
    return "allgather"


def overhead_family(settings: Any, moe: bool = False) -> str:
    """The step-overhead key of an engine: vllm (V1), vllm-v0 (vLLM before 0.8), sglang, trtllm; "/moe" after it for an
    MoE model. An MoE step's host-visible time beyond the kernel tables (router, top-k, token alignment and permute
    launches of every MoE layer) is fitted on MoE rows and read by MoE models alone: a dense model never reads a
    value fitted only on MoE rows (benchmarks/fit_corpus.py PRIOR)."""
    family = str(settings.accounting()).replace("vllm-v1", "vllm")
    return f"{family}/moe" if moe else family


def engine_defaults(settings: Any, moe: bool = False) -> dict[str, Any]:
    """The assumptions an engine release sets when no flag overrides them (``settings``: an EngineSettings): its
    expert-parallel dispatcher, chunked decode, attention windows, MoE permute scope, both step-overhead parts of its
    family for this model's MoE-ness (``engine_overhead``), and whether its prefill runs eager (vLLM V0 never captured
    a step holding prompt tokens). The one mapping from an engine to its assumptions: every serving command's options
    (calc.cli.serving.serving_assumptions, which lays the flags over it) and calibrate's runs
    (calc.serving.phases.phase_terms) read it."""
    version = settings.version()
    return {"dispatcher": engine_dispatcher(settings.engine, version),
            "chunked_decode": engine_chunked_decode(settings.engine),
            "attention_windows": engine_attention_windows(settings.engine, version),
            "moe_permute_scope": engine_permute_scope(settings.engine, version),
            "step_overhead_s": engine_overhead("step_overhead_s", settings, moe),
            "step_overhead_per_seq_s": engine_overhead("step_overhead_per_seq_s", settings, moe),
            "eager_prefill": settings.accounting() == "vllm-v0"}


def _fitted_moe_rates() -> str:
    """The fitted moe_serving_rate defaults as --explain prints them: the keys fitted away from 1, then the rest."""
    rates = parameter("moe_serving_rate")
    moved = [f"{key} {value:g}" for key, value in rates.items() if key != "other" and value != 1.0]
    w4a16 = any("/w4a16" in m for m in moved)  # calc.serving.moe.moe_rate_key
    return "the fitted moe_serving_rate (" + ", ".join([*moved, "1 elsewhere"] if moved else ["1 everywhere"]) \
        + ("; w4a16: 4-bit experts dequantised to 16 bits in the kernel, MXFP4 on a GPU without an fp4 peak, GPTQ / AWQ"
           if w4a16 else "") + "; calc/data/fitted_defaults.json)"

