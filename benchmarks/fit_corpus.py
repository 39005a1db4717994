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
   Each starts at PRIOR (the hand-set values the engine had before the corpus). A parameter is free only when its rows come from at least
   MIN_GROUPS source groups; otherwise it keeps PRIOR and is marked "unfitted: no data" (never scaled from another
   generation). The flash-attention rate and the sustained fraction are not separable from the plateau by this
   corpus (no attention-only rows, no bench calibrations): kept at PRIOR, marked unfitted.
3. Objective: ONE for all free parameters together, source-balanced (objective()):
       J(theta) = sum over cells c of (1 / n_c) sum_{i in c} |log(predicted_i(theta) / measured_i)|
   where a cell is one source group's rows that read the same fitted parameters (Entry.keys), n_c its row count.
   Every cell weighs 1 whatever its row count: a 60-row table does not outvote a 5-row paper, and duplicating a
   source's rows leaves J, so the fit, unchanged. The absolute (L1) loss is the weighted-median analogue of the
   old per-parameter median (robust to the few rows whose setting the engine does not model); ties are broken
   by the same weights on the squared log error. The parameters are confounded (a training row's time is about
   GEMM/(plateau x stack) + the rest; an fp8 run also reads its generation's 16-bit plateau; a serving row reads
   the plateau and its engine's overhead), so J is minimised jointly, not one parameter on its own rows after
   another: block coordinate descent on J over a lattice inside BOUNDS (a first sweep over each parameter's coarse
   GRIDS, then FINE_STEPS steps of FINE either way around its best; later sweeps step by FINE while J falls), plus,
   for every confounded pair of parameters that share rows (confounded()), one FINE step along either diagonal of
   the pair (the valley plateau x stack = constant), repeated until a sweep moves nothing (a move is taken only
   when it lowers J, so the search ends; MAX_SWEEPS guards it). Megatron is the stack
   reference (1), so its rows pin each generation's plateau and the other stacks' rows their factor.
4. Cross-validation and adoption: leave one source group out (folds(): a parameter has 2-4 source groups, which
   K fixed folds can hold all at once); each group's rows are predicted with steps 2-3 refitted without it. The CV
   error of a parameter is the source-balanced mean |log| (step 3's cell weights) of those out-of-fold residuals over its
   rows; its prior error the same at PRIOR. A fitted value is adopted only if its CV error beats the PRIOR's on the
   same rows. Because the fit is joint, a losing parameter is not simply reset (the others were fitted with it
   free): the one that loses most (CV over prior error) is fixed at PRIOR ("unfitted: fit did not beat the prior
   in cross-validation", with the numbers of that round) and the rest are refitted and cross-validated again,
   until every free parameter beats its prior. A value on the edge of its BOUNDS is fixed at PRIOR first ("unfitted:
   the fit runs to the edge of its range"): the objective still falls there, so the rows ask for something the
   parameter cannot mean (the vLLM step overhead runs to 8 ms to cover dstack rows whose setting the engine does
   not model), and a CV win bought that way is not a value to ship. Adoption is decided on the fit split's
   cross-validation alone: held-out rows are never read here, not even to veto a value.
5. Bands: the out-of-fold residuals (at the shipped values for rows of an unfitted parameter), oriented as
   time (a rate's residual flips sign), pooled where kinds share one prediction (calc.bands POOL: the training
   kinds; serving decode: TPOT, e2e, throughput; serving prefill: TTFT) per band group pool | generation | dtype
   class | dense/MoE; the 10% and 90% quantiles where a group has >= MIN_BAND_ROWS rows from >= MIN_GROUPS source
   groups (one source says nothing of the scatter between sources), the pool's where the
   pool has, the family's (serving) where that has, else the stated wide default (a factor of 2 either way).
6. Spread: leave one fit source group out at a time and read its rows' bands from the rest (step 5's chain); the
   quantiles are spread about their median by the smallest factor k (1.00-4.00 by 0.05) that puts BAND_LEVEL of the
   left-out rows inside, per pool: one k for bands read from the row's own band group, one for fallbacks (pool,
   family); a pool with too few left-out rows takes the k over all pools.
   Rows of one source share a stack and a setting, so plain quantiles over rows are narrower than the scatter
   between sources that a new user's run meets (fit_corpus.spread_factors).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus_predict as cp  # noqa: E402
from corpus_schema import load_corpus  # noqa: E402

from calc.bands import FAMILY as POOL_FAMILY  # noqa: E402
from calc.bands import KINDS, group_name, pool_of  # noqa: E402
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
# Coarse grids (first sweep), then a lattice of FINE steps around the current value (FINE_STEPS either way), inside
# BOUNDS: the range a value can mean (a large GEMM's fraction of peak, a stack's factor about the reference, a
# per-step overhead of a few ms). A fit that ends on a bound is not a minimum and is not adopted (step 4).
GRIDS = {"gemm_plateau": [round(0.20 + 0.05 * i, 2) for i in range(16)],
         "stack_efficiency": [round(0.50 + 0.05 * i, 2) for i in range(17)],
         "step_overhead_s": [round(0.5e-3 * i, 6) for i in range(17)]}
FINE = {"gemm_plateau": 0.01, "stack_efficiency": 0.01, "step_overhead_s": 0.25e-3}
BOUNDS = {"gemm_plateau": (0.20, 0.95), "stack_efficiency": (0.50, 1.30), "step_overhead_s": (0.0, 8e-3)}
REFERENCE = {("stack_efficiency", "megatron"): "reference: 1 by definition (the GEMM plateaus are Megatron-class rates)"}
FINE_STEPS = 4
MIN_GROUPS = 2
MAX_SWEEPS = 30
MIN_BAND_ROWS = 8
BAND_LEVEL = 0.8
WIDE = math.log(2.0)  # the stated wide band: a factor of 2 either way
SPREAD_GRID = [round(1.0 + 0.05 * i, 2) for i in range(61)]  # 1.00 .. 4.00

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
    prediction at every o exactly (tests/test_fit_corpus.py checks it against a direct call). ``engine`` is
    corpus_predict.predict (row, overrides) -> value; a test passes a model whose true parameters it knows."""

    def __init__(self, engine: Callable[[Any, dict[str, Any]], float] = cp.predict) -> None:
        self.engine = engine
        self.cache: dict[tuple, float] = {}

    def _engine(self, e: Entry, plateau: float, overhead: float, stack: float = 1.0, base: float | None = None) -> float:
        key = (e.row.id, plateau, overhead, stack, base)
        if key not in self.cache:
            overrides: dict[str, Any] = {"gemm_plateau": {e.keys["gemm_plateau"]: plateau}, "step_overhead_s": overhead} if e.keys else {}
            if base is not None:  # an fp8 run's bf16 GEMMs (attention projections kept at bf16, the head) read this
                overrides["gemm_plateau"][_base_key(e.keys["gemm_plateau"])] = base
            if "stack_efficiency" in e.keys:
                overrides["stack_efficiency"] = {e.keys["stack_efficiency"]: stack}
            self.cache[key] = self.engine(e.row, overrides)
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


Target = tuple[str, str]  # (parameter, key), e.g. ("gemm_plateau", "Hopper/fp8")
TARGETS: list[Target] = [(name, key) for name in ("stack_efficiency", "step_overhead_s", "gemm_plateau")
                         for key in PRIOR[name] if key != "other" and (name, key) not in REFERENCE]


def reads(e: Entry) -> set[Target]:
    """The fitted parameters a row's prediction reads: its own keys, and an fp8 row's 16-bit plateau of its generation."""
    out = set(e.keys.items())
    if "gemm_plateau" in e.keys and _base_key(e.keys["gemm_plateau"]) != e.keys["gemm_plateau"]:
        out.add(("gemm_plateau", _base_key(e.keys["gemm_plateau"])))
    return out


def cell_weights(rows: list[Entry]) -> dict[str, float]:
    """Step 3's weight of each row that reads a fitted parameter: 1 / the rows of its cell (its source group's rows
    with the same keys), so every cell weighs 1 in the objective whatever its row count."""
    cell = {e.row.id: (e.group, tuple(sorted(e.keys.items()))) for e in rows if e.keys}
    count: dict[tuple, int] = {}
    for c in cell.values():
        count[c] = count.get(c, 0) + 1
    return {row_id: 1.0 / count[c] for row_id, c in cell.items()}


def objective(residuals: list[tuple[float, float]]) -> tuple[float, float]:
    """Step 3 over (weight, log residual) pairs: (sum w |r|, sum w r^2), the first minimised, the second breaks ties."""
    return math.fsum(w * abs(r) for w, r in residuals), math.fsum(w * r * r for w, r in residuals)


def balanced_error(rows: list[Entry], residual: dict[str, float]) -> float:
    """The source-balanced mean |log error| of these rows: the mean over their cells of each cell's mean |r|."""
    w = cell_weights(rows)
    return math.fsum(w[e.row.id] * abs(residual[e.row.id]) for e in rows) / math.fsum(w.values())


def informing(rows: list[Entry], name: str, key: str) -> list[Entry]:
    return [e for e in rows if e.keys.get(name) == key]


def free_targets(rows: list[Entry], free: set[Target] | None = None) -> list[Target]:
    """The parameters step 2 lets move on these rows: informed by >= MIN_GROUPS source groups (and in ``free``)."""
    return [t for t in TARGETS if (free is None or t in free) and len({e.group for e in informing(rows, *t)}) >= MIN_GROUPS]


def confounded(a: Target, b: Target) -> bool:
    """Pairs whose effects on a row's prediction trade off (one lattice step of each along a diagonal keeps the
    prediction about constant): a GEMM plateau and a stack efficiency (training time ~ GEMM / (plateau x stack)),
    and a generation's 16-bit and fp8 plateaus (an fp8 run's bf16 GEMMs read the 16-bit one)."""
    names = {a[0], b[0]}
    if names == {"gemm_plateau", "stack_efficiency"}:
        return True
    return names == {"gemm_plateau"} and _base_key(a[1]) == _base_key(b[1])


def _lattice(name: str, centre: float) -> list[float]:
    lo, hi = BOUNDS[name]
    values = (round(centre + FINE[name] * i, 6) for i in range(-FINE_STEPS, FINE_STEPS + 1))
    return [v for v in values if lo <= v <= hi]


def fit(rows: list[Entry], preds: Predictions, free: set[Target] | None = None) -> dict[str, dict[str, float]]:
    """Steps 2-3 of the module docstring on these rows: the joint minimum of the source-balanced objective over the
    free parameters, by block coordinate descent and pairwise diagonal moves from PRIOR (the others stay at PRIOR)."""
    params = {name: dict(values) for name, values in PRIOR.items()}
    targets = free_targets(rows, free)
    weight = cell_weights(rows)
    use = {t: [e for e in rows if t in reads(e)] for t in targets}

    def score(trial: dict[tuple[str, str], float]) -> tuple[float, float]:
        """J over the rows that read a moved parameter (the other rows' terms do not change)."""
        trial_params = {name: dict(values) for name, values in params.items()}
        for (name, key), v in trial.items():
            trial_params[name][key] = v
        seen = {e.row.id: e for t in trial for e in use[t]}
        return objective([(weight[i], preds.residual(e, trial_params)) for i, e in sorted(seen.items())])

    def move(candidates: list[dict[Target, float]]) -> bool:
        """Take the best candidate when it lowers J (ties keep the current values, so the search ends)."""
        current = {t: params[t[0]][t[1]] for t in candidates[0]}
        scores = [score(c) for c in candidates]
        best = candidates[scores.index(min(scores))]
        if min(scores) < score(current):
            for (name, key), v in best.items():
                params[name][key] = v
            return True
        return False

    def step(t: Target) -> bool:
        """Lattice steps of FINE along one parameter while J falls (one direction, then the other)."""
        for direction in (1, -1):
            stepped = False
            while BOUNDS[t[0]][0] <= (v := round(params[t[0]][t[1]] + FINE[t[0]] * direction, 6)) <= BOUNDS[t[0]][1] \
                    and move([{t: params[t[0]][t[1]]}, {t: v}]):
                stepped = True
            if stepped:
                return True
        return False

    shared = {(a, b) for a in targets for b in targets if {e.row.id for e in use[a]} & {e.row.id for e in use[b]}}
    pairs = [(a, b) for i, a in enumerate(targets) for b in targets[i + 1:] if (a, b) in shared and confounded(a, b)]
    for name, key in targets:  # sweep 0: each parameter's coarse grid, then the lattice around its best
        t = (name, key)
        coarse = min(([params[name][key]] + GRIDS[name]), key=lambda v, t=t: score({t: v}))
        move([{t: v} for v in [params[name][key]] + _lattice(name, coarse)])
    for _ in range(MAX_SWEEPS):
        moved = False
        for t in targets:
            moved |= step(t)
        for a, b in pairs:  # one lattice step along either diagonal of the pair
            candidates = [{a: params[a[0]][a[1]], b: params[b[0]][b[1]]}] + [
                {a: round(params[a[0]][a[1]] + FINE[a[0]] * i, 6), b: round(params[b[0]][b[1]] + FINE[b[0]] * j, 6)}
                for i in (1, -1) for j in (1, -1)]
            moved |= move([c for c in candidates if all(BOUNDS[n][0] <= v <= BOUNDS[n][1] for (n, _k), v in c.items())])
        if not moved:
            break
    return params


def folds(rows: list[Entry]) -> list[set[str]]:
    """One fold per source group (leave one source group out), in the order of their names' sha256. A parameter is
    informed by 2-4 source groups, so K fixed folds dealt in turn can hold all of one parameter's groups at once
    (5 folds put the three fsdp sources and the main Megatron source in one): its CV then measures nothing. Only
    groups with a row that depends on a fitted parameter are dealt: a source of memory rows (KV capacity, peak
    memory) informs no fit, so adding one never moves the other sources between folds."""
    groups = sorted({e.group for e in rows if e.keys}, key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    return [{g} for g in groups]


def cross_validate(rows: list[Entry], preds: Predictions, free: set[Target] | None = None) -> dict[str, float]:
    """Out-of-fold residual of every row: each fold predicted with the fit of the others (a row of a group that
    depends on no fitted parameter has one residual whatever the fit: it is taken at the prior values)."""
    out = {e.row.id: preds.residual(e, PRIOR) for e in rows}
    for held in folds(rows):
        params = fit([e for e in rows if e.group not in held], preds, free)
        out |= {e.row.id: preds.residual(e, params) for e in rows if e.group in held}
    return out


def adopt(rows: list[Entry], preds: Predictions) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[Target, dict[str, Any]]]:
    """Step 4: (the joint fit of the adopted parameters, its out-of-fold residuals, {parameter: its CV record}).
    Fit and cross-validate the free parameters jointly; while one ends on the edge of its BOUNDS or loses to its
    prior in CV, fix that one (an edge first, else the one that loses most) at PRIOR and refit the rest."""
    free = set(free_targets(rows))
    prior = {e.row.id: preds.residual(e, PRIOR) for e in rows}
    records: dict[Target, dict[str, Any]] = {}
    while True:
        cv, params = cross_validate(rows, preds, free), fit(rows, preds, free)
        losing = []
        for t in sorted(free):
            use = informing(rows, *t)
            record = {"rows": sorted(e.row.id for e in use), "groups": sorted({e.group for e in use}),
                      "cv_error": round(balanced_error(use, cv), 4), "prior_error": round(balanced_error(use, prior), 4)}
            records[t] = record
            if params[t[0]][t[1]] in BOUNDS[t[0]]:
                losing.append((math.inf, t))
                record["edge"] = params[t[0]][t[1]]
            elif record["cv_error"] >= record["prior_error"]:
                losing.append((record["cv_error"] / max(record["prior_error"], 1e-12), t))
        if not losing:
            return params, cv, {t: {**r, "adopted": t in free} for t, r in records.items()}
        free.discard(max(losing)[1])


def _raw_quantiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=10, method="inclusive")
    return q[0], statistics.median(values), q[8]


