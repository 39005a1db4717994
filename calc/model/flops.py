"""FLOPs of forward, training and decode passes; GEMM shapes and arithmetic intensity
(reference sections 2 and 7; seed 001 sections 2.6-2.14; seed 000).

A matmul [M,K]@[K,N] costs 2*M*K*N FLOPs and moves (M*K + K*N + M*N)*bytes.
Forward of B sequences with S new tokens attending to S' tokens:
    2*B*S*(weights multiplied per token) + L * 2*B*h*(d_qk + d_v)*pairs
where pairs = S*S' (full score matrix: PaLM arXiv 2204.02311 appendix B, Megatron arXiv
2104.04473 section 5.1) or, with ``causal``, the exact count S*(S'-S) + S*(S+1)/2 (about half
when S = S'). The embedding lookup is a gather: 0 FLOPs. Backward = 2x forward, so training =
3x forward; full recomputation adds one more forward to hardware FLOPs (HFU) only.
"""

from __future__ import annotations

from pydantic import BaseModel

from calc.errors import LLMCalcError
from calc.model.layers import LayerAttention, attention_layers, mixer_layer_flags, sparse_layers
from calc.model.mixers import scan_flops_per_token
from calc.model.params import Tensor, count_params, layer_kinds, model_tensors
from calc.sanity import check_context
from calc.sanity import check_tokens as corpus_warning  # flops has its own check_tokens (batch x seq)
from calc.specs import ModelSpec
from calc.units import abbrev, check_count, dtype_bytes


def check_tokens(batch: int, seq: int, context: int | None = None) -> int:
    """Validate B, S and S' (S' >= S, all > 0); return S'."""
    for name, value in (("--batch", batch), ("--seq", seq), ("--context", context)):
        if value is not None:
            check_count(value, name)
    context = seq if context is None else context
    if context < seq:
        raise LLMCalcError("--context", f"S' ({context}) counts the new tokens too, so it must be >= S ({seq})")
    return context


def head_matmul_params(m: ModelSpec) -> int:
    """Weights of the output head's GEMM (V x H, tied to the embedding or not): the forward a full recomputation does
    not repeat (Megatron-LM's --recompute-granularity full checkpoints the transformer layers; the head runs once),
    as calc.training.cost prices the step."""
    return sum(t.matmul for t in model_tensors(m) if t.component == "lm_head" and t.shape)


def attention_dims(m: ModelSpec) -> tuple[int, int]:
    """(d_qk, d_v): per-head widths of the score and weighted-sum matmuls (MLA: nope+rope, v)."""
    if m.mla:
        return m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim, m.mla.v_head_dim
    return m.dim_per_head, m.dim_per_head


def mla_decode_dims(m: ModelSpec) -> tuple[int, int] | None:
    """(query-key dim, value dim) of MLA's absorbed decode, None for other attention: W_UK is folded into the query
    and W_UV into the output projection (DeepSeek-V2, arXiv 2405.04434 sec. 2.1.3; vLLM's MLA backends,
    vllm/attention/backends/mla/common.py), so each head scores against the cached latent c_KV plus the decoupled
    RoPE key (r_kv + d_rope) and mixes c_KV (r_kv) itself; the per-token projections cost the same FLOPs as
    kv_b_proj on the new token, already in the weight GEMMs. Prefill runs unabsorbed (attention_dims)."""
    if not m.mla:
        return None
    return m.mla.kv_lora_rank + m.mla.qk_rope_head_dim, m.mla.kv_lora_rank


def attention_pairs(seq: int, context: int, causal: bool) -> int:
    """(query, key) pairs per sequence of a full-attention layer: S*S', or causally S*(S'-S) + S*(S+1)/2."""
    return LayerAttention("full", None).pairs(seq, context, causal)


def layer_pairs(m: ModelSpec, seq: int, context: int, causal: bool) -> int:
    """(query, key) pairs of one sequence summed over the layers, each layer by its attention kind
    (sliding / chunked layers reach at most their window; layers without attention none)."""
    return sum(a.pairs(seq, context, causal) for a in attention_layers(m))


