"""Predicted vs published peak GPU memory of fine-tuning and FSDP runs (issue 16 validation table).

Run: python -m benchmarks.validate_finetune   (from the repository root; prints a Markdown table)
Rows and their sources: benchmarks/data/finetune_memory.json. Every row uses the engine's defaults
(fragmentation, CUDA context, FSDP layers in flight...); a row only states its recipe.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.corpus_predict import finetune_peak_gib
from calc.sources.catalog import load_model

DATA = Path(__file__).parent / "data" / "finetune_memory.json"


def rows() -> list[dict]:
    return json.loads(DATA.read_text())["rows"]


def predict(row: dict) -> float:
    """Predicted peak in GiB, on the metric the source reports (reserved: the allocator, no CUDA context)."""
    return finetune_peak_gib(load_model(row["model"]), row["settings"], "reserved" if row["metric"] == "reserved" else "allocated")


def table() -> tuple[list[tuple[dict, float, float]], float]:
    """Measured rows with their signed error in %, and the mean absolute error (OOM rows are bounds, left out)."""
    out = []
    for row in rows():
        if row["metric"] == "oom":
            continue
        pred = predict(row)
        out.append((row, pred, 100 * (pred - row["measured_gib"]) / row["measured_gib"]))
    mean = sum(abs(e) for _r, _p, e in out) / len(out)
    return out, mean


def oom_checks() -> list[tuple[dict, float, bool]]:
    """Runs reported out of memory: consistent when the predicted peak exceeds the card."""
    return [(row, pred, pred > row["measured_gib"]) for row in rows() if row["metric"] == "oom" for pred in [predict(row)]]


def main() -> None:
    results, mean = table()
    print("| id | model | method | GPUs | setting | measured GiB | predicted GiB | error | source |")
    print("|---|---|---|---|---|---:|---:|---:|---|")
    for row, pred, err in results:
        s = row["settings"]
        setting = f"b{s['batch']} s{s['seq']} {s.get('optimizer', 'adamw')} AC {s.get('recompute', 'none')}"
        print(f"| {row['id']} | {row['model']} | {row['method']} | {row['gpu']} | {setting} | {row['measured_gib']:.1f} | "
              f"{pred:.1f} | {err:+.1f}% | {row['source']} |")
    for row, pred, ok in oom_checks():
        print(f"| {row['id']} | {row['model']} | {row['method']} | {row['gpu']} | fp32 AdamW | OOM (> {row['measured_gib']:.1f}) | "
              f"{pred:.1f} | {'consistent' if ok else 'INCONSISTENT'} | {row['source']} |")
    print(f"\nmean absolute error: {mean:.1f}% over {len(results)} measured rows; worst {max(abs(e) for _r, _p, e in results):.1f}%")


if __name__ == "__main__":
    main()