def _quantiles(values: list[float], k: float) -> dict[str, float]:
    """q10 and q90 of ``values`` spread about their median by ``k`` (step 6), with the raw quantiles beside them."""
    q10, q50, q90 = _raw_quantiles(values)
    return {"q10": round(q50 + k * (q10 - q50), 4), "q90": round(q50 + k * (q90 - q50), 4), "q50": round(q50, 4),
            "q10_raw": round(q10, 4), "q90_raw": round(q90, 4), "rows": len(values)}


LEVELS = ("groups", "pools", "families")


Levels = dict[str, dict[str, tuple[list[float], set[str]]]]


def _by_level(rows: list[Entry], r: dict[str, float]) -> Levels:
    """Time-oriented residuals, and the source groups they come from, per band group, per pool and per family
    (calc.bands: the pools share one prediction)."""
    by: Levels = {level: {} for level in LEVELS}
    for e in rows:
        pool = pool_of(e.row.kind)
        names = {"groups": e.band_group, "pools": pool, "families": POOL_FAMILY.get(pool)}
        for level, name in names.items():
            if name:
                values, sources = by[level].setdefault(name, ([], set()))
                values.append(r[e.row.id])
                sources.add(e.group)
    return by


def _usable(entry: tuple[list[float], set[str]] | None) -> bool:
    """A band needs MIN_BAND_ROWS rows from MIN_GROUPS source groups: one source's rows share a stack and a setting
    and say nothing of how far another source lands (the rule a fitted parameter follows too)."""
    return entry is not None and len(entry[0]) >= MIN_BAND_ROWS and len(entry[1]) >= MIN_GROUPS


