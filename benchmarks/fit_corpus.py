"""The ONE fitting procedure: corpus -> efficiency defaults and error bands -> calc/data/fitted_defaults.json.

    python benchmarks/fit_corpus.py            # fit, cross-validate, write the data file
    python benchmarks/fit_corpus.py --check    # exit 1 when the shipped file differs from the fit (date aside)

Procedure (declared before looking at held-out rows; held-out rows are never read here):
1. Rows: the corpus rows of the FIT split (corpus_schema.split_of_source: whole sources, frozen), that ran
   (an out-of-memory row is a bound, not a value) and that the engine can predict (corpus_predict).
2. Parameters: the GEMM plateau per GPU generation, and per generation for fp8 GEMMs (calc.hardware.efficiency.
   plateau_key), informed by every training and serving time/throughput row of that generation and dtype; the
   serving per-step overhead per engine family (vllm, sglang, trtllm, lmdeploy), informed by that engine's
   serving latency/throughput rows; the training stack efficiency per named stack (calc.training.stack: fsdp,
   llm-foundry, deepspeed; megatron is the reference, 1 by definition), informed by that stack's training rows of
   every generation (one factor across generations, so the Megatron rows of one generation tie it to the plateau).
   Each starts at PRIOR (the
   hand-set values the engine had before the corpus). A parameter is fitted only when its rows come from at
   least MIN_GROUPS source groups; otherwise it keeps PRIOR and is marked "unfitted: no data" (never scaled
   from another generation). The flash-attention rate and the sustained fraction are not separable from the
   plateau by this corpus (no attention-only rows, no bench calibrations): kept at PRIOR, marked unfitted.
3. Objective: median over the parameter's rows of |log(predicted / measured)| (robust to the few rows whose
   setting the engine does not model), ties broken by the mean squared log error. Minimised by grid search
   (plateau 0.20-0.95 by 0.05, stack efficiency 0.50-1.30 by 0.05, overhead 0-8 ms by 0.5 ms, then by 0.01 /
   0.01 / 0.25 ms around the best),
   coordinate-wise, PASSES times over all parameters.
4. Cross-validation: K_FOLDS folds of whole source groups (sorted by the sha256 of their name, dealt in turn);
   each fold is refitted by steps 2-3 without it and predicted with that fold's fit. The CV error of a parameter
   is the median |log| of those out-of-fold residuals over its rows. A fitted value is adopted only if its CV
   error beats the PRIOR value's error on the same rows; otherwise PRIOR stays ("unfitted: fit did not beat the
   prior in cross-validation"). Adoption is decided on the fit split's cross-validation alone: held-out rows are
   never read here, not even to veto a value.
5. Bands: the out-of-fold residuals (at the shipped values for rows of an unfitted parameter) go to
   benchmarks/fit_bands.py (its docstring: levels, one source one vote, the unseen-stack rule, the
   leave-one-source-out spread factor), which writes the "bands" section.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus_predict as cp  # noqa: E402
from corpus_schema import load_corpus  # noqa: E402
from fit_bands import BandRow, band_table  # noqa: E402

from calc.bands import KINDS, group_name  # noqa: E402
from calc.fitted import FITTED_PATH  # noqa: E402

PRIOR: dict[str, dict[str, float]] = {
    # The hand-set values before the corpus: Ampere fitted once to 18 Megatron rows, others scaled by 0.82 from
    # each generation's isolated-GEMM plateau (HARDWARE.md); fp8 GEMMs the same fraction of the fp8 peak.
    "gemm_plateau": {"Ampere": 0.71, "Hopper": 0.65, "Hopper/fp8": 0.65, "Ada": 0.65, "Ada/fp8": 0.65, "Blackwell": 0.61,
                     "Blackwell/fp8": 0.61, "CDNA3": 0.41, "CDNA3/fp8": 0.41, "other": 0.61},
    # FlashAttention-2 fwd+bwd ~56-64% of A100 peak, ~35% of H100; FlashAttention-3 ~55-75% of H100 (Dao 2023; Shah 2024).
    "flash_attention_peak": {"Ampere": 0.58, "Hopper": 0.45, "Ada": 0.45, "Blackwell": 0.45, "CDNA3": 0.30, "other": 0.40},
    "sustained_fraction": {"all": 0.82},  # 0.71 / 0.87: the Ampere plateau over an isolated cuBLAS GEMM
    # Training stack efficiency on every compute kernel (calc.training.stack): Megatron the reference (1 by definition).
    "stack_efficiency": {"megatron": 1.0, "fsdp": 1.0, "llm-foundry": 1.0, "deepspeed": 1.0, "other": 1.0},
    # Scheduler, input preparation, sampling per step, per engine family (corpus_predict.engine_family); "vllm" is
    # the engine's default (calc.serving.assumptions).
    "step_overhead_s": {"vllm": 2.0e-3, "sglang": 2.0e-3, "trtllm": 2.0e-3, "lmdeploy": 2.0e-3, "other": 2.0e-3},
}
NOT_SEPARABLE = {
    "flash_attention_peak": "unfitted: not separable from the GEMM plateau by this corpus (no attention-only rows); serving "
                            "only (training reads the kernel benchmark tables of calc.hardware.attention)",
    "sustained_fraction": "unfitted: no data (no corpus row carries a `bench` calibration)",
}
# Coarse grids, then a fine grid around the coarse best (FINE_STEPS steps of FINE each way).
GRIDS = {"gemm_plateau": [round(0.20 + 0.05 * i, 2) for i in range(16)],
         "stack_efficiency": [round(0.50 + 0.05 * i, 2) for i in range(17)],
         "step_overhead_s": [round(0.5e-3 * i, 6) for i in range(17)]}
FINE = {"gemm_plateau": 0.01, "stack_efficiency": 0.01, "step_overhead_s": 0.25e-3}
REFERENCE = {("stack_efficiency", "megatron"): "reference: 1 by definition (the GEMM plateaus are Megatron-class rates)"}
FINE_STEPS = 4
MIN_GROUPS = 2
K_FOLDS = 5
PASSES = 2

FAMILY = KINDS  # corpus kind -> (band family, +1 time-like / -1 rate-like)


@dataclass
class Entry:
    row: Any
    group: str
    split: str
    keys: dict[str, str]  # fitted parameter -> key this row depends on
    band_group: str


def entries() -> tuple[list[Entry], list[tuple[Any, str]]]:
    """The rows the fit may use (fit split, ran, predictable) and the fit-split rows it cannot, with why."""
    out, skipped = [], []
    for row, group, split in load_corpus():
        if split != "fit":
            continue
        if row.outcome != "ran":
            skipped.append((row, "out of memory: a bound, not a value"))
            continue
        value, why = cp.predict_or_reason(row)
        if value is None:
            skipped.append((row, why))
            continue
        out.append(Entry(row, group, split, cp.parameter_keys(row), band_group(row)))
    return out, skipped


def band_group(row: Any) -> str:
    """pool | generation | dtype class | dense/moe: the finest group a band is read for (calc.bands.group_name)."""
    return group_name(row.kind, cp.row_gpu(row).arch, row.dtype, bool(cp.row_model(row).moe))


def _base_key(key: str) -> str:
    """The 16-bit plateau key of a generation ("Hopper/fp8" -> "Hopper")."""
    return key.split("/")[0]


class Predictions:
    """Cached predictions by (row, the parameter values it depends on).

    A serving time is affine in the per-step overhead o (calc.serving.step: each step = compute + o; e2e = TTFT +
    (T - 1) TPOT), a serving rate is its inverse: two engine calls per plateau (o = 0 and o = 1 ms) give the
    prediction at every o exactly (tests/test_fit_corpus.py checks it against a direct call)."""

    def __init__(self) -> None:
        self.cache: dict[tuple, float] = {}

    def _engine(self, e: Entry, plateau: float, overhead: float, stack: float = 1.0, base: float | None = None) -> float:
        key = (e.row.id, plateau, overhead, stack, base)
        if key not in self.cache:
            overrides: dict[str, Any] = {"gemm_plateau": {e.keys["gemm_plateau"]: plateau}, "step_overhead_s": overhead} if e.keys else {}
            if base is not None:  # an fp8 run's bf16 GEMMs (attention projections kept at bf16, the head) read this
                overrides["gemm_plateau"][_base_key(e.keys["gemm_plateau"])] = base
            if "stack_efficiency" in e.keys:
                overrides["stack_efficiency"] = {e.keys["stack_efficiency"]: stack}
            self.cache[key] = cp.predict(e.row, overrides)
        return self.cache[key]

    def predict(self, e: Entry, params: dict[str, dict[str, float]]) -> float:
        """The prediction with every parameter the row reads taken from ``params`` (an fp8 row also reads its
        generation's 16-bit plateau, so the fit is a fixed point: re-running it on its own output changes nothing)."""
        if not e.keys:  # a memory row: no fitted parameter
            return self._engine(e, 0.0, 0.0)
        plateau = params["gemm_plateau"][e.keys["gemm_plateau"]]
        base_key = _base_key(e.keys["gemm_plateau"])
        base = params["gemm_plateau"].get(base_key) if base_key != e.keys["gemm_plateau"] else None
        if "stack_efficiency" in e.keys:
            return self._engine(e, plateau, 0.0, params["stack_efficiency"][e.keys["stack_efficiency"]], base)
        if "step_overhead_s" not in e.keys:
            return self._engine(e, plateau, 0.0, base=base)
        o = params["step_overhead_s"][e.keys["step_overhead_s"]]
        sign = FAMILY[e.row.kind][1]
        t0, t1 = (self._engine(e, plateau, x, base=base) ** sign for x in (0.0, 1e-3))
        return (t0 + (t1 - t0) * o / 1e-3) ** sign

    def residual(self, e: Entry, params: dict[str, dict[str, float]]) -> float:
        """log(predicted / measured) with these parameters."""
        return math.log(self.predict(e, params) / e.row.measured.value)


def objective(residuals: list[float]) -> tuple[float, float]:
    """(median |r|, mean r^2): the first minimised, the second breaks ties."""
    return statistics.median(abs(r) for r in residuals), statistics.fmean(r * r for r in residuals)


def informing(rows: list[Entry], name: str, key: str) -> list[Entry]:
    return [e for e in rows if e.keys.get(name) == key]


def fit(rows: list[Entry], preds: Predictions) -> dict[str, dict[str, float]]:
    """Steps 2-3 of the module docstring on these rows: coordinate-wise grid search from PRIOR."""
    params = {name: dict(values) for name, values in PRIOR.items()}
    targets = [("step_overhead_s", k) for k in PRIOR["step_overhead_s"] if k != "other"] + \
        [("gemm_plateau", k) for k in PRIOR["gemm_plateau"] if k != "other"] + \
        [("stack_efficiency", k) for k in PRIOR["stack_efficiency"] if k != "other" and ("stack_efficiency", k) not in REFERENCE]
    for _ in range(PASSES):
        for name, key in targets:
            use = informing(rows, name, key)
            if len({e.group for e in use}) < MIN_GROUPS:
                continue
            def score(value: float, name: str = name, key: str = key, use: list[Entry] = use) -> tuple[float, float]:
                return objective([preds.residual(e, {**params, name: {**params[name], key: value}}) for e in use])

            coarse = min(GRIDS[name], key=score)
            fine = [round(coarse + FINE[name] * i, 6) for i in range(-FINE_STEPS, FINE_STEPS + 1)]
            params[name][key] = min((v for v in fine if v >= 0), key=score)
    return params


def folds(rows: list[Entry]) -> list[set[str]]:
    """K_FOLDS sets of whole source groups, dealt in the order of their names' sha256. Only groups with a row that
    depends on a fitted parameter are dealt: a source of memory rows (KV capacity, peak memory) informs no fit, so
    adding one never moves the other sources between folds."""
    groups = sorted({e.group for e in rows if e.keys}, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    return [set(groups[i::K_FOLDS]) for i in range(K_FOLDS)]


def cross_validate(rows: list[Entry], preds: Predictions) -> dict[str, float]:
    """Out-of-fold residual of every row: each fold predicted with the fit of the others (a row of a group that
    depends on no fitted parameter has one residual whatever the fit: it is taken at the prior values)."""
    out = {e.row.id: preds.residual(e, PRIOR) for e in rows}
    for held in folds(rows):
        params = fit([e for e in rows if e.group not in held], preds)
        out |= {e.row.id: preds.residual(e, params) for e in rows if e.group in held}
    return out


def row_stack(row: Any) -> str:
    """The stack a row's band is told apart by (calc.bands.band's ``stack``): the key of the fitted parameter the
    row's stack reads, a training row's named stack (calc.training.stack.stack_key: torchtitan runs as fsdp, NeMo as
    megatron) or a serving row's engine family (corpus_predict.engine_family: nim-trtllm runs trtllm); a stack the
    engine does not name, or a memory row's, by its own name in lower case (two unknown stacks are not one)."""
    keys = cp.parameter_keys(row)
    key = keys.get("stack_efficiency") or keys.get("step_overhead_s")
    return key if key and key != "other" else row.stack.name.lower()


def band_rows(rows: list[Entry], residuals: dict[str, float]) -> list[BandRow]:
    """The rows fit_bands reads: source group, kind, band group, stack, residual read as a time (a rate's negated)."""
    return [BandRow(e.row.id, e.group, e.row.kind, e.band_group, row_stack(e.row), residuals[e.row.id] * FAMILY[e.row.kind][1])
            for e in rows]


def run() -> dict[str, Any]:
    """The whole procedure; the returned document is what the data file holds (without its date)."""
    rows, skipped = entries()
    preds = Predictions()
    final = fit(rows, preds)
    cv = cross_validate(rows, preds)
    parameters: dict[str, dict[str, Any]] = {}
    for name, values in PRIOR.items():
        parameters[name] = {}
        for key, prior in values.items():
            entry: dict[str, Any] = {"value": prior, "previous": prior}
            use = informing(rows, name, key) if name in GRIDS else []
            groups = sorted({e.group for e in use})
            if name in NOT_SEPARABLE:
                entry["status"] = NOT_SEPARABLE[name]
            elif (name, key) in REFERENCE:
                entry["status"] = REFERENCE[(name, key)]
            elif key == "other" and name == "stack_efficiency":
                entry["status"] = f"unfitted: stacks the engine does not name ({len(use)} fit rows); 1, as the reference"
            elif key == "other" and name == "step_overhead_s":
                entry["status"] = f"unfitted: the rest ({len(use)} fit rows of engines without their own key); not one overhead"
            elif key == "other" or len(groups) < MIN_GROUPS:
                entry["status"] = f"unfitted: no data ({len(use)} fit rows from {len(groups)} source groups; {MIN_GROUPS} needed)"
            else:
                fitted_error = statistics.median(abs(cv[e.row.id]) for e in use)
                prior_error = statistics.median(abs(preds.residual(e, PRIOR)) for e in use)
                entry |= {"rows": sorted(e.row.id for e in use), "groups": groups, "cv_error": round(fitted_error, 4),
                          "prior_error": round(prior_error, 4)}
                if fitted_error < prior_error:
                    entry |= {"value": final[name][key], "status": "fitted"}
                else:
                    entry["status"] = "unfitted: fit did not beat the prior in cross-validation"
            parameters[name][key] = entry
    # Band residuals: out-of-fold where every parameter a row depends on was adopted; where one was kept at its
    # prior (not fitted), the shipped value is not a fit, so the row's residual at the shipped values is the honest one.
    shipped = {name: {key: e["value"] for key, e in values.items()} for name, values in parameters.items()}
    adopted = {(name, key) for name, values in parameters.items() for key, e in values.items() if e["status"] == "fitted"}
    band_residuals = {e.row.id: cv[e.row.id] if all((n, k) in adopted for n, k in e.keys.items())
                      else preds.residual(e, shipped) for e in rows}
    return {
        "about": "Written by benchmarks/fit_corpus.py (read its docstring); the engine reads its defaults from here.",
        "objective": "median |log(predicted/measured)| over the parameter's fit rows, ties by mean squared log error",
        "cross_validation": f"{K_FOLDS} folds of whole source groups inside the fit split",
        "rows_used": sorted(e.row.id for e in rows),
        "rows_not_predicted": {row.id: why for row, why in skipped},
        "parameters": parameters,
        "bands": band_table(band_rows(rows, band_residuals)),
    }


def write(doc: dict[str, Any], path: Path = FITTED_PATH) -> None:
    path.write_text(json.dumps({"date": date.today().isoformat(), **doc}, indent=1) + "\n", encoding="utf-8")


def shipped_without_date(path: Path = FITTED_PATH) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("date", None)
    return doc


if __name__ == "__main__":
    result = json.loads(json.dumps(run()))  # tuples and floats as the file holds them
    if "--check" in sys.argv:
        sys.exit(0 if result == shipped_without_date() else 1)
    write(result)
    for name, values in result["parameters"].items():
        for key, e in values.items():
            print(f"{name:22} {key:14} {e['value']:<8g} {e['status']}" + (f" (CV {e['cv_error']:.1%} vs prior {e['prior_error']:.1%})"
                                                                         if "cv_error" in e else ""))
