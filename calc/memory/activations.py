"""Activation memory: the inference constant c of the seed's B*S*H*c, the textbook training activations per
layer (Korthikanti et al. 2022, arXiv 2205.05198, section 4 and table 2), and the per-architecture figure
built from the tensors autograd really keeps (``layer_buffers``, ``lm_head_buffers``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from calc.memory.buffers import Buffer, LayerSetup
from calc.memory.hybrid_layers import is_hybrid, mean_layer_buffers
from calc.model.parallel import ROW_PARALLEL
from calc.specs import ModelSpec

Recompute = Literal["none", "selective", "full", "sac", "deepseek", "dots"]
# The recomputation levels, one meaning in every command (memory --mode train/finetune, train-step, train-plan):
RECOMPUTE_LEVELS: dict[str, str] = {
    "none": "keep every saved tensor of every layer",
    "selective": "Megatron's selective recomputation (--recompute-granularity selective, Korthikanti et al. 2022 "
                 "sec. 5): recompute the attention core; nothing more under FlashAttention, whose backward recomputes it",
    "full": "Megatron full / PyTorch activation checkpointing of every layer: keep each layer's input, recompute it",
    "sac": "torchtitan op-level selective AC (activation_checkpoint.mode=selective, selective_ac_option=op): "
           "keep every second matmul output and the attention kernel outputs (under eager attention none of its "
           "ops is on the save list: its core is recomputed), recompute the rest",
    "deepseek": "DeepSeek-V3's recomputation (arXiv 2412.19437 sec. 3.2.3; Megatron-Core --recompute-modules layernorm "
                "mla_up_proj): drop the RMSNorm outputs and the MLA up-projection outputs (Q, K, V), recompute them",
    "dots": "JAX's jax.checkpoint_policies.dots_with_no_batch_dims_saveable (Pax SAVE_DOT_WITH_NO_BATCH_DIM, MaxText "
            "remat_policy minimal): keep each layer's input and every weight-matmul output, recompute the attention core "
            "and every elementwise op (norms, RoPE, activation) in backward",
}


def activation_factor(m: ModelSpec) -> float:
    """c in the seed's B*S*H*c: live values per token of one layer's forward, divided by H:
    residual + norm output (2H), QKV ((h+2g)*d), attention output (h*d), MLP up/gate
    (I, or 2I gated) and the activation output (I)."""
    d = m.dim_per_head
    width = m.moe.expert_intermediate_size * m.moe.experts_per_token if m.moe else m.intermediate_size
    live = 2 * m.hidden_size + (m.num_heads + 2 * m.kv_heads) * d + m.num_heads * d
    live += width * (3 if m.gated_mlp else 2)
    return live / m.hidden_size


def korthikanti_layer_bytes(
    seq: int, micro_batch: int, hidden: int, heads: int, tp: int = 1,
    sequence_parallel: bool = False, recompute: Recompute = "none", flash: bool = False,
) -> float:
    """Activation bytes one transformer layer keeps for backward (Korthikanti et al. 2022, table 2;
    fp16, with dropout). With s, b, h, a, t:
      none, no TP       s*b*h*(34 + 5*a*s/h)
      TP                s*b*h*(10 + 24/t + 5*a*s/(h*t))
      TP + SP           s*b*h/t*(34 + 5*a*s/h)
      selective (or FlashAttention, which never stores the s x s scores; JAX's dots policy): drop the 5*a*s/h term
      full recompute    2*s*b*h (only the layer input; /t with SP)
    """
    s, b, h, a, t = seq, micro_batch, hidden, heads, tp
    if recompute == "full":
        return 2 * s * b * h / (t if sequence_parallel else 1)
    scores = 0.0 if recompute in ("selective", "dots") or flash else 5 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34 + scores)
    return s * b * h * (10 + 24 / t + scores / t)


# --- Per-architecture activations: the tensors autograd keeps, one by one -------------------------------

_SRC_NORM = "RMSNorm/LayerNorm backward needs its input and 1/rms per token (Zhang & Sennrich 2019, eq. 4)"
_SRC_MM = "Y = XW: dW = X^T dY needs the input X (kept when W or its adapter trains)"
_SRC_FLASH = "FlashAttention-2 backward keeps Q, K, V, O and the log-sum-exp (Dao 2023, arXiv 2307.08691 alg. 2)"
_SRC_EAGER = "eager attention keeps softmax(QK^T) (b*h*s*s) for dV and dS (Korthikanti et al. 2022 sec. 4.1)"
_SRC_GLU = "SwiGLU backward: d gate needs gate, d up needs silu(gate); fused kernels recompute silu (Shazeer 2020)"
_SRC_LORA = "LoRA: h = W0 x + B A x; dB needs A x (r per token) (Hu et al. 2021, eq. 3)"


def norm_buffer(name: str, width: int, tokens: int, s: LayerSetup) -> Buffer:
    """Fused norm kernels keep the input (act bytes) + fp32 1/rms per token; the eager HF RMSNorm upcasts
    first and keeps the fp32 copy instead (pow and mul save it): 4*H + 4 per token. When its weight trains (full
    fine-tuning) the eager norm's last product ``self.weight * hidden_states.to(input_dtype)`` (transformers
    models/llama/modeling_llama.py LlamaRMSNorm.forward) also keeps its other operand, the normalised input cast back
    to the activation dtype: + H*act bytes (the norm output the next matmul keeps is a different tensor, the product)."""
    kept = s.fused or s.litgpt  # litgpt's RMSNorm/LayerNorm of commit 8641822 keep the bf16 input (no upcast)
    weight_operand = s.full and not kept
    per = (width * s.act_bytes if kept else 4 * width) + 4 + (width * s.act_bytes if weight_operand else 0)
    formula = f"tokens*({'H*' + str(s.act_bytes) if kept else '4*H fp32 upcast'} + 4" \
              f"{' + H*' + str(s.act_bytes) + ' weight operand' if weight_operand else ''}) = {tokens}*({width}*" \
              f"{s.act_bytes if kept else 4} + 4{' + ' + str(width * s.act_bytes) if weight_operand else ''})"
    return Buffer(name, tokens * per, f"{formula} = {tokens * per:,} B", _SRC_NORM)


def layer_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> list[Buffer]:
    """Saved tensors of one layer for ``batch`` sequences of ``seq`` tokens: the transformer block's
    (``block_buffers``), or a hybrid model's mean layer over its kinds of layer (calc.memory.hybrid_layers)."""
    block = block_buffers(m, batch, seq, s)
    return mean_layer_buffers(m, block, batch * seq, s) if is_hybrid(m) else block


