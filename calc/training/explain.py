"""--explain for train-step: every term's formula with this plan's numbers substituted.

Only called for a result that is shown (never in the plan search), so it may recompute the readable
intermediate numbers; every time it prints comes from the same cached functions the model uses.
``t`` is the calc.training.step.StepTerms being explained (not imported here: step imports this module).
"""

from __future__ import annotations

import math
from typing import Any

from calc.hardware.collectives import group_link, group_shape, pcie_factor
from calc.hardware.efficiency import GROUPED_RAMP_ROWS, grouped_gemm_ramp
from calc.hardware.moe_ops import LOCAL_SORT_BYTES_PER_COPY, LOCAL_SORTS, deepep_nic_scale
from calc.hardware.peaks import peak_tflops
from calc.memory.training import FSDP_PP, ZERO2_PP
from calc.model.moe_routing import COMBINE_BYTES_PER_TOKEN, PERMUTE_BYTES_PER_COPY, ROUTER_BYTES_PER_LOGIT
from calc.model.parallel import tp_activation_bytes
from calc.training.cost import LayerCost, ModelCost
from calc.training.layout import Layout
from calc.units import TERA, abbrev


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def _mb(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:,.1f} MB"


def _extra_fwd(lc: LayerCost) -> str:
    return (f" + fp8 casts {_ms(lc.cast_fwd)}" if lc.cast_fwd else "") + (f" + router/permute {_ms(lc.moe_fwd)}" if lc.moe_fwd else "")


def _extra_bwd(lc: LayerCost) -> str:
    return ((f" + fp8 casts {_ms(lc.cast_bwd)}" if lc.cast_bwd else "") + (" + router/permute" if lc.moe_fwd else "")
            + (f" + ring merge {_ms(lc.ring_merge_bwd)}" if lc.ring_merge_bwd else ""))


def _deepep_scale(cost: ModelCost, ep: int, etp: int) -> float:
    moe = cost.m.moe
    assert moe is not None
    return deepep_nic_scale(moe.num_experts, moe.experts_per_token, group_shape(cost.system, ep, etp)[1])


def _where(cost: ModelCost, group: int, stride: int) -> str:
    n_in, n_out = group_shape(cost.system, group, stride)
    bw, lat = group_link(cost.system, group, stride)
    place = "one node" if n_out == 1 else f"{n_in} per node x {n_out} nodes, hierarchical"
    pcie = (f"; over PCIe: the node part's time / {pcie_factor():g}, calc.hardware.collectives.pcie_factor"
            if n_in > 1 and cost.system.pcie_link(n_in, stride) else "")
    return (f"{group} ranks ({place}; slowest hop {bw:g} GB/s, {lat * 1e6:g} us/step, efficiency "
            f"{cost.eff.collective:.0%}{pcie})")


