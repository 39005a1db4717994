"""The serving time model as `validate` and `calibrate --from-runs` consume it: one prefill and one
decode step, as numbers. The only place those two commands call the serving model, so a new
serving model (continuous batching, per-GEMM efficiencies) is wired in here alone."""

from __future__ import annotations

from calc.hardware.calibration import Calibration
from calc.specs import GPUSpec, ModelSpec


def predict_phases(m: ModelSpec, gpu: GPUSpec, batch: int, prompt: int, dtype: str,
                   calibration: Calibration | None) -> tuple[float, float, str]:
    """(prefill s, one decode step at context prompt+1 s, efficiency source) by calc.serving.latency."""
    from calc.serving.latency import latency

    r = latency(m, gpu, num_gpus=1, batch=batch, prompt=prompt, output=1, dtype=dtype, calibration=calibration)
    return r.ttft_s, r.tpot_s, r.efficiency_source


def phase_terms(m: ModelSpec, gpu: GPUSpec, phase: str, *, num_gpus: int, batch: int, prompt: int, output: int,
                dtype: str) -> tuple[float, float, float]:
    """(compute, memory, communication) seconds of a prefill or a decode step at efficiency 1:
    latency's roofline terms with its efficiencies divided back out."""
    from calc.serving.latency import latency

    r = latency(m, gpu, num_gpus=num_gpus, batch=batch, prompt=prompt, output=output, dtype=dtype)
    return (getattr(r, f"{phase}_compute_s") * r.compute_efficiency, getattr(r, f"{phase}_memory_s") * r.memory_efficiency,
            getattr(r, f"{phase}_comm_s"))
