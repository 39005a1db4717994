"""The fine-tuning memory view: per-GPU buffers, the fit verdict (and what fits instead), the largest
batch x sequence that fits, and the assumptions."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType

from calc.report.render import DEVICE_TOTAL, Table, kv_table, per_gpu_table, size
from calc.units import gib, plural


def finetune_view(r: Any) -> RenderableType:
    table = per_gpu_table(r, f"Fine-tuning memory of {r.model} per GPU ({r.method}; TP {r.tp}, PP {r.pp}, DP {r.dp}, CP {r.cp}, "
                          f"ZeRO {r.zero}; {plural(r.num_gpus, 'GPU')})", "buffer", "peak per GPU", size(r.per_gpu_bytes))
    rows = [
        ("trainable parameters", f"{r.trainable_params:,} of {r.total_params:,} ({100 * r.trainable_params / r.total_params:.3f}%)"),
        ("allocated / reserved peak", f"{gib(r.allocated_peak_bytes):,.2f} / {gib(r.reserved_peak_bytes):,.2f} GiB"),
        ("saved activations + logits (per-tensor)", size(r.activation_bytes)),
        ("textbook block activations (Korthikanti)", size(r.textbook_activation_bytes)),
    ]
    if r.paged_optimizer_bytes:
        rows.append(("paged optimizer (unified memory)", size(r.paged_optimizer_bytes)))
    if r.cpu_offload_bytes:
        rows.append(("offloaded to CPU", size(r.cpu_offload_bytes)))
    if r.gpu:
        verdict = (f"fits: {size(r.headroom_bytes_per_gpu)} to spare per GPU" if r.fits
                   else f"does not fit: short by {size(-r.headroom_bytes_per_gpu)} per GPU")
        rows.append((f"on {r.gpu} ({size(r.gpu_memory_bytes)}, {DEVICE_TOTAL})", verdict))
        if not r.fits:
            rows.append(("smallest GPU count (ZeRO-3)", r.min_gpus or "none up to 512"))
            rows.append(("a change that fits on this count", ", ".join(r.fits_with) or "none of ZeRO-3, full recompute, offload, qlora"))
    parts: list[RenderableType] = [table, kv_table("Totals", rows)]
    if r.fit_table and not any(row.max_batch for row in r.fit_table):
        parts.append(kv_table("Largest micro-batch that fits", [(r.gpu, f"none, even at {r.fit_table[0].seq:,} tokens")]))
    elif r.fit_table:
        fit = Table(title=f"Largest micro-batch that fits on one {r.gpu}", title_justify="left")
        for col in ("sequence", "max batch", "peak per GPU"):
            fit.add_column(col, justify="right")
        for row in r.fit_table:
            fit.add_row(f"{row.seq:,}", str(row.max_batch) if row.max_batch else "none",
                        size(row.per_gpu_bytes) if row.per_gpu_bytes else "-")
        parts.append(fit)
    parts.append(kv_table("Assumptions", [("-", a) for a in r.assumptions]))
    return Group(*parts)


def finetune_page(params: Any, r: Any) -> RenderableType:
    """`report --mode finetune`: the model's parameters and trainable share above the memory view."""
    head = kv_table(f"Fine-tuning report: {r.model} on {r.num_gpus} x {r.gpu} ({r.method})", [
        ("parameters (exact)", f"{params.total_params:,}"),
        ("trainable", f"{r.trainable_params:,} ({100 * r.trainable_params / r.total_params:.3f}%)"),
        ("workload", f"micro-batch {r.batch} x {r.seq:,} tokens, recompute {r.recompute}, optimizer {r.optimizer}"),
    ])
    return Group(head, finetune_view(r))


def fit_verdict(r: Any) -> str:
    """The fine-tuning page's fit line (Markdown and HTML alike)."""
    return (f"fits on {r.gpu} with {size(r.headroom_bytes_per_gpu)} to spare" if r.fits else
            f"does not fit on {r.gpu}: short by {size(-r.headroom_bytes_per_gpu)}; "
            f"smallest GPU count {r.min_gpus or 'none up to 512'}"
            + (f"; fits with {', '.join(r.fits_with)}" if r.fits_with else ""))


def finetune_html(params: Any, r: Any) -> str:
    """The fine-tuning report as one self-contained HTML page: finetune_markdown's content, its tables as tables."""
    from html import escape

    from calc.report.html import CSS, _table

    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>"

    title = f"Fine-tuning report: {r.model} on {r.num_gpus} x {r.gpu} ({r.method})"
    body = [f"<h1>{escape(title)}</h1>",
            items([f"parameters (exact): {params.total_params:,}; trainable: {r.trainable_params:,}",
                   f"workload: micro-batch {r.batch} x {r.seq:,} tokens, recompute {r.recompute}, optimizer "
                   f"{r.optimizer}, precision {r.precision}"]),
            "<h2>Memory per GPU</h2>",
            _table(["buffer", "per GPU"], [[k, size(v)] for k, v in r.per_gpu.items()] + [["peak", size(r.per_gpu_bytes)]])]
    if r.gpu:
        body += ["<h2>Fit</h2>", items([fit_verdict(r)])]
    if r.fit_table:
        body.append(_table(["sequence", "max micro-batch"], [[f"{row.seq:,}", row.max_batch] for row in r.fit_table]))
    body += ["<h2>How it was computed</h2>", items(r.explain), "<h2>Assumptions</h2>", items(r.assumptions)]
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>llmcalc {escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")


def finetune_markdown(params: Any, r: Any) -> str:
    """The fine-tuning report as Markdown, every buffer with its formula."""
    out = [f"# Fine-tuning report: {r.model} on {r.num_gpus} x {r.gpu} ({r.method})", "",
           f"- parameters (exact): {params.total_params:,}; trainable: {r.trainable_params:,}",
           f"- workload: micro-batch {r.batch} x {r.seq:,} tokens, recompute {r.recompute}, optimizer {r.optimizer}, "
           f"precision {r.precision}", "", "## Memory per GPU", "", "| buffer | per GPU |", "|---|---:|"]
    out += [f"| {k} | {size(v)} |" for k, v in r.per_gpu.items()]
    out += [f"| **peak** | **{size(r.per_gpu_bytes)}** |", ""]
    if r.gpu:
        out += ["## Fit", "", f"- {fit_verdict(r)}", ""]
    if r.fit_table:
        out += ["| sequence | max micro-batch |", "|---:|---:|"] + [f"| {row.seq:,} | {row.max_batch} |" for row in r.fit_table] + [""]
    out += ["## How it was computed", ""] + [f"- {line}" for line in r.explain] + ["", "## Assumptions", ""]
    out += [f"- {a}" for a in r.assumptions]
    return "\n".join(out)
