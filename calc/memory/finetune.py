"""Fine-tuning (and per-tensor training) memory per GPU: full, LoRA, QLoRA, DoRA, with optimizer states,
sharding (ZeRO / FSDP, TP, PP), CPU offload, activations tensor by tensor and the allocator's reserves.

Peak per GPU = persistent + max(forward end, backward end) + transients, where
  persistent  = weights (frozen base + trainable) + fp32 master + optimizer states (+ gradients when they
                outlive the step: gradient accumulation)
  forward end = every saved activation + the logits / loss buffers (gradients do not exist yet:
                zero_grad(set_to_none=True))
  backward end= every gradient (activations are all freed by then; in between the sum moves linearly
                from one end to the other, so the larger end is the peak)
The allocator's figure (torch.cuda.max_memory_reserved) is the allocated peak x (1 + fragmentation);
the device also holds the CUDA context, outside PyTorch's counters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.memory.activations import (
    RECOMPUTE_LEVELS,
    TRAINING_LOSSES,
    Buffer,
    LayerSetup,
    korthikanti_layer_bytes,
    lm_head_buffers,
    recompute_problem,
    stage_activations,
)
from calc.memory.optimizers import (
    check_optimizer,
    is_paged,
    master_bytes,
    optimizer_state_bytes,
    param_dtype_bytes,
)
from calc.memory.pipeline import CONTIGUOUS, StageSplit, rank_layers, stage_params
from calc.memory.result import _search_min_gpus, _verdict
from calc.memory.training import (
    DEFAULT_CUDA_CONTEXT_GIB,
    DEFAULT_FSDP_LAYERS_IN_FLIGHT,
    FSDP_REDUCE_BYTES,
    HF_MEMORY,
    MAX_FRAGMENTATION,
    fsdp_in_flight_bytes,
    gradients_persist,
    training_bytes_per_gpu,
)
from calc.model.lora import GROUPS, adapted_matrices, layer_adapter_params, lora_params, parse_targets
from calc.model.parallel import check_layout, check_sequence_parallel, layers_per_stage
from calc.model.params import Tensor, layer_blocks, layer_kinds, model_tensors, total_params
from calc.sanity import check_context
from calc.specs import GPUSpec, ModelSpec, Parallelism
from calc.units import GIB, check_count, check_within, dtype_bytes, gib

Method = Literal["full", "lora", "qlora", "dora"]
METHODS = ("full", "lora", "qlora", "dora")
LOSSES = TRAINING_LOSSES  # calc.memory.activations.lm_head_buffers: the cross-entropy buffers of each
NF4_BLOCK, NF4_SCALE_BLOCK = 64, 256

DEFAULT_OFFLOAD_LAYERS_IN_FLIGHT = 2  # activation offload: the layer computed + the one being copied

# What each adapted matrix keeps of its input (calc.memory.activations.LayerSetup.adapter_copy_bytes): "shared", adapters
# in the block's dtype read its input uncast (litgpt, torchtune); "fp32", PEFT's fp32 adapters (autocast_adapter_dtype=True)
# without autocast: each adapted layer casts its input to fp32 and keeps that copy; "autocast", the same under bf16/fp16
# autocast: lora_A's linear keeps a 16-bit re-cast of the copy (peft 0.20 tuners/lora/layer.py Linear.forward).
ADAPTER_INPUTS = {"shared": 0, "fp32": 4, "autocast": 2}


def nf4_bytes(params: int, double_quant: bool = True) -> int:
    """QLoRA NF4 storage (Dettmers et al. 2023, arXiv 2305.14314 section 3): 4 bits per weight plus one
    absmax per 64 weights: fp32 (4 B) plainly, or with double quantisation an 8-bit absmax per block and
    one fp32 second-level scale per 256 blocks: N/2 + N/64 + 4*N/(64*256) bytes (0.127 bit/weight overhead).

    >>> nf4_bytes(64 * 256)  # 8192 + 256 + 4
    8452
    """
    blocks = math.ceil(params / NF4_BLOCK)
    if not double_quant:
        return math.ceil(params / 2) + 4 * blocks
    return math.ceil(params / 2) + blocks + 4 * math.ceil(blocks / NF4_SCALE_BLOCK)


class BufferRow(BaseModel):
    name: str
    bytes: int
    formula: str
    source: str


class FitRow(BaseModel):
    """The largest micro-batch of ``seq`` tokens whose peak fits on the GPU (0: none)."""

    seq: int
    max_batch: int
    per_gpu_bytes: int | None


class FinetuneResult(BaseModel):
    """Fine-tuning memory: trainable parameters, every buffer with its formula, and the peak per GPU."""

    model: str
    mode: str
    method: str
    total_params: int
    trainable_params: int
    lora_rank: int | None
    lora_alpha: float | None
    lora_targets: list[str]
    optimizer: str
    precision: str
    batch: int
    seq: int
    grad_accum: int
    recompute: str
    attention: str
    loss: str
    tp: int
    pp: int
    dp: int
    cp: int = 1  # context-parallel ranks splitting each sequence (--cp)
    zero: int
    num_gpus: int
    per_gpu: dict[str, int]
    buffers: list[BufferRow]
    activation_bytes: int
    textbook_activation_bytes: int
    paged_optimizer_bytes: int
    cpu_offload_bytes: int
    allocated_peak_bytes: int
    reserved_peak_bytes: int
    per_gpu_bytes: int
    gpu: str | None
    gpu_memory_bytes: int | None
    fits: bool | None
    headroom_bytes_per_gpu: int | None
    min_gpus: int | None
    fits_with: list[str]
    fits_with_bytes: int | None = None  # the peak per GPU with the change fits_with names (its band says how tight)
    fit_table: list[FitRow] = []
    stack: str | None = None  # the training stack whose memory settings priced it (calc.training.stack.MEMORY)
    # the frozen base's quantized format (QLoRA: nf4 / int8), the dtype class its band is read for, as the corpus
    # names a QLoRA row's dtype (calc.bands.dtype_class); "" otherwise (the band follows ``precision``)
    weights_dtype: str = ""
    stack_note: str | None = None  # the peak under the other memory mode's default stack, when it differs
    warnings: list[str] = []
    assumptions: list[str]
    explain: list[str]


def _trainable_matrices(m: ModelSpec, method: str, targets: tuple[str, ...], rank: int) -> list[tuple[int, int, int]]:
    """(count, d_in, d_out) of trainable matrices, for Adafactor's factored moment: every 2-D parameter is factored
    (transformers' Adafactor._get_options: ``factored = len(param_shape) >= 2``; torch.optim.Adafactor alike), the
    token / position embeddings [rows, H] and an untied output head included when every weight trains."""
    if method == "full":
        heads = [(1, t.params // m.hidden_size, m.hidden_size) for t in model_tensors(m)
                 if t.component == "embedding" and not t.shape and t.params and t.params % m.hidden_size == 0]
        heads += [(1, *t.shape) for t in model_tensors(m) if t.component == "lm_head" and t.shape and t.params]
        return [(count, *t.shape) for _k, count, ts in layer_kinds(m) for t in ts if t.shape] + heads
    return [(count * a.copies, d_in, d_out) for count, mats in adapted_matrices(m, targets) for a in mats
            for d_in, d_out in ((a.d_in, rank), (rank, a.d_out))]


GATHERED_LOAD = "checkpoint load (all weights gathered), beyond the step's peak"


def _gathered_load_peak(base: int, local_shard: int, shards: int) -> int:
    """Allocated bytes while a full checkpoint is loaded into an FSDP-sharded model by Lightning Fabric
    (lightning/fabric/strategies/fsdp.py ``_load_raw_module_state``: "Loads the state dict into the module by gathering
    all weights first and then writing back to each shard", under FSDP's FULL_STATE_DICT context): every frozen and
    trained weight unsharded at once (the base's bytes / (t*p)) beside the local shards it writes back into; no
    activation, gradient or optimizer state exists yet (AdamW allocates its moments at the first step). litgpt's
    finetune scripts load this way on several devices (``fabric.load_raw`` after ``fabric.setup_module``)."""
    return math.ceil(base / shards) + local_shard


def _fsdp_in_flight(m: ModelSpec, method: str, base_dtype: str, double_quant: bool, tp: int, layers: int,
                    separate_embeddings: bool, root_resident: bool = False, reduce_bytes: int = FSDP_REDUCE_BYTES) -> int:
    """FSDP units in flight (calc.memory.training.fsdp_in_flight_bytes), the blocks in NF4 for QLoRA (the
    embedding/head unit stays bf16) and their fp32 gradients only when every weight trains; ``root_resident``:
    FSDP1 keeps the root unit gathered beside the blocks."""
    nf4 = method == "qlora" and base_dtype == "nf4"
    return fsdp_in_flight_bytes(m, tp, layers, separate_embeddings, trains=method == "full",
                                block_bytes=(lambda n: nf4_bytes(n, double_quant)) if nf4 else None,
                                root_resident=root_resident, reduce_bytes=reduce_bytes)


def fsdp_gradient_bytes(m: ModelSpec, trainable_bytes: int, w_bytes: int, *, shards: int, zero_ranks: int, zero: int,
                        grad_accum: int, mixed_units: bool, no_sync: bool) -> tuple[int, str]:
    """Gradient bytes per GPU under FSDP (ZeRO-3 over ``zero_ranks``), with the formula, for two behaviours of
    PyTorch FSDP (1.x, FlatParameter) that a frozen-base method meets:

    ``mixed_units``: one FSDP unit per block holds the frozen weights and their adapters together
    (``use_orig_params=True``, as Lightning Fabric's FSDPStrategy sets). The unit's flat parameter then requires
    grad as a whole and autograd produces the gradient of every weight in it: "FSDP supports mixing frozen and
    non-frozen, but we recommend not doing so since then the gradient memory usage will be higher than expected
    (namely, equivalent to not freezing those parameters)" (torch.distributed.fsdp.FullyShardedDataParallel
    docstring). Gradients = every block weight x w (the embedding/head root unit stays frozen: no gradient).

    ``no_sync``: micro-batches accumulate inside ``FSDP.no_sync()`` (Lightning ``fabric.no_backward_sync``, as
    litgpt's finetune scripts do): "FSDP will accumulate the full model gradients (instead of gradient shards)
    until the eventual sync" (FullyShardedDataParallel.no_sync docstring), so with ``grad_accum`` > 1 the
    gradients are not divided by the ZeRO ranks.

        grads = G / (t*p) / (d if sharded else 1),   G = block params x w (mixed units) or adapters x w
    (Llama 2 7B, LoRA, 2 GPUs, both: 6,476,267,520 block weights x 2 B = 12.95 GB a GPU; tests/test_finetune_litgpt.py)
    """
    grads = trainable_bytes
    formula = f"adapters {trainable_bytes:,} B"
    if mixed_units:
        block = sum(count * t.params for _k, count, ts in layer_kinds(m) for t in ts)
        grads = block * w_bytes
        formula = f"every block weight (frozen ones in the adapters' FSDP units) {block:,}*{w_bytes}"
    unsharded = no_sync and grad_accum > 1
    divisor = shards * (zero_ranks if zero >= 2 and not unsharded else 1)
    formula += f" / {divisor}" + (" (accumulated unsharded under no_sync)" if unsharded and zero_ranks > 1 else "")
    return math.ceil(grads / divisor), formula


def _check_inputs(*, method: str, optimizer: str, precision: str, base_dtype: str, loss: str, recompute: str, attention: str,
                  zero: int, batch: int, seq: int, grad_accum: int, loss_chunks: int, optimizer_in_backward: bool, cp: int,
                  adapter_inputs: str = "shared", prepare_kbit: bool = False) -> None:
    """One-line errors naming the flag, before any arithmetic."""
    check_optimizer(optimizer, precision)
    if base_dtype not in ("nf4", "int8"):
        raise LLMCalcError("--quant", f"QLoRA base is nf4 or int8, got {base_dtype!r}")
    if method not in METHODS:
        raise LLMCalcError("--method", f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if loss not in LOSSES:
        raise LLMCalcError("--loss", f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    if recompute not in RECOMPUTE_LEVELS:
        raise LLMCalcError("--recompute", f"use {', '.join(RECOMPUTE_LEVELS)}, got {recompute!r}")
    if attention not in ("flash", "eager"):
        raise LLMCalcError("--attention", f"use flash or eager, got {attention!r}")
    if zero not in (0, 1, 2, 3):
        raise LLMCalcError("--zero", f"ZeRO stage must be 0, 1, 2 or 3, got {zero}")
    for flag, value in (("--batch", batch), ("--seq", seq), ("--grad-accum", grad_accum), ("--loss-chunks", loss_chunks)):
        if value < 1:
            raise LLMCalcError(flag, f"must be >= 1, got {value}")
    if optimizer_in_backward and grad_accum > 1:
        raise LLMCalcError("--optimizer-in-backward", "steps each parameter as its gradient arrives: needs --grad-accum 1")
    if optimizer_in_backward and method != "full":  # torchtune's optimizer_in_bwd is a full-finetune recipe option
        raise LLMCalcError("--optimizer-in-backward", "frees the full model's gradients as the backward makes them; "
                                                      f"--method {method} trains adapters only: use it with --method full")
    if seq % cp:
        raise LLMCalcError("--cp", f"{cp} must divide the sequence length {seq}")
    if adapter_inputs not in ADAPTER_INPUTS:
        raise LLMCalcError("--adapter-inputs", f"use {', '.join(ADAPTER_INPUTS)}, got {adapter_inputs!r}")
    if prepare_kbit and method != "qlora":
        raise LLMCalcError("--prepare-kbit", "casts the non-quantized weights of a 4-/8-bit base: use --method qlora")


def _adapter_copy_bytes(method: str, adapter_inputs: str) -> int:
    """Bytes of each adapted matrix's own input copy (calc.memory.activations.LayerSetup.adapter_copy_bytes): none for
    a full fine-tune; PEFT's bitsandbytes layers cast only without autocast (peft 0.20 tuners/lora/bnb.py
    Linear4bit/Linear8bitLt.forward: ``requires_conversion = not torch.is_autocast_enabled()``), so a QLoRA adapter
    under autocast reads the block's own bf16 input."""
    if method == "full" or (method == "qlora" and adapter_inputs == "autocast"):
        return 0
    return ADAPTER_INPUTS[adapter_inputs]


def dora_norm_temporaries(m: ModelSpec, targets: tuple[str, ...], a: int) -> int:
    """Bytes alive at once while one DoRA layer computes its weight norm ||W + s B A||_c in the forward (peft 0.20
    tuners/lora/dora.py ``get_lora_weight`` + ``forward`` + ``get_weight_norm``; torchtune 0.7 modules/peft/dora.py
    DoRALinear.forward the same), in the adapter's dtype of ``a`` bytes, for the largest adapted matrix (d_in x d_out):
      x_eye = eye(d_in)                      d_in^2 x a   (kept by lora_A's graph while lora_weight lives)
      lora_weight = lora_B(lora_A(x_eye)).T  d_in*d_out x a
      weight.to(x.dtype)                     d_in*d_out x a, a copy only when the adapter dtype is not the base's bf16
      scaling * lora_weight, W + that        2 x d_in*d_out x a
    = a*(d_in^2 + d_in*d_out*(3 + copy)). Llama 3.2 3B q_proj (3072 x 3072), PEFT fp32: 4*(3072^2 + 3072^2*4) =
    188,743,680 B; bf16 adapters on a bf16 base: 2*(3072^2 + 3072^2*3) = 75,497,472 B."""
    copy = 1 if a != 2 else 0
    return max(a * (x.d_in ** 2 + x.d_in * x.d_out * (3 + copy)) for _c, mats in adapted_matrices(m, targets) for x in mats)


def _base_weight_bytes(m: ModelSpec, method: str, total: int, trainable: int, w_bytes: int, base_dtype: str,
                       double_quant: bool, frozen_dtype: str, rest_bytes: int = 2,
                       linears: list[tuple[int, Tensor]] | None = None) -> tuple[int, str]:
    """Weights held before sharding, with the formula: full N*w; LoRA/DoRA a frozen base in ``frozen_dtype`` plus the
    adapters (fp8: the block linears at 1 byte, embeddings, norms and head at 16 bits, as --dtype fp8 converts a model
    in every command); QLoRA every block linear in NF4 (or LLM.int8, arXiv 2208.07339: int8 + one fp32 absmax per output
    row), embeddings, norms and head in bf16 (``rest_bytes`` 2; 4 after PEFT's prepare_model_for_kbit_training), plus
    the adapters. ``total`` / ``trainable`` / ``linears`` ((count, tensor) of the block linears among them): the
    whole model's by default, or one pipeline rank's (``_rank_state_shares``)."""
    if method == "full":
        return total * w_bytes, f"N*{w_bytes} = {total:,}*{w_bytes}"
    fp8_base = method != "qlora" and frozen_dtype == "fp8"  # the blocks' linears in fp8, the rest 16-bit (as --dtype fp8
    if method != "qlora" and not fp8_base:                 # converts them everywhere: calc.memory.weights)
        linears = []
    elif linears is None:  # an fp8 base keeps the routers 16-bit, as --dtype fp8 converts a model everywhere
        linears = [(count, t) for _k, count, ts in layer_kinds(m) for t in ts
                   if t.shape and not (fp8_base and t.component == "router")]
    quantised = sum(count * t.params for count, t in linears)
    rest = total - quantised
    if fp8_base:
        q_bytes, q_formula = quantised, f"linears in fp8: {quantised:,}*1"
    elif base_dtype == "int8":
        q_bytes = quantised + sum(count * 4 * t.params // t.shape[0] for count, t in linears)
        q_formula = f"linears in int8: {quantised:,}*1 + 4 B per output row"
    else:
        q_bytes = nf4_bytes(quantised, double_quant) if quantised else 0
        q_formula = f"linears in NF4: {quantised:,}*(1/2 + 1/64 + 4/(64*256))" if double_quant else \
            f"linears in NF4: {quantised:,}*(1/2 + 4/64)"
    fb = dtype_bytes(frozen_dtype) if not quantised else rest_bytes
    base = math.ceil(rest * fb) + q_bytes + trainable * w_bytes
    formula = f"{q_formula} + rest {'16-bit' if fb == 2 else 'fp32'} {rest:,}*{fb}" if quantised \
        else f"frozen base N*{fb} = {total:,}*{fb}"
    return base, f"{formula} + adapters {trainable:,}*{w_bytes}"


def _rank_state_shares(m: ModelSpec, pp: int, split: StageSplit, base: int, trainable: int,
                       base_of: Callable[[int, int, list[tuple[int, Tensor]]], int],
                       adapters: tuple[int, ...] | None) -> list[dict[str, float]] | None:
    """Each pipeline rank's factor on the stage-averaged (N/p) states, part by part, for
    calc.memory.training.training_bytes_per_gpu's ``state_shares``: the weights by the rank's own weight bytes
    (``base_of`` its parameters, adapters and block linears: a QLoRA rank 0 holds the bf16 embedding beside NF4 layers),
    the fp32 master, optimizer states and gradients by its own trainable parameters (``adapters`` of its layers, per
    layer; None for a full fine-tune, every parameter), each over the whole model's / p. The ranks' parameters are
    calc.memory.pipeline.stage_params' (the embedding on the first, the final norm and head on the last). None without
    PP or for a split Megatron-Core cannot place.

    Worked (QLoRA, NF4 double-quantized, Gemma 2 9B on PP 4, rank 0: 10 layers + the embedding): 10 x 198,180,864
    block-linear parameters in NF4 (1/2 + 1/64 + 4/(64*256) B each) beside the 917,504,000 embedding and 143,360 norm
    parameters in bf16: about 2.86e9 B of weights, 1.25 x the N/p average."""
    shares = stage_params(m, pp, split) if pp > 1 else None
    layers = rank_layers(m.num_layers, pp, split)
    if shares is None or layers is None:
        return None
    blocks = layer_blocks(m)
    out = []
    for (dense, experts), idx in zip(shares, layers, strict=True):
        params = dense + experts
        own = params if adapters is None else sum(adapters[i] for i in idx)
        weights = base_of(params, own, [(1, t) for i in idx for t in blocks[i][1] if t.shape])
        tf = own * pp / trainable if trainable else 0.0
        out.append({"weights": weights * pp / base if base else 0.0, "fp32 master": tf, "optimizer states": tf,
                    "gradients": tf})
    return out


OFFLOAD_RUNGS = (("optimizer", "offload_optimizer"), ("activations", "offload_activations"), ("params", "offload_params"))


def _change_that_fits(m: ModelSpec, gpu: GPUSpec, plan: Parallelism, method: str, zero: int,
                      common: dict) -> tuple[list[str], int | None]:
    """The first change, in order of cost to the run, whose peak fits on this GPU count: each rung keeps the ones
    before it. ZeRO-3 (FSDP full shard, when there are DP ranks to shard over), ``--recompute full``, CPU offload
    of the optimizer states (a host-side step), of the activation checkpoints (copied out and back on a side
    stream, overlapped with compute: torchtune ``enable_activation_offloading``), then of the parameters (DeepSpeed
    ZeRO-Offload / FSDP CPU offload: every weight crosses PCIe twice a step), then ``--method qlora`` (NF4 base).
    When no rung fits, the same ladder once more after a chunked cross-entropy (``--loss chunked``: the logits in
    chunks instead of one [tokens, vocab] fp32 buffer, 25 GB for Gemma 2's 256,000-word vocabulary at 8,192 tokens;
    a stack change: torchtune's chunked loss, Liger's fused one). An offload or loss rung that frees under 0.1 GiB
    when taken (the optimizer of a few adapters) is named only if the figure needs it: the flags printed reproduce
    the figure printed. Answer.AI's FSDP + QLoRA recipe trains Llama-2 70B on 2 x 24 GB with FSDP, gradient
    checkpointing and CPU offload (answer.ai/posts/2024-03-06-fsdp-qlora.html). ([the change], its peak per GPU);
    ([], None) when none fits (more GPUs is the answer then: ``min_gpus``)."""
    rungs: list[tuple[str, dict[str, Any]]] = []
    if zero < 3 and plan.dp > 1 and plan.pp == 1:  # ZeRO-2/3 with PP is refused (calc.training.layout.zero_with_pp_problem)
        rungs.append(("--zero 3", {"zero": 3}))
    if common["recompute"] != "full":
        rungs.append(("--recompute full", {"recompute": "full"}))
    rungs += [(f"--offload {name}", {key: True}) for name, key in OFFLOAD_RUNGS if not common[key]]
    if method in ("full", "lora", "dora"):
        rungs.append(("--method qlora", {"method": "qlora"}))
    ladders = [rungs] + ([[("--loss chunked", {"loss": "chunked"}), *rungs]] if common["loss"] not in ("chunked", "fused") else [])

    def peak_of(taken: list[tuple[str, dict[str, Any]]]) -> int:
        changes = {k: v for _, change in taken for k, v in change.items()}
        return finetune_memory(m, plan=plan, **{**common, "method": method, "zero": zero, **changes}).per_gpu_bytes

    for ladder in ladders:
        named: list[tuple[str, dict[str, Any]]] = []
        quiet: list[tuple[str, dict[str, Any]]] = []  # taken, but freed under 0.1 GiB when taken
        before = peak_of([])
        for rung in ladder:
            peak = peak_of(named + quiet + [rung])
            optional = rung[0].startswith(("--offload", "--loss"))
            (quiet if optional and before - peak < GIB // 10 else named).append(rung)
            before = peak
            if peak <= gpu.cuda_total_bytes:
                lean = peak_of(named)
                shown, figure = (named, lean) if lean <= gpu.cuda_total_bytes else (sorted(named + quiet, key=ladder.index), peak)
                flags = [flag for flag, _ in shown]
                offloads = [flag.split()[1] for flag in flags if flag.startswith("--offload")]
                plain = [flag for flag in flags if not flag.startswith("--offload") and flag != "--method qlora"]
                text = plain + ([f"--offload {','.join(offloads)}"] if offloads else []) \
                    + (["--method qlora"] if "--method qlora" in flags else [])
                return [f"{' '.join(text)} ({gib(figure):.1f} GiB)"], figure
    return [], None


def finetune_memory(
    m: ModelSpec, *, gpu: GPUSpec | None = None, plan: Parallelism | None = None, method: str = "lora",
    lora_rank: int = 8, lora_alpha: float | None = None, lora_targets: str | tuple[str, ...] = "q,v", lora_dropout: float = 0.0,
    optimizer: str = "adamw", precision: str = "mixed", base_dtype: str = "nf4", double_quant: bool = True, frozen_dtype: str = "bf16",
    batch: int = 1, seq: int = 2048, grad_accum: int = 1, recompute: str = "none", attention: str = "flash",
    fused: bool = HF_MEMORY.fused, loss: str = HF_MEMORY.loss, loss_chunks: int = 8, dropout: float = 0.0, zero: int = 0,
    offload_optimizer: bool = False, offload_params: bool = False, offload_activations: bool = False,
    optimizer_in_backward: bool = False, cuda_context_gib: float = DEFAULT_CUDA_CONTEXT_GIB,
    fragmentation: float = HF_MEMORY.fragmentation, fsdp_layers_in_flight: int = DEFAULT_FSDP_LAYERS_IN_FLIGHT,
    shard_embeddings_separately: bool = False,
    offload_layers_in_flight: int = DEFAULT_OFFLOAD_LAYERS_IN_FLIGHT, suggest: bool = True, gathered_load: bool = False,
    fsdp_mixed_units: bool = False, fsdp_no_sync: bool = False, fsdp1_root: bool = False, litgpt_block: bool = False,
    adapter_inputs: str = "shared", prepare_kbit: bool = False, kv_repeated: bool = False,
    grad_buffer: bool = HF_MEMORY.grad_buffer, fsdp_reduce_bytes: int = HF_MEMORY.fsdp_reduce_bytes,
    caching_allocator: bool = HF_MEMORY.caching_allocator, in_flight: float | None = None,
    held_layers: tuple[int, int] | None = None, fp32_shards: bool = HF_MEMORY.fp32_shards,
    rank_held: tuple[int, ...] | None = None, pp_split: StageSplit = CONTIGUOUS, bnb_linears: bool = HF_MEMORY.bnb_linears,
) -> FinetuneResult:
    """Peak memory per GPU of one training step (see the module docstring for the assembly).

    Sharding: TP/PP split every weight, gradient and state by t*p (with PP each rank's own: the engine,
    calc.memory.training.training_bytes_per_gpu, scales them rank by rank, the weights by the rank's own weight bytes,
    the master, optimizer states and gradients by its own trainable parameters (``_rank_state_shares``: the embedding
    on the first rank, the head on the last, ``pp_split`` placing the layers), and prices the fullest rank); ZeRO over
    d: stage 1 shards the
    optimizer states and master, 2 also gradients, 3 (= FSDP full shard) also weights, and then holds
    ``fsdp_layers_in_flight`` unsharded layers (bf16 weights, plus their unreduced gradients when they train).
    ``gathered_load``: the checkpoint is loaded into the sharded model by gathering every weight first
    (``_gathered_load_peak``, Lightning Fabric's FSDP loader); the peak is the larger of that and the step's.
    ``fsdp_mixed_units`` / ``fsdp_no_sync``: FSDP units holding frozen weights with their adapters, and gradient
    accumulation under no_sync (``fsdp_gradient_bytes``; litgpt's multi-GPU finetune scripts do both).
    ``fsdp1_root``: PyTorch FSDP1 keeps the root unit (embedding, head, final norm) gathered from forward to backward,
    beside the blocks in flight (``fsdp_in_flight_bytes`` root_resident; Lightning's FSDPStrategy of 2023 is FSDP1).
    ``litgpt_block``: the block's saved tensors as litgpt's code keeps them (calc.memory.activations.litgpt_buffers).
    ``adapter_inputs``: shared, fp32 or autocast (``ADAPTER_INPUTS``): whether each adapted matrix keeps its own copy of
    its input, cast to PEFT's fp32 adapter dtype (calc.memory.activations.adapter_buffers).
    ``prepare_kbit``: QLoRA after PEFT's ``prepare_model_for_kbit_training`` (peft 0.20 utils/other.py: "cast all non
    INT8 parameters to fp32": every bf16/fp16 parameter that is not a Params4bit, i.e. embeddings, norms and head, becomes
    fp32): those weights at 4 B, and the residual stream they produce is fp32 (the fp32 embedding output, the fp32 norm
    weights' products), so each checkpointed layer input of ``recompute="full"`` (the function's default gradient
    checkpointing) is b*s*H*4. The layer recomputed in backward is still priced in bf16 (its casts depend on autocast).
    ``fused``, ``loss``, ``fragmentation``, ``grad_buffer``, ``fsdp_reduce_bytes``, ``caching_allocator``,
    ``fp32_shards``, ``bnb_linears`` (QLoRA's 4-bit linears are bitsandbytes', keeping their inputs): the stack's memory
    settings (calc.memory.training.StackMemory); the defaults are HF_MEMORY, HF
    Trainer / PEFT in eager PyTorch. Under ``fp32_shards`` (FSDP2 mixed precision) a full fine-tune at ZeRO-3 with an
    fp32 master keeps no 16-bit weight shard and fp32 sharded gradients, as `memory --mode train` prices the same job
    (calc.memory.training.fsdp2_states).
    ``in_flight``: micro-batches the first pipeline stage holds (default p; train-step passes its schedule's,
    calc.training.step.in_flight_microbatches, interleaving included); ``held_layers``: the schedule's
    layer-micro-batches on the fullest and the last rank (calc.memory.pipeline; default 1F1B's over Megatron-Core's
    split, calc.memory.training.training_bytes_per_gpu), ``rank_held`` on every rank (held_by_rank).
    ``kv_repeated``: a grouped-query model's K and V are copied out to every query head before attention and those
    copies are what the kernel keeps (transformers integrations/sdpa_attention.py ``repeat_kv`` unless
    ``use_gqa_in_sdpa``: torch >= 2.5 and no attention mask; a padded batch passes a mask; eager attention always).
    """
    plan = check_layout(m, plan or Parallelism())
    check_sequence_parallel(plan.sequence_parallel, seq, plan.tp, plan.cp)
    _check_inputs(method=method, optimizer=optimizer, precision=precision, base_dtype=base_dtype, loss=loss,
                  recompute=recompute, attention=attention, zero=zero, batch=batch, seq=seq, grad_accum=grad_accum,
                  loss_chunks=loss_chunks, optimizer_in_backward=optimizer_in_backward, cp=plan.cp,
                  adapter_inputs=adapter_inputs, prepare_kbit=prepare_kbit)
    if (why := recompute_problem(m, recompute)) is not None:
        raise LLMCalcError("--recompute", f"{why}; give {', '.join(r for r in RECOMPUTE_LEVELS if r != 'deepseek')}")
    # the same rules as training_memory's: outside them the peak would shrink or explode
    check_within(fragmentation, "--fragmentation", 0.0, MAX_FRAGMENTATION)
    check_within(lora_dropout, "--lora-dropout", 0.0, 1.0, hi_open=True)
    check_within(cuda_context_gib, "--cuda-context-gib", 0.0, 64.0)  # a context of a few GiB
    full = method == "full"
    targets = parse_targets(lora_targets) if not full else ()
    total = total_params(m)
    lora = None if full else lora_params(m, lora_rank, targets, dora=method == "dora")
    trainable = total if full else lora.trainable_params
    w_bytes = param_dtype_bytes(precision)
    shards = plan.tp * plan.pp
    dp = plan.dp
    zero_ranks = dp * plan.cp  # ZeRO / FSDP shard over DP x CP (Megatron distributed optimizer, torchtitan dp_shard x cp)

    def zshard(value: int, stage: int) -> int:
        return math.ceil(value / shards / (zero_ranks if zero >= stage else 1))

    # --- weights -------------------------------------------------------------------------------------
    def base_of(params: int, adapters: int, linears: list[tuple[int, Tensor]] | None = None) -> int:
        return _base_weight_bytes(m, method, params, adapters, w_bytes, base_dtype, double_quant, frozen_dtype,
                                  rest_bytes=4 if prepare_kbit else 2, linears=linears)[0]

    base, base_formula = _base_weight_bytes(m, method, total, trainable, w_bytes, base_dtype, double_quant, frozen_dtype,
                                            rest_bytes=4 if prepare_kbit else 2)
    state_shares = _rank_state_shares(m, plan.pp, pp_split, base, trainable, base_of, None if full else layer_adapter_params(
        m, lora_rank, targets, dora=method == "dora")) if plan.pp > 1 else None
    weights = 0 if offload_params else zshard(base, 3)
    master = master_bytes(precision, trainable)
    states = optimizer_state_bytes(optimizer, precision, trainable, _trainable_matrices(m, method, targets, lora_rank))
    grads_all = trainable * w_bytes
    largest = max((t.params for _k, _c, ts in layer_kinds(m) for t in ts), default=0)
    if full:
        largest = max(largest, m.vocab_size * m.hidden_size)
    grads = (largest * w_bytes // shards) if optimizer_in_backward and full else zshard(grads_all, 2)
    sharded_fsdp = zero == 3 and zero_ranks > 1
    mixed = fsdp_mixed_units and sharded_fsdp and not full
    grads_formula = ""
    # FSDP2 mixed precision: the fp32 shard is the master (no 16-bit shard), gradients fp32 shards (fsdp2_states)
    fsdp2 = fp32_shards and full and zero == 3 and master > 0 and not (optimizer_in_backward or fsdp_no_sync or offload_params)
    if fsdp2:
        weights, grads = 0, zshard(trainable * FSDP_REDUCE_BYTES, 2)
    if sharded_fsdp and (mixed or fsdp_no_sync) and not (optimizer_in_backward and full):
        grads, grads_formula = fsdp_gradient_bytes(m, grads_all, w_bytes, shards=shards, zero_ranks=zero_ranks, zero=zero,
                                                   grad_accum=grad_accum, mixed_units=mixed, no_sync=fsdp_no_sync)
    cpu = 0
    paged = 0
    master_gpu = zshard(master, 1)
    states_gpu = zshard(master + states, 1) - master_gpu  # sharded together, as the recipe's 12 B of training_memory
    if offload_optimizer or offload_params:
        cpu += master_gpu + states_gpu
        master_gpu = states_gpu = 0
    if offload_params:
        cpu += zshard(base, 3) + grads
        grads = 0
    if is_paged(optimizer):
        paged, states_gpu = states_gpu, 0

    # --- activations and the peak: the training engine (calc.memory.training) ------------------------------
    adapted = frozenset(a.name for _c, mats in adapted_matrices(m, targets) for a in mats) if not full else frozenset()
    act = 4 if full and precision == "fp32" else 2  # a full fine-tune in fp32 keeps fp32 activations, as --mode train --dtype fp32
    setup = LayerSetup(full=full or mixed, adapted=adapted, lora_rank=lora_rank if not full else 0, lora_dropout=lora_dropout,
                       dora=method == "dora", attention=attention, fused=fused, dropout=dropout, act_bytes=act,
                       tp=plan.tp, sp=plan.sequence_parallel, quantized=method == "qlora" and bnb_linears,
                       litgpt=litgpt_block,
                       adapter_copy_bytes=_adapter_copy_bytes(method, adapter_inputs),
                       residual_bytes=4 if prepare_kbit else 0, kv_repeated=kv_repeated)
    s_local = seq // plan.cp
    n_layers = layers_per_stage(m, plan.pp)
    offload_layers = offload_layers_in_flight if offload_activations else None
    stage = stage_activations(m, batch, s_local, setup, recompute, n_layers, plan.pp, offload_layers)
    # a loss chunk holds at least one token row of the [tokens, vocab] logits (the CLI refuses more chunks given)
    head = lm_head_buffers(m, batch, s_local, loss, min(loss_chunks, batch * s_local), act, full, plan.tp, compiled=fused)
    transients = {"QLoRA dequantised weight": 0, "DoRA weight-norm temporaries": 0}
    if method == "qlora":
        transients["QLoRA dequantised weight"] = \
            max(t.params for _k, _c, ts in layer_kinds(m) for t in ts if t.shape) * 2 // plan.tp
    if method == "dora":
        transients["DoRA weight-norm temporaries"] = dora_norm_temporaries(
            m, targets, 2 if adapter_inputs == "shared" else 4) // plan.tp  # PEFT: x cast to fp32, autocast or not
    fsdp = 0
    if sharded_fsdp or offload_params:
        fsdp = _fsdp_in_flight(m, method, base_dtype, double_quant, plan.tp, fsdp_layers_in_flight, shard_embeddings_separately,
                               root_resident=fsdp1_root, reduce_bytes=fsdp_reduce_bytes)
    persistent = {"weights": weights, "fp32 master": master_gpu, "optimizer states": states_gpu}
    rank_peaks: list[int] = []  # each pipeline rank's peak, from the engine

    def priced() -> dict[str, int]:
        return training_bytes_per_gpu(
            m, params=total, tp=plan.tp, pp=plan.pp, dp=zero_ranks, cp=plan.cp, sp=plan.sequence_parallel, zero=zero,
            micro_batch=batch, seq=seq, recompute=recompute, flash=attention == "flash",
            reserve_bytes=int(cuda_context_gib * GIB), grad_accum=grad_accum, fragmentation=fragmentation,
            states=persistent, gradients=grads, setup=setup, loss=loss, loss_chunks=loss_chunks, lm_head_trains=full,
            offload_layers=offload_layers, fsdp=fsdp, transients=transients, grad_buffer=grad_buffer,
            caching_allocator=caching_allocator, in_flight=in_flight, held_layers=held_layers, fp32_shards=fsdp2,
            rank_held=rank_held, pp_split=pp_split, state_shares=state_shares, rank_peaks=rank_peaks)

    engine = priced()
    if gathered_load and zero == 3 and zero_ranks > 1:
        step_allocated = sum(engine.values()) - engine["allocator fragmentation"] - engine["CUDA context"]
        beyond = _gathered_load_peak(base, weights, shards) - step_allocated
        if beyond > 0:
            transients[GATHERED_LOAD] = beyond
            engine = priced()
    # the priced rank's own states (under PP the fullest rank's, rank by rank), for the explain lines
    rank = rank_peaks.index(max(rank_peaks)) if rank_peaks else None
    share = state_shares[rank] if state_shares is not None and rank is not None else None
    own = {k: engine.get(k, 0) for k in persistent}
    rank_grads = math.ceil(grads * share["gradients"]) if share is not None else grads
    per_gpu = {k: v for k, v in engine.items() if v or k in ("weights", "activations", "gradients")}  # stable keys
    per_gpu_total = sum(engine.values())
    context = engine["CUDA context"]
    reserved = per_gpu_total - context
    allocated = reserved - engine["allocator fragmentation"]
    activations = engine["activations"]
    layer, recompute_buf = stage.layer, stage.recompute
    backward_ws = stage.backward_workspace
    dequant, dora_tmp = transients["QLoRA dequantised weight"], transients["DoRA weight-norm temporaries"]
    stage_name = "one GPU's layers" if plan.pp == 1 else \
        (f"fullest pipeline rank (1F1B over Megatron-Core's split: the first holds {plan.pp} micro-batches in flight, "
         f"the last 1 micro-batch + output head; calc.memory.pipeline)")
    act_formula = stage.formula
    head_saved = sum(b.bytes for b in head[:-1])
    forward_end = activations
    backward_end = 0 if gradients_persist(grad_accum, grad_buffer, zero) else rank_grads

    textbook = math.ceil(n_layers * plan.pp * korthikanti_layer_bytes(
        s_local, batch, m.hidden_size, m.num_heads, plan.tp, plan.sequence_parallel,
        recompute if recompute != "none" else "none", attention == "flash"))

    common = dict(lora_rank=lora_rank, lora_alpha=lora_alpha, lora_targets=lora_targets, lora_dropout=lora_dropout,
                  optimizer=optimizer, precision=precision, base_dtype=base_dtype, double_quant=double_quant,
                  frozen_dtype=frozen_dtype, batch=batch, seq=seq, grad_accum=grad_accum, recompute=recompute,
                  attention=attention, fused=fused, loss=loss, loss_chunks=loss_chunks, dropout=dropout,
                  offload_optimizer=offload_optimizer, offload_params=offload_params, offload_activations=offload_activations,
                  optimizer_in_backward=optimizer_in_backward, cuda_context_gib=cuda_context_gib, fragmentation=fragmentation,
                  fsdp_layers_in_flight=fsdp_layers_in_flight, shard_embeddings_separately=shard_embeddings_separately,
                  offload_layers_in_flight=offload_layers_in_flight, suggest=False, gathered_load=gathered_load,
                  fsdp_mixed_units=fsdp_mixed_units, fsdp_no_sync=fsdp_no_sync, fsdp1_root=fsdp1_root,
                  litgpt_block=litgpt_block, adapter_inputs=adapter_inputs, prepare_kbit=prepare_kbit, kv_repeated=kv_repeated,
                  grad_buffer=grad_buffer, fsdp_reduce_bytes=fsdp_reduce_bytes, caching_allocator=caching_allocator,
                  fp32_shards=fp32_shards, bnb_linears=bnb_linears, pp_split=pp_split)

    fixed = plan.tp * plan.pp * plan.cp

    def fits_on(n: int) -> bool | None:
        """Grow DP (ZeRO-3; ZeRO-1 with PP) at this TP x PP x CP until the per-GPU peak fits."""
        if n % fixed or gpu is None:
            return None
        layout = plan.model_copy(update={"dp": n // fixed})
        grown = max(zero, 3 if plan.pp == 1 else 1)  # with PP the distributed optimizer (ZeRO-1) at most
        return finetune_memory(m, plan=layout, method=method, zero=grown, **common).per_gpu_bytes <= gpu.cuda_total_bytes

    verdict = _verdict(gpu, per_gpu_total, lambda: _search_min_gpus(fits_on, limit=512, unit=fixed) if suggest else None)
    fits_with, fits_with_bytes = _change_that_fits(m, gpu, plan, method, zero, common) \
        if suggest and verdict["fits"] is False else ([], None)

    alpha = lora_alpha if lora_alpha is not None else (2 * lora_rank if not full else None)
    assumptions = [
        f"method {method}" + ("" if full else f": rank {lora_rank}, alpha {alpha} (scales the update, no memory effect), "
                                              f"targets {','.join(targets)}, base frozen (no gradients, no optimizer states), "
                                              f"adapter inputs {adapter_inputs}"
                                              + ("; PEFT prepare_model_for_kbit_training: embeddings, norms, head and the "
                                                 "residual stream in fp32" if prepare_kbit else "")),
        f"optimizer {optimizer}, precision {precision}: weights/grads {w_bytes} B"
        + (", fp32 master 4 B" if precision == "mixed" else "")
        + ("; SGD with a momentum buffer (torch.optim.SGD with momentum > 0; HF Trainer's optim='sgd' at its default "
           "momentum 0 keeps none)" if optimizer == "sgd" else "")
        + (" ; paged states live in CUDA unified memory outside the allocator (evicted to CPU under pressure)" if paged else ""),
        f"activations tensor by tensor: attention {attention}{' (K, V repeated to every head)' if kv_repeated else ''}, "
        f"{'fused (torch.compile) elementwise' if fused else 'eager elementwise'}"
        f", recompute {recompute}, dropout {dropout:g}, loss {loss}"
        + (f" in {loss_chunks} chunks" if loss in ("chunked", "fused") else ""),
        "peak = persistent + max(forward end: activations + max(logits/loss, backward workspace), backward end: gradients)"
        + ("; gradients persist across micro-batches (grad accumulation)" if grad_accum > 1 else
           "; gradients persist in a buffer allocated at wrap time" if gradients_persist(grad_accum, grad_buffer, zero) else ""),
        f"ZeRO stage {zero} over DP {dp}; TP {plan.tp} x PP {plan.pp}"
        + (f"; FSDP keeps {fsdp_layers_in_flight} unsharded layers (or the embedding/head unit) in flight" if fsdp else "")
        + ("; FSDP units hold frozen weights with their adapters: gradients of every block weight" if mixed else "")
        + ("; micro-batches accumulate under no_sync: unsharded gradients" if fsdp_no_sync and grad_accum > 1 and sharded_fsdp else "")
        + ("; optimizer (and master) offloaded to CPU" if offload_optimizer else "")
        + ("; parameters offloaded to CPU" if offload_params else "")
        + (f"; activations offloaded to CPU, {offload_layers_in_flight} layers on GPU" if offload_activations else ""),
        f"reserves: allocator fragmentation {fragmentation:.0%} of the allocated peak, CUDA context {cuda_context_gib:g} GiB per GPU",
    ]
    explain = [
        f"trainable parameters = {trainable:,} of {total:,}" + ("" if full else f" ({100 * trainable / total:.3f}%)"),
        *([] if full else [f"  {line}" for line in lora.explain]),
        f"weights = {base_formula} = {base:,} B, per GPU {own['weights']:,} B"
        + (f" (pipeline rank {rank} of 0-{plan.pp - 1}, the one priced: its own parameters' bytes)" if share else ""),
        f"fp32 master = 4*{trainable:,} = {master:,} B; optimizer states ({optimizer}) = {states:,} B; gradients = {grads_all:,} B",
        *([f"FSDP gradients per GPU = {grads_formula} = {grads:,} B"] if grads_formula else []),
        "per-layer saved tensors (one layer):",
        *[f"  {b.name}: {b.formula}  [{b.source}]" for b in layer],
        f"activations ({stage_name}): one stage {act_formula}; head inputs {head_saved:,} B; "
        f"with logits/loss or backward workspace = {activations:,} B",
        f"  {head[-1].name}: {head[-1].formula}  [{head[-1].source}]",
        f"backward workspace = recomputed layer {recompute_buf:,} + 2 x largest tensor of a layer = {backward_ws:,} B",
        *([f"FSDP in flight = {'sum' if fsdp1_root else 'max'}({fsdp_layers_in_flight} unsharded blocks"
           f"{' (NF4)' if method == 'qlora' and base_dtype == 'nf4' else ''}, the bf16 embedding/head unit)"
           f"{f' + their {fsdp_reduce_bytes} B gradients' if full else ''} = {fsdp:,} B"] if fsdp else []),
        *([f"QLoRA dequantised weight = largest block matrix in bf16 = {dequant:,} B"] if dequant else []),
        *([f"DoRA weight-norm temporaries = largest adapted matrix's a*(d_in^2 + d_in*d_out*(3 + cast copy)) = {dora_tmp:,} B"]
          if dora_tmp else []),
        *([f"paged optimizer states (CUDA unified memory, outside the allocator) = {paged:,} B"] if paged else []),
        *([f"offloaded to CPU = {cpu:,} B"] if cpu else []),
        f"peak = persistent {sum(own.values()):,}"
        + (f" + gradients {engine['gradients']:,} (persisting)" if gradients_persist(grad_accum, grad_buffer, zero) else "")
        + f" + FSDP {fsdp:,} + max(forward end {forward_end:,}, backward end {backward_end:,}) + transients "
        f"{dequant + dora_tmp:,} (calc.memory.training.assemble_peak)",
        f"allocated peak = {allocated:,} B; reserved = x{1 + fragmentation:g} = {reserved:,} B; + context = {per_gpu_total:,} B "
        f"({gib(per_gpu_total):.2f} GiB)",
        f"textbook (Korthikanti 2022) activations for comparison: {textbook:,} B ({gib(textbook):.2f} GiB)",
    ]
    return FinetuneResult(
        model=m.name, mode="finetune", method=method, total_params=total, trainable_params=trainable,
        lora_rank=None if full else lora_rank, lora_alpha=alpha, lora_targets=list(targets), optimizer=optimizer,
        precision=precision, batch=batch, seq=seq, grad_accum=grad_accum, recompute=recompute, attention=attention, loss=loss,
        tp=plan.tp, pp=plan.pp, dp=dp, cp=plan.cp, zero=zero, num_gpus=plan.num_gpus, per_gpu=per_gpu,
        buffers=[BufferRow(**b.__dict__) for b in [*layer, *head]], activation_bytes=activations,
        textbook_activation_bytes=textbook, paged_optimizer_bytes=paged, cpu_offload_bytes=cpu,
        allocated_peak_bytes=allocated, reserved_peak_bytes=reserved, per_gpu_bytes=per_gpu_total,
        weights_dtype=base_dtype if method == "qlora" else "",
        **verdict, fits_with=fits_with, fits_with_bytes=fits_with_bytes,
        warnings=check_context(m, seq, "--seq"), assumptions=assumptions, explain=explain,
    )


def fit_table(m: ModelSpec, gpu: GPUSpec, seqs: tuple[int, ...] = (512, 1024, 2048, 4096, 8192, 16384, 32768),
              max_batch: int = 1024, **kwargs) -> list[FitRow]:
    """For each sequence length, the largest micro-batch whose peak fits on ``gpu`` (0: not even one),
    by bisection on finetune_memory (memory grows with the batch)."""
    check_count(max_batch, "max_batch")
    kwargs = {**kwargs, "suggest": False, "gpu": None}

    def peak(batch: int, seq: int) -> int:
        return finetune_memory(m, batch=batch, seq=seq, **kwargs).per_gpu_bytes

    rows = []
    for seq in seqs:
        lo, hi = 0, max_batch
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if peak(mid, seq) <= gpu.cuda_total_bytes:
                lo = mid
            else:
                hi = mid - 1
        rows.append(FitRow(seq=seq, max_batch=lo, per_gpu_bytes=peak(lo, seq) if lo else None))
    return rows


__all__ = ["GROUPS", "Buffer", "FinetuneResult", "FitRow", "finetune_memory", "fit_table", "nf4_bytes"]
