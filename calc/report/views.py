"""Views of a Report: the one-screen rich layout, the terminal memory chart, and Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from calc.report.confidence import HOW_SURE_TITLE, how_sure_text
from calc.report.render import DEVICE_TOTAL, Table, emit_warnings, kv_table, memory_view, size
from calc.serving.plan import launch_cap_note
from calc.units import abbrev, gb, human, plural

# Each category has its own glyph as well as its colour, so the chart reads without colour.
CHART_GLYPHS = {"w": ("█", "blue", "weights"), "k": ("▒", "dark_orange", "KV cache"), "o": ("░", "grey50", "other")}


def fit_line(mem: Any) -> str:
    """The memory page's verdict in one line (markdown and HTML pages alike)."""
    verdict = "fits" if mem.fits else "does not fit"
    return (f"{verdict} on {mem.gpu} ({size(mem.gpu_memory_bytes)}, {DEVICE_TOTAL}); headroom per GPU "
            f"{size(mem.headroom_bytes_per_gpu)}; smallest GPU count that fits{' (the tensors)' if mem.engine_fit else ''}: "
            f"{mem.min_gpus or 'n/a (see assumptions)'}")


def memory_chart(chart: Any, width: int = 48) -> RenderableType:
    """Weights (█ blue), KV cache (▒ orange) and other (░ grey) per workload, against the capacity line '|'."""
    scale = max(chart.capacity_bytes, *(p.weights_bytes + p.kv_cache_bytes + p.other_bytes
                                        for p in chart.vs_concurrency + chart.vs_context)) / width
    cap_col = round(chart.capacity_bytes / scale)

    def line(label: str, p: Any) -> Text:
        cells = ["w"] * round(p.weights_bytes / scale) + ["k"] * round(p.kv_cache_bytes / scale)
        cells += ["o"] * round(p.other_bytes / scale)
        text = Text(f"{label:>14} ")
        for i in range(max(len(cells), cap_col + 1)):
            if i == cap_col:
                text.append("|", style="bold red")
            elif i < len(cells):
                glyph, style, _ = CHART_GLYPHS[cells[i]]
                text.append(glyph, style=style)
            else:
                text.append(" ")
        total = p.weights_bytes + p.kv_cache_bytes + p.other_bytes
        text.append(f" {gb(total):,.0f} GB", style="red" if total > chart.capacity_bytes else "")
        return text

    legend = Text.assemble(*((f"{glyph} {label}  ", style) for glyph, style, label in CHART_GLYPHS.values()))
    rows = [Text("Memory vs concurrent requests", style="bold"),
            Text.assemble(legend, f"| capacity {gb(chart.capacity_bytes):,.0f} GB")]
    rows += [line(f"{p.requests} req", p) for p in chart.vs_concurrency]
    rows.append(Text(f"Memory vs context length at {plural(chart.vs_context[0].requests, 'request')}", style="bold"))
    rows += [line(f"{p.tokens_per_request:,} tok", p) for p in chart.vs_context]
    return Group(*rows)


