"""What a pipeline schedule keeps alive: the layer-micro-batches of saved activations each pipeline rank holds at its
fullest, counted chunk by chunk (the fullest rank but the last, and the last, which also carries the head).

A rank's held activations rise by a chunk's layers at each forward and fall by them at that chunk's backward.
Megatron-Core's interleaved 1F1B (megatron/core/pipeline_parallel/schedules.py
forward_backward_pipelining_with_interleaving, get_pp_rank_microbatches, get_model_chunk_id) runs, on rank r of p
with v model chunks and groups of N micro-batches (``microbatch_group_size_per_vp_stage``, default p):

    warm-up     min(2 (p - r - 1) + (v - 1) N, m v) forwards
    steady      one forward, then one backward, until the forwards run out
    cool-down   the remaining backwards
    forward k:  chunk (k mod N v) div N,             micro-batch (k div N v) N + k mod N
    backward k: chunk v - 1 - (k mod N v) div N,     same micro-batch

Without interleaving (v = 1) this is 1F1B: min(p - r - 1, m) warm-up forwards (PipeDream-Flush, Narayanan et al.
2021 sec. 2.2). When every chunk of a rank holds the same number of layers the peak is the closed form of
calc.training.step.in_flight_microbatches times the stage's layers. Chunks differ when the embedding or the loss
takes a layer's slot (Megatron-Core's ``--account-for-embedding/loss-in-pipeline-split``: the first chunk of the
first rank builds one decoder layer fewer, the last chunk of the last rank too) or when a stage's layers do not
divide by v; then the forwards of a light chunk (Llama 3 405B's embedding-only chunk, arXiv 2407.21783 sec. 3.3.2)
add no layers, and only the walk through the schedule gives the peak.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

from calc.memo import per_spec
from calc.model.parallel import pipeline_stage_layers
from calc.model.params import layer_blocks, model_tensors, total_params
from calc.specs import ModelSpec
from calc.units import plural


class StageSplit(NamedTuple):
    """How a layout splits the decoder layers over the pipeline ranks: ``vpp`` model chunks a rank, and whether the
    embedding / the loss take a layer's slot (Megatron-Core's --account-for-embedding/loss-in-pipeline-split)."""

    vpp: int = 1
    embedding: bool = False
    loss: bool = False


CONTIGUOUS = StageSplit()  # one chunk a rank, no embedding / loss slot: Megatron-Core's default placement


def chunk_layers(num_layers: int, pp: int, vpp: int, rank: int, embedding: bool = False, loss: bool = False
                 ) -> tuple[int, ...]:
    """Decoder layers in each of the ``vpp`` model chunks of pipeline rank ``rank``.

    With the embedding / loss counted in the split, every chunk has S = (L + e + l) / (p v) slots, and the first
    chunk of rank 0 (the last chunk of rank p - 1) gives one to the embedding (the loss): Megatron-Core's
    get_num_layers_to_build for a virtual stage. Otherwise the stage's n layers (calc.model.parallel.
    pipeline_stage_layers) split into chunks of ceil(n/v) and floor(n/v), the fuller first.

    >>> chunk_layers(126, 16, 8, 0, embedding=True, loss=True)
    (0, 1, 1, 1, 1, 1, 1, 1)
    >>> chunk_layers(32, 3, 2, 2)
    (5, 5)
    """
    e, lo = int(embedding), int(loss)
    if e or lo:
        per = (num_layers + e + lo) // (pp * vpp)
        chunks = [per] * vpp
        if rank == 0:
            chunks[0] -= e
        if rank == pp - 1:
            chunks[-1] -= lo
        return tuple(chunks)
    stages = pipeline_stage_layers(num_layers, pp)
    if stages is None:
        raise ValueError(f"{pp} pipeline stages cannot hold {num_layers} layers (check_training_layout refuses it)")
    q, extra = divmod(stages[rank], vpp)
    return tuple([q + 1] * extra + [q] * (vpp - extra))


@lru_cache(maxsize=4096)
def peak_held_layers(pp: int, micro: int, rank: int, chunks: tuple[int, ...], group: int | None = None) -> int:
    """The most layer-micro-batches of saved activations rank ``rank`` holds at once (module docstring), walking
    the schedule forward by forward; ``chunks``: its chunks' layers, ``group``: N (None: p).

    >>> peak_held_layers(4, 8, 0, (8,)), peak_held_layers(4, 8, 3, (8,))   # 1F1B: p and 1 micro-batches of 8 layers
    (32, 8)
    >>> peak_held_layers(16, 32, 0, (0, 1, 1, 1, 1, 1, 1, 1))   # 7 chunks x 16 micro-batches; the 31 embedding-only add none
    112
    """
    v, n = len(chunks), pp if group is None else group
    total = micro * v
    warm = min(2 * (pp - rank - 1) + (v - 1) * n if v > 1 else pp - rank - 1, total)
    if len(set(chunks)) == 1:  # equal chunks: the warm-up's forwards and, in the steady state, one more
        return chunks[0] * min(warm + 1, total)

    def layers(k: int, forward: bool) -> int:
        c = (k % (n * v)) // n
        return chunks[c if forward else v - 1 - c]

    held = peak = sum(layers(k, True) for k in range(warm))
    # the steady state's pairs (forward warm + i, backward i) repeat every N v: each period adds and frees every
    # chunk's layers N times, so the walk stops after one period (a step of millions of micro-batches walks no further)
    for i in range(min(total - warm, n * v)):
        held += layers(warm + i, True)
        peak = max(peak, held)
        held -= layers(i, False)
    return max(peak, held)


@lru_cache(maxsize=4096)
def held_stage_layers(num_layers: int, pp: int, micro: int, vpp: int = 1, group: int | None = None,
                      embedding: bool = False, loss: bool = False) -> tuple[int, int] | None:
    """(the fullest rank but the last, the last rank): the layer-micro-batches of saved activations each holds at its
    fullest over ``micro`` micro-batches (``peak_held_layers`` of its chunks, ``chunk_layers``), what
    calc.memory.training.stage_activation_bytes multiplies by one layer's bytes. The first rank holds the most
    micro-batches, but not always the most layers: in Megatron-Core's uneven split (126 layers on PP 16: 7, 8 x 14, 7)
    the second rank holds 15 micro-batches of 8 layers, 120, where the first holds 16 of 7, 112; interleaved with the
    embedding in the split (PP 16 x VPP 8, one layer a chunk, 32 micro-batches) the first rank's 142 warm-up forwards
    include 30 of its embedding-only chunk, the second rank's 140 are all of one layer: 141 held against 112. The last
    rank also carries the head, whose loss buffers serve one micro-batch at a time in either schedule (its last
    chunk's forward is followed at once by that micro-batch's backward), so it is kept apart. None without a pipeline
    or for a split Megatron-Core cannot place (check_training_layout refuses those).

    >>> held_stage_layers(126, 16, 32, vpp=8, embedding=True, loss=True)
    (141, 113)
    >>> held_stage_layers(126, 16, 16)
    (120, 7)
    """
    return held_ends(held_by_rank(num_layers, pp, micro, vpp, group, embedding, loss))


def held_ends(held: tuple[int, ...] | None) -> tuple[int, int] | None:
    """``held_by_rank``'s counts reduced to (the fullest rank but the last, the last).

    >>> held_ends((32, 24, 16, 8)), held_ends(None)
    ((32, 8), None)
    """
    return None if held is None else (max(held[:-1]), held[-1])


@lru_cache(maxsize=4096)
def held_by_rank(num_layers: int, pp: int, micro: int, vpp: int = 1, group: int | None = None,
                 embedding: bool = False, loss: bool = False) -> tuple[int, ...] | None:
    """The layer-micro-batches of saved activations each pipeline rank holds at its fullest (``peak_held_layers`` of
    its chunks), rank by rank; ``held_stage_layers`` reduces it to the fullest rank but the last, and the last.
    None without a pipeline or for a split Megatron-Core cannot place.

    >>> held_by_rank(32, 4, 8)   # 1F1B: rank r holds p - r micro-batches of its 8 layers
    (32, 24, 16, 8)
    """
    accounted = embedding or loss
    if pp == 1 or micro < 1 or pipeline_stage_layers(num_layers, pp, embedding, loss) is None \
            or (accounted and (num_layers + embedding + loss) % (pp * vpp)):
        return None
    return tuple(peak_held_layers(pp, micro, r, chunk_layers(num_layers, pp, vpp, r, embedding, loss), group)
                 for r in range(pp))


def rank_layers(num_layers: int, pp: int, split: StageSplit = CONTIGUOUS) -> tuple[tuple[int, ...], ...] | None:
    """The decoder layers (indices from 0) each pipeline rank builds: virtual stage j = c p + r is chunk c of rank r
    (Megatron-Core's interleaved placement, megatron/core/transformer/transformer_layer.py get_transformer_layer_offset),
    and the virtual stages take their ``chunk_layers`` in order. None for a split Megatron-Core cannot place.

    >>> rank_layers(8, 2, StageSplit(vpp=2))
    ((0, 1, 4, 5), (2, 3, 6, 7))
    >>> [len(r) for r in rank_layers(126, 16, StageSplit(embedding=True, loss=True))][:3]
    [7, 8, 8]
    """
    v, e, lo = split
    if pipeline_stage_layers(num_layers, pp, e, lo) is None or ((e or lo) and (num_layers + e + lo) % (pp * v)):
        return None
    chunks = [chunk_layers(num_layers, pp, v, r, e, lo) for r in range(pp)]
    ranks: list[list[int]] = [[] for _ in range(pp)]
    start = 0
    for j in range(pp * v):
        c, r = divmod(j, pp)
        ranks[r] += range(start, start + chunks[r][c])
        start += chunks[r][c]
    return tuple(tuple(r) for r in ranks)


@per_spec
def stage_params(m: ModelSpec, pp: int, split: StageSplit = CONTIGUOUS) -> tuple[tuple[int, int], ...] | None:
    """(dense, routed-expert) parameters each pipeline rank holds: its decoder layers (``rank_layers``, each layer's
    own tensors, calc.model.params.layer_blocks), the embedding and everything else outside the blocks (positions, an
    embedding norm, a vision tower, a shared block) on the first rank, the final norm and the output head on the last;
    a head tied to the embedding is a second copy of V x H on the last rank when
    p > 1 (Megatron-Core's shared_embedding_or_output_weight: the last stage builds the output layer from a copy of
    the word embeddings and all-reduces its gradient with the first stage's). Rank sums are the model's count
    (+ V H with a tied head). None for a split Megatron-Core cannot place.

    Worked: Gemma 2 9B (V 256,000 x H 3,584 = 917,504,000 embedding, tied; 42 layers of 198,195,200) on PP 4
    (Megatron-Core's uneven split 10, 11, 11, 10) holds 10 layers + the embedding on the first rank,
    1,981,952,000 + 917,504,000 = 2,899,456,000, and 10 layers + the final norm + the tied head's copy on the last,
    2,899,459,584, against 9,241,705,984 / 4 = 2.31e9 averaged over the stages."""
    layers = rank_layers(m.num_layers, pp, split)
    if layers is None:
        return None
    per_layer = [(sum(t.params for t in ts if t.component != "experts"), sum(t.params for t in ts if t.component == "experts"))
                 for _, ts in layer_blocks(m)]
    outside = model_tensors(m)
    # the output head and the final norm are built by the last stage (Megatron-Core's post_process: output_layer and
    # the TransformerBlock's final_layernorm), everything else outside the blocks by the first (pre_process)
    head = sum(t.params for t in outside if t.component == "lm_head" or t.formula.startswith("final "))
    first = sum(t.params for t in outside) - head
    if m.tied_embeddings and pp > 1:
        head += m.vocab_size * m.hidden_size
    out = []
    for r, idx in enumerate(layers):
        dense = sum(per_layer[i][0] for i in idx) + (first if r == 0 else 0) + (head if r == pp - 1 else 0)
        out.append((dense, sum(per_layer[i][1] for i in idx)))
    return tuple(out)


def stage_params_note(m: ModelSpec, pp: int, split: StageSplit = CONTIGUOUS, rank_totals: list[int] | None = None
                      ) -> str | None:
    """The assumption line of ``stage_params`` (--explain): what the first and last ranks hold and, given each rank's
    peak (``rank_totals``, calc.memory.training.training_bytes_per_gpu's), which is priced; None without PP."""
    shares = stage_params(m, pp, split) if pp > 1 else None
    if shares is None:
        return None
    layers = rank_layers(m.num_layers, pp, split)
    assert layers is not None
    tied = "; the tied head is a copy of the embedding there" if m.tied_embeddings else ""
    priced = "the fullest rank is priced"
    if rank_totals and len(rank_totals) == pp:
        r = rank_totals.index(max(rank_totals))
        priced = (f"each rank's states beside its own activations, the fullest rank {r} of 0-{pp - 1} "
                  f"({sum(shares[r]):,} parameters, {plural(len(layers[r]), 'layer')}; first {rank_totals[0] / 2**30:.2f} GiB, "
                  f"last {rank_totals[-1] / 2**30:.2f} GiB) priced")
    return (f"pipeline states rank by rank: the first rank {sum(shares[0]):,} parameters ({plural(len(layers[0]), 'layer')} "
            f"+ the embedding and the rest outside the blocks), the last {sum(shares[-1]):,} "
            f"({plural(len(layers[-1]), 'layer')} + the final norm and the head{tied}), against "
            f"N/p = {total_params(m) / pp:,.0f} averaged; {priced}")
