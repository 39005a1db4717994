"""`llmcalc bench MODEL`: time a model's own ops (calc.hardware.model_ops) with torch and turn the
times into a calibration (calc.hardware.calibration: fraction of peak and of the roofline, by size).

On a GPU the roofline is the catalog GPU's datasheet peak and HBM bandwidth. On a CPU there is no
published peak: the roofline is this host's best measured GEMM rate and copy bandwidth, the
calibration is labelled "cpu", and a device spec of the host is written beside it so that
`latency --gpu HOST.yaml --calibration FILE` can read it back. torch is imported inside functions only.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.hardware.bench import TORCH_DTYPES, Timing, device_info, filled, import_torch, memory_guard, one_cpu_thread, require_free, time_fn
from calc.hardware.calibration import CPU_DEVICE, Calibration, Roofline, measured_point, roofline_seconds
from calc.hardware.model_ops import Op, SizePlan, copy_op, model_ops
from calc.specs import GPUSpec, ModelSpec

GPU_COPY_ELEMENTS = 2**29  # 1 GiB of bf16: far beyond L2, so HBM streams
CPU_COPY_ELEMENTS = 2**25  # 128 MiB of fp32: beyond a server CPU's last-level cache
CPU_DTYPE = "fp32"  # CPUs run bf16 matmuls far below their fp32 rate; validate uses fp32 on CPU too


class OpTiming(BaseModel):
    kind: str
    label: str
    phase: str
    tokens: int
    shape: str
    flops: float
    bytes: float
    timing: Timing
    roofline_s: float
    efficiency: float  # of the peak rate in the op's size unit (FLOPs or bytes)
    roofline_efficiency: float


class ModelBenchResult(BaseModel):
    model: str
    tp: int
    device: str  # "GPU" or "CPU"
    device_name: str
    gpu: str
    dtype: str
    torch_version: str
    cuda_version: str | None
    peak_tflops: float
    peak_gb_s: float
    roofline_source: str
    ops: list[OpTiming]
    calibration: Calibration
    notes: list[str]


def _shape(op: Op) -> str:
    if op.kind == "gemm":
        return f"{op.count} x " * (op.count > 1) + f"{op.m}x{op.k}x{op.n}"
    if op.kind == "attention":
        return f"B={op.count} h={op.heads} g={op.kv_heads} q={op.m} kv={op.context} d={op.d_qk}"
    return f"{op.elements:,} elements" if op.norm == "copy" else f"{op.tokens}x{op.n}"


def _runner(torch: Any, op: Op, device: str, dtype: Any, weights: dict) -> Callable[[], Any]:
    """A closure running ``op`` once on random data (values do not change the time)."""
    def rand(*shape: int) -> Any:
        return filled(torch, shape, device, dtype)

    F = torch.nn.functional
    if op.kind == "gemm":
        key = (op.label, op.k, op.n, op.count)  # reuse a layer's weights across token counts
        if key not in weights:
            weights[key] = rand(op.count, op.k, op.n) if op.count > 1 else rand(op.k, op.n)
        w = weights[key]
        x = rand(op.count, op.m, op.k) if op.count > 1 else rand(op.m, op.k)
        return (lambda: torch.bmm(x, w)) if op.count > 1 else (lambda: x @ w)
    if op.kind == "attention":
        q = rand(op.count, op.heads, op.m, op.d_qk)
        k = rand(op.count, op.kv_heads, op.context, op.d_qk)
        v = rand(op.count, op.kv_heads, op.context, op.d_v)
        gqa = op.heads != op.kv_heads
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=op.phase == "prefill", enable_gqa=gqa)
    if op.norm == "copy":
        src = torch.empty(op.elements, device=device, dtype=dtype)
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)
    x = rand(op.tokens, op.n)
    if op.norm == "rmsnorm":
        w = rand(op.n)
        return lambda: F.rms_norm(x, (op.n,), w)
    if op.norm == "layernorm":
        w, b = rand(op.n), rand(op.n)
        return lambda: F.layer_norm(x, (op.n,), w, b)
    if op.norm == "gated":
        up = rand(op.tokens, op.n)
        return lambda: F.silu(x) * up
    return lambda: F.gelu(x)


def bench_bytes(ops: list[Op], elem: int) -> int:
    """Bytes a run holds at its peak: every GEMM weight (kept to reuse across token counts) plus the
    largest op's inputs and output."""
    weights = {(op.label, op.k, op.n, op.count): op.count * op.k * op.n for op in ops if op.kind == "gemm"}

    def operands(op: Op) -> int:
        if op.kind == "gemm":
            return op.count * op.m * (op.k + op.n)
        if op.kind == "attention":
            return op.count * (op.heads * op.m + op.kv_heads * op.context) * (op.d_qk + op.d_v)
        return 2 * max(op.elements, op.tokens * op.n)

    return (sum(weights.values()) + max(map(operands, ops), default=0)) * elem