def attention_score_flops(m: ModelSpec, batch: int, seq: int, context: int, causal: bool = False) -> int:
    """Q@K^T and softmax@V over all layers: 2*B*h*(d_qk + d_v) * sum over layers of pairs_l (seed 001:
    4*B*S*S'*h*d per full layer)."""
    d_qk, d_v = attention_dims(m)
    return 2 * batch * m.num_heads * (d_qk + d_v) * layer_pairs(m, seq, context, causal)


def indexer_pair_flops(m: ModelSpec) -> int:
    """FLOPs of DeepSeek-V3.2's lightning indexer per (query, cached key) pair, summed over the sparse layers:
    2 x n_i x d_i x L_sparse (q . k in each of n_i heads of d_i; indexer_flops); 0 without DSA."""
    layers = sparse_layers(m)
    return 2 * m.mla.index_n_heads * m.mla.index_head_dim * layers if layers and m.mla else 0


def indexer_flops(m: ModelSpec, batch: int, seq: int, context: int, causal: bool = False) -> int:
    """DeepSeek-V3.2's lightning indexer (DSA), which scores every cached key for each query before the top-k are
    picked: I(t, s) = sum_j w(t, j) ReLU(q(t, j) . k(s)) over n_i heads of d_i (DeepSeek-V3.2-Exp report, eq. 1), so
    2*B*n_i*d_i FLOPs per (query, key) pair of the full causal (or S x S') matrix, on every sparse layer; 0 without DSA.
    The main attention of those layers then counts min(i + 1, k) keys per query (calc.model.layers, 'sparse')."""
    per_pair = indexer_pair_flops(m)
    return batch * per_pair * attention_pairs(seq, context, causal) if per_pair else 0


def mixer_scan_flops(m: ModelSpec, tokens: int, decode: bool = False) -> int:
    """Sequence mixing of the state-space / linear-attention layers for ``tokens`` tokens: tokens x mixer
    layers x calc.model.mixers.scan_flops_per_token (chunked form at prefill, recurrent at decode). Linear in
    the tokens: these layers read a constant state, not the context. 0 without a mixer."""
    if m.mixer is None:
        return 0
    return tokens * sum(mixer_layer_flags(m)) * scan_flops_per_token(m.mixer, decode)


class FlopsResult(BaseModel):
    """FLOPs of one forward pass of B x S tokens attending S', and the training step built on it."""

    model: str
    batch: int
    seq: int
    context: int
    causal: bool
    convention: str
    matmul_params: int
    active_params: int
    forward_matmul_flops: int
    forward_attention_flops: int
    forward_flops: int
    training_flops: int
    training_flops_full_recompute: int
    per_token_inference_flops: float
    per_token_training_flops: float
    approx_2n: int
    approx_6n: int
    attention_share_pct: float
    explain: list[str]
    warnings: list[str] = []