def block_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> list[Buffer]:
    """Saved tensors of one transformer block for ``batch`` sequences of ``seq`` tokens.

    Per token (elements; x2 bytes in bf16), Llama-style pre-norm block:
      attn norm: H (+4 B 1/rms)          q,k,v input: H (if any trains/adapted)
      Q, K, V after RoPE: (h + 2g)*d     attention out O: h*d, log-sum-exp: h fp32
      eager instead of flash: + h*s softmax values per token (the b*h*s*s matrix)
      (``kv_repeated``: K and V at h heads, 3*h*d: transformers' repeat_kv when SDPA gets a padding mask)
      mlp norm: H (+4 B)                 gate/up input: H (if trains/adapted)
      gate, up outputs: 2*I (gated; I plain)   down input: I (if trains/adapted)
      LoRA: r per adapted matrix (A x);  dropout masks 1 B per element where p > 0
    Head- and width-split tensors divide by TP; norm inputs divide by TP only with SP.
    fp8 through Transformer Engine (``s.gemm_input_bytes`` g > 0): each TE linear saves its input quantized, g bytes
    per element (transformer_engine/pytorch/module/linear.py v2.8, _Linear.forward: the quantized ``inputmat`` keeps
    only its column-wise (or, for an fp8 all-gather, row-wise) data and is what ``saved_inputmat`` holds; likewise the
    quantized norm output of layernorm_linear.py and the grouped experts' inputs of grouped_linear.py): the q/k/v
    input, the dense gate/up input, the down input and the MLA up-projection inputs take g bytes; the attention output
    stays bf16 for the attention backward and o_proj saves its own g-byte copy; a MoE layer keeps the bf16 norm output
    for the router and the k expert copies at g bytes (k*H*g in place of (k-1)*H*2).
    """
    t_tok = batch * seq
    b, tp = s.act_bytes, s.tp
    gi = s.gemm_input_bytes or b  # bytes of a saved GEMM input
    sp = tp if s.sp else 1
    H, h, g, d = m.hidden_size, m.num_heads, m.kv_heads, m.dim_per_head
    width = m.moe.active_width if m.moe else m.intermediate_size
    hd = h * d
    if m.mla:
        hd = h * m.mla.v_head_dim
        qkv = h * (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim) * 2 + hd
    else:
        qkv = (h + 2 * g) * d
    out: list[Buffer] = []

    def add(name: str, elems_per_token: float, div: int, formula: str, source: str, elem_bytes: float = b) -> None:
        n = math.ceil(t_tok * elems_per_token * elem_bytes / div)
        if div > 1 and "/t" not in formula:  # a norm output split by SP: the division shown as the value takes it
            lhs, _, rhs = formula.partition(" = ")
            formula = f"{lhs}/t = {rhs}/{div}" if rhs else f"{formula}/{div}"
        out.append(Buffer(name, n, f"{formula} = {n:,} B", source))

    names = ["attn norm input", "mlp norm input"]
    for i in range(m.norms_per_layer):  # sandwich-norm models (Gemma 2/3) keep the inputs of their post-norms too
        buf = norm_buffer(names[i] if i < 2 else f"post-norm {i - 1} input", H, t_tok, s)
        out.append(Buffer(buf.name, math.ceil(buf.bytes / sp), buf.formula + (f"/{sp}" if sp > 1 else ""), buf.source))
    qkv_input = s.keeps_block_input("q_proj", "k_proj", "v_proj", "q_a_proj", "kv_a_proj_with_mqa")
    if qkv_input:
        add("q/k/v input (norm output)", H, sp, f"b*s*H*{gi:g} = {t_tok}*{H}*{gi:g}", _SRC_MM, gi)
    if s.kv_repeated and not m.mla and g < h:
        qkv = 3 * h * d
        add("Q, K, V after RoPE", qkv, tp, f"b*s*3h*d*{b}/t (K, V repeated to h heads) = {t_tok}*{qkv}*{b}/{tp}", _SRC_REPEAT_KV)
    else:
        add("Q, K, V after RoPE", qkv, tp, f"b*s*(h+2g)*d*{b}/t = {t_tok}*{qkv}*{b}/{tp}", _SRC_FLASH)
    if s.litgpt and not m.mla:
        out += litgpt_buffers(m, t_tok, s)
    if m.mla:
        a = m.mla
        latent = (a.q_lora_rank or 0) + a.kv_lora_rank
        up_trains = s.keeps_input("q_b_proj", "kv_b_proj")
        per = b + (gi if up_trains else 0)
        add("MLA latents (norm inputs" + (" + up-projection inputs)" if up_trains else ")"), latent, 1,
            f"b*s*(r_q + r_kv)*({b}{f' + {gi:g}' if up_trains else ''}) = {t_tok}*{latent}*{per:g}", _SRC_MLA, per)
    add("attention output O (o_proj input)", hd, tp, f"b*s*h*d*{b}/t = {t_tok}*{hd}*{b}/{tp}", _SRC_FLASH)
    if s.gemm_input_bytes:
        add("o_proj input (quantized copy of O)", hd, tp, f"b*s*h*d*{gi:g}/t = {t_tok}*{hd}*{gi:g}/{tp}", _SRC_MM, gi)
    if s.quantized:
        add("o_proj input (contiguous copy of O)", hd, tp, f"b*s*h*d*{b}/t = {t_tok}*{hd}*{b}/{tp}", _SRC_O_COPY)
    if s.attention == "flash":
        add("log-sum-exp (fp32)", h, tp, f"b*s*h*4/t = {t_tok}*{h}*4/{tp}", _SRC_FLASH, 4)
    else:
        add("softmax(QK^T) scores", h * seq, tp, f"b*h*s*s*{b}/t = {batch}*{h}*{seq}*{seq}*{b}/{tp}", _SRC_EAGER)
        if s.dropout:
            add("attention dropout mask + output", h * seq, tp, f"b*h*s*s*({b}+1)/t", _SRC_EAGER, b + 1)
    shared_norm = m.parallel_block and m.norms_per_layer == 1  # GPT-J/Falcon: attention and MLP read one norm output
    if s.keeps_block_input("gate_proj", "up_proj") and not (shared_norm and qkv_input):
        gu = b if m.moe else gi  # a MoE layer's norm output is the router's bf16 input
        add("gate/up input (norm output)", H, sp, f"b*s*H*{gu:g} = {t_tok}*{H}*{gu:g}", _SRC_MM, gu)
    n_up = 2 if m.gated_mlp else 1
    add("MLP up outputs (gate, up)" if m.gated_mlp else "MLP up output", n_up * width, tp,
        f"b*s*{n_up}*I*{b}/t = {t_tok}*{n_up}*{width}*{b}/{tp}", _SRC_GLU)
    if not s.fused and m.gated_mlp:  # act(gate) for the product's backward; a plain MLP's act output is the down input
        add("activation output (unfused silu)", width, tp, f"b*s*I*{b}/t = {t_tok}*{width}*{b}/{tp}", _SRC_GLU)
    if s.keeps_block_input("down_proj"):
        add("down input (act(gate)*up)" if m.gated_mlp else "down input (act(up))", width, tp,
            f"b*s*I*{gi:g}/t = {t_tok}*{width}*{gi:g}/{tp}", _SRC_MM, gi)
    if s.dropout:
        add("residual dropout masks (attn, mlp)", 2 * H, sp, f"b*s*2*H*1 B = {t_tok}*{2 * H}",
            "torch native_dropout keeps a 1-byte mask", 1)
    if m.moe and s.keeps_input("gate_proj", "up_proj"):
        k = m.moe.experts_per_token
        copies = k if s.gemm_input_bytes else k - 1  # quantized: all k expert inputs are new g-byte tensors
        add("MoE routed token copies (expert inputs)", copies * H, sp,
            f"b*s*{'k' if s.gemm_input_bytes else '(k-1)'}*H*{gi:g} = {t_tok}*{copies}*{H}*{gi:g}", _SRC_MOE, gi)
    if m.moe:
        add("router probabilities (fp32)", m.moe.router_slots, 1, f"b*s*E*4 = {t_tok}*{m.moe.router_slots}*4", _SRC_MOE, 4)
    if s.adapted and s.lora_rank:
        out += adapter_buffers(m, t_tok, s)
    return out


