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

from calc.model.parallel import pipeline_stage_layers


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
    accounted = embedding or loss
    if pp == 1 or micro < 1 or pipeline_stage_layers(num_layers, pp, embedding, loss) is None \
            or (accounted and (num_layers + embedding + loss) % (pp * vpp)):
        return None
    held = [peak_held_layers(pp, micro, r, chunk_layers(num_layers, pp, vpp, r, embedding, loss), group)
            for r in range(pp)]
    return max(held[:-1]), held[-1]
