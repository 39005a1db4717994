"""Error bands from the fit split's residuals (steps 5-6 of benchmarks/fit_corpus.py): calc/data/fitted_defaults.json "bands".

Input: one BandRow per fit-split row: its source group, corpus kind, band group (calc.bands.group_name), the stack it
ran (fit_corpus.row_stack) and r = log(predicted / measured) read as a time (a rate's residual negated; calc.bands).

1. Levels. Each row is counted in its band group (pool | generation | dtype class | dense/MoE), its pool (calc.bands
   POOL: kinds of one prediction) and its family (calc.bands.FAMILY: serving prefill + decode). A level's entry is
   usable when it has >= MIN_BAND_ROWS rows from >= MIN_SOURCES source groups (one source says nothing of the scatter
   between sources), a band group from >= MIN_GROUP_SOURCES (two sources are one difference: a group of two reads its
   pool).
2. One source, one vote. The quantiles of an entry weight each row by 1 / (rows of its source group in the entry), so
   every source group weighs the same (weighted_quantile): a source of 32 rows (one stack, one setting, one error)
   does not make a pool's band its own.
3. Chain (calc.bands.band reads the file the same way): the row's band group when usable and the row's stack has
   rows in it; else its pool; else its family; else no comparable measurement. A stack with no rows in its band
   group (an "unseen stack") skips the group: the group's scatter is that of other stacks' settings.
4. Spread. Leave one source group out at a time, read each of its rows' band from the other groups (steps 1-3) and
   find the smallest factor k (SPREAD_GRID, 0.5 to 4: a band may narrow as well as widen) that spreads the
   quantiles about their median enough for BAND_LEVEL of the left-out rows to fall inside, per pool (spread_key)
   and per level ("group": read from the row's own band group; "fallback": from the pool or family), the left-out
   rows counted one
   source one vote (each weighs 1 / its source group's left-out rows in that pool x level, as in step 2): a band is
   read for a figure of a source not in the corpus, so the share of sources it holds is what k is set to, and a
   source of 83 rows does not set a pool's k alone. A pool x level with fewer than MIN_BAND_ROWS left-out rows or
   fewer than MIN_SOURCES source groups among them takes the level's k over all pools. Rows of one source share a
   stack and a setting, so quantiles over rows understate how far a new source lands.

Every rule above was chosen by leave-one-source-out on the fit split alone (``python benchmarks/fit_bands.py`` prints
that table per kind and per source: each source's bands read from the other sources, with k refitted without it):
weighting and the unseen-stack rule together took the fit split's out-of-source coverage from 73% to 83% of rows at a
median half-width of 34% (33% before); a generation level between group and pool and the dropping of the serving
family did not help and are not used (nor, then, 3 sources per group: under a k counted by rows). Step 4's
one-vote-per-source coverage with a k below 1 allowed, then MIN_GROUP_SOURCES 3 (2026-12-02, residuals of that day;
the 3-source rule moves no shipped band today, only the out-of-source test, where left-out sources leave groups of
two) took the mean over source groups of their share inside from 68% to 76%, then 77% (rows: 81% -> 87% -> 89%;
median half-width 29% -> 35% -> 33%). Per kind, before -> after (share of sources inside, of rows, median
half-width): fine-tuning peak memory 55% (75%) 7% -> 87% (94%) 11%; KV capacity 60% (57%) 9% -> 70% (71%) 11%;
serving throughput 77% (79%) 38% -> 79% (81%) 39%; TTFT 25% 32% -> 72% 115% (the prefill pool's k is no longer set by
one source's 32 rows, and its sources disagree); training MFU 33% -> 50%; training throughput and step time keep 86%
and 85% of sources (95% of rows) at 33% and 39% (29%, 33%): the training sources the engine misses (Llama 3's MFU
table and GPU-hours, the MoE step times) now count one vote each, as a new source would (with those step-time
residuals cut to 0.3 of today's, the training k falls from 1.35 to 1.05 and the training half-widths to 31%). Tried
and not used, by the same table: a k per corpus kind inside a pool (the training kinds share one predicted step time;
a kind's own k, read from its 2-4 sources, took step time's half-width from 42% to 84% and helped no kind); a floor
under each band's ends at the pool's median out-of-source deviation (fine-tuning memory 100% inside at 19%, KV 90% of
sources at 16%: over the level and wider, and TTFT fell back to 25%); and an additive band, q50 plus the 10% and 90%
quantiles of the out-of-source deviations r - q50 per kind or pool (a memory pool of 3 sources leaves none to
calibrate with inside a left-out fold, so it reads the deviations of all kinds: fine-tuning memory 100% inside at
36%); and a stack or engine level inside the band group (serving throughput 31% -> 11% wide at the same coverage, but
every such entry today is two source groups of one publisher, TensorRT-LLM's performance overview for 8B and 70B or
torchtitan's two H100 pages, so leaving one out does not leave the publisher out: their agreement is not the scatter
between sources). Held-out rows are never read here.

Fifth pass (2026-12-02, residuals of that day; issue 23's ideas, each scored by the out-of-source table on the fit
split: per kind, the mean over source groups of their share inside and the median half-width; the all-kinds line
first). Today's procedure: 77% of sources (83% of rows) at 41%; serving throughput 89% at 47%, e2e 42% at 42% (one source),
TPOT 100% at 83%, TTFT 78% at 133%, training throughput / step time / MFU 78% / 85% / 67% at 34% / 41% / 31%,
fine-tuning memory 83% at 8%, KV 70% at 5% (7 of 11 rows banded), training peak memory no band.
- A k per pool x dense/MoE class (step 4 per spread_key with SPREAD_BY_CLASS; ``--by-class`` prints its table):
  75% (82% of rows) at 39%; serving throughput 77% at 41% (its MoE sources no longer read a k set by the dense
  eager MI300X / H100 405B rows of dstack's two sources), e2e 55% at 53%, TPOT 100% at 80%, training throughput /
  step time / MFU 78% / 85% / 67% at 33% / 39% / 30%; memory, KV and TTFT unchanged. Within the table's noise (20
  fit sources, 3 MoE serving ones), and the k's it would ship from 2 sources of one publisher each (serving dense
  2.45: dstack; training MoE 2.35: NVIDIA's DGX Cloud recipes) are read by no left-out source (one left out leaves
  one, whose left-out rows take the level's k over all pools). Read only where a class has >= 3 sources (else the
  pool's k): 78% at 41%, serving throughput back to 89% at 47% (a left-out MoE serving source leaves its class 2),
  training 33% / 39% / 30% wide, e2e 55% at 53%. Not used; it is kept behind SPREAD_BY_CLASS, with calc.bands
  reading a pool entry's "moe" quantiles, for when the corpus holds enough MoE sources to test it.
- (a) A conformal / order-statistic rule. Over n exchangeable sources, [min, max] of their residuals holds a new
  source with probability (n - 1)/(n + 1), 80% only from n = 9: the training pool (10 sources) qualifies; serving
  decode (8: 78%), KV (6: 71%), prefill (4: 60%), fine-tuning memory (3: 50%) and training memory (1) are too small.
  As a finite-sample k (the share inside raised to 0.8 (n + 1)/n of the left-out sources, no band above 1): no
  band on serving throughput, TPOT or TTFT, e2e 60% at 68%, fine-tuning memory 100% at 13%, training throughput
  100% at 58%, step time 85% at 81%; all 81% of sources on 247 of 445 rows at 58%: over the level and wider. Not
  used.
- (b) A dense / MoE subpool level between band group and pool (pool|dense, pool|moe, the band group's rules): in
  serving decode alone 74% at 34% (serving throughput 77% at 25%), but no left-out source reads it (the MoE subpool
  holds 3 sources, the dense one's k comes from dstack's two alone), so its table only measures the pool's k on fewer
  rows, and the level it would ship is untested (the dense one wider than +-100%: no band for a dense vLLM decode
  figure); in every pool 77% at 33% with training throughput 34% -> 60% wide; by engine family 78% at 41% with
  step time banded on 5 of 57 rows. Not used.
- (c) A training peak-memory band from fine-tuning memory (one engine, calc.memory; a "memory" family or one pool):
  torchtitan's 14 training-memory rows, its source left out, fall 21% inside at 8-9% (14% with KV in the family):
  the fit split's only training-memory source is not held by the fine-tuning sources' band. Not used: no band.
  Retried the same day after torchtitan's allocator pools and loss-parallel buffers were priced (training memory fit
  median 0.87 -> 0.94) as one pool of both kinds: training memory 43% inside at 8%, fine-tuning memory 94% of sources
  at 13% (86% / 72% at 7% apart), all 80% of sources at 31%: still under the level for the kind it would band, and
  the fine-tuning band over it. Not used.
- (d) KV capacity with inference and peak memory as a family: the 4 KV rows without a band gain one (KV 75% of
  sources at 5%, all 11 rows), the shipped KV band is unchanged (its pool is usable), and inference memory (one
  source) falls 0-100% inside by variant. The fit split's KV sources agree within 3% (one at 11%): no rule read from
  them widens a KV band for a new source's scatter. Not used.
- (e) The dstack sources (eager vLLM V0 on MI300X / H100, 405B) as a group of their own: by vLLM V0 apart from V1 as
  a band stack the table is unchanged (no fit decode row runs V1); by GPU generation within serving, 78% at 37%
  with serving throughput banded on 56 of 98 rows; a dense class k (above) keeps it off MoE figures. Not used.
- A k read only from a class or pool of >= 3 sources (else the level's over all pools): 77% at 40%; a class k read
  only from its own pool's memory kinds, or k = 1 where a pool is too small: fine-tuning memory falls to 58%.

Reading a band (calc.bands.band) adds one rule: a band wider than MAX_HALF_WIDTH of the prediction either way
(calc.bands.too_wide, on its log width) is no band ("no band: no comparable measurement", rows 0): its rows do not
resemble the figure enough to bound it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from calc.bands import FAMILY, KINDS, pool_of, too_wide

MIN_BAND_ROWS = 8
MIN_SOURCES = 2
MIN_GROUP_SOURCES = 3
BAND_LEVEL = 0.8
WIDE = math.log(2.0)  # the stated wide band of "no comparable measurement": a factor of 2 either way
MAX_HALF_WIDTH = 1.0  # a band wider than +-100% of the prediction is read as no band (calc.bands.band)
SPREAD_GRID = [round(0.5 + 0.05 * i, 2) for i in range(71)]  # 0.50 .. 4.00
LEVELS = ("groups", "pools", "families")
SPREAD_BY_CLASS = False  # True: step 4's k per pool x dense/MoE class, tried and not used (docstring, fifth pass)


@dataclass(frozen=True)
class BandRow:
    id: str
    source: str  # source group
    kind: str
    band_group: str
    stack: str  # benchmarks/fit_corpus.row_stack: the named stack or engine family, else the stack's name
    r: float  # log(predicted / measured) read as a time


def weighted_quantile(values: list[float], weights: list[float], q: float) -> float:
    """The q-quantile of weighted values, midpoint rule: sorted values x_i with weights w_i (total W) sit at
    p_i = (w_1 + ... + w_(i-1) + w_i / 2) / W; the quantile interpolates linearly between the two x_i whose p_i
    bracket q, and is x_1 below p_1, x_n above p_n. Equal weights give Hazen's p_i = (i - 1/2) / n
    (Hyndman & Fan 1996, definition 5).

    >>> weighted_quantile([0.0, 1.0, 2.0, 3.0], [1, 1, 1, 1], 0.5), weighted_quantile([0.0, 10.0], [3, 1], 0.5)
    (1.5, 2.5)
    """
    pairs = sorted(zip(values, weights, strict=True))
    total = sum(w for _, w in pairs)
    at, points = 0.0, []
    for x, w in pairs:
        points.append(((at + w / 2) / total, x))
        at += w
    if q <= points[0][0]:
        return points[0][1]
    for (p0, x0), (p1, x1) in zip(points, points[1:], strict=False):
        if q <= p1:
            return x0 + (x1 - x0) * (q - p0) / (p1 - p0)
    return points[-1][1]


def source_quantiles(rows: list[BandRow]) -> tuple[float, float, float]:
    """(q10, q50, q90) of the rows' residuals, each source group's rows weighing 1 in all (step 2)."""
    per_source = Counter(row.source for row in rows)
    values, weights = [row.r for row in rows], [1 / per_source[row.source] for row in rows]
    return tuple(weighted_quantile(values, weights, q) for q in (0.1, 0.5, 0.9))  # type: ignore[return-value]


Levels = dict[str, dict[str, list[BandRow]]]


def by_level(rows: list[BandRow]) -> Levels:
    """The rows of each band group, pool and family (step 1)."""
    out: Levels = {level: {} for level in LEVELS}
    for row in rows:
        pool = pool_of(row.kind)
        for level, name in (("groups", row.band_group), ("pools", pool), ("families", FAMILY.get(pool))):
            if name:
                out[level].setdefault(name, []).append(row)
    return out


def spread_key(row: BandRow) -> str:
    """What a row's spread factor is measured and read for (step 4): its pool; with SPREAD_BY_CLASS its pool and
    dense/MoE class, "training|moe" (the last field of its band group, calc.bands.group_name)."""
    return f"{pool_of(row.kind)}|{row.band_group.rsplit('|', 1)[1]}" if SPREAD_BY_CLASS else pool_of(row.kind)


def usable(rows: list[BandRow] | None, sources: int = MIN_SOURCES) -> bool:
    """>= MIN_BAND_ROWS rows from >= ``sources`` source groups (step 1: MIN_GROUP_SOURCES for a band group)."""
    return rows is not None and len(rows) >= MIN_BAND_ROWS and len({row.source for row in rows}) >= sources


def chain(row: BandRow, by: Levels) -> tuple[str, list[BandRow]] | None:
    """("group" or "fallback", the rows a band for ``row`` is read from) by step 3, or None: no comparable rows."""
    group = by["groups"].get(row.band_group)
    if usable(group, MIN_GROUP_SOURCES) and any(other.stack == row.stack for other in group):
        return "group", group
    pool = pool_of(row.kind)
    for level, name in (("pools", pool), ("families", FAMILY.get(pool))):
        entry = by[level].get(name) if name else None
        if usable(entry):
            return "fallback", entry
    return None


Point = tuple[str, float, float, float, float]  # (source group, r, q10, q50, q90) of a left-out row


def _inside(k: float, points: list[Point]) -> float:
    """Share of (source, r, q10, q50, q90) points with r inside [q50 + k (q10 - q50), q50 + k (q90 - q50)], each
    source's points weighing 1 in all (step 4): the mean over sources of the share of their points inside."""
    per_source = Counter(source for source, *_ in points)
    return sum((q50 + k * (q10 - q50) <= r <= q50 + k * (q90 - q50)) / per_source[source]
               for source, r, q10, q50, q90 in points) / len(per_source)


