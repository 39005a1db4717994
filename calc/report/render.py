"""Views of engine results: rich tables (default), JSON (--json) and derivations (--explain).

The JSON is the result model's own dump; the table and the explanation read the same object.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel
from rich import table as rich_table
from rich.console import Console, Group, RenderableType
from rich.text import Text

from calc.report.confidence import HOW_SURE_TITLE, annotate, explain_lines, how_sure_lines
from calc.sanity import warn
from calc.units import abbrev, count, figure, gb, gib, human, plural

# What a memory verdict compares against: GPUSpec.cuda_total_bytes, the device total torch.cuda.mem_get_info reports.
DEVICE_TOTAL = "the device total torch reports"

# Where stdout is not a terminal (a pipe, a file, a test) and COLUMNS is not set, views are laid out this
# wide: nothing a script reads is folded at rich's default of 80 columns.
PIPE_WIDTH = 200


class Plain(Text):
    """A line printed exactly as it is, never wrapped or cropped at any width: a command to copy
    (`--emit`), a formula (`--explain`)."""


def _pieces(objects: Iterable[Any]) -> list[Any]:
    """The objects with every Group opened, in order (a Group prints its parts one after another)."""
    out: list[Any] = []
    for o in objects:
        out += _pieces(o.renderables) if isinstance(o, Group) else [o]
    return out


class _WideEnoughConsole(Console):
    """A console that never squeezes a view below its minimum width (the longest word of each
    column): on a narrow terminal the lines run long rather than fold a GPU name or number into
    pieces, and nothing is cropped or cut with an ellipsis. Plain lines are never wrapped; a pipe
    gets PIPE_WIDTH columns."""

    @property
    def size(self) -> Any:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return size._replace(width=PIPE_WIDTH)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def print(self, *objects: Any, **kwargs: Any) -> None:
        pieces = _pieces(objects)
        if any(isinstance(p, Plain) for p in pieces):
            for piece in pieces:
                if isinstance(piece, Plain):
                    super().print(piece, **{**kwargs, "soft_wrap": True})
                else:
                    self.print(piece, **kwargs)
            return
        if kwargs.get("width") is None and objects:
            from rich.measure import Measurement

            options = self.options.update_width(10_000)
            need = max(Measurement.get(self, options, self.render_str(o) if isinstance(o, str) else o).minimum
                       for o in objects)
            if need <= self.width:  # rich can still lay a table out wider than the width (column minimums), then crops it
                need = max(need, self._rendered_width(objects))
            if need > self.width:
                saved, self._width = self._width, need  # print(width=) cannot exceed the console's
                try:
                    super().print(*objects, **{**kwargs, "crop": False})
                finally:
                    self._width = saved
                return
        super().print(*objects, **kwargs)

    def _rendered_width(self, objects: tuple[Any, ...]) -> int:
        """The widest line the objects render to at this console's width, before any cropping."""
        from rich.segment import Segment

        return max((Segment.get_line_length(line)
                    for o in objects
                    for line in Segment.split_lines(self.render(self.render_str(o) if isinstance(o, str) else o))),
                   default=0)


console = _WideEnoughConsole()


def _literal(cell: Any) -> Any:
    """Strings are printed as they are (a model named "[/]" is text, not rich markup)."""
    return Text(cell) if isinstance(cell, str) else cell


