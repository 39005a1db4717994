"""Small helpers shared by the command modules: loading inputs named by options, resolving the
placement options into a Parallelism, prices, output paths, and the fit-first and context checks.
Engine modules are imported inside each helper so `llmcalc --help` stays fast."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from calc.errors import LLMCalcError


def load_calibration(path: str | None) -> Any:
    if path is None:
        return None
    from calc.hardware.calibration import load_calibration as load

    return load(path)


def model_arg(positional: str | None, old_option: str | None) -> Any:
    """MODEL is the first positional argument everywhere; `--model` is kept as a hidden old spelling."""
    from calc.cli.options import alias
    from calc.sources.catalog import load_model

    name = alias(positional, old_option, "MODEL", "--model")
    if name is None:
        raise LLMCalcError("MODEL", "missing; give a model name (see `llmcalc models`) as the first argument")
    return load_model(name, "MODEL" if positional is not None else "--model")


def placement(tp: int | None, pp: int | None, dp: int | None, cp: int | None, sp: bool, num_gpus: int | None,
              *, spread: str = "tp", ep: int | None = None) -> Any:
    """The Parallelism named by --tp/--pp/--dp/--cp (each default 1) and --num-gpus.

    --num-gpus alone puts all GPUs on the axis ``spread`` ("tp" for serving, "dp" for training); with degrees given,
    training's DP is the rest (--num-gpus / (TP x PP x CP) when --dp is not given, as train-step and `memory --mode
    train` lay it out: calc.cli.training.training_layout), else --num-gpus must equal their product.
    """
    from calc.specs import Parallelism

    degrees = {"tp": tp, "pp": pp, "dp": dp, "cp": cp}
    given = {k: v for k, v in degrees.items() if v is not None}
    values = {k: v or 1 for k, v in degrees.items()}
    if num_gpus is not None:
        rest = values["tp"] * values["pp"] * values["cp"]
        if not given:
            values[spread] = num_gpus
        elif spread == "dp" and dp is None:
            if num_gpus % rest:
                raise LLMCalcError("--num-gpus", f"{num_gpus} is not a multiple of TP x PP x CP = {rest}")
            values["dp"] = num_gpus // rest
        else:
            product = values["tp"] * values["pp"] * values["dp"] * values["cp"]
            if product != num_gpus:
                raise LLMCalcError("--num-gpus", f"{num_gpus} != tp*pp*dp*cp = {product}; drop one or make them agree")
    if sp and values["tp"] == 1:
        raise LLMCalcError("--sp", "sequence parallelism splits activations across TP ranks; it needs --tp > 1")
    plan = Parallelism(**values, sequence_parallel=sp)
    if ep is not None and ep > 1:
        raise LLMCalcError("--ep", "expert parallelism is modelled by train-step / train-plan / serve, not here")
    return plan


def price_for(prices: list[str] | None, gpu_name: str, old_price: float | None = None) -> float | None:
    """One price option: `--price 2.5` (this GPU) or `--price h100=2.5`; `--price-per-gpu-hour` is the old spelling."""
    table = price_table(prices)
    if old_price is not None:
        if table:
            raise LLMCalcError("--price-per-gpu-hour", "is the old spelling of --price; give only one of them")
        return old_price
    unknown = [name for name in table if name not in ("*", gpu_name)]
    if unknown:
        raise LLMCalcError("--price", f"names {', '.join(unknown)}, which is not the GPU in use ({gpu_name})")
    return table.get(gpu_name, table.get("*"))  # the GPU's own price before a bare one, as compare reads them


MAX_PRICE = 1000.0  # USD per GPU-hour: two orders of magnitude above any cloud list price (H100 ~2-12, B200 ~6-15)


def price_table(prices: list[str] | None, gpus: Sequence[Any] = ()) -> dict[str, float]:
    """Parse repeated `--price` values into {gpu name: price per GPU-hour}; a bare number is '*'. A name of one of
    ``gpus`` (the GPUs a command compares, a YAML file's among them) is that GPU's, before the catalog is asked."""
    from calc.sources.catalog import load_gpu
    from calc.units import parse_human_number

    table: dict[str, float] = {}
    for item in prices or []:
        name, sep, value = item.partition("=")
        if not sep:
            name, value = "*", name
        elif not value:
            raise LLMCalcError("--price", f"{item!r}: write GPU=PRICE, e.g. h100=2.5, or a bare number")
        given = next((g.name for g in gpus if name.strip().lower() in (g.name.lower(), *map(str.lower, g.aliases))), None)
        key = "*" if name == "*" else given or load_gpu(name, "--price").name
        if key in table:
            raise LLMCalcError("--price", f"gives {'a bare price' if key == '*' else key} twice; give each GPU one price")
        if value.strip().startswith("-"):
            raise LLMCalcError("--price", f"must be >= 0 per GPU-hour, got {value.strip()}")
        if value.strip() in ("0", "0.0"):
            table[key] = 0.0
        else:
            table[key] = parse_human_number(value, "--price")
            if table[key] > MAX_PRICE:
                raise LLMCalcError("--price", f"{value.strip()} USD per GPU-hour is past any rental price (at most "
                                              f"{MAX_PRICE:,.0f}); give the price of one GPU for one hour, e.g. 2.5")
    return table


def output_path(path: str | None, flag: str, suffixes: tuple[str, ...]) -> Path | None:
    """Validate an output path before any work (calc.sources.safeload.check_output_path)."""
    if path is None:
        return None
    from calc.sources.safeload import check_output_path

    return check_output_path(path, flag, suffixes)


# How an engine runs a model past its configured context (what the --max-model-len warning and refusal name): its RoPE
# scaling extended (YaRN as the model card gives it, e.g. Qwen3's factor 4 over 32,768 tokens) and the engine's length
# check lifted: vLLM's VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (vllm/envs.py; or rope_scaling through --hf-overrides), SGLang's
# SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 with --context-length (python/sglang/srt/configs/model_config.py).
EXTENDED_CONTEXT = "RoPE scaling such as YaRN, VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 / SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1"


def check_context(m: Any, tokens: int, flag: str, *, refuse: bool = True, why: str = "", window: int | None = None,
                  extendable: bool = False) -> None:
    """Requests longer than the model's context window (or ``window``, the engine's limit when --max-model-len
    extends it: engine_window) are refused (naming the flag); with ``refuse=False`` (training may extend the context)
    the same finding is a warning, ``why`` appended. ``extendable``: the command takes --max-model-len, and the
    refusal names it as the way to price an engine run past the window."""
    window = window or m.context_window
    if tokens <= window:
        return
    problem = f"{tokens:,} tokens exceed {window_name(m, window)} tokens"
    if window > m.context_window:
        problem += "; give a larger --max-model-len"
    if refuse:
        hint = f"; give --max-model-len (>= --prompt + --output) to price an engine run past it ({EXTENDED_CONTEXT})" \
            if extendable and window == m.context_window else ""
        raise LLMCalcError(flag, problem + hint)
    from calc.sanity import warn

    warn(flag, problem + why)


def window_name(m: Any, window: int) -> str:
    """The limit a request is held to, as a message names it: the model's context window, or the engine's
    --max-model-len where it extends past it (engine_window).

    "llama3-8b's context window of 8,192" / "the engine's --max-model-len of 110,000"."""
    if window > m.context_window:
        return f"the engine's --max-model-len of {window:,}"
    return f"{m.name}'s context window of {window:,}"


def engine_window(m: Any, max_model_len: int | None) -> int:
    """The longest request the engine admits: the model's context window (max_position_embeddings x its RoPE scaling,
    ModelSpec.context_window), or a --max-model-len past it, the engine run with its context extended
    (EXTENDED_CONTEXT), said in one warning line; past 1,024x the window (calc.specs.bounds: the largest RoPE scaling a
    spec may state) refused naming --max-model-len. Weights, FLOPs and KV bytes per token do not change with it; whether
    the checkpoint answers well that far is its own card's to say."""
    window = m.context_window
    if max_model_len is None or max_model_len <= window:
        return window
    from calc.sanity import warn
    from calc.specs.bounds import LIMITS

    most = LIMITS["rope_scaling_factor"][1]  # the largest RoPE scaling a spec may state
    if max_model_len > window * most:
        raise LLMCalcError("--max-model-len", f"{max_model_len:,} tokens is more than {most:,}x {m.name}'s context "
                                              f"window of {window:,} (the largest RoPE scaling llmcalc reads); give "
                                              f"<= {window * most:,}")

    warn("--max-model-len", f"{max_model_len:,} tokens exceed {m.name}'s context window of {window:,}: priced as an "
                            f"engine run past it ({EXTENDED_CONTEXT}); per-token weights, FLOPs and KV are unchanged")
    return max_model_len


def window_output(m: Any, prompt: int, output: int, output_given: bool, max_model_len: int | None = None) -> int:
    """--output within the context window as the engines admit a request: prompt + output <= the window (vLLM
    stops a sequence when its prompt + output tokens reach max_model_len; `latency`, `serve`, `concurrency`, `compare`
    and `report` count the same). An --output left at its default is capped at what the window leaves (window -
    prompt), said in one warning line; a typed one that overflows is refused naming --output. A given --max-model-len
    past the model's window is the engine's window (engine_window), and must hold the request: the engine stops a
    request whose prompt + output reaches it."""
    window = engine_window(m, max_model_len)
    check_context(m, prompt, "--prompt", window=window, extendable=True)
    output = _capped_output(m, prompt, output, output_given, window)
    if max_model_len is not None and max_model_len < prompt + output:
        raise LLMCalcError("--max-model-len", f"{max_model_len:,} is below --prompt + --output = {prompt + output:,}: "
                                              "the engine would stop the request there")
    return output


def _capped_output(m: Any, prompt: int, output: int, output_given: bool, window: int) -> int:
    """--output as ``window`` leaves room for it after ``prompt`` (window_output)."""
    from calc.sanity import warn

    room = window - prompt
    if room < 1:
        raise LLMCalcError("--prompt", f"{prompt:,} tokens leave no room for an output in {window_name(m, window)}; "
                                       f"give --prompt <= {window - 1:,}")
    if output <= room:
        return output
    if output_given:
        raise LLMCalcError("--output", f"--prompt {prompt:,} + --output {output:,} = {prompt + output:,} tokens exceed "
                                       f"{window_name(m, window)}; give --output <= {room:,}")
    warn("--output", f"capped at {room:,} tokens (the default is {output:,}): {prompt:,} prompt + {room:,} fills "
                     f"{window_name(m, window)}")
    return room


def fit_refusal(result: Any) -> str | None:
    """The one-line "does not fit" reason of a memory answer (None when it fits), naming the GPUs it needs."""
    if result.fits is not False:
        return None
    from calc.units import gib

    need = f"needs {result.min_gpus} GPUs" if result.min_gpus else "no GPU count up to 4096 fits"
    return (f"does not fit: {result.model} needs {gib(result.per_gpu_bytes):.2f} GiB per GPU on "
            f"{result.num_gpus} x {result.gpu} ({gib(result.gpu_memory_bytes):.2f} GiB each); {need}")


def require_fit(result: Any, flag: str = "--num-gpus") -> None:
    """Fit first: a deployment whose memory does not fit is refused before any time figure."""
    refusal = fit_refusal(result)
    if refusal is not None:
        raise LLMCalcError(flag, refusal)


def training_fit(m: Any, gpu: Any, num_gpus: int, seq: int, dtype: str = "bf16", recipe: str = "bf16-adam") -> None:
    """Fit first for a training answer at an assumed MFU (no plan is searched): some layout train-plan enumerates
    (TP within a node, PP, ZeRO 0-3, recomputation) fits at the default global batch, with the memory train-step
    prices (calc.training.step.memory_per_gpu), else the answer is refused with the search's verdict (what fits,
    or the GPUs it needs). Without a node type for the GPU (memory only, no plan is timed): the plain ZeRO-3,
    full-recomputation layout, else TP 2 / 4 / 8 (with SP) x PP up to 16 (ZeRO-3 at PP 1, ZeRO-1 under PP: DeepSpeed's
    pipeline engine takes stage 1 at most, Megatron's distributed optimizer shards the optimizer states), same memory
    settings (it refused Llama 3.1 405B on 4,096 V100s, which TP 8 x PP 16 holds). A searched plan needs no such
    check: the search refuses when nothing fits. ``dtype`` and ``recipe``: the run's (an fp32 run's states,
    activations and gathers, as the search prices them)."""
    from calc.sources.catalog import system_for_gpu
    from calc.training.cost import Efficiencies

    system, eff = system_for_gpu(gpu), Efficiencies(recipe=recipe)
    if system is None:  # memory alone: the ZeRO-3 layout, else TP within 8 GPUs x PP (ZeRO-1), full recomputation
        from calc.model.parallel import tp_split_problem
        from calc.training.layout import Layout
        from calc.training.step import layout_memory

        first = layout_memory(m, Layout(dp=num_gpus, zero=3, recompute="full"), 1, seq=seq, gpu=gpu, dtype=dtype, eff=eff)
        if first.fits is not False:
            return
        for tp in (t for t in (2, 4, 8) if num_gpus % t == 0 and tp_split_problem(m, t) is None):
            for pp in (p for p in (1, 2, 4, 8, 16) if num_gpus % (tp * p) == 0 and p <= m.num_layers):
                layout = Layout(tp=tp, pp=pp, dp=num_gpus // (tp * pp), zero=3 if pp == 1 else 1, recompute="full",
                                sp=True)
                if layout_memory(m, layout, 1, seq=seq, gpu=gpu, dtype=dtype, eff=eff).fits is not False:
                    return
        from calc.units import gib

        raise LLMCalcError("--num-gpus", f"does not fit: {m.name} needs {gib(first.per_gpu_bytes):.2f} GiB per GPU on "
                                         f"{num_gpus:,} x {gpu.name} ({gib(first.gpu_memory_bytes):.2f} GiB each) at ZeRO-3 "
                                         "with full recomputation, and no TP 2-8 x PP 1-16 layout holds it either (no "
                                         f"node type ships for {gpu.name}: give --system to search every layout, or "
                                         "more GPUs)")
    from calc.training.cost import ModelCost
    from calc.training.plan import SearchSpace, default_global_batch, enumerate_fitting, what_would_fit

    cost, batch = ModelCost(m, gpu, system, seq, dtype, eff=eff), default_global_batch(seq, num_gpus)
    if not enumerate_fitting(cost, num_gpus, batch, SearchSpace())[1]:
        raise LLMCalcError("--num-gpus", f"does not fit: no layout of {m.name} fits on {num_gpus} x {gpu.name} "
                           f"(global batch {batch} x {seq}){what_would_fit(cost, num_gpus, batch, SearchSpace())}")


def emit_outcome(result: Any, as_json: bool, explain: bool, view: Any, refusal: str | None, flag: str = "--num-gpus") -> None:
    """One exit code per outcome, whatever the format: the answer (table or JSON) on stdout, then, when the
    answer is "does not fit" / "nothing fits" (``refusal``), one error line on stderr and exit 2."""
    from calc.report.render import emit

    emit(result, as_json, explain, view)
    if refusal is not None:
        raise LLMCalcError(flag, refusal)


def memory_refusal(result: Any) -> str | None:
    """The error line of a memory answer that does not fit on its GPUs (training or fine-tuning), naming what fits:
    the cheapest change that fits on these GPUs (``fits_with``: the fine-tuning ladder, or calc.training.fixes), else
    the smallest GPU count."""
    if result.fits is not False:
        return None
    from calc.units import gib

    fixes = list(result.fits_with or [])
    more = f"{result.min_gpus} GPUs" if result.min_gpus else None
    tight = ""
    if fixes and getattr(result, "fits_with_bytes", None):
        from calc.report.confidence import change_fit

        fit, high = change_fit(result, result.fits_with_bytes)
        tight = (f", tight: its 80% band reaches {gib(high):.1f} GiB, above the {gib(result.gpu_memory_bytes):.1f} GiB "
                 "a GPU" if fit == "tight" else "")
    hint = (f"fits with {fixes[0]}{tight}" if fixes else f"fits on {more}" if more
            else "nothing tried fits (ZeRO-3, --recompute full, --offload, qlora, up to 512 GPUs)"
            if result.mode == "finetune" else "no ZeRO stage, recomputation or smaller micro-batch fits on these GPUs: "
            "raise --tp or --pp, or try train-plan")
    return (f"does not fit ({gib(result.per_gpu_bytes):.1f} GiB > {gib(result.gpu_memory_bytes):.1f} GiB per GPU on "
            f"{result.num_gpus} x {result.gpu}); {hint}")
