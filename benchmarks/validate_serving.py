"""Serving validation: KV-cache capacity against engine startup logs, and TTFT/TPOT/end-to-end
latency against published engine benchmarks. Every latency row is also a corpus row (benchmarks/data/corpus) and is
predicted as the corpus predicts it (benchmarks/corpus_predict.py: its engine, version and knobs, the fitted step
overhead of its engine), its split (fit / held out) printed beside it; the KV rows shared with the corpus are held
to its prediction by tests/test_readme_validation_tables.py. The two never disagree on one measurement.

    python benchmarks/validate_serving.py        # prints two Markdown tables with the mean error

Rows live in benchmarks/data/serving_kv.json and serving_latency.json with their sources.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA.parents[1]))  # the checkout's calc/ when run as a script

from calc.serving.engine_memory import engine_memory  # noqa: E402
from calc.sources.catalog import load_gpu, load_model  # noqa: E402
from calc.specs.serving import EngineSettings  # noqa: E402

GIB = 2**30


def _model(name: str):  # noqa: ANN202
    return load_model(str(DATA / name) if name.startswith("configs/") else name)


def kv_rows() -> list[dict]:
    """Predicted vs logged KV-cache tokens, one dict per row."""
    out = []
    for r in json.loads((DATA / "serving_kv.json").read_text())["rows"]:
        cap = int(r["capacity_gib"] * GIB) if "capacity_gib" in r else None
        mem = engine_memory(_model(r["model"]), load_gpu(r["gpu"]), settings=EngineSettings(**r["engine"]), tp=r["tp"],
                            dtype=r["dtype"], capacity_bytes=cap)
        err = 100 * (mem.kv_cache_tokens - r["measured_tokens"]) / r["measured_tokens"]
        out.append({"id": r["id"], "setting": f"{r['model'].removeprefix('configs/').removesuffix('.json')} on {r['tp']} x "
                    f"{r['gpu']}, {r['engine']['engine']}{'' if r['dtype'] else ', as shipped'}", "capacity_gib": mem.capacity_bytes / GIB,
                    "predicted": mem.kv_cache_tokens, "measured": r["measured_tokens"], "error_pct": err, "source": r["source"]})
    return out


def latency_rows() -> list[dict]:
    """Predicted vs published latency (ms), one dict per row, as the corpus predicts the same measurement (its
    engine's knobs and fitted step overhead; every row here is a corpus row); prefill attention is causal."""
    sys.path.insert(0, str(DATA.parent))
    from corpus_predict import predict_or_reason
    from corpus_schema import corpus_by_id

    corpus = corpus_by_id()
    out = []
    for r in json.loads((DATA / "serving_latency.json").read_text())["rows"]:
        row, split = corpus[r["id"]]
        predicted = predict_or_reason(row)[0] * (1e3 if row.measured.unit == "s" else 1)
        err = 100 * (predicted - r["measured_ms"]) / r["measured_ms"]
        engine = f" {row.stack.name}"
        out.append({"id": r["id"], "setting": f"{r['model']} {r['tp']} x {r['gpu']} {r['dtype']}{engine} B={r['batch']} "
                    f"P={r['prompt']} T={r['output']}", "split": split.replace("_", "-"), "metric": r["metric"], "predicted": predicted,
                    "measured": r["measured_ms"], "error_pct": err, "source": r["source"].split(",")[0]})
    return out


def mean_abs_error(rows: list[dict]) -> float:
    return statistics.fmean(abs(r["error_pct"]) for r in rows)


def markdown() -> str:
    kv, lat = kv_rows(), latency_rows()
    lines = ["### KV-cache tokens vs engine logs", "",
             "| id | setting | device GiB | predicted | logged | error | source |", "|---|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['id']} | {r['setting']} | {r['capacity_gib']:.2f} | {r['predicted']:,} | {r['measured']:,} | "
              f"{r['error_pct']:+.1f}% | {r['source']} |" for r in kv]
    within = sum(abs(r["error_pct"]) <= 5 for r in kv)
    lines += ["", f"Mean |error| {mean_abs_error(kv):.1f}% over {len(kv)} rows; median "
              f"{statistics.median(abs(r['error_pct']) for r in kv):.1f}%; {within}/{len(kv)} within 5%.", "",
              "### Latency vs published engine benchmarks", "",
              "| id | setting | split | metric | predicted ms | published ms | error | source |",
              "|---|---|---|---|---:|---:|---:|---|"]
    lines += [f"| {r['id']} | {r['setting']} | {r['split']} | {r['metric']} | {r['predicted']:,.1f} | {r['measured']:,.1f} | "
              f"{r['error_pct']:+.1f}% | {r['source']} |" for r in lat]
    within = sum(abs(r["error_pct"]) <= 25 for r in lat)
    lines += ["", f"Mean |error| {mean_abs_error(lat):.1f}% over {len(lat)} rows; median "
              f"{statistics.median(abs(r['error_pct']) for r in lat):.1f}%; {within}/{len(lat)} within 25%; "
              f"median ratio predicted/published {statistics.median(r['predicted'] / r['measured'] for r in lat):.2f}."]
    parts = [(name, [r for r in lat if r["split"] == name]) for name in ("fit", "held-out")]
    lines += ["By split: " + "; ".join(f"{name} {len(rows)} rows, mean |error| {mean_abs_error(rows):.1f}%"
                                       for name, rows in parts if rows) + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