def spread_factors(rows: list[BandRow]) -> dict[str, Any]:
    """Step 4: the leave-one-source-out spread factor k per pool x class (spread_key) and level, with the coverage
    it reaches."""
    seen: dict[tuple[str, str], list[Point]] = {}
    for source in sorted({row.source for row in rows}):
        by = by_level([row for row in rows if row.source != source])
        for row in rows:
            if row.source == source and (found := chain(row, by)) is not None:
                point = (source, row.r, *source_quantiles(found[1]))
                seen.setdefault((spread_key(row), found[0]), []).append(point)
                seen.setdefault(("all", found[0]), []).append(point)
    out: dict[str, Any] = {}
    for (pool, level), points in sorted(seen.items()):
        k = next((k for k in SPREAD_GRID if _inside(k, points) >= BAND_LEVEL), SPREAD_GRID[-1])
        out.setdefault(pool, {})[level] = {"k": k, "rows": len(points), "sources": len({p[0] for p in points}),
                                           "coverage_at_1": round(_inside(1.0, points), 4),
                                           "coverage_at_k": round(_inside(k, points), 4)}
    for level in ("group", "fallback"):
        out.setdefault("all", {}).setdefault(level, {"k": 1.0, "rows": 0, "sources": 0})
    return out


def spread_of(spread: dict[str, Any], pool: str, level: str) -> float:
    """The k of a pool x class (spread_key) and level; the level's k over all pools where its left-out rows are fewer
    than MIN_BAND_ROWS or come from fewer than MIN_SOURCES source groups (one source's share inside is no coverage)."""
    own = spread.get(pool, {}).get(level)
    return own["k"] if own and own["rows"] >= MIN_BAND_ROWS and own["sources"] >= MIN_SOURCES else spread["all"][level]["k"]


