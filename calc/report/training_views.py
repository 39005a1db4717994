"""Rich views of train-step and train-plan results, and the --plot chart of the plans' step breakdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from calc.report.render import DEVICE_TOTAL, Table, bar, kv_table
from calc.units import gib

TERM_LABELS = {
    "compute_s": "compute", "recompute_s": "recompute", "host_s": "host launch", "tp_comm_s": "TP comm", "ep_comm_s": "EP all-to-all",
    "cp_comm_s": "CP ring", "pp_bubble_s": "PP bubble", "pp_p2p_s": "PP send", "dp_comm_s": "DP grads",
    "zero_gather_s": "ZeRO-3 gather", "optimizer_s": "optimizer", "offload_s": "host offload",
}


def train_step_view(r: Any) -> RenderableType:
    head = kv_table(f"Training step of {r.model} on {r.num_gpus} x {r.gpu} ({r.system})", [
        ("layout", r.layout),
        ("batch", f"global {r.global_batch} x seq {r.seq:,}; {r.num_microbatches} micro-batches of {r.micro_batch}"),
        ("memory per GPU", f"{gib(r.memory_per_gpu_bytes):.2f} of {gib(r.gpu_memory_bytes):.2f} GiB ({DEVICE_TOTAL})  ("
         + ", ".join(f"{k} {gib(v):.2f}" for k, v in r.memory_per_gpu.items()) + ")"),
    ])
    if not r.fits:
        return Group(head, Text(r.verdict, style="bold red"))
    table = Table(title="Step time by term", title_justify="left")
    for col in ("term", "exposed s", "total s", "share of step", ""):
        table.add_column(col, justify="left" if col in ("term", "") else "right")
    for term in r.terms:
        if term.time_s == 0 and term.exposed_s == 0:
            continue
        share = term.exposed_s / r.step_time_s
        table.add_row(TERM_LABELS.get(term.name, term.name), f"{term.exposed_s:.4f}", f"{term.time_s:.4f}", f"{share:.1%}", bar(share, 24))
    table.add_row("step", f"{r.step_time_s:.4f}", "", "100%", "", style="bold")
    return Group(head, table, Text(r.verdict, style="bold"))


def train_plan_view(r: Any) -> RenderableType:
    table = Table(title=f"Fastest layouts of {r.model} on {r.num_gpus:,} x {r.gpu} ({r.system}), global batch {r.global_batch} "
                  f"x {r.seq:,}", title_justify="left",
                  caption=f"{r.layouts_considered} layouts considered, {r.layouts_fitting} fit in memory; with their pipeline "
                  f"interleavings (VPP) {r.layouts_timed} fitting layouts timed; "
                  "compute / bubble / exposed communication as shares of the step")
    for col in ("#", "layout", "step s", "MFU", "GiB", "compute", "bubble", "comm"):
        table.add_column(col, justify="left" if col == "layout" else "right", overflow="fold",
                         min_width=None if col == "layout" else len(col) + 1, no_wrap=col != "layout")
    comm_keys = ("tp_comm_s", "ep_comm_s", "cp_comm_s", "pp_p2p_s", "dp_comm_s", "zero_gather_s")
    for i, p in enumerate(r.plans, 1):
        comm = sum(getattr(p, k) for k in comm_keys)
        compute = (p.compute_s + p.recompute_s) / p.step_time_s
        table.add_row(str(i), _short(p.layout), f"{p.step_time_s:.3f}", f"{p.mfu:.1%}", f"{gib(p.memory_per_gpu_bytes):.1f}",
                      f"{compute:.0%}",
                      f"{p.pp_bubble_s / p.step_time_s:.0%}", f"{comm / p.step_time_s:.0%}")
    return Group(table, Text(r.verdict, style="bold" if r.plans else "bold red"))


def _short(label: str) -> str:
    """'TP8 PP16 DP4 mb1 ZeRO1 rc:selective SP' -> 'TP8 PP16 DP4 b1 Z1 sel SP' for narrow tables."""
    out = label.replace("ZeRO", "Z").replace(" mb", " b").replace("rc:none", "").replace("rc:selective", "sel")
    return " ".join(out.replace("rc:full", "full").split())


def plot_step_breakdown(plans: list[Any], title: str, path: str) -> Path:
    """Stacked bars: each plan's step time split into its exposed terms."""
    from calc.report.plot import pyplot

    target, plt = pyplot(path)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(plans) + 3), 4.8))
    labels = [_short(p.layout) for p in plans]
    bottoms = [0.0] * len(plans)
    for key, label in TERM_LABELS.items():
        values = [getattr(p, key) or 0.0 for p in plans]
        if not any(values):
            continue
        ax.bar(range(len(plans)), values, bottom=bottoms, label=label)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    step = max(1, len(plans) // 12)  # at most 12 labels, rotated so that neighbours never overlap
    ax.set_xticks(range(0, len(plans), step), labels[::step], fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("seconds per step (exposed)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target


def systems_view(systems: Any) -> RenderableType:
    from calc.report.render import Table as FoldingTable  # folds long cells: a node name cut to "workstation-rtx4…" cannot be typed

    table = FoldingTable(title="Node types (system_specs/): per-GPU, per-direction bandwidth", title_justify="left")
    for col in ("name", "GPU", "GPUs/node", "inside a node", "GB/s", "between nodes", "GB/s"):
        table.add_column(col, justify="right" if col in ("GPUs/node", "GB/s") else "left")
    for s in systems:
        bridges = s.bridge_gpus and "nvlink" not in s.intra_node_link.lower()  # a link text naming them says so itself
        inside = s.intra_node_link + (f"; NVLink bridges join {s.bridge_gpus} GPUs at {s.bridge_gb_s:g} GB/s (a group "
                                      f"of {s.bridge_gpus} talks over its bridge)" if bridges else "")
        table.add_row(s.name, s.gpu, str(s.gpus_per_node), inside, f"{s.intra_node_gb_s:g}", s.network, f"{s.inter_node_gb_s:g}")
    return table