class Table(rich_table.Table):
    """A rich Table that never elides: every column folds long cells onto more lines instead of
    cutting them with an ellipsis, and string titles and cells are literal text, never markup."""

    def __init__(self, *args: Any, title: Any = None, **kwargs: Any) -> None:
        title = Text(title, style="table.title") if isinstance(title, str) else title
        super().__init__(*args, title=title, **kwargs)

    def add_column(self, header: Any = "", *args: Any, overflow: Any = "fold", **kwargs: Any) -> None:
        longest = max([len(word) for word in str(header).split()] + [kwargs.pop("min_width", None) or 0])
        super().add_column(header, *args, overflow=overflow, min_width=longest or None, **kwargs)

    def _calculate_column_widths(self, console: Console, options: Any) -> list[int]:
        """Rich's widths, unless they overflow ``options.max_width``: then every number and name keeps its
        natural width and the text columns (left-justified, with more than one word) share the rest, each
        at least its longest word, in proportion to what wrapping takes from each."""
        widths = super()._calculate_column_widths(console, options)
        if sum(widths) <= options.max_width:
            return widths
        ranges = [self._measure_column(console, options.update_width(10_000), c) for c in self.columns]
        text = [c.justify in ("left", "default", None) and r.minimum < r.maximum for c, r in zip(self.columns, ranges, strict=True)]
        fixed = sum(r.maximum for r, t in zip(ranges, text, strict=True) if not t)
        low = sum(r.minimum for r, t in zip(ranges, text, strict=True) if t)
        room = options.max_width - fixed - low
        if room < 0 or not any(text):
            return widths  # cannot fit without splitting a word: the console runs wider instead
        slack = sum(r.maximum - r.minimum for r, t in zip(ranges, text, strict=True) if t)
        return [r.minimum + (r.maximum - r.minimum) * room // slack if t else r.maximum
                for r, t in zip(ranges, text, strict=True)]

    def add_row(self, *cells: Any, **kwargs: Any) -> None:
        cells = tuple(_literal(c) for c in cells)
        for column, cell in zip(self.columns, cells, strict=False):
            if isinstance(cell, Text):  # a word (GPU name, number) is never split across lines
                longest = max((len(word) for word in cell.plain.split()), default=0)
                column.min_width = max(column.min_width or 0, longest)
        super().add_row(*cells, **kwargs)


def emit_warnings(data: Any) -> None:
    """Every warning a result (or its nested results) carries, once each, on stderr."""
    seen: list[str] = []
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, BaseModel):
            seen += [w for w in getattr(node, "warnings", None) or [] if w not in seen]
            stack += [getattr(node, name) for name in reversed(type(node).model_fields)]
        elif isinstance(node, list | tuple):
            stack += list(reversed(node))
        elif isinstance(node, dict):
            stack += list(reversed(node.values()))
    for line in seen:
        field, _, message = str(line).partition(": ")
        warn(field, message)