def quantile_entry(rows: list[BandRow], k: float) -> dict[str, Any]:
    """An entry of the data file: q10 and q90 spread about q50 by k, the raw quantiles, rows, sources, stacks."""
    q10, q50, q90 = source_quantiles(rows)
    return {"q10": round(q50 + k * (q10 - q50), 4), "q90": round(q50 + k * (q90 - q50), 4), "q50": round(q50, 4),
            "q10_raw": round(q10, 4), "q90_raw": round(q90, 4), "rows": len(rows),
            "sources": len({row.source for row in rows}), "stacks": sorted({row.stack for row in rows})}


def band_table(rows: list[BandRow]) -> dict[str, Any]:
    """The "bands" section of calc/data/fitted_defaults.json (steps 1-4)."""
    by = by_level(rows)
    spread = spread_factors(rows)

    def k(level: str, name: str, entry: list[BandRow], cls: str = "dense") -> float:
        if level == "groups":  # a band group is of one class (its name's last field)
            return spread_of(spread, spread_key(entry[0]), "group")
        key = f"{name}|{cls}" if SPREAD_BY_CLASS else name
        return spread_of(spread, key, "fallback") if level == "pools" else spread["all"]["fallback"]["k"]

    def entry_of(level: str, name: str, entry: list[BandRow]) -> dict[str, Any]:
        """A level's entry; with SPREAD_BY_CLASS a pool's q10, q90 are spread by its dense class's k, and "moe" holds
        those spread by its MoE class's (calc.bands reads them for a MoE figure)."""
        out = quantile_entry(entry, k(level, name, entry))
        if level == "pools" and SPREAD_BY_CLASS:
            moe = quantile_entry(entry, k(level, name, entry, "moe"))
            out["moe"] = {"q10": moe["q10"], "q90": moe["q90"]}
        return out

    return {"level": BAND_LEVEL, "min_rows": MIN_BAND_ROWS, "min_sources": MIN_SOURCES, "min_group_sources": MIN_GROUP_SOURCES,
            "max_half_width": MAX_HALF_WIDTH,
            "orientation": "q10/q90 of log(predicted/measured) for time-like figures, each source group weighing 1, "
                           "spread about q50 by the level's leave-one-source-out factor; a rate's band uses them negated",
            "spread": spread,
            "wide_default": {"q10": round(-WIDE, 4), "q90": round(WIDE, 4)},
            **{level: {name: entry_of(level, name, entry) for name, entry in sorted(values.items())
                       if usable(entry, MIN_GROUP_SOURCES if level == "groups" else MIN_SOURCES)}
               for level, values in by.items()}}


