"""`llmcalc bench`: measure achievable tensor-core throughput, copy bandwidth and the fused
parallel-layer GEMM (seed 000) on this machine's GPU, or on the CPU when there is none.

torch is imported only inside these functions (optional extra `bench`). A CPU run labels every
figure "CPU" and never reports it as a GPU peak.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.units import dtype_bytes

if TYPE_CHECKING:
    from calc.hardware.calibration import Calibration

TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "tf32": "float32", "fp32": "float32", "fp8": "float8_e4m3fn"}
GPU_SIZES = (1024, 2048, 4096, 8192)
CPU_SIZES = (128, 256, 512)

# Device-name fragments -> catalog name, most specific first (h200 before h20, l40s before l4).
_NAME_RULES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("h100", "pcie"), "h100-pcie"), (("h100",), "h100-sxm"), (("h200",), "h200"), (("h800",), "h800"),
    (("h20",), "h20"), (("a100", "40gb"), "a100-40g"), (("a100",), "a100-80g"), (("a800",), "a800"),
    (("b200",), "b200"), (("l40s",), "l40s"), (("l4",), "l4"), (("4090",), "rtx4090"), (("mi300x",), "mi300x"),
)


def match_gpu(device_name: str) -> str | None:
    """Catalog name for a torch device name, e.g. 'NVIDIA H100 80GB HBM3' -> 'h100-sxm'."""
    lowered = device_name.lower().replace("-", " ")
    words = set(lowered.split())
    for fragments, name in _NAME_RULES:
        if all(f in words or (len(f) > 3 and f in lowered) for f in fragments):
            return name
    return None


def import_torch() -> Any:
    import warnings

    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    try:
        import torch
    except ImportError:
        raise LLMCalcError("bench", "torch is not installed; run: pip install 'llmcalc[bench]' (torch==2.13.0)") from None
    return torch


@contextlib.contextmanager
def one_cpu_thread(torch: Any, on_gpu: bool) -> Iterator[None]:
    """CPU runs time on one thread: on shared or virtual CI machines the intra-op thread pool's
    wake-ups cost milliseconds per small op and swamp what is measured. GPU runs are untouched."""
    if on_gpu:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def memory_guard(flag: str, advice: str) -> Iterator[None]:
    """Running out of device (or host) memory while measuring is one line naming ``flag``, not a traceback."""
    try:
        yield
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError; so is a failed CPU allocation
        text = str(exc).lower()
        if "out of memory" not in text and "can't allocate" not in text:
            raise
        raise LLMCalcError(flag, f"does not fit in this device's memory ({str(exc).splitlines()[0][:120]}); {advice}") from None


def require_free(torch: Any, is_gpu: bool, need: int, flag: str, what: str, advice: str) -> None:
    """Refuse up front a run needing more than 90% of the free device (or host) memory: on a CPU the
    kernel's OOM killer ends the process, leaving no error for memory_guard to catch."""
    if is_gpu:
        free = torch.cuda.mem_get_info()[0]
    else:
        try:
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX hosts
            return
    if need > 0.9 * free:
        raise LLMCalcError(flag, f"{what} holds {need / 1e9:,.1f} GB but this {'GPU' if is_gpu else 'host'} has "
                                 f"{free / 1e9:,.1f} GB free; {advice}")


def filled(torch: Any, shape: tuple[int, ...], device: str, dtype: Any) -> Any:
    """A tensor to time ops on. GPU: small random values (all-zero operands draw less power and
    can clock higher). CPU: a constant, since drawing gigabytes of random numbers takes seconds
    there and the values do not change a CPU kernel's time (no zeros, no denormals)."""
    if device == "cpu":
        return torch.full(shape, 0.01, dtype=dtype)
    return torch.empty(*shape, device=device, dtype=dtype).uniform_(-0.02, 0.02)


class DeviceInfo(BaseModel):
    """The device torch sees: CUDA GPU 0 when there is one, else the CPU (labelled so)."""

    is_gpu: bool
    device: str  # torch device string
    device_name: str
    gpu: str | None  # catalog name matched from the device name
    gpu_count: int
    notes: list[str]


def device_info(torch: Any) -> DeviceInfo:
    if not torch.cuda.is_available():
        return DeviceInfo(is_gpu=False, device="cpu", device_name="CPU", gpu=None, gpu_count=0,
                          notes=["no GPU was found: these are CPU figures at small sizes, not GPU peaks"])
    name = torch.cuda.get_device_name(0)
    gpu = match_gpu(name)
    notes = [] if gpu else [f"'{name}' is not in the GPU catalog: figures are reported without a fraction of peak"]
    return DeviceInfo(is_gpu=True, device="cuda", device_name=name, gpu=gpu, gpu_count=torch.cuda.device_count(), notes=notes)


class Timing(BaseModel):
    median_s: float
    min_s: float
    max_s: float
    repeats: int