def emit_json(data: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    """Write machine-readable output to stdout, unwrapped, with stable keys (warnings on stderr)."""
    emit_warnings(data)
    payload = _dump(data)
    _tight_warnings(annotate(data, payload))  # bands and the three-valued fit (calc.report.confidence)
    sys.stdout.write(json.dumps(_finite(payload), indent=2, allow_nan=False) + "\n")


def _finite(node: Any) -> Any:
    """The payload with every non-finite float (an unmet target's infinite TTFT or queue, its band) as null: JSON has
    no Infinity or NaN (RFC 8259), and json.dumps would write them as bare words no strict parser reads."""
    if isinstance(node, float):
        return node if math.isfinite(node) else None
    if isinstance(node, dict):
        return {k: _finite(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_finite(v) for v in node]
    return node


def _dump(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, dict):
        return {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in data.items()}
    return [d.model_dump(mode="json") for d in data]


def _tight_warnings(found: Any) -> None:
    """Fit first answers a tight fit, with one warning line naming the margin and what would make room."""
    for line in found.tight:
        field, _, message = line.partition(": ")
        warn(field, message)


def how_sure(data: Any, explain: bool = False) -> tuple[RenderableType | None, list[str]]:
    """The "how sure" block printed under a table (None when the result has no predicted figure) and the --explain
    lines of its bands; the tight-fit warnings go to stderr."""
    found = annotate(data, _dump(data))
    _tight_warnings(found)
    lines = how_sure_lines(found)
    block = Group(Text(HOW_SURE_TITLE, style="bold"),
                  *(Plain(f"  {line}") for line in lines)) if lines else None
    return block, explain_lines(found) if explain else []


def emit(result: BaseModel | Sequence[BaseModel], as_json: bool, explain: bool, view: Callable[[Any], RenderableType]) -> None:
    """The one output path every command uses."""
    if as_json:
        emit_json(result)
        return
    emit_warnings(result)
    console.print(view(result))
    block, band_lines = how_sure(result, explain)
    if block is not None:
        console.print(block)
    if explain:
        console.print(explain_panel([*getattr(result, "explain", []), *band_lines]))


def explain_panel(lines: Iterable[str]) -> RenderableType:
    return Group(Text("How it was computed:", style="bold"), *(Plain(f"  {line}") for line in lines))


def bar(fraction: float, width: int = 30) -> str:
    """A text bar of ``fraction`` (0..1) of ``width`` cells."""
    cells = max(0, min(width, round(fraction * width)))
    return "█" * cells + "·" * (width - cells)


def size(num_bytes: float) -> str:
    """Bytes as both GB (1e9) and GiB (2^30), to two decimals, or two significant digits where two decimals would
    print a non-zero size as 0.00 (a model's norms: 532,480 B = 0.00053 GB)."""
    return f"{figure(gb(num_bytes), 2)} GB / {figure(gib(num_bytes), 2)} GiB"


def kv_table(title: str, rows: Iterable[tuple[str, Any]], caption: str | None = None) -> Table:
    table = Table(title=title, caption=caption, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else str(value))
    return table


def params_view(p: Any) -> RenderableType:
    table = Table(title=f"Parameters of {p.model}", title_justify="left")
    table.add_column("component")
    table.add_column("params", justify="right")
    table.add_column("share", justify="right")
    table.add_column("active / token", justify="right")
    for name, n in p.components.items():
        table.add_row(name, f"{n:,}", f"{figure(100 * n / p.total_params, 2)}%", f"{p.active_components[name]:,}")
    table.add_section()
    table.add_row(Text("total (exact)", "bold"), Text(f"{p.total_params:,}", "bold"), "100%", Text(f"{p.active_params:,}", "bold"))
    if p.active_params != p.total_params:  # MoE: model cards count the weights multiplied, not the embedding lookup
        table.add_row("active excl. embedding (model cards)", "", "",
                      f"{p.matmul_params:,}")
    table.add_row("textbook 12*L*H^2 + V*H", f"{p.textbook_params:,}", f"{p.textbook_diff_pct:+.2f}%", "")
    if p.mtp_params:  # main model above; MTP modules load only when an engine uses them to speculate
        table.add_row("MTP modules (not in total)", f"{p.mtp_params:,}", "", "")
        table.add_row(Text("with MTP", "bold"), Text(f"{p.total_params_with_mtp:,}", "bold"), "", "")
    layers = Table(title="Per block", title_justify="left")
    for col in ("kind", "count", "params / block", "active / block"):
        layers.add_column(col, justify="right" if col != "kind" else "left")
    for k in p.layer_kinds:
        layers.add_row(k.kind, str(k.count), f"{k.params_per_layer:,}", f"{k.active_params_per_layer:,}")
    return Group(table, layers)


def flops_view(f: Any) -> RenderableType:
    return kv_table(
        f"FLOPs of {f.model}: B={f.batch}, S={f.seq}, S'={f.context}",
        [
            ("convention", f.convention),
            ("forward (B x S pass)", f"{f.forward_flops:,} ({human(f.forward_flops, 'FLOPs')})"),
            ("  matmuls", f"{f.forward_matmul_flops:,}"),
            ("  attention scores", f"{f.forward_attention_flops:,} ({f.attention_share_pct:.2f}% of forward)"),
            ("training (3x forward)", f"{f.training_flops:,} ({human(f.training_flops, 'FLOPs')})"),
            ("  + full recompute (HFU)", f"{f.training_flops_full_recompute:,}"),
            ("per token, inference", f"{f.per_token_inference_flops:,.0f}   vs 2N = {f.approx_2n:,}"),
            ("per token, training", f"{f.per_token_training_flops:,.0f}   vs 6N = {f.approx_6n:,}"),
            ("  N (textbook)", f"{f.active_params:,} parameters used per token, the input embedding (a lookup, no "
                               f"FLOPs) included; matmul weights {f.matmul_params:,}"),
        ],
    )


def per_gpu_table(r: Any, title: str, column: str, total: Text | str, total_size: Text | str) -> Table:
    """A memory result's per-GPU categories with their share bars (of the GPU when one is given, else of
    the total), closed by the per-GPU total row; shared by the memory and fine-tuning views."""
    capacity = r.gpu_memory_bytes or r.per_gpu_bytes or 1
    table = Table(title=title, title_justify="left")
    table.add_column(column)
    table.add_column("per GPU", justify="right")
    table.add_column(f"share of {'GPU' if r.gpu else 'total'}")
    for name, value in r.per_gpu.items():
        table.add_row(name, size(value), bar(value / capacity))
    table.add_section()
    table.add_row(total, total_size, bar(r.per_gpu_bytes / capacity))
    return table


def memory_view(r: Any) -> RenderableType:
    table = per_gpu_table(
        r, f"{'Inference' if r.mode == 'infer' else 'Training'} memory of {r.model} per GPU "
        f"(TP {r.tp}, PP {r.pp}, DP {r.dp}, CP {r.cp}; {plural(r.num_gpus, 'GPU')})",
        "category", Text("per GPU total", "bold"), Text(size(r.per_gpu_bytes), "bold"),
    )
    # training: the states once (one model copy before sharding or replication); the total sums every GPU's peak
    copy = "one model copy"
    totals = [(f"weights ({copy})", size(r.weights_bytes))]
    totals += [(f"  {group}", size(value)) for group, value in r.weight_bytes_by_group.items()]
    if r.mode == "infer" and r.weights_stored_bytes and r.weights_stored_bytes != r.weights_bytes:
        totals.append((f"  as stored on the {r.num_gpus} GPUs (replicated tensors on each TP rank)",
                       size(r.weights_stored_bytes)))
    if r.mode == "infer":
        totals += [("KV cache per token", f"{r.kv_cache_bytes_per_token:,} B"), ("KV cache (all requests)", size(r.kv_cache_bytes))]
        if r.kv_cache_stored_bytes and r.kv_cache_stored_bytes != r.kv_cache_bytes:
            totals.append((f"  as stored on the {r.tp} TP ranks (copied onto each)", size(r.kv_cache_stored_bytes)))
    else:
        totals += [(f"gradients ({copy})", size(r.gradient_bytes)), (f"optimizer ({copy})", size(r.optimizer_bytes))]
    totals.append(("total (all GPUs)" if r.mode == "infer" else f"total (all GPUs: per GPU x {r.num_gpus:,})" if r.pp == 1
                   else f"total (all GPUs: each pipeline rank's peak x its {r.num_gpus // r.pp:,} GPUs)",
                   size(r.total_bytes)))
    if r.gpu:
        verdict = (
            Text.assemble(("fits", "green"), f": {size(r.headroom_bytes_per_gpu)} headroom per GPU")
            if r.fits
            else Text.assemble(("does not fit", "red"), f": short by {size(-r.headroom_bytes_per_gpu)} per GPU")
        )
        totals.append((f"on {r.gpu} ({size(r.gpu_memory_bytes)}, {DEVICE_TOTAL})"
                       + (": the tensors of one unchunked forward" if r.engine_fit else ""), verdict))
        totals.append(("smallest GPU count that fits" + (" (the tensors)" if r.engine_fit else ""),
                       r.min_gpus if r.min_gpus else "n/a (see assumptions)"))
        if r.engine_fit:  # infer: the serving engine's verdict, which keeps back what the tensor count does not
            e = r.engine_fit
            totals.append((f"as {e['engine']} {e['version']} launches it",
                           Text.assemble(("fits" if e["fits"] else "does not fit", "green" if e["fits"] else "red"),
                                         f": {e['line']}")))
    return Group(table, kv_table("Totals", totals), kv_table("Assumptions", [("-", a) for a in r.assumptions]))


def gpus_view(gpus: Sequence[Any]) -> RenderableType:
    table = Table(title="GPU catalog: memory GB as the device lists it (every fit is checked against the device "
                        "total torch reports where a reading is known, at most this: --json cuda_total_bytes), "
                        "memory bandwidth TB/s, GPU-GPU link GB/s; dense "
                        "tensor peaks in TFLOPS (bf16 derived from SMs x clock, bf16 and fp8 from the spec sheet); ridge "
                        "point in FLOPs/byte at bf16 (fp16 where no bf16)", title_justify="left")
    for col in ("name", "arch", "GB", "TB/s", "link", "bf16", "bf16 sheet", "fp8 sheet", "ridge"):
        table.add_column(col, justify="left" if col in ("name", "arch") else "right")
    for g in gpus:
        derived = g.derived_peak_tflops.get("bf16")
        table.add_row(
            g.name, g.arch, f"{gb(g.memory_bytes):.1f}", f"{g.hbm_tb_s:g}", f"{g.interconnect_gb_s:g}",
            f"{derived:.2f}" if derived else "-", f"{g.datasheet_peak_tflops.get('bf16', '-')}",
            f"{g.datasheet_peak_tflops.get('fp8', '-')}",
            f"{g.ridge_point_flops_per_byte:.0f}" + ("" if g.ridge_point_dtype == "bf16" else f" {g.ridge_point_dtype}"),
        )
    return table


def models_view(rows: Sequence[dict[str, Any]]) -> RenderableType:
    table = Table(title="Model catalog", title_justify="left")
    for col in ("name", "params (exact)", "active", "L", "H", "heads/KV", "description"):
        table.add_column(col, justify="right" if col not in ("name", "description") else "left")
    for r in rows:
        table.add_row(r["name"], f"{r['total_params']:,}", f"{r['active_params']:,}", str(r["num_layers"]),
                      str(r["hidden_size"]), f"{r['num_heads']}/{r['num_kv_heads']}", r["description"])
    return table


def spec_view(spec: BaseModel) -> RenderableType:
    """The spec's fields as a table; a field holding one long word (a source URL) is a plain line below it,
    whole, so that the table fits 100 columns without splitting the word."""
    data = spec.model_dump(mode="json", exclude_none=True)
    long = {k: v for k, v in data.items() if isinstance(v, str) and max(map(len, v.split()), default=0) > 60}
    table = kv_table(f"{type(spec).__name__} {data.get('name')}", [(k, v) for k, v in data.items() if k not in long])
    return Group(table, *(Plain(f"{k}: {v}") for k, v in long.items()))


def gpu_detail_view(summary: Any) -> RenderableType:
    return Group(gpus_view([summary]), explain_panel(summary.explain))


def mfu_view(r: Any) -> RenderableType:
    rows = [
        ("throughput per GPU", f"{r.tokens_per_s_per_gpu:,.1f} tokens/s ({r.gpu})"),
        ("peak", f"{r.peak_tflops:g} TFLOPS dense {r.dtype} per GPU"),
        ("FLOPs/token (6N)", human(r.flops_per_token_6n, "FLOPs", 4)),
        ("FLOPs/token (with attention)", human(r.flops_per_token, "FLOPs", 4)),
        ("MFU (6N)", f"{r.mfu_6n:.2%}"),
        ("MFU (with attention)", f"{r.mfu:.2%}"),
        ("HFU if full recomputation (causal flash)", f"{r.hfu_full_recompute:.2%}"),
        ("achieved model FLOP/s per GPU", human(r.model_flops_per_s_per_gpu, "FLOP/s", 4) + " (with attention, no recompute)"),
    ]
    if r.model_flops_per_s is not None:
        rows.append((f"model FLOP/s (whole job, {r.num_gpus:,} GPUs)", human(r.model_flops_per_s, "FLOP/s", 4)))
    if r.model_flops_per_step is not None:
        rows.append(("model FLOPs per step", human(r.model_flops_per_step, "FLOPs", 4)))
    if r.model_flops_total is not None:
        rows.append(("model FLOPs of the run (with attention)", f"{abbrev(r.model_flops_total, digits=4)} FLOPs"))
        rows.append(("model FLOPs of the run (6N)", f"{abbrev(r.model_flops_total_6n, digits=4)} FLOPs"))
    if r.mfu_of_measured is not None:
        rows.append(("of measured achievable", f"{r.mfu_of_measured:.2%}"))
    return Group(kv_table(f"MFU of {r.model}", rows), Text(r.verdict, style="bold"))


def train_time_view(r: Any) -> RenderableType:
    rows = [
        ("tokens", abbrev(r.tokens, "tokens", 4)),
        ("total FLOPs (with attention)", f"{human(r.total_flops, 'FLOPs', 4)}  (6N: {human(r.total_flops_6n, 'FLOPs', 4)})"),
        ("MFU", f"{r.mfu:.1%} {r.mfu_source if r.plan is None else 'predicted for ' + r.plan}"),
    ]
    if r.global_batch is not None:
        rows.append(("global batch", f"{count(r.global_batch)} sequences x {count(r.seq)} = {abbrev(r.global_batch_tokens)} "
                                     f"tokens per step, {r.step_time_s:,.3f} s per step"))
    rows += [
        ("GPU-hours", figure(r.gpu_hours)),
        ("days", figure(r.days, 2)),
        ("cost", figure(r.cost) if r.cost is not None else "give --price"),
    ]
    if r.best_case_days is not None:
        rows.append(("days at measured ceiling", f"{r.best_case_days:,.2f}"))
    return Group(kv_table(f"Training time of {r.model} on {r.num_gpus} x {r.gpu}", rows), Text(r.verdict, style="bold"))


def _serving_layout(r: Any) -> str:
    """A latency / concurrency replica's layout in words: TP x PP, or EP with its data-parallel attention groups."""
    return f"EP {r.ep}: {r.ep // r.tp} attention groups of TP {r.tp}" if r.ep > 1 else f"TP {r.tp} x PP {r.pp}"


def latency_view(r: Any) -> RenderableType:
    layout = _serving_layout(r)
    table = Table(title=f"Latency of {r.model} on {r.num_gpus} x {r.gpu} ({layout}), B={r.batch}", title_justify="left")
    for col in ("phase", "compute ms", "memory ms", "TP comm ms", "time", "bound", "FLOPs/byte"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    steps = f", {r.prefill_steps} steps" if r.prefill_steps > 1 else ""
    table.add_row(f"prefill {r.batch} x {r.prompt} tokens{steps} (TTFT)", f"{r.prefill_compute_s * 1e3:.2f}",
                  f"{r.prefill_memory_s * 1e3:.2f}",
                  f"{r.prefill_comm_s * 1e3:.2f}", f"{r.ttft_s * 1e3:,.1f} ms", r.prefill_bound, f"{r.prefill_intensity:,.0f}")
    table.add_row("decode 1 token (TPOT)", f"{r.decode_compute_s * 1e3:.3f}", f"{r.decode_memory_s * 1e3:.3f}",
                  f"{r.decode_comm_s * 1e3:.3f}", f"{r.tpot_s * 1e3:,.2f} ms", r.decode_bound, f"{r.decode_intensity:,.1f}")
    facts = kv_table("", [
        ("per-step overhead", (f"{figure(r.step_overhead_s * 1e3, 2)} ms (in both phases)" if r.decode_step_overhead_s is None
         else f"{figure(r.step_overhead_s * 1e3, 2)} ms a prefill step, {figure(r.decode_step_overhead_s * 1e3, 2)} ms a "
              "decode step (multi-step scheduling)")
         + (f" + {figure(r.step_overhead_per_seq_s * 1e6, 2)} us per sequence: {figure(r.prefill_overhead_s * 1e3, 2)} ms "
            f"in TTFT, {figure(r.decode_overhead_s * 1e3, 2)} ms a decode step" if r.step_overhead_per_seq_s else "")),
        ("ridge point", f"{r.ridge_point_flops_per_byte:.0f} FLOPs/byte"),
        ("efficiency", r.efficiency_source),
        ("decode throughput", f"{r.decode_tokens_per_s:,.0f} tokens/s (B / TPOT)"),
        ("throughput, prefill included", f"{r.tokens_per_s:,.0f} tokens/s (B x O / end to end)"),
        (f"end to end ({plural(r.output, 'token')})", f"{r.e2e_s:.3f} s"),
        *([(f"engine log at --max-model-len {r.max_model_len:,}",
            f"Maximum concurrency {r.max_concurrency_at_max_model_len:,} requests (of this batch's "
            f"{r.prompt + r.output:,} tokens: {r.max_concurrency:,})")] if r.max_concurrency_at_max_model_len is not None else []),
    ])
    return Group(table, facts, Text(r.verdict, style="bold"))


def concurrency_view(r: Any) -> RenderableType:
    layout = _serving_layout(r)
    main = kv_table(f"Concurrency of {r.model} on {r.num_gpus} x {r.gpu} ({layout}, {r.engine}, "
                    f"{r.dtype}, KV {r.kv_dtype})", [
        ("capacity", size(r.capacity_bytes)),
        ("weights (on the GPUs)" if r.weights_stored_bytes != r.weights_bytes else "weights", size(r.weights_stored_bytes)),
        ("kept back (engine margin + non-torch)", size(r.reserve_bytes)),
        ("profile-run activation peak", size(r.activation_bytes)),
        ("KV cache", f"{size(r.free_bytes)} = {r.kv_cache_tokens:,} tokens" if r.free_bytes >= 0 else
         f"none: {size(-r.free_bytes)} short"),
        (f"KV per request ({r.max_tokens:,} tokens = {r.max_tokens - 1:,} slots)", size(r.kv_cache_bytes_per_request)),
        ("max concurrency", f"{r.max_concurrency:,} (whole blocks per request"
                            + (", local layers capped at their window)" if r.window_capped else ")")
         + (f"; the engine runs at most max_num_seqs {r.max_num_seqs:,} of them at once"
            if r.max_num_seqs is not None and r.max_concurrency > r.max_num_seqs else "")),
    ])
    caption = None
    if r.engine.startswith("vllm") and r.hybrid:
        caption = ("vLLM's 'Maximum concurrency' = GPU blocks / the blocks of one max_model_len request summed over the "
                   "KV-cache groups (a sliding group bounded by window - 1 + max_num_batched_tokens tokens + 1 block, a "
                   "state group 1; vllm/v1/core/kv_cache_utils.py get_max_concurrency_for_kv_cache_config)")
    elif r.engine.startswith("vllm"):
        caption = ("vLLM's 'Maximum concurrency' = GPU blocks / ceil(max_model_len / block size): every layer counted at "
                   "max_model_len" + (", sliding-window layers uncapped, so below the max concurrency above" if r.window_capped
                                      else "") + " (vllm/v1/core/kv_cache_utils.py)")
    log = kv_table("As the engine logs it", [("-", line) for line in r.engine_log], caption=caption)
    table = Table(title="Concurrency vs context length", title_justify="left")
    for col in ("max tokens", "KV / request", "max concurrency (KV)", f"running at once (max_num_seqs {r.max_num_seqs:,})"):
        table.add_column(col, justify="right")
    for row in r.table:
        table.add_row(f"{row.max_tokens:,}", size(row.kv_cache_bytes_per_request), f"{row.max_concurrency:,}",
                      f"{row.max_running:,}")
    notes = kv_table("Assumptions", [("-", a) for a in r.assumptions])
    return Group(main, log, table, notes, Text(r.verdict, style="bold"))


def serve_view(r: Any) -> RenderableType:
    target = ", ".join(x for x in (f"TTFT <= {r.target_ttft_ms:g} ms" if r.target_ttft_ms else "",
                                   f"TPOT <= {r.target_tpot_ms:g} ms" if r.target_tpot_ms else "") if x) or "no targets"
    traffic = (f"{count(r.rate)} req/s" if r.rate else plural(r.users, "user") if r.users else
               plural(r.num_gpus, "GPU") if r.num_gpus else "one replica")  # as the verdict line says it
    table = Table(title=f"Serving {r.model} on {r.gpu} ({r.engine}, {r.dtype}): P={r.prompt}, O={r.output}, {target}, "
                  f"{traffic}", title_justify="left")
    for col in ("#", "layout", "repl", "GPUs", "batch", "TTFT ms", "TPOT ms", "tok/s/GPU", "req/s/repl", "binds"):
        table.add_column(col, justify="left" if col == "binds" else "right")
    for i, x in enumerate(r.layouts[:12], 1):
        table.add_row(f"{i}" if x.meets_targets else f"{i}*", x.name, str(x.replicas), str(x.gpus_needed),
                      str(x.batch), f"{x.ttft_ms:,.0f}", f"{x.tpot_ms:,.1f}", f"{x.tokens_per_s_per_gpu:,.0f}",
                      f"{x.requests_per_s_per_replica:,.2f}", x.binding)
    from calc.serving.launch import REQUEST_CAP
    from calc.serving.plan import NEAR_TIE

    cap, under_ep = REQUEST_CAP.get(r.engine.split("-")[0], REQUEST_CAP["vllm"])
    sizing = (r.rate or r.users) and not r.num_gpus
    order = ("ranked by the fewest GPUs for the traffic, then tok/s/GPU" if sizing else
             f"ranked by tok/s/GPU, except that layouts within {NEAR_TIE:.0%} of the best tie and the one with the fewest "
             "GPUs per replica (then the lowest TPOT) comes first")
    parts: list[RenderableType] = [table, Text(f"* misses a target; {order}; batch = the most requests a replica runs "
                                               f"at once, its figures timed there (the {cap} an --emit line starts it "
                                               f"with, {under_ep}); binds = what stops the batch growing", style="dim")]
    parts.append(Text(r.verdict, style="bold"))  # the --emit launch line follows, printed unwrapped by the command
    return Group(*parts)


def bench_view(r: Any) -> RenderableType:
    label = r.device if r.is_gpu else "CPU"
    table = Table(title=f"bench on {r.device_name} ({label}, {r.dtype}, torch {r.torch_version})", title_justify="left")
    for col in ("GEMM", "M x K x N", "median ms", "min-max ms", f"{label} TFLOPS", "of peak"):
        table.add_column(col, justify="left" if col == "GEMM" else "right")
    for g in r.gemms:
        t = g.timing
        table.add_row(g.label, f"{g.m}x{g.k}x{g.n}", f"{t.median_s * 1e3:.3f}", f"{t.min_s * 1e3:.3f}-{t.max_s * 1e3:.3f}",
                      f"{g.achieved_tflops:.2f}", f"{g.fraction_of_peak:.1%}" if g.fraction_of_peak else "-")
    c = r.copy_bandwidth
    rows = [(f"{label} copy bandwidth", f"{c.achieved_gb_s:,.1f} GB/s"
             + (f" ({c.fraction_of_spec:.1%} of spec)" if c.fraction_of_spec else ""))]
    if r.fused:
        f = r.fused
        rows += [
            (f"fused QKV+MLP-in ({f.model}, {f.tokens} tokens)",
             f"separate {f.separate.median_s * 1e3:.3f} ms, fused {f.fused.median_s * 1e3:.3f} ms: {f.speedup_pct:+.1f}%"),
            ("bytes moved (analytical)", f"separate {f.bytes_separate:,.0f}, fused {f.bytes_fused:,.0f}"),
            ("outputs identical (allclose)", str(f.outputs_allclose)),
        ]
    rows += [("note", n) for n in r.notes]
    return Group(table, kv_table("", rows))


def gemm_view(name: str, extra: Any) -> RenderableType:
    """Decode FLOPs, an intensity table, or the fused-GEMM comparison (flops --generate/--intensity/--fused)."""
    if name == "decode":
        return kv_table(f"Generating {extra.output} tokens after a {extra.prompt}-token prompt (B={extra.batch}): the "
                        f"prefill makes the first, {extra.output - 1:,} decode steps", [
            ("prefill (causal, B x P)", f"{extra.prefill_flops:,} ({human(extra.prefill_flops, 'FLOPs')})"),
            ("first decode step", f"{extra.first_step_flops:,}"), ("last decode step", f"{extra.last_step_flops:,}"),
            (f"{extra.output - 1:,} decode steps", f"{extra.generation_flops:,} ({human(extra.generation_flops, 'FLOPs')})"),
            ("whole generation", f"{extra.total_flops:,} ({human(extra.total_flops, 'FLOPs')})"),
        ])
    if name == "training_compute":
        return kv_table(f"Training compute of {abbrev(extra.tokens, digits=4)} tokens", [
            ("with attention (D x 3*forward/S)", f"{abbrev(extra.training_flops, digits=4)} FLOPs "
                                                 f"({extra.pf_days:,.1f} PF-days)"),
            ("6ND (the published convention)", f"{abbrev(extra.training_flops_6n, digits=4)} FLOPs "
                                               f"({extra.pf_days_6n:,.1f} PF-days)"),
        ])
    gemms = [*extra.separate, extra.fused] if name == "fused" else extra.gemms
    title = (f"Fused QKV + MLP-in for {extra.model}, {extra.tokens} tokens: same FLOPs "
             f"({extra.flops_equal}), {extra.bytes_saved:,.0f} bytes less moved"
             + (f"; {extra.note}" if extra.note else "")) if name == "fused" else (
        f"Arithmetic intensity, {extra.phase} ({extra.tokens} tokens, context {extra.context}, {extra.dtype}): "
        f"{extra.intensity:,.1f} FLOPs/byte per layer + head")
    table = Table(title=title, title_justify="left")
    for col in ("matmul", "M x K x N", "count", "FLOPs", "bytes", "FLOPs/byte"):
        table.add_column(col, justify="left" if col == "matmul" else "right")
    for g in gemms:
        table.add_row(g.name, f"{g.m:g}x{g.k}x{g.n}", str(g.count), human(g.flops), human(g.bytes, "B"), f"{g.intensity:,.1f}")
    return table