def report_view(r: Any) -> RenderableType:
    emit_warnings(r)
    p, f = r.params, r.flops
    model = kv_table(f"Sizing report: {r.model} on {r.num_gpus} x {r.gpu} ({r.mode})", [
        ("parameters (exact)", f"{p.total_params:,}" + (f" ({p.active_params:,} active)" if p.active_params != p.total_params else "")),
        ("textbook 12*L*H^2 + V*H", f"{p.textbook_params:,} ({p.textbook_diff_pct:+.2f}%)"),
        ("FLOPs per token", f"inference {human(f.per_token_inference_flops, 'FLOPs')} (2N {human(f.approx_2n, 'FLOPs')}), "
                            f"training {human(f.per_token_training_flops, 'FLOPs')} (6N {human(f.approx_6n, 'FLOPs')})"),
    ])
    parts: list[RenderableType] = [model, memory_view(r.memory)]
    if r.mode == "infer":
        c, lat = r.concurrency, r.latency
        parts.append(kv_table("Serving", [
            ("max concurrency", f"{plural(c.max_concurrency, 'request')} of {plural(c.max_tokens, 'token')}"),
            ("TTFT", f"{lat.ttft_s * 1e3:,.1f} ms ({lat.prefill_bound}-bound)"),
            ("TPOT", f"{lat.tpot_s * 1e3:,.2f} ms ({lat.decode_bound}-bound), {lat.decode_tokens_per_s:,.0f} tokens/s decoding"),
            ("efficiency", lat.efficiency_source),
        ]))
        parts.append(memory_chart(r.chart))
        parts.append(Text(c.verdict, style="bold"))
        if r.serving is not None:
            s = r.serving
            where = f"on up to {plural(s.num_gpus, 'GPU')}" if s.num_gpus else "sized by llmcalc serve"
            parts.append(Text(s.verdict, style="bold"))
            parts.append(kv_table(f"Serving plan {where} (llmcalc serve)", [
                (x.name, f"batch {x.batch}, TTFT {x.ttft_ms:,.0f} ms, TPOT {x.tpot_ms:,.1f} ms, "
                         f"{x.tokens_per_s_per_gpu:,.0f} tok/s/GPU; binds: {x.binding}") for x in r.serving.layouts[:4]]
                + [("launch", note) for note in [launch_cap_note(s)] if note]))
    else:
        t = r.train_time
        parts.append(kv_table("Training", [
            ("tokens", f"{abbrev(t.tokens, digits=4)} (--tokens)"),
            ("MFU" if t.plan else "assumed MFU", f"{t.mfu:.1%}" + (f" ({t.plan})" if t.plan else "")),
            ("days", f"{t.days:,.1f}"), ("GPU-hours", f"{t.gpu_hours:,.0f}"),
            ("cost", f"{t.cost:,.0f}" if t.cost is not None else "give --price"),
        ]))
        parts.append(Text(t.verdict, style="bold"))
    return Group(*parts)


def report_markdown(r: Any) -> str:
    """The report as Markdown with every section's derivation, to paste into a review."""
    emit_warnings(r)
    p, f, mem = r.params, r.flops, r.memory
    out = [f"# Sizing report: {r.model} on {r.num_gpus} x {r.gpu} ({r.mode})", ""]
    out += ["## Model", "", "| component | params |", "|---|---:|"]
    out += [f"| {k} | {v:,} |" for k, v in p.components.items()]
    out += [f"| **total (exact)** | **{p.total_params:,}** |", f"| active per token | {p.active_params:,} |",
            f"| textbook 12*L*H^2 + V*H | {p.textbook_params:,} ({p.textbook_diff_pct:+.2f}%) |", ""]
    out += ["## FLOPs", "", *(f"- {line}" for line in flops_lines(f)), ""]
    out += ["## Memory per GPU", "", "| category | per GPU |", "|---|---:|"]
    out += [f"| {k} | {size(v)} |" for k, v in mem.per_gpu.items()]
    out += [f"| **total** | **{size(mem.per_gpu_bytes)}** |", ""]
    out += ["## Fit", "", f"- {fit_line(mem)}"]
    out += [f"- as {mem.engine_fit['engine']} {mem.engine_fit['version']} launches it: {mem.engine_fit['line']}"] if mem.engine_fit else []
    out += [""]
    if r.mode == "infer":
        c, lat = r.concurrency, r.latency
        out += ["## Concurrency", "", f"- {c.verdict}", "", "| max tokens | max concurrency |", "|---:|---:|"]
        out += [f"| {row.max_tokens:,} | {row.max_concurrency} |" for row in c.table]
        out += ["", "## Latency", "", f"- TTFT {lat.ttft_s * 1e3:,.1f} ms ({lat.prefill_bound}-bound), "
                f"TPOT {lat.tpot_s * 1e3:,.2f} ms ({lat.decode_bound}-bound), {lat.decode_tokens_per_s:,.0f} tokens/s decoding",
                f"- efficiency: {lat.efficiency_source}", ""]
        if r.serving is not None:
            out += ["## Serving plan", "", f"- {r.serving.verdict}", "",
                    "| layout | GPUs | batch | TTFT ms | TPOT ms | tokens/s/GPU | KV tokens | binds |",
                    "|---|---:|---:|---:|---:|---:|---:|---|"]
            out += [f"| {x.name} | {x.gpus_needed} | {x.batch} | {x.ttft_ms:,.0f} | {x.tpot_ms:,.1f} | "
                    f"{x.tokens_per_s_per_gpu:,.0f} | {x.kv_cache_tokens:,} | {x.binding} |" for x in r.serving.layouts]
            out += ["", f"- {note}"] if (note := launch_cap_note(r.serving)) else []
            out.append("")
    else:
        t = r.train_time
        out += ["## Training time", "", f"- {abbrev(t.tokens, digits=4)} tokens (--tokens): {t.verdict}", ""]
    sure = how_sure_text(r)
    if sure:
        out += ["## How sure", "", HOW_SURE_TITLE, ""] + [f"- {line}" for line in sure] + [""]
    out += ["## Assumptions", ""] + [f"- {a}" for a in r.assumptions] + [""]
    out += ["## Derivations", ""]
    for title, lines in report_derivations(r):
        out += [f"### {title}", "", "```text", *lines, "```", ""]
    return "\n".join(out)


