"""Time all-reduce, all-gather and all-to-all across this machine's GPUs (NCCL), at the message sizes
a plan sends, and turn them into calibration points.

One process per GPU (torch.multiprocessing spawn, torch.distributed on 127.0.0.1). Each op is timed
on every rank after a barrier; the op's time is the slowest rank's median. Bus bandwidth as
nccl-tests defines it (NVIDIA nccl-tests, doc/PERFORMANCE.md): algBW = bytes / time and
busBW = algBW x 2(n-1)/n for all-reduce, x (n-1)/n for all-gather (bytes = the gathered output)
and all-to-all. efficiency = busBW / per-direction link bandwidth (the GPU spec's NVLink figure / 2),
the quantity calc.hardware.efficiency.collective_efficiency stands for. The gloo backend runs the
same code on CPU processes (tests), where efficiencies are against the ``link_gb_s`` given.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from typing import Any

from calc.hardware.calibration import OpPoint

KINDS = ("allreduce", "allgather", "alltoall")
BUS_FACTOR = {"allreduce": lambda n: 2 * (n - 1) / n, "allgather": lambda n: (n - 1) / n, "alltoall": lambda n: (n - 1) / n}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _op(dist: Any, kind: str, x: Any, out: Any) -> Any:
    if kind == "allreduce":
        return lambda: dist.all_reduce(x)
    if kind == "allgather":
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(out, x)
    return lambda: dist.all_to_all_single(out, x)


def _worker(rank: int, world: int, backend: str, port: int, sizes: list[int], repeats: int, queue: Any) -> None:
    import torch
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group(backend, rank=rank, world_size=world)
    on_gpu = backend == "nccl"
    if on_gpu:
        torch.cuda.set_device(rank)
    device, dtype = ("cuda", torch.bfloat16) if on_gpu else ("cpu", torch.float32)
    elem = 2 if on_gpu else 4
    results = []
    for kind in KINDS:
        for nbytes in sizes:
            n = max(nbytes // elem // world, 1) * world  # divisible by the ranks
            x = torch.ones(n // world if kind == "allgather" else n, device=device, dtype=dtype)
            out = torch.empty(n, device=device, dtype=dtype)
            fn = _op(dist, kind, x, out)
            for _ in range(2):
                fn()
            samples = []
            for _ in range(repeats):
                dist.barrier()
                if on_gpu:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if on_gpu:
                    torch.cuda.synchronize()
                samples.append(time.perf_counter() - t0)
            slowest = torch.tensor([statistics.median(samples)], dtype=torch.float64, device=device)
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            results.append((kind, n * elem, float(slowest.item())))
    if rank == 0:
        queue.put(results)
    dist.destroy_process_group()


def time_collectives(world: int, sizes: list[int], backend: str = "nccl", repeats: int = 10) -> list[tuple[str, int, float]]:
    """(kind, bytes, seconds) for every kind and size, over ``world`` processes."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_worker, args=(world, backend, _free_port(), sizes, repeats, queue), nprocs=world, join=True)
    return queue.get()


def collective_points(timings: list[tuple[str, int, float]], world: int, link_gb_s: float) -> dict[str, list[OpPoint]]:
    """Calibration points: size = bytes, efficiency = busBW / link (per direction)."""
    points: dict[str, list[OpPoint]] = {}
    for kind, nbytes, seconds in timings:
        bus = nbytes / seconds * BUS_FACTOR[kind](world)
        points.setdefault(kind, []).append(OpPoint(label=f"{kind} {world} ranks", size=nbytes, measured_s=seconds,
                                                   efficiency=min(bus / (link_gb_s * 1e9), 1.5)))
    return points
