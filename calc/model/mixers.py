"""Token mixers without a KV cache: Mamba, Mamba-2, Gated DeltaNet, Kimi Delta Attention, LFM2's short
convolution and MiniMax's lightning attention. Their tensors (exact parameters), the FLOPs of their sequence mixing, and the state a
request keeps, which is constant in the number of tokens.

Shapes follow transformers' modeling files: modeling_mamba ``MambaMixer`` and modeling_jamba
``JambaMambaMixer`` (Mamba-1); modeling_mamba2 ``Mamba2Mixer``, modeling_nemotron_h and modeling_bamba
(Mamba-2); modeling_qwen3_next ``Qwen3NextGatedDeltaNet``; modeling_lfm2 ``Lfm2ShortConv``; modeling_minimax
``MiniMaxLightningAttention``; Kimi Delta Attention from the moonshotai/Kimi-Linear-48B-A3B repo's modeling_kimi.py
``KimiDeltaAttention`` and vLLM's vllm/model_executor/layers/mamba/gdn/kimi_gdn_linear_attn.py
``KimiGatedDeltaNetAttention`` (the same tensors).
"""

from __future__ import annotations

from calc.model.tensor import Tensor, linear
from calc.specs import MixerSpec
from calc.units import exact_bytes


def mixer_tensors(x: MixerSpec, hidden: int) -> list[Tensor]:
    """The parameters of one mixer layer (H = hidden, d_in = num_heads * head_dim, K = conv_kernel).

    mamba:  in_proj H*2d_in, conv1d d_in*K (+d_in), x_proj d_in*(R+2N), dt_proj R*d_in + d_in, A_log d_in*N,
            D d_in, out_proj d_in*H (+ Jamba's dt/B/C RMSNorms R+2N).
    mamba2: in_proj H*(2d_in + 2GN + nh), conv1d (d_in+2GN)*K (+ bias), dt_bias, A_log, D nh each,
            gated RMSNorm d_in, out_proj d_in*H.
    gated_deltanet: in_proj_qkvz H*(2*n_k*d_k + 2*n_v*d_v), in_proj_ba H*2n_v, conv1d (2 n_k d_k + n_v d_v)*K,
            dt_bias and A_log n_v each, RMSNormGated(d_v), out_proj n_v*d_v*H.
    short_conv: in_proj H*3H, conv1d H*K, out_proj H*H (biases with conv_bias).
    lightning: qkv_proj H*3hd, output_gate H*hd, RMSNorm hd, out_proj hd*H.
    kda (Kimi Delta Attention, P = n*d): q/k/v_proj 3*H*P, q/k/v_conv1d 3*P*K (no bias), f_a_proj H*d and
            f_b_proj d*P (the per-channel decay gate, low rank), dt_bias P, b_proj H*n (beta), A_log n,
            g_a_proj H*d and g_b_proj d*P (the output gate), o_norm FusedRMSNormGated(d), o_proj P*H.
    """
    H, d_in, N, K, b = hidden, x.d_inner, x.state_size, x.conv_kernel, x.proj_bias
    conv = [Tensor("mixer", x.conv_channels * K, f"conv1d: channels*K = {x.conv_channels}*{K}")] if K else []
    if K and x.conv_bias:
        conv.append(Tensor("mixer", x.conv_channels, f"conv1d.bias: {x.conv_channels}"))
    if x.kind == "mamba":
        R = x.dt_rank
        out = [*linear("mixer", "in_proj", H, 2 * d_in, b, "H*2d_in"), *conv,
               *linear("mixer", "x_proj", d_in, R + 2 * N, False, "d_in*(R+2N)"),
               *linear("mixer", "dt_proj", R, d_in, True, "R*d_in"),
               Tensor("mixer", d_in * N + d_in, f"A_log + D: d_in*N + d_in = {d_in}*{N} + {d_in}")]
        if x.inner_norms:
            out.append(Tensor("mixer", R + 2 * N, f"dt/B/C layernorms: R + 2N = {R} + 2*{N}"))
        return out + linear("mixer", "out_proj", d_in, H, b, "d_in*H")
    if x.kind == "mamba2":
        nh, gn = x.num_heads, x.n_groups * N
        out = [*linear("mixer", "in_proj", H, 2 * d_in + 2 * gn + nh, b, "H*(2d_in+2GN+nh)"), *conv,
               Tensor("mixer", 3 * nh, f"dt_bias + A_log + D: 3*nh = 3*{nh}")]
        if x.gated_norm:
            out.append(Tensor("mixer", d_in, f"gated RMSNorm: d_in = {d_in}"))
        return out + linear("mixer", "out_proj", d_in, H, b, "d_in*H")
    if x.kind == "gated_deltanet":
        nv, key = x.num_heads, x.n_groups * N
        out = [*linear("mixer", "in_proj_qkvz", H, 2 * key + 2 * d_in, False, "H*(2 n_k d_k + 2 n_v d_v)"),
               *linear("mixer", "in_proj_ba", H, 2 * nv, False, "H*2n_v"), *conv,
               Tensor("mixer", 2 * nv, f"dt_bias + A_log: 2*n_v = 2*{nv}")]
        if x.gated_norm:
            out.append(Tensor("mixer", x.head_dim, f"RMSNormGated(d_v): {x.head_dim}"))
        return out + linear("mixer", "out_proj", d_in, H, False, "n_v*d_v*H")
    if x.kind == "kda":
        return kda_tensors(x, hidden)
    if x.kind == "short_conv":
        return [*linear("mixer", "in_proj", H, 3 * H, x.conv_bias, "H*3H"), *conv,
                *linear("mixer", "out_proj", H, H, x.conv_bias, "H*H")]
    # lightning
    return [*linear("mixer", "qkv_proj", H, 3 * d_in, False, "H*3hd"), *linear("mixer", "output_gate", H, d_in, False, "H*hd"),
            Tensor("mixer", d_in, f"norm: h*d = {d_in}"), *linear("mixer", "out_proj", d_in, H, False, "hd*H")]