def report_derivations(r: Any) -> list[tuple[str, list[str]]]:
    """(section, explain lines) of every part of a report, in page order: what the Markdown and HTML documents
    print under "Derivations"."""
    sections = [("Parameters", r.params.explain), ("FLOPs", r.flops.explain), ("Memory", r.memory.explain)]
    if r.mode == "infer":
        sections += [("Serving plan", r.serving.explain)] if r.serving is not None else []
        return sections + [("Concurrency", r.concurrency.explain), ("Latency", r.latency.explain)]
    return sections + [("Training time", r.train_time.explain)]


def flops_lines(f: Any) -> list[str]:
    """The report's FLOPs facts, exact beside the textbook 2N / 6N (Markdown and HTML)."""
    return [f"forward of B={f.batch} x S={f.seq}: {f.forward_flops:,} ({f.convention})",
            f"per token: inference {f.per_token_inference_flops:,.0f} (2N = {f.approx_2n:,}), "
            f"training {f.per_token_training_flops:,.0f} (6N = {f.approx_6n:,})"]


def compare_view(rows: list[Any], model: str, num_gpus: int | None) -> RenderableType:
    """Each GPU's `serve` pick: layout, GPUs, batch, latency, output tokens/s of the deployment and $/M output tokens."""
    where = f"up to {plural(num_gpus, 'GPU')}" if num_gpus else "the GPUs serve sizes"
    table = Table(title=f"{model}: the layout serve picks on {where} of each kind", title_justify="left")
    at_rate = any(r.cost_per_million_tokens_at_rate is not None for r in rows)
    for col in ("GPU", "peak TFLOPS", "memory", "HBM TB/s", "layout", "GPUs", "batch", "TTFT ms", "TPOT ms", "tokens/s",
                "$/M tokens", *(("$/M at rate",) if at_rate else ())):
        table.add_column(col, justify="left" if col in ("GPU", "layout") else "right")
    money = lambda x: f"{x:,.3f}" if x is not None else "-"  # noqa: E731
    for r in rows:
        layout = r.layout or ("no layout meets the targets" if r.fits else "does not fit" if r.peak_tflops else r.verdict)
        table.add_row(r.gpu, f"{r.peak_tflops:g}" if r.peak_tflops else "-", f"{gb(r.memory_bytes):.0f} GB", f"{r.hbm_tb_s:g}", layout,
                      str(r.gpus) if r.gpus else "-", str(r.batch) if r.batch else "-",
                      f"{r.ttft_s * 1e3:,.1f}" if r.ttft_s else "-", f"{r.tpot_s * 1e3:,.2f}" if r.tpot_s else "-",
                      f"{r.tokens_per_s:,.0f}" if r.tokens_per_s else "-", money(r.cost_per_million_tokens),
                      *((money(r.cost_per_million_tokens_at_rate),) if at_rate else ()))
    if at_rate:  # what each column's money buys
        table.caption = ("$/M tokens: flat out, at the deployment's tokens/s; $/M at rate: the same GPUs over the "
                         "traffic's own output tokens (--rate x --output a second)")
    return table