class GemmTiming(BaseModel):
    label: str
    m: int
    k: int
    n: int
    timing: Timing
    achieved_tflops: float
    fraction_of_peak: float | None


class CopyTiming(BaseModel):
    bytes_per_copy: int
    timing: Timing
    achieved_gb_s: float
    fraction_of_spec: float | None


class FusedTiming(BaseModel):
    model: str
    tokens: int
    separate: Timing
    fused: Timing
    speedup_pct: float
    outputs_allclose: bool
    bytes_separate: float
    bytes_fused: float


class BenchResult(BaseModel):
    device: str  # "GPU" or "CPU"
    device_name: str
    is_gpu: bool
    gpu: str | None
    dtype: str
    torch_version: str
    cuda_version: str | None
    peak_tflops: float | None
    gemms: list[GemmTiming]
    copy_bandwidth: CopyTiming
    fused: FusedTiming | None
    notes: list[str]


def time_fn(torch: Any, on_gpu: bool, fn: Callable[[], Any], warmup: int, repeats: int) -> Timing:
    """Median/min/max seconds of fn(), after warm-up; CUDA events on a GPU, perf_counter on CPU."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if on_gpu:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t0)
    return Timing(median_s=statistics.median(samples), min_s=min(samples), max_s=max(samples), repeats=repeats)


def _matmul(torch: Any, dtype: str) -> Callable[[Any, Any], Any]:
    if dtype != "fp8":
        return torch.matmul
    one = torch.ones((), device="cuda")
    return lambda a, b: torch._scaled_mm(a, b.t().contiguous().t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def _operands(torch: Any, device: str, dtype: str, m: int, k: int, n: int) -> tuple[Any, Any]:
    base = torch.bfloat16 if dtype == "fp8" else getattr(torch, TORCH_DTYPES[dtype])
    a = torch.randn(m, k, device=device, dtype=base) / k**0.5
    b = torch.randn(k, n, device=device, dtype=base)
    if dtype == "fp8":
        a, b = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    return a, b


def run_bench(
    dtype: str = "bf16", sizes: list[int] | None = None, model: str | None = None, batch_tokens: int = 4096,
    repeats: int = 20, progress: Callable[[str, int], Any] | None = None,
) -> BenchResult:
    """GEMM sweep, device copy bandwidth and (with ``model``) fused vs separate QKV + MLP-in GEMMs."""
    if dtype not in TORCH_DTYPES:  # before importing torch: a bad option costs nothing
        raise LLMCalcError("--dtype", f"bench supports {', '.join(TORCH_DTYPES)}; got {dtype!r}")
    torch = import_torch()
    info = device_info(torch)
    on_gpu, device, device_name, gpu_name, notes = info.is_gpu, info.device, info.device_name, info.gpu, list(info.notes)
    if not on_gpu:
        if dtype == "fp8":
            raise LLMCalcError("--dtype", "fp8 GEMMs need a Hopper-class GPU; none was found")
        repeats = min(repeats, 5)
    if dtype in ("tf32", "fp32"):
        torch.backends.cuda.matmul.allow_tf32 = dtype == "tf32"
    peak = None
    if gpu_name:
        from calc.hardware.peaks import peak_tflops
        from calc.sources.catalog import load_gpu

        peak = peak_tflops(load_gpu(gpu_name), dtype)
    shapes = [("square", s, s, s) for s in (sizes or (GPU_SIZES if on_gpu else CPU_SIZES))]
    fused_shapes = None
    if model:
        from calc.model.flops import fused_parallel_shapes
        from calc.sources.catalog import load_model

        fused_shapes = fused_parallel_shapes(load_model(model, "--model"), batch_tokens, "bf16" if dtype == "fp8" else dtype)
        shapes += [(f"{model} {g.name}", int(g.m), g.k, g.n) for g in [*fused_shapes.separate, fused_shapes.fused]]
    matmul = _matmul(torch, dtype)
    gemms = []
    for label, m, k, n in shapes:
        if progress:
            progress(f"GEMM {m}x{k}x{n}", 1)
        a, b = _operands(torch, device, dtype, m, k, n)
        t = time_fn(torch, on_gpu, lambda a=a, b=b: matmul(a, b), warmup=3, repeats=repeats)
        tflops = 2 * m * k * n / t.median_s / 1e12
        gemms.append(GemmTiming(label=label, m=m, k=k, n=n, timing=t, achieved_tflops=tflops,
                                fraction_of_peak=tflops / peak if peak else None))
        del a, b
    if progress:
        progress("copy bandwidth", 1)
    copy = _copy_bandwidth(torch, device, on_gpu, repeats, gpu_name)
    fused = None
    if fused_shapes is not None:
        if progress:
            progress("fused vs separate", 1)
        fused = _fused(torch, device, on_gpu, dtype, fused_shapes, repeats)
        notes += [fused_shapes.note] if fused_shapes.note else []
    return BenchResult(
        device="GPU" if on_gpu else "CPU", device_name=device_name, is_gpu=on_gpu, gpu=gpu_name, dtype=dtype,
        torch_version=torch.__version__, cuda_version=torch.version.cuda, peak_tflops=peak,
        gemms=gemms, copy_bandwidth=copy, fused=fused, notes=notes,
    )


def _copy_bandwidth(torch: Any, device: str, on_gpu: bool, repeats: int, gpu_name: str | None) -> CopyTiming:
    """dst.copy_(src): each copy reads and writes the buffer, so bytes moved = 2 x size."""
    size = 2**30 if on_gpu else 2**26
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = time_fn(torch, on_gpu, lambda: dst.copy_(src), warmup=2, repeats=repeats)
    gb_s = 2 * size / t.median_s / 1e9
    spec = None
    if gpu_name:
        from calc.sources.catalog import load_gpu

        spec = gb_s / (load_gpu(gpu_name).hbm_tb_s * 1000)
    return CopyTiming(bytes_per_copy=size, timing=t, achieved_gb_s=gb_s, fraction_of_spec=spec)


def _fused(torch: Any, device: str, on_gpu: bool, dtype: str, shapes: Any, repeats: int) -> FusedTiming:
    """Seed 000: x@W_qkv and x@W_mlp_in separately vs x@concat(W_qkv, W_mlp_in) once."""
    base = torch.bfloat16 if dtype == "fp8" else getattr(torch, TORCH_DTYPES[dtype])
    x = torch.randn(shapes.tokens, shapes.hidden, device=device, dtype=base) / shapes.hidden**0.5
    w_qkv = torch.randn(shapes.hidden, shapes.qkv_out, device=device, dtype=base)
    w_mlp = torch.randn(shapes.hidden, shapes.mlp_in_out, device=device, dtype=base)
    w_fused = torch.cat([w_qkv, w_mlp], dim=1)
    separate = time_fn(torch, on_gpu, lambda: (x @ w_qkv, x @ w_mlp), warmup=3, repeats=repeats)
    fused = time_fn(torch, on_gpu, lambda: x @ w_fused, warmup=3, repeats=repeats)
    together = torch.cat([x @ w_qkv, x @ w_mlp], dim=1)
    tol = 1e-2 if base in (torch.bfloat16, torch.float16) else 1e-4
    close = bool(torch.allclose(together.float(), (x @ w_fused).float(), rtol=tol, atol=tol))
    return FusedTiming(
        model=shapes.model, tokens=shapes.tokens, separate=separate, fused=fused,
        speedup_pct=100 * (separate.median_s / fused.median_s - 1), outputs_allclose=close,
        bytes_separate=sum(g.bytes for g in shapes.separate), bytes_fused=shapes.fused.bytes,
    )


def calibration_from(result: BenchResult) -> Calibration:
    """The calibration `bench --save` (without --model) writes: each square GEMM and the copy as
    points. GPU: fractions of the catalog peak. CPU: of the best rates measured (labelled 'cpu')."""
    from calc.hardware.calibration import CPU_DEVICE, Calibration, Roofline, measured_point

    if result.is_gpu and result.gpu is None:
        raise LLMCalcError("--save", f"'{result.device_name}' is not in the GPU catalog; a calibration needs its peak")
    if result.is_gpu:
        from calc.sources.catalog import load_gpu

        assert result.peak_tflops is not None
        roofline = Roofline(peak_tflops=result.peak_tflops, peak_gb_s=load_gpu(result.gpu).hbm_tb_s * 1000,
                            source=f"{result.gpu} datasheet peak ({result.dtype}) and HBM bandwidth")
    else:
        roofline = Roofline(peak_tflops=max(g.achieved_tflops for g in result.gemms),
                            peak_gb_s=result.copy_bandwidth.achieved_gb_s,
                            source="measured on this CPU (no published peak): best GEMM rate and copy bandwidth")
    elem = float(dtype_bytes("bf16" if result.dtype == "fp8" else result.dtype))
    gemms = [measured_point("gemm", f"{g.label} {g.m}x{g.k}x{g.n}", 2.0 * g.m * g.k * g.n,
                            (g.m * g.k + g.k * g.n + g.m * g.n) * elem, g.timing.median_s, roofline) for g in result.gemms]
    c = result.copy_bandwidth
    copy = measured_point("memory", "copy", 0.0, 2.0 * c.bytes_per_copy, c.timing.median_s, roofline)
    return Calibration(
        gpu=result.gpu or CPU_DEVICE, device_name=result.device_name, is_gpu=result.is_gpu, dtype=result.dtype,
        date=_dt.date.today().isoformat(), torch_version=result.torch_version, cuda_version=result.cuda_version,
        roofline=roofline, ops={"gemm": gemms, "memory": [copy]}, notes=result.notes,
    )
