"""The serving time model as `validate` and `calibrate --from-runs` consume it: one prefill and one
decode step, as numbers. The only place those two commands call the serving model, so a new
serving model (continuous batching, per-GEMM efficiencies) is wired in here alone."""

from __future__ import annotations

from calc.errors import LLMCalcError
from calc.hardware.calibration import Calibration
from calc.serving.assumptions import ServingAssumptions
from calc.specs import GPUSpec, ModelSpec

# `validate` times a bare torch forward: no engine scheduler runs between its steps.
BARE_FORWARD = ServingAssumptions(step_overhead_s=0.0, step_overhead_per_seq_s=0.0)


def predict_phases(m: ModelSpec, gpu: GPUSpec, batch: int, prompt: int, dtype: str,
                   calibration: Calibration | None) -> tuple[float, float, str]:
    """(prefill s, one decode step at context prompt+1 s, efficiency source) of the forward `validate` times:
    calc.serving.latency's steps, causal (as SDPA runs a prefill), with two differences from an engine's
    step, both printed in the source line: no per-step engine overhead (BARE_FORWARD), and the output head
    over every prompt token, as validate's torch model computes it (an engine samples one row per sequence):
    prefill = latency TTFT + head GEMM at B x P rows - head GEMM at B rows (calc.serving.step.weight_gemm_time)."""
    from calc.serving.latency import latency
    from calc.serving.step import weight_gemm_time

    r = latency(m, gpu, num_gpus=1, batch=batch, prompt=prompt, output=1, dtype=dtype, calibration=calibration, causal=True,
                assumptions=BARE_FORWARD)
    head = (weight_gemm_time(m, gpu, 0, batch * prompt, 1, dtype, calibration)[0]
            - weight_gemm_time(m, gpu, 0, batch, 1, dtype, calibration)[0])
    note = "validate: a bare forward (no engine step overhead), the output head over all prompt tokens"
    return r.ttft_s + head, r.tpot_s, f"{r.efficiency_source}; {note}"


def run_dtype(m: ModelSpec, gpu: GPUSpec, dtype: str | None) -> str:
    """The tensor peak a serving run's GEMMs run at: the weights' compute dtype (calc.serving.weights.weight_format;
    ``dtype`` None: the checkpoint as shipped, as `latency` reads it), the dtype a calibration fitted to it is for."""
    from calc.serving.weights import weight_format

    return weight_format(m, gpu, dtype).compute_dtype


def phase_terms(m: ModelSpec, gpu: GPUSpec, phase: str, *, num_gpus: int, batch: int, prompt: int, output: int,
                dtype: str | None, engine: str = "vllm") -> tuple[float, float, float, float]:
    """(compute, memory, fixed, default) seconds of a prefill or one decode step, per GPU: the step's
    FLOPs over the dense peak and its bytes over the HBM bandwidth (efficiency 1), its all-reduces plus
    the step's host overhead (fixed + per sequence, calc.serving.step.step_overhead) and an MoE model's routing kernels
    (calc.serving.step.moe_routing_s, from measured kernel tables: the roofline step adds them after its max, at the
    uncalibrated bandwidth); no efficiency scales these three,
    and latency's own answer without a calibration. The run is priced as `llmcalc latency --engine ENGINE` prices
    it (calc.serving.capacity.engine_latency): the engine's step overhead for this model (calc.serving.assumptions
    engine_defaults, an MoE model's key apart), its release's kernels on this GPU (calc.serving.engine_kernels) and
    its prefill chunk, so the prefill of a batch over the engine's token budget is the sum of its chunks' steps."""
    from calc.hardware.peaks import peak_tflops
    from calc.serving.assumptions import engine_defaults
    from calc.serving.capacity import batch_fit_problem, engine_latency
    from calc.serving.engine_kernels import engine_kernels
    from calc.serving.latency import serving_plan
    from calc.serving.shards import shard_problem
    from calc.specs.serving import EngineSettings
    from calc.units import TERA

    if prompt + output > m.context_window:  # as latency refuses it (calc.cli.common.window_output)
        raise LLMCalcError("prompt", f"{prompt:,} + {output:,} output tokens exceed {m.name}'s context window of "
                                     f"{m.context_window:,} tokens: no engine runs such a request at its defaults")
    settings = EngineSettings(engine=engine)
    a = engine_kernels(ServingAssumptions(**engine_defaults(settings, m.moe is not None)), m, gpu, settings,
                       prompt + output - 1, dtype)
    plan = serving_plan(m, num_gpus, None, 1)
    unloadable = shard_problem(m, dtype, plan.tp, 1, engine, a.fp8_moe_scales)
    if unloadable is not None:  # as latency refuses it: the engine would not load the checkpoint on this layout
        raise LLMCalcError("num_gpus", unloadable)
    # fit first, as latency: a run that cannot be launched has no time to fit; sized as the run was launched for its
    # batch (vLLM --max-num-seqs = the batch: the profile run then samples that many, as latency's hint says), since a
    # runs file has no launch settings
    launched = settings.model_copy(update={"max_num_seqs": batch}) if settings.accounting().startswith("vllm") else settings
    problem = batch_fit_problem(m, gpu, plan, launched, dtype, None, batch, prompt + output, a)
    if problem is not None:
        raise LLMCalcError("num_gpus", problem.message)
    r = engine_latency(m, gpu, plan, settings, a, batch=batch, prompt=prompt, output=output, dtype=dtype)
    flops, moved = (r.prefill_flops, r.prefill_bytes) if phase == "prefill" else (r.decode_flops_per_step,
                                                                                   r.decode_bytes_per_step)
    fixed = sum(getattr(r, f"{phase}_{part}_s") for part in ("comm", "overhead", "routing"))
    return (flops / (peak_tflops(gpu, run_dtype(m, gpu, dtype)) * TERA), moved / (gpu.hbm_tb_s * TERA), fixed,
            r.ttft_s if phase == "prefill" else r.tpot_s)