def out_of_source(rows: list[BandRow]) -> list[tuple[BandRow, tuple[float, float] | None]]:
    """Each row with the [low, high] residual band the procedure gives it when its source group is left out
    entirely (the spread k refitted without it too), or None where no band (none usable, or one wider than
    MAX_HALF_WIDTH, as calc.bands.band reads it): the test every rule above was chosen by."""
    out = []
    for source in sorted({row.source for row in rows}):
        rest = [row for row in rows if row.source != source]
        spread, by = spread_factors(rest), by_level(rest)
        for row in rows:
            if row.source != source:
                continue
            found = chain(row, by)
            if found is None:
                out.append((row, None))
                continue
            q10, q50, q90 = source_quantiles(found[1])
            k = spread_of(spread, spread_key(row), found[0])
            lo, hi = q50 + k * (q10 - q50), q50 + k * (q90 - q50)
            out.append((row, None if too_wide(lo, hi, MAX_HALF_WIDTH) else (lo, hi)))
    return out


def half_width(kind: str, lo: float, hi: float) -> float:
    """Half the width of a residual band [lo, hi] over the prediction: a time lies in [p exp(-hi), p exp(-lo)], a
    rate in [p exp(lo), p exp(hi)] (calc.bands.oriented)."""
    return (math.exp(-lo) - math.exp(-hi)) / 2 if KINDS[kind][1] > 0 else (math.exp(hi) - math.exp(lo)) / 2


