"""`llmcalc calibrate --from-runs FILE`: fit the compute and memory efficiencies to measured runs.

Each run is one measured time with its settings: a TTFT (prefill), a TPOT (decode step) or a
training step time. At efficiencies 1 the time models give, per run i, a compute time C_i
(FLOPs / (GPUs x peak)), a memory time M_i (bytes / (GPUs x bandwidth)) and a fixed time K_i that
no efficiency scales (communication, per-step overhead, an MoE model's routing kernels); with efficiencies (e_c, e_m) the roofline

    t_i = max(C_i / e_c, M_i / e_m) + K_i          (Williams et al. 2009; calc.serving.step)

Least squares on the relative residual r_i = (t_i - T_i) / T_i, with x = 1/e: for the runs whose
larger term is compute, minimising sum(((C_i x + K_i - T_i) / T_i)^2) gives
x_c = sum(a_i b_i) / sum(a_i^2) with a_i = C_i/T_i, b_i = (T_i - K_i)/T_i (the same for memory).
Which term is larger depends on x, so the fit alternates: classify with the current x, solve, repeat
until the classification stops changing (a few rounds; Lloyd-style alternation).
A training step (no memory term in today's model) is C_i = 3 x forward FLOPs / (GPUs x peak).
The fitted e_c is flat in shape (the serving model's small-batch fall-off is not applied on top), and
`--save` writes it as a flat calibration marked time_model "roofline", with which `latency` times each
step as exactly max(C/e_c, M/e_m) + K (calc.serving.step.step_time), reproducing the fitted predictions
(efficiencies above 1 are saved capped at 1). One exception: a TTFT whose prefill runs in chunks of the engine's token
budget (calc.serving.capacity.engine_latency) is fitted as one roofline of its chunks' summed C and M, while `latency`
times each chunk as its own roofline; when the chunks differ in bound (a short last chunk streaming the weights for a
few tokens), the saved calibration times the run up to a few percent slower than its fitted prediction (8 x 2,050
tokens on one H100 in chunks of 8,192, 8,192 and 16: +1.8%).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from calc.errors import LLMCalcError
from calc.hardware.calibration import DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_MEMORY_EFFICIENCY
from calc.specs import GPUSpec, ModelSpec
from calc.specs.serving import Engine, engine_gpu_problem
from calc.units import abbrev, count

MEASURES = ("ttft_s", "tpot_s", "step_time_s")
MAX_ROUNDS = 50
# Beyond any real run (the largest published trainings use ~10^5 GPUs and batches of ~10^4 sequences;
# contexts reach 10^7 tokens): a value past these is a typo or a unit slip, refused naming the column.
MAX_GPUS = 1_000_000
MAX_BATCH = 10_000_000
MAX_TOKENS = 1 << 30
MAX_SECONDS = 1e6


class Run(BaseModel):
    """One measured run: settings plus exactly one of ttft_s, tpot_s, step_time_s."""

    model_config = ConfigDict(extra="forbid")

    model: str
    gpu: str
    num_gpus: PositiveInt = Field(1, le=MAX_GPUS)
    batch: PositiveInt = Field(1, le=MAX_BATCH, description="requests (serving) or sequences per step (training)")
    prompt: PositiveInt | None = Field(None, le=MAX_TOKENS)
    output: PositiveInt = Field(1, le=MAX_TOKENS)
    seq: PositiveInt | None = Field(None, le=MAX_TOKENS, description="training sequence length")
    dtype: str | None = Field(None, description=(
        "the weights as `latency --dtype` takes them; empty: as the checkpoint ships them for a TTFT / TPOT run (as "
        "`latency`), bf16 for a training step"))
    engine: Engine | None = Field(None, description=(
        "the serving engine a TTFT / TPOT run measured (vllm, vllm-v0, sglang, trtllm; default vllm, as `latency`): "
        "its step overhead and prefill chunk, as `latency --engine` prices them; refused on a training run"))
    ttft_s: float | None = Field(None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    tpot_s: float | None = Field(None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    step_time_s: float | None = Field(None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_measure(self) -> Run:
        given = [k for k in MEASURES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(MEASURES)} (got {', '.join(given) or 'none'})")
        if given[0] == "step_time_s" and self.seq is None:
            raise ValueError("a step_time_s run needs seq (and batch = sequences per step)")
        if given[0] == "step_time_s" and self.engine is not None:
            raise ValueError("engine is a serving engine's (a ttft_s / tpot_s run); a step_time_s run takes none: "
                             "leave its cell empty")
        if given[0] != "step_time_s" and self.prompt is None:
            raise ValueError(f"a {given[0]} run needs prompt")
        return self

    @property
    def serving_engine(self) -> str | None:
        """The engine a TTFT / TPOT run is priced as (its cell, else vllm, as `latency`); None for a training step."""
        return None if self.measure == "step_time_s" else self.engine or "vllm"

    @property
    def measure(self) -> str:
        return next(k for k in MEASURES if getattr(self, k) is not None)

    @property
    def measured_s(self) -> float:
        return float(getattr(self, self.measure))


class Terms(BaseModel):
    """A run's time at efficiency 1: compute C, memory M, fixed K (communication + overhead), seconds;
    and the time model's own answer with its default efficiencies."""

    compute_s: float
    memory_s: float
    fixed_s: float
    default_s: float


