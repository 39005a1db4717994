"""llmcalc `serve` beside NVIDIA aiconfigurator's `recommend` on the four SLO questions of issue 24.

Each question: 4,000 prompt / 1,000 output tokens, TTFT <= 2 s, TPOT <= 50 ms, 10 requests/s; the fewest GPUs
that carry it, for a dense model (Llama-3.1-70B, bf16) and an MoE model (Qwen3-235B-A22B, FP8 checkpoint), on
H100 SXM and H200 SXM. llmcalc answers through calc.serving.plan.serve_plan (what `llmcalc serve ... --rate`
prints); aiconfigurator (https://github.com/ai-dynamo/aiconfigurator, its silicon-measured performance
database, run offline on the CPU) through `aiconfigurator cli recommend --backend vllm`, whose log names the
GPUs needed by aggregated and by disaggregated serving.

aiconfigurator is not a dependency of llmcalc: without its command on PATH (or --aiconfigurator PATH) its
column reads "not installed". Usage:

    PYTHONPATH=$PWD python benchmarks/aiconfigurator_side_by_side.py [--aiconfigurator /tmp/aic/bin/aiconfigurator]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Question:
    model: str  # llmcalc catalog name
    hf_id: str  # what aiconfigurator reads (its bundled config)
    dtype: str | None  # llmcalc --dtype (None: the checkpoint as shipped)
    gpu: str  # llmcalc GPU
    system: str  # aiconfigurator --system


PROMPT, OUTPUT, TTFT_MS, TPOT_MS, RATE = 4000, 1000, 2000.0, 50.0, 10.0
QUESTIONS = [
    Question("llama3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "bf16", "h100", "h100_sxm"),
    Question("llama3.1-70b", "meta-llama/Meta-Llama-3.1-70B", "bf16", "h200", "h200_sxm"),
    Question("qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B-FP8", "fp8", "h100", "h100_sxm"),
    Question("qwen3-235b-a22b", "Qwen/Qwen3-235B-A22B-FP8", "fp8", "h200", "h200_sxm"),
]


def llmcalc_gpus(q: Question) -> tuple[int | None, str]:
    """The fewest GPUs `llmcalc serve` finds for the question, and its layout."""
    from calc.serving.plan import serve_plan
    from calc.sources.catalog import load_gpu, load_model

    plan = serve_plan(load_model(q.model), load_gpu(q.gpu), prompt=PROMPT, output=OUTPUT, ttft_ms=TTFT_MS,
                      tpot_ms=TPOT_MS, rate=RATE, dtype=q.dtype)
    best = plan.best
    return (best.gpus_needed, f"{best.replicas} x {best.name}, batch {best.batch}") if best else (None, plan.verdict)


def aiconfigurator_gpus(exe: str, q: Question) -> tuple[int | None, str]:
    """`aiconfigurator cli recommend`'s answer: the fewest GPUs of aggregated and disaggregated serving."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [exe, "cli", "recommend", "--model", q.hf_id, "--system", q.system, "--backend", "vllm",
               "--isl", str(PROMPT), "--osl", str(OUTPUT), "--ttft", f"{TTFT_MS:g}", "--tpot", f"{TPOT_MS:g}",
               "--target-request-rate", f"{RATE:g}", "--save-dir", out]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    log = run.stdout + run.stderr
    found = {mode: int(n) for mode, n in re.findall(r"(agg|disagg) GPUs needed: (\d+)", log)}
    if run.returncode != 0 or not found:
        error = next((line.strip() for line in reversed(log.splitlines()) if "rror" in line), f"exit {run.returncode}")
        return None, f"error: {error[:160]}"
    mode = min(found, key=found.__getitem__)
    return found[mode], ", ".join(f"{k} {v}" for k, v in sorted(found.items())) + f" (best: {mode})"


def aiconfigurator_version(exe: str) -> str:
    from importlib import metadata

    try:
        return metadata.version("aiconfigurator")
    except metadata.PackageNotFoundError:  # installed in another environment: ask its own interpreter
        python = os.path.join(os.path.dirname(exe), "python")
        run = subprocess.run([python, "-c", "from importlib import metadata; print(metadata.version('aiconfigurator'))"],
                             capture_output=True, text=True)
        return run.stdout.strip() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aiconfigurator", default=shutil.which("aiconfigurator"),
                        help="the aiconfigurator command (default: the one on PATH; absent: its column is skipped)")
    args = parser.parse_args()
    exe = args.aiconfigurator if args.aiconfigurator and os.path.exists(args.aiconfigurator) else None
    version = aiconfigurator_version(exe) if exe else "not installed"
    print(f"{PROMPT:,} in / {OUTPUT:,} out, TTFT {TTFT_MS / 1e3:g} s, TPOT {TPOT_MS:g} ms, {RATE:g} req/s; "
          f"aiconfigurator {version} (recommend, --backend vllm, offline)")
    print("| model | GPU | llmcalc GPUs | llmcalc layout | aiconfigurator GPUs | aiconfigurator | ratio |")
    print("|---|---|---:|---|---:|---|---:|")
    for q in QUESTIONS:
        ours, layout = llmcalc_gpus(q)
        theirs, detail = aiconfigurator_gpus(exe, q) if exe else (None, "not installed")
        ratio = f"{ours / theirs:.2f}" if ours and theirs else "-"
        print(f"| {q.model} {q.dtype or ''} | {q.gpu} | {ours or '-'} | {layout} | {theirs or '-'} | {detail} | {ratio} |")


if __name__ == "__main__":
    main()