_SRC_REPEAT_KV = ("transformers integrations/sdpa_attention.py: repeat_kv (expand + reshape, a copy) of K and V to every "
                  "query head unless use_gqa_in_sdpa (torch >= 2.5 and attention_mask is None); the kernel keeps the copies")
_SRC_PEFT_CAST = ("PEFT 0.20 tuners/lora/layer.py Linear.forward: x = self._cast_input_dtype(x, lora_A.weight.dtype) for each "
                  "adapted layer; lora_A's linear keeps that copy (under autocast its bf16 re-cast)")


def adapter_buffers(m: ModelSpec, tokens: int, s: LayerSetup) -> list[Buffer]:
    """What the LoRA / DoRA adapters of one block keep, per token (a = ``adapter_copy_bytes`` or the act bytes b):

      A x (lora_B's input):                     r x a per adapted matrix
      PEFT's cast input copies (a > 0):         sum(d_in) x a (the block's bf16 input is then not kept for them)
      lora_dropout, p > 0:                      a 1-byte mask per element of sum(d_in); its dropped copy (b B an element)
                                                is what lora_A keeps: added when the input is shared, it is the copy
                                                itself under PEFT's cast
      DoRA (peft 0.20 tuners/lora/dora.py DoraLinearLayer.forward, ``result_dora = (mag_norm_scale - 1) * base_result
      + mag_norm_scale * lora_result * scaling``; torchtune DoRALinear.forward the same): both products save their
      other operand for the magnitude's gradient: the base output (b) and the adapter output (a), sum(d_out) x (b + a)
    (Llama 3.2 3B, q and v at r 32, PEFT fp32 without autocast, 3,072 tokens: 3072 x (3072 + 3072) x 4 = 75,497,472 B
    of input copies and 3072 x 2 x 32 x 4 = 786,432 B of A x a block; tests/test_finetune_peft.py)"""
    b = s.act_bytes
    a = s.adapter_copy_bytes or b
    mats = _adapted_shapes(m, s.adapted)
    n, d_in, d_out = len(mats), sum(i for i, _o in mats), sum(o for _i, o in mats)
    out: list[Buffer] = []

    def add(name: str, elems: int, elem_bytes: float, formula: str, source: str) -> None:
        size = math.ceil(tokens * elems * elem_bytes)
        out.append(Buffer(name, size, f"{formula} = {size:,} B", source))

    add("LoRA A x (adapter intermediates)", n * s.lora_rank, a, f"b*s*{n} adapters*r*{a} = {tokens}*{n}*{s.lora_rank}*{a}",
        _SRC_LORA)
    if s.adapter_copy_bytes:
        add("LoRA input copies (cast to the adapter dtype)", d_in, a, f"b*s*sum(d_in)*{a} = {tokens}*{d_in}*{a}", _SRC_PEFT_CAST)
        if s.lora_dropout:
            add("LoRA dropout masks", d_in, 1, f"b*s*sum(d_in)*1 = {tokens}*{d_in}", _SRC_LORA)
    elif s.lora_dropout and not s.litgpt:
        add("LoRA dropout copies + masks", d_in, b + 1, f"b*s*sum(d_in)*({b}+1) = {tokens}*{d_in}*{b + 1}", _SRC_LORA)
    if s.dora:
        add("DoRA base + adapter outputs (for the magnitude)", d_out, b + a,
            f"b*s*sum(d_out)*({b}+{a}) = {tokens}*{d_out}*{b + a}", _SRC_DORA)
    return out


_SRC_LITGPT = ("litgpt commit 8641822: CausalSelfAttention takes q, k, v as views of the fused qkv output; RoPE copies "
               "q and k, v stays a view, so the attention kernel's saved v keeps the whole qkv tensor; LoRAQKVLinear "
               "zero_pad index_copy keeps its source (B A x of the adapted q/k/v); one lora_dropout on the shared input")