def forward_flops(
    m: ModelSpec, batch: int = 1, seq: int = 2048, context: int | None = None, causal: bool = False
) -> FlopsResult:
    """FLOPs of a forward pass, training step (3x) and per-token figures beside 2N and 6N.

    >>> from calc.sources.catalog import load_model
    >>> forward_flops(load_model("llama2-7b"), 1, 2048).forward_flops
    29261612187648
    """
    context = check_tokens(batch, seq, context)
    p = count_params(m)
    tokens = batch * seq
    head = head_matmul_params(m)
    matmul = 2 * tokens * p.matmul_params
    scan = mixer_scan_flops(m, tokens)
    indexer = indexer_flops(m, batch, seq, context, causal)
    attention = attention_score_flops(m, batch, seq, context, causal) + scan + indexer
    forward = matmul + attention
    d_qk, d_v = attention_dims(m)
    pairs = layer_pairs(m, seq, context, causal)
    convention = (
        "causal: exact (query, key) pairs S*(S'-S) + S*(S+1)/2" if causal else "full S x S' score matrix"
    )
    explain = [
        f"weights multiplied per token M = {p.matmul_params:,} (all matmul weights incl. output head"
        f"{', active experts + router' if m.moe else ''}; no embedding gather, biases or norms)",
        f"matmuls = 2*B*S*M = 2*{batch}*{seq}*{p.matmul_params:,} = {matmul:,}",
        f"attention ({convention}) = 2*B*h*(d_qk+d_v)*sum_layers pairs = 2*{batch}*{m.num_heads}"
        f"*({d_qk}+{d_v})*{pairs:,} = {attention - scan - indexer:,}"
        + (f" (DSA: each query attends its indexer's top-{m.mla.index_topk:,} keys) + lightning indexer "
           f"2*B*n_i*d_i*pairs*L = 2*{batch}*{m.mla.index_n_heads}*{m.mla.index_head_dim}*"
           f"{attention_pairs(seq, context, causal):,}*{sparse_layers(m)} = {indexer:,}" if indexer and m.mla else "")
        + (" (sliding-window layers reach at most their window)" if m.layer_types is not None
           and any(t != "full" for t in m.layer_types if isinstance(t, str)) and m.sliding_window else "")
        + (f" + {m.mixer.kind} scan B*S*{sum(mixer_layer_flags(m))} layers*{scan_flops_per_token(m.mixer, False):,}"
           f" = {scan:,}: {attention:,}" if m.mixer else ""),
        f"forward = {matmul:,} + {attention:,} = {forward:,}",
        f"training = 3 x forward = {3 * forward:,} (backward = 2x forward); "
        f"with full recomputation (HFU) the layers' forward again, 4 x forward - lm_head forward 2*B*S*{head:,} = "
        f"{4 * forward - 2 * tokens * head:,} (Megatron's full recompute checkpoints the layers, not the output head)",
        f"seed approximations: 2N = 2*{p.active_params:,} = {2 * p.active_params:,} per token, "
        f"6N = {6 * p.active_params:,}",
    ]
    return FlopsResult(
        model=m.name,
        batch=batch,
        seq=seq,
        context=context,
        causal=causal,
        convention=convention,
        matmul_params=p.matmul_params,
        active_params=p.active_params,
        forward_matmul_flops=matmul,
        forward_attention_flops=attention,
        forward_flops=forward,
        training_flops=3 * forward,
        training_flops_full_recompute=4 * forward - 2 * tokens * head,
        per_token_inference_flops=forward / tokens,
        per_token_training_flops=3 * forward / tokens,
        approx_2n=2 * p.active_params,
        approx_6n=6 * p.active_params,
        attention_share_pct=100 * attention / forward,
        explain=explain,
        warnings=check_context(m, context, "--seq" if context == seq else "--context"),
    )


class TrainingCompute(BaseModel):
    """Total training compute of D tokens at the forward's sequence length: D x (3 x forward / (B S)) with attention,
    D x 6N the published convention (Kaplan et al. 2020 C = 6ND; GPT-3's 3.14e23, Llama 3 405B's 3.8e25), and the
    same in PF-days (1e15 FLOP/s for a day, GPT-3 paper Table D.1)."""

    tokens: float
    training_flops: float
    training_flops_6n: float
    pf_days: float
    pf_days_6n: float
    explain: list[str]
    warnings: list[str] = []  # a corpus beyond any real run (calc.sanity.check_tokens), as train-time and mfu warn it


PF_DAY = 1e15 * 86400  # FLOPs in a petaFLOP/s-day


