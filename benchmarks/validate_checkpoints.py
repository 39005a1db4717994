"""Checkpoint validation: checkpoint bytes as shipped and exact parameter totals vs published figures (issue 15).

Prints Markdown tables. Rows (with sources) live in benchmarks/data/checkpoints.json; one rule for every
row (as-shipped bytes from quantization_config, exact tensor-table counts), nothing tuned per row.
Run: python -m benchmarks.validate_checkpoints   (from the repository root)
"""

from __future__ import annotations

import json
from pathlib import Path

from calc.memory.weights import scale_elements, weight_bytes_by_group
from calc.model.params import count_params, mtp_tensors
from calc.sources.catalog import load_model

DATA_DIR = Path(__file__).parent / "data"
REPO = DATA_DIR.parents[1]
DATA = json.loads((DATA_DIR / "checkpoints.json").read_text())


def _model(name: str):
    """A catalog name, or a config.json: under benchmarks/data (configs/<file>, corpus/configs/<file>) or the
    repository (tests/fixtures/hf/<file>)."""
    if not name.endswith((".json", ".yaml")):
        return load_model(name)
    return load_model(str(DATA_DIR / name if (DATA_DIR / name).is_file() else REPO / name))


def hub_count(row: dict) -> int:
    """What the Hub's safetensors total counts for a hub_totals row: the parameters transformers builds, plus the
    MTP modules the checkpoint ships ("mtp") and the scale elements ("scales") where the row says so."""
    m = _model(row["model"])
    mtp = "mtp" in row["counts"]
    return (count_params(m).total_params + (sum(t.params for t in mtp_tensors(m)) if mtp else 0)
            + (scale_elements(m, with_mtp=mtp) if "scales" in row["counts"] else 0))


def _table(title: str, header: str, rows: list[tuple[str, str, str, float, str]]) -> list[str]:
    out = [f"### {title}", "", header, "|---|---|---|---|---|"]
    out += [f"| {m} | {pub} | {ours} | {err:+.2f}% | {src} |" for m, pub, ours, err, src in rows]
    mean = sum(abs(r[3]) for r in rows) / len(rows)
    return [*out, "", f"mean |error| {mean:.2f}% over {len(rows)} rows", ""]


def main() -> None:
    shipped = []
    for row in DATA["checkpoints"]:
        ours = sum(weight_bytes_by_group(_model(row["model"])).values())
        err = 100 * (ours - row["published_bytes"]) / row["published_bytes"]
        name = row["model"].rsplit("/", 1)[-1].removesuffix(".json")
        shipped.append((name, row["published"], f"{ours / 2**30:.2f} GiB ({ours / 1e9:.1f} GB)", err, row["source"]))
    totals = []
    for row in DATA["totals"]:
        ours = count_params(load_model(row["model"])).total_params
        err = 100 * (ours - row["published"]) / row["published"]
        totals.append((row["model"], f"{row['published'] / 1e9:g}B", f"{ours:,}", err, row["source"]))
    hub = []
    for row in DATA["hub_totals"]:
        ours = hub_count(row)
        counted = " + ".join(["params", *row["counts"]])
        hub.append((row["hub_id"], f"{row['hub']:,} ({counted})", f"{ours:,}", 100 * (ours - row["hub"]) / row["hub"],
                    "sources " + row["sources"] + ("" if row.get("exact", True) else "; " + row["why"])))
    lines = _table("Checkpoint bytes as shipped (memory MODEL, no --dtype)", "| model | published | llmcalc | error | source |",
                   shipped)
    lines += _table("Exact totals vs published (rounded) totals", "| model | published | llmcalc (exact) | error | source |",
                    totals)
    lines += _table("Exact totals vs the Hub's safetensors totals (sources in checkpoints.json hub_sources)",
                    "| repository | hub total (llmcalc adds to params) | llmcalc | error | source |", hub)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