def litgpt_buffers(m: ModelSpec, tokens: int, s: LayerSetup) -> list[Buffer]:
    """What litgpt's block (commit 8641822) keeps beyond the engine's Q, K, V (checked by counting the tensors
    autograd saves, torch.autograd.graph.saved_tensors_hooks, on a bf16 LoRA block of that code):

      fused qkv output behind the view v:       (h + g)*d per token   (qkv is (h+2g)*d; Q', K' copies and v counted)
      LoRA on a subset of q, k, v (zero_pad):   sum of the adapted outputs (index_copy's saved source, B A x)
      lora_dropout (one nn.Dropout on the fused input): a 1-byte mask of H; the dropped copy replaces the kept
                                                 norm output as the input dA needs (q/k/v input already counted),
                                                 unless the qkv linear is 4-bit: MatMul4Bit keeps the norm output too
    Bytes = tokens x elements x act bytes (the mask 1 B), divided by TP for head-split tensors."""
    b, tp = s.act_bytes, s.tp
    H, h, g, d = m.hidden_size, m.num_heads, m.kv_heads, m.dim_per_head
    out = [Buffer("fused qkv output (kept by the view v)", math.ceil(tokens * (h + g) * d * b / tp),
                  f"b*s*(h+g)*d*{b}/t = {tokens}*{(h + g) * d}*{b}/{tp}", _SRC_LITGPT)]
    qkv_names = ("q_proj", "k_proj", "v_proj")
    adapted = [n for n in qkv_names if n in s.adapted]
    if s.lora_rank and adapted and len(adapted) < 3:
        width = sum(h * d if n == "q_proj" else g * d for n in adapted)
        out.append(Buffer("LoRA zero_pad source (B A x of the adapted q/k/v)", math.ceil(tokens * width * b / tp),
                          f"b*s*{width}*{b}/t = {tokens}*{width}*{b}/{tp}", _SRC_LITGPT))
    if s.lora_rank and adapted and s.lora_dropout:
        out.append(Buffer("LoRA dropout mask (shared qkv input)", tokens * H, f"b*s*H*1 B = {tokens}*{H}", _SRC_LITGPT))
        if s.quantized:  # the 4-bit qkv linear keeps the norm output and lora_A its dropped copy: both stay
            out.append(Buffer("LoRA dropout copy (beside the norm output the quantized qkv keeps)", tokens * H * b,
                              f"b*s*H*{b} = {tokens}*{H}*{b}", _SRC_LITGPT))
    return out


_SRC_O_COPY = ("eager stacks reshape O (b, h, s, d) -> (b, s, h*d) with a copy (HF attn_output.transpose(1, 2).contiguous(), "
               "litgpt y.transpose(1, 2).reshape); the quantized o_proj keeps that copy, flash keeps its own O")
_SRC_MLA = "MLA: the q and kv latents pass an RMSNorm and an up-projection (DeepSeek-V2, arXiv 2405.04434 eq. 9-14)"
_SRC_MOE = "MoE: each token is dispatched to k experts (k copies of its hidden state kept for the expert weights' grads)"
_SRC_DORA = "DoRA: y = m * (W0 x + B A x) / ||W0 + B A||_c; dm needs the unscaled output (Liu et al. 2024, eq. 5)"


def _adapted_shapes(m: ModelSpec, adapted: frozenset[str]) -> list[tuple[int, int]]:
    """(d_in, d_out) of each adapted matrix of the last block kind (experts count k active copies)."""
    from calc.model.params import layer_kinds

    out = []
    for t in layer_kinds(m)[-1][2]:
        if t.shape and t.name in adapted and t.component != "router":
            copies = m.moe.experts_per_token if t.component == "experts" and m.moe else 1
            out += [t.shape] * copies
    return out


# Bytes per logit (over the vocabulary shard) at the loss backward's start, for the whole-logits losses of training
# stacks (lm_head_buffers explains each): Megatron-Core's vocab-parallel CE 4 (fp32 softmax) + 2 (bf16 grad cast);
# flash-attn's fused CE 2 (bf16 logits saved) + 2 (bf16 dlogits); torch cross_entropy on logits.float() compiled by
# torch.compile 2 (bf16 logits saved) + 2 (bf16 dlogits written by the fused backward kernel).
LOSS_BYTES_PER_LOGIT = {"megatron": 6, "flash-ce": 4, "compiled": 4}
# torch cross_entropy on fp32 logits: one device (aten log_softmax / nll_loss kernels) 12 B; vocab-sharded under TP
# (torch.distributed.tensor.parallel.loss_parallel, torchtitan's default with TP) 16 B (lm_head_buffers).
FP32_CE_BYTES_PER_LOGIT = 12
LOSS_PARALLEL_BYTES_PER_LOGIT = 16
TRAINING_LOSSES = ("fp32", "compiled", "megatron", "flash-ce", "chunked", "fused", "bf16")


def priced_loss(loss: str, tp: int) -> str:
    """The loss whose buffers price ``loss`` at tensor parallelism ``tp``: a compiled torch loss under TP
    (loss_parallel over vocab-sharded logits) is priced as the eager decomposition, "fp32" (lm_head_buffers says why);
    every other loss as itself. One rule for the logits buffer (lm_head_buffers) and the freed fp32 block the caching
    allocator keeps (calc.memory.training).

    >>> priced_loss("compiled", 1), priced_loss("compiled", 2), priced_loss("megatron", 8)
    ('compiled', 'fp32', 'megatron')
    """
    return "fp32" if loss == "compiled" and tp > 1 else loss