def _chain(e: Entry, by: Levels) -> tuple[str, list[float]] | None:
    """calc.bands.band's chain for a row: its band group, else its pool, else its family, each where usable."""
    pool = pool_of(e.row.kind)
    for level, key in (("groups", e.band_group), ("pools", pool), ("families", POOL_FAMILY.get(pool))):
        entry = by[level].get(key) if key else None
        if _usable(entry):
            return ("group" if level == "groups" else "fallback"), entry[0]
    return None


def spread_factors(rows: list[Entry], r: dict[str, float]) -> dict[str, Any]:
    """Step 6: leave one source group out of the fit split at a time, read each of its rows' band from the other
    groups' residuals (the chain of calc.bands), and find the smallest factor k (SPREAD_GRID) by which the quantiles
    must be spread about their median for BAND_LEVEL of the left-out rows to fall inside, per pool (calc.bands.POOL)
    and level: rows read from their own band group, rows read from a fallback (pool or family). A pool x level with
    fewer than MIN_BAND_ROWS left-out rows takes the level's k over all pools. The corpus' rows of one source share a
    stack and a setting, so quantiles over rows understate how far a new source lands; this is what makes an 80%
    band hold 80% of rows from a source it never saw."""
    seen: dict[tuple[str, str], list[tuple[float, float, float, float]]] = {}
    for source in sorted({e.group for e in rows}):
        by = _by_level([e for e in rows if e.group != source], r)
        for e in rows:
            if e.group == source and (found := _chain(e, by)) is not None:
                point = (r[e.row.id], *_raw_quantiles(found[1]))
                seen.setdefault((pool_of(e.row.kind), found[0]), []).append(point)
                seen.setdefault(("all", found[0]), []).append(point)

    def covered(k: float, points: list[tuple[float, float, float, float]]) -> float:
        return sum(q50 + k * (q10 - q50) <= x <= q50 + k * (q90 - q50) for x, q10, q50, q90 in points) / len(points)

    out: dict[str, Any] = {}
    for (pool, level), points in sorted(seen.items()):
        k = next((k for k in SPREAD_GRID if covered(k, points) >= BAND_LEVEL), SPREAD_GRID[-1])
        out.setdefault(pool, {})[level] = {"k": k, "rows": len(points), "coverage_at_1": round(covered(1.0, points), 4),
                                           "coverage_at_k": round(covered(k, points), 4)}
    for level in ("group", "fallback"):
        out.setdefault("all", {}).setdefault(level, {"k": 1.0, "rows": 0})
    return out


