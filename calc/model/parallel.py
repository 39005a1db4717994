"""Parallel layouts (reference section 6; seed 001 section 2.17, seed 002).

DP splits B, context/sequence parallelism splits S, pipeline splits L, tensor parallelism splits
heads and the FFN width. TP must divide the query heads; KV heads are split when TP divides
them and replicated (one per GPU) when TP is a multiple of them (as vLLM and Megatron do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate

from calc.errors import LLMCalcError
from calc.memo import per_spec
from calc.specs import ModelSpec, Parallelism


@per_spec
def dense_mlp_widths(m: ModelSpec) -> tuple[int, ...]:
    """The FFN widths of the model's dense MLPs and shared experts (their gate / up output, down input), which TP splits
    column- and row-wise: every rank a whole 1/t (vLLM's MergedColumnParallelLinear / RowParallelLinear and
    Megatron's ColumnParallelLinear size each shard with divide(width, tp), which asserts exact division:
    vllm/distributed/utils.py ensure_divisibility, megatron/core/utils.py divide). Routed experts are left out: under
    expert parallelism they stay whole (their TP slice is expert_grid_problem's and calc.serving.shards' concern)."""
    from calc.model.params import tensor_copies

    return tuple(sorted({t.shape[1] // (2 if t.name == "gate_up_proj" else 1) for t, _ in tensor_copies(m)
                         if t.component in ("mlp", "shared_experts") and t.shape
                         and t.name in ("gate_proj", "up_proj", "gate_up_proj")}))


def mixer_tp_problem(m: ModelSpec, tp: int) -> str | None:
    """Why a state-space / linear-attention mixer cannot be split over ``tp`` ranks, or None: its heads (Mamba-2,
    Gated DeltaNet, KDA, lightning heads; Mamba-1 / short-conv channels) whole on each rank, and its B / C groups or
    key heads too, a Mamba-2 with one group excepted (vLLM's MambaMixer2 asserts "If tensor parallel world size does
    not divide num_groups, then num_groups must equal 1" and replicates that one; qwen3_next.py divides its key heads
    by TP; Megatron-Core's MambaMixer asserts ngroups % TP as well)."""
    mix = m.mixer
    if mix is None or tp == 1:
        return None
    if mix.num_heads % tp:
        return f"{tp} does not divide the {mix.num_heads} {mix.kind} heads of {m.name}"
    if mix.kind in ("mamba2", "gated_deltanet", "kda") and mix.n_groups % tp and not (mix.kind == "mamba2" and mix.n_groups == 1):
        what = "B / C groups" if mix.kind == "mamba2" else "key heads"
        return f"{tp} does not divide the {mix.n_groups} {mix.kind} {what} of {m.name}"
    return None


def tp_split_problem(m: ModelSpec, tp: int) -> str | None:
    """Why the model's matrices cannot be split over ``tp`` ranks, or None: a state-space mixer it cannot split
    (mixer_tp_problem), attention heads it does not divide, KV heads it cannot place (tp_splits_kv_heads), a dense FFN
    width it does not divide (dense_mlp_widths). The one TP rule of serving (check_layout) and training
    (calc.training.layout), its hint (splittable_tps) and its refusal (check_tp_split)."""
    if (mixer := mixer_tp_problem(m, tp)) is not None:
        return mixer
    if m.num_heads % tp:
        return f"{tp} does not divide the {m.num_heads} attention heads of {m.name}"
    if not tp_splits_kv_heads(m, tp):
        return f"{tp} neither divides nor is a multiple of the {m.kv_heads} KV heads of {m.name}"
    if (width := next((w for w in dense_mlp_widths(m) if w % tp), None)) is not None:
        return f"{tp} does not divide the FFN width {width:,} of {m.name} (every rank holds a whole 1/TP of it)"
    return None


def splittable_tps(m: ModelSpec, limit: int = 128) -> list[int]:
    """Every TP degree up to ``limit`` check_layout accepts for ``m`` (tp_split_problem: the hint a refused --tp
    names)."""
    return [t for t in range(1, min(m.num_heads, limit) + 1) if tp_split_problem(m, t) is None]


def check_tp_split(m: ModelSpec, tp: int) -> None:
    """Refuse, naming --tp and the degrees that pass (splittable_tps), a TP the model's matrices cannot be split by
    (tp_split_problem)."""
    if (problem := tp_split_problem(m, tp)) is not None:
        raise LLMCalcError("--tp", f"{problem}; try {', '.join(map(str, splittable_tps(m)))}")


def sp_splits_sequence(seq: int, tp: int, cp: int = 1) -> bool:
    """Whether sequence parallelism can split each rank's seq / CP tokens whole over the TP ranks (Megatron-Core
    scatters the [s, b, h] activations along s: tensor_parallel/mappings.py _split_along_first_dim, "First dimension of
    the tensor should be divisible by tensor parallel size")."""
    return (seq // cp) % tp == 0


def check_sequence_parallel(sp: bool, seq: int, tp: int, cp: int = 1) -> None:
    """--sp where TP does not split each rank's tokens whole (sp_splits_sequence): refused, naming --sp. The one SP
    rule of training and fine-tuning; the plan search runs TP without SP there (calc.training.plan)."""
    if sp and not sp_splits_sequence(seq, tp, cp):
        raise LLMCalcError("--sp", f"sequence parallelism splits each rank's {seq // cp:,} tokens over TP {tp}, which does "
                                   "not divide them; give a --seq that TP x CP divides, or drop --sp")


def check_layout(m: ModelSpec, plan: Parallelism, extra_stage_slots: int = 0) -> Parallelism:
    """Reject layouts the model cannot be split into, naming the flag and the valid choices. ``extra_stage_slots``: the
    embedding / loss counted as pipeline layers (Megatron-Core --account-for-embedding/loss-in-pipeline-split), which
    may fill a stage of their own (calc.model.parallel.pipeline_stage_layers): PP up to L + those slots."""
    check_tp_split(m, plan.tp)
    if plan.pp > m.num_layers + extra_stage_slots:
        raise LLMCalcError("--pp", f"{plan.pp} pipeline stages exceed the {m.num_layers} layers of {m.name}")
    return plan


def tp_divides_kv_heads(m: ModelSpec, tp: int) -> bool:
    """t divides the g KV heads (g/t whole heads per GPU, none replicated): what a stack that shards without
    replicating needs (calc.training.stack.SHARDS_KV_HEADS); MLA's one latent is replicated on every rank."""
    return bool(m.mla) or m.kv_heads % tp == 0


def tp_splits_kv_heads(m: ModelSpec, tp: int) -> bool:
    """TP can place the g KV heads: t divides g (g/t per GPU) or g divides t (each head replicated on t/g
    GPUs, vLLM's QKVParallelLinear; Megatron likewise). MLA has one latent, replicated on every rank."""
    return bool(m.mla) or m.kv_heads % tp == 0 or tp % m.kv_heads == 0


def expert_grid_problem(m: ModelSpec, tp: int, cp: int, dp: int, ep: int, etp: int | None) -> tuple[str, str] | None:
    """(flag, message) when the MoE grid ETP x EP x EDP cannot fold over the t*c*d ranks of a stage, else None
    (``etp`` None: ETP = TP; the expert grid of calc.training.layout).

    Megatron-Core (parallel_state.py initialize_model_parallel) requires world % (ETP x EP x PP) == 0, i.e. ETP x EP
    divides t*c*d; EP must divide the experts and a given ETP the expert FFN width (each rank a 1/ETP column/row slice).
    With the default ETP = TP this is "EP divides DP x CP"; ETP 1 lets EP span the TP ranks too."""
    given = etp is not None
    etp = tp if etp is None else etp
    if given and not m.moe:
        return "--etp", f"{m.name} has no experts; expert tensor parallelism needs a MoE model (drop --etp)"
    if ep > 1 and not m.moe:
        return "--ep", f"{m.name} has no experts; expert parallelism needs a MoE model (use --ep 1)"
    if not m.moe:
        return None
    if m.moe.num_experts % ep:
        return "--ep", f"{ep} does not divide the {m.moe.num_experts} experts of {m.name}"
    if given and m.moe.expert_intermediate_size % etp:
        return "--etp", f"ETP {etp} does not divide the expert FFN width {m.moe.expert_intermediate_size} of {m.name}"
    ranks = tp * cp * dp
    if ranks % (ep * etp):
        return "--ep", (f"EP {ep} x ETP {etp} = {ep * etp} must divide TP x CP x DP = {ranks} (Megatron-Core's expert grid "
                        "ETP x EP x EDP folds over a stage's ranks)" + ("; --etp 1 lets EP span the TP ranks"
                                                                         if etp > 1 and ranks % ep == 0 else ""))
    return None


def kv_heads_per_gpu(m: ModelSpec, tp: int) -> int:
    """g/t KV heads per GPU, at least 1 (replicated when t > g). The one place this is computed:
    calc.memory.kv (cache bytes), calc.hardware.model_ops (attention ops) and calc.training.cost (CP
    ring blocks) all call it (it lives here, below calc.hardware, so every layer may import it)."""
    if tp < 1:
        raise LLMCalcError("--tp", f"must be >= 1, got {tp}")
    return max(-(-m.kv_heads // tp), 1)  # ceil: the busiest rank when t does not divide g (check_layout refuses that)


def pp_stage_layers(num_layers: int, pp: int) -> list[int]:
    """Decoder layers on each pipeline stage, as vLLM partitions them (vllm/distributed/utils.py
    get_pp_indices): L // p on every stage, and the L mod p left over one each on the stages before
    the last, from the second-to-last backwards (the last holds the final norm and the LM head).

    >>> pp_stage_layers(30, 4)  # 7 each, 2 left over: stages 2 and 1 take one
    [7, 8, 8, 7]
    """
    partitions = [num_layers // pp] * pp
    for i in range(2, num_layers % pp + 2):
        partitions[-i] += 1
    return partitions


def busiest_stage_sum(per_layer: Sequence[int], pp: int) -> int:
    """The largest per-stage sum of a per-layer quantity (layers of a kind, tokens a layer caches) over the
    pipeline stages of pp_stage_layers: what the busiest stage holds.

    >>> busiest_stage_sum([1] * 30, 4), busiest_stage_sum([1, 0] * 15, 4)
    (8, 4)
    """
    stages = pp_stage_layers(len(per_layer), pp)
    return max(sum(per_layer[end - n : end]) for n, end in zip(stages, accumulate(stages), strict=True))


def pipeline_stage_layers(num_layers: int, pp: int, embedding: bool = False, loss: bool = False) -> list[int] | None:
    """Decoder layers per pipeline stage as Megatron-Core places them; None when it cannot.

    ``embedding`` / ``loss`` (``--account-for-embedding-in-pipeline-split`` / ``--account-for-loss-in-pipeline-split``):
    the embedding and the loss each count as one layer, L' = L + e + l split evenly, L'/p per stage, and the first
    (last) stage builds one decoder layer fewer (megatron/core/transformer/transformer_block.py
    get_num_layers_to_build: ``num_layers += 1`` for each, ``assert num_layers % pipeline_model_parallel_size == 0``,
    then ``num_layers_to_build -= 1`` on the first / last stage). Llama 3.1 405B (126 layers, both) on PP 16:
    128 / 16 = 8 per stage -> [7, 8 x 14, 7]; on PP 12 (128 mod 12 = 8) Megatron-Core refuses it.

    Even when p divides L (L/p each). Otherwise Megatron-Core's uneven form
    (``--decoder-first-pipeline-num-layers F --decoder-last-pipeline-num-layers E``, megatron/core/transformer/
    transformer_block.py get_num_layers_to_build): the p - 2 middle stages hold k = ceil(L/p) layers each and the
    first and last stages share the remaining R = L - (p - 2) k, F = ceil(R/2) and E = floor(R/2) (the last stage
    also carries the output head, so it takes the smaller share). Valid when 1 <= E and F <= k, i.e.
    (p - 2) k <= L - 2 (p = 2: F = k, E = L - k). For L = 32: p = 3 (k = 11, R = 21) gives [11, 11, 10];
    p = 11 (k = 3, R = 5) gives [3, 3 x 9, 2]; p = 25 (k = 2, the 23 middle stages alone need 46 layers) is refused.

    >>> pipeline_stage_layers(32, 3), pipeline_stage_layers(32, 25)
    ([11, 11, 10], None)
    """
    if pp < 1 or pp > num_layers + embedding + loss:  # the embedding / loss slots may fill a stage of their own
        return None
    if embedding or loss:
        total = num_layers + embedding + loss
        if total % pp:
            return None
        per = total // pp
        stages = [per] * pp
        stages[0] -= embedding
        stages[-1] -= loss
        return stages if min(stages) >= 0 else None
    if num_layers % pp == 0:
        return [num_layers // pp] * pp
    k = -(-num_layers // pp)
    rest = num_layers - (pp - 2) * k
    first, last = -(-rest // 2), rest // 2
    if last < 1 or first > k:
        return None
    return [first] + [k] * (pp - 2) + [last]


def layers_per_stage(m: ModelSpec, pp: int) -> int:
    """Layers on the busiest pipeline stage: ceil(L/p) (the largest of pp_stage_layers)."""
    return math.ceil(m.num_layers / pp)


# The pipeline depths the serving layout searches try (serve's candidates, the fewest GPUs that hold a batch): vLLM and
# SGLang take any --pipeline-parallel-size; 3 stages put a model that two GPUs cannot hold on three (Llama 3 70B bf16,
# 141 GB, on 3 x 80 GB), the depths past 4 are the powers of two deployments use.
SERVING_PP_DEGREES = (1, 2, 3, 4, 8)
SERVING_TP_DEGREES = (1, 2, 4, 8, 16, 32, 64)  # tensor parallelism splits heads and columns in powers of two


def serving_layouts(m: ModelSpec, limit: int, max_tp: int) -> list[Parallelism]:
    """The TP x PP layouts the serving searches try (serve's candidates, smallest_fitting_gpus): TP one of
    SERVING_TP_DEGREES up to ``max_tp`` (serve: two nodes, flagged when it spans them; the fewest-GPUs advice: one
    node), PP one of SERVING_PP_DEGREES, TP x PP at most ``limit`` GPUs, each a split the model allows (check_layout:
    heads divide by TP, layers at least PP)."""
    out = []
    for tp in (t for t in SERVING_TP_DEGREES if t <= max_tp):
        for pp in (p for p in SERVING_PP_DEGREES if tp * p <= limit):
            try:
                out.append(check_layout(m, Parallelism(tp=tp, pp=pp)))
            except LLMCalcError:
                continue
    return out


def inference_layout(m: ModelSpec, num_gpus: int) -> Parallelism | None:
    """The layout a serving engine would use on n GPUs: TP = n when n divides the heads; else the widest TP of one
    node (<= 8) whose pipeline depth n / TP the serving searches try (``serving_layouts``: 12 GPUs are TP 4 x PP 3);
    else TP 8 x PP n/8 (one 8-GPU node per stage); None when none applies.

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("llama3.1-405b")
    >>> [(p.tp, p.pp) for p in (inference_layout(m, 8), inference_layout(m, 12), inference_layout(m, 24))]
    [(8, 1), (4, 3), (8, 3)]
    """
    pipelined = [(tp, num_gpus // tp) for tp in sorted(SERVING_TP_DEGREES, reverse=True)
                 if tp <= 8 and num_gpus % tp == 0 and num_gpus // tp in SERVING_PP_DEGREES]
    for tp, pp in ((num_gpus, 1), *pipelined, (8, num_gpus // 8)):
        if pp >= 1 and tp * pp == num_gpus:
            try:
                return check_layout(m, Parallelism(tp=tp, pp=pp))
            except LLMCalcError:
                continue
    return None


# Megatron-LM tensor parallelism (Shoeybi et al. 2019, arXiv 1909.08053, section 3): column-parallel
# matrices split their output width N by t (q/k/v and gate/up, fused or not, MLA's up-projections q_b / kv_b,
# the vocabulary-parallel head); row-parallel ones split their input width K by t and end in an all-reduce
# (the attention output and the MLP / expert down projection). The rest (MLA's latent down-projections
# q_a / kv_a, the router, a shared-expert gate) stay whole on every rank, as vLLM's ReplicatedLinear.
COLUMN_PARALLEL = frozenset({"q_proj", "k_proj", "v_proj", "qkv_proj", "gate_proj", "up_proj", "gate_up_proj",
                             "lm_head", "q_b_proj", "kv_b_proj",
                             # state-space / linear-attention mixers (calc.model.mixers), as vLLM shards them: Mamba-2's
                             # merged in_proj (mamba_mixer2.py MergedColumnParallelLinear), Gated DeltaNet's in_proj_qkvz
                             # and in_proj_ba (qwen3_next.py ColumnParallelLinear), Mamba-1's in_proj and dt_proj
                             "in_proj", "in_proj_qkvz", "in_proj_ba", "dt_proj"})
# the mixers' out_proj (RowParallelLinear in mamba_mixer2.py / qwen3_next.py) and Mamba-1's x_proj (mamba_mixer.py)
ROW_PARALLEL = frozenset({"o_proj", "down_proj", "out_proj", "x_proj"})


def tp_ranks_sharing(m: ModelSpec, component: str, name: str, tp: int) -> int:
    """Over how many of ``tp`` ranks one tensor's bytes are divided as vLLM / SGLang place a TP group:

    - 1 (whole on every rank) for a named matrix outside the column- and row-parallel sets (vLLM's ReplicatedLinear:
      MLA's q_a_proj / kv_a_proj_with_mqa in deepseek_v2.py, the MoE router ``gate`` of every MoE family, Qwen3-Next's
      shared_expert_gate) and for the router's other tensors (its score-correction bias);
    - min(t, g) for k_proj / v_proj of g KV heads: past g ranks each keeps one whole head (QKVParallelLinear:
      num_kv_head_replicas = t / g), so its slice is 1/g of the matrix, not 1/t;
    - t for everything else (column- / row-parallel matrices, the vocabulary-parallel embedding and head, the state
      layers' parameters, which vLLM splits by head), the norms' weights included: vLLM keeps them whole on every rank,
      but they are 2 x H x 2 B a layer (1.3 MB of Llama 2 70B's 138 GB at TP 2), below what the logs this is checked
      against resolve (the A800 log of 2,309 blocks in tests/test_serving_memory.py has 1.2 MB of slack).

    >>> from calc.sources.catalog import load_model
    >>> m = load_model("llama3-70b")  # 8 KV heads
    >>> tp_ranks_sharing(m, "attention", "k_proj", 16), tp_ranks_sharing(m, "attention", "q_proj", 16)
    (8, 16)
    >>> tp_ranks_sharing(load_model("deepseek-v3"), "attention", "q_a_proj", 8)
    1
    """
    if component == "router" or (name and name not in COLUMN_PARALLEL and name not in ROW_PARALLEL):
        return 1
    if name in ("k_proj", "v_proj") and m.mla is None:
        return min(tp, m.kv_heads)
    return tp


def tp_shard(name: str, k: int, n: int, tp: int) -> tuple[int, int]:
    """(K, N) of one rank's slice of the [K, N] matrix ``name`` under TP degree ``tp`` (the split above,
    ceil as the engines pad): column-parallel -> (K, ceil(N/t)), row-parallel -> (ceil(K/t), N), else whole.

    >>> tp_shard("o_proj", 4096, 4096, 2), tp_shard("gate_up_proj", 4096, 28672, 2), tp_shard("router", 4096, 8, 2)
    ((2048, 4096), (4096, 14336), (4096, 8))
    """
    if name in COLUMN_PARALLEL:
        return k, math.ceil(n / tp)
    if name in ROW_PARALLEL:
        return math.ceil(k / tp), n
    return k, n


def tp_activation_bytes(m: ModelSpec, tokens: float, elem_bytes: float) -> float:
    """Bytes of the [tokens, H] activation one Megatron TP all-reduce sums (after each row-parallel
    matrix: two per layer forward, arXiv 1909.08053 section 3), also what sequence parallelism's
    all-gather / reduce-scatter pair moves and a pipeline stage sends: tokens x H x element bytes."""
    return tokens * m.hidden_size * elem_bytes


def check_num_gpus(num_gpus: int) -> None:
    if num_gpus < 1:
        raise LLMCalcError("--num-gpus", f"must be >= 1, got {num_gpus}")
