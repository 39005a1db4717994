"""`report --format html`: one self-contained page (inline CSS and SVG, no scripts, no network) with the
report's tables and two charts: memory vs concurrent requests, and the serving throughput-latency
frontier. Built from the same Report object as the table, Markdown and JSON outputs."""

from __future__ import annotations

from html import escape
from typing import Any

from calc.report.confidence import HOW_SURE_TITLE, how_sure_text
from calc.report.views import fit_line, flops_lines, report_derivations
from calc.serving.plan import launch_cap_note
from calc.units import gb

W, H, PAD = 560, 260, 48
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
CSS = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
       "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}td:first-child{text-align:left}"
       "svg{border:1px solid #ddd;margin:.5em 1em 1em 0}code{white-space:pre-wrap}")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _axes(title: str, xlabel: str, ylabel: str, xmax: float, ymax: float) -> list[str]:
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="black"/>',
           f'<line x1="{PAD}" y1="{H - PAD}" x2="{PAD}" y2="26" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>',
           f'<text x="12" y="{H / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" text-anchor="middle">{escape(ylabel)}</text>']
    for i in range(5):
        y = H - PAD - i * (H - PAD - 26) / 4
        out.append(f'<text x="{PAD - 4}" y="{y + 4:.0f}" text-anchor="end" font-size="10">{ymax * i / 4:,.0f}</text>')
        x = PAD + i * (W - 10 - PAD) / 4
        out.append(f'<text x="{x:.0f}" y="{H - PAD + 14}" text-anchor="middle" font-size="10">{xmax * i / 4:,.0f}</text>')
    return out


def _xy(x: float, y: float, xmax: float, ymax: float) -> tuple[float, float]:
    return PAD + x / xmax * (W - 10 - PAD), H - PAD - y / ymax * (H - PAD - 26)


def memory_svg(chart: Any) -> str:
    """Stacked bars (weights, KV cache, the rest) per request count, the capacity as a red line, and a legend."""
    points = chart.vs_concurrency
    ymax = max(chart.capacity_bytes, *(p.weights_bytes + p.kv_cache_bytes + p.other_bytes for p in points)) / 1e9 * 1.05
    xmax = max(p.requests for p in points) * 1.05
    out = _axes("Memory vs concurrent requests", "concurrent requests", "GB", xmax, ymax)
    bar = (W - PAD) / (len(points) * 2.5)
    parts = (("weights", COLORS[0]), ("KV cache", COLORS[1]), ("activations + reserve", "#9e9e9e"))
    for i, (label, color) in enumerate(parts):  # the legend, top left inside the axes
        out.append(f'<rect x="{PAD + 8}" y="{30 + 14 * i}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{PAD + 22}" y="{39 + 14 * i}" font-size="10">{label}</text>')
    for p in points:
        base = 0.0
        for value, (_, color) in zip((p.weights_bytes, p.kv_cache_bytes, p.other_bytes), parts, strict=True):
            x, y_top = _xy(p.requests, base + value / 1e9, xmax, ymax)
            _, y_base = _xy(p.requests, base, xmax, ymax)
            out.append(f'<rect x="{x - bar / 2:.1f}" y="{y_top:.1f}" width="{bar:.1f}" height="{y_base - y_top:.1f}" fill="{color}"/>')
            base += value / 1e9
    _, y = _xy(0, chart.capacity_bytes / 1e9, xmax, ymax)
    out.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - 10}" y2="{y:.1f}" stroke="red" stroke-width="2"/>')
    out.append(f'<text x="{W - 12}" y="{y - 4:.1f}" text-anchor="end" font-size="10" fill="red">capacity</text>')
    return "".join(out) + "</svg>"