def lm_head_buffers(m: ModelSpec, batch: int, seq: int, loss: str, chunks: int, act_bytes: int, lm_head_trains: bool,
                    tp: int = 1, compiled: bool = False) -> list[Buffer]:
    """Final norm, output-head input, logits and the cross-entropy buffers.

    Plain loss (torch.nn.functional.cross_entropy on logits.float()): the loss backward holds the fp32
    log-softmax saved in forward (4 B per logit), the gradient nll_loss hands back (4 B) and the gradient
    log_softmax_backward writes (4 B): 12 B per logit (the bf16 logits, 2 B, are dropped before backward;
    in forward the peak is 2 + 4 + 4 = 10 B). Chunked (torchtune CEWithChunkedOutputLoss): bf16 logits
    whole, the fp32 work one chunk at a time: 2 + 12/C. Fused linear + CE (Liger, Cut Cross-Entropy
    arXiv 2411.09009, torchtune LinearCrossEntropyLoss): only one chunk of logits ever exists: 12/C.
    A compiled chunked loss (torchtune compile=True runs training.compile_loss) fuses upcast, log-softmax and
    NLL per chunk: it keeps the bf16 logits and a per-row log-sum-exp, and writes one chunk's bf16 gradient: 2 + 2/C.
    Megatron-Core's vocab-parallel cross-entropy (``"megatron"``; megatron/core/tensor_parallel/cross_entropy.py,
    VocabParallelCrossEntropy): calculate_logits_max upcasts the bf16 logits once (4 B), exp and the division by the
    sum run in place, the fp32 softmax is the one saved tensor, and backward turns it into the gradient in place;
    autograd then casts that gradient to the bf16 logits' dtype (2 B): 4 + 2 = 6 B per logit at the backward's start
    (in forward: the bf16 logits, still referenced by GPTModel.forward, + the fp32 copy: 2 + 4 = 6 B).
    FlashAttention's fused cross-entropy (``"flash-ce"``; flash_attn/losses/cross_entropy.py, llm-foundry's default
    loss_fn "fused_crossentropy"): the Triton kernel reads the bf16 logits, saves them and a per-row fp32
    log-sum-exp, and backward writes a new bf16 dlogits (inplace_backward=False): 2 + 2 = 4 B per logit.
    Compiled torch loss (``"compiled"``; torchtitan with compile on: its cross_entropy_loss on pred.float() goes through
    torch.compile, build_cross_entropy_loss in torchtitan/components/loss.py since pytorch/torchtitan bbb1b616e,
    2025-04-02, and compile.components "loss" since 08b8b244f, 2025-08-20, "to compile loss separately to get memory
    reduction"; also from e10cb9494, 2024-10-22, until e8977b007 turned it off on 2024-12-18): inductor fuses the
    upcast, log-softmax and NLL into reductions, so neither the fp32 copy nor the log-softmax is written; the bf16
    logits (the model's output, saved) and a per-row log-sum-exp are what backward reads (its min-cut partitioner
    saves the bf16 input rather than fp32 intermediates it can recompute: our reading, not measured here), and its one
    fused kernel writes the bf16 gradient: 2 + 2 = 4 B per logit, and no freed fp32 block for the caching allocator to keep
    (calc.memory.training.caching_allocator_cached). Under TP (loss_parallel) it is priced as the eager decomposition
    below (no source read for how inductor treats the vocab-parallel DTensor loss).
    bf16 (litgpt: ``model(x, lm_head_chunk_size=128)`` + ``chunked_cross_entropy``, lit_gpt/utils.py at commit
    8641822): cross_entropy runs on each bf16 logit chunk without an upcast, so every chunk's bf16 log-softmax is
    kept until backward beside the bf16 logits, and backward writes one chunk's two bf16 gradients: 2 + 2 + 4/C.
    Plain loss under TP (``tp`` > 1, logits sharded over the vocabulary): torch cross_entropy on a vocab-sharded
    DTensor runs under ``loss_parallel()`` (torchtitan's default with TP: ColwiseParallel output
    ``output_layouts=Shard(-1)``, torchtitan/parallelisms/parallelize_llama.py and utils.get_train_context at 9dec370;
    without it the logits are replicated, V per rank). Its handlers (torch/distributed/tensor/parallel/loss.py,
    read at pytorch 02eef6b) replace the fused aten kernels by their decompositions: forward _log_softmax keeps the
    fp32 input (4), writes shifted = x - max (4) and a transient exp(shifted) (4), then result (4), beside the bf16
    logits (2): 14 B; backward _nll_loss_and_log_softmax_backward holds the saved log-softmax (4) and computes
    (zeros_like(x) + exp(x)) * grad_output: zeros (4) + exp (4) + their sum (4), then the product (4) while the sum is
    alive: 4 + 4 + 4 + 4 = 16 B per logit of the shard (LOSS_PARALLEL_BYTES_PER_LOGIT; _log_softmax_backward_handler
    only casts, a no-op on fp32).
    """
    tok = batch * seq
    V = m.vocab_size
    out = [norm_buffer("final norm input", m.hidden_size, tok, LayerSetup(act_bytes=act_bytes))]
    if lm_head_trains:
        out.append(Buffer("lm_head input", tok * m.hidden_size * act_bytes, f"b*s*H*{act_bytes}", _SRC_MM))
    plain = FP32_CE_BYTES_PER_LOGIT if tp == 1 else LOSS_PARALLEL_BYTES_PER_LOGIT
    per_logit = {"fp32": plain, "compiled": LOSS_BYTES_PER_LOGIT["compiled"],
                 "chunked": 2 + (2 if compiled else 12) / chunks, "fused": 12 / chunks, "bf16": 4 + 4 / chunks,
                 "megatron": LOSS_BYTES_PER_LOGIT["megatron"], "flash-ce": LOSS_BYTES_PER_LOGIT["flash-ce"]}[priced_loss(loss, tp)]
    n = math.ceil(tok * V * per_logit / tp)
    src = {"fp32": "logits.float() + log_softmax kept for backward (torch cross_entropy" + (
               ")" if tp == 1 else ", vocab-parallel under loss_parallel: decomposed log-softmax and NLL backward)"),
           "compiled": "torch cross_entropy on logits.float() under torch.compile (torchtitan compile.components 'loss'): "
                       "bf16 logits saved + bf16 dlogits"
                       + ("" if tp == 1 else ", vocab-parallel priced as loss_parallel's eager decomposition"),
           "chunked": "torchtune modules/loss CEWithChunkedOutputLoss: upcast per chunk" + (" (compiled)" if compiled else ""),
           "fused": "fused linear cross-entropy (Liger / Cut Cross-Entropy, arXiv 2411.09009): per-chunk logits",
           "megatron": "Megatron-Core vocab-parallel cross-entropy: fp32 softmax saved, gradient in place, bf16 cast",
           "flash-ce": "flash_attn.losses.cross_entropy: bf16 logits saved + bf16 dlogits",
           "bf16": "litgpt chunked_cross_entropy on bf16 logit chunks: log-softmax kept in bf16 for every chunk"}[loss]
    out.append(Buffer(f"logits + cross-entropy ({loss})", n, f"b*s*V*{per_logit:g} B/t = {tok}*{V}*{per_logit:g}/{tp} = {n:,} B", src))
    return out


_SRC_NORM_UP = ("DeepSeek-V3 sec. 3.2.3: 'we recompute all RMSNorm operations and MLA up-projections during back-propagation'; "
                "Megatron-Core recompute_modules layernorm (input/pre-MLP norms) and mla_up_proj (up-projection + RoPE)")
