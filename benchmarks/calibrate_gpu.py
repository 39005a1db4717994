"""Calibrate and validate llmcalc on this machine's GPU; print the README tables in Markdown.

    python benchmarks/calibrate_gpu.py [--models llama2-7b,llama3-8b,mistral-7b] [--out calibrations]

For each model: `bench MODEL --sizes full --save calibrations/<date>-<gpu>-<model>.yaml` (the model's
own ops at real shapes), then `validate MODEL --calibration <that file>` (4 real decoder layers in
bf16, prefill of 2048 tokens and one decode step), and the bf16 8192-cube GEMM against the derived
dense peak. ONE set of default efficiencies for every row (llmcalc's defaults); the calibrated
column uses each model's own calibration file. Without a GPU it runs the CPU path on small models
(gpt2 and a 4-layer tiny Llama), labelled CPU figures, and writes nothing under calibrations/
unless --out is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY_LLAMA = {"name": "tiny-llama", "num_layers": 4, "hidden_size": 512, "num_heads": 8, "num_kv_heads": 4,
              "intermediate_size": 1376, "vocab_size": 8000, "max_position_embeddings": 2048,
              "tied_embeddings": False, "gated_mlp": True}


def main() -> None:
    import torch

    from calc.hardware.bench import device_info, run_bench
    from calc.hardware.bench_model import run_model_bench
    from calc.hardware.calibration import save_calibration
    from calc.hardware.model_ops import SIZE_PLANS
    from calc.hardware.validate import run_validate
    from calc.serving.phases import predict_phases
    from calc.sources.catalog import load_model
    from calc.specs import ModelSpec

    info = device_info(torch)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="llama2-7b,llama3-8b,mistral-7b" if info.is_gpu else "gpt2,tiny-llama")
    parser.add_argument("--out", default=None, help="folder for the calibration files (default: calibrations/ on a GPU)")
    args = parser.parse_args()
    out = Path(args.out) if args.out else (ROOT / "calibrations" if info.is_gpu else Path(tempfile.mkdtemp()))
    out.mkdir(parents=True, exist_ok=True)
    label = f"{info.device_name} ({'GPU' if info.is_gpu else 'CPU figures: no GPU was found'})"
    print(f"# llmcalc calibration on {label}, torch {torch.__version__}, CUDA {torch.version.cuda}, {dt.date.today()}\n")

    if info.is_gpu:
        from calc.hardware.peaks import derived_peak_tflops
        from calc.sources.catalog import load_gpu

        square = run_bench("bf16", [8192], repeats=20)
        derived = derived_peak_tflops(load_gpu(info.gpu)).get("bf16") if info.gpu else None
        rate = square.gemms[0].achieved_tflops
        share = f"{rate / derived:.1%} of the derived dense peak {derived:.1f}" if derived else "no derived peak"
        print(f"bf16 8192^3 GEMM: {rate:.1f} TFLOPS = {share}\n")

    rows, errors, cal_errors = [], [], []
    plan = SIZE_PLANS["full" if info.is_gpu else "small"]
    for name in args.models.split(","):
        m = ModelSpec.model_validate(TINY_LLAMA) if name == "tiny-llama" else load_model(name)
        bench = run_model_bench(m, plan)
        path = out / f"{dt.date.today()}-{bench.gpu}-{m.name}.yaml"
        save_calibration(bench.calibration, str(path))
        result = run_validate(m, None, calibration_path=str(path), predict=predict_phases)
        for p in result.phases:
            errors.append(abs(p.error))
            cal_errors.append(abs(p.calibrated_error or 0.0))
            rows.append(f"| {m.name} ({result.layers} of {result.model_layers} layers) | {p.name} | "
                        f"{p.measured_s * 1e3:.2f} | {p.predicted_s * 1e3:.2f} | {p.error:+.0%} | "
                        f"{p.calibrated_predicted_s * 1e3:.2f} | {p.calibrated_error:+.0%} |")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)
    print(f"validate: B=1, prompt {result.prompt}, {result.dtype}; error = (predicted - measured) / measured\n")
    print("| model | phase | measured ms | predicted ms (defaults) | error | predicted ms (calibrated) | error |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"| **mean abs error** | | | | **{sum(errors) / len(errors):.0%}** | | **{sum(cal_errors) / len(cal_errors):.0%}** |")


if __name__ == "__main__":
    main()