def training_compute(f: FlopsResult, tokens: float) -> TrainingCompute:
    """C = D x per-token training FLOPs (with attention at the forward's S and S') and C = 6 N D (N: the active
    parameters, embedding included, as flops_per_token's 6N).

    >>> from calc.sources.catalog import load_model
    >>> c = training_compute(forward_flops(load_model("llama3.1-405b"), 1, 8192), 15.6e12)
    >>> f"{c.training_flops_6n:.2e}"  # Llama 3 (arXiv 2407.21783): 3.8e25 FLOPs for the 405B model
    '3.80e+25'
    """
    if not tokens > 0:
        raise LLMCalcError("--tokens", f"must be > 0, got {tokens}")
    total, total_6n = tokens * f.per_token_training_flops, tokens * f.approx_6n
    return TrainingCompute(
        tokens=tokens, training_flops=total, training_flops_6n=total_6n, pf_days=total / PF_DAY,
        pf_days_6n=total_6n / PF_DAY, warnings=corpus_warning(tokens),
        explain=[f"C = D x 3*forward/S = {tokens:,.0f} x {f.per_token_training_flops:,.0f} = {abbrev(total, digits=4)} "
                 f"FLOPs ({total / PF_DAY:,.1f} PF-days)",
                 f"C = 6 N D = 6 x {f.active_params:,} x {tokens:,.0f} = {abbrev(total_6n, digits=4)} FLOPs "
                 f"({total_6n / PF_DAY:,.1f} PF-days)"],
    )


class DecodeFlops(BaseModel):
    """FLOPs of generating T tokens one at a time after a prompt of P tokens (S = 1, S' = P + t)."""

    model: str
    batch: int
    prompt: int
    output: int
    first_step_flops: int  # the first decode step (P + 1 keys)
    last_step_flops: int
    generation_flops: int  # the T - 1 decode steps
    prefill_flops: int  # the causal prefill of the B x P prompt, logits at its last position (it makes token 1)
    total_flops: int  # the whole generation: prefill + the T - 1 decode steps
    explain: list[str]
    warnings: list[str] = []


def decode_flops(m: ModelSpec, batch: int, prompt: int, output: int) -> DecodeFlops:
    """Generating T = ``output`` tokens after a P-token prompt, as every serving command counts them: the prefill makes
    the first, then T - 1 decode steps; step t (1..T-1) attends S' = P + t: 2*B*M + 2*B*h*(d_qk+d_v)*sum_l keys_l(P+t),
    keys_l = P+t on a full layer, min(P+t, w) on a sliding one. Summed in closed form: the T - 1 steps' keys are the
    causal pairs of T - 1 queries after P tokens, (T-1)*P + (T-1)*T/2 per full layer. ``first_step_flops`` is step 1
    (P + 1 keys) and ``last_step_flops`` step T - 1 (step 1 when T = 1: no step runs, generation 0). MLA decodes
    absorbed over the cached latent (mla_decode_dims: d_qk = r_kv + d_rope, d_v = r_kv, as the engines run it and
    calc.serving prices it); the unabsorbed per-key cost 2*B*h*(d_qk+d_v) of the prefill convention is shown beside it in
    the explanation. ``prefill_flops``: the prompt's causal forward (forward_flops, causal) with the output head on
    its last position only (the engines sample one token there), 2*B*(P-1)*head fewer than every position's logits;
    ``total_flops`` = prefill + the T - 1 steps."""
    check_tokens(batch, prompt)
    check_count(output, "--output")
    prefill = forward_flops(m, batch, prompt, causal=True).forward_flops - 2 * batch * (prompt - 1) * head_matmul_params(m)
    steps = output - 1
    matmul_params = count_params(m).matmul_params
    d_qk, d_v = mla_decode_dims(m) or attention_dims(m)
    per_key = 2 * batch * m.num_heads * (d_qk + d_v)
    step = 2 * batch * matmul_params + mixer_scan_flops(m, batch, decode=True)
    keys_total = layer_pairs(m, steps, prompt + steps, causal=True) if steps else 0
    scored = indexer_flops(m, batch, steps, prompt + steps, causal=True) if steps else 0  # DSA: every cached key scored
    total = steps * step + per_key * keys_total + scored
    last = prompt + max(steps, 1)
    return DecodeFlops(
        model=m.name,
        batch=batch,
        prompt=prompt,
        output=output,
        first_step_flops=step + per_key * layer_pairs(m, 1, prompt + 1, causal=True)
        + indexer_flops(m, batch, 1, prompt + 1, causal=True),
        last_step_flops=step + per_key * layer_pairs(m, 1, last, causal=True) + indexer_flops(m, batch, 1, last, causal=True),
        generation_flops=total,
        prefill_flops=prefill,
        total_flops=prefill + total,
        warnings=check_context(m, prompt + output, "--output", f"the prompt's {prompt:,} + {output:,} generated = "),
        explain=[
            f"T = {output:,} generated tokens: the prefill makes the first, then T - 1 = {steps:,} decode steps",
            f"decode step t: 2*B*M + 2*B*h*(d_qk+d_v)*sum_l keys_l(P+t) = {step:,} + {per_key:,}*sum_l keys_l(P+t)",
            f"T - 1 steps: {steps:,}*{step:,} + {per_key:,}*{keys_total:,} keys (L*((T-1)*P + (T-1)T/2) when every "
            "layer is full)"
            + (f" + lightning indexer {scored:,} (every cached key scored; the attention reads the top-"
               f"{m.mla.index_topk:,})" if scored and m.mla else "") + f" = {total:,}",
            f"prefill: the causal forward of B x P = {batch:,} x {prompt:,} tokens, logits at the last position only "
            f"(- 2*B*(P-1)*head = {2 * batch * (prompt - 1) * head_matmul_params(m):,}) = {prefill:,}; whole generation = "
            f"prefill + decode steps = {prefill + total:,}",
            *_mla_decode_note(m, batch),
        ],
    )


