"""`report --plot FILE.png|svg`: the memory chart drawn with matplotlib (optional extra `plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calc.errors import LLMCalcError
from calc.units import plural


def pyplot(path: str):  # noqa: ANN201
    """(target path, matplotlib.pyplot) for a --plot FILE.png|svg; matplotlib is imported only here."""
    target = Path(path)
    if target.suffix.lower() not in (".png", ".svg"):
        raise LLMCalcError("--plot", f"write a .png or .svg file, got {path!r}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise LLMCalcError("--plot", "matplotlib is not installed; run: pip install 'llmcalc[plot]'") from None
    return target, plt


def plot_serve_frontier(plan: Any, path: str) -> Path:
    """`serve --plot`: output tokens/s per GPU vs TPOT for each layout as the batch grows, the TPOT
    target as a dashed line."""
    target, plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for x in plan.layouts[:8]:
        ax.plot([p.tpot_ms for p in x.frontier], [p.tokens_per_s_per_gpu for p in x.frontier], marker="o",
                label=x.name)
    if plan.target_tpot_ms:
        ax.axvline(plan.target_tpot_ms, color="red", linestyle="--", label="TPOT target")
    ax.set_xlabel("TPOT (ms per output token)")
    ax.set_ylabel("output tokens/s per GPU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"{plan.model} on {plan.gpu}: throughput-latency frontier (P={plan.prompt}, O={plan.output})")
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def plot_memory_chart(chart: Any, title: str, path: str) -> Path:
    """Two panels: memory vs concurrent requests and vs context length; weights flat, KV growing,
    the capacity of all GPUs as a red line."""
    target, plt = pyplot(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, points, xkey, xlabel in (
        (axes[0], chart.vs_concurrency, "requests", "concurrent requests"),
        (axes[1], chart.vs_context, "tokens_per_request", f"tokens per request ({plural(chart.vs_context[0].requests, 'request')})"),
    ):
        x = [getattr(p, xkey) for p in points]
        weights = [p.weights_bytes / 1e9 for p in points]
        kv = [p.kv_cache_bytes / 1e9 for p in points]
        other = [p.other_bytes / 1e9 for p in points]
        ax.stackplot(x, weights, kv, other, labels=["weights", "KV cache", "activations + reserve"],
                     colors=["#1f77b4", "#ff7f0e", "#9e9e9e"], alpha=0.9)
        ax.axhline(chart.capacity_bytes / 1e9, color="red", linewidth=2, label="GPU capacity")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("GB (1e9 bytes)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