def out_of_source_table(rows: list[BandRow]) -> list[str]:
    """Per kind: rows, rows with a band, share inside, mean over source groups of their share inside, median
    half-width of the band over the prediction (a time [exp(-hi), exp(-lo)], a rate [exp(lo), exp(hi)]); then the
    same per source group and kind (the rows behind each kind's mean over sources)."""
    found = out_of_source(rows)
    return _kind_table(found) + [""] + _source_table(found)


def _source_table(found: list[tuple[BandRow, tuple[float, float] | None]]) -> list[str]:
    lines = ["| source group | kind | rows | banded | inside | median half-width |", "|---|---|---:|---:|---:|---:|"]
    for source, kind in sorted({(row.source, row.kind) for row, _ in found}, key=lambda sk: (sk[1], sk[0])):
        banded = [(row, b) for row, b in found if (row.source, row.kind) == (source, kind) and b is not None]
        of = sum((row.source, row.kind) == (source, kind) for row, _ in found)
        inside = f"{statistics.fmean(b[0] <= row.r <= b[1] for row, b in banded):.0%}" if banded else "-"
        half = f"{statistics.median(half_width(row.kind, *b) for row, b in banded):.0%}" if banded else "-"
        lines.append(f"| {source} | {kind} | {of} | {len(banded)} | {inside} | {half} |")
    return lines


