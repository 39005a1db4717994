"""The memory result shared by inference and training, the fit verdict and the min-GPU search."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from calc.memory.weights import WeightsDtype
from calc.specs import GPUSpec

DEFAULT_RESERVE_GIB = 1.0  # CUDA context (~0.5 GiB) plus allocator slack, per GPU


class MemoryResult(BaseModel):
    """Memory by category, in bytes (integers), totals and per GPU, with the fit verdict.

    What each total covers, by mode (``per_gpu`` is the one per-GPU breakdown in every mode; it sums to
    ``per_gpu_bytes``):

    - infer: ``weights_bytes``, ``kv_cache_bytes`` and ``activation_bytes`` are the whole deployment's (all GPUs);
      ``total_bytes`` their sum with ``reserve_bytes`` (per GPU x GPUs).
    - train: ``weights_bytes``, ``gradient_bytes`` and ``optimizer_bytes`` are one model copy's (as the
      table's Totals say); ``activation_bytes`` is the fullest GPU's (activations are per micro-batch and per rank,
      not a model-copy quantity); ``total_bytes`` = ``per_gpu_bytes`` x GPUs.
    """

    model: str
    mode: str
    dtype: str
    weights_dtype: WeightsDtype = ""
    kv_dtype: str | None
    batch: int
    seq: int
    tp: int
    pp: int
    dp: int
    cp: int
    num_gpus: int
    weights_bytes: int
    kv_cache_bytes_per_token: int
    kv_cache_bytes: int
    activation_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    reserve_bytes: int
    total_bytes: int
    per_gpu: dict[str, int]
    per_gpu_bytes: int
    gpu: str | None
    gpu_memory_bytes: int | None
    fits: bool | None
    headroom_bytes_per_gpu: int | None
    min_gpus: int | None
    # training, a plan that does not fit: the cheapest change of ZeRO stage, recomputation or micro-batch that fits it on
    # these GPUs, with its peak (calc.training.fixes, the change train-step names); [] otherwise
    fits_with: list[str] = []
    weight_bytes_by_group: dict[str, int] = {}  # embedding, attention, mlp, experts, ... (as priced)
    assumptions: list[str]
    explain: list[str]
    warnings: list[str] = []
    stack: str | None = None  # the training stack whose memory settings priced it (calc.training.stack.MEMORY)
    stack_note: str | None = None  # the peak under the other memory mode's default stack, when it differs
    textbook_activation_bytes: int | None = None  # training: Korthikanti et al. 2022, beside the per-tensor figure
    # infer with a GPU: the default serving engine's verdict on the same batch (calc.serving.capacity.EngineFit), which
    # keeps back what the tensor count does not; None in training modes or when the engine cannot take the request
    engine_fit: dict[str, Any] | None = None
    # infer: the KV cache as stored on all GPUs (a latent, or KV heads fewer than TP ranks, copied onto every rank),
    # beside kv_cache_bytes (one copy per request); total_bytes counts the stored one
    kv_cache_stored_bytes: int | None = None
    # infer: the weights as stored on all GPUs (calc.memory.weights.weights_stored_bytes: the tensors vLLM keeps whole
    # on every TP rank, MLA's latent down-projections and the routers, once a rank), beside weights_bytes (the model's)
    weights_stored_bytes: int | None = None


def _verdict(gpu: GPUSpec | None, per_gpu_bytes: int, min_gpus: Callable[[], int | None]) -> dict:
    if gpu is None:
        return {"gpu": None, "gpu_memory_bytes": None, "fits": None, "headroom_bytes_per_gpu": None, "min_gpus": None}
    headroom = gpu.cuda_total_bytes - per_gpu_bytes
    return {
        "gpu": gpu.name,
        "gpu_memory_bytes": gpu.cuda_total_bytes,
        "fits": headroom >= 0,
        "headroom_bytes_per_gpu": headroom,
        "min_gpus": min_gpus(),
    }


def _search_min_gpus(fits_on: Callable[[int], bool | None], limit: int = 4096, grows: bool = True,
                     unit: int = 1) -> int | None:
    """The smallest GPU count ``fits_on`` accepts (None: a count the layout cannot take), trying every count to 8,
    ``unit`` (the layout's TP x PP x CP) x DP for DP 1 to 8, and whole nodes of 8, in increasing order up to ``limit``
    (TP 4 x PP 3 tries 12, 24, 36, ...: whole nodes alone would skip 12 and 36). ``grows`` False: more GPUs save no
    memory per GPU (ZeRO 0 replicates every state), so the first count the layout takes answers: it, if it fits
    there, else none.

    >>> _search_min_gpus(lambda n: None if n % 12 else n >= 12, unit=12)
    12
    >>> _search_min_gpus(lambda n: None if n % 12 else n >= 100, unit=12)   # 12 x 8 = 96 short; 120 = 15 nodes
    120
    """
    counts = sorted({*range(1, 9), *(unit * dp for dp in range(1, 9)), *range(16, limit + 1, 8)})
    for n in (c for c in counts if c <= limit):
        fits = fits_on(n)
        if fits:
            return n
        if fits is False and not grows:
            return None
    return None