# the tensors DeepSeek-style recomputation drops (names of layer_buffers): the norm outputs, and with MLA the
# up-projected Q, K, V and the normed latents the up-projections read
def recompute_problem(m: ModelSpec, recompute: str) -> str | None:
    """Why a --recompute level would do less than its name on this model, else None: "deepseek" recomputes the norms
    and the MLA up-projections (Megatron-Core --recompute-modules layernorm mla_up_proj), so a model without MLA would
    get its norm half alone (the caller names the level that says so)."""
    if recompute == "deepseek" and m.mla is None:
        return f"deepseek recomputes the norms and the MLA up-projections, and {m.name} has no MLA"
    return None


NORM_UP_DROPPED = ("q/k/v input (norm output)", "gate/up input (norm output)")
MLA_UP_DROPPED = ("Q, K, V after RoPE", "MLA latents (norm inputs + up-projection inputs)")


def _norm_up_dropped(m: ModelSpec) -> tuple[str, ...]:
    return NORM_UP_DROPPED + (MLA_UP_DROPPED if m.mla else ())


def norm_up_layer_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> list[Buffer]:
    """Saved tensors of one block under DeepSeek-V3's recomputation of RMSNorm and MLA up-projections
    (arXiv 2412.19437 sec. 3.2.3; Megatron-Core ``--recompute-granularity selective --recompute-modules layernorm
    mla_up_proj``): ``layer_buffers`` less the norm outputs (the q/k/v-or-latent projections' and the MLP's /
    router's input: recomputed from the kept norm input) and, for MLA, less the up-projected Q, K, V and the normed
    latents; what the recomputation reads stays: the latents before their norms (r_q + r_kv) and the RoPE key
    (d_rope) per token, b*s*(r_q + r_kv + d_rope)*bytes. Per token of DeepSeek-V3 (H 7168, 128 heads, Q/K 192 and
    V 128 per head, r_q 1536, r_kv 512, d_rope 64): 2 x 7168 norm outputs + 128 x (2 x 192 + 128) Q/K/V + 2048 normed
    latents dropped, 2048 + 64 latents kept. Without MLA only the norm outputs go."""
    out = [b for b in layer_buffers(m, batch, seq, s) if b.name not in _norm_up_dropped(m)]
    if m.mla:
        a = m.mla
        width = (a.q_lora_rank or 0) + a.kv_lora_rank + a.qk_rope_head_dim
        n = math.ceil(batch * seq * width * s.act_bytes)
        out.append(Buffer("MLA latents + RoPE key (recompute inputs)", n,
                          f"b*s*(r_q + r_kv + d_rope)*{s.act_bytes} = {batch * seq}*{width}*{s.act_bytes} = {n:,} B", _SRC_NORM_UP))
    return out


# Megatron-Core --recompute-granularity selective --recompute-modules (megatron/core/transformer/transformer_config.py
# recompute_modules): the submodules whose outputs are dropped after the forward and rebuilt in the backward.
RECOMPUTE_MODULES = ("core_attn", "layernorm", "mla_up_proj", "moe_act", "moe", "mlp", "shared_experts")
_SRC_MODULES = ("Megatron-Core recompute_modules (transformer_config.py): 'layernorm' input_layernorm and pre_mlp_layernorm, "
                "'mla_up_proj' the MLA up projection and RoPE, 'moe_act' the MoE MLP activation function, 'moe' the MoE "
                "layer, 'mlp' the dense MLP layer, 'shared_experts' the shared experts, 'core_attn' the attention core; "
                "each checkpointed module keeps its input and drops its output (CheckpointWithoutOutput)")
_MLP_BLOCK = ("gate/up input (norm output)", "MLP up outputs (gate, up)", "MLP up output", "down input (act(gate)*up)",
              "down input (act(up))", "MoE routed token copies (expert inputs)", "router probabilities (fp32)")
_MLP_BLOCK_OUTPUTS = _MLP_BLOCK[1:]  # the block's input (the pre-MLP norm output) is the checkpoint's input, kept


def module_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> tuple[list[Buffer], int]:
    """(saved tensors of one block, the bytes one layer rebuilds in backward) under Megatron-Core's selective
    recomputation of ``s.recompute_modules``: ``layer_buffers`` less what each module drops.

      layernorm     the norm outputs (the q/k/v and MLP inputs): rebuilt from the kept norm inputs
      mla_up_proj   the up-projected Q, K, V and the normed latents; the latents and the RoPE key stay
                    (as ``norm_up_layer_buffers``): b*s*(r_q + r_kv + d_rope) kept
      moe_act       the routed experts' activation output act(gate)*up (their down-projection input), rebuilt
                    from the kept gate/up outputs: the routed share k*I_e / (k*I_e + I_shared) of the down input
      moe (MoE models) / mlp (dense models): the whole MLP block past its input: gate/up outputs, down input,
                    routed token copies, router probabilities; the block's input (the pre-MLP norm output) stays
                    unless layernorm is recomputed too
      shared_experts the shared experts' share of the up outputs and down input
      core_attn     nothing under FlashAttention (its backward recomputes the scores anyway)
    Worked, Qwen3-235B-A22B (H 4096, k 8 x I_e 1536 = 12288, no shared expert) per token, bf16, TP 1: layernorm drops
    2 x 4096 x 2 = 16 KiB; moe drops the up outputs 2 x 12288 x 2, the down input 12288 x 2, 7 routed copies x 4096 x 2
    and the router's 128 x 4 fp32: 49152 + 24576 + 57344 + 512 = 131,584 B."""
    mods = s.recompute_modules
    full = layer_buffers(m, batch, seq, s)
    drop: dict[str, float] = {}  # buffer name -> share dropped

    def dropping(names: tuple[str, ...], share: float = 1.0) -> None:
        for n in names:
            drop[n] = max(drop.get(n, 0.0), share)

    if "layernorm" in mods:
        dropping(NORM_UP_DROPPED)
    if "mla_up_proj" in mods and m.mla:
        dropping(MLA_UP_DROPPED)
    if ("moe" in mods and m.moe) or ("mlp" in mods and not m.moe):
        dropping(_MLP_BLOCK_OUTPUTS)
    if m.moe:
        if "moe_act" in mods:
            dropping(("down input (act(gate)*up)", "down input (act(up))"), m.moe.routed_share)
        if "shared_experts" in mods and m.moe.shared_intermediate_size:
            dropping(("MLP up outputs (gate, up)", "MLP up output", "down input (act(gate)*up)", "down input (act(up))"),
                     m.moe.shared_intermediate_size / m.moe.active_width)
    kept, rebuilt = _without(full, drop)
    if "mla_up_proj" in mods and m.mla:
        a = m.mla
        width = (a.q_lora_rank or 0) + a.kv_lora_rank + a.qk_rope_head_dim
        n = math.ceil(batch * seq * width * s.act_bytes)
        kept.append(Buffer("MLA latents + RoPE key (recompute inputs)", n,
                           f"b*s*(r_q + r_kv + d_rope)*{s.act_bytes} = {batch * seq}*{width}*{s.act_bytes} = {n:,} B", _SRC_MODULES))
    return kept, rebuilt