class RunFit(BaseModel):
    row: int
    model: str
    engine: str | None = Field(None, description="the serving engine the run was priced as (None: a training step)")
    measure: str
    measured_s: float
    predicted_default_s: float
    predicted_fitted_s: float
    residual: float  # (fitted - measured) / measured
    default_residual: float
    bound: str


class FitResult(BaseModel):
    gpu: str
    dtype: str
    compute_efficiency: float
    memory_efficiency: float
    compute_runs: int
    memory_runs: int
    rounds: int
    rms_residual: float
    default_rms_residual: float
    runs: list[RunFit]
    assumptions: list[str]
    explain: list[str]


def _csv_rows(text: str, path: str) -> list[dict[str, str]]:
    """The rows of a runs CSV as {column: value} (empty cells left out). The first line must be the
    header naming the columns; every later line has one cell per column. A header line repeated below,
    a column named twice, or a row with more or fewer cells than the header is refused, naming the row:
    each would otherwise shift values into the wrong columns without a word."""
    lines = list(csv.reader(io.StringIO(text)))
    header = [h.strip() for h in (lines[0] if lines else [])]
    if "model" not in header:
        raise LLMCalcError("--from-runs", f"{path}: the first line must be the header naming the columns, e.g. "
                                          f"{','.join(CSV_HEADER)}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise LLMCalcError("--from-runs", f"{path}: the header names column {twice[0]!r} twice; keep one")
    rows = []
    for i, cells in enumerate(lines[1:], 1):
        where = f"{path}: row {i} (line {i + 1})"
        if not any(c.strip() for c in cells):
            continue
        if [c.strip() for c in cells] == header:
            raise LLMCalcError("--from-runs", f"{where} repeats the header line; keep it once, on the first line")
        if len(cells) != len(header):
            raise LLMCalcError("--from-runs", f"{where} has {len(cells)} cells, the header {len(header)}: one per column, "
                                              "empty for none (a trailing comma keeps an empty last cell)")
        rows.append({k: v.strip() for k, v in zip(header, cells, strict=True) if v.strip()})
    return rows


# The columns of a runs CSV, in the order the README shows them.
CSV_HEADER = ("model", "gpu", "num_gpus", "batch", "prompt", "output", "ttft_s", "tpot_s")


def read_runs(path: str) -> list[Run]:
    """Runs from a CSV (header row) or a YAML list (or a mapping with a `runs` list)."""
    from calc.sources.safeload import parse_yaml, read_text

    text = read_text(Path(path), "--from-runs")
    is_csv = path.lower().endswith(".csv")
    if is_csv:
        rows: list[Any] = _csv_rows(text, path)
    else:
        if text.lstrip().startswith("-"):  # a bare list: nest it under `runs:` (the safe loader wants a mapping)
            text = "runs:\n" + "".join(f"  {line}\n" for line in text.splitlines())
        data = parse_yaml(text, path, "--from-runs")
        rows = data.get("runs")
        if not isinstance(rows, list):
            raise LLMCalcError("--from-runs", f"{path}: expected a list of runs (or `runs:` with a list)")
    if not rows:
        raise LLMCalcError("--from-runs", f"{path}: no runs")
    runs = []
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise LLMCalcError("--from-runs", f"{path}: run {i} is not a mapping of settings")
        try:
            runs.append(Run.model_validate(row))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = "".join(f"{p}: " for p in err["loc"])
            row = f"row {i} (line {i + 1})" if is_csv else f"run {i}"
            raise LLMCalcError("--from-runs", f"{path}: {row}: {where}{err['msg'].removeprefix('Value error, ')}") from None
    return runs


def with_engine(runs: list[Run], engine: str) -> list[Run]:
    """The runs with ``engine`` (calibrate --engine) for every TTFT / TPOT run whose engine cell is empty; a run that
    names its own engine keeps it. Refused when no run takes it (every serving run names its engine, or the runs are
    training steps): the flag would change nothing."""
    takes = [run.engine is None and run.measure != "step_time_s" for run in runs]
    if not any(takes):
        raise LLMCalcError("--engine", f"no run takes {engine}: every TTFT / TPOT run names its own engine (or the runs "
                                       "are training steps, which take none); drop --engine or empty their engine cells")
    return [run.model_copy(update={"engine": engine}) if take else run for run, take in zip(runs, takes, strict=True)]


def implied_efficiency(t: Terms, measured_s: float) -> float:
    """The efficiency a run implies: max(C, M) / (T - K), the fraction of peak its larger roofline term
    would run at to take the measured T (the roofline t = max(C/e_c, M/e_m) + K at e = 1 is the fastest
    any run can be). Outside (0, 1] the run beats the hardware: its settings or time are wrong.
    Infinite when the run is no slower than its fixed time K alone."""
    spare = measured_s - t.fixed_s
    return max(t.compute_s, t.memory_s) / spare if spare > 0 else math.inf


def check_physical(runs: list[Run], terms: list[Terms]) -> None:
    """Refuse a run faster than its roofline at peak (implied efficiency > 1), naming its row and its
    measured column: one such row would drag the fit to an efficiency above 1 (a batch of 1e30 fitted
    1.16e29)."""
    for i, (run, t) in enumerate(zip(runs, terms, strict=True), 1):
        e = implied_efficiency(t, run.measured_s)
        if math.isinf(e):  # no efficiency explains it: the fixed time alone is longer (a prefill's chunks' overheads)
            raise LLMCalcError("--from-runs", f"run {i}: {run.measure} {count(run.measured_s)} s is shorter than its fixed "
                               f"time alone ({count(t.fixed_s)} s of step overhead and communication, no efficiency "
                               "scales them); check this row's batch, prompt, output, num_gpus, engine and time")
        if not 0 < e <= 1:
            fixed = (f" with its fixed {t.fixed_s * 1e3:.2f} ms per step (the engine's fitted step overhead and communication, which "
                     "calibrate does not refit)" if t.fixed_s > 0 else "")
            raise LLMCalcError("--from-runs", f"run {i}: {run.measure} {count(run.measured_s)} s is faster than {run.model} on "
                               f"{run.num_gpus} x {run.gpu} can be at peak{fixed} (implied efficiency {abbrev(e)}, must be in "
                               "(0, 1]); check this row's batch, prompt, output, num_gpus, engine and time")


ServingTerms = Callable[..., tuple[float, float, float, float]]


def run_terms(m: ModelSpec, gpu: GPUSpec, run: Run, serving_terms: ServingTerms) -> Terms:
    """C, M, K of one run: a training step from its FLOPs; a TTFT or TPOT from ``serving_terms``
    (calc.serving.phases.phase_terms, passed in so that hardware/ never imports serving/)."""
    from calc.hardware.peaks import peak_tflops

    if run.measure == "step_time_s":
        from calc.model.flops import forward_flops

        assert run.seq is not None
        step = forward_flops(m, run.batch, run.seq).training_flops
        compute = step / (run.num_gpus * peak_tflops(gpu, run.dtype or "bf16") * 1e12)
        return Terms(compute_s=compute, memory_s=0.0, fixed_s=0.0, default_s=compute / DEFAULT_COMPUTE_EFFICIENCY)
    assert run.prompt is not None
    compute, memory, fixed, default = serving_terms(m, gpu, "prefill" if run.measure == "ttft_s" else "decode", num_gpus=run.num_gpus,
                                          batch=run.batch, prompt=run.prompt, output=run.output, dtype=run.dtype,
                                          engine=run.serving_engine)
    return Terms(compute_s=compute, memory_s=memory, fixed_s=fixed, default_s=default)


def _named_run_terms(i: int, run: Run, gpu: GPUSpec, serving_terms: ServingTerms) -> Terms:
    """run_terms of run ``i``, a run the model refuses (it does not fit, its request exceeds the context) named by
    its row and column: no efficiency is fitted to a run that cannot have happened as written."""
    from calc.sources.catalog import load_model

    try:
        return run_terms(load_model(run.model, "--from-runs"), gpu, run, serving_terms)
    except LLMCalcError as exc:
        raise LLMCalcError("--from-runs", f"run {i}: {exc.field.lstrip('-')}: {exc.problem}") from None


def _predict(t: Terms, x_c: float, x_m: float) -> float:
    return max(t.compute_s * x_c, t.memory_s * x_m) + t.fixed_s


def _solve(pairs: list[tuple[Terms, float]], attr: str, default: float) -> float:
    """x minimising sum(((A_i x + K_i - T_i)/T_i)^2): x = sum(a b) / sum(a^2)."""
    a = [getattr(t, attr) / measured for t, measured in pairs]
    b = [(measured - t.fixed_s) / measured for t, measured in pairs]
    den = sum(v * v for v in a)
    return sum(p * q for p, q in zip(a, b, strict=True)) / den if den > 0 else default


def fit_efficiencies(terms: list[Terms], measured: list[float],
                     start: tuple[float, float] = (DEFAULT_COMPUTE_EFFICIENCY, DEFAULT_MEMORY_EFFICIENCY),
                     ) -> tuple[float, float, list[str], int]:
    """(e_c, e_m, bound per run, rounds) minimising the squared relative residuals, from the efficiencies ``start``
    (the GPU's defaults: an efficiency no run is bound by stays there)."""
    x_c, x_m = 1 / start[0], 1 / start[1]
    bounds: list[str] = []
    for rounds in range(1, MAX_ROUNDS + 1):
        new = ["compute" if t.compute_s * x_c >= t.memory_s * x_m else "memory" for t in terms]
        if new == bounds:
            return 1 / x_c, 1 / x_m, bounds, rounds - 1
        bounds = new
        pairs = list(zip(terms, measured, strict=True))
        x_c = _solve([p for p, b in zip(pairs, bounds, strict=True) if b == "compute"], "compute_s", x_c)
        x_m = _solve([p for p, b in zip(pairs, bounds, strict=True) if b == "memory"], "memory_s", x_m)
        if x_c <= 0 or x_m <= 0:
            raise LLMCalcError("--from-runs", "the runs are faster than their communication and overhead alone; check the settings")
    return 1 / x_c, 1 / x_m, bounds, MAX_ROUNDS


def _rms(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values) / len(values))