def frontier_svg(plan: Any) -> str:
    """Output tokens/s per GPU vs TPOT for the best layouts as the batch grows."""
    layouts = plan.layouts[:6]
    pts = [p for x in layouts for p in x.frontier]
    xmax, ymax = max(p.tpot_ms for p in pts) * 1.05, max(p.tokens_per_s_per_gpu for p in pts) * 1.05
    out = _axes("Throughput-latency frontier", "TPOT (ms)", "tokens/s per GPU", xmax, ymax)
    for i, x in enumerate(layouts):
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in (_xy(p.tpot_ms, p.tokens_per_s_per_gpu, xmax, ymax) for p in x.frontier))
        color = COLORS[i % len(COLORS)]
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{W - 12}" y="{34 + 13 * i}" text-anchor="end" font-size="10" fill="{color}">{escape(x.name)}</text>')
    return "".join(out) + "</svg>"


def report_html(r: Any) -> str:
    """The whole report as one HTML page."""
    p, mem = r.params, r.memory
    body = [f"<h1>Sizing report: {escape(r.model)} on {r.num_gpus} x {escape(r.gpu)} ({escape(r.mode)})</h1>",
            "<h2>Model</h2>", _table(["component", "params"], [[k, f"{v:,}"] for k, v in p.components.items()]
                                     + [["total (exact)", f"{p.total_params:,}"], ["active per token", f"{p.active_params:,}"],
                                        ["textbook 12*L*H^2 + V*H", f"{p.textbook_params:,} ({p.textbook_diff_pct:+.2f}%)"]]),
            "<h2>FLOPs</h2>", "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in flops_lines(r.flops)) + "</ul>",
            "<h2>Memory per GPU</h2>", _table(["category", "GB"], [[k, f"{gb(v):.2f}"] for k, v in mem.per_gpu.items()]
                                              + [["total", f"{gb(mem.per_gpu_bytes):.2f}"]]),
            "<h2>Fit</h2>", f"<p>{escape(fit_line(mem))}</p>"]
    if r.mode == "infer":
        c, lat = r.concurrency, r.latency
        body += ["<h2>Concurrency</h2>", f"<p>{escape(c.verdict)}</p>",
                 _table(["engine log"], [[line] for line in c.engine_log]),
                 _table(["max tokens", "max concurrency"], [[f"{x.max_tokens:,}", x.max_concurrency] for x in c.table]),
                 memory_svg(r.chart), "<h2>Latency (static batch)</h2>",
                 _table(["TTFT ms", "TPOT ms", "tokens/s (prefill included)", "end to end s"],
                        [[f"{lat.ttft_s * 1e3:,.1f}", f"{lat.tpot_s * 1e3:,.2f}", f"{lat.tokens_per_s:,.0f}", f"{lat.e2e_s:.3f}"]])]
        if r.serving is not None:
            s = r.serving
            body += ["<h2>Serving plan</h2>", f"<p>{escape(s.verdict)}</p>",
                     *([f"<p>{escape(note)}</p>"] if (note := launch_cap_note(s)) else []),
                     _table(["layout", "GPUs", "batch", "TTFT ms", "TPOT ms", "tokens/s/GPU", "KV tokens", "binds"],
                            [[x.name, x.gpus_needed, x.batch, f"{x.ttft_ms:,.0f}", f"{x.tpot_ms:,.1f}",
                              f"{x.tokens_per_s_per_gpu:,.0f}", f"{x.kv_cache_tokens:,}", x.binding] for x in s.layouts]),
                     frontier_svg(s), "<h2>Assumptions</h2>",
                     "<ul>" + "".join(f"<li>{escape(a)}</li>" for a in r.assumptions) + "</ul>"]
    else:
        body += ["<h2>Training time</h2>", f"<p>{escape(r.train_time.verdict)}</p>", "<h2>Assumptions</h2>",
                 "<ul>" + "".join(f"<li>{escape(a)}</li>" for a in mem.assumptions) + "</ul>"]
    sure = how_sure_text(r)
    if sure:
        body += ["<h2>How sure</h2>", f"<p>{escape(HOW_SURE_TITLE)}</p>", "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in sure) + "</ul>"]
    body.append("<h2>Derivations</h2>")
    for title, lines in report_derivations(r):
        body += [f"<h3>{escape(title)}</h3>", f"<pre><code>{escape(chr(10).join(lines))}</code></pre>"]
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>llmcalc report: {escape(r.model)}"
            f"</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>")
