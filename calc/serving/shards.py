"""Whether a quantized checkpoint loads at a tensor-parallel degree: its scale blocks and groups must stay whole in
every rank's slice.

vLLM and SGLang refuse at load time, before any memory is profiled, a layout that cuts a scale block or group:

- block-wise fp8 (``weight_block_size`` [block_n, block_k], DeepSeek-V3 / Qwen3 FP8 [128, 128]): a column-parallel
  slice's output width and a row-parallel slice's input width must be multiples of block_n / block_k
  (vllm/model_executor/layers/quantization/utils/fp8_utils.py validate_fp8_block_shape: "Weight
  output_partition_size = ... is not divisible by weight quantization block_n"; the fused MoE's
  Fp8MoEMethod.create_weights: "The output_size of gate's and up's weight = 192 is not divisible by weight
  quantization block_n = 128", Qwen3-235B-A22B-FP8's 1,536-wide experts at TP 8; SGLang's quantization/fp8.py the
  same lines). Under expert parallelism the experts stay whole on their rank, so only their TP slices are checked
  without it (the fix the engines' users report: --enable-expert-parallel / --ep-size).
- AWQ / GPTQ (``group_size`` G): a row-parallel slice's input width must be a multiple of G
  (quantization/awq.py and gptq.py create_weights: "The input size is not aligned with the quantized weight shape.
  This can be caused by too large tensor parallel size."; Qwen2.5-72B's 29,568-wide MLP at TP 8 is 3,696 = 28.9 x
  128, why Qwen ships its AWQ / GPTQ checkpoints padded to 29,696).

Checked: the MLP, shared-expert and routed-expert gate / up / down projections and the attention output projection
(whose input is heads x head_dim: whole at any TP that divides the heads when head_dim is a multiple of the block).
The q / k / v slices are not checked (KV heads replicate below TP, which the engines handle per head). TensorRT-LLM
builds its own engines from the checkpoint and is not checked."""

from __future__ import annotations

from calc.model.parallel import COLUMN_PARALLEL, ROW_PARALLEL
from calc.model.params import tensor_copies
from calc.specs import ModelSpec

CHECKED = {"gate_proj", "up_proj", "gate_up_proj", "down_proj", "o_proj"}
ENGINES_CHECKING = ("vllm", "vllm-v0", "sglang")  # the engines that load the checkpoint's own scales as shipped


