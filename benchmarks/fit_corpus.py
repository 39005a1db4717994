"""The ONE fitting procedure: corpus -> efficiency defaults and error bands -> calc/data/fitted_defaults.json.

    python benchmarks/fit_corpus.py            # fit, cross-validate, write the data file
    python benchmarks/fit_corpus.py --check    # exit 1 when the shipped file differs from the fit (date aside)

Procedure (declared before looking at held-out rows; held-out rows are never read here):
1. Rows: the corpus rows of the FIT split (corpus_schema.split_of_source: whole sources, frozen), that ran
   (an out-of-memory row is a bound, not a value) and that the engine can predict (corpus_predict).
2. Parameters: the GEMM plateau per GPU generation, and per generation for fp8 GEMMs (calc.hardware.efficiency.
   plateau_key), informed by every training and serving time/throughput row of that generation and dtype; the
   serving per-step overhead per engine family (vllm V1, vllm-v0 for releases before 0.8, sglang, trtllm,
   lmdeploy), a fixed part and a part per scheduled sequence, both informed by that engine's serving
   latency/throughput rows (the per-sequence part added in the twenty-third pass: see PRIOR); the training stack efficiency per named
   stack (calc.training.stack: fsdp,
   llm-foundry, deepspeed; megatron is the reference, 1 by definition), informed by that stack's training rows of
   every generation (one factor across generations, so the Megatron rows of one generation tie it to the plateau);
   the MoE serving rate per generation and expert dtype (calc.serving.moe.moe_serving_rate: the routed experts' rate
   in a whole serving step against the per-op kernel tables), informed by the serving rows of MoE models, so that
   what an MoE step costs beyond those tables is fitted where it arises instead of pulling the dense GEMM plateau
   that the same rows also read (added in the eleventh pass, on the fit split's evidence: its Hopper fp8 MoE serving
   rows asked for a lower plateau than its dense serving and training rows); the PCIe collective factor
   (calc.hardware.collectives.pcie_factor: a collective over a PCIe node link takes its alpha-beta time / the factor),
   informed by the serving rows whose TP or EP group runs over PCIe (corpus_predict.pcie_collectives; added in the
   twenty-seventh pass on the fit split's L40S rows: 1.09 at TP 1, 1.4-1.7 at TP 2-8).
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
   parameter cannot mean (the vLLM V0 step overhead runs to 8 ms to cover dstack rows whose setting the engine does
   not model: batches past the KV cache, the Meta FP8 checkpoint on ROCm, burst TTFTs of vLLM 0.6.3 on MI300X),
   and a CV win bought that way is not a value to ship. Adoption is decided on the fit split's cross-validation
   alone: held-out rows are never read here, not even to veto a value.
5. Bands: the out-of-fold residuals (at the shipped values for rows of an unfitted parameter) go to
   benchmarks/fit_bands.py (its docstring: levels, one source one vote, the unseen-stack rule, the
   leave-one-source-out spread factor), which writes the "bands" section.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Callable
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
from calc.serving.moe import W4A16, W4A16_GENERATIONS  # noqa: E402

PRIOR: dict[str, dict[str, float]] = {
    # The hand-set values before the corpus: Ampere fitted once to 18 Megatron rows, others scaled by 0.82 from
    # each generation's isolated-GEMM plateau (HARDWARE.md); fp8 GEMMs the same fraction of the fp8 peak.
    # Blackwell/fp4 (NVFP4 / MXFP4 GEMMs at the fp4 peak) was added with the corpus, not hand-set before it: 0.43, the
    # large-GEMM fraction of B200's 9 PF dense fp4 peak in aiconfigurator's silicon-measured TensorRT-LLM GEMM table
    # (ai-dynamo/aiconfigurator systems/data/b200_sxm/gemm/trtllm/1.3.0rc20/gemm_perf.parquet, nvfp4 rows:
    # 8192^3 in 0.2846 ms = 3.86 PF, 16384x8192x8192 3.78 PF; the same table's bf16 8192^3 reads 0.66 of 2.25 PF).
    "gemm_plateau": {"Ampere": 0.71, "Hopper": 0.65, "Hopper/fp8": 0.65, "Ada": 0.65, "Ada/fp8": 0.65, "Blackwell": 0.61,
                     "Blackwell/fp8": 0.61, "Blackwell/fp4": 0.43, "CDNA3": 0.41, "CDNA3/fp8": 0.41, "other": 0.61},
    # FlashAttention-2 fwd+bwd ~56-64% of A100 peak, ~35% of H100; FlashAttention-3 ~55-75% of H100 (Dao 2023; Shah 2024).
    "flash_attention_peak": {"Ampere": 0.58, "Hopper": 0.45, "Ada": 0.45, "Blackwell": 0.45, "CDNA3": 0.30, "other": 0.40},
    "sustained_fraction": {"all": 0.82},  # 0.71 / 0.87: the Ampere plateau over an isolated cuBLAS GEMM
    # Training stack efficiency on every compute kernel (calc.training.stack): Megatron the reference (1 by definition).
    "stack_efficiency": {"megatron": 1.0, "fsdp": 1.0, "llm-foundry": 1.0, "deepspeed": 1.0, "other": 1.0},
    # Scheduler, input preparation, sampling per step, per engine family (corpus_predict.engine_family); "vllm" is
    # the engine's default (calc.serving.assumptions).
    # vLLM V0 (releases before 0.8) apart from V1: another scheduler and per-step input path (corpus_predict.engine_family).
    # vLLM V1 run with its async scheduler (--async-scheduling: the next step's host work overlapped with the GPU
    # step) apart from the synchronous V1 step: one overhead cannot stand for both (corpus_predict.engine_family).
    # An MoE model's rows inform (and read) their engine's "/moe" key apart (added in the twenty-third pass): every
    # vLLM V1 row of the fit split is an MoE model's, and their step time beyond the kernel tables (per MoE layer:
    # router, top-k, token alignment, permute launches) is not a dense model's host time; one key for both had a
    # dense batch-1 step read a value fitted only on MoE batches (calc.serving.assumptions.overhead_family).
    "step_overhead_s": {**{f"{family}{moe}": 2.0e-3 for family in ("vllm", "vllm-async", "vllm-v0", "sglang", "trtllm",
                                                                   "lmdeploy") for moe in ("", "/moe")}, "other": 2.0e-3},
    # ... and its part per sequence the step schedules (calc.serving.step.step_overhead), added in the twenty-third
    # pass: a fixed part alone, fitted on full-batch rows, carried their host time onto every batch-1 step (the
    # pass-22 fit put vLLM V1's at 5 ms, which makes a 7B model's measured 8 ms batch-8 TPOT on H100 faster than
    # the hardware). 0 before: the engine had no such part.
    "step_overhead_per_seq_s": {},  # the same keys, 0 (below)
    # The routed experts' rate in a whole serving step against the per-op kernel tables (calc.serving.moe), per
    # generation and expert dtype: 1, the tables as read.
}
PRIOR["step_overhead_per_seq_s"] = dict.fromkeys(PRIOR["step_overhead_s"], 0.0)
PRIOR["moe_serving_rate"] = dict.fromkeys(PRIOR["gemm_plateau"], 1.0)  # the plateau's keys, in its order
# ... and 4-bit weight-only experts (dequantised to 16 bits in the kernel) apart on the generations without an fp4
# peak (calc.serving.moe.moe_rate_key): "other" stays last
PRIOR["moe_serving_rate"] = {**{k: v for k, v in PRIOR["moe_serving_rate"].items() if k != "other"},
                             **{f"{g}/{W4A16}": 1.0 for g in W4A16_GENERATIONS}, "other": 1.0}
# A collective over a PCIe node link takes its alpha-beta time / this factor (calc.hardware.collectives.pcie_factor),
# added in the twenty-seventh pass on the fit split's evidence: its dense L40S TensorRT-LLM rows read 1.09 of the
# measured throughput at TP 1 and 1.4-1.7 at TP 2-8, the L40S Mixtral rows (TP 4 / 8) 1.1-1.55, where the NVLink
# nodes' TP rows read about 1. 1 before: the engine priced a PCIe ring as the link's rate and latency.
PRIOR["pcie_collective_factor"] = {"pcie": 1.0}
NOT_SEPARABLE = {
    "flash_attention_peak": "unfitted: not separable from the GEMM plateau by this corpus (no attention-only rows); serving "
                            "only (training reads the kernel benchmark tables of calc.hardware.attention)",
    "sustained_fraction": "unfitted: no data (no corpus row carries a `bench` calibration)",
    # Tried free in the twenty-third pass (one fit, the fit split's cross-validation alone; grid 0-60 us by 4 us, fine
    # steps of 1 us, confounded with its engine's fixed part): vLLM V1's, SGLang's and vLLM V0's ran to an edge of
    # their range with no CV gain, TensorRT-LLM's took 2 us with none (14.8% either way)
    "step_overhead_per_seq_s": "unfitted: not separable from the fixed part by the fit split (its rows are full-batch "
                               "runs; pass 23 tried it free: edges or no cross-validation gain); 0, an input "
                               "(--step-overhead-per-seq-us)",
}
# Coarse grids (first sweep), then a lattice of FINE steps around the current value (FINE_STEPS either way), inside
# BOUNDS: the range a value can mean (a large GEMM's fraction of peak, a stack's factor about the reference, a
# per-step overhead of a few ms). A fit that ends on a bound is not a minimum and is not adopted (step 4).
GRIDS = {"gemm_plateau": [round(0.20 + 0.05 * i, 2) for i in range(16)],
         "stack_efficiency": [round(0.50 + 0.05 * i, 2) for i in range(17)],
         "step_overhead_s": [round(0.5e-3 * i, 6) for i in range(17)],
         "moe_serving_rate": [round(0.40 + 0.05 * i, 2) for i in range(21)],
         "pcie_collective_factor": [round(0.10 + 0.05 * i, 2) for i in range(21)]}
FINE = {"gemm_plateau": 0.01, "stack_efficiency": 0.01, "step_overhead_s": 0.25e-3, "moe_serving_rate": 0.02,
        "pcie_collective_factor": 0.01}
BOUNDS = {"gemm_plateau": (0.20, 0.95), "stack_efficiency": (0.50, 1.30), "step_overhead_s": (0.0, 8e-3),
          "moe_serving_rate": (0.40, 1.40), "pcie_collective_factor": (0.10, 1.10)}
REFERENCE = {("stack_efficiency", "megatron"): "reference: 1 by definition (the GEMM plateaus are Megatron-class rates)"}
FINE_STEPS = 4
PER_SEQ_PROBE = 10e-6  # the per-sequence overhead of Predictions' third call (any value > 0: the time is affine in it)
MIN_GROUPS = 2
MAX_SWEEPS = 30

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
    prediction at every o exactly. An MoE row's time is also affine in 1 / rate, rate its MoE serving rate (the
    routed experts' GEMM seconds of every step are divided by it, calc.serving.step.weight_gemm_time, and nothing
    else reads it; the steps and their batches do not depend on any time), jointly with o (no cross term: a step
    is c + o + e / rate; a host-bound eager step, max(forward, launches), would break it: the fit split's MoE rows
    have none), so a third call (o = 0, rate = 1/2) gives every (o, rate). The per-sequence overhead q adds q x (the
    step's sequences) to each step, so it is affine too (one more call, q = PER_SEQ_PROBE):

        t(o, q, rate) = t(0, 0, 1) + (t(1 ms, 0, 1) - t(0, 0, 1)) o / 1 ms + (t(0, p, 1) - t(0, 0, 1)) q / p
                        + (t(0, 0, 1/2) - t(0, 0, 1)) (1 / rate - 1)

    (tests/test_fit_corpus.py checks them against a direct call). A few calls per plateau instead of one per
    (plateau, rate) pair: the joint search over both families costs what the plateau search alone did. ``engine``
    is corpus_predict.predict (row, overrides) -> value; a test passes a model whose true parameters it knows."""

    def __init__(self, engine: Callable[[Any, dict[str, Any]], float] = cp.predict) -> None:
        self.engine = engine
        self.cache: dict[tuple, float] = {}

    def _engine(self, e: Entry, plateau: float, overhead: float, stack: float = 1.0, base: float | None = None,
                moe: float | None = None, per_seq: float = 0.0, pcie: float | None = None) -> float:
        key = (e.row.id, plateau, overhead, stack, base, moe, per_seq, pcie)
        if key not in self.cache:
            overrides: dict[str, Any] = {"gemm_plateau": {e.keys["gemm_plateau"]: plateau}, "step_overhead_s": overhead,
                                         "step_overhead_per_seq_s": per_seq} if e.keys else {}
            if base is not None:  # an fp8 run's bf16 GEMMs (attention projections kept at bf16, the head) read this
                overrides["gemm_plateau"][_base_key(e.keys["gemm_plateau"])] = base
            if "stack_efficiency" in e.keys:
                overrides["stack_efficiency"] = {e.keys["stack_efficiency"]: stack}
            if moe is not None:
                overrides["moe_serving_rate"] = {e.keys["moe_serving_rate"]: moe}
            if pcie is not None:
                overrides["pcie_collective_factor"] = {e.keys["pcie_collective_factor"]: pcie}
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
        pcie = params["pcie_collective_factor"]["pcie"] if "pcie_collective_factor" in e.keys else None
        if "stack_efficiency" in e.keys:  # a training step overlaps its collectives: the factor read directly
            return self._engine(e, plateau, 0.0, params["stack_efficiency"][e.keys["stack_efficiency"]], base, pcie=pcie)
        if "step_overhead_s" not in e.keys:
            return self._engine(e, plateau, 0.0, base=base, pcie=pcie)
        o = params["step_overhead_s"][e.keys["step_overhead_s"]]
        q = params["step_overhead_per_seq_s"][e.keys["step_overhead_per_seq_s"]]
        sign = FAMILY[e.row.kind][1]
        r1 = 1.0 if "moe_serving_rate" in e.keys else None  # an MoE row's calls at rate 1 (the tables as read)
        f1 = 1.0 if pcie is not None else None  # ... and a PCIe row's at factor 1 (the link as given)
        t0, t1 = (self._engine(e, plateau, x, base=base, moe=r1, pcie=f1) ** sign for x in (0.0, 1e-3))
        t = t0 + (t1 - t0) * o / 1e-3
        if q:  # the per-sequence part (0 unless a caller sets it: not a fitted target, NOT_SEPARABLE)
            t += (self._engine(e, plateau, 0.0, base=base, moe=r1, per_seq=PER_SEQ_PROBE, pcie=f1) ** sign - t0) \
                * q / PER_SEQ_PROBE
        if "moe_serving_rate" in e.keys:
            rate = params["moe_serving_rate"][e.keys["moe_serving_rate"]]
            t += (self._engine(e, plateau, 0.0, base=base, moe=0.5, pcie=f1) ** sign - t0) * (1.0 / rate - 1.0)
        if pcie is not None:  # a serving step's collectives add to it, each at (alpha-beta time) / factor
            t += (self._engine(e, plateau, 0.0, base=base, moe=r1, pcie=0.5) ** sign - t0) * (1.0 / pcie - 1.0)
        return t ** sign

    def residual(self, e: Entry, params: dict[str, dict[str, float]]) -> float:
        """log(predicted / measured) with these parameters."""
        return math.log(self.predict(e, params) / e.row.measured.value)