def _mla_decode_note(m: ModelSpec, batch: int) -> list[str]:
    """The absorbed MLA decode's per-key cost beside the unabsorbed one (the prefill's)."""
    if not m.mla:
        return []
    absorbed, unabsorbed = mla_decode_dims(m), attention_dims(m)
    assert absorbed is not None
    return [f"MLA decode runs absorbed (DeepSeek-V2 sec. 2.1.3; vLLM / SGLang MLA backends): each head scores the cached "
            f"latent, d_qk+d_v = ({m.mla.kv_lora_rank}+{m.mla.qk_rope_head_dim}) + {m.mla.kv_lora_rank} = {sum(absorbed)}, "
            f"{2 * batch * m.num_heads * sum(absorbed):,} per key; unabsorbed (decompressed K/V, the prefill's "
            f"convention) it would be {sum(unabsorbed)}, {2 * batch * m.num_heads * sum(unabsorbed):,} per key"]


class Gemm(BaseModel):
    """One matmul [M,K]@[K,N], repeated ``count`` times per layer (or once for the head)."""

    name: str
    m: float
    k: int
    n: int
    count: int
    flops: float
    bytes: float
    intensity: float


def gemm(name: str, m: float, k: int, n: int, count: int, elem_bytes: float) -> Gemm:
    flops = 2 * m * k * n * count
    moved = (m * k + k * n + m * n) * elem_bytes * count
    return Gemm(name=name, m=m, k=k, n=n, count=count, flops=flops, bytes=moved, intensity=flops / moved)


def _tensor_gemms(tensors: list[Tensor], tokens: int, elem_bytes: float) -> list[Gemm]:
    """GEMM view of weight tensors. Routed experts: E copies, top-k used per token; with few
    tokens only min(E, tokens*k) experts are touched (and their weights read), each seeing
    tokens*k / touched tokens on average."""
    out = []
    for t in tensors:
        if t.shape is None or not t.matmul:
            continue
        k, n = t.shape
        touched = min(t.copies, tokens * t.used)
        out.append(gemm(f"{t.component}.{t.name}", tokens * t.used / touched, k, n, touched, elem_bytes))
    return out


class IntensityResult(BaseModel):
    """Arithmetic intensity (FLOPs per byte moved) of each matmul of one layer and the head."""

    phase: str
    tokens: int
    context: int
    dtype: str
    gemms: list[Gemm]
    layer_flops: float
    layer_bytes: float
    intensity: float


