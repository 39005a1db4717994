"""Per-micro-batch costs of one pipeline stage: compute, recomputation and communication of each layer.

Built once per (model, GPU, system, sequence, dtype) and evaluated for many layouts, so the hot path
is plain floats with small caches (the plan search calls it thousands of times). Formulas:

Compute, per layer, forward, for T = b*s/c tokens on one GPU after TP slicing:
  GEMMs       each weight [k, n] of the layer: gemm_time(T, n/t, k) (row-parallel o_proj/down_proj split
              k instead); routed experts on the MoE grid ETP x EP (calc.training.layout; u = ETP, Megatron default t):
              E/e local experts split u ways, each a GEMM of (T/t)*k*e*u*cf*imb/E tokens (grouped; imb below): the
              MoE layer takes the sequence-parallel slice T/t of each rank (Megatron-Core's moe_layer.py refuses TP
              without SP in training, so it is priced in that form), the all-to-all gathers the copies of the e
              EP ranks and the ETP all-gather those of the u ETP ranks (token_dispatcher.py MoEAlltoAllTokenDispatcher)
  attention   flash (fused) kernel: F = 2*b*(h/t)*(d_qk+d_v)*pairs/c FLOPs with pairs = s(s+1)/2 (causal, the
              masked half skipped); forward F / R_fwd, backward 2.5 F / R_bwd (it recomputes Q K^T), the rates of the
              stack's kernel at head dim (d_qk+d_v)/2 and the per-rank query length s/c, causal
              (calc.hardware.attention: FlashAttention-2/3 and cuDNN benchmark tables; calc.training.stack).
              Packed documents (ModelCost.doc_tokens d < s: SFT on short examples packed into each sequence,
              NeMo / Megatron-Bridge packed_sequence with THD cu_seqlens, FlashAttention varlen): a query attends
              only inside its document, so pairs = (s/d) x d(d+1)/2 and the rates are read at the query length d/c
              (Megatron-Core CP splits each packed document over the c ranks; attention_share).
              Unfused (Megatron 2021-22): two batched GEMMs over the full s x s scores + softmax/dropout
              memory traffic of b*(h/t)*(s/c)*s*SOFTMAX_BYTES bytes.
  elementwise norms, residual adds, dropout, activation: (EW_H*T*H/(t if SP) + EW_I*T*I/t) elements x dtype
              bytes at the HBM rate.
  fp8 runs    (Transformer Engine fp8 autocast, torchao Float8Linear, MXFP8): only the layers' linear GEMMs run
              at the fp8 peak; the attention core (TE DotProductAttention without fp8_dpa, the default of
              NeMo / Megatron-Bridge recipes; torchtitan's SDPA), norms, softmax, elementwise ops, the router
              and the output head (Megatron's output_layer is not a TE module; torchtitan's float8 converter
              skips "output") stay bf16, as do the activations the TP/CP/EP/PP collectives move. Each fp8
              GEMM pays a memory-bound cast: per element of each operand (input [m,k] and weight [k,n] forward,
              the output gradient [m,n] backward) fp8_cast_bytes of HBM traffic: cast read 2 B + fp8 write 1 B
              + the transposed / column-wise fp8 copy the other GEMM of the pair needs 1 B (Hopper's fp8 tensor
              cores take only TN operands; MXFP8 keeps row- and column-wise scaled copies; TE Float8Tensor /
              MXFP8Tensor) = 4 B. Delayed scaling and MXFP8 find the amax / block scales inside the cast
              kernel; current (per-tensor dynamic) scaling reads the input once more for its amax (+2 B: 6).
              Megatron-Core (stack megatron, Transformer Engine modules) casts less (calc.training.fp8_recipe,
              "Megatron-Core"): one input cast for q/k/v (linear_qkv) and one for gate/up (linear_fc1); the norm-fed
              inputs quantized inside the RMSNorm kernel (delayed, MXFP8: 0 B more); weights cast once per step (left
              out per micro-batch); with SP the norm output and the row-parallel output gradient cast on the T/t local
              rows and all-gathered in fp8, their transposed copy made after the gather (2 B per gathered element).
  MoE         on the rank's sequence-parallel slice T/t: router (fp32 logits [T/t, E]: written, read by softmax/top-k,
              probs written: 12 B each) and permute / unpermute (gather the T/t*k*cf routed copies of H: read +
              write 2 B each; combine reads them and writes T/t*H), and, on a rank holding more than one expert,
              the dispatcher's two local sorts of the received copies (sort_chunks_by_idxs, read + write 4 B per
              copy each; calc.hardware.moe_ops): memory-bound, the same traffic again in backward (Megatron-Core
              moe_permute / moe_unpermute, TE fused permute). Routed experts run as one grouped GEMM whose
              rate, relative to a dense GEMM of the same per-expert shape, is grouped_gemm_efficiency at <= 256
              tokens per expert, rising linearly in log2(tokens) to 1 at 4096 (DeepGEMM's grouped-GEMM tables;
              calc.hardware.efficiency.grouped_gemm_ramp).
  imbalance   with EP the all-to-all and the grouped GEMMs wait for the most-loaded EP rank (moe_ep_imbalance):
              a rank holds E/e experts whose per-batch loads scatter with coefficient of variation cv around
              the balanced share (aux-loss routing is balanced on average, not per batch); treating them as
              independent, the rank's load has cv/sqrt(E/e), and the expected maximum of e such ranks is
              about mean x (1 + cv/sqrt(E/e) x sqrt(2 ln e)) (the Gaussian extreme-value approximation). The
              slowest rank's routed tokens (grouped GEMMs, their fp8 casts) and its all-to-all receive volume
              scale by that factor; 1 without EP (e = 1: one grouped GEMM does all the experts' work). The cv
              follows the run's routing (Efficiencies.moe_routing, calc.hardware.moe_ops.MOE_ROUTINGS): the assumed
              EXPERT_LOAD_CV under aux-loss balancing; under Megatron's force-balanced benchmark routing (random top-k
              logits) the binomial sqrt((1 - k/E) / mu), mu = (T/t) e u k / E the tokens an expert receives; 0 under
              token drop padded to capacity (every expert processes exactly cf x its balanced share).
  backward    2x the forward GEMM time and 2x the elementwise traffic (dgrad + wgrad); LoRA / QLoRA on a frozen
              base (``lora``, calc.training.adapters): 1x the base GEMMs (the input gradient only), the adapters'
              GEMMs and adds beside each adapted projection, QLoRA's NF4 dequantization before every pass of a weight.
  stack       every compute kernel time above (GEMMs, attention, elementwise, casts, routing, head) / e_stack, the
              stack's fitted efficiency (calc.training.stack; 1 for Megatron, the reference).
  fp8 recipe  cast bytes and scaled-GEMM rate of the recipe (calc.training.fp8_recipe), the stack's default unless given.
  recompute   full: one more forward (compute and its TP communication); selective: the attention core
              forward (nothing extra with flash attention, whose backward recomputes it anyway).
  recompute modules  Megatron-Core --recompute-granularity selective --recompute-modules (NVIDIA/Megatron-LM
              d98e8a64ddf34856e74b24714e3bedb2f5a39553): each listed module's forward runs once more in the backward,
              LayerCost.module_recompute; modules nested in another ("moe_act" / "shared_experts" inside "moe") run
              once more each (the inner checkpoint re-runs inside the outer one's recomputation and again in its own
              backward), so their times add:
      layernorm      the input_layernorm and pre_mlp_layernorm (transformer_layer.py, CheckpointWithoutOutput;
                     skipped there where the norm is fused into a TE linear, IdentityOp): the norms' traffic
      mla_up_proj    the MLA up projections and RoPE (multi_latent_attention.py, qkv_up_checkpoint): q_b_proj and
                     kv_b_proj GEMMs (RoPE left out)
      core_attn      the attention core (attention.py _checkpointed_attention_forward, tensor_parallel.checkpoint):
                     its forward kernel again, fused / flash included (transformer_config.py warns that fused
                     attention "no need" to recompute: it costs time and saves nothing)
      moe_act        the routed experts' activation function (moe/experts.py, CheckpointWithoutOutput): the routed
                     share k I_e / (k I_e + I_shared) of the activation traffic
      shared_experts the shared experts (moe_layer.py shared_experts_compute, tensor_parallel.checkpoint): their GEMMs
                     and activation traffic
      mlp            the dense MLP of a non-MoE layer (transformer_layer.py, recompute_mlp only when not a MoE layer):
                     its GEMMs, activation traffic and the MLP's TP collectives (SP all-gather + reduce-scatter or
                     one all-reduce)
      moe            the whole MoE layer of a MoE layer (moe_layer.py forward, custom_forward under
                     tensor_parallel.checkpoint: shared experts, route, preprocess, dispatch, experts, combine,
                     postprocess): router + expert + shared GEMMs, activation, permute / routing traffic, the MLP's
                     TP collectives and the EP dispatch + combine (all-to-all, ETP gather / scatter) again
              The recomputed TP / EP transfers are exposed as the full recomputation's are (tp_comm_s / ep_comm_s);
              host launches of the recomputed ops are left out.
Communication per layer (Shoeybi et al. 2019; Korthikanti et al. 2022 sec. 4.2.2):
  TP          forward 2 all-reduces of T*H*bytes, backward 2; with SP each becomes all-gather +
              reduce-scatter, and the backward re-gathers its inputs (2 more all-gathers). In a Megatron-Core fp8
              run with SP the all-gathers of the TE LayerNorm-linears' inputs (forward and the backward re-gather) and
              of the row-parallel GEMMs' output gradients move fp8, 1 B per element (Transformer Engine
              layernorm_linear.py / base.py, gather_along_first_dim(..., quantizer=...)): both pairs in a dense
              layer, the attention's alone in a MoE layer (its MLP input feeds the bf16 router); reduce-scatters
              stay bf16
  EP          per MoE layer, dispatch + combine all-to-all of (T/t)*k*cf*H*bytes x imb (bf16 in fp8 runs) over the EP
              group of e ranks u apart (Megatron's expert rank order tp-ep-dp: NVLink when u*e fits in a node, else
              the NIC for the share leaving the node; calc.hardware.collectives.collective_time "all_to_all"); with
              u > 1 the dispatcher then all-gathers the received copies over the u ETP ranks (output u x that) and the
              combine reduce-scatters them back (token_dispatcher.py dispatch_postprocess / combine_preprocess);
              forward and backward alike. The deepep dispatcher (DeepEP, HybridEP) sends a token once per destination
              node over the NIC instead of once per routed expert: the NIC share x deepep_nic_scale
              (calc.hardware.moe_ops); how much of it hides: calc.training.step (ep_overlap, or the combined 1F1B)
  CP          context-parallel attention as the stack runs it (Efficiencies.cp_comm, calc.training.ring_attention):
              p2p, Transformer Engine's ring (c-1 K/V blocks of the g/t KV heads forward, 2(c-1) backward,
              hidden under the attention); torch-allgather, torchtitan's (K/V after repeat_kv, all-gathered
              once under step 0's attention, fp32 K/V gradients sent on after every backward step, the last
              exposed; plus the fp32 merge traffic of its results, added to the attention's forward and backward
              time); allgather, the Llama 3 405B form (arXiv 2407.21783 sec. 3.3.2, "our CP implementation
              adopts an all-gather based method where we first all-gather the key (K) and value (V) tensors, and
              then compute attention output for the local query (Q) tensor chunk. Although the all-gather
              communication latency is exposed in the critical path ..."): forward one all-gather of the c
              blocks, exposed whole; backward the same all-gather again (the gathered K/V is not kept: the
              activation memory holds the local block only) and a reduce-scatter of dK, dV, exposed whole
Host launch per layer (calc.training.host): the forward and backward ops the host issues (weight GEMM launches, one
per local expert; norms, adds, rotary, activation, attention core, TP collectives; MoE router and dispatcher) x
host_op_s, set against the pass's GPU time in calc.training.step.
The stage-level terms (bubble, p2p, DP, optimizer) are assembled in calc.training.step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import lru_cache

from calc.errors import LLMCalcError
from calc.hardware.attention import attention_rate
from calc.hardware.collectives import collective_time, group_shape
from calc.hardware.efficiency import (
    COLLECTIVE_EFFICIENCY,
    FLASH_BACKWARD_FLOPS_RATIO,
    GROUPED_GEMM_EFFICIENCY,
    OVERLAP_EFFICIENCY,
    gemm_time,
    grouped_gemm_ramp,
    memory_efficiency,
)
from calc.hardware.moe_ops import MOE_ROUTINGS, deepep_nic_scale, force_balanced_load_cv, local_sort_bytes
from calc.memory.training import TRAINING_LOSSES, StackMemory, routed_expert_params
from calc.model.flops import attention_dims, indexer_pair_flops, mixer_scan_flops
from calc.model.layers import attention_layers
from calc.model.moe_routing import moe_routing_bytes
from calc.model.parallel import ROW_PARALLEL, kv_heads_per_gpu, tp_activation_bytes
from calc.model.params import count_params, layer_kinds, model_tensors
from calc.specs import GPUSpec, ModelSpec
from calc.specs.system import SystemSpec
from calc.training.adapters import (
    ADAPTER_LAUNCHES,
    ADD_BWD_PASSES,
    ADD_PASSES,
    NF4_DEQUANT_BYTES,
    Lora,
    adapted_by_kind,
    adapter_params,
)
from calc.training.fp8_recipe import (
    FP8_RECIPES,
    FP8_TRANSPOSE_BYTES,
    NORM_FED_COMPONENTS,
    NORM_FUSED_RECIPES,
    SHARED_INPUT_GROUPS,
)
from calc.training.host import HOST_OP_S, layer_host_ops
from calc.training.model_flops import sequence_flops
from calc.training.ring_attention import CP_COMM_WORDS, FP32_BYTES, RING_IMPLS, ring_block_heads, ring_comm_s, ring_impl, ring_merge_bytes
from calc.training.stack import (
    ATTENTION_KERNEL,
    FP8_RECIPE,
    TP_COMM_OVERLAP,
    efficiency_key,
    memory_defaults,
    stack_efficiency,
    stack_key,
)
from calc.units import abbrev, dtype_bytes

# Element passes through HBM per token per layer in forward, in units of H and of the MLP width I:
# 2 norms (read + write: 4H), 2 bias-dropout-residual adds (read x, residual, mask; write: ~4H each)
# = 12H; the activation function reads and writes the MLP width (2I). Backward moves twice as much.
EW_H_PASSES = 12.0
EW_I_PASSES = 2.0
# Unfused softmax path per score element, forward: scale-mask-softmax read + write (2 x 2 B), dropout read
# + write + 1 B mask (5 B) = 9 B; backward about twice that.
SOFTMAX_BYTES_FWD = 9.0
# Per-batch coefficient of variation of one expert's token load around the balanced share under auxiliary-loss
# balancing: an assumed prior (no MoE training row is in the corpus fit split), of the order of the per-batch maximal
# violation aux-loss-controlled training leaves (Wang et al. 2024, arXiv 2408.15664, "MaxVio_batch").
EXPERT_LOAD_CV = 0.3
# Cross-entropy over the vocabulary: fp32 logits written, read for softmax, gradient written (3 x 4 B).
CROSS_ENTROPY_BYTES = 12.0


def causal_pairs(span: float, window: int | None) -> float:
    """(query, key) pairs of causal attention over ``span`` tokens: span(span+1)/2, or with a sliding / chunked
    window w < span (query i sees min(i+1, w) keys) w(w+1)/2 + (span-w)*w.

    >>> causal_pairs(4, None), causal_pairs(4, 2)   # 1+2+3+4; 1+2+2+2
    (10.0, 7.0)
    """
    if window is None or window >= span:
        return span * (span + 1) / 2
    return window * (window + 1) / 2 + (span - window) * window


def attention_share(m: ModelSpec, seq: int, doc_tokens: int | None = None) -> float:
    """Mean over layers of the causal (query, key) pairs a layer computes, as a share of full causal attention over
    ``seq`` tokens (causal_pairs: a sliding / chunked layer sees its window only); a layer without attention (linear /
    SSM) none (calc.model.layers). With ``doc_tokens`` d < s (documents of d tokens packed into each sequence, the
    attention masked to each document: THD cu_seqlens / varlen flash attention) a layer computes s/d documents of
    causal_pairs(d, w) pairs each.

    >>> from calc.sources.catalog import load_model
    >>> round(attention_share(load_model("llama3-8b"), 4096, 256), 5)   # 16 x 256*257/2 / (4096*4097/2)
    0.06273
    """
    full = causal_pairs(seq, None)
    span = seq if doc_tokens is None or doc_tokens >= seq else doc_tokens
    shares = [0.0 if not a.softmax else seq / span * causal_pairs(span, a.window) / full  # linear / SSM / MLP-only: 0
              for a in attention_layers(m)]
    return sum(shares) / len(shares) if shares else 1.0


def stack_memory_line(stack: str, mem: StackMemory) -> str:
    """One line naming the stack and what it sets in the memory engine (calc.training.stack.MEMORY)."""
    return (f"stack {stack_key(stack) if stack_key(stack) != 'other' else stack}: {mem.loss} cross-entropy, "
            f"{'fused norm/SwiGLU' if mem.fused else 'eager (unfused) elementwise'}, allocator fragmentation "
            f"{mem.fragmentation:.0%}, gradients " + ("in a persistent buffer" if mem.grad_buffer else "from the backward")
            + f", FSDP unit gradients {mem.fsdp_reduce_bytes} B/element (calc.training.stack.MEMORY)")


def other_stack_note(stack: str, mode: str, peak: int, theirs: int) -> str | None:
    """The line a memory output adds when the other memory mode's default ``stack`` prices the same job differently
    (None when it prices it alike): the peak under that stack, and the flag that gives it here."""
    if theirs == peak:
        return None
    return (f"under --stack {stack} ({mode}'s default) this job peaks at {theirs / 2**30:.2f} GiB per GPU "
            f"(here {peak / 2**30:.2f} GiB): the stacks differ in loss, fusions, allocator and gradient buffers; "
            f"give --stack {stack} for that figure")


@dataclass(frozen=True)
class Efficiencies:
    """Every assumption of the step-time model that is not a hardware fact, with its default."""

    collective: float = COLLECTIVE_EFFICIENCY
    overlap: float = OVERLAP_EFFICIENCY
    # share of the TP collectives hidden under the GEMMs; None: the stack's (resolved_tp_overlap)
    tp_overlap: float | None = None
    ep_overlap: float = 0.0  # share of expert all-to-all hidden (DeepSeek DualPipe hides most)
    # Megatron-Core --overlap-moe-expert-parallel-comm (combined 1F1B): one micro-batch's forward all-to-all runs under
    # another's backward compute and vice versa (calc.training.step); replaces ep_overlap when set
    ep_overlap_1f1b: bool = False
    dispatcher: str = "alltoall"  # alltoall (Megatron's NCCL all-to-all: k copies) | deepep (once per node over the NIC)
    # Megatron --moe-expert-capacity-factor: an expert takes at most cf x its balanced share, the overflow dropped
    # (None: dropless); under token-drop routing every expert is padded to it (ModelCost.expert_load)
    capacity_factor: float | None = None
    # bytes per gradient element reduced over DP; None: the recipe's (dp_reduce_bytes: fp32, as Megatron / FSDP reduce,
    # except NeMo's bf16-states recipe, which syncs bf16 gradients)
    grad_reduce_bytes: int | None = None
    bucket_params: float = 40e6  # gradient bucket (Megatron DDP default 40M elements)
    # HBM bytes the optimizer step moves per local parameter; None: the recipe's (calc.memory.training.optimizer_step_bytes:
    # bf16-adam 28 = read + write fp32 master, m, v (24) + grad (2) + bf16 weight (2))
    optimizer_bytes_per_param: float | None = None
    flash: bool = True  # fused attention kernel (FlashAttention); False = Megatron 2021-22 unfused softmax
    gemm_plateau: float | None = None  # None: the GPU generation's default (calc.hardware.efficiency.GEMM_PLATEAU)
    activations: str = "per-tensor"  # activation memory model: "per-tensor" (calc.memory.activations) or "textbook"
    dropout: float = 0.0  # dropout probability of the recipe (Llama: 0; GPT-3 / Megatron 2021-22: 0.1): 1-byte masks kept
    grouped_gemm_efficiency: float = GROUPED_GEMM_EFFICIENCY  # routed-expert GEMM rate at <= 256 tokens per expert (ramp to 1 at 4096)
    fp8_cast_bytes: float | None = None  # HBM bytes per fp8 operand element cast (None: the recipe's, calc.training.fp8_recipe)
    stack: str = "megatron"  # training framework (calc.training.stack): attention kernel, fp8 recipe, fitted efficiency
    attention_kernel: str | None = None  # fa2 | fa3 | cudnn | triton (None: the stack's on this GPU)
    fp8_recipe: str | None = None  # delayed | tensorwise | rowwise | mxfp8 | blockwise (None: the stack's default)
    # p2p | torch-allgather | allgather: how CP ranks exchange K/V (None: the stack's; calc.training.ring_attention)
    cp_comm: str | None = None
    stack_efficiency: float | None = None  # None: the stack's fitted value (calc/data/fitted_defaults.json)
    expert_load_cv: float = EXPERT_LOAD_CV  # per-batch CV of one expert's token load (0 = perfectly balanced routing)
    moe_routing: str = "aux-loss"  # aux-loss | force-balanced | token-drop (calc.hardware.moe_ops.MOE_ROUTINGS)
    recipe: str = "bf16-adam"  # training-state bytes per parameter (calc.memory.training.RECIPES; --recipe)
    # GB/s one direction of an activation-offload copy runs at (--host-copy-gb-s); None: the GPU's host link x
    # calc.training.offload.HOST_COPY_EFFICIENCY
    host_copy_gb_s: float | None = None
    # memory settings of the stack (calc.training.stack.MEMORY) a flag overrides; None: the stack's
    loss: str | None = None  # cross-entropy buffers on the last stage (calc.memory.activations.lm_head_buffers; --loss)
    fused: bool | None = None  # fused norm / SwiGLU kernels or torch.compile (--compile / --no-compile)
    fragmentation: float | None = None  # allocator reserved / allocated - 1 (--fragmentation)
    host_op_s: float = HOST_OP_S  # host seconds per launched op (calc.training.host; 0: the host never binds)
    # pipeline sends posted asynchronously and hidden under the stage's compute (calc.training.step, "p2p"); False:
    # exposed whole; None: the stack's (resolved_pp_p2p_overlap)
    pp_p2p_overlap: bool | None = None

    def resolved_pp_p2p_overlap(self, vpp: int) -> bool:
        """Whether the pipeline sends hide under the stage's compute: as given, else the stack's default: Megatron-class
        stacks overlap them under interleaving (vpp > 1) and expose them without (Megatron-LM arguments.py: the
        --overlap-p2p-comm default is on and validate_args turns it off without a virtual pipeline; NeMo 2.0's
        MegatronCommOverlapCallback (nemo/lightning/pytorch/callbacks/megatron_comm_overlap.py) and Megatron-Bridge's
        CommOverlapConfig (src/megatron/bridge/training/comm_overlap.py @ 067f987): overlap_p2p_comm True,
        batch_p2p_comm False when vp_size > 1, else batched and exposed); other stacks expose them."""
        if self.pp_p2p_overlap is not None:
            return self.pp_p2p_overlap
        return vpp > 1 and stack_key(self.stack) == "megatron"

    def resolved_tp_overlap(self, tp: int, sp: bool, lora: bool = False) -> float:
        """Share of the TP all-gathers / reduce-scatters hidden under the GEMMs they feed: as given, else the stack's
        default: a stack of calc.training.stack.TP_COMM_OVERLAP (Megatron-class: NeMo 2 / Megatron-Bridge recipes run
        Transformer Engine's userbuffers overlap, ring-exchange and chunked-pipeline GEMMs) hides ``overlap`` of them
        (the overlap efficiency, the share of an overlappable transfer hidden under compute: no source measures the
        userbuffers share apart; NeMo's communication-overlap page says the chunked reduce-scatter "exposes one
        reduce-scatter chunk") with TP >= 2 and sequence parallelism, as the recipes' callbacks require, and not under
        LoRA (the PEFT recipes turn it off); 0 otherwise.

        >>> e = Efficiencies()
        >>> e.resolved_tp_overlap(4, True), e.resolved_tp_overlap(4, False), e.resolved_tp_overlap(4, True, lora=True)
        (0.85, 0.0, 0.0)
        >>> Efficiencies(stack="fsdp").resolved_tp_overlap(4, True), Efficiencies(tp_overlap=0.3).resolved_tp_overlap(1, False)
        (0.0, 0.3)
        """
        if self.tp_overlap is not None:
            return self.tp_overlap
        return self.overlap if tp > 1 and sp and not lora and stack_key(self.stack) in TP_COMM_OVERLAP else 0.0

    def _tp_overlap_words(self) -> str:
        """The assumption line's account of the TP collectives (resolved_tp_overlap)."""
        if self.tp_overlap is not None:
            return f"TP communication hidden {self.tp_overlap:.0%}"
        if stack_key(self.stack) in TP_COMM_OVERLAP:
            return (f"TP communication hidden {self.overlap:.0%} (the overlap efficiency) with TP > 1 and sequence "
                    "parallelism, full-weight training (the stack's: NeMo / Megatron-Bridge recipes' Transformer Engine "
                    "userbuffers overlap; off under LoRA and without --sp), else exposed")
        return "TP communication exposed (the stack's: no TP overlap by default; --tp-overlap)"

    def _pp_p2p_words(self) -> str:
        """The assumption line's account of the pipeline sends (resolved_pp_p2p_overlap; the stack's default reads
        the same at every vpp > 1)."""
        hidden = "hidden under the stage's compute at the overlap efficiency"
        if self.pp_p2p_overlap is not None:
            return f"asynchronous, {hidden}" if self.pp_p2p_overlap else "exposed whole"
        if self.resolved_pp_p2p_overlap(2):
            return (f"asynchronous under interleaving (vpp > 1), {hidden}; exposed whole without (the stack's: "
                    "Megatron --overlap-p2p-comm)")
        return "exposed whole (the stack's)"

    def resolved_memory(self) -> StackMemory:
        """The stack's memory settings (calc.training.stack.memory_defaults) with the loss, fusion and fragmentation
        given here in place of its defaults."""
        if self.loss is not None and self.loss not in TRAINING_LOSSES:
            raise LLMCalcError("--loss", f"unknown loss {self.loss!r}; use one of {', '.join(TRAINING_LOSSES)}")
        given = {k: v for k, v in (("loss", self.loss), ("fused", self.fused), ("fragmentation", self.fragmentation))
                 if v is not None}
        return replace(memory_defaults(self.stack), **given)

    def resolved_stack_efficiency(self) -> float:
        return self.stack_efficiency if self.stack_efficiency is not None else stack_efficiency(self.stack)

    def resolved_attention_kernel(self) -> str:
        """The attention kernel as given, else the stack's (calc.training.stack.ATTENTION_KERNEL)."""
        return self.attention_kernel or ATTENTION_KERNEL.get(stack_key(self.stack), "fa2")

    def resolved_cp_comm(self) -> str:
        """The CP K/V exchange as given, else the stack's (calc.training.ring_attention.RING_IMPL)."""
        if self.cp_comm is not None and self.cp_comm not in RING_IMPLS:
            raise LLMCalcError("--cp-comm", f"{self.cp_comm!r}: one of {', '.join(RING_IMPLS)}")
        return self.cp_comm or ring_impl(stack_key(self.stack))

    def resolved_fp8_recipe(self) -> str:
        """The fp8 recipe as given, else the stack's default (calc.training.stack.FP8_RECIPE)."""
        return self.fp8_recipe or FP8_RECIPE.get(stack_key(self.stack), "delayed")

    @property
    def dp_reduce_bytes(self) -> int:
        """Bytes per gradient element of the DP reduction: --grad-reduce-bytes as given, else 2 under NeMo's bf16-states
        recipe (its distributed_fused_adam grad_sync_dtype bf16, calc.memory.training.RECIPES), else 4 (fp32, as
        Megatron's distributed optimizer and FSDP2's reduce_dtype reduce)."""
        if self.grad_reduce_bytes is not None:
            return self.grad_reduce_bytes
        return 2 if self.recipe == "bf16-adam-bf16-states" else 4

    @property
    def step_optimizer_bytes(self) -> float:
        """HBM bytes per local parameter of the optimizer step: the override, else the recipe's
        (calc.memory.training.optimizer_step_bytes)."""
        from calc.memory.training import optimizer_step_bytes

        return self.optimizer_bytes_per_param if self.optimizer_bytes_per_param is not None else optimizer_step_bytes(self.recipe)

    def describe(self, moe: bool = True, cp: bool = True, fp8: bool = True) -> list[str]:
        """The assumptions as --explain and JSON ``assumptions`` list them; those that cannot apply to the run are left
        out: the expert (MoE) lines for a dense model (``moe`` False), the context-parallel K/V exchange without CP
        (``cp`` False), the fp8 recipe for a run that is not fp8 (``fp8`` False)."""
        lines = [
            f"collective efficiency {self.collective:.0%} of link bandwidth (NCCL busBW)",
            f"overlap efficiency {self.overlap:.0%} (share of an overlappable transfer hidden under compute)",
            self._tp_overlap_words() + (("; expert all-to-all "
            + ("under the other micro-batch's compute (Megatron combined 1F1B A2A overlap)" if self.ep_overlap_1f1b
               else f"hidden {self.ep_overlap:.0%}")) if moe else ""),
            f"MoE token dispatcher {self.dispatcher}: "
            + ("a token crosses the NIC once per destination node (calc.hardware.moe_ops.deepep_nic_scale)"
               if self.dispatcher == "deepep" else "one copy per routed expert (NCCL all-to-all)"),
            ((f"expert capacity factor {self.capacity_factor:g} (the busiest expert's load capped at it"
              + (", every expert padded to it" if self.moe_routing == "token-drop" else "") + "); "
              if self.capacity_factor is not None else "dropless experts (no capacity factor); ") if moe else "")
            + f"DP gradients reduced at {self.dp_reduce_bytes} B/element "
            f"in buckets of {abbrev(self.bucket_params)} elements",
            f"optimizer step moves {self.step_optimizer_bytes:g} B per local parameter"
            + ("" if self.optimizer_bytes_per_param is not None else f" (recipe {self.recipe})"),
            f"training states: recipe {self.recipe} (weights, gradients, optimizer bytes per parameter: "
            "calc.memory.training.RECIPES; --recipe)",
            "attention: " + ("fused flash kernel (causal half computed)" if self.flash else "unfused, full s x s scores"),
            f"activation memory: {self.activations}"
            + (f" (tensor by tensor, calc.memory.activations; {self.resolved_memory().loss} cross-entropy on the last stage)"
               if self.activations == "per-tensor" else " (Korthikanti et al. 2022 GPT formula)")
            + f", dropout {self.dropout:g}" + (" (1-byte masks kept)" if self.dropout else "")
            + ("; PyTorch caching allocator: its cached blocks at the peak counted (freed logits of the eager fp32 "
               "cross-entropy, FSDP2's reduce-scatter stream pool; calc.memory.training.caching_allocator_cached)"
               if self.resolved_memory().caching_allocator else "; no cached blocks counted"),
            stack_memory_line(self.stack, self.resolved_memory()),
            f"MoE grouped GEMM at {self.grouped_gemm_efficiency:g} of a dense GEMM's rate at <= 256 tokens per expert, "
            "rising in log2(tokens) to 1 at 4096 (DeepGEMM grouped-GEMM tables); router, permute/unpermute and the "
            "dispatcher's local sorts memory-bound",
            f"MoE routing {self.moe_routing}: "
            + {"aux-loss": f"per-batch expert-load CV {self.expert_load_cv:g} (assumed)",
               "force-balanced": "random top-k logits (--moe-router-force-load-balancing), a binomial load per expert",
               "token-drop": "every expert padded to its capacity, no spread"}.get(self.moe_routing, self.moe_routing)
            + "; with EP the most-loaded rank sets "
            "the pace of the grouped GEMMs and the all-to-all",
            "fp8 runs: weight GEMMs at the fp8 peak, attention core / norms / router / head in bf16; recipe "
            f"{self.resolved_fp8_recipe()}"
            + (f", {self.fp8_cast_bytes:g} B per operand element cast (given)" if self.fp8_cast_bytes is not None else ""),
            f"stack {stack_key(self.stack)}: efficiency {self.resolved_stack_efficiency():.2f} on every compute kernel "
            + (f"({self.stack}'s own, not {stack_key(self.stack)}'s: calc.training.stack.OWN_EFFICIENCY; megatron = 1)"
               if efficiency_key(self.stack) != stack_key(self.stack) else "(calc.training.stack; megatron = 1)")
            + "; attention kernel "
            + self.resolved_attention_kernel() + ("" if self.attention_kernel else " (the stack's)")
            + " at the FlashAttention-2/3 / cuDNN benchmark rate for its head dim and sequence (calc.hardware.attention)",
            f"context parallel K/V exchange {self.resolved_cp_comm()}" + ("" if self.cp_comm else " (the stack's)") + ": "
            + CP_COMM_WORDS[self.resolved_cp_comm()] + " (calc.training.ring_attention)",
            "pipeline sends: " + self._pp_p2p_words(),
            f"host launch: {self.host_op_s * 1e6:g} us of CPU per launched op (eager PyTorch dispatch + CUDA launch, "
            "calc.training.host); a layer's pass costs max(GPU time, ops x that), the excess exposed as host_s",
        ] + ([f"GEMM plateau {self.gemm_plateau:.0%} of peak (given, replaces the generation default)"] if self.gemm_plateau else [])
        drop = (("MoE ",) if not moe else ()) + (("context parallel ",) if not cp else ()) + (("fp8 runs",) if not fp8 else ())
        return [line for line in lines if not line.startswith(drop)] if drop else lines


# DeepSeek-style recompute (calc.memory.activations.norm_up_layer_buffers): the MLA up-projections it re-runs, and the
# norms' traffic (read the input, write the output: 2 passes of H per norm per token)
MLA_UP_PROJECTIONS = ("q_b_proj", "kv_b_proj")
NORM_PASSES = 2


# Megatron-Core --recompute-modules (module docstring, "recompute modules"): the weight components each module's
# checkpoint re-runs (calc.model.params component names); routed experts count their k active copies (matmul)
MODULE_COMPONENTS = {"mlp": ("mlp",), "moe": ("experts", "router", "shared_experts"), "shared_experts": ("shared_experts",)}


def recompute_module_flops(kinds: list[tuple], seq: int, attention_flops: float) -> dict[str, float]:
    """Forward FLOPs per sequence each --recompute-modules module re-runs, over all layers (the HFU count):
        GEMM modules   sum over layers and their component's weights of 2 x s x active parameters (mla_up_proj:
                       q_b_proj, kv_b_proj; mlp: the dense MLP's; moe: router + k active experts + shared; shared_experts)
        core_attn      the attention core, full s x s (as selective recomputation in the HFU count)
        layernorm, moe_act   elementwise, no FLOPs counted."""
    def flops(keep) -> float:
        return sum(2 * seq * t.matmul * count for _k, count, ts in kinds for t in ts if t.shape and keep(t))

    out = {mod: flops(lambda t, parts=parts: t.component in parts) for mod, parts in MODULE_COMPONENTS.items()}
    out["mla_up_proj"] = flops(lambda t: t.name in MLA_UP_PROJECTIONS)
    out["core_attn"] = attention_flops
    return out


@dataclass
class LayerCost:
    """Seconds for one layer, one micro-batch, one GPU (all floats, no pydantic: the hot path)."""

    fwd: float = 0.0  # GEMMs + attention + elementwise, forward
    bwd: float = 0.0
    attn_fwd: float = 0.0  # attention core forward (what selective recompute repeats)
    gemm_fwd: float = 0.0  # the weight GEMMs alone, forward
    ew_fwd: float = 0.0  # elementwise (norms, residuals, activation) traffic, forward
    cast_fwd: float = 0.0  # fp8 casts of the GEMM inputs and weights (0 outside fp8 runs), forward
    cast_bwd: float = 0.0  # fp8 casts of the output gradients, backward
    moe_fwd: float = 0.0  # router + permute / unpermute traffic, forward (the same again in backward)
    norm_up_fwd: float = 0.0  # the norms and MLA up-projections, forward (what DeepSeek-style recompute repeats)
    # the pieces Megatron-Core's --recompute-modules re-runs (module_recompute), forward, GEMMs with their fp8 casts:
    norm_fwd: float = 0.0  # the layer's norms' traffic
    up_fwd: float = 0.0  # the MLA up-projection GEMMs (q_b_proj, kv_b_proj)
    mlp_gemm_fwd: float = 0.0  # a dense MLP's GEMMs (gate, up, down)
    expert_gemm_fwd: float = 0.0  # a MoE layer's router and routed-expert grouped GEMMs
    shared_gemm_fwd: float = 0.0  # a MoE layer's shared-expert GEMMs
    act_fwd: float = 0.0  # the MLP activation traffic (EW_I part of ew_fwd), routed + shared
    act_routed_fwd: float = 0.0  # its routed experts' share
    tp_mlp_fwd: float = 0.0  # the MLP block's TP collectives, forward (one AG + RS with SP, else one all-reduce)
    moe: bool = False  # a MoE layer (Megatron's "moe" module applies to it, "mlp" to the others)
    tp_fwd: float = 0.0  # TP collectives, forward
    tp_bwd: float = 0.0
    ep_fwd: float = 0.0
    ep_bwd: float = 0.0
    cp_fwd: float = 0.0  # exposed ring-attention transfer
    cp_bwd: float = 0.0
    cp_total: float = 0.0
    ring_merge_fwd: float = 0.0  # HBM time of merging the ring's partial results (in fwd / attn_fwd and bwd)
    ring_merge_bwd: float = 0.0
    host_fwd: float = 0.0  # host (CPU) seconds launching the forward's ops (calc.training.host)
    host_bwd: float = 0.0

    def module_recompute(self, modules: frozenset[str] | tuple[str, ...]) -> tuple[float, float, float]:
        """(compute, TP, EP) forward seconds one micro-batch of this layer runs again in its backward under
        Megatron-Core's ``--recompute-granularity selective --recompute-modules`` (module docstring, "recompute
        modules"): the sum over the listed modules of what each checkpoint re-runs."""
        compute = tp = ep = 0.0
        for mod in modules:
            if mod == "layernorm":
                compute += self.norm_fwd
            elif mod == "mla_up_proj":
                compute += self.up_fwd
            elif mod == "core_attn":
                compute += self.attn_fwd
            elif mod == "moe_act" and self.moe:
                compute += self.act_routed_fwd
            elif mod == "shared_experts" and self.moe:
                compute += self.shared_gemm_fwd + (self.act_fwd - self.act_routed_fwd)
            elif mod == "mlp" and not self.moe:
                compute += self.mlp_gemm_fwd + self.act_fwd
                tp += self.tp_mlp_fwd
            elif mod == "moe" and self.moe:
                compute += self.expert_gemm_fwd + self.shared_gemm_fwd + self.act_fwd + self.moe_fwd
                tp += self.tp_mlp_fwd
                ep += self.ep_fwd
        return compute, tp, ep


@dataclass
class ModelCost:
    """A model on a GPU and a system at sequence length ``seq``: what every layout evaluation reuses."""

    m: ModelSpec
    gpu: GPUSpec
    system: SystemSpec
    seq: int
    dtype: str = "bf16"
    eff: Efficiencies = field(default_factory=Efficiencies)
    calibration: object | None = None
    lora: Lora | None = None  # LoRA on a frozen base (calc.training.adapters); None: every weight trains
    doc_tokens: int | None = None  # mean tokens per packed document (attention_share); None: one per sequence

    def __post_init__(self) -> None:
        if self.eff.moe_routing not in MOE_ROUTINGS:
            raise LLMCalcError("--moe-routing", f"{self.eff.moe_routing!r}: one of {', '.join(MOE_ROUTINGS)}")
        self.eff.resolved_cp_comm()  # an unknown --cp-comm is refused here, before any pricing
        self.eff.resolved_memory()  # and an unknown --loss
        # the model FLOPs of a sequence first: sequence_flops refuses a --doc-tokens below 1 before any pricing
        flops = sequence_flops(self.m, self.seq, self.doc_tokens, self.lora)
        self.attention_span = self.seq if self.doc_tokens is None else min(self.doc_tokens, self.seq)
        if self.calibration is not None:  # the check latency and train-time apply: same GPU, same tensor peak
            from calc.hardware.calibration import check_calibration

            check_calibration(self.calibration, self.gpu, self.dtype)  # type: ignore[arg-type]
        p = count_params(self.m)
        self.total_params = p.total_params
        self.expert_params = routed_expert_params(self.m)
        self.kinds = [(kind, count, tensors) for kind, count, tensors in layer_kinds(self.m)]
        self.head = [t for t in model_tensors(self.m) if t.component == "lm_head" and t.shape]
        self.fp8 = self.dtype.startswith("fp8")
        # everything that is not a layer's linear GEMM runs (and every activation travels) in bf16 in an fp8 run
        self.core_dtype = "bf16" if self.fp8 else self.dtype
        self.elem = float(dtype_bytes(self.core_dtype))
        self.hbm = self.gpu.hbm_tb_s * 1e12 * memory_efficiency(self.gpu, self.calibration)
        self.attention_kernel = self.eff.resolved_attention_kernel()
        self.fp8_recipe = self.eff.resolved_fp8_recipe()
        cast_bytes, self.fp8_gemm_rate = FP8_RECIPES[self.fp8_recipe]
        self.fp8_cast_bytes = self.eff.fp8_cast_bytes if self.eff.fp8_cast_bytes is not None else cast_bytes
        # Megatron-Core's Transformer Engine layout (fused linears, norm-fused casts, cached weights, fp8 gathers)
        self.te_layout = self.fp8 and stack_key(self.eff.stack) == "megatron"
        self.kernel_scale = 1.0 / self.eff.resolved_stack_efficiency()  # every compute kernel's time x this
        d_qk, d_v = attention_dims(self.m)
        self.attention_head_dim = (d_qk + d_v) / 2
        self._attn_rates = lru_cache(maxsize=None)(self._attn_rates_uncached)
        # model FLOPs of a sequence (calc.training.model_flops): full s x s convention (PaLM / Megatron MFU), the
        # attention inside each packed document, a LoRA frozen base's count; the causal figure is MFU's causal one,
        # shown beside the full-convention one (None under LoRA)
        fwd, attn = flops.forward, flops.attention
        self.model_flops_per_seq = flops.model
        self.causal_model_flops_per_seq: float | None = None if self.lora is not None else flops.causal
        # LoRA (calc.training.adapters): the adapted matrices per layer kind, their parameters
        self.adapted: list[set[str]] = [set() for _ in self.kinds]
        self.trainable_params, self.trainable_expert_params = self.total_params, self.expert_params
        if self.lora is not None:
            self.adapted = adapted_by_kind(self.m, self.lora)
            dense, experts = adapter_params(self.m, self.lora)
            self.trainable_params, self.trainable_expert_params = dense + experts, experts
        self.layer_attention_flops_per_seq = attn  # all layers, full s x s (each document's d x d when packed)
        self.head_flops_per_seq = sum(2 * self.seq * t.matmul for t in self.head)
        self.layers_fwd_flops_per_seq = fwd - self.head_flops_per_seq
        # DeepSeek-style recompute repeats the MLA up-projections: 2 x s x their parameters, over every layer
        self.up_projection_flops_per_seq = sum(2 * self.seq * t.matmul * count for _k, count, ts in self.kinds
                                               for t in ts if t.name in MLA_UP_PROJECTIONS and t.shape)
        self.module_flops_per_seq = recompute_module_flops(self.kinds, self.seq, self.layer_attention_flops_per_seq)
        self.attention_share = attention_share(self.m, self.seq, self.doc_tokens)
        self._gemm = lru_cache(maxsize=None)(self._gemm_uncached)
        self._layer = lru_cache(maxsize=None)(self._layer_uncached)
        self._coll = lru_cache(maxsize=None)(self._coll_uncached)
        self.activation_cache: dict = {}  # per-layer activation bytes per (b, s/c, t, SP, recompute, attention, dropout)

    # -- primitives -------------------------------------------------------------------------------
    def _gemm_uncached(self, m: float, n: float, k: float, batch: int = 1, core: bool = False) -> float:
        """A weight GEMM at the run's dtype, or (``core``) one that stays in the core dtype (bf16 in fp8 runs); an fp8
        GEMM at its recipe's scaled-GEMM rate (calc.training.fp8_recipe)."""
        seconds = gemm_time(self.gpu, m, n, k, self.core_dtype if core else self.dtype, self.calibration, batch,
                            self.eff.gemm_plateau)
        return seconds / (1.0 if core or not self.fp8 else self.fp8_gemm_rate)

    def _attn_rates_uncached(self, cp: int) -> tuple[float, float]:
        """(forward, backward) FLOP/s of the attention kernel at this run's head dim and per-rank query length s/c
        (d/c with packed documents of d tokens: the varlen kernel runs each document apart)."""
        return tuple(attention_rate(self.gpu, self.attention_kernel, d, self.attention_head_dim, self.attention_span / cp, True,
                                    self.core_dtype) for d in ("fwd", "bwd"))  # type: ignore[return-value]

    def fp8_cast_s(self, rows: float, n: float, k: float, count: int = 1, name: str = "", component: str = "",
                   tp: int = 1, sp: bool = False) -> tuple[float, float]:
        """(forward, backward) seconds of the fp8 casts of one fp8 GEMM [rows, k] @ [k, n] (x ``count`` experts), c =
        fp8_cast_bytes:
            forward  = c x count x (rows k + k n) / HBM    (input and weight)
            backward = c x count x rows n / HBM            (output gradient)
        In Megatron-Core's Transformer Engine layout (``te_layout``; calc.training.fp8_recipe, "Megatron-Core"), for
        the projection ``name`` of ``component``:
            weight       0 per micro-batch (cast once per step)
            input        0 for all but the first projection of a SHARED_INPUT_GROUPS group (one TE linear, one cast);
                         of the first, in a NORM_FED_COMPONENTS component, f = 0 (NORM_FUSED_RECIPES) else c per
                         element, and when all-gathered (SP, t > 1) instead
                         ((f or c - 1) x rows / t + FP8_TRANSPOSE_BYTES x rows) x k
            out. grad.   of a row-parallel GEMM (o_proj, down_proj) under SP, t > 1:
                         ((c - 1) x rows / t + FP8_TRANSPOSE_BYTES x rows) x n
        0 outside fp8 runs."""
        if not self.fp8:
            return 0.0, 0.0
        c = self.fp8_cast_bytes
        if not self.te_layout:
            per = c * count / self.hbm
            return per * (rows * k + k * n), per * rows * n
        gathered = sp and tp > 1
        group = next((g for g in SHARED_INPUT_GROUPS if name in g), None)
        if group is not None and name != group[0]:
            input_bytes = 0.0
        elif group is not None and component in NORM_FED_COMPONENTS:  # a TE LayerNorm-linear's input
            fused = self.fp8_recipe in NORM_FUSED_RECIPES
            if gathered:
                input_bytes = ((0.0 if fused else c - 1) * rows / tp + FP8_TRANSPOSE_BYTES * rows) * k
            else:
                input_bytes = (0.0 if fused else c) * rows * k
        else:
            input_bytes = c * rows * k
        row_parallel = name in ROW_PARALLEL and count == 1
        grad_bytes = ((c - 1) * rows / tp + FP8_TRANSPOSE_BYTES * rows) * n if gathered and row_parallel else c * rows * n
        return input_bytes * count / self.hbm, grad_bytes * count / self.hbm

    def expert_load_cv(self, tokens: float, ep: int, etp: int = 1) -> float:
        """Per-batch CV of one expert's load under the run's routing (calc.hardware.moe_ops.MOE_ROUTINGS), ``tokens``
        the sequence-parallel slice T/t one rank routes:
            aux-loss        the assumed Efficiencies.expert_load_cv
            force-balanced  binomial, force_balanced_load_cv(mu, E, k), mu = (T/t) e u k / E the tokens an expert
                            receives from the e EP ranks and the u ETP ranks that gather for it
            token-drop      0 (every expert padded to its capacity)"""
        moe = self.m.moe
        routing = self.eff.moe_routing
        if moe is None or routing == "token-drop":
            return 0.0
        if routing == "force-balanced":
            mu = tokens * ep * etp * moe.experts_per_token / moe.num_experts
            return force_balanced_load_cv(mu, moe.num_experts, moe.experts_per_token)
        return self.eff.expert_load_cv

    def ep_imbalance(self, ep: int, tokens: float = 0.0, etp: int = 1) -> float:
        """max / mean routed tokens over the ``ep`` expert-parallel ranks (module docstring, "imbalance"):
            1 + cv / sqrt(E / e) x sqrt(2 ln e),   1 when e = 1 or the model has no routed experts,
        cv = expert_load_cv(tokens, e, u) (``tokens`` only read under force-balanced routing)."""
        moe = self.m.moe
        if moe is None or ep <= 1:
            return 1.0
        per_rank = max(moe.num_experts / ep, 1.0)
        return 1.0 + self.expert_load_cv(tokens, ep, etp) / math.sqrt(per_rank) * math.sqrt(2 * math.log(ep))

    def expert_load(self, ep: int, tokens: float = 0.0, etp: int = 1) -> float:
        """Tokens the busiest EP rank's experts process / their balanced share: the imbalance (ep_imbalance) when
        dropless; capped at the capacity factor cf where one is set (Megatron --moe-expert-capacity-factor drops what
        overflows cf x the balanced share: a cap, never more work); exactly cf under token-drop routing, every expert
        padded to its capacity (--moe-pad-expert-input-to-capacity; cf 1 when none is given).

            load = imb (cf None);  min(imb, cf);  cf (token-drop)"""
        cf = self.eff.capacity_factor
        if self.eff.moe_routing == "token-drop":
            return 1.0 if cf is None else cf
        imb = self.ep_imbalance(ep, tokens, etp)
        return imb if cf is None else min(imb, cf)

    def ep_routed_bytes(self, tokens: float, ep: int, etp: int = 1) -> float:
        """Bytes one all-to-all (dispatch or combine) moves for the most-loaded EP rank: T k H bytes x expert_load,
        ``tokens`` the rank's MoE input (its sequence-parallel slice T/t)."""
        moe = self.m.moe
        assert moe is not None
        return tokens * moe.experts_per_token * self.m.hidden_size * self.elem * self.expert_load(ep, tokens, etp)

    def moe_routing_s(self, tokens: float, tp: int = 1, ep: int = 1, etp: int = 1) -> float:
        """Forward seconds of one MoE layer's router, permute / unpermute (calc.model.moe_routing) and the dispatcher's two
        local sorts (calc.hardware.moe_ops) on one rank, ``tokens`` = T per rank, routed on its sequence-parallel slice T/t:
            (T/t E ROUTER_BYTES_PER_LOGIT + T/t k cf H PERMUTE_BYTES_PER_COPY + T/t H COMBINE_BYTES_PER_TOKEN
             + local_sort_bytes(T/t k cf u imb, H, ceil(E/e))) / HBM."""
        moe = self.m.moe
        assert moe is not None
        mine = tokens / tp
        received = mine * moe.experts_per_token * etp * self.expert_load(ep, mine, etp)
        sorts = local_sort_bytes(received, self.m.hidden_size, math.ceil(moe.num_experts / ep))
        padded = self.eff.capacity_factor or 1.0 if self.eff.moe_routing == "token-drop" else 1.0
        return (moe_routing_bytes(self.m, mine, padded) + sorts) / self.hbm

    def _coll_uncached(self, kind: str, num_bytes: float, group: int, stride: int) -> float:
        return collective_time(kind, self.system, num_bytes, group, stride, self.eff.collective)  # type: ignore[arg-type]

    def coll(self, kind: str, num_bytes: float, group: int, stride: int = 1) -> float:
        return self._coll(kind, num_bytes, group, stride) if group > 1 or kind == "p2p" else 0.0

    def mlp_width(self, moe_layer: bool) -> float:
        """Active MLP width per token (for elementwise traffic): I, or k*I_e + shared for a MoE layer."""
        m = self.m
        gate = 2 if m.gated_mlp else 1
        if moe_layer and m.moe:
            return gate * m.moe.active_width
        return gate * m.intermediate_size

    # -- one layer ----------------------------------------------------------------------------------
    def layer(self, kind_index: int, b: int, tp: int, cp: int, ep: int, sp: bool, etp: int | None = None) -> LayerCost:
        """One layer's costs; ``etp`` the expert tensor-parallel size (None: TP, Megatron's default)."""
        return self._layer(kind_index, b, tp, cp, ep, sp, tp if etp is None else etp)

    def ep_comm_s(self, tokens: float, tp: int, ep: int, etp: int) -> float:
        """Forward seconds of one MoE layer's token exchange (module docstring, "EP"), ``tokens`` = T per rank:
            2 x all_to_all(R, e ranks u apart) + all_gather(u R, u) + reduce_scatter(u R, u),  R = ep_routed_bytes(T/t)
        (dispatch + combine; the ETP pair only when u > 1). 0 when e = u = 1. With the deepep dispatcher the NIC share
        of each all-to-all is scaled by deepep_nic_scale(E, k, nodes the EP group spans) (calc.hardware.moe_ops)."""
        routed = self.ep_routed_bytes(tokens / tp, ep, etp)
        if self.eff.dispatcher == "deepep" and self.m.moe is not None and ep > 1:
            nic = deepep_nic_scale(self.m.moe.num_experts, self.m.moe.experts_per_token, group_shape(self.system, ep, etp)[1])
            a2a = 2 * collective_time("all_to_all", self.system, routed, ep, etp, self.eff.collective, nic)
        else:
            a2a = 2 * self.coll("all_to_all", routed, ep, etp)
        return a2a + self.coll("all_gather", routed * etp, etp) + self.coll("reduce_scatter", routed * etp, etp)

    def indexer_s(self, b: int, cp: int) -> tuple[float, float]:
        """(forward, backward) seconds of DeepSeek-V3.2's lightning indexer, mean per layer, on one rank (0, 0 without
        DSA). Forward: it scores every earlier key of each query, indexer_pair_flops per pair over the causal
        s(s+1)/2 pairs (calc.model.flops.indexer_flops); backward: its KL loss against the main attention is taken
        over the top-k keys it picked only, its input detached (DeepSeek-V3.2-Exp report sec. 2.2, sparse training
        stage): 2 x the scores of causal_pairs(s, k). Replicated on every TP rank, split by CP, timed at the attention
        kernel's rate and halved on a GPU with fp8 tensor cores (it runs in fp8: DeepGEMM fp8_mqa_logits), as the
        serving step times it (calc.serving.step)."""
        per_pair = indexer_pair_flops(self.m) / self.m.num_layers  # the sparse layers' sum, as a mean per layer
        if not per_pair:
            return 0.0, 0.0
        scale = 0.5 if "fp8" in self.gpu.datasheet_peak_tflops else 1.0
        rate_fwd, rate_bwd = self._attn_rates(cp)
        scored = b * per_pair * causal_pairs(self.seq, None) / cp
        picked = b * per_pair * causal_pairs(self.seq, self.m.mla.index_topk) / cp
        return scale * scored / rate_fwd, scale * 2 * picked / rate_bwd

    def _layer_uncached(self, kind_index: int, b: int, tp: int, cp: int, ep: int, sp: bool, etp: int) -> LayerCost:
        m, eff = self.m, self.eff
        kind = self.kinds[kind_index][0]
        s_local = self.seq // cp
        T = b * s_local
        listed = self.layer_gemms(kind_index, b, tp, cp, ep, etp, sp)
        gemms = sum(g[5] for g in listed)
        cast_fwd = sum(g[6] for g in listed)
        cast_bwd = sum(g[7] for g in listed)
        heads = m.num_heads / tp
        d_qk, d_v = attention_dims(m)
        if eff.flash:
            pairs = self.seq * (self.seq + 1) / 2 / cp * self.attention_share
            attn_flops = 2 * b * heads * (d_qk + d_v) * pairs
            attn_flops += mixer_scan_flops(m, T) / (m.num_layers * tp)  # SSM / linear-attention scan, mean per layer
            rate_fwd, rate_bwd = self._attn_rates(cp)
            attn_fwd = attn_flops / rate_fwd
            attn_bwd = FLASH_BACKWARD_FLOPS_RATIO * attn_flops / rate_bwd
            index_fwd, index_bwd = self.indexer_s(b, cp)
            attn_fwd, attn_bwd = attn_fwd + index_fwd, attn_bwd + index_bwd
        else:
            batch = int(b * heads)
            scores = self._gemm(s_local, self.seq, d_qk, batch, True) + self._gemm(s_local, d_v, self.seq, batch, True)
            softmax = b * heads * s_local * self.seq * SOFTMAX_BYTES_FWD / self.hbm
            attn_fwd = (scores + softmax) * self.attention_share
            attn_bwd = 2 * attn_fwd
        moe_layer = kind == "moe"
        ew = (EW_H_PASSES * T * m.hidden_size / (tp if sp else 1) + EW_I_PASSES * T * self.mlp_width(moe_layer) / tp)
        ew_t = ew * self.elem / self.hbm
        routing = self.moe_routing_s(T, tp, ep, etp) if moe_layer and m.moe else 0.0
        up = sum(g[5] + g[6] for g in listed if g[0].rsplit(".", 1)[-1] in MLA_UP_PROJECTIONS)
        norms = NORM_PASSES * T * m.norms_per_layer * m.hidden_size / (tp if sp else 1) * self.elem / self.hbm
        mlp, experts, shared = (sum(g[5] + g[6] for g in listed if g[0].split(".", 1)[0] in parts)
                                for parts in (("mlp",), ("experts", "router"), ("shared_experts",)))
        act = EW_I_PASSES * T * self.mlp_width(moe_layer) / tp * self.elem / self.hbm
        # the routed share of the activation traffic, what --recompute-modules moe_act re-runs (MoESpec.routed_share;
        # calc.memory.activations.module_buffers drops the same share of the down-projection input)
        routed_share = m.moe.routed_share if moe_layer and m.moe else 0.0
        adapter_fwd, adapter_bwd, adapted = self.adapter_s(kind_index, listed)
        dequant, dequant_launches = self.nf4_dequant_s(listed)
        k = self.kernel_scale  # the stack's efficiency on every compute kernel
        gemms, attn_fwd, attn_bwd, ew_t, routing = gemms * k, attn_fwd * k, attn_bwd * k, ew_t * k, routing * k
        cast_fwd, cast_bwd, up, norms = cast_fwd * k, cast_bwd * k, up * k, norms * k
        adapter_fwd, adapter_bwd = (adapter_fwd + dequant) * k, (adapter_bwd + dequant) * k  # + QLoRA's dequantization
        weight_grads = 0.0 if self.lora is not None else gemms  # a frozen base: input gradients only
        cost = LayerCost(fwd=gemms + attn_fwd + ew_t + cast_fwd + routing + adapter_fwd,
                         bwd=gemms + weight_grads + attn_bwd + 2 * ew_t + cast_bwd + routing + adapter_bwd, attn_fwd=attn_fwd,
                         gemm_fwd=gemms, ew_fwd=ew_t, cast_fwd=cast_fwd, cast_bwd=cast_bwd, moe_fwd=routing,
                         norm_up_fwd=up + norms, norm_fwd=norms, up_fwd=up, mlp_gemm_fwd=mlp * k,
                         expert_gemm_fwd=experts * k, shared_gemm_fwd=shared * k, act_fwd=act * k,
                         act_routed_fwd=act * k * routed_share, moe=moe_layer and m.moe is not None)
        ops_fwd, ops_bwd = layer_host_ops(self.gemm_launches(listed) + ADAPTER_LAUNCHES * adapted + dequant_launches,
                                          m.norms_per_layer, eff.flash, tp, sp,
                                          moe_layer and m.moe is not None)
        cost.host_fwd, cost.host_bwd = ops_fwd * eff.host_op_s, ops_bwd * eff.host_op_s
        act = tp_activation_bytes(m, T, self.elem)
        if tp > 1:
            if sp:
                # all-gathers in fp8 (module docstring, TP): both of a dense layer's, the attention's in a MoE layer
                fp8_gathers = (1 if moe_layer else 2) if self.te_layout else 0
                gathers = (fp8_gathers * self.coll("all_gather", tp_activation_bytes(m, T, 1.0), tp)
                           + (2 - fp8_gathers) * self.coll("all_gather", act, tp))
                scatters = 2 * self.coll("reduce_scatter", act, tp)
                cost.tp_fwd, cost.tp_bwd = gathers + scatters, 2 * gathers + scatters
                # the MLP block's pair: its all-gather in fp8 only in a dense fp8 layer (the attention's goes first)
                cost.tp_mlp_fwd = (self.coll("all_gather", tp_activation_bytes(m, T, 1.0) if fp8_gathers == 2 else act, tp)
                                   + scatters / 2)
            else:
                ar = self.coll("allreduce", act, tp)
                cost.tp_fwd = cost.tp_bwd = 2 * ar
                cost.tp_mlp_fwd = ar
        if moe_layer and m.moe and ep * etp > 1:
            cost.ep_fwd = cost.ep_bwd = self.ep_comm_s(T, tp, ep, etp)
        if cp > 1:  # calc.training.ring_attention: the stack's ring, its transfers and its merge traffic
            impl = eff.resolved_cp_comm()
            kv_width = (heads * (d_qk + d_v) if m.mla
                        else ring_block_heads(impl, heads, kv_heads_per_gpu(m, tp)) * 2 * m.dim_per_head)
            block = b * s_local * kv_width * self.elem
            # each ring step waits on its slowest hop: the NIC once the c ranks (t apart) span nodes
            step, gather = self.coll("p2p", block, cp, tp), self.coll("all_gather", cp * block, cp, tp)
            scatter = self.coll("reduce_scatter", cp * block, cp, tp) if impl == "allgather" else 0.0
            grad_step = self.coll("p2p", block * FP32_BYTES / self.elem, cp, tp)
            cost.cp_fwd, cost.cp_bwd, cost.cp_total = ring_comm_s(impl, cp, step, gather, grad_step, attn_fwd, attn_bwd,
                                                                  eff.overlap, scatter)
            merge_fwd, merge_bwd = ring_merge_bytes(impl, cp, b * s_local * heads * (d_qk + d_v) / 2)
            merge_fwd, merge_bwd = merge_fwd / self.hbm * k, merge_bwd / self.hbm * k
            cost.fwd, cost.bwd, cost.attn_fwd = cost.fwd + merge_fwd, cost.bwd + merge_bwd, cost.attn_fwd + merge_fwd
            cost.ring_merge_fwd, cost.ring_merge_bwd = merge_fwd, merge_bwd
        return cost

    def gemm_launches(self, listed: list[tuple]) -> int:
        """GEMM kernels one forward of a layer launches, from its layer_gemms entries (count = local experts for routed
        ones): on Megatron-Core a SHARED_INPUT_GROUPS group is one fused linear (linear_qkv, linear_fc1), one launch."""
        fused = stack_key(self.eff.stack) == "megatron"
        skipped = {name for group in SHARED_INPUT_GROUPS for name in group[1:]} if fused else set()
        return sum(g[4] for g in listed if g[0].rsplit(".", 1)[-1] not in skipped)

    # -- the output head (last stage) -------------------------------------------------------------
    def head_cost(self, b: int, tp: int, cp: int) -> tuple[float, float]:
        """(forward, backward) seconds of the output head and cross-entropy on the last stage."""
        T = b * self.seq // cp
        fwd = 0.0
        for t in self.head:  # the output layer stays in bf16 in fp8 runs (module docstring)
            k, n = t.shape  # type: ignore[misc]
            fwd += self._gemm(T, n / tp, k, 1, True)
        ce = T * self.m.vocab_size / tp * CROSS_ENTROPY_BYTES / self.hbm
        k = self.kernel_scale
        grads = 1 if self.lora is not None else 2  # a frozen head: its input gradient only
        return (fwd + ce / 2) * k, (grads * fwd + ce / 2) * k

    def nf4_dequant_s(self, listed: list[tuple]) -> tuple[float, int]:
        """(seconds, kernels) of dequantizing one layer's NF4 base weights once (QLoRA, calc.training.adapters):
        NF4_DEQUANT_BYTES x the local weights of every quantized GEMM (k x n x local experts; the router stays bf16) /
        HBM, one kernel each. (0, 0) unless the base is NF4."""
        if self.lora is None or self.lora.base != "nf4":
            return 0.0, 0
        weights = sum(k * n * count for name, _rows, n, k, count, *_ in listed if not name.startswith("router."))
        return weights * NF4_DEQUANT_BYTES / self.hbm, sum(1 for g in listed if not g[0].startswith("router."))

    def adapter_s(self, kind_index: int, listed: list[tuple]) -> tuple[float, float, int]:
        """(forward s, backward s, adapted matrices) of the LoRA adapters of one layer (calc.training.adapters), on the
        layer_gemms entries (rows, n, k after TP / EP slicing, count local experts): forward count x (GEMM [rows, k] x
        [k, r] + GEMM [rows, r] x [r, n] + ADD_PASSES x rows n elements of HBM traffic), backward 2 x those GEMMs +
        ADD_BWD_PASSES x rows n; in the core dtype (adapters stay bf16 in fp8 runs). (0, 0, 0) without LoRA."""
        if self.lora is None or not self.adapted[kind_index]:
            return 0.0, 0.0, 0
        r, mine = self.lora.rank, self.adapted[kind_index]
        fwd = bwd = 0.0
        adapted = 0
        for name, rows, n, k, count, *_ in listed:
            if name not in mine:
                continue
            adapted += 1
            gemms = self._gemm(rows, r, k, count, True) + self._gemm(rows, n, r, count, True)
            fwd += gemms + ADD_PASSES * rows * n * count * self.elem / self.hbm
            bwd += 2 * gemms + ADD_BWD_PASSES * rows * n * count * self.elem / self.hbm
        return fwd, bwd, adapted

    def layer_gemms(self, kind_index: int, b: int, tp: int, cp: int, ep: int, etp: int | None = None, sp: bool = False
                    ) -> list[tuple[str, float, float, float, int, float, float, float]]:
        """(name, m, n, k, count, seconds, fp8 cast forward s, fp8 cast backward s) of each weight GEMM of a layer
        kind after TP/EP slicing, routed experts split by ETP ``etp`` (None: TP) and fed (T/t) k e u cf imb / E tokens
        each (module docstring; the router stays in the core dtype, no cast; ``sp``: sequence parallelism, which
        decides where Megatron-Core's fp8 casts run, fp8_cast_s); also what --explain lists."""
        etp = tp if etp is None else etp
        kind, _, tensors = self.kinds[kind_index]
        T = b * self.seq // cp
        out = []
        for t in tensors:
            if t.shape is None or not t.matmul:
                continue
            k, n = t.shape
            name = f"{t.component}.{t.name}"
            if t.component == "router":  # replicated, not split by TP; bf16 in fp8 runs
                out.append((name, T, n, k, 1, self._gemm(T, n, k, 1, True), 0.0, 0.0))
                continue
            split = etp if t.copies > 1 else tp
            k_l, n_l = (k / split, n) if t.name in ROW_PARALLEL else (k, n / split)
            if t.copies > 1:  # routed experts: E/e local, each with (T/t)*k*e*u*cf/E tokens, one grouped GEMM
                local = math.ceil(t.copies / ep)
                tokens = max(T / tp * etp * t.used * ep * self.expert_load(ep, T / tp, etp) / t.copies, 1.0)
                seconds = self._gemm(tokens, n_l, k_l, local) / grouped_gemm_ramp(tokens, self.eff.grouped_gemm_efficiency)
                casts = self.fp8_cast_s(tokens, n_l, k_l, local, t.name, t.component, tp, sp)
                out.append((name, tokens, n_l, k_l, local, seconds, *casts))
            else:
                casts = self.fp8_cast_s(T, n_l, k_l, 1, t.name, t.component, tp, sp)
                out.append((name, T, n_l, k_l, 1, self._gemm(T, n_l, k_l), *casts))
        return out

    def layer_kind_sequence(self) -> list[int]:
        """Kind index of every layer in order (dense layers of a MoE model come first)."""
        return [i for i, (_, count, _) in enumerate(self.kinds) for _ in range(count)]
