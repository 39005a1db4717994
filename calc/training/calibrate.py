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
from calc.training.step import TrainStepResult, step_terms
from calc.units import percent

LOW, HIGH = 0.05, 1.0


def predicted_step_time(cost: ModelCost, layout: Layout, global_batch: int, micro: int, plateau: float) -> float:
    trial = replace(cost, eff=replace(cost.eff, gemm_plateau=plateau))  # every other field as given; caches rebuilt
    return step_terms(trial, layout, global_batch, micro).step_time_s


def fit_gemm_plateau(cost: ModelCost, layout: Layout, global_batch: int, micro: int, measured_s: float) -> float | None:
    """e_max with predicted step = ``measured_s`` (to 0.1%), or None when even e_max = 1 predicts a slower step
    (the measurement is faster than the rest of the model allows: check the layout or the other efficiencies).
    A step slower than even e_max = 0.05 predicts is refused, naming --measured-step-time: no plateau in the range
    reproduces it (it was answered as 0.050, "the plateau that reproduces it", for a step of 10^30 s)."""
    if not measured_s > 0:
        raise LLMCalcError("--measured-step-time", f"must be > 0 seconds, got {measured_s}")
    if predicted_step_time(cost, layout, global_batch, micro, HIGH) > measured_s:
        return None
    slowest = predicted_step_time(cost, layout, global_batch, micro, LOW)
    if slowest < measured_s:
        raise LLMCalcError("--measured-step-time", f"{measured_s:g} s is slower than this plan at a {LOW:.0%} GEMM "
                           f"efficiency ({slowest:.3f} s): no plateau reproduces it; check the layout, the batch and the unit")
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


def with_measurement(result: TrainStepResult, cost: ModelCost, layout: Layout, measured_s: float) -> TrainStepResult:
    """The result with the measured step, the model's error against it and the plateau that reproduces it."""
    if not result.fits or result.step_time_s is None:
        return result
    implied = result.mfu * result.step_time_s / measured_s  # the same model FLOPs in the measured time
    if implied > 1:  # no step runs above the dense peak (the mfu command refuses the same)
        raise LLMCalcError("--measured-step-time", f"{measured_s:g} s implies MFU {percent(implied)}, above 100% of "
                                                   "the GPUs' dense peak; check the unit (seconds per optimizer step)")
    # a calibration's measured GEMM curve times every GEMM (no plateau is read): the error alone, nothing to fit
    curve = cost.calibration is not None and bool(getattr(cost.calibration, "ops", {}).get("gemm"))
    fitted = None if curve else fit_gemm_plateau(cost, layout, result.global_batch, result.num_microbatches, measured_s)
    error = (result.step_time_s - measured_s) / measured_s
    line = f"measured {measured_s:.4f} s vs predicted {result.step_time_s:.4f} s: error {error:+.1%}; " + (
        "the --calibration file's measured GEMM curve times the GEMMs, so no plateau is fitted" if curve else
        f"the GEMM plateau that reproduces it is {fitted:.3f} (pass --gemm-plateau {fitted:.3f} to reuse it)" if fitted else
        "faster than the model allows even at 100% GEMM efficiency: check the layout and the other efficiencies")
    return result.model_copy(update={
        "measured_step_time_s": measured_s, "measured_error": error, "fitted_gemm_plateau": fitted,
        "verdict": result.verdict + f"; {line}", "explain": [*result.explain, line],
    })
