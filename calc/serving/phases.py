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
    """(compute, memory, fixed, default) seconds of a prefill or one decode step, per GPU: the step's
    FLOPs over the dense peak and its bytes over the HBM bandwidth (efficiency 1), its all-reduces plus
    the per-step overhead (no efficiency scales them), and latency's own answer without a calibration."""
    from calc.hardware.peaks import peak_tflops
    from calc.serving.latency import latency
    from calc.units import TERA

    r = latency(m, gpu, num_gpus=num_gpus, batch=batch, prompt=prompt, output=output, dtype=dtype)
    flops, moved = (r.prefill_flops, r.prefill_bytes) if phase == "prefill" else (r.decode_flops_per_step,
                                                                                   r.decode_bytes_per_step)
    return (flops / (peak_tflops(gpu, dtype) * TERA), moved / (gpu.hbm_tb_s * TERA),
            getattr(r, f"{phase}_comm_s") + r.step_overhead_s, r.ttft_s if phase == "prefill" else r.tpot_s)