def spread_of(spread: dict[str, Any], pool: str, level: str) -> float:
    """The k of a pool and level (spread_factors), the level's k over all pools where the pool has too few rows."""
    own = spread.get(pool, {}).get(level)
    return own["k"] if own and own["rows"] >= MIN_BAND_ROWS else spread["all"][level]["k"]


def bands(rows: list[Entry], cv: dict[str, float]) -> dict[str, Any]:
    """Steps 5-6: time-oriented residual quantiles per band group, per pool and per family, each where it has
    >= MIN_BAND_ROWS rows, spread by the leave-one-source-out factor of its level (spread_factors); ``cv`` holds each
    row's residual (out-of-fold, or at the shipped values where a parameter it depends on was not fitted)."""
    r = {e.row.id: cv[e.row.id] * FAMILY[e.row.kind][1] for e in rows}
    by = _by_level(rows, r)
    spread = spread_factors(rows, r)
    pool_of_group = {e.band_group: pool_of(e.row.kind) for e in rows}

    def k(level: str, name: str) -> float:
        if level == "groups":
            return spread_of(spread, pool_of_group[name], "group")
        return spread_of(spread, name, "fallback") if level == "pools" else spread["all"]["fallback"]["k"]

    return {"level": BAND_LEVEL, "min_rows": MIN_BAND_ROWS, "min_sources": MIN_GROUPS,
            "orientation": "q10/q90 of log(predicted/measured) for time-like figures, spread about q50 by the level's "
                           "leave-one-source-out factor; a rate's band uses them negated",
            "spread": spread,
            "wide_default": {"q10": round(-WIDE, 4), "q90": round(WIDE, 4)},
            **{level: {name: _quantiles(v[0], k(level, name)) for name, v in sorted(values.items()) if _usable(v)}
               for level, values in by.items()}}


