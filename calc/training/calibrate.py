"""Calibrate the step model to a step time the user measured: the GEMM plateau that reproduces it.

The predicted step time falls monotonically as the plateau e_max rises (every GEMM gets faster, nothing
else changes), so bisection on e_max in [0.05, 1] finds the one value with predicted = measured. Passing
it back (`--gemm-plateau`) makes every other plan of that model on that system use the measured
efficiency, with the rest of the model (communication, bubble, overlap) unchanged.
"""

from __future__ import annotations

from dataclasses import replace

from calc.errors import LLMCalcError
from calc.training.cost import ModelCost
from calc.training.layout import Layout
from calc.training.step import step_terms

LOW, HIGH = 0.05, 1.0


def predicted_step_time(cost: ModelCost, layout: Layout, global_batch: int, micro: int, plateau: float) -> float:
    trial = ModelCost(cost.m, cost.gpu, cost.system, cost.seq, cost.dtype, replace(cost.eff, gemm_plateau=plateau), cost.calibration)
    return step_terms(trial, layout, global_batch, micro).step_time_s


def fit_gemm_plateau(cost: ModelCost, layout: Layout, global_batch: int, micro: int, measured_s: float) -> float | None:
    """e_max with predicted step = ``measured_s`` (to 0.1%), or None when even e_max = 1 predicts a slower step
    (the measurement is faster than the rest of the model allows: check the layout or the other efficiencies)."""
    if not measured_s > 0:
        raise LLMCalcError("--measured-step-time", f"must be > 0 seconds, got {measured_s}")
    if predicted_step_time(cost, layout, global_batch, micro, HIGH) > measured_s:
        return None
    if predicted_step_time(cost, layout, global_batch, micro, LOW) < measured_s:
        return LOW
    lo, hi = LOW, HIGH
    for _ in range(40):
        mid = (lo + hi) / 2
        if predicted_step_time(cost, layout, global_batch, micro, mid) > measured_s:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-4:
            break
    return (lo + hi) / 2