def _require_memory(torch: Any, is_gpu: bool, ops: list[Op], elem: int, model: str) -> None:
    """Refuse up front a run that cannot fit (calc.hardware.bench.require_free)."""
    require_free(torch, is_gpu, bench_bytes(ops, elem), "--tp", f"timing {model}'s ops (one layer's weights at every shape)",
                 "give a larger --tp (each rank's slice) or bench a smaller model")


def host_memory_gb() -> float:
    """Physical memory of this host in GB (for the CPU device spec)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX hosts
        return 16.0


def cpu_device_spec(roofline: Roofline, device_name: str) -> GPUSpec:
    """A device spec of this CPU whose peaks are the measured roofline (fp32 matmuls count as tf32)."""
    return GPUSpec(
        name=CPU_DEVICE, description=f"this host's CPU ({device_name}), peaks measured by llmcalc bench",
        source=roofline.source, vendor="host", arch="cpu",
        datasheet_peak_tflops={"tf32": roofline.peak_tflops}, memory_gb=round(host_memory_gb(), 1),
        hbm_tb_s=roofline.peak_gb_s / 1000,
        peak_note="no published peak: the best GEMM rate and copy bandwidth measured on this host",
    )


def _probe_cpu_roofline(torch: Any, repeats: int) -> tuple[float, float]:
    """Best fp32 GEMM rate (TFLOPS) and copy bandwidth (GB/s) of this CPU, measured quickly."""
    best = 0.0
    for size in (256, 512, 1024):
        a, b = torch.rand(size, size), torch.rand(size, size)
        t = time_fn(torch, False, lambda a=a, b=b: a @ b, warmup=2, repeats=repeats)
        best = max(best, 2 * size**3 / t.min_s / 1e12)
    src = torch.ones(2**27, dtype=torch.uint8)  # 128 MiB, as the copy op
    dst = torch.zeros_like(src)
    t = time_fn(torch, False, lambda: dst.copy_(src), warmup=2, repeats=repeats)
    return best, 2 * src.numel() / t.min_s / 1e9


def cpu_roofline(repeats: int = 5) -> Roofline:
    """This CPU's measured roofline (used by `validate` on a CPU without a calibration)."""
    torch = import_torch()
    with one_cpu_thread(torch, False):
        tflops, gb_s = _probe_cpu_roofline(torch, repeats)
    return Roofline(peak_tflops=tflops, peak_gb_s=gb_s, source="measured on this CPU: best fp32 GEMM (256-1024 cube) and copy")


def _collectives(info: Any, m: ModelSpec, plan: SizePlan, tp: int, points: dict, results: list) -> list[str]:
    """NCCL all-reduce / all-gather / all-to-all at the plan's TP message sizes (tokens x H x 2 bytes),
    over the TP group (all GPUs when --tp 1); skipped with a note on one GPU or a CPU."""
    if info.gpu_count < 2:
        return [f"collectives skipped: {'1 GPU' if info.is_gpu else 'no GPU'} visible; all-reduce/all-gather/all-to-all need > 1"]
    from calc.hardware.bench_collectives import BUS_FACTOR, collective_points, time_collectives
    from calc.sources.catalog import load_gpu

    link = load_gpu(info.gpu).interconnect_gb_s / 2
    if link <= 0:
        return [f"collectives skipped: {info.gpu} has no GPU-GPU link in its spec to compare with"]
    world = min(tp if tp > 1 else info.gpu_count, info.gpu_count)
    sizes = sorted({t * m.hidden_size * 2 for t in (*plan.prefill_tokens, *plan.decode_batches)})
    timings = time_collectives(world, sizes, "nccl", plan.repeats)
    for kind, group in collective_points(timings, world, link).items():
        points[kind] = group
        for p in group:
            assert p.measured_s is not None
            results.append(OpTiming(kind=kind, label=p.label, phase="any", tokens=0, shape=f"{p.size:,.0f} B", flops=0.0,
                                    bytes=p.size, timing=Timing(median_s=p.measured_s, min_s=p.measured_s, max_s=p.measured_s,
                                                                repeats=plan.repeats),
                                    roofline_s=p.size * BUS_FACTOR[kind](world) / (link * 1e9), efficiency=p.efficiency,
                                    roofline_efficiency=p.efficiency))
    return [f"collectives over {world} GPUs at the TP message sizes; efficiency = busBW / {link:g} GB/s per direction"]