def arithmetic_intensity(m: ModelSpec, batch: int, seq: int, context: int, dtype: str = "bf16") -> IntensityResult:
    """Per-matmul intensity of one (first-kind) layer for B*S tokens plus the output head on the B last positions
    (the logits an engine computes: one sampled token per sequence).

    Attention score matmuls per (sequence, head): [S,d_qk]@[d_qk,S'] and [S,S']@[S',d_v].
    Routed experts see B*S*k/E tokens each on average.
    """
    context = check_tokens(batch, seq, context)
    elem = float(dtype_bytes(dtype))
    tokens = batch * seq
    kind_tensors = layer_kinds(m)[-1][2]  # the model's main block kind (MoE where there is one)
    gemms = _tensor_gemms(kind_tensors, tokens, elem)
    d_qk, d_v = attention_dims(m)
    heads = batch * m.num_heads
    gemms.append(gemm("attention.scores", seq, d_qk, context, heads, elem))
    gemms.append(gemm("attention.weighted_sum", seq, context, d_v, heads, elem))
    # the head runs on each sequence's last position only: an engine's prefill samples one token per prompt (vLLM's
    # LogitsProcessor gathers the last token's hidden state first), as latency prices it; a decode step is B rows too
    gemms += _tensor_gemms([t for t in model_tensors(m) if t.component == "lm_head"], batch, elem)
    flops = sum(g.flops for g in gemms)
    moved = sum(g.bytes for g in gemms)
    return IntensityResult(
        phase="decode" if seq == 1 else "prefill",
        tokens=tokens,
        context=context,
        dtype=dtype,
        gemms=gemms,
        layer_flops=flops,
        layer_bytes=moved,
        intensity=flops / moved,
    )


class FusedShapes(BaseModel):
    """Seed 000: in a parallel block y = x + Attn(LN(x)) + MLP(LN(x)) the QKV and first MLP
    matmuls share their input, so W_fused = concat(W_qkv, W_mlp_in) does one GEMM
    [T,H]@[H,(h+2g)*d + I(x2 if gated)] instead of two. Same FLOPs; the input is read once."""

    model: str
    tokens: int
    hidden: int
    qkv_out: int
    mlp_in_out: int
    separate: list[Gemm]
    fused: Gemm
    flops_equal: bool
    bytes_saved: float
    parallel_block: bool
    # a sequential-block model (parallel_block false): why the fusion is hypothetical for it; "" for a parallel block
    note: str = ""


def fused_parallel_shapes(m: ModelSpec, tokens: int, dtype: str = "bf16") -> FusedShapes:
    """GEMM shapes and bytes of separate QKV + MLP-in vs the fused GEMM, for T tokens."""
    if m.mla or m.moe:
        raise LLMCalcError("--fused", f"{m.name} uses MLA or MoE; the fused QKV+MLP GEMM needs a dense MHA/GQA model: "
                                      "drop --fused")
    if tokens < 1:
        raise LLMCalcError("--batch-tokens", f"must be >= 1, got {tokens}")
    elem = float(dtype_bytes(dtype))
    H, d = m.hidden_size, m.dim_per_head
    qkv = (m.num_heads + 2 * m.kv_heads) * d
    mlp_in = m.intermediate_size * (2 if m.gated_mlp else 1)
    separate = [gemm("qkv", tokens, H, qkv, 1, elem), gemm("mlp_in", tokens, H, mlp_in, 1, elem)]
    fused = gemm("fused_qkv_mlp_in", tokens, H, qkv + mlp_in, 1, elem)
    return FusedShapes(
        model=m.name,
        tokens=tokens,
        hidden=H,
        qkv_out=qkv,
        mlp_in_out=mlp_in,
        separate=separate,
        fused=fused,
        flops_equal=sum(g.flops for g in separate) == fused.flops,
        bytes_saved=sum(g.bytes for g in separate) - fused.bytes,
        parallel_block=m.parallel_block,
        note="" if m.parallel_block else (
            f"hypothetical for {m.name}: its blocks are sequential (the MLP's input comes from the attention's "
            "output, not from the attention's input), so QKV and MLP-in share no input; the figures are what a "
            "parallel-block variant (GPT-J, GPT-NeoX, Falcon, PaLM: y = x + Attn(LN(x)) + MLP(LN(x))) would save"),
    )
