"""Validate the training step-time model against published Megatron runs; print a Markdown table.

    python benchmarks/validate_training.py          # the tables
    python benchmarks/validate_training.py --fit    # re-derive the Ampere GEMM plateau (one value, all rows)

Rows (benchmarks/data/training_megatron.json, each with its source): Narayanan et al. 2021 Table 1
(GPT 1.7B-1T on 32-3,072 A100s, full recomputation; their FLOP/s include recomputation, so the
prediction compared is HFU) and Korthikanti et al. 2022 Table 5 (22B-1T, selective recomputation +
sequence parallelism, and the full-recomputation baseline; MFU). ONE set of default efficiencies
for every row (calc.hardware.efficiency, calc.training.cost); no per-row tuning. Each row's memory per GPU
(per-tensor activations, the recipe's dropout masks, ZeRO 0 as Megatron ran then) is checked against the
A100 80GB it ran on: a published run the memory model refuses is reported as a miss.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_predict import megatron_flops  # noqa: E402

from calc.sources.catalog import load_gpu, load_system  # noqa: E402
from calc.sources.hf import model_from_hf_config  # noqa: E402
from calc.training.cost import Efficiencies, ModelCost  # noqa: E402
from calc.training.layout import Layout, check_training_layout  # noqa: E402
from calc.training.step import memory_per_gpu, step_terms  # noqa: E402
from calc.units import GIB  # noqa: E402

DATA = Path(__file__).resolve().parent / "data" / "training_megatron.json"
PEAK_TFLOPS = 312.0  # A100 dense fp16/bf16, the peak both papers divide by


def gpt_model(row: dict):
    """The papers' GPT: learned positions, LayerNorm, biases, 4H MLP, vocabulary 51,200, tied embeddings."""
    h = row["hidden"]
    config = {"model_type": "gpt2", "n_embd": h, "n_layer": row["layers"], "n_head": row["heads"], "vocab_size": row["vocab"],
              "n_positions": row["seq"], "n_inner": 4 * h, "tie_word_embeddings": True}
    return model_from_hf_config(config, where=row["id"], field="row")


def paper_flops(row: dict) -> float:
    """The papers' own FLOP count per iteration (corpus_predict.megatron_flops): HFU rows count the recomputation."""
    return megatron_flops(row["global_batch"], row["seq"], row["layers"], row["hidden"], row["vocab"], row["metric"] == "hfu")


def predict(row: dict, system_name: str, flash: bool, dropout: float = 0.0) -> dict:
    gpu = load_gpu("a100-80g")
    # Megatron-LM of 2021-22 ran its tensor-parallel collectives exposed (no --tp-comm-overlap before Transformer
    # Engine's userbuffers; the corpus rows of these tables say so too, tp_comm_overlap false)
    eff = Efficiencies(flash=flash, dropout=dropout, tp_overlap=0.0)
    cost = ModelCost(gpt_model(row), gpu, load_system(system_name), row["seq"], "bf16", eff)
    layout = Layout(tp=row["tp"], pp=row["pp"], dp=row["dp"], cp=row["cp"], vpp=row["vpp"], sp=row["sp"],
                    micro_batch=row["micro_batch"], recompute=row["recompute"])
    micro = check_training_layout(cost.m, layout, row["num_gpus"], row["global_batch"], row["seq"])
    terms = step_terms(cost, layout, row["global_batch"], micro)
    memory = sum(memory_per_gpu(cost, layout, micro).values())
    denominator = row["num_gpus"] * PEAK_TFLOPS * 1e12
    predicted = paper_flops(row) / (terms.step_time_s * denominator)
    measured = row["measured"]
    if measured is None:  # a published iteration time: the paper's FLOPs over it
        measured = paper_flops(row) / (row["measured_step_time_s"] * denominator)
    return {"id": row["id"], "paper": row["paper"], "metric": row["metric"], "measured": measured, "predicted": predicted,
            "error": (predicted - measured) / measured, "step_time_s": terms.step_time_s,
            "measured_step_time_s": row.get("measured_step_time_s"), "layout": layout.label(), "source": row["source"],
            "setting": f"{row['num_gpus']} x A100, global batch {row['global_batch']} x {row['seq']}",
            "memory_gib": memory / GIB, "fits": memory <= gpu.memory_bytes}


def validate() -> list[dict]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    return [predict(row, data["system"], data["flash_attention"], data["dropout"]) for row in data["rows"]]