def _without(layer: list[Buffer], drop: dict[str, float]) -> tuple[list[Buffer], int]:
    """(the buffers left when ``drop`` {name: share} takes that share of each named one, the bytes taken)."""
    kept, gone_total = [], 0
    for b in layer:
        share = drop.get(b.name, 0.0)
        gone = math.ceil(b.bytes * share)
        gone_total += gone
        if gone < b.bytes:
            kept.append(b if not gone else Buffer(b.name, b.bytes - gone, f"{b.formula} x {1 - share:.3g} kept", b.source))
    return kept, gone_total


# Megatron-Core fine-grained activation offloading (--fine-grained-activation-offloading --offload-modules;
# docs/user-guide/features/fine_grained_activation_offloading.md: "Each module offloads its input activation to CPU
# during forward and reloads it before backward"): the module -> the saved tensors of layer_buffers that are its input.
OFFLOAD_MODULES: dict[str, tuple[str, ...]] = {
    "attn_norm": ("attn norm input",),
    "qkv_linear": ("q/k/v input (norm output)",),
    "core_attn": ("Q, K, V after RoPE",),
    "attn_proj": ("attention output O (o_proj input)", "o_proj input (quantized copy of O)"),
    "mlp_norm": ("mlp norm input",),
    "expert_fc1": ("MoE routed token copies (expert inputs)",),
    "moe_act": ("MLP up outputs (gate, up)", "MLP up output"),
}


def offloaded_buffers(m: ModelSpec, layer: list[Buffer], s: LayerSetup) -> tuple[list[Buffer], int]:
    """(the saved tensors of one layer left on the GPU, the bytes of one layer offloaded) under Megatron-Core's
    fine-grained activation offloading of ``s.offload_modules`` (OFFLOAD_MODULES: each module's input goes to host
    memory after its forward, and comes back before its backward). moe_act offloads the routed experts' share
    k*I_e / (k*I_e + I_shared) of the gate/up outputs (the shared experts' activation is not an expert module);
    expert_fc1 the k routed token copies. The one layer offloaded is counted back once by the caller: the reload of
    the layer about to run its backward (Megatron keeps the last group on the GPU to avoid a reload stall)."""
    drop: dict[str, float] = {}
    for mod in s.offload_modules:
        share = 1.0
        if mod == "moe_act" and m.moe:
            share = m.moe.routed_share
        elif mod in ("moe_act", "expert_fc1") and not m.moe:
            continue
        for name in OFFLOAD_MODULES[mod]:
            drop[name] = max(drop.get(name, 0.0), share)
    return _without(layer, drop)