def run_model_bench(
    m: ModelSpec, plan: SizePlan, tp: int = 1, dtype: str = "bf16", repeats: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> ModelBenchResult:
    """Time every op of ``model_ops(m, plan, tp)`` and return them with the calibration they make."""
    torch = import_torch()
    info = device_info(torch)
    notes = list(info.notes)
    if not info.is_gpu:
        if dtype != CPU_DTYPE:
            notes.append(f"CPU run: ops timed in {CPU_DTYPE}, not {dtype} (CPUs have no fast {dtype} matmul), on one thread")
        dtype = CPU_DTYPE
    elif info.gpu is None:
        raise LLMCalcError("bench", f"'{info.device_name}' is not in the GPU catalog: add a GPU YAML so efficiencies have a peak")
    if dtype not in TORCH_DTYPES or dtype == "fp8":
        raise LLMCalcError("--dtype", f"bench MODEL times bf16, fp16, tf32 or fp32 ops; got {dtype!r}")
    if info.is_gpu:
        # fp32 weights run TF32 matmuls, as the time models assume (calc.units.COMPUTE_DTYPE)
        torch.backends.cuda.matmul.allow_tf32 = dtype in ("tf32", "fp32")
    ops = [*model_ops(m, plan, tp), copy_op(GPU_COPY_ELEMENTS if info.is_gpu else CPU_COPY_ELEMENTS)]
    elem = 4 if dtype in ("fp32", "tf32") else 2
    repeats = repeats or plan.repeats
    torch_dtype = getattr(torch, TORCH_DTYPES[dtype])
    _require_memory(torch, info.is_gpu, ops, elem, m.name)
    weights: dict = {}
    timed = []
    with memory_guard("--sizes", "measure fewer tokens (--seq, --batch, --sizes small) or a larger --tp"), \
            one_cpu_thread(torch, info.is_gpu):
        for op in ops:
            if progress:
                progress(f"{op.phase} {op.tokens}: {op.label}")
            fn = _runner(torch, op, info.device, torch_dtype, weights)
            timed.append((op, time_fn(torch, info.is_gpu, fn, warmup=1 if not info.is_gpu else 3, repeats=repeats)))
    weights.clear()
    if info.is_gpu:
        from calc.hardware.peaks import peak_tflops
        from calc.sources.catalog import load_gpu

        spec = load_gpu(info.gpu)
        roofline = Roofline(peak_tflops=peak_tflops(spec, dtype), peak_gb_s=spec.hbm_tb_s * 1000,
                            source=f"{spec.name} datasheet: {peak_tflops(spec, dtype):g} TFLOPS {dtype}, {spec.hbm_tb_s:g} TB/s")
    else:
        with one_cpu_thread(torch, False):
            tflops, gb_s = _probe_cpu_roofline(torch, 5)
        best_gemm = max(op.flops / t.median_s / 1e12 for op, t in timed if op.kind != "memory")
        # bandwidth from the two DRAM-sized copies only: small norms/activations run from cache, above it
        copy = max(op.elements_moved * elem / t.median_s / 1e9 for op, t in timed if op.norm == "copy")
        roofline = Roofline(peak_tflops=max(tflops, best_gemm), peak_gb_s=max(gb_s, copy),
                            source="measured on this CPU (no published peak): best fp32 FLOP rate, best 128 MiB copy")
    results, points = [], {}
    for op, t in timed:
        nbytes = op.elements_moved * elem
        p = measured_point(op.kind, f"{op.phase} {op.tokens}: {op.label}", op.flops, nbytes, t.median_s, roofline)
        assert p.roofline_efficiency is not None
        roof = roofline_seconds(op.flops, nbytes, roofline)
        results.append(OpTiming(kind=op.kind, label=op.label, phase=op.phase, tokens=op.tokens, shape=_shape(op),
                                flops=op.flops, bytes=nbytes, timing=t, roofline_s=roof,
                                efficiency=p.efficiency, roofline_efficiency=p.roofline_efficiency))
        points.setdefault(op.kind, []).append(p)
    notes += _collectives(info, m, plan, tp, points, results)
    calibration = Calibration(
        gpu=info.gpu or CPU_DEVICE, device_name=info.device_name, is_gpu=info.is_gpu, dtype=dtype,
        date=_dt.date.today().isoformat(), torch_version=torch.__version__, cuda_version=torch.version.cuda,
        model=m.name, tp=tp, roofline=roofline, ops=points, notes=notes,
    )
    return ModelBenchResult(
        model=m.name, tp=tp, device="GPU" if info.is_gpu else "CPU", device_name=info.device_name, gpu=calibration.gpu,
        dtype=dtype, torch_version=torch.__version__, cuda_version=torch.version.cuda, peak_tflops=roofline.peak_tflops,
        peak_gb_s=roofline.peak_gb_s, roofline_source=roofline.source, ops=results, calibration=calibration, notes=notes,
    )
