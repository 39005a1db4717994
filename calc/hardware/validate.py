"""`llmcalc validate MODEL`: run a few real decoder layers of the model in torch and compare the
measured prefill and decode-step times with the time model's prediction, with and without a
calibration.

The torch model is the spec's own architecture cut to ``layers`` blocks, with random weights: token
embedding (+ learned positions), blocks of norm -> QKV -> RoPE -> SDPA (GQA through enable_gqa) ->
output projection, norm -> MLP (gated or plain; parallel blocks share the input), final norm and the
output head over every token (as the FLOP count does). bf16 on a GPU, fp32 on a CPU. The prediction
is calc.serving.latency's roofline for the same cut model (``predict_phases``, the one call to
repoint when the serving model changes; in calc/serving/phases.py). MoE and MLA blocks are not built (refused with a reason).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.bench import TORCH_DTYPES, device_info, filled, import_torch, memory_guard, one_cpu_thread, require_free, time_fn
from calc.hardware.calibration import Calibration, check_device
from calc.specs import GPUSpec, ModelSpec

CPU_LAYERS, GPU_LAYERS = 2, 4


class Phase(BaseModel):
    name: str
    measured_s: float
    predicted_s: float
    error: float  # (predicted - measured) / measured, defaults
    calibrated_predicted_s: float | None
    calibrated_error: float | None


class ValidateResult(BaseModel):
    model: str
    layers: int
    model_layers: int
    device: str  # GPU or CPU
    device_name: str
    gpu: str
    dtype: str
    batch: int
    prompt: int
    phases: list[Phase]
    default_source: str
    calibration_source: str | None
    notes: list[str]
    explain: list[str]


Predict = Callable[[ModelSpec, GPUSpec, int, int, str, Calibration | None], tuple[float, float, str]]


def check_buildable(m: ModelSpec) -> None:
    if m.moe or m.mla:
        raise LLMCalcError("MODEL", f"{m.name} uses {'MoE' if m.moe else 'MLA'}; validate builds dense MHA/GQA blocks only "
                                    "(time its ops with `bench MODEL` instead)")


def cut_model(m: ModelSpec, layers: int) -> ModelSpec:
    """The spec cut to its first ``layers`` blocks (per-layer kinds cut alike, no MTP heads), validated."""
    data = m.model_dump()
    data.update(num_layers=layers)
    if data.get("layer_types"):
        data["layer_types"] = data["layer_types"][:layers]
    if "mtp_layers" in data:
        data["mtp_layers"] = 0
    return ModelSpec.model_validate(data)


def unbuilt_features(m: ModelSpec, prompt: int) -> list[str]:
    """What the torch blocks leave out that the spec has (each changes the time a little or not at all)."""
    out = []
    if m.position_embedding == "alibi":
        out.append("ALiBi biases are not added to the scores (SDPA without a bias)")
    if getattr(m, "qk_norm", "none") != "none":
        out.append("q/k norms are not built")
    if getattr(m, "attention_sinks", False):
        out.append("attention sinks are not built")
    window = getattr(m, "sliding_window", None)
    if window and prompt > window:
        out.append(f"sliding-window layers attend to all {prompt} tokens here, not the last {window}")
    return out


def _activation(torch: Any, name: str) -> Any:
    F = torch.nn.functional
    if name in ("silu", "swish"):
        return F.silu
    if name == "relu":
        return F.relu
    if name.startswith("gelu") and name != "gelu":
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu


class _Weights:
    """Random weights for the cut model, created once on the device."""

    def __init__(self, torch: Any, m: ModelSpec, layers: int, device: str, dtype: Any) -> None:
        self.torch, self.m = torch, m
        H, h, g, d = m.hidden_size, m.num_heads, m.kv_heads, m.dim_per_head

        def rand(*shape: int) -> Any:
            return filled(torch, shape, device, dtype)

        def bias(flag: bool, n: int) -> Any:
            return rand(n) if flag else None

        self.rand = rand
        self.embed = rand(m.vocab_size, H)
        self.positions = rand(m.max_position_embeddings + m.position_offset, H) if m.position_embedding == "learned" else None
        mlp_in = m.intermediate_size * (2 if m.gated_mlp else 1)
        self.blocks = [
            {"norm1": (rand(H), bias(m.has_norm_bias, H)), "norm2": (rand(H), bias(m.has_norm_bias, H)),
             "wqkv": rand(H, (h + 2 * g) * d), "bqkv": bias(m.qkv_bias, (h + 2 * g) * d),
             "wo": rand(h * d, H), "bo": bias(m.out_bias, H),
             "w_in": rand(H, mlp_in), "b_in": bias(m.mlp_bias, mlp_in),
             "w_out": rand(m.intermediate_size, H), "b_out": bias(m.mlp_bias, H)}
            for _ in range(layers)
        ]
        self.final_norm = (rand(H), bias(m.has_norm_bias, H))
        self.head = self.embed.t() if m.tied_embeddings else rand(H, m.vocab_size)
        self.act = _activation(torch, m.activation)

    def norm(self, x: Any, weights: tuple[Any, Any]) -> Any:
        F = self.torch.nn.functional
        w, b = weights
        if self.m.norm == "rmsnorm":
            return F.rms_norm(x, (x.shape[-1],), w)
        return F.layer_norm(x, (x.shape[-1],), w, b)


def _rope(torch: Any, x: Any, positions: Any, d: int) -> Any:
    """Rotary embedding, rotate-half form (Su et al. 2021, RoFormer eq. 34)."""
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))
    angles = positions.float()[:, None] * inv[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1).to(x.dtype), torch.cat([angles.sin()] * 2, -1).to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def forward(w: _Weights, ids: Any, start: int, cache: list[list[Any]]) -> Any:
    """Run the cut model on ``ids`` [B, S] at positions start..start+S-1, writing K/V into
    ``cache`` (per layer [k, v], each [B, g, capacity, d]) and attending to everything up to it."""
    torch, m = w.torch, w.m
    F = torch.nn.functional
    B, S = ids.shape
    h, g, d = m.num_heads, m.kv_heads, m.dim_per_head
    pos = torch.arange(start, start + S, device=ids.device)
    x = F.embedding(ids, w.embed)
    if w.positions is not None:
        x = x + w.positions[pos]
    for blk, (k_cache, v_cache) in zip(w.blocks, cache, strict=True):
        a = w.norm(x, blk["norm1"])
        qkv = F.linear(a, blk["wqkv"].t(), blk["bqkv"]).view(B, S, h + 2 * g, d).transpose(1, 2)
        q, k, v = qkv[:, :h], qkv[:, h:h + g], qkv[:, h + g:]
        if m.position_embedding == "rope":
            q, k = _rope(torch, q, pos, d), _rope(torch, k, pos, d)
        k_cache[:, :, start:start + S] = k
        v_cache[:, :, start:start + S] = v
        keys, values = k_cache[:, :, :start + S], v_cache[:, :, :start + S]
        att = F.scaled_dot_product_attention(q, keys, values, is_causal=S > 1, enable_gqa=h != g)
        att = F.linear(att.transpose(1, 2).reshape(B, S, h * d), blk["wo"].t(), blk["bo"])
        mlp_input = a if m.parallel_block else w.norm(x + att, blk["norm2"])
        inner = F.linear(mlp_input, blk["w_in"].t(), blk["b_in"])
        if m.gated_mlp:
            gate, up = inner.chunk(2, dim=-1)
            inner = w.act(gate) * up
        else:
            inner = w.act(inner)
        x = x + att + F.linear(inner, blk["w_out"].t(), blk["b_out"])
    if m.final_norm:
        x = w.norm(x, w.final_norm)
    return x @ w.head


def run_validate(
    m: ModelSpec, gpu: GPUSpec | None = None, layers: int | None = None, batch: int = 1, prompt: int | None = None,
    calibration_path: str | None = None, repeats: int | None = None, *, predict: Predict,
    progress: Callable[[str], None] = lambda stage: None,
) -> ValidateResult:
    """Measure prefill and one decode step of ``layers`` real blocks; predict both with ``predict``
    (calc.serving.phases.predict_phases, passed in so that hardware/ never imports serving/). ``progress``
    is told each stage as it starts (the CLI prints one line each on stderr)."""
    check_buildable(m)
    window = m.context_window
    if layers is not None and layers > m.num_layers:  # input checked before the first progress line
        raise LLMCalcError("--layers", f"{layers:,} exceeds {m.name}'s {m.num_layers} decoder blocks; give at most "
                                       f"{m.num_layers}")
    if prompt is not None and prompt + 1 > window:
        raise LLMCalcError("--prompt", f"{prompt:,} prompt tokens + 1 decoded exceed {m.name}'s context window of {window:,}")
    progress("importing torch and probing the device")
    torch = import_torch()
    info = device_info(torch)
    notes = list(info.notes)
    if info.is_gpu:
        from calc.sources.catalog import load_gpu

        if info.gpu is None:
            raise LLMCalcError("--gpu", f"'{info.device_name}' is not in the GPU catalog; the prediction needs its peaks")
        here = load_gpu(info.gpu)
        if gpu is not None and gpu.name != here.name:
            raise LLMCalcError("--gpu", f"this machine's GPU is {here.name} ({info.device_name}), not {gpu.name}; "
                                        "validate measures the GPU it runs on")
        device_spec, dtype = here, "bf16"
    else:
        if gpu is not None and gpu.arch != "cpu":
            raise LLMCalcError("--gpu", f"no GPU was found: validate measures this machine's CPU, not a {gpu.name}; "
                                        "omit --gpu (CPU figures) or run on that GPU")
        device_spec, dtype = gpu, "fp32"
        notes.append("CPU figures: the model is cut to a few layers and run in fp32 on one thread of this CPU")
    layers = layers or min(GPU_LAYERS if info.is_gpu else CPU_LAYERS, m.num_layers)
    prompt = prompt or min(2048 if info.is_gpu else 128, window - 1)
    repeats = repeats or (10 if info.is_gpu else 3)
    cut = cut_model(m, layers)
    notes += unbuilt_features(m, prompt)
    calibration = None
    if calibration_path:
        from calc.hardware.calibration import load_calibration

        calibration = load_calibration(calibration_path)
    if device_spec is None:  # a CPU without a device spec: the calibration's roofline, else a quick probe
        from calc.hardware.bench_model import cpu_device_spec, cpu_roofline

        if not (calibration and not calibration.is_gpu):
            progress("measuring this CPU's roofline (GEMM rate and copy bandwidth)")
        roofline = calibration.roofline if calibration and not calibration.is_gpu else cpu_roofline()
        device_spec = cpu_device_spec(roofline, info.device_name)
        notes.append(f"CPU roofline: {roofline.peak_tflops * 1e3:.0f} GFLOPS fp32, {roofline.peak_gb_s:.0f} GB/s ({roofline.source})")
    if calibration is not None:
        check_device(calibration, device_spec)

    from calc.model.params import count_params

    elem = 4 if dtype in ("fp32", "tf32") else 2
    d = cut.dim_per_head
    need = (count_params(cut).total_params + 2 * layers * batch * cut.kv_heads * (prompt + 1) * d
            + batch * prompt * (cut.vocab_size + 8 * cut.hidden_size)) * elem
    require_free(torch, info.is_gpu, need, "--layers", f"{layers} blocks of {m.name} with their KV cache and logits",
                 "build fewer --layers or validate a smaller model (bench MODEL times one layer's ops)")
    with memory_guard("--layers", "build fewer --layers or use a smaller --batch / --prompt"):
        progress(f"building {layers} of {m.num_layers} blocks of {m.name} ({dtype}, random weights)")
        w = _Weights(torch, cut, layers, info.device, getattr(torch, TORCH_DTYPES[dtype]))
        d = cut.dim_per_head
        cache = [[w.rand(batch, cut.kv_heads, prompt + 1, d), w.rand(batch, cut.kv_heads, prompt + 1, d)] for _ in range(layers)]
        ids = torch.randint(0, cut.vocab_size, (batch, prompt), device=info.device)
        step = torch.randint(0, cut.vocab_size, (batch, 1), device=info.device)
        with torch.inference_mode(), one_cpu_thread(torch, info.is_gpu):
            progress(f"timing prefill of {batch} x {prompt:,} tokens ({repeats} runs)")
            t_prefill = time_fn(torch, info.is_gpu, lambda: forward(w, ids, 0, cache), warmup=1, repeats=repeats)
            progress(f"timing decode steps ({repeats * 3} runs)")
            t_decode = time_fn(torch, info.is_gpu, lambda: forward(w, step, prompt, cache), warmup=2, repeats=repeats * 3)
    progress("predicting both phases")
    pre, dec, default_source = predict(cut, device_spec, batch, prompt, dtype, None)
    cal_pre = cal_dec = cal_source = None
    if calibration is not None:
        cal_pre, cal_dec, cal_source = predict(cut, device_spec, batch, prompt, dtype, calibration)

    def phase(name: str, measured: float, predicted: float, calibrated: float | None) -> Phase:
        return Phase(name=name, measured_s=measured, predicted_s=predicted, error=(predicted - measured) / measured,
                     calibrated_predicted_s=calibrated,
                     calibrated_error=None if calibrated is None else (calibrated - measured) / measured)

    phases = [phase("prefill", t_prefill.median_s, pre, cal_pre), phase("decode step", t_decode.median_s, dec, cal_dec)]
    if calibration is None:
        notes.append("no --calibration given: only the default efficiencies are checked "
                     "(write one with `llmcalc bench MODEL --save FILE`)")
    return ValidateResult(
        model=m.name, layers=layers, model_layers=m.num_layers, device="GPU" if info.is_gpu else "CPU",
        device_name=info.device_name, gpu=device_spec.name, dtype=dtype, batch=batch, prompt=prompt, phases=phases,
        default_source=default_source, calibration_source=cal_source, notes=notes,
        explain=[
            f"torch model: {layers} of {m.num_layers} blocks of {m.name} (+ embedding, final norm, output head), "
            f"random weights, {dtype}, SDPA; median of {repeats} prefills and {repeats * 3} decode steps",
            f"prefill: B={batch} x {prompt} tokens, causal; decode step: B={batch} x 1 token against {prompt} cached + itself",
            f"prediction: calc.serving.latency roofline for the same {layers}-block model on {device_spec.name} "
            f"(TTFT, and TPOT at context {prompt + 1})",
            "error = (predicted - measured) / measured",
        ],
    )