Target = tuple[str, str]  # (parameter, key), e.g. ("gemm_plateau", "Hopper/fp8")
TARGETS: list[Target] = [(name, key) for name in ("stack_efficiency", "step_overhead_s", "gemm_plateau", "moe_serving_rate",
                                                 "pcie_collective_factor")
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
    prediction about constant): a GEMM plateau and a stack efficiency (training time ~ GEMM / (plateau x stack)), a
    GEMM plateau and an MoE serving rate (an MoE step's experts run at plateau x rate), a GEMM plateau and the PCIe
    collective factor (a PCIe TP row's step is its GEMMs and its collectives), and a generation's 16-bit and fp8
    plateaus (an fp8 run's bf16 GEMMs read the 16-bit one)."""
    names = {a[0], b[0]}
    if names in ({"gemm_plateau", "stack_efficiency"}, {"gemm_plateau", "moe_serving_rate"},
                 {"gemm_plateau", "pcie_collective_factor"}):
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


_FOLD_STATE: tuple[list[Entry], Predictions, set[Target] | None] | None = None  # read by forked workers


def _fold_fit(held: set[str]) -> tuple[dict[str, dict[str, float]], dict[tuple, float]]:
    """One fold in a worker: the fit without the held groups, and the predictions it computed (for the parent): the
    cache only grows, in insertion order, so they are its entries past the parent's."""
    assert _FOLD_STATE is not None
    rows, preds, free = _FOLD_STATE
    inherited = len(preds.cache)
    params = fit([e for e in rows if e.group not in held], preds, free)
    return params, dict(itertools.islice(preds.cache.items(), inherited, None))


def cross_validate(rows: list[Entry], preds: Predictions, free: set[Target] | None = None) -> dict[str, float]:
    """Out-of-fold residual of every row: each fold predicted with the fit of the others (a row of a group that
    depends on no fitted parameter has one residual whatever the fit: it is taken at the prior values).
    The folds are independent deterministic fits: they run in forked workers, one per CPU (each starts from the
    parent's cache of predictions and sends back what it added), so the answer is the same on any core count."""
    global _FOLD_STATE
    out = {e.row.id: preds.residual(e, PRIOR) for e in rows}
    held_out = folds(rows)
    workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, len(held_out))
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        _FOLD_STATE = (rows, preds, free)
        try:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                fitted = pool.map(_fold_fit, held_out, chunksize=1)
        finally:
            _FOLD_STATE = None
        for _params, new in fitted:
            preds.cache.update(new)
        fold_params = [params for params, _new in fitted]
    else:
        fold_params = [fit([e for e in rows if e.group not in held], preds, free) for held in held_out]
    for held, params in zip(held_out, fold_params, strict=True):
        out |= {e.row.id: preds.residual(e, params) for e in rows if e.group in held}
    return out


def row_stack(row: Any) -> str:
    """The stack a row's band is told apart by (calc.bands.band's ``stack``): the key of the fitted parameter the
    row's stack reads, a training row's named stack (calc.training.stack.stack_key: torchtitan runs as fsdp, NeMo as
    megatron) or a serving row's engine family (corpus_predict.engine_family: nim-trtllm runs trtllm); a stack the
    engine does not name, or a memory row's, by its own name in lower case (two unknown stacks are not one)."""
    keys = cp.parameter_keys(row)
    # a serving row's engine family, not its overhead key (an MoE model's "/moe": MoE is its own band axis)
    key = keys.get("stack_efficiency") or (cp.engine_family(row) if "step_overhead_s" in keys else None)
    key = {"vllm-v0": "vllm"}.get(key, key)  # a band reads vLLM V0 and V1 as one family (calc.report.confidence)
    return key if key and key != "other" else row.stack.name.lower()


def adopt(rows: list[Entry], preds: Predictions) -> tuple[dict[str, dict[str, float]], dict[str, float], dict[Target, dict[str, Any]]]:
    """Step 4: (the joint fit of the adopted parameters, its out-of-fold residuals, {parameter: its CV record}).
    Fit and cross-validate the free parameters jointly; while one ends on the edge of its BOUNDS or loses to its
    prior in CV, fix that one (an edge first, else the one that loses most) at PRIOR and refit the rest."""
    free = set(free_targets(rows))
    prior = {e.row.id: preds.residual(e, PRIOR) for e in rows}
    records: dict[Target, dict[str, Any]] = {}
    while True:
        params = fit(rows, preds, free)  # first: its predictions warm the cache the folds start from
        cv = cross_validate(rows, preds, free)
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


def band_rows(rows: list[Entry], residuals: dict[str, float]) -> list[BandRow]:
    """The rows fit_bands reads: source group, kind, band group, stack, residual read as a time (a rate's negated)."""
    return [BandRow(e.row.id, e.group, e.row.kind, e.band_group, row_stack(e.row), residuals[e.row.id] * FAMILY[e.row.kind][1])
            for e in rows]


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
                entry["status"] = (f"unfitted: stacks the engine does not name, and those set apart from their named "
                                   f"stack's factor (calc.training.stack.OWN_EFFICIENCY) ({len(use)} fit rows); 1, as "
                                   "the reference")
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