def fit_runs(runs: list[Run], serving_terms: ServingTerms,
             compute_dtype: Callable[[ModelSpec, GPUSpec, str | None], str] | None = None) -> FitResult:
    """Fit (e_c, e_m) to the runs of one GPU and compute dtype; residual per run with defaults and fitted.
    ``compute_dtype(model, gpu, dtype)``: the tensor peak a serving run's GEMMs run at (calc.serving.phases.run_dtype:
    the checkpoint's when its dtype is empty, fp16 for a W4A16 one), passed in as ``serving_terms`` is; without it, the
    run's dtype or bf16."""
    from calc.hardware.peaks import peak_tflops
    from calc.sources.catalog import load_gpu, load_model

    gpus = {load_gpu(r.gpu, "--from-runs").name for r in runs}
    gpu = load_gpu(runs[0].gpu, "--from-runs")

    def peak_dtype(i: int, r: Run) -> str:
        """The run's tensor-peak dtype, a dtype the GPU has a peak for; a bad dtype cell is named by its run."""
        try:
            if compute_dtype is None or r.measure == "step_time_s":
                dtype = r.dtype or "bf16"
            else:
                dtype = compute_dtype(load_model(r.model, "--from-runs"), gpu, r.dtype)
            peak_tflops(gpu, dtype)
        except LLMCalcError as exc:
            raise LLMCalcError("--from-runs", f"run {i}: dtype: {exc.problem}") from None
        return dtype

    dtypes = {peak_dtype(i, r) for i, r in enumerate(runs, 1)}
    if len(gpus) > 1 or len(dtypes) > 1:
        raise LLMCalcError("--from-runs", f"one calibration describes one GPU and dtype (the tensor peak the runs' GEMMs "
                                          f"run at); the runs have {sorted(gpus)} and {sorted(dtypes)}: split the file")
    dtype = dtypes.pop()
    for i, run in enumerate(runs, 1):  # as latency --engine refuses it
        problem = run.serving_engine and engine_gpu_problem(run.serving_engine, gpu)
        if problem:
            raise LLMCalcError("--from-runs", f"run {i}: {problem}: give engine vllm or sglang")
    terms = [_named_run_terms(i, r, gpu, serving_terms) for i, r in enumerate(runs, 1)]
    check_physical(runs, terms)
    measured = [r.measured_s for r in runs]
    from calc.hardware.efficiency import gemm_plateau, memory_efficiency

    # what latency and train-step use without a calibration: an efficiency no run constrains stays at it
    start = (gemm_plateau(gpu, dtype), memory_efficiency(gpu))
    e_c, e_m, bounds, rounds = fit_efficiencies(terms, measured, start)
    fits = []
    for i, (run, t, bound) in enumerate(zip(runs, terms, bounds, strict=True), 1):
        default, fitted = t.default_s, _predict(t, 1 / e_c, 1 / e_m)
        fits.append(RunFit(row=i, model=run.model, engine=run.serving_engine, measure=run.measure, measured_s=run.measured_s,
                           predicted_default_s=default, predicted_fitted_s=fitted,
                           residual=(fitted - run.measured_s) / run.measured_s,
                           default_residual=(default - run.measured_s) / run.measured_s, bound=bound))
    n_c, n_m = bounds.count("compute"), bounds.count("memory")
    assumptions = [f"roofline per run: max(compute / e_c, memory / e_m) + communication + step overhead "
                   f"(+ MoE routing) ({gpu.name}, {dtype})"]
    if any(f.engine for f in fits):
        assumptions.append("serving runs priced as `latency --engine` prices them: the engine's step overhead for the "
                           "model (an MoE model's key apart) and its prefill chunk; engine per run in the model column "
                           "(the runs file's engine column, default vllm)")
    if not n_c:
        assumptions.append(f"no run is compute-bound: compute efficiency stays at the default {start[0]:.0%} (the "
                           f"{gpu.arch} GEMM plateau latency and train-step use)")
    if not n_m:
        assumptions.append(f"no run is memory-bound: memory efficiency stays at the default {start[1]:.0%}")
    return FitResult(
        gpu=gpu.name, dtype=dtype, compute_efficiency=e_c, memory_efficiency=e_m, compute_runs=n_c,
        memory_runs=n_m, rounds=rounds, rms_residual=_rms([f.residual for f in fits]),
        default_rms_residual=_rms([f.default_residual for f in fits]), runs=fits, assumptions=assumptions,
        explain=[
            "x = 1/e minimises sum(((A_i x + K_i - T_i) / T_i)^2) over the runs bound by that term: "
            "x = sum(a_i b_i) / sum(a_i^2), a_i = A_i / T_i, b_i = (T_i - K_i) / T_i",
            f"compute: {n_c} run(s) -> e_c = {e_c:.3f}; memory: {n_m} run(s) -> e_m = {e_m:.3f}; "
            f"{rounds} re-classification round(s)",
            f"RMS relative residual: defaults {_rms([f.default_residual for f in fits]):.1%}, "
            f"fitted {_rms([f.residual for f in fits]):.1%}",
        ],
    )


