"""What each layer attends to: full context, a sliding window, a chunk, the top-k keys its indexer selects (DeepSeek-V3.2's
sparse attention, 'sparse': every token cached, min(context, k) attended), or nothing (a linear-attention /
state-space mixer, 'linear', or no mixer at all, 'none': neither keeps a KV cache).

Every consumer (KV cache, attention FLOPs, concurrency) reads ``attention_layers`` instead of the
spec's raw fields, so the rule "a sliding layer sees at most its window" lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from calc.memo import per_spec
from calc.specs import AttentionKind, ModelSpec

# A layer's kind: the spec's layer_types, plus 'sparse' for a DeepSeek-V3.2 (DSA) model's MLA layers, whose lightning
# indexer picks index_topk keys per query (DeepSeek-V3.2-Exp report, sec. 2.1; config.json index_topk 2048)
LayerKind = AttentionKind | Literal["sparse"]


@dataclass(frozen=True)
class LayerAttention:
    """One layer's attention: ``kind`` and ``window`` (tokens it attends to and caches; None = all)."""

    kind: LayerKind
    window: int | None  # sliding window, attention chunk, or the top-k of a sparse layer

    @property
    def softmax(self) -> bool:
        """Softmax attention, the only kind that keeps K and V per token."""
        return self.kind not in ("linear", "none")

    def tokens_seen(self, tokens: int) -> int:
        """Tokens this layer keeps in its KV cache for a sequence of ``tokens`` (vLLM-style cap):
        full -> tokens, sliding -> min(tokens, window), chunked -> min(tokens, chunk), linear / none -> 0."""
        if not self.softmax:
            return 0
        return tokens if self.window is None or self.kind == "sparse" else min(tokens, self.window)

    def keys_attended(self, context: float) -> float:
        """Keys one query with ``context`` tokens cached attends to: tokens_seen, except a sparse layer's top-k,
        min(context, k), out of the whole cache it keeps."""
        if not self.softmax:
            return 0
        return context if self.window is None else min(context, self.window)

    def keys_read(self, context: int, first: int = 0, last: int = 0) -> float:
        """Keys a decoding query reads from this layer when ``context`` tokens (itself included) are cached:
        tokens_seen(context) for full / sliding layers; a chunked layer (Llama 4) reads only the query's own chunk,
        ((n - 1) mod c) + 1 at context n, which restarts at 1 with every chunk. Given the contexts ``first`` ..
        ``last`` of a request's decode steps, a chunked layer's read is their mean,
        (K(last) - K(first - 1)) / (last - first + 1) with K(n) = sum_{i<n} ((i mod c) + 1) (_keys_before): about
        c / 2 over a generation longer than a chunk, where min(n, c) would read c.

        >>> LayerAttention("chunked", 8192).keys_read(16386), LayerAttention("chunked", 8192).keys_read(16384)
        (2, 8192)
        >>> LayerAttention("chunked", 4).keys_read(9, 5, 12), LayerAttention("sliding", 4).keys_read(9, 5, 12)
        (2.5, 4)
        """
        if self.kind == "sparse":
            return self.keys_attended(context)
        if self.kind != "chunked" or self.window is None or context < 1:
            return self.tokens_seen(context)
        lo, hi = (first, last) if 1 <= first <= last else (context, context)
        if lo == hi:
            return (hi - 1) % self.window + 1
        return (self._keys_before(hi) - self._keys_before(lo - 1)) / (hi - lo + 1)

    def pairs(self, seq: int, context: int, causal: bool) -> int:
        """(query, key) pairs of one sequence: S new queries at positions S'-S .. S'-1.

        Full-matrix convention: S * (keys in reach) = S*S', S*min(S', w) for a local layer. Causal and
        exact: sum over the queries of the keys each sees, i+1 (full), min(i+1, w) (sliding window,
        Mistral arXiv 2310.06825 section 2) or (i mod c)+1 (chunked, Llama 4: a token sees its own chunk).
        """
        if not self.softmax:
            return 0
        if not causal:
            return seq * (context if self.window is None else min(context, self.window))
        return self._keys_before(context) - self._keys_before(context - seq)

    def _keys_before(self, n: int) -> int:
        """Sum of the keys seen by the queries at positions 0 .. n-1 (causal); a sparse layer's top-k counts as a
        window of k keys (its query attends min(i + 1, k) of them)."""
        w = self.window
        if w is None:
            return n * (n + 1) // 2
        if self.kind == "chunked":
            chunks, rest = divmod(n, w)
            return chunks * w * (w + 1) // 2 + rest * (rest + 1) // 2
        return n * (n + 1) // 2 if n <= w else w * (w + 1) // 2 + (n - w) * w


