"""The click classes under every command: `--help` grouped into panels, one line per command, and
the refusal of a single-valued option given twice (click would keep the last one silently).

The root group lists the commands under their panel (`COMMANDS`, in the order a user meets them) with a
short description that fits one line; `memory --help` groups its options by the mode they apply to.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

from calc.errors import LLMCalcError

try:  # typer >= 0.2x vendors click; older typer uses click itself
    from typer._click import core as click  # type: ignore[attr-defined]
    from typer._click.exceptions import ClickException
    from typer._click.formatting import HelpFormatter
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import core as click  # type: ignore[no-redef]
    from click.exceptions import ClickException  # type: ignore[no-redef]
    from click.formatting import HelpFormatter  # type: ignore[no-redef]

# (panel, command, the one-line description of `llmcalc --help`, "module:function" of calc.cli that holds it):
# each description at most 60 characters so that the list never truncates one at 80 columns.
COMMANDS: tuple[tuple[str, str, str, str], ...] = (
    ("Catalogs", "models", "model catalog with exact parameter counts", "catalog:models"),
    ("Catalogs", "gpus", "GPU catalog with derived and datasheet dense peaks", "catalog:gpus"),
    ("Catalogs", "systems", "node types: GPUs per node, NVLink, network", "catalog:systems"),
    ("Catalogs", "show", "one model or GPU spec (GPUs with their peak derivation)", "catalog:show"),
    ("Catalogs", "import", "write our model YAML for a HuggingFace config.json", "catalog:import_config"),
    ("Models", "params", "exact parameters per component, beside 12*L*H^2 + V*H", "model:params"),
    ("Models", "flops", "FLOPs of a forward pass and a training step, per token", "model:flops"),
    ("Memory", "memory", "memory per GPU (infer, train, finetune) and the fit", "memory:memory"),
    ("Training", "mfu", "MFU of a finished run (tokens, GPU-hours or step time)", "training:mfu"),
    ("Training", "train-step", "step time of one parallel plan, term by term", "training:train_step"),
    ("Training", "train-plan", "the fastest TP/PP/DP/CP/EP layouts that fit", "training:train_plan"),
    ("Training", "train-time", "days, GPU-hours and cost to train on D tokens", "training:train_time"),
    ("Serving", "latency", "TTFT, TPOT and end-to-end time of a static batch", "serving:latency"),
    ("Serving", "concurrency", "KV-cache tokens and max concurrency as the engine logs", "serving:concurrency"),
    ("Serving", "serve", "layouts by tokens/s per GPU; with --rate, fewest GPUs", "serving:serve"),
    ("Serving", "compare", "one serving workload on several GPUs, with cost", "report:compare"),
    ("Reports", "report", "one page for one workload: memory, fit, time, chart", "report:report"),
    ("Measurement & calibration", "bench", "measure this machine's GEMMs, bandwidth and ops", "bench:bench"),
    ("Measurement & calibration", "validate", "time real decoder layers in torch against the prediction", "bench:validate"),
    ("Measurement & calibration", "calibrate", "fit the efficiencies to your measured runs", "bench:calibrate"),
)
SHORT_HELP = {name: text for _, name, text, _ in COMMANDS}
PANEL = {name: panel for panel, name, _, _ in COMMANDS}
WHERE = {name: tuple(where.split(":")) for _, name, _, where in COMMANDS}  # command -> (module, function)

# `memory` takes the options of three modes: its help groups them (parameter name -> panel).
_MEMORY_PANELS = {
    "Workload": ("mode", "dtype", "batch", "seq"),
    "Placement": ("gpu", "num_gpus", "tp", "pp", "dp", "cp", "sequence_parallel", "reserve_gib"),
    "Inference (--mode infer)": ("kv_dtype", "group_size", "mtp"),
    "Training and fine-tuning (--mode train, finetune)": ("zero", "recompute", "attention", "stack", "compile_", "loss",
                                                          "fragmentation"),
    "Training (--mode train)": (
        "recipe", "activations", "ep", "etp", "vpp", "pp_embedding", "pp_loss", "pp_microbatch_group", "recompute_modules",
        "cpu_offload_layers", "offload_modules", "sharding", "fp8_recipe", "global_batch", "global_batch_tokens"),
    "Fine-tuning (--mode finetune)": (
        "method", "lora_rank", "lora_alpha", "lora_targets", "lora_dropout", "adapter_inputs", "optimizer", "precision", "quant",
        "no_double_quant", "prepare_kbit", "repeat_kv", "grad_accum", "loss_chunks", "dropout", "offload",
        "optimizer_in_backward", "cuda_context_gib"),
    "Output": ("as_json", "explain", "help"),
}
OPTION_PANELS: dict[str, dict[str, str]] = {
    "memory": {param: panel for panel, params in _MEMORY_PANELS.items() for param in params},
}


def repeated_option(command: click.Command, ctx: click.Context, args: list[str]) -> str | None:
    """The first single-valued option that ``args`` give more than once, as its flag (None when none):
    click's own parser, run on a copy of the arguments, lists every occurrence in order."""
    if ctx.resilient_parsing:
        return None
    try:
        _, _, order = command.make_parser(ctx).parse_args(args=list(args))
    except ClickException:
        return None  # the real parse reports it
    seen: set[str] = set()
    for param in order:
        if param.param_type_name != "option" or param.multiple or getattr(param, "count", False) or param.name is None:
            continue
        if param.name in seen:
            return next((o for o in param.opts if o.startswith("--")), param.opts[0])  # its first (main) name
        seen.add(param.name)
    return None


class Command(TyperCommand):
    """Every llmcalc command: refuses a repeated single-valued option; groups its options into panels."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        flag = repeated_option(self, ctx, args)
        if flag is not None:
            raise LLMCalcError(flag, "given more than once; give it once (a list option says 'repeatable' in --help)")
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        """Runs the command with its --calibration known to the output path, which bands calibrated figures by it
        (calc.report.confidence)."""
        from calc.report.confidence import calibrated_by

        with calibrated_by(ctx.params.get("calibration")):
            return super().invoke(ctx)

    def format_options(self, ctx: click.Context, formatter: HelpFormatter) -> None:
        panels = OPTION_PANELS.get(self.name or "")
        if not panels:
            super().format_options(ctx, formatter)
            return
        arguments: list[tuple[str, str]] = []
        grouped: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append(record)
            else:
                grouped.setdefault(panels.get(param.name or "", "Options"), []).append(record)
        sections = [("Arguments", arguments)] if arguments else []
        order = [*dict.fromkeys(panels.values())]
        sections += sorted(grouped.items(), key=lambda item: order.index(item[0]) if item[0] in order else -1)
        for title, rows in sections:
            with formatter.section(title):
                formatter.write_dl(rows)


class Group(TyperGroup):
    """The root: `llmcalc --help` lists the commands under their panel, one full line each."""

    def format_commands(self, ctx: click.Context, formatter: HelpFormatter) -> None:
        panels: dict[str, list[tuple[str, str]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            text = SHORT_HELP.get(name) or command.get_short_help_str(limit=10_000)
            panels.setdefault(PANEL.get(name, "Commands"), []).append((name, text))
        for title, rows in panels.items():
            with formatter.section(title):
                formatter.write_dl(rows, col_max=14)


def command_settings(name: str) -> dict[str, Any]:
    """Keyword arguments of `app.command` for ``name``: our class, its panel and one-line description."""
    return {"cls": Command, "rich_help_panel": PANEL[name], "short_help": SHORT_HELP[name]}