def explain_step(cost: ModelCost, layout: Layout, t: Any, global_batch: int, mfu: float, peak: float) -> list[str]:
    m, eff, st, micro = cost.m, cost.eff, t.stage, t.micro_batches
    tp, pp, dp, cp, ep, v, b = layout.tp, layout.pp, layout.dp, layout.cp, layout.ep, layout.vpp, layout.micro_batch
    T = b * cost.seq // cp
    kind = cost.layer_kind_sequence()[-1]  # the model's main block kind (MoE where there is one)
    etp = layout.expert_tp
    lc = cost.layer(kind, b, tp, cp, ep, layout.sp, etp)
    act = tp_activation_bytes(m, T, cost.elem)
    lines = [
        f"micro-batches m = B/(d*b) = {global_batch}/({dp}*{b}) = {micro}; tokens per micro-batch per GPU T = b*s/c = {T:,}",
        f"slowest stage #{t.stage_index}: {t.stage_layers} layers{' + output head' if t.stage_index == pp - 1 else ''}",
        f"one {cost.kinds[kind][0]} layer forward = GEMMs {_ms(lc.gemm_fwd)} + attention {_ms(lc.attn_fwd)} "
        f"({_attention_note(cost, cp) if eff.flash else 'unfused, full s x s'}{', bf16' if cost.fp8 else ''}"
        f"{f'; with the ring merge {_ms(lc.ring_merge_fwd)}' if lc.ring_merge_fwd else ''}) + elementwise "
        f"{_ms(lc.ew_fwd)}{_extra_fwd(lc)} = {_ms(lc.fwd)}; backward = {_BWD_GEMMS_LORA if cost.lora else '2 x GEMMs'} "
        f"+ {_BWD_FLASH if eff.flash else '2 x attention'} "
        f"+ 2 x elementwise{_extra_bwd(lc)} = {_ms(lc.bwd)}",
    ]
    core_peak = peak_tflops(cost.gpu, cost.core_dtype) * TERA
    for name, rows, n, k, count, seconds, cast_f, cast_b in cost.layer_gemms(kind, b, tp, cp, ep, etp, layout.sp):
        bf16 = cost.fp8 and name.startswith("router")
        achieved = 2 * rows * n * k * count / seconds / (core_peak if bf16 else peak)
        ramp = grouped_gemm_ramp(rows, eff.grouped_gemm_efficiency)
        grouped = (f", grouped: {ramp:.3g} of the dense rate at {rows:,.0f} tokens per expert "
                   f"({eff.grouped_gemm_efficiency:g} at <= {GROUPED_RAMP_ROWS[0]:g}, 1 at {GROUPED_RAMP_ROWS[1]:g})"
                   if count > 1 and ramp < 1 else "")
        rule = ("Megatron-Core TE rules, calc.training.fp8_recipe: shared / norm-fused inputs, weights once per step"
                if cost.te_layout else "x ([m,k] + [k,n]) forward, x [m,n] backward")
        cast = (f"; fp8 casts {cost.fp8_cast_bytes:g} B ({rule}) = {_ms(cast_f)} forward, {_ms(cast_b)} backward"
                if cast_f or cast_b else "")
        lines.append(f"  GEMM {name}: {count} x [{rows:,.0f}, {k:,.0f}] @ [{k:,.0f}, {n:,.0f}] = {_ms(seconds)} "
                     f"({achieved:.0%} of {'bf16 ' if bf16 else ''}peak{grouped}){cast}")
    if lc.moe_fwd:
        lines.append(f"  MoE router + permute/unpermute on the rank's T/t tokens: (T/t*E*{ROUTER_BYTES_PER_LOGIT:g} + "
                     f"T/t*k*cf*H*{PERMUTE_BYTES_PER_COPY:g} + T/t*H*{COMBINE_BYTES_PER_TOKEN:g} + local sorts "
                     f"{LOCAL_SORTS} x received copies x H x {LOCAL_SORT_BYTES_PER_COPY:g} when a rank holds > 1 expert) B / HBM = "
                     f"{_ms(lc.moe_fwd)} forward, the same in backward")
    lines.append(f"compute_s = m x stage (forward + backward) = {micro} x {_ms(st['fwd'] + st['bwd'])} = {t.exposed['compute_s']:.4f} s")
    if layout.recompute != "none":
        what = {"full": "one more forward of each layer", "deepseek": "the norms and MLA up-projections, forward",
                "sac": "half the non-attention forward (every second matmul)"
                       + ("" if cost.eff.flash else " and the eager attention core"),
                "dots": "the attention core and the elementwise ops, forward (JAX's dots policy)"}.get(
            layout.recompute, "the attention core forward")
        if layout.recompute == "selective" and layout.recompute_modules:
            mods = ", ".join(sorted(layout.recompute_modules))
            what = (f"the forward of the recomputed modules {mods} (Megatron-Core --recompute-modules; their TP/EP "
                    "transfers again in tp_comm_s / ep_comm_s; calc.training.cost, 'recompute modules')")
        lines.append(f"recompute_s = m x {what} = {micro} x {_ms(st['rec'])} = {t.exposed['recompute_s']:.4f} s")
    lines.append(f"host_s: one {cost.kinds[kind][0]} layer launches {lc.host_fwd / eff.host_op_s if eff.host_op_s else 0:.0f} ops "
                 f"forward, {lc.host_bwd / eff.host_op_s if eff.host_op_s else 0:.0f} backward x {eff.host_op_s * 1e6:g} us = "
                 f"{_ms(lc.host_fwd)} / {_ms(lc.host_bwd)} of host time (calc.training.host); each pass exposes "
                 f"max(0, host - its GPU time); x layers x m = {t.exposed['host_s']:.4f} s")
    if tp > 1:
        hidden = eff.resolved_tp_overlap(tp, layout.sp, cost.lora is not None)
        kinds = ("all_gather", "reduce_scatter") if layout.sp else ("allreduce",)
        each = sum(cost.coll(k, act, tp) for k in kinds)
        lines.append(f"tp_comm_s: {'AG + RS' if layout.sp else 'all-reduce'} of T*H*bytes = {_mb(act)} on {_where(cost, tp, 1)} "
                     f"= {_ms(each)}; per layer 2 forward + 2 backward{' + 2 AG re-gathered in backward' if layout.sp else ''}"
                     f"{' + 2 recomputed' if layout.recompute == 'full' else ''}"
                     f"{' (fp8 run: the all-gathers move 1 B per element, calc.training.cost TP)' if cost.te_layout and layout.sp else ''}"
                     f"; x {t.stage_layers} layers x m = "
                     f"{t.totals['tp_comm_s']:.4f} s, hidden {hidden:.0%} -> {t.exposed['tp_comm_s']:.4f} s")
    if ep * etp > 1 and m.moe:
        routed = cost.ep_routed_bytes(T / tp, ep, etp)
        gather = (f" + ETP all-gather + reduce-scatter of {etp} x that on {_where(cost, etp, 1)}" if etp > 1 else "")
        imbalance = cost.ep_imbalance(ep, T / tp, etp)
        lines.append(f"ep_comm_s: all-to-all of (T/t)*k*cf*H*bytes x imbalance {imbalance:.3f} "
                     f"(most-loaded EP rank, {eff.moe_routing} routing) "
                     f"= {_mb(routed)} over {_where(cost, ep, etp)} (EP ranks ETP {etp} apart){gather}"
                     + (f" (deepep: the NIC share x {_deepep_scale(cost, ep, etp):.3f}, a token once per node)"
                        if eff.dispatcher == "deepep" else "") + " = "
                     f"{_ms(cost.ep_comm_s(T, tp, ep, etp))} dispatch + combine, forward and backward, per MoE layer "
                     f"x m = {t.totals['ep_comm_s']:.4f} s, "
                     + ("under the other micro-batch's backward / forward compute (combined 1F1B)" if eff.ep_overlap_1f1b
                        else f"hidden {eff.ep_overlap:.0%}") + f" -> {t.exposed['ep_comm_s']:.4f} s")
    if cp > 1:
        ring = eff.resolved_cp_comm()
        shape = {"p2p": f"{cp - 1} K/V block passes forward (2 x backward) of {_ms(lc.cp_total / (3 * (cp - 1)))} each, "
                        f"under attention {_ms(lc.attn_fwd)} forward",
                 "torch-allgather": f"K/V (after repeat_kv) all-gathered once per pass under step 0's attention (1/{cp}), "
                                    f"{cp} fp32 K/V gradient sends in backward (the last exposed); merge traffic "
                                    f"{_ms(lc.ring_merge_fwd)} forward, {_ms(lc.ring_merge_bwd)} backward per layer (in the "
                                    "attention time)",
                 "allgather": f"K/V all-gather {_ms(lc.cp_fwd)} forward, all-gather + dK/dV reduce-scatter "
                              f"{_ms(lc.cp_bwd)} backward per layer, exposed whole"}[ring]
        lines.append(f"cp_comm_s: context parallelism ({ring}, calc.training.ring_attention), {shape}: "
                     f"{t.totals['cp_comm_s']:.4f} s, exposed {t.exposed['cp_comm_s']:.4f} s "
                     f"(exposed = overflow + (1 - {eff.overlap:g}) x overlapped)")
    if pp > 1:
        sent = act / tp
        bw, _ = group_link(cost.system, pp, tp * cp * dp)  # the stages' slowest hop (calc.training.step, "p2p")
        lines.append(f"pp_bubble_s = (p-1)/v x t_mb = ({pp}-1)/{v} x {_ms(t.t_microbatch_s)} = {t.exposed['pp_bubble_s']:.4f} s "
                     f"(over the pipelined compute (p-1)/(v m) = {(pp - 1) / (v * micro):.4f}; over the whole step, "
                     f"JSON bubble_fraction, {t.exposed['pp_bubble_s'] / t.step_time_s:.4f})")
        lines.append(f"pp_p2p_s = m x 2 x v x p2p(T*H*bytes/t = {_mb(sent)} at {bw:g} GB/s) = {micro} x 2 x {v} x "
                     f"{_ms(cost.coll('p2p', sent, pp, tp * cp * dp))} = {t.totals['pp_p2p_s']:.4f} s"
                     + (f", asynchronous under the stage's compute: exposed {t.exposed['pp_p2p_s']:.4f} s"
                        if eff.resolved_pp_p2p_overlap(v) else ", exposed"))
    local, trains = t.local_params, t.local_trainable
    if cost.lora is not None:
        lines.append(f"{cost.lora.label()} on a frozen base: {trains:,.0f} of {local:,.0f} local parameters train; the base "
                     "GEMMs' backward is the input gradient only, the adapters' GEMMs and adds run beside each adapted "
                     "projection (calc.training.adapters)")
    if dp * cp > 1:
        if layout.sharding == FSDP_PP:
            lines.append(f"zero_gather_s (FSDP+PP): one weight all-gather per step ({_mb(local * cost.elem)}) + one gradient "
                         f"reduce-scatter after the last backward ({_mb(trains * eff.dp_reduce_bytes)}) over "
                         f"{_where(cost, dp * cp, tp)}: {t.totals['zero_gather_s']:.4f} s in all; exposed "
                         f"{t.exposed['zero_gather_s']:.4f} s (the first layer's gather + (1 - {eff.overlap:g}) x the rest "
                         "under the first forward + the whole reduce-scatter)")
        elif layout.sharding == ZERO2_PP:
            lines.append(f"dp_comm_s (ZeRO2+PP, Llama 3's FSDP): {micro} micro-batches x gradient reduce-scatter "
                         f"({_mb(trains * eff.dp_reduce_bytes)}) + one weight all-gather ({_mb(trains * cost.elem)}) over "
                         f"{_where(cost, dp * cp, tp)}: {t.totals['dp_comm_s']:.4f} s in all; exposed "
                         f"{t.exposed['dp_comm_s']:.4f} s (each reduce-scatter under one micro-batch's forward + backward "
                         f"({_ms(st['fwd'] + st['bwd'])}): overflow + (1 - {eff.overlap:g}) x overlapped; the all-gather "
                         "whole)")
        elif layout.zero == 3:
            lines.append(f"zero_gather_s: per micro-batch 2 weight all-gathers ({_mb(local * cost.elem)}) + gradient reduce-scatter "
                         f"({_mb(trains * eff.dp_reduce_bytes)}) over {_where(cost, dp * cp, tp)}: {t.totals['zero_gather_s']:.4f} s "
                         f"in all; exposed {t.exposed['zero_gather_s']:.4f} s (overflow + (1 - {eff.overlap:g}) x overlapped "
                         "+ the first layer's gather)")
        else:
            buckets = max(1, math.ceil(trains / eff.bucket_params))
            op = "all-reduce" if layout.zero == 0 else f"reduce-scatter (+ {cost.elem:g} B weight all-gather, exposed)"
            lines.append(f"dp_comm_s: gradients N_local (the pipeline rank holding the most) x {eff.dp_reduce_bytes} B = "
                         f"{trains:,.0f} x {eff.dp_reduce_bytes} = "
                         f"{_mb(trains * eff.dp_reduce_bytes)}, {op} over {_where(cost, dp * cp, tp)} = "
                         f"{t.totals['dp_comm_s']:.4f} s; {buckets} buckets, the last exposed, the rest under the last backward "
                         f"({_ms(st['bwd'])}) -> {t.exposed['dp_comm_s']:.4f} s")
    opt = trains / (dp * cp if layout.zero >= 1 else 1)
    lines.append(f"optimizer_s = {opt:,.0f} parameters x {eff.step_optimizer_bytes:g} B / HBM {cost.hbm / 1e12:.2f} TB/s "
                 f"= {t.exposed['optimizer_s']:.4f} s")
    if (flag := layout.offload_flag()) is not None:
        from calc.training.offload import host_copy_rate

        rate, how = host_copy_rate(cost.gpu, eff.host_copy_gb_s, flag)
        copy = t.totals["offload_s"] / (2 * micro)
        lines.append(f"offload_s = m x (copy to host under the forward {_ms(st['fwd'])} + copy back under the backward "
                     f"{_ms(st['bwd'])}): {_mb(copy * rate)} a micro-batch each way at {how} = {_ms(copy)}; "
                     f"{micro} x 2 x {_ms(copy)} = {t.totals['offload_s']:.4f} s, exposed {t.exposed['offload_s']:.4f} s "
                     f"(what the pass cannot hide + (1 - {eff.overlap:g}) x the rest)")
    lines.append(f"step = sum of exposed terms = {t.step_time_s:.4f} s")
    flops = ("(2 x forward + attention forward + 3 x adapters), a frozen base's" if cost.lora is not None
             else "3 x forward (full s x s" + (f", attention inside each {cost.attention_span:,}-token document"
                                                if cost.attention_span < cost.seq else "") + ")")
    lines.append(f"MFU = B x model FLOPs per sequence [{flops}] / (step x N x peak) = {global_batch:,} x "
                 f"{abbrev(cost.model_flops_per_seq, digits=4)} / "
                 f"({t.step_time_s:.4f} x {layout.num_gpus:,} x {abbrev(peak, digits=4)}) = {mfu:.4f}")
    return lines


_BWD_FLASH = "2.5 x attention FLOPs at the backward rate"
_BWD_GEMMS_LORA = "1 x GEMMs (input gradients only: a frozen base)"


def _attention_note(cost: ModelCost, cp: int) -> str:
    """The flash kernel and its forward / backward rates at this run's head dim and per-rank sequence."""
    fwd, bwd = cost._attn_rates(cp)
    packed = (f"documents of d = {cost.attention_span:,} tokens packed, attention within each: {cost.attention_share:.4f} "
              f"of the causal pairs, d/c {cost.attention_span / cp:,.0f}" if cost.attention_span < cost.seq
              else f"s/c {cost.seq // cp:,}")
    return (f"{cost.attention_kernel} flash kernel, causal half, head dim {cost.attention_head_dim:g}, {packed}: "
            f"{fwd / TERA:.0f} TFLOP/s forward, {bwd / TERA:.0f} backward")