def attention_layers(m: ModelSpec) -> list[LayerAttention]:
    """The attention of each of the ``num_layers`` layers, in order.

    >>> from calc.sources.catalog import load_model
    >>> {a.kind for a in attention_layers(load_model("llama2-7b"))}
    {'full'}
    """
    return list(_attention_layers(m))


@per_spec
def _attention_layers(m: ModelSpec) -> tuple[LayerAttention, ...]:
    kinds = m.layer_types or ["full"] * m.num_layers
    windows = {"full": None, "none": None, "linear": None, "sliding": m.sliding_window, "chunked": m.attention_chunk_size}
    topk = m.mla.index_topk if m.mla and m.mla.index_n_heads else 0
    return tuple(LayerAttention("sparse", topk) if topk and kind == "full" else LayerAttention(kind, windows[kind])
                 for kind in kinds)


@per_spec
def keys_seen(m: ModelSpec, context: float) -> float:
    """Keys one query with ``context`` tokens before it reads, summed over the layers:
    sum_l keys_attended_l(context) = L x context when every layer is full; a sliding / chunked layer
    reaches at most its window, a sparse layer its top-k, a layer without softmax attention none."""
    return sum(layer.keys_attended(context) for layer in _attention_layers(m))


def prefill_keys(m: ModelSpec, prompt: int) -> float:
    """Keys one prompt token attends on average in a causal prefill of ``prompt`` tokens, summed over the layers:
    sum_l pairs_l(P) / P (LayerAttention.pairs, exact): (P + 1)/2 a full layer, the mean of min(i + 1, w) over the
    P queries a sliding-window (or sparse top-k) layer, of (i mod c) + 1 a chunked one. Equal to keys_seen(m, (P + 1)/2)
    when every layer is full; below it for a windowed layer with P > w / 2 or so, where min((P + 1)/2, w) would take
    the mean before the window (Mistral 7B, w 4,096, P 8,000: 3,047.7 keys a layer, not 4,000.5).

    >>> from calc.sources.catalog import load_model
    >>> prefill_keys(load_model("llama2-7b"), 4096) == 32 * 4097 / 2
    True
    """
    return sum(layer.pairs(prompt, prompt, True) for layer in _attention_layers(m)) / prompt if prompt > 0 else 0.0


def decode_keys_read(m: ModelSpec, context: float, first: int = 0, last: int = 0) -> float:
    """Keys one decoding query reads at ``context`` cached tokens, summed over the layers (LayerAttention.keys_read:
    a chunked layer its own chunk, averaged over the decode contexts ``first`` .. ``last`` when given); equal to
    keys_seen(m, context) for a model without chunked layers."""
    if "chunked" not in (m.layer_types or ()) and not sparse_layers(m):
        return keys_seen(m, context)
    return sum(layer.keys_read(round(context), first, last) for layer in _attention_layers(m))


def mixer_layer_flags(m: ModelSpec) -> list[bool]:
    """Whether each layer runs the model's state-space / linear-attention mixer ('linear' layers; every layer
    when the mixer runs beside attention, Falcon-H1)."""
    if m.mixer is None:
        return [False] * m.num_layers
    return [m.mixer.parallel or a.kind == "linear" for a in attention_layers(m)]


@per_spec
def sparse_layers(m: ModelSpec) -> int:
    """Layers whose query attends its indexer's top-k keys (DeepSeek-V3.2's DSA), 0 for any other model."""
    return sum(a.kind == "sparse" for a in _attention_layers(m))