def fitted_calibration(result: FitResult) -> Any:
    """A calibration holding the two fitted efficiencies as flat curves (one point each)."""
    import datetime as _dt

    from calc.hardware.calibration import Calibration, OpPoint, Roofline
    from calc.hardware.peaks import peak_tflops
    from calc.sources.catalog import load_gpu

    gpu = load_gpu(result.gpu)
    return Calibration(
        gpu=gpu.name, device_name=gpu.description or gpu.name, is_gpu=True, dtype=result.dtype,
        date=_dt.date.today().isoformat(),
        roofline=Roofline(peak_tflops=peak_tflops(gpu, result.dtype), peak_gb_s=gpu.hbm_tb_s * 1000,
                          source=f"{gpu.name} datasheet"),
        # every run's implied efficiency is <= 1 (check_physical), so each fitted x >= 1; min() only absorbs rounding
        ops={"gemm": [OpPoint(label="fitted to runs", size=1.0, efficiency=min(result.compute_efficiency, 1.0))],
             "memory": [OpPoint(label="fitted to runs", size=1.0, efficiency=min(result.memory_efficiency, 1.0))]},
        time_model="roofline",
        notes=[f"fitted by calibrate --from-runs to {len(result.runs)} runs; RMS residual {result.rms_residual:.1%}"],
    )