def _kind_table(found: list[tuple[BandRow, tuple[float, float] | None]]) -> list[str]:
    rows = [row for row, _ in found]
    lines = ["| kind | rows | banded | inside | inside (per source) | median half-width |", "|---|---:|---:|---:|---:|---:|"]
    for kind in sorted({row.kind for row in rows}) + ["all"]:
        of_kind = [(row, b) for row, b in found if kind in ("all", row.kind)]
        banded = [(row, b) for row, b in of_kind if b is not None]
        if not banded:
            lines.append(f"| {kind} | {len(of_kind)} | 0 | - | - | - |")
            continue
        inside = [b[0] <= row.r <= b[1] for row, b in banded]
        sources: dict[str, list[bool]] = {}
        for (row, _), hit in zip(banded, inside, strict=True):
            sources.setdefault(row.source, []).append(hit)
        half = statistics.median(half_width(row.kind, *b) for row, b in banded)
        lines.append(f"| {kind} | {len(of_kind)} | {len(banded)} | {statistics.fmean(inside):.0%} | "
                     f"{statistics.fmean(statistics.fmean(v) for v in sources.values()):.0%} | {half:.0%} |")
    return lines


if __name__ == "__main__":  # python benchmarks/fit_bands.py [--by-class]: the fit split's out-of-source table (~1 min)
    import sys

    import fit_corpus

    SPREAD_BY_CLASS = "--by-class" in sys.argv  # the table of a k per pool x dense/MoE class (fifth pass, not used)

    seen: list[list[BandRow]] = []
    fit_corpus.band_table = lambda rows: seen.append(rows) or band_table(rows)  # the rows run() bands
    fit_corpus.run()
    print("\n".join(out_of_source_table(seen[0])))