def held_out() -> list[dict]:
    """Modern FSDP runs (torchtitan, llm-foundry): predicted MFU of the published layout vs the published MFU, each
    predicted as the corpus predicts the same run (every row here is a corpus row; benchmarks/corpus_predict.py: its
    stack, the fitted stack factor, the stack's knobs), read as an MFU (MFU and throughput scale alike at a fixed
    model, GPU and sequence), so the two tables never disagree on one run; its split is printed."""
    from corpus_predict import predict_or_reason
    from corpus_schema import corpus_by_id

    corpus = corpus_by_id()
    data = json.loads(DATA.read_text(encoding="utf-8"))
    out = []
    for row in data["held_out"]:
        layout = Layout(dp=row["num_gpus"], micro_batch=row["micro_batch"], zero=row["zero"], recompute=row["recompute"])
        entry, split = corpus[row["id"]]
        ratio = predict_or_reason(entry)[0] / entry.measured.value
        predicted = row["measured"] * (1 / ratio if entry.kind == "training_step_time" else ratio)
        out.append({"id": row["id"], "layout": layout.label(), "measured": row["measured"], "predicted": predicted,
                    "error": (predicted - row["measured"]) / row["measured"], "gpu": row["gpu"], "source": row["source"],
                    "split": split.replace("_", "-"), "stack": entry.stack.name})
    return out


def markdown(results: list[dict]) -> str:
    lines = ["| row | setting | layout | metric | measured | predicted | error | step time (measured / predicted) | GiB per GPU (of 80) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        measured_t = f"{r['measured_step_time_s']:.2f}" if r["measured_step_time_s"] else "-"
        memory = f"{r['memory_gib']:.1f}" + ("" if r["fits"] else " (refused)")
        lines.append(f"| {r['id']} | {r['setting']} | {r['layout']} | {r['metric'].upper()} | {r['measured']:.1%} | {r['predicted']:.1%} | "
                     f"{r['error']:+.1%} | {measured_t} / {r['step_time_s']:.2f} s | {memory} |")
    errors = [abs(r["error"]) for r in results]
    lines.append("")
    lines.append(f"Mean absolute error {sum(errors) / len(errors):.1%} over {len(errors)} rows; worst {max(errors):.1%}. "
                 "Error = (predicted - measured) / measured.")
    refused = [r["id"] for r in results if not r["fits"]]
    lines.append(f"Memory: {len(results) - len(refused)} of {len(results)} published layouts fit on the A100 80GB"
                 + (f"; refused: {', '.join(refused)}" if refused else "") + ".")
    return "\n".join(lines)


def held_out_markdown(results: list[dict]) -> str:
    lines = ["| row (not fitted by `--fit`) | GPU | stack | layout | corpus split | measured MFU | predicted MFU | error |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['id']} | {r['gpu']} | {r['stack']} | {r['layout']} | {r['split']} | {r['measured']:.1%} | "
                     f"{r['predicted']:.1%} | {r['error']:+.1%} |")
    errors = [abs(r["error"]) for r in results]
    lines += ["", f"Mean absolute error {sum(errors) / len(errors):.1%} over {len(errors)} rows; worst {max(errors):.1%} "
              "(each row as the corpus predicts it; rows of its fit split are in-sample there)."]
    return "\n".join(lines)


def fit_plateau(lo: float = 0.60, hi: float = 0.90, step: float = 0.01) -> list[tuple[float, float, float]]:
    """(plateau, MAE, worst) for each Ampere GEMM plateau on the grid: the one free parameter of the fit."""
    import calc.hardware.efficiency as efficiency

    saved = efficiency.GEMM_PLATEAU["Ampere"]
    out = []
    try:
        value = lo
        while value <= hi + 1e-9:
            efficiency.GEMM_PLATEAU["Ampere"] = round(value, 4)
            errors = [abs(r["error"]) for r in validate()]
            out.append((round(value, 4), sum(errors) / len(errors), max(errors)))
            value += step
    finally:
        efficiency.GEMM_PLATEAU["Ampere"] = saved
    return out


if __name__ == "__main__":
    if "--fit" in sys.argv:
        grid = fit_plateau()
        for plateau, mae, worst in grid:
            print(f"Ampere GEMM plateau {plateau:.2f}: MAE {mae:.2%}, worst {worst:.2%}")
        best = min(grid, key=lambda row: row[1])
        print(f"\nbest: {best[0]:.2f} (MAE {best[1]:.2%}, worst {best[2]:.2%})")
    else:
        print(markdown(validate()))
        print()
        print(held_out_markdown(held_out()))
