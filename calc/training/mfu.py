"""MFU from a finished run and training time at an MFU (reference section 5).

MFU = achieved model FLOPs/s / (GPUs x peak) (PaLM arXiv 2204.02311 appendix B).
Training time = total FLOPs / (GPUs x peak x MFU).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration, efficiency_for
from calc.hardware.peaks import peak_name, peak_tflops
from calc.model.flops import forward_flops
from calc.model.parallel import check_num_gpus
from calc.model.params import count_params
from calc.sanity import SUSPICIOUS_MFU, TINY_MFU, check_context, check_mfu, check_predicted_mfu, check_tokens
from calc.specs import GPUSpec, ModelSpec
from calc.training.model_flops import sequence_flops
from calc.units import TERA, abbrev, check_fraction, check_positive, figure

HOURS = 3600.0


class MFUResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int | None  # None for a finished run (--tokens --gpu-hours): GPU-hours carry no GPU count
    seq: int
    dtype: str
    peak_tflops: float
    tokens_per_s: float | None  # the whole job's; None for a finished run (its GPU count is not an input)
    tokens_per_s_per_gpu: float
    # model FLOPs ("model FLOPs": the exact training FLOPs per token with attention, 3 x forward, not 6N; no
    # recomputation) achieved per second, per GPU in every input mode and by the whole job where the GPU count is
    # known (None for a finished run); per step with --step-time, over the run with --tokens --gpu-hours (else None)
    model_flops_per_s_per_gpu: float
    model_flops_per_s: float | None
    model_flops_per_step: float | None = None
    model_flops_total: float | None = None
    model_flops_total_6n: float | None = None  # the run's 6N total, the convention papers publish (Llama 3: 3.8e25)
    flops_per_token_6n: float
    flops_per_token: float
    mfu: float  # with attention FLOPs (--attention-pairs' convention), as train-step / train-plan / train-time's `mfu`
    mfu_with_attention: float  # = mfu (its older key)
    hfu_full_recompute: float
    mfu_6n: float | None = None  # by 6N, seed 001's formula: the key every command carries for the 6N figure
    mfu_of_measured: float | None
    doc_tokens: int | None = None  # --doc-tokens: packed documents of this many tokens (attention inside each)
    method: str = "full"  # --method: full, or lora / qlora (a frozen base's model FLOPs)
    verdict: str
    explain: list[str]
    warnings: list[str] = []


def mfu(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int = 1, seq: int = 2048, dtype: str = "bf16",
    tokens: float | None = None, gpu_hours: float | None = None, tokens_per_s: float | None = None,
    step_time_s: float | None = None, global_batch: float | None = None, causal: bool = False,
    calibration: Calibration | None = None, tflops_per_gpu: float | None = None, doc_tokens: int | None = None,
    lora: Any = None,
) -> MFUResult:
    """MFU from a finished run (tokens, GPU-hours), observed tokens/s, or step time x global batch.

    6N form: tokens/s x 6N / (GPUs x peak). With attention: 6N is replaced by the exact training
    FLOPs per token at sequence length S (3 x forward / S). HFU with full recomputation: what the GPUs execute, as
    train-step's HFU counts it (calc.training.step.executed_flops, a causal flash kernel): the causal training FLOPs
    plus the layers' forward again (not the output head's), calc.model.flops training_flops_full_recompute, causal.
    ``doc_tokens`` (packed documents, attention inside each) and ``lora`` (a frozen base's FLOPs) count the model FLOPs
    as train-step does (calc.training.model_flops.sequence_flops), so its step time read back gives its MFU.
    """
    check_num_gpus(num_gpus)
    peak = peak_tflops(gpu, dtype) * TERA
    f = forward_flops(m, 1, seq, causal=causal)
    counted = sequence_flops(m, seq, doc_tokens, lora)  # as train-step counts its model FLOPs
    per_token = (counted.causal if causal else counted.model) / seq
    executed = (counted.causal + counted.recompute) / seq  # per token under full recomputation (the HFU)
    packed = doc_tokens is not None and doc_tokens < seq
    attention = counted.causal_attention if causal else counted.attention  # the forward's, in the count's convention
    forward = counted.forward - counted.attention + attention
    if tflops_per_gpu is not None:  # a paper's achieved TFLOP/s per GPU (Llama 3 Table 4: model FLOPs, with attention)
        rate_per_gpu = check_positive(tflops_per_gpu, "--tflops-per-gpu") * TERA / per_token
        how = (f"published {tflops_per_gpu:g} TFLOP/s per GPU of model FLOPs / {abbrev(per_token, digits=4)} FLOPs per "
               "token")
        total_tokens = rate_per_gpu
    elif tokens is not None and gpu_hours is not None:
        check_positive(tokens, "--tokens")
        check_positive(gpu_hours, "--gpu-hours")
        rate_per_gpu = tokens / (gpu_hours * HOURS)
        how = f"finished run: {abbrev(tokens, digits=4)} tokens / ({abbrev(gpu_hours, digits=4)} GPU-h x 3600)"
        total_tokens = tokens
    elif tokens_per_s is not None:
        rate_per_gpu = check_positive(tokens_per_s, "--tokens-per-s") / num_gpus
        how = f"observed {abbrev(tokens_per_s, digits=4)} tokens/s on {num_gpus} GPUs"
        total_tokens = tokens_per_s
    elif step_time_s is not None and global_batch is not None:
        check_positive(step_time_s, "--step-time")
        check_positive(global_batch, "--global-batch")
        rate_per_gpu = global_batch * seq / step_time_s / num_gpus
        how = f"{global_batch:,.6g} sequences x {seq:,} tokens / {abbrev(step_time_s, digits=4)} s on {num_gpus} GPUs"
        total_tokens = global_batch * seq
    else:
        raise LLMCalcError("--tokens", "give --tokens with --gpu-hours, or --tokens-per-s, or --step-time with --global-batch")
    mfu_6n = rate_per_gpu * f.approx_6n / peak
    mfu_attn = rate_per_gpu * per_token / peak
    source = ("--tflops-per-gpu" if tflops_per_gpu is not None
              else "--tokens-per-s" if tokens_per_s is not None and (tokens is None or gpu_hours is None)
              else "--step-time" if tokens is None or gpu_hours is None else "--gpu-hours")
    run = source in ("--gpu-hours", "--tflops-per-gpu")  # a rate per GPU, no GPU count
    mtp = count_params(m).mtp_params  # trained with MTP, these modules' FLOPs are not in the figures (said in --explain)
    if mfu_6n < 1 - 1e-9 <= mfu_attn:  # the throughput is possible; the attention FLOPs at --seq are not
        raise LLMCalcError("--seq", f"{seq:,} tokens a sequence: its attention FLOPs put MFU at {mfu_attn:.3g}x the "
                                    f"GPUs' dense peak, where 6N gives {figure(mfu_6n * 100, 1)}%; this throughput was "
                                    "not run at that length: check --seq (or count --attention-pairs causal)")
    # a frozen base runs no weight gradients: its 6N figure counts work never done, so only the counted MFU is checked
    warnings = (check_mfu(mfu_attn if lora is not None else max(mfu_6n, mfu_attn), source) + check_context(m, seq, "--seq")
                + (check_tokens(tokens) if tokens is not None and gpu_hours is not None else []))
    if rate_per_gpu * executed / peak > 1 >= mfu_attn:  # the run is possible, but not with every layer recomputed
        warnings.append(f"{source}: HFU under full recomputation would be {rate_per_gpu * executed / peak:.1%} of "
                        "peak: this throughput cannot be reached with every layer recomputed")
    measured = None
    if calibration is not None:
        eff = efficiency_for(gpu, dtype, calibration)
        measured = mfu_attn / eff.compute
    return MFUResult(
        model=m.name, gpu=gpu.name, num_gpus=None if run else num_gpus, seq=seq, dtype=dtype, peak_tflops=peak / TERA,
        tokens_per_s=None if run else rate_per_gpu * num_gpus, tokens_per_s_per_gpu=rate_per_gpu,
        model_flops_per_s_per_gpu=rate_per_gpu * per_token,
        model_flops_per_s=None if run else rate_per_gpu * num_gpus * per_token,
        model_flops_per_step=total_tokens * per_token if source == "--step-time" else None,
        model_flops_total=total_tokens * per_token if source == "--gpu-hours" else None,
        model_flops_total_6n=total_tokens * f.approx_6n if source == "--gpu-hours" else None,
        flops_per_token_6n=f.approx_6n, flops_per_token=per_token,
        mfu=mfu_attn, mfu_6n=mfu_6n, mfu_with_attention=mfu_attn,
        hfu_full_recompute=rate_per_gpu * executed / peak,
        doc_tokens=doc_tokens if doc_tokens is not None and doc_tokens < seq else None,
        method="full" if lora is None else lora.method,
        mfu_of_measured=measured, warnings=warnings,
        verdict=(f"MFU {figure(mfu_6n * 100, 1)}% by 6N, {figure(mfu_attn * 100, 1)}% with attention FLOPs at seq {seq} "
                 if lora is None else
                 f"MFU {figure(mfu_attn * 100, 1)}% of a frozen base's model FLOPs ({lora.label()}) at seq {seq}, "
                 f"{figure(mfu_6n * 100, 1)}% by 6N (it counts the weight gradients LoRA never runs) ")
        + f"({gpu.name} {peak_name(dtype)} peak {peak / TERA:g} TFLOPS)",
        explain=[
            f"throughput per GPU: {how} = {rate_per_gpu:,.1f} tokens/s/GPU",
            f"6N = 6*{f.active_params:,} = {f.approx_6n:,} FLOPs/token" + (
                " (it counts the weight gradients a frozen LoRA base never computes: above the counted MFU)"
                if lora is not None else ""),
            f"MFU (6N) = {rate_per_gpu:,.1f} * {abbrev(f.approx_6n, digits=4)} / {abbrev(peak, digits=4)} = {mfu_6n:.4f}",
            f"with attention ({f.convention}, S = {seq}"
            + (f", packed documents of {doc_tokens:,} tokens: attention inside each, S/d x a d-token forward's"
               if packed else "")
            + f"): forward = 2 x M x S + attention = 2 x {f.matmul_params:,} x {seq:,} + {attention:,.0f} = "
            f"{forward:,.0f} FLOPs (M: the matmul weights, the input embedding left out: a lookup)"
            + (f"; 3*forward/S = {abbrev(per_token, digits=4)} FLOPs/token" if lora is None else ""),
            *([f"{lora.label()} on a frozen base: (2 x forward + attention + 3 x the adapters' forward) / S = "
               f"{abbrev(per_token, digits=4)} FLOPs/token, no weight gradients, as train-step counts them "
               "(calc.training.model_flops)"] if lora is not None else []),
            f"MFU (attention) = {rate_per_gpu:,.1f} * {abbrev(per_token, digits=4)} / {abbrev(peak, digits=4)} = {mfu_attn:.4f}",
            f"achieved model FLOP/s per GPU = {rate_per_gpu:,.1f} * {abbrev(per_token, digits=4)} = "
            f"{rate_per_gpu * per_token / TERA:,.1f} TFLOP/s (model FLOPs: no recomputation counted)",
            f"HFU if every layer is recomputed (what the GPUs execute, as train-step counts it: a causal flash kernel's "
            f"training FLOPs {abbrev(counted.causal, digits=4)} + the layers' forward again "
            f"{abbrev(counted.recompute, digits=4)} (not the output head's) per sequence) = {rate_per_gpu:,.1f} * "
            f"{abbrev(executed, digits=4)} / {abbrev(peak, digits=4)} = {rate_per_gpu * executed / peak:.4f}; selective "
            "recomputation adds only the attention core's forward (train-step prices it: its HFU with --recompute "
            "selective; Korthikanti et al. 2022 Table 5 count selective HFU as (1 + s/3h + V/12lh) / (1 + s/6h + "
            "V/12lh) x MFU, their own FLOP formula's recompute term)",
            *([f"not counted: the {mtp:,} parameters of the multi-token-prediction modules "
               "(trained with MTP, as DeepSeek-V3 at depth 1, every token also passes them: roughly 6 x their active "
               "parameters more per token); the FLOPs above are the main model's, as published 6N figures count them"]
              if mtp else []),
        ],
    )


class TrainTimeResult(BaseModel):
    model: str
    gpu: str
    num_gpus: int
    tokens: float
    seq: int
    dtype: str = "bf16"  # the compute dtype of the peak: picks the band group (calc.report.confidence)
    mfu: float
    total_flops: float
    total_flops_6n: float
    mfu_6n: float | None = None  # the same time's MFU by 6N (mfu x total_flops_6n / total_flops), as `mfu` counts it
    gpu_hours: float
    days: float
    cost: float | None
    price_per_gpu_hour: float | None
    best_case_days: float | None
    mfu_source: str = "assumed (--mfu)"
    plan: str | None = None
    # the predicted plan's optimizer step: sequences per step, those in tokens (x seq), and its step time (None with --mfu)
    global_batch: int | None = None
    global_batch_tokens: int | None = None
    step_time_s: float | None = None
    stack: str | None = None  # the predicted plan's training stack (its band's stack); None with an assumed --mfu
    memory_per_gpu_bytes: int | None = None  # the predicted plan's peak per GPU (its three-valued fit); None with --mfu
    gpu_memory_bytes: int | None = None
    verdict: str
    assumptions: list[str] = []  # what the days rest on, as train-step / serve list them: the plan's, or the assumed MFU
    explain: list[str]
    warnings: list[str] = []


def _assumed_mfu_warning(mfu: float) -> list[str]:
    """An assumed --mfu above any published large run, or below 1% (a unit slip), warned as `mfu` warns a measured
    one (calc.sanity SUSPICIOUS_MFU, TINY_MFU)."""
    if mfu > SUSPICIOUS_MFU:
        return [f"--mfu: {mfu:.1%} is above any published large run (~55-60%); the days are a best case no run reached"]
    if mfu < TINY_MFU:
        return [f"--mfu: {mfu:.2%} is below 1%: an MFU is a fraction (0.4 for 40%)"]
    return []


def train_time(
    m: ModelSpec, gpu: GPUSpec, *, num_gpus: int, tokens: float, seq: int = 2048, mfu_assumed: float = 0.4,
    dtype: str = "bf16", price_per_gpu_hour: float | None = None, causal: bool = False,
    calibration: Calibration | None = None, plan: Any = None, lora: Any = None,
    mfu_source: str = "assumed (--mfu)", doc_tokens: int | None = None, rates_given: bool = False,
) -> TrainTimeResult:
    """Days, GPU-hours and cost: D x (training FLOPs per token) / (GPUs x peak x MFU).

    With ``plan`` (a calc.training.step.TrainStepResult, e.g. the best from calc.training.plan) the MFU is
    that plan's predicted MFU (same FLOP convention: full s x s attention) instead of ``mfu_assumed``. ``lora`` (a
    calc.training.adapters.Lora): a frozen base's FLOPs per token (calc.training.adapters.lora_flops_per_seq / S), the
    convention its plan's MFU is counted in. A plan's time is its step time: ``causal`` (the causal-half FLOP count)
    changes the FLOPs and the MFU reported, never the days (the plan's MFU, full convention, converts back to its own
    throughput). ``doc_tokens``: packed documents of that many tokens, attention inside each (the FLOPs per token
    a plan's MFU counts then, calc.training.model_flops.sequence_flops, as train-step and mfu --doc-tokens count them)."""
    source = mfu_source
    if plan is not None:
        mfu_assumed = plan.mfu
        source = f"predicted for {plan.layout} (global batch {plan.global_batch}, {plan.step_time_s:.3f} s/step)"
    check_num_gpus(num_gpus)
    check_positive(tokens, "--tokens")
    check_fraction(mfu_assumed, "--mfu")
    if price_per_gpu_hour is not None:
        check_positive(price_per_gpu_hour, "--price", allow_zero=True)
    peak = peak_tflops(gpu, dtype) * TERA
    f = forward_flops(m, 1, seq, causal=causal)  # its 6N and convention for the explain
    counted = sequence_flops(m, seq, doc_tokens, lora=lora)  # the model FLOPs a plan's MFU counts (calc.training.model_flops)
    per_token = (counted.causal if causal else counted.model) / seq
    total = tokens * per_token
    if plan is not None and causal:  # the plan's MFU counts the full s x s: its time from that count, its MFU re-read
        full = tokens * (counted.model / seq)
        seconds = full / (num_gpus * peak * mfu_assumed)
        mfu_assumed *= total / full
    else:
        seconds = total / (num_gpus * peak * mfu_assumed)
    gpu_hours = seconds * num_gpus / HOURS
    best = None
    if calibration is not None:
        best = total / (num_gpus * peak * efficiency_for(gpu, dtype, calibration).compute) / 86400
    cost = gpu_hours * price_per_gpu_hour if price_per_gpu_hour is not None else None
    cost_text = f", cost {figure(cost)} at {price_per_gpu_hour:g}/GPU-h" if cost is not None else ""
    assumptions = plan.assumptions if plan is not None else [f"MFU {mfu_assumed:g} {mfu_source}, not predicted"]
    return TrainTimeResult(
        model=m.name, gpu=gpu.name, num_gpus=num_gpus, tokens=tokens, seq=seq, dtype=dtype, mfu=mfu_assumed,
        total_flops=total, total_flops_6n=tokens * f.approx_6n, mfu_6n=mfu_assumed * tokens * f.approx_6n / total,
        gpu_hours=gpu_hours, days=seconds / 86400,
        cost=cost, price_per_gpu_hour=price_per_gpu_hour, best_case_days=best, mfu_source=source,
        warnings=check_tokens(tokens) + (_assumed_mfu_warning(mfu_assumed) if plan is None else
                                         check_predicted_mfu(plan, measured=calibration is not None or rates_given)
                                         + list(getattr(plan, "warnings", []))),
        plan=plan.layout if plan is not None else None, stack=plan.stack if plan is not None else None,
        global_batch=plan.global_batch if plan is not None else None,
        global_batch_tokens=plan.global_batch * seq if plan is not None else None,
        step_time_s=plan.step_time_s if plan is not None else None,
        memory_per_gpu_bytes=getattr(plan, "memory_per_gpu_bytes", None), gpu_memory_bytes=getattr(plan, "gpu_memory_bytes", None),
        verdict=f"{figure(seconds / 86400, 1)} days on {num_gpus} x {gpu.name} at "
        + (f"{mfu_assumed:.1%} MFU predicted for {plan.layout} " if plan is not None else f"{mfu_assumed:.0%} MFU ")
        + f"({figure(gpu_hours)} GPU-hours{cost_text})", assumptions=assumptions,
        explain=[
            f"MFU {mfu_assumed:.4f}: {source}",
            ("FLOPs = D x (2*forward + attention + 3*adapters)/S, a frozen base's" if lora is not None
             else "FLOPs = D x 3*forward/S") + f" = {abbrev(tokens, digits=4)} x {abbrev(per_token, digits=4)} = "
            f"{abbrev(total, digits=4)} "
            f"(6N alone: {abbrev(tokens * f.approx_6n, digits=4)})",
            f"time = {abbrev(total, digits=4)} / ({num_gpus:,} x {abbrev(peak, digits=4)} x {mfu_assumed:.4f}) = {figure(seconds)} s "
            f"= {figure(seconds / 86400, 2)} days",
            f"GPU-hours = {figure(seconds)} x {num_gpus} / 3600 = {figure(gpu_hours)}",
            *(f"assumption: {a}" for a in (plan.assumptions if plan is not None else [])),  # the plan's MFU rests on them
            # (an assumed MFU is the first line's)
        ],
    )