def kda_tensors(x: MixerSpec, hidden: int) -> list[Tensor]:
    """Kimi Delta Attention (modeling_kimi.py ``KimiDeltaAttention.__init__``; vLLM kimi_gdn_linear_attn.py),
    n = num_heads heads of d = head_dim, P = n*d, K = conv_kernel:
    q_proj, k_proj, v_proj H*P each; q_conv1d, k_conv1d, v_conv1d P*K each (fla ShortConvolution, bias=False);
    A_log n; f_a_proj H*d, f_b_proj d*P; dt_bias P; b_proj H*n; g_a_proj H*d, g_b_proj d*P; o_norm d;
    o_proj P*H. Total 4*H*P + 3*P*K + 2*H*d + 2*d*P + P + H*n + n + d."""
    H, n, d, K = hidden, x.num_heads, x.head_dim, x.conv_kernel
    P = n * d
    out = [t for name in ("q_proj", "k_proj", "v_proj") for t in linear("mixer", name, H, P, False, "H*n*d")]
    out.append(Tensor("mixer", 3 * P * K, f"q/k/v_conv1d: 3*n*d*K = 3*{P}*{K}"))
    out += [*linear("mixer", "f_a_proj", H, d, False, "H*d"), *linear("mixer", "f_b_proj", d, P, False, "d*n*d"),
            Tensor("mixer", P, f"dt_bias: n*d = {P}"), *linear("mixer", "b_proj", H, n, False, "H*n"),
            Tensor("mixer", n, f"A_log: n = {n}"),
            *linear("mixer", "g_a_proj", H, d, False, "H*d"), *linear("mixer", "g_b_proj", d, P, False, "d*n*d"),
            Tensor("mixer", d, f"o_norm (gated RMSNorm): d = {d}")]
    return out + linear("mixer", "o_proj", P, H, False, "n*d*H")


def conv_state_elements(x: MixerSpec, tp: int = 1) -> int:
    """Conv state of one request per mixer layer on one of ``tp`` ranks: conv_channels * (K - 1) / t."""
    return x.conv_channels * max(x.conv_kernel - 1, 0) // tp


def recurrent_state_elements(x: MixerSpec, tp: int = 1) -> int:
    """Recurrent state of one request per mixer layer on one of ``tp`` ranks: num_heads/t * head_dim * state_size
    (Mamba-1: d_in x N; Mamba-2: nh x P x N; Gated DeltaNet: n_v x d_v x d_k; Kimi Delta Attention and
    lightning: h x d x d)."""
    return x.num_heads * x.head_dim * x.state_size // tp


