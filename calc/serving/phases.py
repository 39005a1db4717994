"""The serving time model as `validate` and `calibrate --from-runs` consume it: one prefill and one
decode step, as numbers. The only place those two commands call the serving model, so a new
serving model (continuous batching, per-GEMM efficiencies) is wired in here alone."""

from __future__ import annotations

from calc.hardware.calibration import Calibration
from calc.specs import GPUSpec, ModelSpec


def predict_phases(m: ModelSpec, gpu: GPUSpec, batch: int, prompt: int, dtype: str,
                   calibration: Calibration | None) -> tuple[float, float, str]:
    """(prefill s, one decode step at context prompt+1 s, efficiency source) by calc.serving.latency;
    causal, as SDPA runs a prefill."""
    from calc.serving.latency import latency

    r = latency(m, gpu, num_gpus=1, batch=batch, prompt=prompt, output=1, dtype=dtype, calibration=calibration, causal=True)
    return r.ttft_s, r.tpot_s, r.efficiency_source


def phase_terms(m: ModelSpec, gpu: GPUSpec, phase: str, *, num_gpus: int, batch: int, prompt: int, output: int,
                dtype: str) -> tuple[float, float, float, float]:
    """(compute, memory, fixed, default) seconds of a prefill or one decode step: compute = FLOPs /
    (GPUs x peak) and memory = bytes / (GPUs x bandwidth) at efficiency 1, fixed = communication +
    per-step overhead (no efficiency scales them), default = latency's own answer without a calibration.
    A flat calibration (e_c, e_m) makes latency answer exactly max(compute / e_c, memory / e_m) + fixed."""
    from calc.hardware.peaks import peak_tflops
    from calc.serving.latency import latency

    r = latency(m, gpu, num_gpus=num_gpus, batch=batch, prompt=prompt, output=output, dtype=dtype)
    flops = r.prefill_flops if phase == "prefill" else r.decode_flops_per_step
    compute = flops / (r.tp * peak_tflops(gpu, dtype) * 1e12)
    return (compute, getattr(r, f"{phase}_memory_s") * r.memory_efficiency, getattr(r, f"{phase}_comm_s") + r.step_overhead_s,
            r.ttft_s if phase == "prefill" else r.tpot_s)