def _slices(m: ModelSpec, tp: int, ep: int) -> list[tuple[str, str, str, int, bool]]:
    """(component, matrix name, "in" / "out", width of one rank's slice, whether TP split that side) for every checked
    matrix: the output width of a column-parallel one (one projection's, gate_up_proj split in its two halves) and
    its whole input width, the input width of a row-parallel one; routed experts split only without expert
    parallelism (EP keeps them whole)."""
    out = []
    for t, _ in tensor_copies(m):
        if t.name not in CHECKED or not t.shape:
            continue
        k, n = t.shape
        t_here = 1 if t.component == "experts" and ep > 1 else tp
        if t.name in COLUMN_PARALLEL:
            out.append((t.component, t.name, "out", (n // 2 if t.name == "gate_up_proj" else n) // t_here, t_here > 1))
            out.append((t.component, t.name, "in", k, False))
        elif t.name in ROW_PARALLEL:
            out.append((t.component, t.name, "in", k // t_here, t_here > 1))
    return out


def fp8_moe_scales_matter(m: ModelSpec, dtype: str | None) -> bool:
    """Whether --fp8-moe-scales decides how ``m`` loads: ``--dtype fp8`` on a 16-bit MoE (block: as its block-fp8
    checkpoint, ``shard_problem``; tensor: online fp8). Anything else loads as given, the flag changing nothing."""
    return dtype == "fp8" and m.quantization is None and m.moe is not None


def shard_problem(m: ModelSpec, dtype: str | None, tp: int, ep: int = 1, engine: str = "vllm",
                  fp8_moe_scales: str = "block") -> str | None:
    """Why ``engine`` would refuse to load ``m`` as shipped (``dtype`` None, or fp8 on a checkpoint that ships
    fp8: the engine loads its scales as they are) at TP ``tp`` (EP ``ep``): the first matrix slice that cuts a scale
    block (block fp8) or a group (AWQ / GPTQ), and the TP degrees whose slices stay whole; None when it loads, when
    the weights are converted at load (another ``dtype``: online fp8 has per-tensor scales) or for an engine that
    builds its own (TensorRT-LLM).

    ``--dtype fp8`` on a 16-bit MoE with ``fp8_moe_scales`` "block" (ServingAssumptions' default) is priced as the
    model's block-fp8 checkpoint (Qwen3 / DeepSeek FP8: [128, 128] blocks on every linear), so it is held to that
    checkpoint's blocks as well: Qwen3-235B-A22B at TP 8 has 1,536 / 8 = 192-wide expert slices, which vLLM refuses
    (vllm-project/vllm#25292, Qwen3-30B-A3B-FP8 at TP 8); "tensor" (online fp8, one scale per tensor) is not.

    >>> from calc.sources.catalog import load_model
    >>> shard_problem(load_model("deepseek-v3"), None, 8) is None   # experts 2,048 / 8 = 256, MLP 18,432 / 8 = 2,304
    True
    """
    q = m.quantization
    # --dtype fp8 on a checkpoint that ships block-fp8 loads that checkpoint (its scales as shipped)
    as_shipped = dtype is None or (dtype == "fp8" and q is not None and q.method == "fp8")
    block_checkpoint = fp8_moe_scales_matter(m, dtype) and fp8_moe_scales == "block"
    if engine not in ENGINES_CHECKING or not (block_checkpoint or (as_shipped and q is not None)):
        return None
    if block_checkpoint or (q.method in ("fp8", "compressed_tensors") and q.block_size is not None):
        # block fp8 (compressed-tensors "block"; a 16-bit MoE at --dtype fp8 as its [128, 128] checkpoint)
        block_n, block_k = (128, 128) if block_checkpoint else q.block_size
        what = f"{block_n} x {block_k} fp8 scale blocks"

        def bad(side: str, width: int, split: bool) -> bool:  # an unsplit width may end in a partial block
            return split and width % (block_n if side == "out" else block_k) != 0
    elif q.group_size and (q.method in ("awq", "gptq") or (q.method == "compressed_tensors" and q.strategy == "group")):
        # AWQ / GPTQ and compressed-tensors WNA16 group quantization (its Marlin / Machete path checks the same
        # input_size_per_partition % group_size)
        what = f"{'compressed-tensors' if q.method == 'compressed_tensors' else q.method.upper()} groups of " \
               f"{q.group_size} inputs"

        def bad(side: str, width: int, split: bool) -> bool:  # at every TP, TP 1 included: create_weights checks
            return side == "in" and width % q.group_size != 0  # input_size_per_partition, the whole input at TP 1
    else:
        return None
    cut = next(((c, name, side, w, split) for c, name, side, w, split in _slices(m, tp, ep) if bad(side, w, split)), None)
    if cut is None:
        return None
    component, name, side, width, split = cut
    if not split:  # the whole matrix is cut: no layout loads it
        return (f"{m.name}'s {component} {name} has {width:,} inputs, not whole {what}: {engine} refuses to load it at "
                "any TP (its create_weights checks the input size); check the config's group_size")
    whole = [t for t in (1, 2, 4, 8, 16) if t < tp and all(not bad(s, w, sp) for *_, s, w, sp in _slices(m, t, ep))]
    return (f"{m.name}'s {component} {name} at TP {tp} is {width:,} {'outputs' if side == 'out' else 'inputs'} a rank, "
            f"not whole {what}: {engine} refuses to load it"
            + (f"; TP {whole[-1]} keeps them whole" if whole else "")
            + ("; expert parallelism (--ep) keeps the experts whole" if component == "experts" and m.moe else "")
            + ("; --dtype fp8 is priced as the model's block-fp8 checkpoint: --fp8-moe-scales tensor prices online fp8"
               " (per-tensor scales), which loads" if block_checkpoint else "")
            + ("; a checkpoint padded to whole groups (as Qwen's own AWQ / GPTQ releases are) loads: give its config.json"
               if q is not None and q.group_size and q.block_size is None else ""))