def run() -> dict[str, Any]:
    """The whole procedure; the returned document is what the data file holds (without its date)."""
    rows, skipped = entries()
    preds = Predictions()
    final, cv, records = adopt(rows, preds)
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
            elif (name, key) not in records:
                entry["status"] = f"unfitted: no data ({len(use)} fit rows from {len(groups)} source groups; {MIN_GROUPS} needed)"
            else:
                record = dict(records[(name, key)])
                edge = record.pop("edge", None)
                if record.pop("adopted"):
                    entry |= {**record, "value": final[name][key], "status": "fitted"}
                elif edge is not None:
                    entry |= {**record, "status": f"unfitted: the fit runs to the edge of its range ({edge:g}, range "
                                                  f"{BOUNDS[name][0]:g}-{BOUNDS[name][1]:g})"}
                else:
                    entry |= {**record, "status": "unfitted: fit did not beat the prior in cross-validation"}
            parameters[name][key] = entry
    # Band residuals: out-of-fold where every parameter a row depends on was adopted; where one was kept at its
    # prior (not fitted), the shipped value is not a fit, so the row's residual at the shipped values is the honest one.
    shipped = {name: {key: e["value"] for key, e in values.items()} for name, values in parameters.items()}
    adopted = {(name, key) for name, values in parameters.items() for key, e in values.items() if e["status"] == "fitted"}
    band_residuals = {e.row.id: cv[e.row.id] if all((n, k) in adopted for n, k in e.keys.items())
                      else preds.residual(e, shipped) for e in rows}
    return {
        "about": "Written by benchmarks/fit_corpus.py (read its docstring); the engine reads its defaults from here.",
        "objective": "joint, source-balanced: sum over cells (a source group's rows reading the same parameters) of the "
                     "cell's mean |log(predicted/measured)|, ties by the same on the squared log error; cv_error and "
                     "prior_error are that mean over the parameter's cells",
        "cross_validation": "leave one source group out, inside the fit split",
        "rows_used": sorted(e.row.id for e in rows),
        "rows_not_predicted": {row.id: why for row, why in skipped},
        "parameters": parameters,
        "bands": bands(rows, band_residuals),
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
