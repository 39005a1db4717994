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
        [--no-block-fp8-floor]

Where the MoE answers part (aiconfigurator 0.12.0, vLLM 0.24 database; `aiconfigurator cli estimate --detail time`
beside calc.serving.step, Qwen3-235B-A22B-FP8, 4,000 / 1,000 tokens):
- Its dense fp8 GEMMs: the FP8 checkpoint's block-scaled GEMMs (qkv, o_proj) are timed from a table whose
  fp8_block points sit at 57-90 us for every shape up to M = 4,096 (H200: [64, 4096] x [4096, 4096] 84 us, where
  the per-tensor fp8 point is 11 us and bf16 12 us): 16.4 of a 40.3 ms TP4 decode step at batch 64 (llmcalc: 1.2).
  DeepGEMM's README times the same kernel family at M = 64, N = 2,112, K = 7,168 in ~9 us (206 TFLOPS, H800), so
  the floor is the collector's per-call cost, not the kernel's; llmcalc does not adopt it. --no-block-fp8-floor
  reruns aiconfigurator with each fp8_block GEMM point replaced by the per-tensor fp8 point of the same shape where
  that is faster (a copy of its systems folder, passed as --systems-paths).
- Its MoE tables under power-law routing (alpha 1.2, models/moe.py `_power_law_alpha`): at EP 8 and 16,384
  tokens 2.87 ms against 1.36 ms balanced (2.1x; EP 4 1.5x; TP-only 1.0-1.3x). llmcalc's busiest EP rank takes
  expert_imbalance = 1.3 x the mean (SGLang's measured balancedness, calc.serving.assumptions); `serve
  --expert-imbalance 2` takes aiconfigurator's view.
- Attention: llmcalc runs it in the KV cache's dtype (bf16 for this checkpoint, vLLM's "auto"): a TP4 4,000-token
  prefill 13.8 ms (aiconfigurator 16.9 ms, bf16 FMHA), a batch-128 decode step 6.4 ms (6.1 ms: it reads an fp8
  KV cache at ~48% of the roofline where llmcalc reads a bf16 one at 90%).
- What is left at the same layout and batch, its fp8_block floor removed: H200 TP4 batch 128, TPOT 51.6 ms
  (llmcalc 44.1); H100 DP8 x EP8 batch 128, 39.4 ms (llmcalc 35.4), the gap in its mix steps (a whole 4,000-token
  prompt per attention rank at once: 839 ms, power-law MoE 583 ms of it; llmcalc's prefill step 539 ms).
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


def without_block_fp8_floor(exe: str, folder: str) -> str:
    """A copy of aiconfigurator's systems folder under ``folder`` whose vLLM GEMM tables time each fp8_block point
    as min(its own, the per-tensor fp8 point of the same M, N, K) (module docstring); returns its path."""
    python = os.path.join(os.path.dirname(exe), "python")
    script = f"""
import glob, os, shutil, aiconfigurator_core, pandas as pd
src = os.path.join(os.path.dirname(aiconfigurator_core.__file__), "systems")
dst = os.path.join({folder!r}, "systems")
shutil.copytree(src, dst)
for path in glob.glob(os.path.join(dst, "data", "*", "gemm", "vllm", "*", "gemm_perf.parquet")):
    d = pd.read_parquet(path)
    fp8 = d[d.gemm_dtype == "fp8"].groupby(["m", "n", "k"]).latency.min()
    block = d.gemm_dtype == "fp8_block"
    per_tensor = [fp8.get(key, float("inf")) for key in zip(d.m[block], d.n[block], d.k[block])]
    d.loc[block, "latency"] = [min(a, b) for a, b in zip(d.latency[block], per_tensor)]
    d.to_parquet(path)
print(dst)
"""
    return subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout.strip()


def aiconfigurator_gpus(exe: str, q: Question, systems: str | None = None) -> tuple[int | None, str]:
    """`aiconfigurator cli recommend`'s answer: the fewest GPUs of aggregated and disaggregated serving
    (``systems``: a systems folder passed as --systems-paths)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [exe, "cli", "recommend", "--model", q.hf_id, "--system", q.system, "--backend", "vllm",
               "--isl", str(PROMPT), "--osl", str(OUTPUT), "--ttft", f"{TTFT_MS:g}", "--tpot", f"{TPOT_MS:g}",
               "--target-request-rate", f"{RATE:g}", "--save-dir", out]
        cmd += ["--systems-paths", systems] if systems else []
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
    parser.add_argument("--no-block-fp8-floor", action="store_true",
                        help="also run aiconfigurator with its fp8_block GEMM points at the per-tensor fp8 kernel's time")
    args = parser.parse_args()
    exe = args.aiconfigurator if args.aiconfigurator and os.path.exists(args.aiconfigurator) else None
    version = aiconfigurator_version(exe) if exe else "not installed"
    print(f"{PROMPT:,} in / {OUTPUT:,} out, TTFT {TTFT_MS / 1e3:g} s, TPOT {TPOT_MS:g} ms, {RATE:g} req/s; "
          f"aiconfigurator {version} (recommend, --backend vllm, offline)")
    with tempfile.TemporaryDirectory() as folder:
        systems = without_block_fp8_floor(exe, folder) if exe and args.no_block_fp8_floor else None
        extra = " | aiconfigurator GPUs, no fp8_block floor | ratio" if systems else ""
        print(f"| model | GPU | llmcalc GPUs | llmcalc layout | aiconfigurator GPUs | aiconfigurator | ratio{extra} |")
        print("|---|---|---:|---|---:|---|---:|" + ("---:|---:|" if systems else ""))
        for q in QUESTIONS:
            ours, layout = llmcalc_gpus(q)
            theirs, detail = aiconfigurator_gpus(exe, q) if exe else (None, "not installed")
            cells = [str(ours or "-"), layout, str(theirs or "-"), detail, _ratio(ours, theirs)]
            if systems:
                floorless = aiconfigurator_gpus(exe, q, systems)[0]
                cells += [str(floorless or "-"), _ratio(ours, floorless)]
            print(f"| {q.model} {q.dtype or ''} | {q.gpu} | " + " | ".join(cells) + " |")


def _ratio(ours: int | None, theirs: int | None) -> str:
    return f"{ours / theirs:.2f}" if ours and theirs else "-"


if __name__ == "__main__":
    main()
