"""Step time of a training plan: compute, recomputation, TP/EP/CP communication per micro-batch, the
pipeline bubble and stage sends, data-parallel gradient reduction, ZeRO-3 gathers and the optimizer step.

    step = m x t_mb + (p-1)/v x t_mb + p2p + DP exposed + ZeRO-3 exposed + optimizer
with m = B/(d*b) micro-batches and t_mb the forward + backward time of one micro-batch on the slowest
pipeline stage (its compute, recomputation and exposed TP/EP/CP communication; calc.training.cost), and the host
launch time each layer's forward / backward pass spends beyond that pass's GPU time (calc.training.host:
a pass costs max(GPU, host ops x host_op_s); full recomputation launches the forward twice).
  EP 1F1B     with Megatron-Core's --overlap-moe-expert-parallel-comm (pipeline_parallel/combined_1f1b.py: "EP A2A in
              forward step is hidden by the attention/mlp computation in the backward step, and vice versa") each
              MoE layer exposes exposed_time(A2A_fwd, backward compute) + exposed_time(A2A_bwd, forward compute) at the
              overlap efficiency (the first forward and last backward of a stage, 1 of m, left out)
  bubble      1F1B (p-1)/m of the pipelined time, interleaved (p-1)/(v m) (Narayanan et al. 2021,
              arXiv 2104.04473 sec. 2.2); stages hold L/p layers (or Megatron-Core's uneven
              form: ceil(L/p) in the middle, fewer first/last), the head on the last one
  p2p         each micro-batch sends its activation b*s/c*H*bytes/t forward and the gradient back, v times
              with interleaving (scatter/gather over TP, sec. 4.1), on the pipeline's slowest hop: the p stages
              t*c*d ranks apart send at once in the steady state (a ring under interleaving), so once they span
              nodes every send waits on the NIC hop (calc.hardware.collectives "p2p" over the p stages)
              Posted asynchronously and hidden under the stage's compute (m x forward + backward) at the overlap
              efficiency, or exposed whole (Efficiencies.resolved_pp_p2p_overlap): given (--pp-p2p-overlap /
              --no-pp-p2p-overlap), else the stack's: Megatron-class stacks overlap under interleaving and expose
              without (Megatron-LM turns --overlap-p2p-comm on by default with interleaving, "overlap pipeline
              parallel communication with forward and backward chunks in 1F1B", and off without a virtual pipeline,
              "non-interleaved schedule does not support overlapping p2p communication", megatron/training/
              arguments.py validate_args; NeMo 2.0's MegatronCommOverlapCallback sets overlap_p2p_comm True when
              vp_size > 1, nemo/lightning/pytorch/callbacks/megatron_comm_overlap.py); Llama 3 405B adopts
              "asynchronous point-to-point communication in PP" (arXiv 2407.21783 sec. 3.3.2)
  DP          gradients (N_local x grad bytes; N_local the parameters per GPU of the pipeline rank holding the
              most, calc.memory.pipeline.stage_params: the embedding on the first, the head on the last, fullest_rank_share)
              all-reduced (ZeRO 0) or reduce-scattered (ZeRO >= 1, then the
              updated bf16 weights all-gathered, exposed) over the d*c ranks, in buckets overlapped with the
              last backward except the last bucket (PyTorch DDP / Megatron DDP)
  ZeRO-3      per micro-batch: weights all-gathered for forward and again for backward, gradients
              reduce-scattered; hidden under that micro-batch's compute at the overlap efficiency
  FSDP+PP     torchtitan's FSDP2 with PP (calc.memory.training.fsdp_pp_states): the stage's weights are
              all-gathered once per step (reshard_after_forward=False: the first micro-batch's forward gathers,
              no later one re-gathers; the first layer's gather exposed, the rest hidden under that forward at
              the overlap efficiency) and its fp32 gradients reduce-scattered once, after the last backward
              (torch/distributed/pipelining/stage.py runs FSDP's post-backward then, with no compute left to
              hide it under: exposed whole)
  ZeRO2+PP    Llama 3's FSDP with PP (calc.memory.training.zero2_pp_states; arXiv 2407.21783 sec. 3.3.2): every
              micro-batch's gradients reduce-scattered in fp32 on the communication stream while the 1F1B steady
              state runs the next micro-batch's forward and backward (m reduce-scatters, each in a window of one
              micro-batch's forward + backward, hidden at the overlap efficiency, what overflows exposed), the
              updated bf16 weights all-gathered once after the optimizer (exposed, as ZeRO-1/2's)
  optimizer   N_local (/d*c with ZeRO >= 1) x the recipe's bytes of HBM traffic (calc.memory.training.optimizer_step_bytes:
              bf16-adam 28)
  offload     activation offloading (--cpu-offload-layers, --offload-modules): per micro-batch the bytes it takes off the
              GPU cross the host link to host memory in the forward and back in the backward, each copy hidden under
              that pass's compute at the overlap efficiency (calc.training.offload)
MFU = 3 x forward FLOPs (full s x s attention, the PaLM / Megatron convention) x B / (step x N x peak);
HFU adds the recomputed FLOPs (full: one forward of the layers; selective: the attention core; --recompute-modules:
the listed modules' GEMMs / attention, calc.training.cost "recompute modules", the same modules the step re-runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from calc.hardware.efficiency import exposed_time
from calc.hardware.peaks import peak_name, peak_tflops
from calc.memory.pipeline import (
    held_ends,
    peak_held_layers,
    stage_params,
    stage_params_note,
)
from calc.memory.result import MemoryResult
from calc.memory.training import (
    DEFAULT_CUDA_CONTEXT_GIB,
    FSDP_PP,
    ZERO2_PP,
    host_offload_bytes,
    routed_expert_params,
    training_bytes_per_gpu,
    training_memory,
    training_setup,
)
from calc.model.parallel import pipeline_stage_layers
from calc.model.params import count_params, total_params
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.training.cost import Efficiencies, ModelCost
from calc.training.fp8_recipe import saved_gemm_input_bytes
from calc.training.host import exposed_host_s
from calc.training.layout import Layout, offloaded_stage_layers, uneven_stage_note
from calc.training.offload import host_copy_rate
from calc.training.stack import LOOPED_EXPERTS_WARNING, band_stack, check_stack_runs, check_tp, loops_experts, stack_key
from calc.units import GIB, TERA, figure, fp32_run

TERM_KEYS = (
    "compute_s", "recompute_s", "host_s", "tp_comm_s", "ep_comm_s", "cp_comm_s", "pp_bubble_s", "pp_p2p_s",
    "dp_comm_s", "zero_gather_s", "optimizer_s", "offload_s",
)


@dataclass
class StepTerms:
    """Exposed seconds per step by term (they sum to step_time_s), the raw communication totals and the stage."""

    step_time_s: float
    exposed: dict[str, float]
    totals: dict[str, float]
    micro_batches: int
    t_microbatch_s: float
    stage: dict[str, float]
    stage_index: int
    stage_layers: int
    local_params: float
    local_trainable: float = 0.0  # the parameters whose gradients this rank reduces and steps (LoRA: the adapters)

    def mfu(self, cost: ModelCost, global_batch: int, num_gpus: int) -> float:
        peak = peak_tflops(cost.gpu, cost.dtype) * TERA
        return global_batch * cost.model_flops_per_seq / (self.step_time_s * num_gpus * peak)


def stage_layers(num_layers: int, pp: int, embedding: bool = False, loss: bool = False) -> list[tuple[int, int]]:
    """(first layer, layer count) per stage, as Megatron-Core places them (calc.model.parallel.pipeline_stage_layers:
    L/p each, or equal middle stages of ceil(L/p) with fewer on the first/last, or (L + e + l)/p with the embedding /
    loss counted as a layer of the first / last stage; the last also carries the head)."""
    counts = pipeline_stage_layers(num_layers, pp, embedding, loss)
    if counts is None:
        raise ValueError(f"{pp} pipeline stages cannot hold {num_layers} layers (check_training_layout refuses it)")
    out, start = [], 0
    for count in counts:
        out.append((start, count))
        start += count
    return out


def chunk_share(stages: list[tuple[int, int]], worst: int, v: int, accounted: bool = False) -> float:
    """Share of the slowest stage's micro-batch time one pipeline step of the bubble takes: 1/v when every stage's
    layers split into v equal model chunks (Narayanan et al. 2021 sec. 2.2: bubble (p - 1)/v x t_mb); else the
    fullest chunk's layers over the slowest stage's, max_i ceil(n_i / v) / n_worst. A stage of n layers not divisible
    by v (Megatron-Core refuses it with --decoder-first/last-pipeline-num-layers, transformer_config.py "number of
    layers ... must be divisible by virtual pipeline parallel degree"; only a --pipeline-model-parallel-layout places
    it) runs chunks of ceil(n/v) and floor(n/v) layers, and the warm-up and cool-down wait on the fuller ones: PP 16 x
    VPP 7 with 8 layers a stage waits 2 layers a step, as VPP 4 does, not 8/7. ``accounted`` (embedding / loss counted
    in the split): Megatron-Core's rule makes the slots divide by v, 1/v.

    >>> chunk_share([(0, 8), (8, 8)], 0, 4), chunk_share([(0, 8), (8, 8)], 0, 7)
    (0.25, 0.25)
    """
    if v == 1 or accounted:
        return 1 / v
    return max(math.ceil(n / v) for _start, n in stages) / max(stages[worst][1], 1)


def _kind_counts(cost: ModelCost, start: int, count: int) -> list[tuple[int, int]]:
    """How many layers of each kind fall in [start, start + count), kinds taken as contiguous in order of first use
    (a DeepSeek-style MoE's dense layers first). An interleaved model (Llama 4 Maverick's alternating dense / MoE
    layers, a hybrid's linear / attention ones) is placed the same way: its true order was tried in pass 17 and not
    adopted (notes/issues21-24-pass17.md: after the refit the fit split's balanced error rose 0.179 -> 0.187, the
    Blackwell plateaus falling back to their priors in leave-one-source-out cross-validation)."""
    out, first = [], 0
    for index, (_, n, _) in enumerate(cost.kinds):
        lo, hi = max(start, first), min(start + count, first + n)
        if hi > lo:
            out.append((index, hi - lo))
        first += n
    return out


# sac (torchtitan op-level SAC) recomputes every second matmul: half the non-attention forward, in the step time
# (_stage_cost) and in the HFU count (hfu_flops) alike.
SAC_RECOMPUTE_SHARE = 0.5


def _stage_cost(cost: ModelCost, layout: Layout, start: int, count: int, last: bool) -> dict[str, float]:
    eff = cost.eff
    full, selective = layout.recompute == "full", layout.recompute == "selective"
    modules = layout.recompute_modules if selective else frozenset()
    s = dict.fromkeys(("fwd", "bwd", "rec", "tp", "ep", "cp", "host", "tp_total", "ep_total", "cp_total"), 0.0)
    tp_hidden = eff.resolved_tp_overlap(layout.tp, layout.sp, cost.lora is not None)
    for index, n in _kind_counts(cost, start, count):
        lc = cost.layer(index, layout.micro_batch, layout.tp, layout.cp, layout.ep, layout.sp, layout.expert_tp)
        s["fwd"] += n * lc.fwd
        s["bwd"] += n * lc.bwd
        # Megatron-Core --recompute-modules: the listed modules' forward again (calc.training.cost, "recompute modules")
        rec, rec_tp, rec_ep = lc.module_recompute(modules) if modules else (0.0, 0.0, 0.0)
        # selective (core_attn): Megatron-Core's checkpointed core attention (attention.py _checkpointed_attention_forward)
        # runs its forward again before the backward, the fused flash kernel included
        s["rec"] += n * (lc.fwd if full else rec if modules else lc.attn_fwd if selective
                         # sac: every second weight matmul again; eager attention's core too (not on its save list)
                         else SAC_RECOMPUTE_SHARE * (lc.fwd - lc.attn_fwd) + (0.0 if cost.eff.flash else lc.attn_fwd)
                         if layout.recompute == "sac"
                         else lc.norm_up_fwd if layout.recompute == "deepseek"
                         # JAX's dots policy: the attention core and the elementwise ops forward again, no weight GEMM
                         else lc.attn_fwd + lc.ew_fwd if layout.recompute == "dots" else 0.0)
        tp = lc.tp_fwd + lc.tp_bwd + (lc.tp_fwd if full else rec_tp)
        ep = lc.ep_fwd + lc.ep_bwd + (lc.ep_fwd if full else rec_ep)
        s["tp_total"] += n * tp
        s["ep_total"] += n * ep
        # each pass's TP collectives hide (their overlapped share) only under the GEMMs they run beside (Transformer
        # Engine userbuffers), so a link slower than the GEMMs (TP over PCIe) leaves its excess on the step
        tp_fwd_x, tp_bwd_x = exposed_time(lc.tp_fwd, lc.gemm_fwd, tp_hidden), exposed_time(lc.tp_bwd, 2 * lc.gemm_fwd,
                                                                                           tp_hidden)
        s["tp"] += n * (tp_fwd_x + tp_bwd_x + (tp_fwd_x if full else exposed_time(rec_tp, rec, tp_hidden)))
        if eff.ep_overlap_1f1b:  # forward A2A under the backward compute of another micro-batch, and vice versa
            s["ep"] += n * (exposed_time(lc.ep_fwd, lc.bwd, eff.overlap) + exposed_time(lc.ep_bwd, lc.fwd, eff.overlap)
                            + (lc.ep_fwd if full else rec_ep))
        else:  # a fixed share hidden, at most under the layer's compute (forward and backward)
            s["ep"] += n * exposed_time(ep, lc.fwd + lc.bwd, eff.ep_overlap)
        s["cp"] += n * (lc.cp_fwd + lc.cp_bwd + (lc.cp_fwd if full else 0.0))
        s["cp_total"] += n * lc.cp_total
        # each pass costs max(GPU, host launches) (calc.training.host): the GPU pass with its exposed communication
        ep_share = 0.0 if eff.ep_overlap_1f1b else 1 - eff.ep_overlap  # 1F1B: the A2A sits under the other pass
        gpu_fwd = lc.fwd + tp_fwd_x + lc.ep_fwd * ep_share + lc.cp_fwd
        gpu_bwd = lc.bwd + tp_bwd_x + lc.ep_bwd * ep_share + lc.cp_bwd
        s["host"] += n * (exposed_host_s(lc.host_fwd, gpu_fwd) * (2 if full else 1) + exposed_host_s(lc.host_bwd, gpu_bwd))
    if last:
        hf, hb = cost.head_cost(layout.micro_batch, layout.tp, layout.cp)
        s["fwd"] += hf
        s["bwd"] += hb
    s["t_mb"] = s["fwd"] + s["bwd"] + s["rec"] + s["tp"] + s["ep"] + s["cp"] + s["host"]
    return s


def step_terms(cost: ModelCost, layout: Layout, global_batch: int, micro: int) -> StepTerms:
    """Evaluate a (validated) layout: plain floats, no pydantic (the plan search's hot path)."""
    eff, m = cost.eff, cost.m
    tp, pp, dp, cp, ep, v, b = layout.tp, layout.pp, layout.dp, layout.cp, layout.ep, layout.vpp, layout.micro_batch
    stages = stage_layers(m.num_layers, pp, layout.pp_embedding, layout.pp_loss)
    picks = sorted({0, 1, pp - 2, pp - 1} & set(range(pp)))
    worst, worst_i = None, 0
    for i in picks:
        st = _stage_cost(cost, layout, *stages[i], last=i == pp - 1)
        if worst is None or st["t_mb"] > worst["t_mb"]:
            worst, worst_i = st, i
    assert worst is not None
    t_mb = worst["t_mb"]
    bubble = (pp - 1) * t_mb * chunk_share(stages, worst_i, v, layout.pp_embedding or layout.pp_loss)
    p2p = p2p_total = 0.0
    if pp > 1:
        act = b * cost.seq / cp * m.hidden_size * cost.elem / tp
        p2p = p2p_total = micro * 2 * v * cost.coll("p2p", act, pp, tp * cp * dp)
        if eff.resolved_pp_p2p_overlap(v):
            p2p = exposed_time(p2p_total, micro * (worst["fwd"] + worst["bwd"]), eff.overlap)
    # routed experts: split ETP x EP ways, reduced / sharded over the EDP ranks ETP x EP apart (calc.training.layout)
    etp, edp = layout.expert_tp, layout.edp
    # the parameters of the rank holding the most (calc.memory.pipeline.stage_params: the embedding on the first rank,
    # the head on the last, each rank its own layers), whose reduce, gather and optimizer step the others wait for:
    # N/(t p) x that rank's share, dense and routed experts apart
    share_d, share_e = fullest_rank_share(cost.m, layout, tp, etp * ep)
    dense = (cost.total_params - cost.expert_params) / (tp * pp) * share_d
    experts = cost.expert_params / (etp * pp * ep) * share_e
    local = dense + experts
    dpc = dp * cp
    # what trains (LoRA: the adapters, calc.training.adapters): its gradients are reduced and stepped; a frozen base's
    # weights are still gathered under ZeRO-3
    dense_t = (cost.trainable_params - cost.trainable_expert_params) / (tp * pp) * share_d
    experts_t = cost.trainable_expert_params / (etp * pp * ep) * share_e

    def over_dp(kind: str, per_param: float, trainable: bool = True) -> float:
        d, e = (dense_t, experts_t) if trainable else (dense, experts)  # no collective for a part with no parameters
        return (cost.coll(kind, d * per_param, dpc, tp) if d else 0.0) + (cost.coll(kind, e * per_param, edp, etp * ep) if e else 0.0)

    dp_total = dp_exposed = zero_total = zero_exposed = 0.0
    if layout.sharding == FSDP_PP:
        gather = over_dp("all_gather", cost.elem, False)
        scatter = over_dp("reduce_scatter", eff.dp_reduce_bytes)
        first_gather = gather / max(stages[worst_i][1], 1)
        zero_total = gather + scatter
        zero_exposed = first_gather + exposed_time(gather - first_gather, worst["fwd"], eff.overlap) + scatter
    elif layout.sharding == ZERO2_PP:
        # Llama 3's FSDP with PP (calc.memory.training.zero2_pp_states): every micro-batch's gradients reduce-scattered
        # on the communication stream while the 1F1B steady state runs the next forward and backward (a window of one
        # micro-batch's forward + backward each), the updated 16-bit weights all-gathered once after the optimizer
        # (exposed, as ZeRO-1/2's)
        scatter = over_dp("reduce_scatter", eff.dp_reduce_bytes)
        gather = over_dp("all_gather", cost.elem)
        dp_total = micro * scatter + gather
        dp_exposed = micro * exposed_time(scatter, worst["fwd"] + worst["bwd"], eff.overlap) + gather
    elif layout.zero == 3:
        per_mb = 2 * over_dp("all_gather", cost.elem, False) + over_dp("reduce_scatter", eff.dp_reduce_bytes)
        first_gather = over_dp("all_gather", cost.elem, False) / max(stages[worst_i][1], 1)
        zero_total = micro * per_mb
        zero_exposed = micro * (exposed_time(per_mb, t_mb, eff.overlap) + first_gather)
    else:
        grads = over_dp("allreduce" if layout.zero == 0 else "reduce_scatter", eff.dp_reduce_bytes)
        buckets = max(1, math.ceil((dense_t + experts_t) / eff.bucket_params))
        hidden_part = grads * (1 - 1 / buckets)
        dp_exposed = grads / buckets + exposed_time(hidden_part, worst["bwd"], eff.overlap)
        dp_total = grads
        if layout.zero in (1, 2):
            gather = over_dp("all_gather", cost.elem)
            dp_total += gather
            dp_exposed += gather
    opt_params = dense_t / dpc + experts_t / edp if layout.zero >= 1 else dense_t + experts_t  # the optimizer's shard
    optimizer = opt_params * eff.step_optimizer_bytes / cost.hbm
    copy = offload_copy_s(cost, layout, micro, stages[worst_i][1])  # one micro-batch's offload, each way
    exposed = {
        "compute_s": micro * (worst["fwd"] + worst["bwd"]),
        "recompute_s": micro * worst["rec"],
        "host_s": micro * worst["host"],
        "tp_comm_s": micro * worst["tp"],
        "ep_comm_s": micro * worst["ep"],
        "cp_comm_s": micro * worst["cp"],
        "pp_bubble_s": bubble,
        "pp_p2p_s": p2p,
        "dp_comm_s": dp_exposed,
        "zero_gather_s": zero_exposed,
        "optimizer_s": optimizer,
        "offload_s": micro * (exposed_time(copy, worst["fwd"], eff.overlap) + exposed_time(copy, worst["bwd"], eff.overlap)),
    }
    totals = dict(exposed)
    totals.update(offload_s=micro * 2 * copy, tp_comm_s=micro * worst["tp_total"], ep_comm_s=micro * worst["ep_total"],
                  cp_comm_s=micro * worst["cp_total"], dp_comm_s=dp_total, zero_gather_s=zero_total, pp_p2p_s=p2p_total)
    return StepTerms(
        step_time_s=sum(exposed.values()), exposed=exposed, totals=totals, micro_batches=micro, t_microbatch_s=t_mb,
        stage=worst, stage_index=worst_i, stage_layers=stages[worst_i][1], local_params=local,
        local_trainable=dense_t + experts_t,
    )


def offload_copy_s(cost: ModelCost, layout: Layout, micro: int, stage_layers: int) -> float:
    """Seconds one micro-batch's activation offload takes each way on a GPU of the stage (calc.training.offload):
    calc.memory.training.host_offload_bytes of the block the memory engine prices (``engine_options``) over the host
    copy rate; 0 without offloading."""
    flag = layout.offload_flag()
    if flag is None:
        return 0.0
    o = engine_options(layout, micro, num_layers=cost.m.num_layers, dtype=cost.dtype, eff=cost.eff)
    setup = training_setup(tp=layout.tp, sp=layout.sp, flash=o["flash"], fused=o["fused"], dropout=o["dropout"],
                           recompute_modules=o["recompute_modules"], gemm_input_bytes=o["gemm_input_bytes"],
                           offload_modules=o["offload_modules"], act_bytes=o["act_bytes"])
    moved = host_offload_bytes(cost.m, micro_batch=layout.micro_batch, s_local=cost.seq // layout.cp,
                               stage_layers=stage_layers, offloaded_layers=layout.cpu_offload_layers,
                               recompute=layout.recompute, setup=setup)
    return moved / host_copy_rate(cost.gpu, cost.eff.host_copy_gb_s, flag)[0]


def fullest_rank_share(m: ModelSpec, layout: Layout, tp: int, expert_split: int) -> tuple[float, float]:
    """(dense, routed-expert) parameters of the pipeline rank holding the most per GPU (dense split ``tp`` ways,
    experts ``expert_split`` = ETP x EP ways), each over the stage average N/p: (1, 1) without PP or for a split
    Megatron-Core cannot place. Llama 3 8B on PP 4: the last rank's 2,270,236,672 parameters (8 layers + the final
    norm + the head) over 8,030,261,248 / 4 -> 1.1308."""
    shares = stage_params(m, layout.pp, layout.stage_split) if layout.pp > 1 else None
    if shares is None:
        return 1.0, 1.0
    d_r, e_r = max(shares, key=lambda de: de[0] / tp + de[1] / expert_split)
    experts_all = routed_expert_params(m)
    model_dense = total_params(m) - experts_all
    return (d_r * layout.pp / model_dense if model_dense else 1.0, e_r * layout.pp / experts_all if experts_all else 1.0)


def engine_options(layout: Layout, micro: int, *, num_layers: int, dtype: str = "bf16", eff: Efficiencies | None = None,
                   activations: str | None = None) -> dict:
    """The memory engine's options for a plan (keyword arguments shared by ``training_bytes_per_gpu`` and
    ``training_memory``), the one mapping from a Layout to memory: ZeRO over d*c ranks (the caller's dp), experts over e,
    ``in_flight_microbatches`` on the first stage and the schedule's layer-micro-batches on the first and last rank
    (calc.memory.pipeline.held_stage_layers), gradients persisting over the ``micro`` micro-batches, per-tensor
    activations unless ``eff.activations`` says textbook; under fp8 on a Transformer Engine stack the saved GEMM inputs
    are quantized (calc.training.fp8_recipe.saved_gemm_input_bytes); Megatron's CPU offloading keeps L - N layers
    (calc.training.layout.offloaded_stage_layers); the loss, fusions, allocator fragmentation, gradient buffer, FSDP
    unit gradient bytes and caching-allocator blocks of the stack (``eff.resolved_memory()``, calc.training.stack.MEMORY:
    Megatron's on the default stack, a ZeRO-3 unit's gradient fp32 off it, HF Trainer's eager settings on hf)."""
    eff = eff or Efficiencies()
    stack = stack_key(eff.stack)
    mem = eff.resolved_memory()
    return dict(
        ep=layout.ep, etp=layout.etp, zero=layout.zero, micro_batch=layout.micro_batch, recompute=layout.recompute,
        flash=eff.flash, in_flight=in_flight_microbatches(layout, micro), activations_model=activations or eff.activations,
        dropout=eff.dropout, fused=mem.fused, grad_accum=micro, fragmentation=mem.fragmentation, grad_buffer=mem.grad_buffer,
        loss=mem.loss, sharding=layout.sharding, recompute_modules=layout.recompute_modules,
        offload_layers=offloaded_stage_layers(layout, num_layers),
        gemm_input_bytes=saved_gemm_input_bytes(dtype, stack, eff.resolved_fp8_recipe()),
        fsdp_reduce_bytes=mem.fsdp_reduce_bytes, offload_modules=layout.offload_modules,
        caching_allocator=mem.caching_allocator, recipe=eff.recipe, act_bytes=activation_bytes(dtype),
        held_layers=layout_held_layers(num_layers, layout, micro), fp32_shards=mem.fp32_shards,
        pp_split=layout.stage_split, rank_held=layout.rank_held(num_layers, micro),
    )


def stack_warnings(cost: ModelCost) -> list[str]:
    """What the step model does not time on this stack, as "flag: message" lines carried in the result (its JSON
    ``warnings``, and stderr): an MoE model under a stack that loops over its experts (calc.training.stack.
    LOOPED_EXPERTS) is timed as grouped GEMMs, a lower bound."""
    if cost.m.moe is not None and loops_experts(cost.eff.stack):
        return [f"--stack: {LOOPED_EXPERTS_WARNING.format(name=stack_key(cost.eff.stack))}"]
    return []


def layout_held_layers(num_layers: int, layout: Layout, micro: int) -> tuple[int, int] | None:
    """The layer-micro-batches the layout's schedule keeps on its fullest rank but the last, and its last
    (calc.memory.pipeline.held_ends of Layout.rank_held)."""
    return held_ends(layout.rank_held(num_layers, micro))


def activation_bytes(dtype: str) -> int:
    """Bytes per saved activation element of a run computing in ``dtype``: 4 for fp32 / TF32 (the matmuls run TF32,
    the tensors stay fp32), else 2 (bf16 / fp16 autocast; fp8 runs keep their non-GEMM activations in bf16).

    >>> activation_bytes("fp32"), activation_bytes("tf32"), activation_bytes("bf16"), activation_bytes("fp8")
    (4, 4, 2, 2)
    """
    return 4 if fp32_run(dtype) else 2


def memory_per_gpu(cost: ModelCost, layout: Layout, micro: int, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB,
                   activations: str | None = None, rank_peaks: list[int] | None = None) -> dict[str, int]:
    """Bytes per GPU of the plan, from the memory engine with ``engine_options`` (per-layer figures cached on ``cost``);
    a LoRA / QLoRA run (``cost.lora``) from the fine-tuning engine as `memory --mode finetune --method lora|qlora` prices it
    (lora_memory_per_gpu). ``rank_peaks``: receives each pipeline rank's peak (full training under PP)."""
    if cost.lora is not None:
        return lora_memory_per_gpu(cost, layout, micro, reserve_gib)
    return training_bytes_per_gpu(
        cost.m, params=cost.total_params, expert_params=cost.expert_params, tp=layout.tp, pp=layout.pp,
        dp=layout.dp * layout.cp, cp=layout.cp, sp=layout.sp, seq=cost.seq, reserve_bytes=int(reserve_gib * GIB),
        cache=cost.activation_cache, rank_peaks=rank_peaks,
        **engine_options(layout, micro, num_layers=cost.m.num_layers, dtype=cost.dtype, eff=cost.eff, activations=activations),
    )


def pipeline_states_line(m: ModelSpec, layout: Layout, rank_peaks: list[int]) -> list[str]:
    """--explain: how the pipeline ranks' states are priced (calc.memory.pipeline.stage_params_note), as `memory --mode
    train` says it, from each rank's peak (``memory_per_gpu``'s ``rank_peaks``); [] without PP."""
    note = stage_params_note(m, layout.pp, layout.stage_split, rank_peaks) if layout.pp > 1 else None
    return [note] if note else []


def lora_memory_per_gpu(cost: ModelCost, layout: Layout, micro: int, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB
                        ) -> dict[str, int]:
    """A LoRA step's bytes per GPU: calc.memory.finetune.finetune_memory (method lora, the frozen base in the run's
    16-bit dtype, or qlora, the base in NF4 with double-quantized absmax; Adam on the adapters) with the layout's
    TP / PP / DP / CP / SP, ZeRO, micro-batch, recompute and ``micro`` micro-batches of gradient accumulation, and the
    stack's memory settings (loss, fusions, fragmentation, gradient buffer, caching allocator): one answer for
    train-step and `memory --mode finetune`. The first stage holds the schedule's micro-batches in flight
    (in_flight_microbatches: min(p, m) under 1F1B, the interleaved warm-up with VPP), where `memory --mode finetune`,
    which takes no schedule, assumes p."""
    from calc.memory.finetune import finetune_memory
    from calc.specs import Parallelism

    assert cost.lora is not None
    mem = cost.eff.resolved_memory()
    r = finetune_memory(
        cost.m, gpu=cost.gpu, plan=Parallelism(tp=layout.tp, pp=layout.pp, dp=layout.dp, cp=layout.cp, sequence_parallel=layout.sp),
        method=cost.lora.method, lora_rank=cost.lora.rank, lora_targets=cost.lora.targets, frozen_dtype=cost.core_dtype,
        batch=layout.micro_batch, seq=cost.seq, grad_accum=micro, recompute=layout.recompute,
        attention="flash" if cost.eff.flash else "eager", fused=mem.fused, loss=mem.loss, dropout=cost.eff.dropout,
        zero=layout.zero, cuda_context_gib=reserve_gib, fragmentation=mem.fragmentation, grad_buffer=mem.grad_buffer,
        fsdp_reduce_bytes=mem.fsdp_reduce_bytes, caching_allocator=mem.caching_allocator, fp32_shards=mem.fp32_shards,
        bnb_linears=mem.bnb_linears, suggest=False,
        in_flight=in_flight_microbatches(layout, micro), held_layers=layout_held_layers(cost.m.num_layers, layout, micro),
        rank_held=layout.rank_held(cost.m.num_layers, micro), pp_split=layout.stage_split)
    return dict(r.per_gpu)


def lora_stack_note(cost: ModelCost, layout: Layout, micro: int, need: int,
                    reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB) -> str | None:
    """A LoRA / QLoRA step priced on a stack other than `memory --mode finetune`'s default (hf): the peak that command
    prints for the same job, as memory --mode finetune names train-step's figure (calc.training.cost.other_stack_note);
    None for full training, on that stack, or when the two agree."""
    from dataclasses import replace

    from calc.training.cost import other_stack_note
    from calc.training.stack import DEFAULT_STACK

    other = DEFAULT_STACK["finetune"]
    if cost.lora is None or stack_key(cost.eff.stack) == other:
        return None
    theirs = sum(lora_memory_per_gpu(replace(cost, eff=replace(cost.eff, stack=other)), layout, micro, reserve_gib).values())
    return other_stack_note(other, "memory --mode finetune", need, theirs)


def layout_memory(m: ModelSpec, layout: Layout, micro: int, *, seq: int, gpu: GPUSpec | None = None, dtype: str = "bf16",
                  eff: Efficiencies | None = None, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB,
                  global_batch: int | None = None) -> MemoryResult:
    """The memory page (`memory --mode train`, report) of a plan: ``training_memory`` with ``engine_options``, so its
    per_gpu_bytes is train-step's memory per GPU for the same layout, ``micro`` micro-batches and efficiencies (the
    training-state recipe among them, ``eff.recipe``)."""
    plan = Parallelism(tp=layout.tp, pp=layout.pp, dp=layout.dp, cp=layout.cp, sequence_parallel=layout.sp)
    slots = int(layout.pp_embedding) + int(layout.pp_loss)  # layer slots a stage of its own may hold

    def peak(lay: Layout, n: int) -> int:  # the peak of another DP / ZeRO / recompute / micro-batch at n micro-batches
        return training_memory(m, gpu=gpu, plan=plan.model_copy(update={"dp": lay.dp}), seq=seq, reserve_gib=reserve_gib,
                               pp_slots=slots, **engine_options(lay, n, num_layers=m.num_layers, dtype=dtype, eff=eff)).per_gpu_bytes

    search = (lambda: smallest_dp_count(layout, global_batch, lambda lay, n: peak(lay, n) <= gpu.cuda_total_bytes)) \
        if gpu is not None and global_batch else None  # train-step's search: each DP at its own micro-batches in flight
    result = training_memory(m, gpu=gpu, plan=plan, seq=seq, reserve_gib=reserve_gib, global_batch=global_batch,
                             min_gpus_of=search, pp_slots=slots,
                             **engine_options(layout, micro, num_layers=m.num_layers, dtype=dtype, eff=eff))
    if result.fits is not False or gpu is None:
        return result
    from calc.training.fixes import cheapest_fix

    batch = global_batch or micro * layout.dp * layout.micro_batch  # without --global-batch: the batch priced
    fix = cheapest_fix(m, layout, global_batch=batch, seq=seq, capacity_bytes=gpu.cuda_total_bytes, peak_of=peak)
    return result if fix is None else result.model_copy(
        update={"fits_with": [f"{fix.flags} ({fix.per_gpu_bytes / GIB:.1f} GiB per GPU)"]})


def stacked_layout_memory(m: ModelSpec, layout: Layout, micro: int, *, seq: int, gpu: GPUSpec | None = None,
                          dtype: str = "bf16", eff: Efficiencies | None = None,
                          reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB, global_batch: int | None = None) -> MemoryResult:
    """``layout_memory`` as a training memory page shows it (`memory --mode train`, report's timed plan): the stack it
    was priced on, its memory settings line, and, when fine-tuning's default stack (calc.training.stack.DEFAULT_STACK)
    prices the same job differently, the peak under that stack (calc.training.cost.other_stack_note)."""
    from dataclasses import replace

    from calc.training.cost import other_stack_note, stack_memory_line
    from calc.training.stack import DEFAULT_STACK

    eff = eff or Efficiencies()
    kwargs = dict(seq=seq, dtype=dtype, reserve_gib=reserve_gib)
    result = layout_memory(m, layout, micro, gpu=gpu, eff=eff, global_batch=global_batch, **kwargs)
    other, note = DEFAULT_STACK["finetune"], None
    if stack_key(eff.stack) != other:
        theirs = layout_memory(m, layout, micro, eff=replace(eff, stack=other), **kwargs).per_gpu_bytes
        note = other_stack_note(other, "--mode finetune", result.per_gpu_bytes, theirs)
    return result.model_copy(update={
        "stack": stack_key(eff.stack), "stack_note": note,
        "assumptions": [*result.assumptions, stack_memory_line(eff.stack, eff.resolved_memory()), *([note] if note else [])]})


def activation_models_line(cost: ModelCost, layout: Layout, micro: int, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB) -> str:
    """Both activation figures side by side (--explain): the per-tensor one and Korthikanti's textbook one."""
    figures = {name: memory_per_gpu(cost, layout, micro, reserve_gib, name)["activations"] for name in ("per-tensor", "textbook")}
    return (f"activations per-tensor {figures['per-tensor'] / GIB:.2f} GiB vs textbook (Korthikanti 2022) "
            f"{figures['textbook'] / GIB:.2f} GiB, {cost.eff.activations} used; "
            f"{in_flight_microbatches(layout, micro):g} micro-batches in flight on the first stage{held_note(cost.m, layout, micro)}")


def held_note(m: ModelSpec, layout: Layout, micro: int) -> str:
    """The schedule's layer-micro-batches on the fullest and the last rank (calc.memory.pipeline), for --explain."""
    held = layout_held_layers(m.num_layers, layout, micro)
    return "" if held is None else (f" (the schedule's fullest rank holds {held[0]} layer-micro-batches, "
                                    f"the last {held[1]})")


def in_flight_microbatches(layout: Layout, micro: int) -> float:
    """Micro-batches (of a whole stage's layers) whose activations the first stage holds.

    1F1B: min(p, m) (p - 1 warm-up forwards + the one in steady state). Interleaved with v chunks of L/(p v)
    layers (Narayanan et al. 2021 sec. 2.2), N micro-batches run back to back per chunk (``layout.pp_microbatch_group``,
    default p): rank r runs 2(p - r - 1) + (v - 1) N warm-up chunk forwards, capped at the m v it has, before its
    first backward (Megatron-Core schedules.py get_pp_rank_microbatches with microbatch_group_size_per_vp_stage N,
    default pipeline_model_parallel_size; torch.distributed.pipelining ScheduleInterleaved1F1B, formerly
    ScheduleFlexibleInterleaved1F1B, _get_warmup_ops: (n_local_stages - 1) x microbatches_per_round + 2 (p - 1 - rank)),
    and holds one more in the steady state. Rank 0, the most:
        (min(2(p - 1) + (v - 1) N, m v) + 1, capped at m v) chunk-micro-batches of 1/v of the stage
    = p (1 + (p - 1)/(p v)) when N = p <= m, the factor of Korthikanti et al. 2022 sec. 4.2.3. Llama 3's schedule
    (arXiv 2407.21783 sec. 3.3.2, Figure 6) makes N tunable between depth-first (N = PP) and breadth-first (N = M);
    a larger N holds (v - 1) more chunk-micro-batches per extra micro-batch of the group. The warm-up count is
    calc.memory.pipeline.peak_held_layers': rank 0 with v chunks of one layer each, over v."""
    v = layout.vpp
    return peak_held_layers(layout.pp, micro, 0, (1,) * v, layout.pp_microbatch_group) / v


def steady_state_microbatches(layout: Layout) -> int:
    """The micro-batch count of a step long enough that the first stage holds its most (``in_flight_microbatches``
    stops growing): 1 without PP; p under 1F1B; interleaved, the smallest multiple of p and of the group N (default
    p) with m v >= 2(p - 1) + (v - 1) N + 1. `memory --mode train` prices this step when no --global-batch is given
    (the memory of a real run, whose micro-batch count is at least this)."""
    if layout.pp == 1:
        return 1
    group = layout.pp if layout.pp_microbatch_group is None else layout.pp_microbatch_group
    unit = math.lcm(layout.pp, group)
    most = in_flight_microbatches(layout, 10**9)
    m = unit
    while in_flight_microbatches(layout, m) < most:
        m += unit
    return m


# -- the public engine function --------------------------------------------------------------------------

TERM_FORMULAS = {
    "compute_s": "m x (forward + backward of the slowest stage's layers [+ head]): GEMMs at their shape's efficiency, "
                 "attention, elementwise traffic",
    "recompute_s": "m x recomputed forward (full: whole layers; selective: attention core, or the --recompute-modules "
                   "listed; their TP/EP transfers in tp_comm_s / ep_comm_s)",
    "host_s": "m x layers x max(0, host ops x host_op_s - GPU time) per forward / backward pass (calc.training.host)",
    "tp_comm_s": "m x layers x (2 AR forward + 2 AR backward of b*s/c*H*bytes; SP: AG+RS each, +2 AG in backward)",
    "ep_comm_s": "m x MoE layers x 2 all-to-all (dispatch + combine) forward and backward of b*s/c*k*H*bytes",
    "cp_comm_s": "m x layers x ring-attention K/V passes (c-1 steps) not hidden under attention",
    "pp_bubble_s": "(p-1)/v x t_microbatch (a stage whose layers do not split into v equal chunks: (p-1) x the fullest "
                   "chunk's share of t_microbatch)",
    "pp_p2p_s": "m x 2 x v x p2p(b*s/c*H*bytes/t) on the stages' slowest hop; overlapped (--pp-p2p-overlap, or megatron "
                "with --vpp > 1) hidden under the stage's compute at the overlap efficiency",
    "dp_comm_s": "gradient AR (ZeRO 0) / RS + weight AG (ZeRO 1-2) over d*c; last bucket + what backward cannot hide; "
                 "ZeRO2+PP: m x gradient RS, each under one micro-batch's forward + backward, + one weight AG",
    "zero_gather_s": "ZeRO-3: m x (2 weight AG + gradient RS) not hidden under each micro-batch; FSDP+PP: one weight AG "
                     "per step (first layer exposed, the rest under the first forward) + one gradient RS after the last backward",
    "optimizer_s": "local parameters (/d*c with ZeRO >= 1) x bytes per parameter / HBM bandwidth",
    "offload_s": "m x (offloaded bytes / host copy GB/s), to host in forward and back in backward, each hidden under "
                 "that pass's compute at the overlap efficiency (calc.training.offload)",
}


class StepTerm(BaseModel):
    name: str
    time_s: float
    exposed_s: float
    formula: str


class TrainStepResult(BaseModel):
    """One plan's step: layout, memory and fit, then (when it fits) every time term, MFU and HFU."""

    model: str
    gpu: str
    system: str
    num_gpus: int
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    etp: int | None = None  # expert tensor-parallel size as given (None: Megatron's default, ETP = TP)
    vpp: int
    sp: bool
    micro_batch: int
    global_batch: int
    seq: int
    zero: int
    recompute: str
    num_microbatches: int
    layout: str
    dtype: str = "bf16"  # the compute dtype: picks the band group (calc.report.confidence)
    stack: str = "megatron"  # the training stack (calc.training.stack.band_stack; megatron when none is given): the band's stack
    memory_per_gpu_bytes: int
    memory_per_gpu: dict[str, int]
    gpu_memory_bytes: int
    fits: bool
    min_gpus: int | None
    fits_with: list[str] = []  # a plan that does not fit: the cheapest change that fits it here (step_fix), else []
    warnings: list[str] = []  # "flag: message" lines about what the step does not price (stack_warnings)
    step_time_s: float | None
    tokens_per_s: float | None
    mfu: float | None
    hfu: float | None
    mfu_causal: float | None = None  # MFU with causal attention pairs, S(S+1)/2 (what a causal kernel computes)
    mfu_6n: float | None = None  # MFU by 6N per token (no attention FLOPs): the `mfu` command's headline convention
    bubble_fraction: float | None  # the exposed pipeline bubble over the whole step (not (p-1)/(v m), over the compute)
    compute_s: float | None
    recompute_s: float | None
    host_s: float | None
    tp_comm_s: float | None
    ep_comm_s: float | None
    cp_comm_s: float | None
    pp_bubble_s: float | None
    pp_p2p_s: float | None
    dp_comm_s: float | None
    zero_gather_s: float | None
    optimizer_s: float | None
    offload_s: float | None = None  # activation offloading's host copies not hidden (0 without offloading)
    terms: list[StepTerm]
    measured_step_time_s: float | None = None
    measured_error: float | None = None
    fitted_gemm_plateau: float | None = None
    verdict: str
    assumptions: list[str]
    explain: list[str]


def hfu_flops(cost: ModelCost, layout: Layout, global_batch: int) -> float:
    """Hardware FLOPs per step: model FLOPs + recomputed ones (full: a forward of the layers; selective:
    the attention core, or with --recompute-modules the sum of the listed modules' GEMM / attention FLOPs,
    calc.training.cost.recompute_module_flops, as the step time re-runs them; deepseek: the MLA up-projections;
    sac: half the non-attention forward, and the attention core with eager attention, which its save list lacks),
    the count Korthikanti et al. 2022 call HFU, in the full s x s convention of the model FLOPs (what an unfused
    attention computes). ``executed_flops`` is what a causal flash kernel runs instead."""
    if layout.recompute == "selective" and layout.recompute_modules:
        extra = sum(cost.module_flops_per_seq.get(mod, 0.0) for mod in layout.recompute_modules)
        return global_batch * (cost.model_flops_per_seq + extra)
    extra = {"full": cost.layers_fwd_flops_per_seq, "selective": cost.layer_attention_flops_per_seq,
             "dots": cost.layer_attention_flops_per_seq,
             "sac": SAC_RECOMPUTE_SHARE * (cost.layers_fwd_flops_per_seq - cost.layer_attention_flops_per_seq)
             + (0.0 if cost.eff.flash else cost.layer_attention_flops_per_seq),
             "deepseek": cost.up_projection_flops_per_seq}.get(layout.recompute, 0.0)
    return global_batch * (cost.model_flops_per_seq + extra)


def recomputes_attention(layout: Layout) -> bool:
    """Whether the recomputation repeats the attention core's forward (full; Megatron selective, or its
    --recompute-modules core_attn), as hfu_flops counts it."""
    if layout.recompute == "selective" and layout.recompute_modules:
        return "core_attn" in layout.recompute_modules
    return layout.recompute in ("full", "selective", "dots")


def executed_flops(cost: ModelCost, layout: Layout, global_batch: int) -> float:
    """The FLOPs the GPUs execute per step, what HFU divides by: ``hfu_flops`` less the masked half of the attention
    scores that a causal flash kernel never computes (the step time prices attention the same way, calc.training.cost).
    With C = the attention FLOPs the full s x s convention counts beyond the causal S(S+1)/2 pairs per sequence, over
    forward and backward (3 x the forward's; cost.model_flops_per_seq - cost.causal_model_flops_per_seq):

        executed = hfu_flops - B x (C + C/3 if the recomputation repeats the attention forward)

    Unfused attention (--attention unfused) computes every score and masks it: executed = hfu_flops. So HFU can not
    exceed 100% by counting work no kernel does (a 1M-token sequence: attention is most of the FLOPs).
    Worked: llama3-8b at s = 4096 (d = 4096 query width, L = 32): forward attention 4 s^2 d L = 8.796e12 FLOPs full,
    4 (s (s + 1) / 2) d L causal; the difference 2 d L s (s - 1) = 4.397e12, so C = 1.319e13 per sequence."""
    total = hfu_flops(cost, layout, global_batch)
    causal = cost.causal_model_flops_per_seq
    if causal is None or not cost.eff.flash:
        return total
    masked = cost.model_flops_per_seq - causal
    return total - global_batch * (masked + (masked / 3 if recomputes_attention(layout) else 0.0))


def train_step(
    cost: ModelCost, layout: Layout, *, global_batch: int, num_gpus: int | None = None,
    reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB,
) -> TrainStepResult:
    """Step time, MFU/HFU, tokens/s and memory of one plan; a plan that does not fit gets no time figure.

    >>> from calc.sources.catalog import load_gpu, load_model, load_system
    >>> cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    >>> r = train_step(cost, Layout(tp=1, dp=8, zero=3, recompute="selective"), global_batch=32)
    >>> r.fits, 0.3 < r.mfu < 0.6
    (True, True)
    """
    from calc.training.explain import explain_step
    from calc.training.layout import check_training_layout

    micro = check_training_layout(cost.m, layout, num_gpus, global_batch, cost.seq)
    check_stack_runs(cost.eff.stack, zero=layout.zero, offload=layout.offload_flag(), pp=layout.pp, vpp=layout.vpp)
    check_tp(cost.eff.stack, cost.m, layout.tp)
    rank_peaks: list[int] = []
    memory = memory_per_gpu(cost, layout, micro, reserve_gib, rank_peaks=rank_peaks)
    need = sum(memory.values())
    capacity = cost.gpu.cuda_total_bytes
    fits = need <= capacity
    n = layout.num_gpus
    base = dict(
        model=cost.m.name, gpu=cost.gpu.name, system=cost.system.name, num_gpus=n, tp=layout.tp, pp=layout.pp,
        dp=layout.dp, cp=layout.cp, ep=layout.ep, etp=layout.etp, vpp=layout.vpp, sp=layout.sp, micro_batch=layout.micro_batch,
        global_batch=global_batch, seq=cost.seq, zero=layout.zero, recompute=layout.recompute, num_microbatches=micro,
        layout=layout.label() + uneven_stage_note(cost.m.num_layers, layout.pp, layout.pp_embedding, layout.pp_loss, layout.vpp),
        dtype=cost.dtype, stack=band_stack(cost.eff.stack), warnings=stack_warnings(cost),
        memory_per_gpu_bytes=need, memory_per_gpu=memory, gpu_memory_bytes=capacity, fits=fits,
        assumptions=cost.eff.describe(moe=cost.m.moe is not None, cp=layout.cp > 1, fp8=cost.dtype.startswith("fp8"))
        + [f"reserve {reserve_gib:g} GiB per GPU", *_plateau_note(cost)]
        + ([f"{cost.lora.label()} on a frozen base (calc.training.adapters): base GEMMs back-propagate their input "
            "gradient only; gradients, their reduction and Adam cover the adapters; memory from the fine-tuning engine "
            "(memory --mode finetune --method lora)"] if cost.lora is not None else [])
        + [note for note in [lora_stack_note(cost, layout, micro, need, reserve_gib)] if note]
        + ([f"packed documents of {cost.attention_span:,} tokens per sequence of {cost.seq:,} (--doc-tokens): attention "
            f"within each document, {cost.attention_share:.4f} of the causal pairs of one {cost.seq:,}-token document; "
            "MFU still counts the model FLOPs of whole sequences"] if cost.attention_span < cost.seq else [])
        + pipeline_states_line(cost.m, layout, rank_peaks),
    )
    assumptions = base["assumptions"]
    mem_line = "memory per GPU = " + " + ".join(f"{k} {v / GIB:.2f}" for k, v in memory.items()) + f" = {need / GIB:.2f} GiB; " \
        + activation_models_line(cost, layout, micro, reserve_gib)
    if not fits:
        more = min_gpus_same_shape(cost, layout, micro, reserve_gib, global_batch)
        hint = (f"; the same TP x PP x CP with more DP fits from {more} GPUs" if more
                else f"; no larger DP (up to {SMALLEST_COUNT_LIMIT:,} GPUs) both fits and splits the global batch of "
                     f"{global_batch:,} into micro-batches of {layout.micro_batch}")
        fix = step_fix(cost, layout, global_batch, reserve_gib)
        fix_text = "" if fix is None else f"; fits on these GPUs with {fix}"
        return TrainStepResult(
            **base, min_gpus=more, fits_with=[] if fix is None else [fix], step_time_s=None, tokens_per_s=None, mfu=None,
            hfu=None, bubble_fraction=None,
            **dict.fromkeys(TERM_KEYS), terms=[],
            verdict=f"does not fit: needs {need / GIB:.1f} GiB per GPU, {cost.gpu.name} has {capacity / GIB:.1f} GiB; "
            f"no step time for a plan that does not fit{fix_text}{hint}"
            + ("; or try train-plan" if fix else "; no ZeRO stage, recomputation or smaller micro-batch fits on these "
               "GPUs: raise --tp or --pp, or try train-plan"),
            explain=[mem_line] + [f"assumption: {a}" for a in assumptions],
        )
    t = step_terms(cost, layout, global_batch, micro)
    peak = peak_tflops(cost.gpu, cost.dtype) * TERA
    mfu = t.mfu(cost, global_batch, n)
    hfu = executed_flops(cost, layout, global_batch) / (t.step_time_s * n * peak)
    causal = cost.causal_model_flops_per_seq
    mfu_causal = None if causal is None else global_batch * causal / (t.step_time_s * n * peak)
    terms = [StepTerm(name=k, time_s=t.totals[k], exposed_s=t.exposed[k], formula=TERM_FORMULAS[k]) for k in TERM_KEYS]
    tokens = global_batch * cost.seq / t.step_time_s
    mfu_6n = tokens * 6 * count_params(cost.m).active_params / (n * peak)  # 6N per token, as `mfu` counts it
    lines = explain_step(cost, layout, t, global_batch, mfu, peak)
    return TrainStepResult(
        **base, min_gpus=None, step_time_s=t.step_time_s, tokens_per_s=tokens, mfu=mfu, hfu=hfu, mfu_causal=mfu_causal,
        mfu_6n=mfu_6n,
        bubble_fraction=t.exposed["pp_bubble_s"] / t.step_time_s, **t.exposed, terms=terms,
        verdict=f"{t.step_time_s:.3f} s per step, {tokens:,.0f} tokens/s, "
        f"MFU {figure(mfu * 100, 1)}% ("
        + (f"{figure(mfu_causal * 100, 1)}% counting causal attention, as HFU counts it; " if mfu_causal is not None
           and (mfu - mfu_causal >= 0.005 or hfu < mfu) else "")
        + f"HFU {figure(hfu * 100, 1)}%: what the GPUs execute) on {n} x {cost.gpu.name}; "
        f"{need / GIB:.1f} of {capacity / GIB:.1f} GiB per GPU",
        explain=lines + [mem_line] + [f"assumption: {a}" for a in assumptions],
    )


def _plateau_note(cost: ModelCost) -> list[str]:
    from calc.fitted import describe
    from calc.hardware.efficiency import gemm_plateau, plateau_key

    calibration = getattr(cost, "calibration", None)
    if calibration is not None:
        return [f"GEMM and memory efficiencies from calibration {calibration.date} ({calibration.device_name}, "
                f"{calibration.dtype}), interpolated by GEMM FLOPs; defaults where it has no point"]
    if cost.eff.gemm_plateau:
        return []
    key = plateau_key(cost.gpu, cost.dtype)
    return [f"GEMM plateau {gemm_plateau(cost.gpu, cost.dtype):.0%} of {cost.gpu.name} {peak_name(cost.dtype)} peak "
            f"(calc/data/fitted_defaults.json, {key}: {describe('gemm_plateau', key)})"]


def step_fix(cost: ModelCost, layout: Layout, global_batch: int, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB) -> str | None:
    """The cheapest change that fits this plan on its GPU count (calc.training.fixes.cheapest_fix), with the peak it
    gives and the step time train-step then prints, e.g. "--zero 1 (23.3 GiB per GPU, 82.9 s per step)"; None when no
    change of ZeRO stage, recomputation or micro-batch fits."""
    from calc.training.fixes import cheapest_fix

    fix = cheapest_fix(cost.m, layout, global_batch=global_batch, seq=cost.seq, capacity_bytes=cost.gpu.cuda_total_bytes,
                       peak_of=lambda lay, micro: sum(memory_per_gpu(cost, lay, micro, reserve_gib).values()))
    if fix is None:
        return None
    step = step_terms(cost, fix.layout, global_batch, fix.micro).step_time_s
    return f"{fix.flags} ({fix.per_gpu_bytes / GIB:.1f} GiB per GPU, {step:.3g} s per step)"


def min_gpus_same_shape(cost: ModelCost, layout: Layout, micro: int, reserve_gib: float = DEFAULT_CUDA_CONTEXT_GIB,
                        global_batch: int | None = None) -> int | None:
    """Smallest GPU count above this layout's that fits when only DP grows (ZeRO shards states over DP), searched as
    memory --mode train searches it (calc.memory.result._search_min_gpus: every count to 8, TP x PP x CP x DP for DP 1
    to 8, and whole nodes of 8, up to 64x), keeping TP x PP x CP and EP dividing DP x CP: the same answer in both
    commands (it doubled DP here, and said 256 where 136 fits); with ``global_batch`` only a DP that splits it into
    whole micro-batches (train-step refuses any other)."""
    from calc.memory.result import _search_min_gpus

    if global_batch:  # the DPs that split the batch, each at its own micro-batch count (fewer in flight as DP grows,
        # which helps at ZeRO 0 too)
        return smallest_dp_count(layout, global_batch, above=layout.num_gpus,
                                 fits=lambda lay, n: sum(memory_per_gpu(cost, lay, n, reserve_gib).values())
                                 <= cost.gpu.cuda_total_bytes)
    if layout.zero == 0:
        return None
    fixed = layout.tp * layout.pp * layout.cp

    def fits_on(count: int) -> bool | None:
        if count <= layout.num_gpus or count % fixed or (count // fixed * layout.cp) % layout.ep:
            return None
        bigger = layout.with_(dp=count // fixed)
        return sum(memory_per_gpu(cost, bigger, micro, reserve_gib).values()) <= cost.gpu.cuda_total_bytes

    return _search_min_gpus(fits_on, limit=layout.num_gpus * 64, unit=fixed)


SMALLEST_COUNT_LIMIT = 1 << 17  # 131,072 GPUs, train-time's search cap (calc.training.sizing.MAX_GPUS)


def smallest_dp_count(layout: Layout, global_batch: int, fits: Callable[[Layout, int], bool], above: int = 0,
                      limit: int | None = None) -> int | None:
    """The fewest GPUs, above ``above``, on which this TP x PP x CP (and EP) runs ``global_batch`` with more or less
    DP and fits: every DP that splits the batch into whole micro-batches of layout.micro_batch, ascending, each priced
    at its own micro-batches per rank (global_batch / (DP x micro-batch): fewer in flight on the first stage as DP
    grows, calc.training.step.in_flight_microbatches) by ``fits(layout, micro-batches)``; up to ``limit`` GPUs
    (SMALLEST_COUNT_LIMIT, whatever DP was given). One search for train-step's "fits from N" and memory --mode train's
    smallest count."""
    fixed = layout.tp * layout.pp * layout.cp
    per_rank = global_batch // layout.micro_batch if global_batch % layout.micro_batch == 0 else 0
    limit = limit or SMALLEST_COUNT_LIMIT
    for dp in range(1, min(per_rank, limit // fixed) + 1):  # at most limit / fixed tries, whatever the batch
        count = dp * fixed
        if per_rank % dp or count <= above or (dp * layout.cp) % layout.ep:
            continue
        if fits(layout.with_(dp=dp), per_rank // dp):
            return count
    return None
