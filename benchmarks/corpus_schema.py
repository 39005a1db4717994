"""One schema for every measurement in the validation corpus (``benchmarks/data/corpus/*.yaml``).

Each YAML file holds one source group (a whole table, a whole log thread, a whole paper): a mapping
``{source_group: str, rows: [Row, ...]}``. The held-out split is chosen by source group, never by row
(``split_of_source``, frozen in ``data/corpus_split.yaml``), so a table is either fitted on or held out whole.

Knob names follow llmcalc's own option vocabulary (``tp pp dp cp ep vpp micro_batch global_batch seq
recompute zero prompt output batch max_model_len kv_dtype engine gpu_memory_utilization method
lora_rank ...``) so a predictor can pass them straight to the engine. A knob the source does not give is
not guessed silently: it goes to ``assumed`` with the value used and why.

    python -c "import sys; sys.path.insert(0, 'benchmarks'); import corpus_schema as c; print(len(c.load_corpus()))"
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from calc.bands import KINDS as BAND_KINDS

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"

# The kinds of measurement, each with its band family and orientation: calc.bands.KINDS is the one list
# (training_throughput: tokens/s per GPU, or per cluster as the unit says; training_mfu: a fraction, the metric
# says which FLOP convention; training_step_time: s per optimizer step; training_gpu_hours: a whole published run;
# serving_ttft / serving_tpot / serving_e2e: time to first token, per output token, whole request;
# serving_throughput: output (or total: say so) tokens/s; kv_capacity: KV-cache tokens an engine allocated, from
# its log; finetune/training/inference_peak_memory: peak bytes, the metric says allocated or reserved).
KINDS: tuple[str, ...] = tuple(BAND_KINDS)
Kind = Literal[KINDS]  # type: ignore[valid-type]

# The share of rows held out, by whole sources taken in the order of sha256(source) (held_out_sources): the rule
# that chose the split frozen in SPLIT_FILE. Fixed before any fit; never changed to move a row.
HELD_OUT_SHARE = 0.35
# The frozen split (source -> fit | held_out), and the rule for a source added after it was frozen: held out when
# sha256(source)[:8] / 16^8 < NEW_SOURCE_HELD_OUT, so adding a source never moves an existing one.
SPLIT_FILE = Path(__file__).resolve().parent / "data" / "corpus_split.yaml"
NEW_SOURCE_HELD_OUT = 0.40


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    """Where the number was published. One of url / repo+path(+commit) / paper+table is required."""

    title: str
    url: str | None = None
    repo: str | None = None
    path: str | None = None
    commit: str | None = None
    paper: str | None = None
    table: str | None = None
    quote: str = Field(min_length=1, description="the row or log line as published, verbatim")
    date: str = Field(pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$", description="publication date, YYYY[-MM[-DD]]")

    @model_validator(mode="after")
    def _where(self) -> Source:
        if not (self.url or (self.repo and self.path) or self.paper):
            raise ValueError("a source needs url, or repo + path, or paper")
        return self


class Hardware(_Strict):
    gpu: str = Field(description="llmcalc GPU name (llmcalc gpus), e.g. h100, a100-80g, mi300x")
    num_gpus: int = Field(ge=1)
    gpus_per_node: int | None = None
    node: str | None = Field(None, description="as published: 'DGX H100', '8x H100 SXM5 NVLink', ...")
    interconnect: str | None = None
    memory_gb: float | None = Field(None, gt=0, description="the card's memory (GB) as published where the part is a "
                                    "variant of the catalog GPU (e.g. H100 96GB HBM2e): whether the published layout "
                                    "fits is judged on it; peaks and rates stay the catalog part's")


class Stack(_Strict):
    name: str = Field(description="megatron, nemo, torchtitan, fsdp, deepspeed, llm-foundry, maxtext, vllm, vllm-v0, "
                                  "sglang, trtllm, lmdeploy, tgi, peft-bnb, torchtune, unsloth, axolotl, litgpt, ...")
    version: str = "unknown"


class Assumed(_Strict):
    value: Any
    why: str


class Measured(_Strict):
    value: float = Field(gt=0)
    unit: str = Field(description="tokens/s/gpu, tokens/s, s, ms, tokens, GiB, GB, fraction, TFLOP/s/gpu, GPU-hours")
    metric: str = Field(description="what the number means: 'max_memory_allocated', 'MFU with 6N+12LHS FLOPs', "
                                    "'TTFT median, client side', 'vLLM # GPU blocks x block size', ...")


class Row(_Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    kind: Kind
    source: Source
    hardware: Hardware
    stack: Stack
    model: str = Field(description="llmcalc catalog name, or configs/<file> (HF config.json or llmcalc YAML) "
                                   "relative to benchmarks/data/corpus")
    dtype: str = Field(description="weights/compute dtype as run: bf16, fp16, fp8, nf4, and the 4-bit checkpoint "
                                   "formats --dtype names (nvfp4, mxfp4, awq, gptq), ...")
    config: dict[str, Any] = Field(default_factory=dict, description="knobs as the source gives them, llmcalc names")
    assumed: dict[str, Assumed] = Field(default_factory=dict, description="knobs the source does not give")
    measured: Measured
    outcome: Literal["ran", "oom"] = "ran"
    notes: str = ""


class SourceGroup(_Strict):
    source_group: str = Field(pattern=r"^[a-z0-9._-]+$")
    table_of: str | None = Field(None, pattern=r"^[a-z0-9._-]+$",
                                 description="the whole source this group was cut from (one page, one table set): groups "
                                             "cut from one source share it, and the split and the CV folds go by it")
    description: str = ""
    rows: list[Row]


def held_out_sources(sizes: dict[str, int]) -> set[str]:
    """The held-out sources: in the order of the sha256 of their names (a fixed order no fit can move), whole
    sources are held out until at least HELD_OUT_SHARE of the rows are. ``sizes``: rows per source."""
    total, held, out = sum(sizes.values()), 0, set()
    for source in sorted(sizes, key=lambda g: hashlib.sha256(g.encode()).hexdigest()):
        if held >= HELD_OUT_SHARE * total:
            break
        out.add(source)
        held += sizes[source]
    return out


def _hash_fraction(source: str) -> float:
    return int(hashlib.sha256(source.encode()).hexdigest()[:8], 16) / 16**8


def frozen_split() -> dict[str, str]:
    """source -> "fit" | "held_out" as frozen in SPLIT_FILE."""
    with SPLIT_FILE.open() as f:
        data = yaml.safe_load(f)
    return {s: split for split in ("fit", "held_out") for s in data[split]}


def split_of_source(source: str, frozen: dict[str, str] | None = None) -> str:
    """The split of a whole source: its frozen split, else the hash rule for sources added later."""
    frozen = frozen_split() if frozen is None else frozen
    if source in frozen:
        return frozen[source]
    return "held_out" if _hash_fraction(source) < NEW_SOURCE_HELD_OUT else "fit"


def load_groups(folder: Path = CORPUS_DIR) -> list[SourceGroup]:
    """Every source group in the corpus folder, validated; ids unique across the corpus."""
    groups = []
    for path in sorted(folder.glob("*.yaml")):
        # yaml.safe_load, not calc.sources.safeload: the corpus is the project's own data and uses anchors for
        # rows that repeat a source; safeload refuses anchors in user specs.
        with path.open(encoding="utf-8") as f:
            groups.append(SourceGroup.model_validate(yaml.safe_load(f)))
    ids = [r.id for g in groups for r in g.rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate corpus ids: {dupes}")
    names = [g.source_group for g in groups]
    if len(set(names)) != len(names):
        raise ValueError("a source_group appears in two files")
    return groups


def source_of(group: SourceGroup) -> str:
    """The unit of the split: the whole source a group was cut from (``table_of``), else the group itself."""
    return group.table_of or group.source_group


def load_corpus(folder: Path = CORPUS_DIR) -> list[tuple[Row, str, str]]:
    """(row, source, split) for every row: the source is the whole table set (source_of), never part of one."""
    groups = load_groups(folder)
    frozen = frozen_split()
    return [(r, source_of(g), split_of_source(source_of(g), frozen)) for g in groups for r in g.rows]


def corpus_by_id(folder: Path = CORPUS_DIR) -> dict[str, tuple[Row, str]]:
    """Every row by its id, with its split: how a validation table finds the corpus row of a measurement it shows."""
    return {row.id: (row, split) for row, _source, split in load_corpus(folder)}