def state_elements(x: MixerSpec, tp: int = 1) -> int:
    """Values one request keeps per mixer layer, whatever its length, on one of ``tp`` ranks: conv state
    conv_channels * (K - 1) + recurrent state num_heads * head_dim * state_size. These are the shapes vLLM
    allocates per request (vllm/model_executor/layers/mamba/mamba_utils.py MambaStateShapeCalculator:
    mamba1/mamba2/gated_delta_net/kda/short_conv/linear_attention_state_shape; kda's conv state is
    (n*d + 2*n*d) x (K - 1), q, k and v), split over the TP ranks by heads and channels."""
    return conv_state_elements(x, tp) + recurrent_state_elements(x, tp)


def recurrent_state_dtype(x: MixerSpec, model_dtype: str) -> str:
    """The dtype vLLM keeps the recurrent state in (vllm/model_executor/layers/mamba/mamba_utils.py
    MambaStateDtypeCalculator): the model dtype (``mamba_cache_dtype`` / ``mamba_ssm_cache_dtype`` 'auto') for
    Mamba, Mamba-2, Gated DeltaNet and lightning attention (linear_attention_state_dtype), but fp32 for Kimi
    Delta Attention (kda_state_dtype returns (model dtype, torch.float32)). The conv state is always the model
    dtype."""
    return "fp32" if x.kind == "kda" else model_dtype


def state_bytes(x: MixerSpec, model_dtype: str, tp: int = 1) -> int:
    """Bytes of one request's state in one mixer layer on one of ``tp`` ranks: conv state x bytes(model dtype)
    + recurrent state x bytes(``recurrent_state_dtype``)."""
    return (exact_bytes(conv_state_elements(x, tp), model_dtype)
            + exact_bytes(recurrent_state_elements(x, tp), recurrent_state_dtype(x, model_dtype)))


def scan_flops_per_token(x: MixerSpec, decode: bool) -> int:
    """FLOPs of one token's sequence mixing in one mixer layer, beyond its projections (those are matmul
    weights in ``mixer_tensors``). S = num_heads * head_dim * state_size state values, C = conv_channels.

    conv: 2*C*K (a depthwise causal convolution). Recurrent form (decode, and Mamba-1's selective scan at
    prefill, arXiv 2312.00752 section 3.3): per state value decay 1 + rank-1 update 2 + readout 2 = 5*S;
    the delta rule (Gated DeltaNet, arXiv 2412.06464 eq. 3: S = a*S(I - b k k^T) + b v k^T) adds S k, 2 more:
    7*S; Kimi Delta Attention (arXiv 2510.26692, S = (I - b k k^T) Diag(a) S + b k v^T) decays each key
    channel by its own gate, still one multiply per state value: 7*S.
    Chunked form (prefill of Mamba-2 SSD, arXiv 2405.21060 section 6, fla's chunk_gated_delta_rule and
    chunk_kda, lightning attention's intra-block step), chunk Q: per head the intra-chunk scores and weighted
    sum 2*Q*(d_k + P), plus the state passing 4*P*d_k (chunk state in, output from the state); the delta
    rule's WY form adds K K^T and A K / A V, 2*Q*(2 d_k + P) per head; KDA's per-channel decay also scales q
    and k by the cumulative gate inside the chunk, 2*d_k per token per head. short_conv has no state beyond
    its conv.
    """
    conv = 2 * x.conv_channels * x.conv_kernel
    S = x.num_heads * x.head_dim * x.state_size
    delta = x.kind in ("gated_deltanet", "kda")
    if x.kind == "short_conv":
        return conv
    if decode or x.kind == "mamba":
        return conv + (7 if delta else 5) * S
    Q, P, dk = x.chunk_size, x.head_dim, x.state_size
    per_head = 2 * Q * (dk + P) + 4 * P * dk + (2 * Q * (2 * dk + P) if delta else 0)
    channel_gate = 2 * dk if x.kind == "kda" else 0
    return conv + x.num_heads * (per_head + channel_gate)