def offloaded_layer_bytes(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> int:
    """Bytes of one layer's saved tensors Megatron-Core's fine-grained offloading (``s.offload_modules``) sends to
    host memory in its forward and reads back before its backward: ``offloaded_buffers`` of the layer as it is kept
    (``module_buffers`` under ``s.recompute_modules``, else ``layer_buffers``); 0 without offloaded modules."""
    if not s.offload_modules:
        return 0
    layer = module_buffers(m, batch, seq, s)[0] if s.recompute_modules else layer_buffers(m, batch, seq, s)
    return offloaded_buffers(m, layer, s)[1]


_SRC_SAC = ("torchtitan op-level selective AC (models/llama/parallelize: save mm outputs except every second mm, "
            "and the attention kernel outputs; recompute the rest from the layer input)")


def _checkpoint_and_matmul_outputs(m: ModelSpec, batch: int, seq: int, s: LayerSetup, step: int, label: str,
                                   source: str) -> list[Buffer]:
    """The layer input (b*s*H, the checkpoint) and the outputs of every ``step``-th weight matmul of the block (routers
    aside; a MoE layer's routed experts k copies of theirs), each split as its tensor is over TP / SP: what op-level
    SAC (every second matmul) and JAX's dots policy (every one) keep."""
    from calc.model.params import layer_kinds

    tok, b, tp = batch * seq, s.act_bytes, s.tp
    sp = tp if s.sp else 1
    tensors = [t for _k, _c, ts in layer_kinds(m)[-1:] for t in ts if t.shape and t.component != "router"]
    out = [Buffer("layer input (checkpoint)", math.ceil(tok * m.hidden_size * b / sp), f"b*s*H*{b} = {tok}*{m.hidden_size}*{b}",
                  source)]
    for t in tensors[0::step]:
        width = t.shape[1] * (m.moe.experts_per_token if t.component == "experts" and m.moe else 1)
        div = sp if t.name in ROW_PARALLEL else tp
        n = math.ceil(tok * width * b / div)
        out.append(Buffer(f"{t.name} output ({label})", n, f"b*s*{width}*{b}/{div} = {n:,} B", source))
    return out


def sac_layer_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> list[Buffer]:
    """Saved tensors of one block under op-level selective activation checkpointing: the layer input
    (b*s*H), the outputs of the 1st, 3rd, 5th... matmul of the block (Llama: q, v, gate, down), and the
    attention kernel's output and log-sum-exp (the SDPA ops of torchtitan's save list; eager attention's batched
    matmuls and softmax are not on it, so with eager attention its core is recomputed and nothing of it kept);
    everything else is recomputed in backward.
    """
    out = _checkpoint_and_matmul_outputs(m, batch, seq, s, 2, "saved mm", _SRC_SAC)
    if s.attention != "flash":
        return out
    hd = m.num_heads * (m.mla.v_head_dim if m.mla else m.dim_per_head)
    n = math.ceil(batch * seq * (hd * s.act_bytes + 4 * m.num_heads) / s.tp)
    out.append(Buffer("attention output + log-sum-exp", n, f"b*s*(h*d*{s.act_bytes} + h*4)/t = {n:,} B", _SRC_FLASH))
    return out


_SRC_DOTS = ("JAX jax.checkpoint_policies.dots_with_no_batch_dims_saveable (jax/_src/ad_checkpoint.py: a dot_general "
             "without batch dimensions is saveable; Pax AutodiffCheckpointType.SAVE_DOT_WITH_NO_BATCH_DIM, MaxText "
             "remat_policy 'minimal'): the weight matmuls' outputs kept, the attention's batched dots and every "
             "elementwise op recomputed")


def dots_layer_buffers(m: ModelSpec, batch: int, seq: int, s: LayerSetup) -> list[Buffer]:
    """Saved tensors of one block under JAX's dots-with-no-batch-dims policy: the layer input (b*s*H, the scan's
    carry) and the output of every weight matmul of the block (Llama: q, k, v, o, gate, up, down; a MoE layer's
    routed experts k copies of theirs). The attention core (QK^T and PV are dot_generals with batch dimensions), the
    softmax, norms, RoPE and the activation function are recomputed in backward, so no s x s score and no attention
    output is kept, whatever the attention kernel. The routers' logits, a dot without batch dimensions JAX keeps too,
    are left out as SAC leaves them (E x tokens x 2 B a MoE layer, small beside the expert outputs).

    E.g. Llama-2-7B (H 4,096, MLP 11,008), b*s = 4,096 tokens, bf16, TP 1: layer input 4,096 x 4,096 x 2 + q, k, v, o
    4 x 4,096 x 4,096 x 2 + gate, up 2 x 4,096 x 11,008 x 2 + down 4,096 x 4,096 x 2 = 6 x 33.55 MB + 2 x 90.18 MB =
    381.7 MB a layer.
    """
    return _checkpoint_and_matmul_outputs(m, batch, seq, s, 1, "saved dot", _SRC_DOTS)


@dataclass(frozen=True)
class StageActivations:
    """Activations one pipeline stage keeps: one layer's saved tensors, all of them over the stage's layers
    and in-flight micro-batches, and the layer recomputed in backward (full or op-level selective)."""

    layer: list[Buffer]
    saved: int
    recompute: int
    formula: str

    @property
    def backward_workspace(self) -> int:
        """The recomputed layer plus the gradients of the largest tensor of a layer (dY and dX): 2 x its bytes."""
        return self.recompute + 2 * max(b.one_layer or b.bytes for b in self.layer)


def stage_activations(m: ModelSpec, batch: int, seq: int, s: LayerSetup, recompute: str, n_layers: int, in_flight: int,
                      offload_layers: int | None = None) -> StageActivations:
    """``recompute`` in the user's vocabulary (``Recompute``, one meaning in every mode).
    none: every layer's saved tensors (``layer_buffers``); full: each layer's input b*s*H*2 plus one layer
    recomputed in backward; selective: Megatron's (Korthikanti et al. 2022 sec. 5): the attention core recomputed,
    so no s x s score is kept: with eager attention the saved tensors less the scores, with FlashAttention (which
    keeps none) the same as none; sac: op-level SAC (``sac_layer_buffers``) plus one layer recomputed; deepseek:
    ``norm_up_layer_buffers`` plus the dropped tensors of one layer rebuilt in backward; none with
    ``s.recompute_modules`` (Megatron's selective recomputation of named modules under FlashAttention, whose
    attention core recomputes nothing): ``module_buffers``, the dropped tensors of one layer rebuilt in backward;
    ``s.offload_modules`` (Megatron's fine-grained activation offloading): ``offloaded_buffers`` leave the GPU, one
    layer's of them counted back as reloaded in backward.
    ``offload_layers``: activations offloaded to CPU, only that many layers stay on the GPU.
    Pipeline 1F1B: the first stage keeps ``in_flight`` (= p) micro-batches."""
    if recompute == "selective":  # the saved tensors of a kernel that keeps no score: FlashAttention's
        s = replace(s, attention="flash")
        recompute = "none"
    full_layer = layer_buffers(m, batch, seq, s)
    full_bytes = sum(b.bytes for b in full_layer)
    kept = (min(n_layers, offload_layers) if offload_layers else n_layers) * in_flight
    if recompute == "full":
        rb = s.residual_bytes or s.act_bytes
        layer_input = math.ceil(batch * seq * m.hidden_size * rb / (s.tp if s.sp else 1))
        return StageActivations(full_layer, kept * layer_input, full_bytes,
                                f"{kept} checkpointed layer inputs x b*s*H*{rb} ({layer_input:,} B) "
                                f"+ one layer recomputed ({full_bytes:,} B)")
    if recompute == "sac":
        layer = sac_layer_buffers(m, batch, seq, s)
        per = sum(b.bytes for b in layer)
        return StageActivations(layer, kept * per, full_bytes, f"{kept} layers x {per:,} B (op-level SAC) + one layer recomputed")
    if recompute == "dots":  # JAX's dots policy: one layer's elementwise ops and attention core rebuilt at a time
        layer = dots_layer_buffers(m, batch, seq, s)
        per = sum(b.bytes for b in layer)
        return StageActivations(layer, kept * per, full_bytes,
                                f"{kept} layers x {per:,} B (layer input + weight-matmul outputs) + one layer recomputed")
    if recompute == "deepseek":  # one layer's dropped tensors are rebuilt at a time in backward
        layer = norm_up_layer_buffers(m, batch, seq, s)
        per = sum(b.bytes for b in layer)
        dropped = sum(b.bytes for b in full_layer if b.name in _norm_up_dropped(m))
        return StageActivations(layer, kept * per, dropped,
                                f"{kept} layers x {per:,} B (norm outputs and MLA up-projections dropped) + their "
                                f"{dropped:,} B recomputed for one layer")
    if not (s.recompute_modules or s.offload_modules):
        return StageActivations(full_layer, kept * full_bytes, 0, f"{kept} layers x {full_bytes:,} B per layer")
    layer, rebuilt = module_buffers(m, batch, seq, s) if s.recompute_modules else (full_layer, 0)
    note = [f"recompute modules {', '.join(sorted(s.recompute_modules))}"] if s.recompute_modules else []
    if s.offload_modules:  # Megatron's fine-grained offloading: one layer's offloaded inputs reloaded at a time
        layer, offloaded = offloaded_buffers(m, layer, s)
        rebuilt += offloaded
        note.append(f"offload modules {', '.join(sorted(s.offload_modules))}")
    per = sum(b.bytes for b in layer)
    return StageActivations(layer, kept * per, rebuilt,
                            f"{kept} layers x {per:,} B ({'; '.join(note)}) + {rebuilt:,} B rebuilt or reloaded for one layer")
